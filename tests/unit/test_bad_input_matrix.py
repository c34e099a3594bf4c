"""Bad input over the public API, the widgets and the CLI, as one table (issue 21, docs/design.md §7).

Each row: a call on the tiny random world stack (conftest: ``stack`` folder, ``pipe`` loaded), the
exception it must raise (``ProbeInputError``; ``EXIT_2`` for the CLI: status 2 and one line on stderr)
and a phrase ``"<argument>: <words>"`` the one-sentence message must hold: the message names the
argument as the caller wrote it, and says what was expected. Every row fails before any sampling
(steps and sizes are minimal where a row could get further), so the table stays cheap.
A second table lists results that differ from what was asked and must come with a warning.
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from unclip_probe import manipulations as M
from unclip_probe import probes, validate, world
from unclip_probe.backends import load_stack
from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.cli import main
from unclip_probe.clip import load_clip
from unclip_probe.errors import ProbeInputError
from unclip_probe.probes.binding import attribute_binding, clip_binding, generation_binding
from unclip_probe.probes.pca import pca_clip_side, pca_reconstruction
from unclip_probe.probes.typographic import attack_images, typographic_attack
from unclip_probe.widgets import BindingExplorer, ManipulationsExplorer, PCAExplorer, TypographicExplorer

pytestmark = pytest.mark.unit

EXIT_2 = "exit status 2"  # the CLI's answer to bad input: one line on stderr, no traceback
LONG = " ".join(["a red circle and a blue square"] * 8)  # beyond the text context of 48 tokens


@pytest.fixture(scope="module")
def c(pipe, stack, tmp_path_factory):
    """What the rows use: the stack, images and paths, a stack with an AR prior, a bad folder."""
    tmp = tmp_path_factory.mktemp("bad_input")
    img = world.render(world.sample_scenes(1, seed=3, config=world.WorldConfig(max_objects=1))[0])
    (tmp / "notes.png").write_text("not an image")
    (tmp / "a_file").write_text("a file, not a folder")
    (tmp / "a_folder").mkdir()
    ar = copy.copy(pipe)  # validation stops before the AR prior runs, so an unfitted one serves
    from unclip_probe.models.ar_prior import ARPrior, ARPriorConfig

    cfg = ARPriorConfig(embed_dim=16, text_dim=32, max_text_len=48, components=4, buckets=8, dot_buckets=4,
                        width=16, layers=1, heads=2)
    ar.priors = {**pipe.priors, "ar": (ARPrior(cfg), cfg)}
    nested = tmp / "nested_key"  # a CLIP whose clip.json has an unknown key inside open_clip_config
    shutil.copytree(stack, nested)
    cj = json.loads((nested / "clip.json").read_text())
    cj["open_clip_config"]["vision_cfg"]["patch_sise"] = 8
    (nested / "clip.json").write_text(json.dumps(cj))
    return SimpleNamespace(pipe=pipe, clip=pipe.clip, folder=stack, img=img, z=torch.randn(1, 16),
                           missing=str(tmp / "nope.png"), notes=str(tmp / "notes.png"), file=tmp / "a_file",
                           dir=tmp / "a_folder", tmp=tmp, ar=ar, nested=nested)


def cli(*argv):
    return ("cli", list(argv))


# ----------------------------------------------------------------------------- seeds, on every entry point
SEED_CALLS = {
    "stack": lambda c, s: c.pipe(["a red circle"], seed=s, steps=1, prior_steps=1),
    "stack.prior": lambda c, s: c.pipe.prior("a red circle", seed=s, steps=1),
    "stack.decode": lambda c, s: c.pipe.decode(c.z, seed=s, steps=1),
    "stack.noise": lambda c, s: c.pipe.noise(1, s),
    "variations": lambda c, s: M.variations(c.pipe, c.img, n=1, seed=s, steps=1),
    "interpolate": lambda c, s: M.interpolate(c.pipe, c.img, c.img, n=2, seed=s, steps=1),
    "text_diff": lambda c, s: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle", seed=s, steps=1),
    "sample_scenes": lambda c, s: world.sample_scenes(1, seed=s),
    "caption": lambda c, s: world.caption(world.sample_scenes(1)[0], seed=s),
    "pca_reconstruction": lambda c, s: pca_reconstruction(c.pipe, seed=s, steps=1),
    "clip_binding": lambda c, s: clip_binding(c.clip, n=1, seed=s),
    "attribute_binding": lambda c, s: attribute_binding(c.pipe, n_clip=1, n_gen=1, seed=s),
    "ManipulationsExplorer": lambda c, s: ManipulationsExplorer(c.pipe, seed=s, steps=1),
}
SEEDS = {"negative": -1, "float": 1.5, "string": "0", "None": None, "2**64": 2 ** 64, "bool": True}
ROWS = [pytest.param(lambda c, f=f, s=s: f(c, s), ProbeInputError, "seed: expected an integer seed",
                     id=f"seed-{name}-{where}")
        for where, f in SEED_CALLS.items() for name, s in SEEDS.items()]

# ----------------------------------------------------------------------------- every other kind
R = ProbeInputError
TABLE = {
    # counts
    "variations-n-0": (lambda c: M.variations(c.pipe, c.img, n=0), R, "n: expected an integer >= 1"),
    "variations-n-float": (lambda c: M.variations(c.pipe, c.img, n=2.0), R, "n: expected an integer"),
    "interpolate-n-1": (lambda c: M.interpolate(c.pipe, c.img, c.img, n=1), R, "n: expected an integer >= 2"),
    "noise-n-0": (lambda c: c.pipe.noise(0, 0), R, "n: expected an integer >= 1"),
    "sample_scenes-n-0": (lambda c: world.sample_scenes(0), R, "n: expected an integer >= 1"),
    "sample_scenes-start": (lambda c: world.sample_scenes(1, start=-2), R, "start: expected an integer >= 0"),
    "pca-n_fit-1": (lambda c: pca_reconstruction(c.pipe, n_fit=1), R, "n_fit: expected an integer >= 2"),
    "pca-n_images-0": (lambda c: pca_reconstruction(c.pipe, n_images=0), R, "n_images: expected an integer"),
    "pca_clip_side-n_fit": (lambda c: pca_clip_side(c.clip, [c.img], ["circle"], n_fit=0), R, "n_fit: expected"),
    "clip_binding-n-0": (lambda c: clip_binding(c.clip, n=0), R, "n: expected an integer >= 1"),
    "attribute_binding-n_clip": (lambda c: attribute_binding(c.pipe, n_clip=-3), R, "n_clip: expected an integer"),
    "attribute_binding-n_gen": (lambda c: attribute_binding(c.pipe, n_gen=0), R, "n_gen: expected an integer"),
    "generation_binding-n": (lambda c: generation_binding(c.pipe, n=0), R, "n: expected an integer >= 1"),
    "generation_binding-stack_seeds": (lambda c: generation_binding(c.pipe, n=1, stack_seeds=-1), R,
                                       "stack_seeds: expected an integer >= 0"),
    "typographic-n_decode": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star", stack=c.pipe,
                                                          n_decode=0), R, "n_decode: expected an integer"),
    # fractions and probabilities
    "variations-eta-negative": (lambda c: M.variations(c.pipe, c.img, eta=-0.1), R, "eta: expected a fraction"),
    "variations-eta-2": (lambda c: M.variations(c.pipe, c.img, eta=2), R, "eta: expected a fraction from 0 to 1"),
    "variations-eta-nan": (lambda c: M.variations(c.pipe, c.img, eta=float("nan")), R, "eta: expected a fraction"),
    "decode-eta": (lambda c: c.pipe.decode(c.z, eta=1.5), R, "eta: expected a fraction"),
    "text_diff-thetas-1.5": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle", [1.5]), R,
                             "thetas: expected a list of angles as fractions"),
    "text_diff-thetas-negative": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle", [0, -0.1]),
                                  R, "thetas: expected a list"),
    "text_diff-thetas-nan": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle",
                                                   [float("nan")]), R, "thetas: expected a list"),
    "text_diff-thetas-empty": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle", []), R,
                               "thetas: expected a list of at least 1"),
    "typographic-box-order": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star",
                                                           box=(0.5, 0.5, 0.2, 0.9)), R, "box: expected (x0, y0"),
    "typographic-box-range": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star", box=(0, 0, 2, 1)),
                              R, "box: expected a list of fractions"),
    "attack_images-box-short": (lambda c: attack_images([c.img], "star", box=(0.1, 0.2)), R, "box: expected (x0"),
    # guidance
    "stack-guidance-negative": (lambda c: c.pipe(["a red circle"], guidance=-1), R, "guidance: expected a finite"),
    "stack-guidance-inf": (lambda c: c.pipe(["a red circle"], guidance=float("inf")), R, "guidance: expected"),
    "stack-prior_guidance": (lambda c: c.pipe(["a red circle"], prior_guidance=-2), R, "prior_guidance: expected"),
    "prior-guidance-negative": (lambda c: c.pipe.prior(["a red circle"], guidance=-1), R, "guidance: expected"),
    "ar-prior-guidance-negative": (lambda c: c.ar.prior(["a red circle"], kind="ar", guidance=-1), R,
                                   "guidance: expected a finite guidance scale"),
    "ar-prior-steps": (lambda c: c.ar.prior(["a red circle"], kind="ar", steps=8), R,
                       "steps: the AR prior takes one step per PCA code"),
    "decode-guidance-nan": (lambda c: c.pipe.decode(c.z, guidance=float("nan")), R, "guidance: expected"),
    "decode-guidance-string": (lambda c: c.pipe.decode(c.z, guidance="2"), R, "guidance: expected a finite"),
    "variations-guidance": (lambda c: M.variations(c.pipe, c.img, guidance=-1), R, "guidance: expected"),
    "interpolate-guidance": (lambda c: M.interpolate(c.pipe, c.img, c.img, guidance=-0.5), R, "guidance: expected"),
    "text_diff-guidance": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle", guidance=-1), R,
                           "guidance: expected"),
    "pca-guidance": (lambda c: pca_reconstruction(c.pipe, guidance=-1), R, "guidance: expected"),
    "generation_binding-guidance": (lambda c: generation_binding(c.pipe, n=1, guidance=-1), R, "guidance: expected"),
    # steps
    "stack-steps-0": (lambda c: c.pipe(["a red circle"], steps=0), R,
                      "steps: expected an integer from 1 to 1000, got 0"),
    "stack-steps-float": (lambda c: c.pipe(["a red circle"], steps=1.5), R, "steps: expected an integer"),
    "stack-steps-beyond-T": (lambda c: c.pipe(["a red circle"], steps=10 ** 6), R, "steps: expected an integer"),
    "stack-prior_steps": (lambda c: c.pipe(["a red circle"], prior_steps=0), R, "prior_steps: expected an integer"),
    "stack-upsample_steps": (lambda c: c.pipe(["a red circle"], upsample_steps=-1), R, "upsample_steps: expected"),
    "prior-steps": (lambda c: c.pipe.prior(["a red circle"], steps=0), R, "steps: expected an integer"),
    "prior-sampler": (lambda c: c.pipe.prior(["a red circle"], sampler="euler"), R, "sampler: got 'euler'"),
    "stack-sampler": (lambda c: c.pipe(["a red circle"], sampler="dpm"), R, "sampler: got 'dpm'"),
    "stack-prior_sampler": (lambda c: c.pipe(["a red circle"], prior_sampler="x"), R, "prior_sampler: got 'x'"),
    "decode-sampler": (lambda c: c.pipe.decode(c.z, sampler=3), R, "sampler: got 3"),
    "decode-eta-dpm": (lambda c: c.pipe.decode(c.z, eta=0.5, sampler="dpm++2m"), R,
                       "eta: applies to the 'ddim' sampler only"),
    "decode-steps": (lambda c: c.pipe.decode(c.z, steps=-1), R, "steps: expected an integer"),
    "decode-upsample_steps": (lambda c: c.pipe.decode(c.z, upsample_steps=0), R, "upsample_steps: expected"),
    "invert-steps": (lambda c: c.pipe.invert([c.img], steps=0), R, "steps: expected an integer"),
    "variations-steps": (lambda c: M.variations(c.pipe, c.img, steps=0), R, "steps: expected an integer"),
    "invert-manipulation-steps": (lambda c: M.invert(c.pipe, c.img, steps=2.5), R, "steps: expected an integer"),
    "pca-steps": (lambda c: pca_reconstruction(c.pipe, steps=0), R, "steps: expected an integer"),
    "generation_binding-prior_steps": (lambda c: generation_binding(c.pipe, n=1, prior_steps=0), R,
                                       "prior_steps: expected an integer"),
    "attribute_binding-prior_steps": (lambda c: attribute_binding(c.pipe, prior_steps=-4), R, "prior_steps: expected"),
    "typographic-decode_steps": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star", stack=c.pipe,
                                                              decode_steps=0), R, "decode_steps: expected"),
    # embeddings and noise
    "decode-z-int": (lambda c: c.pipe.decode(torch.ones(1, 16, dtype=torch.long)), R,
                     "z: expected floating-point CLIP embeddings, got dtype torch.int64"),
    "decode-z-bool": (lambda c: c.pipe.decode(torch.ones(1, 16, dtype=torch.bool)), R, "z: expected floating-point"),
    "decode-z-nan": (lambda c: c.pipe.decode(torch.full((1, 16), float("nan"))), R, "z: row(s) [0] hold NaN"),
    "decode-z-inf": (lambda c: c.pipe.decode(torch.tensor([[float("inf")] * 16, [0.0] * 16])), R,
                     "z: row(s) [0] hold NaN or infinite"),
    "decode-z-width": (lambda c: c.pipe.decode(torch.randn(2, 7)), R, "z: expected CLIP embeddings (B, 16)"),
    "decode-z-1d": (lambda c: c.pipe.decode(torch.randn(16)), R, "z: expected CLIP embeddings (B, 16)"),
    "decode-z-empty": (lambda c: c.pipe.decode(torch.randn(0, 16)), R, "z: expected CLIP embeddings (B, 16) with B"),
    "decode-z-numpy": (lambda c: c.pipe.decode(np.zeros((1, 16), np.float32)), R, "z: expected a torch.Tensor"),
    "decode-z-list": (lambda c: c.pipe.decode([[0.0] * 16]), R, "z: expected a torch.Tensor"),
    "decode-z-None": (lambda c: c.pipe.decode(None), R, "z: expected a torch.Tensor"),
    "decode-x_T-shape": (lambda c: c.pipe.decode(c.z, x_T=torch.randn(1, 3, 16, 16)), R,
                         "x_T: expected a tensor of shape (1, 3, 32, 32)"),
    "decode-x_T-batch": (lambda c: c.pipe.decode(c.z, x_T=torch.randn(2, 3, 32, 32)), R, "x_T: expected a tensor"),
    "decode-x_T-nan": (lambda c: c.pipe.decode(c.z, x_T=torch.full((1, 3, 32, 32), float("nan"))), R,
                       "x_T: expected finite"),
    "invert-z-width": (lambda c: c.pipe.invert([c.img], z=torch.randn(1, 5)), R, "z: expected CLIP embeddings"),
    "invert-z-count": (lambda c: c.pipe.invert([c.img], z=torch.randn(2, 16)), R, "z: expected one embedding per"),
    "variations-inverted": (lambda c: M.variations(c.pipe, c.img, inverted=(torch.randn(1, 3, 32, 32),)), R,
                            "inverted: expected the (x_T, z) pair"),
    "text_diff-inverted-z": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle",
                                                   inverted=(torch.randn(1, 3, 32, 32), torch.randn(1, 3))), R,
                             "inverted: expected CLIP embeddings"),
    # prompts and texts: the argument the caller named, never `texts`
    "stack-prompts-empty": (lambda c: c.pipe([]), R, "prompts: expected a non-empty list"),
    "stack-prompts-blank": (lambda c: c.pipe(["  "]), R, "prompts: expected a non-empty list"),
    "stack-prompts-number": (lambda c: c.pipe(5), R, "prompts: expected a prompt or a list of prompts"),
    "stack-prompts-mixed": (lambda c: c.pipe(["a red circle", 3]), R, "prompts: expected a non-empty list"),
    "stack-prompts-None": (lambda c: c.pipe(None), R, "prompts: expected a prompt or a list"),
    "stack-prompts-unknown-word": (lambda c: c.pipe(["a red zebra"]), R, "prompts: the word 'zebra'"),
    "stack-prompts-too-long": (lambda c: c.pipe([LONG]), R, "prompts: but the context length is 48; shorten it"),
    "prior-prompts-unknown-word": (lambda c: c.pipe.prior(["a zebra"]), R, "prompts: the word 'zebra'"),
    "encode_text-unknown-word": (lambda c: c.pipe.encode_text("a zebra"), R, "prompts: the word 'zebra'"),
    "decode-prompts-word": (lambda c: c.pipe.decode(c.z, prompts=["a zebra"]), R, "prompts: the word 'zebra'"),
    "decode-prompts-count": (lambda c: c.pipe.decode(c.z, prompts=["a", "b"]), R,
                             "prompts: expected one prompt per embedding (1), got 2"),
    "text_diff-src-blank": (lambda c: M.text_diff(c.pipe, c.img, " ", "a blue circle"), R, "src: expected a non-empty"),
    "text_diff-dst-word": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a zebra"), R,
                           "dst: the word 'zebra'"),
    "text_diff-src-word": (lambda c: M.text_diff(c.pipe, c.img, "a zebra", "a blue circle"), R,
                           "src: the word 'zebra'"),
    "text_diff-caption-word": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle",
                                                     caption="a zebra"), R, "caption: the word 'zebra'"),
    "text_diff-dst-None": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", None), R, "dst: expected a non-empty"),
    "zero_shot-labels-word": (lambda c: c.clip.zero_shot([c.img], ["circle", "zebra"]), R, "labels: the word 'zebra'"),
    "zero_shot-labels-string": (lambda c: c.clip.zero_shot([c.img], "circle"), R, "labels: expected a non-empty list"),
    "typographic-labels-string": (lambda c: typographic_attack(c.clip, [c.img], "circle", "star"), R,
                                  "labels: expected a list of label strings, got the single string"),
    "typographic-labels-duplicates": (lambda c: typographic_attack(c.clip, [c.img], ["star", "star"], "star"), R,
                                      "labels: contains duplicates"),
    "typographic-word-blank": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], " "), R, "word: expected"),
    "typographic-templates": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star", templates="a {}"), R,
                              "templates: expected a list of strings each containing"),
    "typographic-true_labels": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star",
                                                             true_labels=["circle", "star"]), R,
                                "true_labels: expected one label per image"),
    "pca-labels-string": (lambda c: pca_reconstruction(c.pipe, labels="circle"), R, "labels: expected a list"),
    "pca-labels-word": (lambda c: pca_reconstruction(c.pipe, labels=["circle", "zebra"]), R,
                        "labels: the word 'zebra'"),
    "pca_clip_side-labels-word": (lambda c: pca_clip_side(c.clip, [c.img], ["zebra"]), R, "labels: the word 'zebra'"),
    "pca_clip_side-template": (lambda c: pca_clip_side(c.clip, [c.img], ["circle"], template="a"), R,
                               "template: expected a string with '{}'"),
    "binding-prompts-one-object": (lambda c: generation_binding(c.pipe, ["a red circle"]), R,
                                   "prompts: 'a red circle' names 1 object(s)"),
    "binding-prompts-string": (lambda c: attribute_binding(c.pipe, "a red circle and a blue square"), R,
                               "prompts: expected a list of two-object prompts, got the single string"),
    # scalars where lists are expected
    "text_diff-thetas-scalar": (lambda c: M.text_diff(c.pipe, c.img, "a red circle", "a blue circle", 0.5), R,
                                "thetas: expected a list of angles as fractions from 0 to 1, got the single "
                                "number 0.5"),
    "pca-ks-scalar": (lambda c: pca_reconstruction(c.pipe, ks=4), R, "ks: expected a list of component counts"),
    "pca_clip_side-ks-scalar": (lambda c: pca_clip_side(c.clip, [c.img], ["circle"], ks=4), R, "ks: expected a list"),
    "pca-ks-zero": (lambda c: pca_reconstruction(c.pipe, ks=[0]), R, "ks: expected a list of component counts"),
    "pca-ks-beyond-width": (lambda c: pca_reconstruction(c.pipe, ks=[17]), R, "ks: expected a list"),
    "pca-ks-float": (lambda c: pca_reconstruction(c.pipe, ks=[2.5]), R, "ks: expected a list"),
    "pca-ks-empty": (lambda c: pca_reconstruction(c.pipe, ks=[]), R, "ks: expected a list of at least 1"),
    "typographic-box-scalar": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star", box=0.5), R,
                               "box: expected a list of fractions"),
    "clip_binding-swaps-string": (lambda c: clip_binding(c.clip, n=1, swaps="color"), R, "swaps: expected a list"),
    "generation_binding-settings": (lambda c: generation_binding(c.pipe, n=1, settings=[]), R,
                                    "settings: expected a non-empty list"),
    # choices
    "stack-prior-kind": (lambda c: c.pipe(["a red circle"], prior="gan"), R, "prior: got 'gan', expected one of"),
    "prior-kind-typo": (lambda c: c.pipe.prior(["a red circle"], kind="difusion"), R, "kind: got 'difusion'"),
    "prior-kind-missing": (lambda c: c.pipe.prior(["a red circle"], kind="ar"), R, "kind: the 'world' stack has no"),
    "interpolate-noise": (lambda c: M.interpolate(c.pipe, c.img, c.img, noise="random"), R, "noise: got 'random'"),
    "clip_binding-swaps": (lambda c: clip_binding(c.clip, n=1, swaps=["colour"]), R, "swaps: got 'colour'"),
    "load_stack-kind": (lambda c: load_stack("wrold", c.folder), R, "kind: got 'wrold'"),
    "load_stack-folder-None": (lambda c: load_stack("world"), R, "folder: the 'world' stack needs"),
    "load_stack-folder-missing": (lambda c: load_stack("world", c.tmp / "nope"), R, "folder: is not a checkpoint"),
    "from_pretrained-device": (lambda c: UnCLIP.from_pretrained(c.folder, device="gpu"), R, "device: expected 'auto'"),
    "from_pretrained-device-mps": (lambda c: UnCLIP.from_pretrained(c.folder, device="mps"), R, "device: expected"),
    "from_pretrained-compile": (lambda c: UnCLIP.from_pretrained(c.folder, compile="yes"), R,
                                "compile: expected True or False"),
    "with_decoder-name": (lambda c: c.pipe.with_decoder(3), R, "name: expected the name of a decoder"),
    "with_decoder-missing": (lambda c: c.pipe.with_decoder("decoder_text"), R, "name: no decoder 'decoder_text'"),
    "decode-upsample-flag": (lambda c: c.pipe.decode(c.z, upsample="no"), R, "upsample: expected True or False"),
    # images
    "variations-missing-path": (lambda c: M.variations(c.pipe, c.missing), R, "image: does not exist"),
    "variations-not-an-image": (lambda c: M.variations(c.pipe, c.notes), R, "image: is not an image PIL can"),
    "variations-list": (lambda c: M.variations(c.pipe, [c.img, c.img]), R, "image: expected one image, got a list"),
    "variations-number": (lambda c: M.variations(c.pipe, 42), R, "image: expected an image or a list of images"),
    "interpolate-a": (lambda c: M.interpolate(c.pipe, c.missing, c.img), R, "a: does not exist"),
    "interpolate-b": (lambda c: M.interpolate(c.pipe, c.img, c.notes), R, "b: is not an image"),
    "text_diff-image": (lambda c: M.text_diff(c.pipe, c.missing, "a red circle", "a blue circle"), R,
                        "image: does not exist"),
    "invert-empty": (lambda c: c.pipe.invert([]), R, "images: expected at least one image"),
    "invert-missing": (lambda c: c.pipe.invert([c.img, c.missing]), R, "images: does not exist"),
    "stack-encode_image-missing": (lambda c: c.pipe.encode_image(c.missing), R, "images: does not exist"),
    "clip-encode_image-missing": (lambda c: c.clip.encode_image(c.missing), R, "images: does not exist"),
    "pca-images-empty": (lambda c: pca_reconstruction(c.pipe, images=[]), R, "images: expected at least one image"),
    "pca-images-missing": (lambda c: pca_reconstruction(c.pipe, images=[c.missing]), R, "images: does not exist"),
    "pca-fit_images": (lambda c: pca_reconstruction(c.pipe, fit_images=[c.notes]), R, "fit_images: is not an image"),
    "pca_clip_side-images": (lambda c: pca_clip_side(c.clip, [], ["circle"]), R, "images: expected at least one"),
    "typographic-images-empty": (lambda c: typographic_attack(c.clip, [], ["circle"], "star"), R, "images: expected"),
    "typographic-images-object": (lambda c: typographic_attack(c.clip, [object()], ["circle"], "star"), R,
                                  "images: expected PIL images, paths"),
    "detect-missing": (lambda c: world.detect(c.missing), R, "image: no image file"),
    "detect-not-square": (lambda c: world.detect(Image.new("RGB", (64, 32))), R, "image: expected a square image"),
    # stacks and CLIPs that are not
    "variations-stack-None": (lambda c: M.variations(None, c.img), R, "stack: expected a stack"),
    "text_diff-stack-string": (lambda c: M.text_diff("world", c.img, "a", "b"), R, "stack: expected a stack"),
    "pca-stack-clip": (lambda c: pca_reconstruction(c.clip), R, "stack: got a ClipModel (it has no"),
    "attribute_binding-stack": (lambda c: attribute_binding(None), R, "stack: expected a stack"),
    "clip_binding-clip": (lambda c: clip_binding(None), R, "clip: expected a CLIP model"),
    "typographic-clip": (lambda c: typographic_attack(None, [c.img], ["circle"], "star"), R, "clip: expected a CLIP"),
    "typographic-stack": (lambda c: typographic_attack(c.clip, [c.img], ["circle"], "star", stack=c.clip), R,
                          "stack: expected a stack"),
    # checkpoints and configs
    "load_clip-nested-unknown-key": (lambda c: load_clip(c.nested), R,
                                     "clip.json (open_clip_config.vision_cfg): unknown key(s) 'patch_sise'"),
    "load_stack-nested-unknown-key": (lambda c: load_stack("world", c.nested), R,
                                      "clip.json (open_clip_config.vision_cfg): valid keys are"),
    # widgets
    "TypographicExplorer-no-stack": (lambda c: TypographicExplorer(), R, "stack: TypographicExplorer needs a stack"),
    "TypographicExplorer-word": (lambda c: TypographicExplorer(c.pipe, word=""), R, "word: expected a non-empty"),
    "TypographicExplorer-labels": (lambda c: TypographicExplorer(c.pipe, labels="star"), R, "labels: expected a list"),
    "TypographicExplorer-steps": (lambda c: TypographicExplorer(c.pipe, steps=0), R, "steps: expected an integer"),
    "TypographicExplorer-image": (lambda c: TypographicExplorer(c.pipe, image=c.missing), R, "image: does not exist"),
    "TypographicExplorer-clip": (lambda c: TypographicExplorer(clip="x"), R, "clip: expected a CLIP model"),
    "PCAExplorer-ks-empty": (lambda c: PCAExplorer(c.pipe, ks=[]), R, "ks: expected a list of at least 1"),
    "PCAExplorer-ks-zero": (lambda c: PCAExplorer(c.pipe, ks=[0]), R, "ks: expected a list of component counts"),
    "PCAExplorer-ks-scalar": (lambda c: PCAExplorer(c.pipe, ks=4), R, "ks: expected a list"),
    "PCAExplorer-n_fit": (lambda c: PCAExplorer(c.pipe, n_fit=1), R, "n_fit: expected an integer >= 2"),
    "PCAExplorer-stack": (lambda c: PCAExplorer("world"), R, "stack: expected a stack"),
    "PCAExplorer-images": (lambda c: PCAExplorer(c.pipe, images=[]), R, "images: expected at least one"),
    "ManipulationsExplorer-frames": (lambda c: ManipulationsExplorer(c.pipe, frames=1), R, "frames: expected"),
    "ManipulationsExplorer-thetas": (lambda c: ManipulationsExplorer(c.pipe, thetas=0.5), R, "thetas: expected a list"),
    "ManipulationsExplorer-src": (lambda c: ManipulationsExplorer(c.pipe, src=""), R, "src: expected a non-empty"),
    "ManipulationsExplorer-steps": (lambda c: ManipulationsExplorer(c.pipe, steps=0), R, "steps: expected"),
    "ManipulationsExplorer-image_a": (lambda c: ManipulationsExplorer(c.pipe, image_a=c.notes), R,
                                      "image_a: is not an image"),
    "BindingExplorer-steps": (lambda c: BindingExplorer(c.pipe, steps=0), R, "steps: expected an integer"),
    "BindingExplorer-prior_steps": (lambda c: BindingExplorer(c.pipe, prior_steps=-1), R, "prior_steps: expected"),
    "BindingExplorer-seed": (lambda c: BindingExplorer(c.pipe, seed=1.5), R, "seed: expected an integer seed"),
    "BindingExplorer-settings": (lambda c: BindingExplorer(c.pipe, settings=()), R, "settings: expected"),
    "BindingExplorer-stack": (lambda c: BindingExplorer(None), R, "stack: expected a stack"),
    # the command line: one line on stderr, status 2, each error naming the flag
    "cli-world-seed-negative": (lambda c: cli("world", "--seed", "-1", "--out", str(c.tmp / "w.png")), EXIT_2,
                                "--seed: expected an integer seed"),
    "cli-world-seed-huge": (lambda c: cli("world", "--seed", str(2 ** 64), "--out", str(c.tmp / "w.png")), EXIT_2,
                            "--seed: expected an integer seed"),
    "cli-world-cols-0": (lambda c: cli("world", "--cols", "0", "--out", str(c.tmp / "w.png")), EXIT_2,
                         "--cols: expected an integer >= 1"),
    "cli-world-n-0": (lambda c: cli("world", "--n", "0", "--out", str(c.tmp / "w.png")), EXIT_2, "--n: expected"),
    "cli-world-size": (lambda c: cli("world", "--size", "48", "--out", str(c.tmp / "w.png")), EXIT_2,
                       "--size: got '48', expected one of '16', '32', '64'"),
    "cli-world-out-under-file": (lambda c: cli("world", "--out", str(c.file / "w.png")), EXIT_2,
                                 "--out: cannot write"),
    "cli-world-out-folder": (lambda c: cli("world", "--out", str(c.dir)), EXIT_2, "--out: is a folder; give a file"),
    "cli-world-out-extension": (lambda c: cli("world", "--out", str(c.tmp / "w.xyz")), EXIT_2,
                                "--out: has no image extension PIL can write"),
    "cli-generate-out-under-file": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder),
                                                  "--device", "cpu", "--out", str(c.file / "g.png")), EXIT_2,
                                    "--out: cannot write"),
    "cli-generate-seed": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder), "--seed", "-1"),
                          EXIT_2, "--seed: expected an integer seed"),
    "cli-generate-guidance": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder),
                                            "--guidance", "-1"), EXIT_2, "--guidance: expected a finite"),
    "cli-generate-guidance-nan": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder),
                                                "--guidance", "nan"), EXIT_2, "--guidance: expected"),
    "cli-generate-steps": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder), "--steps", "0"),
                           EXIT_2, "--steps: expected an integer"),
    "cli-generate-n": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder), "--n", "0"),
                       EXIT_2, "--n: expected an integer >= 1, got 0"),
    "cli-generate-prior": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder),
                                         "--prior-kind", "gan"),
                           EXIT_2, "--prior-kind: got 'gan'"),
    "cli-generate-checkpoints": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.tmp / "nope")),
                                 EXIT_2, "--checkpoints: is not a folder"),
    "cli-generate-device": (lambda c: cli("generate", "a red circle", "--checkpoints", str(c.folder),
                                          "--device", "gpu", "--out", str(c.tmp / "g.png")), EXIT_2,
                            "--device: expected 'auto'"),
    "cli-generate-prompt-word": (lambda c: cli("generate", "a red zebra", "--checkpoints", str(c.folder),
                                               "--device", "cpu", "--steps", "1", "--out", str(c.tmp / "g.png")),
                                 EXIT_2, "prompts: the word 'zebra'"),
    "cli-report-out-file": (lambda c: cli("report", "--checkpoints", str(c.folder), "--out", str(c.file)), EXIT_2,
                            "--out: exists and is not a folder"),
    "cli-report-checkpoints": (lambda c: cli("report", "--checkpoints", str(c.file)), EXIT_2,
                               "--checkpoints: is not a folder"),
    "cli-train-stage": (lambda c: cli("train", "clipp", "--out", str(c.tmp / "t")), EXIT_2,
                        "stage: got 'clipp', expected one of"),
    "cli-train-clip-folder": (lambda c: cli("train", "decoder", "--clip", str(c.tmp / "nope"), "--out",
                                            str(c.tmp / "t")), EXIT_2, "--clip: is not a folder"),
    "cli-train-steps": (lambda c: cli("train", "clip", "--steps", "0", "--out", str(c.tmp / "t")), EXIT_2,
                        "--steps: expected an integer >= 1"),
    "cli-train-lr": (lambda c: cli("train", "clip", "--lr", "0", "--out", str(c.tmp / "t")), EXIT_2,
                     "--lr: expected a learning rate > 0"),
    "cli-train-note-prob": (lambda c: cli("train", "clip", "--note-prob", "1.5", "--out", str(c.tmp / "t")), EXIT_2,
                            "--note-prob: expected a fraction"),
    "cli-train-init-from": (lambda c: cli("train", "clip", "--init-from", c.missing, "--out", str(c.tmp / "t")),
                            EXIT_2, "--init-from: is not a file"),
    "cli-train-device": (lambda c: cli("train", "clip", "--device", "gpu", "--out", str(c.tmp / "t")), EXIT_2,
                         "--device: expected 'auto'"),
    "cli-train-out": (lambda c: cli("train", "clip", "--out", str(c.file)), EXIT_2, "--out: exists and is not a"),
    "cli-train-budget": (lambda c: cli("train", "clip", "--budget-minutes", "-5", "--out", str(c.tmp / "t")), EXIT_2,
                         "--budget-minutes: expected a number of minutes > 0"),
}
ROWS += [pytest.param(call, exc, phrase, id=name) for name, (call, exc, phrase) in TABLE.items()]


def _names_the_argument(message: str, phrase: str) -> None:
    """The message is one sentence that starts with the phrase's argument and holds the rest."""
    assert "\n" not in message, message
    argument, _, words = phrase.partition(": ")
    head = message.split(": ", 1)[0]
    assert head == argument or head.endswith("/" + argument), (head, phrase, message)
    assert phrase.split(": ", 1)[-1] in message, (phrase, message)


@pytest.mark.parametrize("call, exc, phrase", ROWS)
def test_bad_input(c, call, exc, phrase, capsys):
    if exc == EXIT_2:
        argv = call(c)[1]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        _names_the_argument(err.strip().split(": ", 1)[1], phrase)  # after "unclip-probe <command>: "
        return
    with pytest.raises(exc) as info:
        call(c)
    _names_the_argument(str(info.value), phrase)


def test_the_matrix_is_large_and_covers_every_kind():
    assert len(ROWS) + len(REAL_TABLE) >= 150 and len(REAL_TABLE) >= 20
    ids = [p.id for p in ROWS]
    for kind in ("seed-", "-n", "eta", "thetas", "guidance", "steps", "-z-", "prompts", "scalar", "image",
                 "Explorer", "cli-", "out", "nested-unknown-key", "stack"):
        assert any(kind in i for i in ids), kind


# ----------------------------------------------------------------------------- checks run before the work
def test_checks_run_before_the_work(c, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    import unclip_probe.probes.binding as binding

    monkeypatch.setattr(binding, "generation_binding", no_work)
    monkeypatch.setattr(binding, "binding_scenes", no_work)
    with pytest.raises(ProbeInputError, match="^n_clip: "):
        binding.attribute_binding(c.pipe, n_clip=-3)
    monkeypatch.setattr(UnCLIP, "from_pretrained", no_work)  # generate: --out checked before loading / sampling
    assert main(["generate", "a red circle", "--checkpoints", str(c.folder), "--out", str(c.file / "g.png")]) == 2
    import unclip_probe.report as report

    monkeypatch.setattr("unclip_probe.backends.load_stack", no_work)
    with pytest.raises(ProbeInputError, match="^out: "):
        report.write_report(c.folder, c.file)
    monkeypatch.setattr(M, "invert", no_work)  # text diff: the texts are read before the inversion
    with pytest.raises(ProbeInputError, match="^dst: the word 'zebra'"):
        M.text_diff(c.pipe, c.img, "a red circle", "a zebra")
    import unclip_probe.probes.pca as pca

    monkeypatch.setattr(pca, "fit_world_pca", no_work)  # the PCA fit is the probe's first slow step
    with pytest.raises(ProbeInputError, match="^images: "):
        pca.pca_reconstruction(c.pipe, images=[c.missing])
    capsys.readouterr()


def test_the_cli_prints_no_traceback_in_a_fresh_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unclip_probe.cli", "world", "--seed", "-1", "--out",
                           str(tmp_path / "w.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "unclip-probe world: --seed: expected an integer seed from 0 to 2**63 - 1, got -1\n"


# ----------------------------------------------------------------------------- results that differ from what was asked
def test_other_float_dtypes_decode_as_float32_and_give_the_same_images(c):
    z = torch.nn.functional.normalize(torch.randn(1, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    ref = c.pipe.decode(z, seed=0, steps=1, upsample=False)[0].tobytes()
    for dtype in (torch.float64, torch.float16):
        img = c.pipe.decode(z.to(dtype), seed=0, steps=1, upsample=False)[0]
        assert img.size == (32, 32)
        if dtype == torch.float64:
            assert img.tobytes() == ref


WARNINGS = {
    "rgba-encode": (lambda c: c.pipe.encode_image(c.img.convert("RGBA")), "image: mode RGBA converted to RGB"),
    "not-square-encode": (lambda c: c.pipe.encode_image(Image.new("RGB", (96, 64))),
                          "image: 96x64 is not square; its centre 64x64 is used"),
    "resized-invert": (lambda c: c.pipe.invert([c.img.resize((48, 48))], steps=1),
                       "image: 48x48 resized to 32x32, the decoder's size"),
    "resized-detect": (lambda c: world.detect(c.img.resize((100, 100))), "image: 100x100 resampled to 64x64"),
    "rgba-detect": (lambda c: world.detect(c.img.convert("RGBA")), "image: mode RGBA read as RGB"),
    "clip-converted": (lambda c: c.clip.encode_image([c.img.convert("L")]), "images: converted 1 image(s) of mode"),
}


@pytest.mark.parametrize("call, phrase", WARNINGS.values(), ids=list(WARNINGS))
def test_a_changed_result_comes_with_a_warning(c, call, phrase):
    with pytest.warns(UserWarning, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        call(c)


def test_a_stack_without_an_upsampler_says_it_returns_32_px(c, tmp_path):
    folder = tmp_path / "no_upsampler"
    shutil.copytree(c.folder, folder)
    for f in ("upsampler.json", "upsampler.safetensors"):
        (folder / f).unlink()
    with pytest.warns(UserWarning, match="no upsampler .* returns 32 px images"):
        s = UnCLIP.from_pretrained(folder, device="cpu")
    assert s.image_size == 32
    (folder / "upsampler.json").write_text((c.folder / "upsampler.json").read_text())  # half an upsampler: an error
    with pytest.raises(ProbeInputError, match="missing upsampler.safetensors"):
        UnCLIP.from_pretrained(folder, device="cpu")


def test_validate_api_returns_what_the_library_uses():
    assert validate.seed(np.int64(7)) == 7 and type(validate.seed(np.int64(7))) is int
    assert validate.number_list((1, 2), "ks", integer=True) == [1, 2]
    assert validate.guidance(None) is None and validate.steps(None) is None and validate.guidance(0) == 0.0
    assert validate.prompts("a red circle") == ["a red circle"]
    assert validate.embeddings(torch.zeros(2, 4, dtype=torch.float64), 4).dtype == torch.float32
    with pytest.raises(ProbeInputError, match=r"^prompts: the word"):
        with validate.renamed(texts="prompts"):
            raise ProbeInputError("texts: the word 'x' is not in the vocabulary")


# ----------------------------------------------------------------------------- the real-decoder stacks
@pytest.fixture(scope="module")
def r(tmp_path_factory):
    """Tiny random real stacks in their public repositories' layouts, and folders of the wrong kind."""
    import _tiny_real
    from _tiny_karlo import tiny_karlo

    tmp = tmp_path_factory.mktemp("bad_real")
    with _tiny_real.one_thread():
        k = _tiny_real.tiny_kandinsky(tmp / "k")
        su = _tiny_real.tiny_stable_unclip(tmp / "su", "h")
        ka = tiny_karlo(tmp / "ka")
        no_unet = _tiny_real.copy_without(k["decoder"], tmp / "no_unet", "unet")
        stacks = SimpleNamespace(k=load_stack("kandinsky-2.2", decoder=k["decoder"], prior=k["prior"], device="cpu"),
                                 su=load_stack("stable-unclip-h", su, device="cpu"),
                                 ka=load_stack("karlo", ka, image_encoder=tiny_karlo(tmp / "kv", variations=True),
                                               device="cpu"))
    return SimpleNamespace(k=k, su=su, ka=ka, no_unet=no_unet, s=stacks, world=Path("checkpoints/world"), tmp=tmp)


REAL_TABLE = {
    "real-kind-unknown": (lambda r: load_stack("dalle-2", r.su), "kind: got 'dalle-2'"),
    "real-folder-twice": (lambda r: load_stack("karlo", r.ka, decoder=r.ka), "decoder: give the stack's folder once"),
    "real-kandinsky-wrong-kind": (lambda r: load_stack("kandinsky-2.2", decoder=r.su, prior=r.k["prior"]),
                                  "decoder: not a KandinskyV22Pipeline"),
    "real-kandinsky-prior-as-decoder": (lambda r: load_stack("kandinsky-2.2", decoder=r.k["prior"],
                                                             prior=r.k["prior"]), "decoder: that is Kandinsky 2.2's prior folder"),
    "real-kandinsky-decoder-as-prior": (lambda r: load_stack("kandinsky-2.2", decoder=r.k["decoder"],
                                                             prior=r.k["decoder"]), "prior: that is Kandinsky 2.2's decoder folder"),
    "real-kandinsky-world-folder": (lambda r: load_stack("kandinsky-2.2", decoder=r.world, prior=r.k["prior"]),
                                    "decoder: has no model_index.json"),
    "real-kandinsky-missing-unet": (lambda r: load_stack("kandinsky-2.2", decoder=r.no_unet, prior=r.k["prior"]),
                                    "decoder: lacks unet/config.json"),
    "real-stable-unclip-kandinsky-folder": (lambda r: load_stack("stable-unclip-h", r.k["decoder"]),
                                            "decoder: not a StableUnCLIPImg2ImgPipeline"),
    "real-stable-unclip-prior-folder": (lambda r: load_stack("stable-unclip-h", r.su, prior=r.k["prior"]),
                                        "prior: the 'stable-unclip-h' stack takes no prior folder"),
    "real-karlo-world-folder": (lambda r: load_stack("karlo", r.world), "folder: expected the kakaobrain/karlo-v1-alpha layout"),
    "real-karlo-prior-folder": (lambda r: load_stack("karlo", r.ka, prior=r.ka), "prior: the 'karlo' stack takes no"),
    "real-kandinsky-cuda": (lambda r: load_stack("kandinsky-2.2", decoder=r.k["decoder"], prior=r.k["prior"],
                                                 device="cuda:7"), "device: this machine has no CUDA device"),
    "real-kandinsky-z-width": (lambda r: r.s.k.decode(torch.randn(1, 768), steps=1),
                               "z: expected ViT-bigG-14 image embeddings (B, 1280) for kandinsky-2.2"),
    "real-stable-unclip-z-width": (lambda r: r.s.su.decode(torch.randn(1, 768), steps=1),
                                   "z: that is ViT-L/14's width, which stable-unclip-l and karlo take"),
    "real-karlo-z-width": (lambda r: r.s.ka.decode(torch.randn(1, r.s.ka.embed_dim + 1), steps=1),
                           "z: expected OpenAI CLIP ViT-L/14 image embeddings"),
    "real-kandinsky-z-nan": (lambda r: r.s.k.decode(torch.full((1, 1280), float("nan")), steps=1), "z: hold NaN"),
    "real-kandinsky-long-prompt": (lambda r: r.s.k.prior([" ".join(["a red circle"] * 40)], steps=1),
                                   "prompts: text context is 77"),
    "real-stable-unclip-no-prior": (lambda r: r.s.su.prior(["a red circle"]),
                                    "kind: the 'stable-unclip-h' stack has no"),
    "real-kandinsky-no-caption": (lambda r: r.s.k.decode(r.s.k.encode_image([world.render(world.sample_scenes(1)[0])]),
                                                         prompts=["a red circle"], steps=1),
                                  "prompts: the 'kandinsky-2.2' stack has no caption input"),
    "real-kandinsky-seed": (lambda r: r.s.k.noise(1, -1), "seed: expected an integer seed"),
    "real-karlo-steps": (lambda r: r.s.ka.decode(torch.randn(1, r.s.ka.embed_dim), steps=0), "steps: expected an integer from 1"),
    "real-stable-unclip-variations-n": (lambda r: M.variations(r.s.su, world.render(world.sample_scenes(1)[0]), n=0),
                                        "n: expected an integer >= 1"),
}


@pytest.mark.parametrize("call, phrase", REAL_TABLE.values(), ids=list(REAL_TABLE))
def test_bad_input_on_the_real_stacks(r, call, phrase):
    with pytest.raises(ProbeInputError) as info:
        call(r)
    _names_the_argument(str(info.value), phrase)

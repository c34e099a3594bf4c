"""Conformance of every stack to the protocol of ``backends/base.py``: each member, the three
manipulations (paper §3) and each probe, run on each stack in STACKS.

Tiny random stacks of every kind (built by the tests from the same diffusers / transformers
classes as the public models, saved in their repositories' layouts, loaded through
``load_stack``) run in seconds; the shipped world stack is the integration case. A new backend
adds its fixture to STACKS and must pass the same module.
"""
import dataclasses
from pathlib import Path

import _tiny_real
from _tiny_real import single_thread  # noqa: F401  (autouse: one thread)

import pytest
import torch
from PIL import Image

from unclip_probe import manipulations as M
from unclip_probe import probes, world
from unclip_probe.backends import load_stack
from unclip_probe.backends.base import PRIOR_KINDS, Stack, StackDefaults
from unclip_probe.errors import ProbeInputError

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "world"
STEPS = 2  # sampling steps everywhere: the test checks the plumbing, the card measures quality

STACKS = [
    pytest.param("tiny_world", marks=pytest.mark.unit, id="world-tiny-random"),
    pytest.param("tiny_kandinsky", marks=pytest.mark.unit, id="kandinsky-2.2-tiny-random"),
    pytest.param("tiny_stable_unclip_h", marks=pytest.mark.unit, id="stable-unclip-h-tiny-random"),
    pytest.param("tiny_stable_unclip_l", marks=pytest.mark.unit, id="stable-unclip-l-tiny-random"),
    pytest.param("tiny_karlo", marks=pytest.mark.unit, id="karlo-tiny-random"),
    pytest.param("shipped_world", marks=pytest.mark.integration, id="world-shipped"),
]


@pytest.fixture(scope="module")
def tiny_world(stack):
    return load_stack("world", stack, device="cpu")


@pytest.fixture(scope="module")
def tiny_kandinsky(tmp_path_factory):
    folders = _tiny_real.tiny_kandinsky(tmp_path_factory.mktemp("kandinsky"))
    return load_stack("kandinsky-2.2", decoder=folders["decoder"], prior=folders["prior"], device="cpu")


def _stable_unclip(tmp_path_factory, variant: str) -> Stack:
    root = tmp_path_factory.mktemp(f"stable_unclip_{variant}")
    return load_stack(f"stable-unclip-{variant}", _tiny_real.tiny_stable_unclip(root, variant), device="cpu",
                      clip_text=_tiny_real.tiny_clip_text(root, variant))


@pytest.fixture(scope="module")
def tiny_stable_unclip_h(tmp_path_factory):
    return _stable_unclip(tmp_path_factory, "h")


@pytest.fixture(scope="module")
def tiny_stable_unclip_l(tmp_path_factory):
    return _stable_unclip(tmp_path_factory, "l")


@pytest.fixture(scope="module")
def tiny_karlo(tmp_path_factory):
    from _tiny_karlo import tiny_karlo as build

    root = tmp_path_factory.mktemp("karlo")
    return load_stack("karlo", build(root), image_encoder=build(root, variations=True), device="cpu")


@pytest.fixture(scope="module")
def shipped_world():
    return load_stack("world", SHIPPED, device="cpu")


@pytest.fixture(params=STACKS)
def s(request) -> Stack:
    return request.getfixturevalue(request.param)


def _images(n: int, seed: int = 3) -> list[Image.Image]:
    return [world.render(x) for x in world.sample_scenes(n, seed=seed, config=world.WorldConfig(max_objects=1))]


def _unit_rows(z: torch.Tensor, n: int, dim: int) -> bool:
    return z.shape == (n, dim) and torch.allclose(z.norm(dim=-1), torch.ones(n), atol=1e-4)


def test_facts(s):
    assert isinstance(s, Stack)
    assert isinstance(s.name, str) and s.name
    assert s.embed_dim == s.clip.embed_dim
    assert len(s.noise_shape) == 3 and all(isinstance(v, int) and v > 0 for v in s.noise_shape)
    assert isinstance(s.image_size, int) and s.image_size >= s.noise_shape[-1]
    assert set(s.prior_kinds) <= set(PRIOR_KINDS)
    assert isinstance(s.reads_caption, bool) and isinstance(s.reads_embedding, bool)
    assert s.checksums and all(isinstance(k, str) and isinstance(v, str) for k, v in s.checksums.items())
    assert isinstance(s.defaults, StackDefaults)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.defaults.decode.guidance = 9.0  # type: ignore[misc]


def test_encoders_give_the_decoders_embeddings_and_unit_clip_ones(s):
    z = s.encode_image(_images(2))  # what decode takes: unit norm or CLIP's raw scale (base.py)
    assert z.shape == (2, s.embed_dim) and torch.isfinite(z).all()
    assert _unit_rows(s.clip.encode_image(_images(2)), 2, s.embed_dim)
    assert _unit_rows(s.encode_text(["a red circle", "a blue square"]), 2, s.embed_dim)
    assert "visual.hook_out" in s.clip.hook_names()  # the CLIP's hooks are reachable
    assert list(s.clip.zero_shot(_images(1), ["circle", "square"]).columns[:2]) == ["circle", "square"]


def test_noise_is_the_seeded_x_T_of_decode(s):
    a, b = s.noise(2, seed=5), s.noise(2, seed=6)
    assert a.shape == (2, *s.noise_shape) and torch.equal(a, s.noise(2, seed=5)) and not torch.equal(a, b)
    z = s.encode_image(_images(2))
    drawn = s.decode(z, seed=5, steps=STEPS)
    given = s.decode(z, seed=5, x_T=a, steps=STEPS)
    assert [im.tobytes() for im in drawn] == [im.tobytes() for im in given]
    assert all(im.size == (s.image_size, s.image_size) for im in drawn)
    low = s.decode(z, seed=5, steps=STEPS, upsample=False)
    assert len(low) == 2 and low[0].size[0] <= s.image_size


def test_every_sampler_decodes_and_a_wrong_one_is_named(s):
    """sampler= on decode and on the text -> image call: each of diffusion.SAMPLERS draws (DPM-Solver++
    and DDIM from the same noise differ; each is deterministic), an unknown name or DDIM's eta with
    another sampler is one sentence."""
    from unclip_probe.diffusion import SAMPLERS

    z = s.encode_image(_images(2))
    drawn = {name: s.decode(z, seed=3, steps=3, sampler=name, upsample=False) for name in SAMPLERS}
    as_bytes = {name: [im.tobytes() for im in ims] for name, ims in drawn.items()}
    assert as_bytes["dpm++2m"] != as_bytes["ddim"]
    assert as_bytes["dpm++2m"] == [im.tobytes() for im in s.decode(z, seed=3, steps=3, sampler="dpm++2m",
                                                                      upsample=False)]
    with pytest.raises(ProbeInputError, match="^sampler: got 'dpm', expected one of"):
        s.decode(z, sampler="dpm")
    with pytest.raises(ProbeInputError, match="^eta: applies to the 'ddim' sampler only"):
        s.decode(z, eta=0.5, sampler="dpm++2m")
    if s.prior_kinds:
        assert len(s(["a red circle"], seed=0, steps=STEPS, sampler="dpm++2m")) == 1
        with pytest.raises(ProbeInputError, match="^sampler: "):
            s(["a red circle"], sampler="euler")


def test_priors_and_their_absence(s):
    for kind in s.prior_kinds:
        steps = STEPS if kind == "diffusion" else None  # the AR prior takes one step per PCA code
        z = s.prior(["a red circle"], seed=1, kind=kind, steps=steps)
        assert z.shape == (1, s.embed_dim) and torch.isfinite(z).all()
        assert torch.equal(z, s.prior(["a red circle"], seed=1, kind=kind, steps=steps))
    for kind in set(PRIOR_KINDS) - set(s.prior_kinds):
        with pytest.raises(ProbeInputError, match=f"^kind: the '{s.name}' stack has no"):
            s.prior(["a red circle"], kind=kind)
    with pytest.raises(ProbeInputError, match="^kind"):
        s.prior(["a red circle"], kind="gan")
    if s.prior_kinds:
        assert len(s(["a red circle"], seed=0, steps=STEPS)) == 1


def test_caption_input_or_its_absence(s):
    z = s.encode_image(_images(1))
    if s.reads_caption:
        assert len(s.decode(z, prompts=["a red circle"], steps=STEPS)) == 1
    else:
        with pytest.raises(ProbeInputError, match=f"^prompts: the '{s.name}' stack has no"):
            s.decode(z, prompts=["a red circle"], steps=STEPS)
    with pytest.raises(ProbeInputError, match="^z"):
        s.decode(torch.zeros(1, s.embed_dim + 1))


def test_invert_returns_the_decoders_noise_shape(s):
    x_T = s.invert(_images(2), steps=STEPS)
    assert x_T.shape == (2, *s.noise_shape) and torch.isfinite(x_T).all()
    with pytest.raises(ProbeInputError, match="^name"):
        s.with_decoder("no_such_decoder")


def test_manipulations(s):
    a, b = _images(2)
    assert len(M.variations(s, a, n=2, steps=STEPS)) == 2
    assert len(M.interpolate(s, a, b, n=3, steps=STEPS)) == 3
    assert len(M.interpolate(s, a, b, n=3, steps=STEPS, noise="inverted")) == 3
    frames = M.text_diff(s, a, "a red circle", "a blue circle", thetas=[0.0, 1.0], steps=STEPS)
    assert len(frames) == 2 and frames[0].size == (s.image_size, s.image_size)


def test_probes(s):
    pca = probes.pca_reconstruction(s, n_images=1, n_fit=40, ks=[2], steps=STEPS)
    assert list(pca.table.index) == [2, s.embed_dim]
    typo = probes.typographic_attack(s.clip, _images(2), list(world.SHAPES), "star", stack=s, n_decode=1,
                                     decode_steps=STEPS)
    assert len(typo.table) == 2 and typo.meta["decoded"]["n"] == 1
    bind = probes.attribute_binding(s, n_clip=4, n_gen=2, stack_seeds=1, steps=STEPS, prior_steps=STEPS,
                                    settings=probes.binding.SETTINGS[:3])
    assert "two-object prompts" in bind.table.index.get_level_values(0)
    assert set(bind.meta["clip"].index) == {"color", "relation"}


def test_a_widget_update(s):
    from unclip_probe.widgets import PCAExplorer

    w = PCAExplorer(s, n_fit=40, steps=STEPS)
    first, verdict = w.image.value, w.verdict.value
    w.k.value = w.k.options[0][1]  # move the slider: a new decode, a new verdict, no error
    assert w.image.value != first and w.verdict.value != verdict and w.live.errors.outputs == ()
    assert ("oracle:" in w.verdict.value) == (s.name == "world")  # other stacks are read by their CLIP

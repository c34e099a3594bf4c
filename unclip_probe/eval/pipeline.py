"""Oracle-read quality of the whole pipeline and of the paper's manipulations (issue 5).

    python -m unclip_probe.eval.pipeline checkpoints/world --n 200 [--figure notebooks/figures/pipeline.png]

Held-out prompts are captions of scenes from a fresh seed (any (shape, colour)
pair, the held-out ones included). Every image is the pipeline's 64 px output,
read by the oracle.

- Text -> image, per prior: single-object and two-object prompts, read two ways (`readings`):
  the scene exactly right (every object's shape and colour, nothing extra) and any drawn object
  matching; each split into in-distribution scenes and scenes with a held-out colour-shape pair.
  Also on the held-out wordings of `unclip_probe/world/wordings.py` (prompts the caption grammar
  never writes), per template.
- Paper §5.1: the same decoder fed (a) the prior's image embedding, (b) the text
  embedding z_t directly, (c) the true image embedding of a render of the caption's
  scene (the decoder's ceiling); and the mean cosine to that true embedding of the
  prior's samples and of z_t.
- Variations (§3.1): the scene's shapes and colours kept, and pixels changed.
- Interpolation (§3.2): each end reproduces its input's shapes and colours.
- Text diff (§3.3): "a red circle" -> "a blue circle" at theta = 0.5 turns the
  colour and keeps the shape.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from unclip_probe.eval.common import (FIGURE_SEED, INTERPOLATION_SEED, PAIR_SEED, PAIRS as PAIR, SINGLE_SEED,
                                      SINGLES as SINGLE, TEXT_DIFF_SEED, VARIATION_SEED)
from unclip_probe.manipulations import interpolate, text_diff, variations
from unclip_probe import validate
from unclip_probe.errors import bad_input
from unclip_probe.world import Scene, caption, detect, render, sample_scenes, shows_held_out_pair
from unclip_probe.world.wordings import PER_TEMPLATE, WORDING_SEED, Prompt, heldout_prompts

# The text -> image rows' scenes and noise. The batch is part of the seeding (chunk k of a batch
# draws from seed + its start), so a sweep that repeats a row must use the same seeds and batch.
TEXT_TO_IMAGE_BATCH = 100


def drawn(wanted: Sequence, reading: Scene, exact_count: bool) -> bool:
    """Every wanted object's (shape, colour) is among the objects the oracle read (as a multiset);
    with exact_count, nothing else was drawn."""
    want = Counter((o.shape, o.color) for o in wanted)
    got = Counter((o.shape, o.color) for o in reading.objects)
    return not (want - got) and (not exact_count or len(reading.objects) == len(wanted))


def _shares(exact: list[bool], any_match: list[bool], keep: Sequence[bool]) -> dict:
    """n, exact and any_match over the scenes where `keep` is true (None where there are none)."""
    e = [x for x, k in zip(exact, keep) if k]
    a = [x for x, k in zip(any_match, keep) if k]
    return {"n": len(e), "exact": round(float(np.mean(e)), 4) if e else None,
            "any_match": round(float(np.mean(a)), 4) if e else None}


def readings(scenes: Sequence[Scene], reads: Sequence[Scene], groups: Sequence[str] | None = None) -> dict:
    """The two oracle readings of images that should show `scenes` (issue 24), by shapes and colours:

    - ``exact``: the scene is exactly right, every wanted (shape, colour) drawn and nothing else
      (no extra or missing objects);
    - ``any_match``: every wanted (shape, colour) is among the objects drawn, extras allowed.

    Overall, then split into ``in_distribution`` and ``held_out_pairs`` (scenes showing a held-out
    colour-shape pair, paper §7's compositional question), and by ``groups`` (one label per scene,
    e.g. the prompt's template) under ``by_group``."""
    exact = [drawn(s.objects, r, exact_count=True) for s, r in zip(scenes, reads)]
    any_match = [drawn(s.objects, r, exact_count=False) for s, r in zip(scenes, reads)]
    held = [shows_held_out_pair(s) for s in scenes]
    out = {**_shares(exact, any_match, [True] * len(exact)),
           "in_distribution": _shares(exact, any_match, [not h for h in held]),
           "held_out_pairs": _shares(exact, any_match, held)}
    if groups is not None:
        out["by_group"] = {g: _shares(exact, any_match, [k == g for k in groups]) for g in dict.fromkeys(groups)}
    return out


PAIR_OUTCOMES = ("exact", "count", "swapped", "shapes", "colours", "shapes_and_colours")


def pair_outcome(scene: Scene, read: Scene) -> str:
    """Why a decode of a two-object `scene` is or is not exact (paper §7's binding question):
    "exact"; "count" (not two objects drawn); else two drawn, and "swapped" (the scene's shapes and
    its colours, bound the other way), "shapes" (the colours right, a shape wrong), "colours" (the
    shapes right, a colour wrong) or "shapes_and_colours" (both wrong)."""
    if len(scene.objects) != 2:
        raise bad_input("scene", f"expected a two-object scene, got {len(scene.objects)} objects")
    if drawn(scene.objects, read, exact_count=True):
        return "exact"
    if len(read.objects) != 2:
        return "count"
    same = lambda attr: sorted(getattr(o, attr) for o in scene.objects) == sorted(getattr(o, attr) for o in read.objects)  # noqa: E731
    shapes, colours = same("shape"), same("color")
    return "swapped" if shapes and colours else "colours" if shapes else "shapes" if colours else "shapes_and_colours"


def pair_outcomes(scenes: Sequence[Scene], reads: Sequence[Scene]) -> dict[str, float]:
    """Share of each of PAIR_OUTCOMES over decodes of two-object scenes (they sum to 1)."""
    got = [pair_outcome(s, r) for s, r in zip(scenes, reads)]
    return {k: round(got.count(k) / len(got), 4) for k in PAIR_OUTCOMES} if got else {}


def _pixels(img) -> np.ndarray:
    return np.asarray(img, dtype=np.float32) / 255.0


@torch.no_grad()
def text_to_image(pipe, scenes: list[Scene], *, seed: int, batch: int = 50, priors: Sequence[str] = ("diffusion", "ar"),
                  exact_count: bool = False, baselines: bool = True, prior_guidance: float | None = None,
                  prompts: Sequence[str] | None = None, groups: Sequence[str] | None = None,
                  decode_caption: bool = True, **decode_kw) -> dict:
    """Oracle readings and embedding cosines of the decoder fed each prior's sample (at prior_guidance;
    None: each prior's default) and, with baselines, z_t and the true z_i.

    decode_caption: the decoder also reads what was typed (the pipeline's way, paper §2.1); False
    decodes from the embedding alone (its caption-dropped branch), which tells how much of a row the
    caption path adds or costs.

    prompts: what is typed for each scene (default: its caption, seed + its index); groups: a label
    per scene for ``readings``' by_group. Per feed: ``readings`` (exact first, then any_match, split
    by held-out pairs), the cosine, and ``objects_right``, the row's former single figure (exact when
    exact_count, any_match otherwise), kept so that earlier JSON stays comparable; on two-object scenes
    also ``pair_outcomes``, why the pairs are not exact."""
    if prompts is not None and len(prompts) != len(scenes):
        raise bad_input("prompts", f"expected one prompt per scene ({len(scenes)}), got {len(prompts)}")
    validate.flag(decode_caption, "decode_caption")
    reads: dict[str, list[Scene]] = {}
    cos: dict[str, list[float]] = {}
    for i in range(0, len(scenes), batch):
        chunk = scenes[i:i + batch]
        said = ([caption(s, seed=seed + i + k) for k, s in enumerate(chunk)] if prompts is None
                else list(prompts[i:i + batch]))
        z_true = pipe.clip.encode_image([render(s) for s in chunk])  # (B, D), unit norm
        feeds = {"text_embedding": pipe.clip.encode_text(said), "true_image_embedding": z_true} if baselines else {}
        for kind in priors:
            feeds[f"{kind}_prior"] = pipe.prior(said, seed=seed + i, kind=kind, guidance=prior_guidance)
        for name, z in feeds.items():
            imgs = pipe.decode(z, seed=seed + i, prompts=said if decode_caption else None, **decode_kw)
            reads.setdefault(name, []).extend(detect(im) for im in imgs)
            cos.setdefault(name, []).extend((F.normalize(z.float(), dim=-1) * z_true).sum(-1).tolist())
    out = {}
    for name, r in reads.items():
        read = readings(scenes, r, groups)
        out[name] = {"objects_right": read["exact" if exact_count else "any_match"], "readings": read,
                     "cosine_to_true_image_embedding": round(float(np.mean(cos[name])), 4)}
        if all(len(s.objects) == 2 for s in scenes):
            out[name]["pair_outcomes"] = pair_outcomes(scenes, r)
    return out


def prompts_to_image(pipe, prompts: Sequence[Prompt], **kw) -> dict:
    """``text_to_image`` on held-out wording prompts (world/wordings.py): each typed as written,
    read against its own scene, grouped by template (``by_group``)."""
    return text_to_image(pipe, [p.scene for p in prompts], prompts=[p.text for p in prompts],
                         groups=[p.template for p in prompts], **kw)


def manipulation_scenes(m: int) -> dict[str, list]:
    """The held-out scenes every manipulation figure is measured on (pipeline_eval and the sweep):
    m two-object scenes for variations, m pairs of single objects for interpolation, m single
    objects for text diffs."""
    singles = sample_scenes(2 * m, seed=INTERPOLATION_SEED, config=SINGLE)
    return {"variations": sample_scenes(m, seed=VARIATION_SEED, config=PAIR),
            "interpolation": list(zip(singles[::2], singles[1::2])),
            "text_diff": sample_scenes(m, seed=TEXT_DIFF_SEED, config=SINGLE)}


@contextmanager
def inversions_reused(pipe):
    """Within the block pipe.invert runs once per (images, steps, z), so a sweep over eta or guidance
    decodes one DDIM inversion under every setting (the same x_T a fresh inversion gives)."""
    invert, cache, own = pipe.invert, {}, "invert" in vars(pipe)

    def cached(images, *, steps: int | None = None, z=None):
        arrs = [np.asarray(im) for im in (images if isinstance(images, (list, tuple)) else [images])]
        key = (tuple(hashlib.sha1(a.tobytes()).hexdigest() for a in arrs), tuple(a.shape for a in arrs), steps,
               None if z is None else hashlib.sha1(z.cpu().numpy().tobytes()).hexdigest())
        if key not in cache:
            cache[key] = invert(images, steps=steps, z=z)
        return cache[key]

    pipe.invert = cached
    try:
        yield pipe
    finally:  # leave the pipeline as it was found
        if own:
            pipe.invert = invert
        else:
            del pipe.invert


@torch.no_grad()
def variations_kept(pipe, scenes: list[Scene], n: int = 2, seed: int = 0, **kw) -> dict:
    """Share of variations whose oracle reading keeps the source scene's shapes and colours, and how far
    their pixels move: mean |variation - source| and |variation_a - variation_b| in [0, 1] units."""
    kept, to_src, between = [], [], []
    for k, s in enumerate(scenes):
        src = render(s)
        vs = variations(pipe, src, n=n, seed=seed + k, **kw)
        kept.extend(drawn(s.objects, detect(v), exact_count=True) for v in vs)
        to_src.extend(float(np.abs(_pixels(v) - _pixels(src)).mean()) for v in vs)
        between.append(float(np.abs(_pixels(vs[0]) - _pixels(vs[1])).mean()))
    return {"kept_shapes_and_colours": round(float(np.mean(kept)), 4), "n_scenes": len(scenes), "per_scene": n,
            "mean_abs_pixel_change_vs_source": round(float(np.mean(to_src)), 4),
            "mean_abs_pixel_difference_between_variations": round(float(np.mean(between)), 4)}


@torch.no_grad()
def interpolation_ends(pipe, pairs: list[tuple[Scene, Scene]], n: int = 3, seed: int = 0, **kw) -> dict:
    """Share of interpolation ends (theta = 0 and 1, x_T fixed) read as their own input's shapes and colours."""
    ends = []
    for k, (a, b) in enumerate(pairs):
        imgs = interpolate(pipe, render(a), render(b), n=n, seed=seed + k, **kw)
        ends += [drawn(a.objects, detect(imgs[0]), exact_count=True), drawn(b.objects, detect(imgs[-1]), exact_count=True)]
    return {"ends_reproduce_input": round(float(np.mean(ends)), 4), "n_pairs": len(pairs)}


@torch.no_grad()
def text_diff_turns(pipe, scenes: list[Scene], src: str = "a red circle", dst: str = "a blue circle",
                    thetas: Sequence[float] = (0.0, 0.5), caption_dst: bool = False, **kw) -> dict:
    """For red circles at the scenes' sizes and places: share of seeds whose text-diff image at each theta
    reads as a circle, as blue, and as both. caption_dst: the decoder also reads `dst` as its caption."""
    out = {t: {"circle": [], "blue": [], "blue_circle": []} for t in thetas}
    for k, s in enumerate(scenes):
        red = replace(s, objects=(replace(s.objects[0], shape="circle", color="red"),))
        imgs = text_diff(pipe, render(red), src, dst, thetas=list(thetas), seed=k, caption=dst if caption_dst else None,
                              **kw)
        for t, im in zip(thetas, imgs):
            objs = detect(im).objects
            out[t]["circle"].append(any(o.shape == "circle" for o in objs))
            out[t]["blue"].append(any(o.color == "blue" for o in objs))
            out[t]["blue_circle"].append(any(o.shape == "circle" and o.color == "blue" for o in objs))
    return {"src": src, "dst": dst, "decoder_caption": dst if caption_dst else None, "n_seeds": len(scenes),
            **{f"theta_{t:g}": {k: round(float(np.mean(v)), 4) for k, v in r.items()} for t, r in out.items()}}


# The integration tests' quick checks (tests/integration/test_world_pipeline.py): small, fixed
# scenes and seeds whose figures the tests hold to floors. One definition, so the floors' comments
# quote what `python benchmarks/integration_floor_figures.py` prints for exactly these calls.
QUICK_CHECKS = ("text_to_image", "wordings", "variations", "text_diff")


def quick_checks(pipe, parts: Sequence[str] = QUICK_CHECKS) -> dict:
    """The named quick checks: text -> image with the diffusion prior (24 single objects, 20 steps,
    32 px), the same on 24 held-out wordings (two per template), variations of 8 two-object scenes,
    and the red -> blue circle text diff on 8 seeds."""
    out: dict = {}
    if "text_to_image" in parts:
        out["text_to_image"] = text_to_image(pipe, sample_scenes(24, seed=4321, config=SINGLE), seed=0, batch=24,
                                             priors=("diffusion",), steps=20, upsample=False)["diffusion_prior"]
    if "wordings" in parts:  # the first two in-distribution prompts of each held-out single-object template
        per = sum(PER_TEMPLATE["single"])
        ps = [p for k, p in enumerate(heldout_prompts("single")) if k % per < 2]
        out["wordings"] = prompts_to_image(pipe, ps, seed=0, batch=24, priors=("diffusion",), baselines=False,
                                           steps=20, upsample=False)["diffusion_prior"]
    if "variations" in parts:
        out["variations"] = variations_kept(pipe, sample_scenes(8, seed=4242, config=PAIR), n=2)
    if "text_diff" in parts:
        out["text_diff"] = text_diff_turns(pipe, sample_scenes(8, seed=4243, config=SINGLE))
    return out


def figure(pipe, path: str, seed: int = FIGURE_SEED) -> None:
    """One PNG: text -> image for each prior, variations, an interpolation and a text diff (64 px each)."""
    from PIL import Image, ImageDraw

    prompts = ["a red circle", "a blue square on the left", "a green triangle above a yellow star",
               "two objects: a purple star and an orange circle"]
    rows: list[tuple[str, list]] = []
    for kind in pipe.prior_kinds:
        rows.append((f"{kind} prior", pipe(prompts, seed=seed, prior=kind)))
    a, b = (render(s) for s in sample_scenes(2, seed=seed, config=PAIR))
    rows.append(("variations", [a] + variations(pipe, a, n=3, seed=seed)))
    rows.append(("interpolate", interpolate(pipe, a, b, n=4, seed=seed)))
    one = sample_scenes(1, seed=seed + 1, config=SINGLE)[0]
    red = render(replace(one, objects=(replace(one.objects[0], shape="circle", color="red"),)))
    rows.append(("red -> blue", [red] + text_diff(pipe, red, "a red circle", "a blue circle", thetas=[0.25, 0.5, 0.75],
                                                     seed=seed)))
    label, cell = 96, 68
    sheet = Image.new("RGB", (label + cell * max(len(r) for _, r in rows), cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, imgs) in enumerate(rows):
        draw.text((4, r * cell + 28), name, fill="black")
        for c, im in enumerate(imgs):
            sheet.paste(im.convert("RGB").resize((64, 64)), (label + c * cell + 2, r * cell + 2))
    sheet.save(path)


def main(argv: Sequence[str] | None = None) -> dict:
    import argparse
    import json
    import sys

    from unclip_probe.checkpoints import stack_checksums
    from unclip_probe.backends.world.decode import DECODER_GUIDANCE
    from unclip_probe.backends.world.stack import INVERTED_GUIDANCE, TEXT_DIFF_GUIDANCE, VARIATION_ETA, UnCLIP
    from unclip_probe.backends.world.prior_sampling import PRIOR_GUIDANCE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--n", type=int, default=200, help="single-object prompts")
    p.add_argument("--n-pair", type=int, default=100, help="two-object prompts")
    p.add_argument("--n-manip", type=int, default=50, help="scenes for variations / text diffs; pairs for interpolation (0: text -> image only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--figure", default=None, help="also write the figure sheet here")
    p.add_argument("--wordings", action=argparse.BooleanOptionalAction, default=True,
                   help="also the held-out wordings (unclip_probe/world/wordings.py), singles and pairs")
    p.add_argument("--candidates", type=int, default=1,
                   help="decodes per embedding, the one nearest it kept (decode.pick_nearest); 1: the plain decode")
    args = p.parse_args(argv)
    pipe = UnCLIP.from_pretrained(args.folder, device=args.device)
    d = pipe.defaults
    out: dict = {"command": "python -m unclip_probe.eval.pipeline " + " ".join(sys.argv[1:] if argv is None else argv),
                 "checksums": stack_checksums(args.folder),
                 "n": args.n, "n_pair": args.n_pair, "n_manip": args.n_manip, "candidates": args.candidates,
                 "defaults": f"prior guidance {PRIOR_GUIDANCE['diffusion']:g} (diffusion) / {PRIOR_GUIDANCE['ar']:g} (AR), "
                 f"{d.prior.sampler} {d.prior.steps} steps; decoder guidance {DECODER_GUIDANCE:g}, {d.decode.sampler} "
                 f"{d.decode.steps} steps; upsampler {d.upsample_sampler} {d.upsample_steps} steps; "
                 f"variations eta {VARIATION_ETA:g}, guidance {INVERTED_GUIDANCE:g}, {d.variations.steps} steps; "
                 f"text diff guidance {TEXT_DIFF_GUIDANCE:g}, {d.text_diff.steps} steps; interpolation "
                 f"{d.interpolation.steps} steps", "seconds": {}}
    priors = tuple(pipe.priors)
    for name, n, cfg, seed, exact in (("single", args.n, SINGLE, SINGLE_SEED, False),
                                      ("pair", args.n_pair, PAIR, PAIR_SEED, True)):
        t = time.perf_counter()
        out[f"text_to_image_{name}"] = text_to_image(pipe, sample_scenes(n, seed=seed, config=cfg), seed=seed,
                                                     priors=priors, exact_count=exact, batch=TEXT_TO_IMAGE_BATCH,
                                                     candidates=args.candidates)
        out["seconds"][f"text_to_image_{name}"] = round(time.perf_counter() - t, 1)
    if args.wordings:  # issue 24: the held-out wordings (world/wordings.py), scored the same way
        for kind in ("single", "pair"):
            t = time.perf_counter()
            out[f"text_to_image_wordings_{kind}"] = prompts_to_image(
                pipe, heldout_prompts(kind), seed=WORDING_SEED, priors=priors, exact_count=kind == "pair",
                batch=TEXT_TO_IMAGE_BATCH, candidates=args.candidates)
            out["seconds"][f"text_to_image_wordings_{kind}"] = round(time.perf_counter() - t, 1)
    if args.n_manip == 0:  # text -> image only
        print(json.dumps(out, indent=2))
        return out
    # Manipulations at the pipeline's defaults (benchmarks/manipulation_sweep.py measures the
    # other settings on the same scenes, reusing one inversion); interpolation with fixed and inverted noise.
    scenes = manipulation_scenes(args.n_manip)
    t = time.perf_counter()
    out[f"variations_eta_{VARIATION_ETA:g}_guidance_{INVERTED_GUIDANCE:g}"] = variations_kept(
        pipe, scenes["variations"], eta=VARIATION_ETA, guidance=INVERTED_GUIDANCE)
    out["seconds"]["variations"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    for noise in ("fixed", "inverted"):
        out[f"interpolation_{noise}_noise"] = interpolation_ends(pipe, scenes["interpolation"], noise=noise)
    out["seconds"]["interpolation"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    for read_dst, suffix in ((False, ""), (True, "_caption_dst")):  # embedding alone; decoder also reads dst
        out[f"text_diff_guidance_{TEXT_DIFF_GUIDANCE:g}{suffix}"] = text_diff_turns(
            pipe, scenes["text_diff"], guidance=TEXT_DIFF_GUIDANCE, caption_dst=read_dst)
    out["seconds"]["text_diff"] = round(time.perf_counter() - t, 1)
    if args.figure:
        figure(pipe, args.figure)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

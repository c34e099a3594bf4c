"""Oracle-read quality of the decoder: reconstructions from true CLIP image embeddings (issue 4).

    python -m unclip_probe.eval.decoder checkpoints/world --n 500

Scenes come from a fresh seed. Each is rendered at 64 px, embedded by the world
CLIP, decoded at 32 px from one fixed noise per scene, and read by the oracle.
Single objects: shape and colour both right (also each alone, and by object
size, to show where the errors lie; and `eval.pipeline.readings`: the scene exactly right, or any
drawn object matching, each split by held-out colour-shape pairs); position as the half (left / right
of the midline, for objects outside the middle column), the grid column (left /
middle / right) and the exact cell of the object drawn for it. Two objects: both objects' shape and colour right, and why not
(`eval.pipeline.pair_outcomes`: wrong count, colours swapped between the shapes, a shape or a colour wrong).
"""
from __future__ import annotations

import numpy as np
import torch

from unclip_probe.backends.world.decode import DECODER_GUIDANCE, decode_images, pick_nearest
from unclip_probe.eval.common import INVERSION_SEED, PAIRS, RECONSTRUCTION_SEED, SINGLES, psnr
from unclip_probe.eval.pipeline import pair_outcomes, readings
from unclip_probe.imaging import pil_to_signed, to_unit
from unclip_probe.world import detect, render, sample_scenes
from unclip_probe.world.parse import SceneSpec
from unclip_probe.world.spec import cell_of

# Every decoder run is compared on RECONSTRUCTION_SEED's scenes and noise (pairs: + 1);
# `--seed` draws others, which chose nothing, for an out-of-sample check.
# The decoder integration test's quick check (tests/integration/test_world_decoder.py): the first 40 of
# those scenes at 20 steps; `python benchmarks/integration_floor_figures.py` prints its figures.
QUICK_N, QUICK_STEPS = 40, 20


def decode_scenes(unet, cfg, clip, scenes, *, steps, guidance, with_caption, seed, batch=50,
                  sampler: str = "ddim", candidates: int = 1, first: list | None = None) -> list:
    """32 px decodes in [0, 1] (3, S, S) of scenes from their CLIP image embeddings (captions masked out
    unless with_caption); the noise of chunk i is drawn from seed + i, so a seed fixes every image.

    candidates K > 1: K decodes per scene, the first from the same noise as K = 1 and the others from
    noise drawn after it; the one nearest the scene's embedding is kept (``decode.pick_nearest``).
    The first candidates (the plain decodes) are appended to ``first`` when given."""
    from unclip_probe.world import caption

    out, S, K = [], cfg.unet.image_size, candidates
    for i in range(0, len(scenes), batch):
        chunk = scenes[i:i + batch]
        z = clip.encode_image([render(s) for s in chunk])
        text, mask = clip.encode_text_tokens([caption(s, seed=k) for k, s in enumerate(chunk)])
        if not with_caption:
            mask = torch.zeros_like(mask)
        g = torch.Generator().manual_seed(seed + i)  # drawn on the CPU: the same noise on every device
        x_T = torch.cat([torch.randn(len(chunk), 3, S, S, generator=g)]
                        + ([torch.randn((K - 1) * len(chunk), 3, S, S, generator=g)] if K > 1 else []))
        x_T = x_T.to(next(unet.parameters()).device)
        x = decode_images(unet, cfg, z.repeat(K, 1) if cfg.unet.clip_dim else None, text.repeat(K, 1, 1),
                          mask.repeat(K, 1), x_T=x_T, steps=steps, guidance=guidance, sampler=sampler)
        if first is not None:
            first.extend(to_unit(x[:len(chunk)]).cpu())
        if K > 1:
            x, _ = pick_nearest(x.view(K, len(chunk), *x.shape[1:]), z, clip.encode_image)
        out.extend(to_unit(x).cpu())
    return out


def _object_ok(want, got) -> bool:
    return want.shape == got.shape and want.color == got.color


@torch.no_grad()
def reconstruction_accuracy(unet, cfg, clip, n: int = 500, steps: int = 25, guidance: float = DECODER_GUIDANCE,
                            with_caption: bool = False, seed: int = RECONSTRUCTION_SEED, sampler: str = "ddim",
                            n_pairs: int | None = None, candidates: int = 1) -> dict[str, float]:
    """Oracle readings of decodes from true embeddings (module docstring). candidates K > 1: each
    figure is of the decode `pick_nearest` keeps among K, and ``first_candidate`` holds the
    readings of the plain decodes (the K = 1 figures on the same scenes and noise, up to the
    float rounding of a K times larger batch)."""
    unet.eval()
    singles = sample_scenes(n, seed=seed, config=SINGLES)
    pairs = sample_scenes(n if n_pairs is None else n_pairs, seed=seed + 1, config=PAIRS)
    res, both_readings = {}, {}
    plain: dict[str, list] = {"singles": [], "pairs": []}
    kw = dict(steps=steps, guidance=guidance, with_caption=with_caption, sampler=sampler, candidates=candidates)
    reads = [detect(img) for img in decode_scenes(unet, cfg, clip, singles, seed=seed, first=plain["singles"], **kw)]
    sc, half, col, cell, count = [], [], [], [], []
    shape, color = [], []
    by_size: dict[str, list[bool]] = {}
    for s, d in zip(singles, reads):
        want = s.objects[0]
        count.append(len(d.objects) == 1)
        same = [o for o in d.objects if _object_ok(want, o)]
        sc.append(bool(same))
        by_size.setdefault(want.size, []).append(bool(same))
        shape.append(any(o.shape == want.shape for o in d.objects))
        color.append(any(o.color == want.color for o in d.objects))
        # Position is read off the object drawn for it: the one of the right shape and colour,
        # else the only object drawn. Half (the "which half"): left or right of the
        # vertical midline, asked of objects outside the middle column, where it is defined.
        drawn = same[0] if same else (d.objects[0] if len(d.objects) == 1 else None)
        got_col = None if drawn is None else cell_of(drawn.position)[1]
        want_col = cell_of(want.position)[1]
        if want_col != 1:
            half.append(got_col is not None and got_col != 1 and (got_col < 1) == (want_col < 1))
        col.append(got_col == want_col)
        cell.append(drawn is not None and drawn.position == want.position)
    both_readings["single_readings"] = readings(singles, reads)
    res.update(single_shape_color=np.mean(sc), single_half=np.mean(half), single_column=np.mean(col),
               single_cell=np.mean(cell), single_count=np.mean(count),
               single_shape=np.mean(shape), single_color=np.mean(color),
               **{f"single_shape_color_{size}": np.mean(v) for size, v in sorted(by_size.items())})
    reads = [detect(img) for img in decode_scenes(unet, cfg, clip, pairs, seed=seed + 1, first=plain["pairs"], **kw)]
    both, exact = [], []
    for s, d in zip(pairs, reads):
        both.append(all(any(_object_ok(w, o) for o in d.objects) for w in s.objects) and len(d.objects) == 2)
        exact.append(SceneSpec.from_scene(s).score(d)["objects"])
    res.update(pair_both_objects=np.mean(both), pair_exact=np.mean(exact))
    both_readings["pair_readings"] = readings(pairs, reads)
    both_readings["pair_outcomes"] = pair_outcomes(pairs, reads)  # why the pairs are not exact
    res.update(single_exact=both_readings["single_readings"]["exact"],
               pair_exact_shape_color=both_readings["pair_readings"]["exact"])
    if candidates > 1:
        first = {k: [detect(img) for img in v] for k, v in plain.items()}
        both_readings["first_candidate"] = {"single_readings": readings(singles, first["singles"]),
                                            "pair_readings": readings(pairs, first["pairs"]),
                                            "pair_outcomes": pair_outcomes(pairs, first["pairs"])}
    return {**{k: round(float(v), 4) for k, v in res.items()}, **both_readings}


@torch.no_grad()
def inversion_psnr(unet, cfg, clip, n: int = 100, steps: int = 50, seed: int = INVERSION_SEED) -> dict:
    """DDIM inversion round trip on 32 px world renders: invert under the image's own CLIP
    embedding (no caption), sample back with eta = 0 and the same steps; PSNR in dB."""
    from unclip_probe.backends.world.decode import invert_images

    scenes = sample_scenes(n, seed=seed)
    x0 = pil_to_signed([render(s, 32) for s in scenes])  # (n, 3, 32, 32)
    z = clip.encode_image([render(s) for s in scenes]) if cfg.unet.clip_dim else None
    empty_t = torch.zeros(n, 1, cfg.unet.text_dim)
    empty_m = torch.zeros(n, 1, dtype=torch.bool)
    x_T = invert_images(unet, cfg, x0, z, empty_t, empty_m, steps=steps)
    back = decode_images(unet, cfg, z, empty_t, empty_m, x_T=x_T, steps=steps, guidance=1.0)
    vals = [psnr(to_unit(a).numpy(), to_unit(b).numpy()) for a, b in zip(back, x0)]
    return {"inversion_psnr_db": round(float(np.mean(vals)), 2), "inversion_psnr_min_db": round(float(np.min(vals)), 2),
            "n": n, "steps": steps}


if __name__ == "__main__":
    import argparse
    import json
    import sys
    from pathlib import Path

    from unclip_probe.checkpoints import checksum_of
    from unclip_probe.clip import load_clip
    from unclip_probe.backends.world.stages import load_decoder

    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--name", default="decoder")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--sampler", default="ddim", help="ddim (the default these figures were first measured at), "
                   "ddpm or dpm++2m (the stack's decode default since issue 22, at 15 steps)")
    p.add_argument("--guidance", type=float, nargs="+", default=sorted({1.0, DECODER_GUIDANCE}))
    p.add_argument("--with-caption", action="store_true")
    p.add_argument("--inversion", action="store_true", help="also measure the DDIM inversion round trip")
    p.add_argument("--candidates", type=int, default=1, help="decodes per scene, the one nearest its embedding "
                   "kept (decode.pick_nearest); 1: the plain decode")
    p.add_argument("--n-pairs", type=int, default=None, help="pairs (default: --n)")
    p.add_argument("--seed", type=int, default=RECONSTRUCTION_SEED,
                   help="reconstruction scenes and noise (pairs use seed + 1; --inversion keeps its own); the "
                        "default is the scenes every earlier run was compared on, another re-measures out of sample")
    args = p.parse_args()
    unet, cfg = load_decoder(args.folder, args.name)
    clip = load_clip(args.folder)
    out = {"n": args.n, "steps": args.steps, "sampler": args.sampler, "with_caption": args.with_caption,
           "command": "python -m unclip_probe.eval.decoder " + " ".join(sys.argv[1:]),
           "weights_checksum": checksum_of(Path(args.folder) / f"{args.name}.safetensors"),
           "clip_checksum": clip.checksum, "seed": args.seed, "candidates": args.candidates}
    for gs in args.guidance:
        out[f"guidance_{gs:g}"] = reconstruction_accuracy(unet, cfg, clip, args.n, args.steps, gs, args.with_caption,
                                                             seed=args.seed, sampler=args.sampler,
                                                             n_pairs=args.n_pairs, candidates=args.candidates)
    if args.inversion:
        out["inversion"] = inversion_psnr(unet, cfg, clip)
    print(json.dumps(out, indent=2))

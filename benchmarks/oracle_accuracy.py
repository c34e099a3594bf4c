"""Oracle accuracy on fresh scenes (issue: foundation; docs/design.md §4).

    python benchmarks/oracle_accuracy.py --n 2000 > benchmarks/results/oracle_accuracy.json

Conditions: clean 64 px; 64 -> 32 px box downsampling; 64 px with Gaussian blur
sigma 0.5 and Gaussian noise sigma 0.05 (a stand-in for generated images); the same
degradation at 32 px. Exact scene = object count and every object's shape, colour,
size and grid position. Per-attribute rates are over all scenes (an attribute is
right when every object in the scene has it right under the best matching).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.ndimage import gaussian_filter

from unclip_probe import world
from unclip_probe.world.parse import SceneSpec


def degrade(img, rng: np.random.Generator) -> np.ndarray:
    a = gaussian_filter(np.asarray(img, dtype=np.float32) / 255.0, sigma=(0.5, 0.5, 0))
    return np.clip(a + rng.normal(0.0, 0.05, a.shape), 0.0, 1.0)


def evaluate(scenes, make_image) -> dict:
    keys = ("exact", "count", "shape", "color", "size", "position", "note", "background")
    hits = {k: 0 for k in keys}
    for s in scenes:
        score = SceneSpec.from_scene(s).score(world.detect(make_image(s)))
        score["exact"] = score["objects"]  # objects only: the note word is reported on its own
        for k in keys:
            hits[k] += bool(score[k])
    return {k: round(v / len(scenes), 4) for k, v in hits.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=20261125)
    args = p.parse_args()
    scenes = world.sample_scenes(args.n, seed=args.seed)
    rng = np.random.default_rng(0)
    conditions = {
        "64px": lambda s: world.render(s, 64),
        "32px (box-downsampled from 64)": lambda s: world.render(s, 32),
        "64px + blur 0.5 + noise 0.05": lambda s: degrade(world.render(s, 64), rng),
        "32px + blur 0.5 + noise 0.05": lambda s: degrade(world.render(s, 32), rng),
    }
    out = {"n_scenes": args.n, "seed": args.seed, "scenes_with_note": sum(s.note is not None for s in scenes)}
    for name, fn in conditions.items():
        t = time.perf_counter()
        out[name] = evaluate(scenes, fn)
        out[name]["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

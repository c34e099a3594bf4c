"""Rendering speed of the shape world on one core (docs/design.md §4: >= 5,000 images/s).

    python benchmarks/bench_world.py [--n 5000]

Prints JSON. Speed is measured here, never asserted in a timed test.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from unclip_probe import world  # noqa: E402
from unclip_probe.world.dataset import world_item  # noqa: E402


def rate(fn, n: int) -> float:
    fn(0)  # warm caches (sprites, fonts, note patches)
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=5000)
    args = p.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    scenes = world.sample_scenes(args.n, seed=0)
    for s in scenes[:200]:  # note patches are cached per word; warm them
        world.render_array(s)
    out = {
        "machine": f"{platform.processor() or platform.machine()}, 1 core pinned, python {platform.python_version()}",
        "n": args.n,
        "render_64px_images_per_s": rate(lambda i: world.render_array(scenes[i % args.n], 64), args.n),
        "render_32px_images_per_s": rate(lambda i: world.render_array(scenes[i % args.n], 32), args.n),
        "render_pil_64px_images_per_s": rate(lambda i: world.render(scenes[i % args.n], 64), args.n),
        "sample_scene_per_s": rate(lambda i: world.sample_scene(0, i), args.n),
        "dataset_item_per_s (sample+render+caption+tensor)": rate(lambda i: world_item(0, i, 64), args.n),
        "detect_64px_per_s": rate(lambda i: world.detect(world.render(scenes[i % args.n])), min(args.n, 300)),
    }
    print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()

"""Sampling speed of the world stack, per stage and end to end (docs/design.md §6, issue 5).

    python benchmarks/bench_sampling.py [--checkpoints checkpoints/world] [--batch 1] [--reps 5]
                                        [--out benchmarks/results/bench_sampling.json]

For every device present (CPU; CUDA when there is one) and every dtype it runs
(CPU fp32; CUDA fp32, bf16, fp16 autocast), one call of the pipeline at its
default steps: text -> prior -> decoder -> upsampler when the stack has a
prior, else CLIP embedding of a render -> decoder -> upsampler. Per stage:

- ``forward_ms``: the network's pure forward time per call, measured by
  replaying the exact inputs of its first call in a tight loop;
- ``calls``: forward calls the stage made in the pipeline run (per batch);
- ``forward_total_ms``: calls x forward_ms.

End to end: ``wall_ms`` (median of --reps runs), ``overhead_ratio`` =
wall_ms / sum of forward_total_ms (1.0 would mean no time outside the
networks; the issue asks <= 1.15), images/s and peak memory. Prints JSON and
writes it to --out. Speed is measured here, never asserted in a timed test.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch

from unclip_probe.device import autocast
from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.world import render, sample_scenes


class FirstCall:
    """Counts the calls of one network entry point and keeps the inputs of the first.

    The entry point is a method of a module: ``forward`` for the U-Nets and the text
    transformer, ``encode_prefix`` / ``forward_prefixed`` for the diffusion prior, whose
    sampler caches the caption prefix and never calls its plain forward. The method is
    shadowed on the instance while counting, then restored.
    """

    def __init__(self, module: torch.nn.Module, method: str = "forward"):
        self.module, self.method, self.calls, self.inputs = module, method, 0, None
        self.fn = getattr(module, method)

        def counted(*args, **kwargs):
            self.calls += 1
            if self.inputs is None:
                self.inputs = (args, kwargs)
            return self.fn(*args, **kwargs)

        setattr(module, method, counted)

    def remove(self):
        delattr(self.module, self.method)  # the class's method shows through again


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def replay_ms(fn, inputs, device: torch.device, amp_dtype, reps: int = 20) -> float:
    """Median pure forward time (ms) of the network call ``fn`` on the recorded inputs, under the pipeline's autocast."""
    args, kwargs = inputs
    times = []
    with torch.no_grad(), autocast(device, amp_dtype):
        fn(*args, **kwargs)  # warm
        for _ in range(reps):
            _sync(device)
            t = time.perf_counter()
            fn(*args, **kwargs)
            _sync(device)
            times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def bench(folder: str, device: str, dtype: str, batch: int, reps: int) -> dict:
    pipe = UnCLIP.from_pretrained(folder, device=device, dtype=dtype)  # the pipeline applies its own autocast
    dev = pipe.device
    prior_kind = "diffusion" if "diffusion" in pipe.priors else None
    prompts = ["a red circle left of a blue square"] * batch
    z_img = pipe.clip.encode_image([render(s) for s in sample_scenes(batch, seed=0)])

    def run():
        if prior_kind:
            return pipe(prompts, seed=0, prior=prior_kind)  # the pipeline's (and widgets') default steps
        return pipe.decode(z_img, seed=0)

    stages = {"decoder": (pipe.decoder, "forward")}
    if pipe.upsampler is not None:
        stages["upsampler"] = (pipe.upsampler, "forward")
    if prior_kind:
        prior = pipe.priors[prior_kind][0]
        stages["prior_prefix"] = (prior, "encode_prefix")  # the caption prefix, once per run (cond, uncond)
        stages["prior"] = (prior, "forward_prefixed")  # each sampling step
        # The text tower's transformer (open_clip CLIP keeps it at .transformer; CustomTextCLIP at .text).
        m = pipe.clip.model
        stages["clip_text"] = (getattr(m, "transformer", None) or m.text, "forward")
    run()  # warm-up: allocator, kernels, caches
    hooks = {name: FirstCall(m, method) for name, (m, method) in stages.items()}
    run()
    for h in hooks.values():
        h.remove()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    walls = []
    for _ in range(reps):
        _sync(dev)
        t = time.perf_counter()
        run()
        _sync(dev)
        walls.append(1e3 * (time.perf_counter() - t))
    wall = statistics.median(walls)
    per_stage = {}
    for name, h in hooks.items():
        ms = replay_ms(h.fn, h.inputs, dev, pipe.amp_dtype)
        per_stage[name] = {"forward_ms": round(ms, 3), "calls": h.calls, "forward_total_ms": round(ms * h.calls, 2)}
    compute = sum(s["forward_total_ms"] for s in per_stage.values())
    peak = (torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"device": str(dev), "dtype": dtype, "batch": batch, "mode": "text->image" if prior_kind else
            "embedding->image (no prior in this stack)", "stages": per_stage, "wall_ms": round(wall, 2),
            "overhead_ratio": round(wall / compute, 3), "images_per_s": round(1e3 * batch / wall, 2),
            "peak_memory_mb": round(peak, 1), "peak_memory_kind": "cuda allocated" if dev.type == "cuda"
            else "process max RSS"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", default="checkpoints/world")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (the widget target is for 2 cores)")
    p.add_argument("--out", default="benchmarks/results/bench_sampling.json")
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped where absent")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    wanted = args.devices.split(",")
    configs = [("cpu", "fp32")] if "cpu" in wanted else []
    if torch.cuda.is_available() and "cuda" in wanted:
        configs += [("cuda", "fp32"), ("cuda", "bf16"), ("cuda", "fp16")]
    results = [bench(args.checkpoints, d, t, args.batch, args.reps) for d, t in configs]
    out = {"command": "python benchmarks/bench_sampling.py", "checkpoints": args.checkpoints,
           "machine": f"{platform.platform()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
                      + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
           "results": results}
    text = json.dumps(out, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

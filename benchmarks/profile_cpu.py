"""Where the milliseconds of one 64 px text -> image go on the CPU, and what makes it faster.

    python benchmarks/profile_cpu.py [--checkpoints checkpoints/world] [--out benchmarks/results/profile_cpu.json]

At the stack's default sampling settings, batch 1 and 16, 2 threads:

- ``breakdown``: torch.profiler self-CPU time per operator family (convolution, attention,
  matmul / linear, normalisation, elementwise and copies, other), and the rest of the wall time
  (Python, the samplers' host arithmetic, allocation): wall minus the operators' total;
- ``variants``: wall ms per image for what might help on a CPU, each measured the same way
  (median of --reps calls): 1 vs 2 threads, channels-last U-Nets, torch.compile of the U-Nets
  (mode "default"; its compile time reported apart). A variant is kept in the library only if it
  measures faster here; the JSON says which were.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

FAMILIES = {
    "convolution": ("conv", "mkldnn_convolution"),
    "attention": ("scaled_dot_product", "attention", "softmax", "baddbmm", "bmm"),
    "matmul / linear": ("addmm", "mm", "linear", "matmul"),
    "normalisation": ("group_norm", "layer_norm", "native_group_norm", "native_layer_norm", "norm"),
    "elementwise and copies": ("add", "mul", "sub", "div", "silu", "gelu", "cat", "copy", "clone", "to", "clamp",
                               "exp", "sqrt", "sigmoid", "neg", "pow", "contiguous", "fill", "zero", "cos", "sin",
                               "where", "expand", "repeat", "interpolate", "upsample"),
}


def family(name: str) -> str:
    op = name.replace("aten::", "")
    for fam, keys in FAMILIES.items():
        if any(op == k or op.startswith(k + "_") or op.startswith(k) for k in keys):
            return fam
    return "other"


def wall_ms(pipe, prompts, reps: int) -> float:
    pipe(prompts, seed=0)  # warm
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        pipe(prompts, seed=0)
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def breakdown(pipe, prompts) -> dict:
    from torch.profiler import ProfilerActivity, profile

    pipe(prompts, seed=0)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        pipe(prompts, seed=0)
    wall = 1e3 * (time.perf_counter() - t)
    fams: dict[str, float] = {}
    for ev in prof.key_averages():
        fams[family(ev.key)] = fams.get(family(ev.key), 0.0) + ev.self_cpu_time_total / 1e3
    ops = sum(fams.values())
    out = {k: round(v, 1) for k, v in sorted(fams.items(), key=lambda kv: -kv[1])}
    out["outside the operators (Python, sampler arithmetic, allocation)"] = round(max(wall - ops, 0.0), 1)
    return {"wall_ms_under_profiler": round(wall, 1), "ms": out}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", default="checkpoints/world")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also try torch.compile (minutes of compile time)")
    p.add_argument("--out", default="benchmarks/results/profile_cpu.json")
    args = p.parse_args()
    from unclip_probe.backends.world.stack import UnCLIP

    torch.set_grad_enabled(False)
    prompt = "a red circle to the left of a blue square"
    out = {"command": "python benchmarks/profile_cpu.py" + (" --compile" if args.compile else ""),
           "machine": f"{platform.platform()}, torch {torch.__version__}", "batches": {}}
    for batch in (1, 16):
        torch.set_num_threads(2)
        pipe = UnCLIP.from_pretrained(args.checkpoints, device="cpu")
        prompts = [prompt] * batch
        d = pipe.defaults
        row = {"defaults": {"decoder": [d.decode.sampler, d.decode.steps], "prior": [d.prior.sampler, d.prior.steps],
                            "upsample_steps": d.upsample_steps},
               "breakdown": breakdown(pipe, prompts), "variants": {}}
        base = wall_ms(pipe, prompts, args.reps)
        row["variants"]["as shipped (2 threads)"] = round(base / batch, 1)
        torch.set_num_threads(1)
        row["variants"]["1 thread"] = round(wall_ms(pipe, prompts, args.reps) / batch, 1)
        torch.set_num_threads(2)
        for net in (pipe.decoder, pipe.upsampler):
            net.to(memory_format=torch.channels_last)
        row["variants"]["channels-last U-Nets"] = round(wall_ms(pipe, prompts, args.reps) / batch, 1)
        for net in (pipe.decoder, pipe.upsampler):
            net.to(memory_format=torch.contiguous_format)
        if args.compile:
            t = time.perf_counter()
            pipe.decoder.forward = torch.compile(pipe.decoder.forward)
            pipe.upsampler.forward = torch.compile(pipe.upsampler.forward)
            pipe(prompts, seed=0)
            row["compile_seconds"] = round(time.perf_counter() - t, 1)
            row["variants"]["torch.compile U-Nets"] = round(wall_ms(pipe, prompts, args.reps) / batch, 1)
        row["fastest"] = min(row["variants"], key=row["variants"].get)
        out["batches"][str(batch)] = row
        print(json.dumps({batch: row}, indent=2), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

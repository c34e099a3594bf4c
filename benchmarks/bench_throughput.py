"""Batched text -> image throughput and model-FLOP utilisation (MFU) of the world stack.

    python benchmarks/bench_throughput.py --device cuda --batches 256,1024,4096 [--compile] [--dtype bf16]
    python benchmarks/bench_throughput.py --device cpu --batches 1,16              # the code path, on a CPU

Per batch size: images/s of the whole call (prior, decoder, upsampler at the stack's defaults;
the guidance pair runs as one batched forward, diffusion/guidance.py), and MFU = network FLOPs per
image x images/s / the device's peak (--peak-tflops; for CUDA the bf16 dense peak of the GPU named
in the JSON). FLOPs per image are counted once by torch.utils.flop_counter on one forward of each
network at batch 1 x the forward calls per image (the same on every device). --compile wraps the
U-Nets and the prior in torch.compile(mode="reduce-overhead"), CUDA graphs included, on CUDA.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def flops_per_image(pipe) -> dict:
    """Network FLOPs of one 64 px image at the stack's defaults, by stage (counted at batch 1)."""
    from torch.utils.flop_counter import FlopCounterMode

    from unclip_probe.world import render, sample_scenes

    d = pipe.defaults
    z = pipe.clip.encode_image([render(sample_scenes(1, seed=0)[0])])
    dev, S = pipe.device, pipe.decoder_cfg.unet.image_size
    text = torch.zeros(2, 1, pipe.decoder_cfg.unet.text_dim, device=dev)
    mask = torch.ones(2, 1, dtype=torch.bool, device=dev)
    out = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:  # one guided decoder forward: the (cond, uncond) pair
            pipe.decoder(torch.zeros(2, 3, S, S, device=dev), torch.zeros(2, dtype=torch.long, device=dev),
                         clip_emb=torch.cat([z, z]), text=text, text_mask=mask)
        out["decoder"] = fc.get_total_flops() * d.decode.steps
        if pipe.upsampler is not None:
            H = pipe.upsampler_cfg.high_res
            with FlopCounterMode(display=False) as fc:
                pipe.upsampler(torch.zeros(1, 6, H, H, device=dev), torch.zeros(1, dtype=torch.long, device=dev))
            out["upsampler"] = fc.get_total_flops() * d.upsample_steps
        if "diffusion" in pipe.priors:
            with FlopCounterMode(display=False) as fc:
                pipe.prior(["a red circle"], seed=0, steps=1)  # prefix encoding + one guided step, 2 candidates
            one = fc.get_total_flops()
            with FlopCounterMode(display=False) as fc:
                pipe.prior(["a red circle"], seed=0, steps=2)
            step = fc.get_total_flops() - one
            out["prior"] = one + step * (d.prior.steps - 1)
    out["total"] = sum(out.values())
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", default="checkpoints/world")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", help="CUDA autocast dtype (bf16 | fp16 | fp32); CPU runs fp32")
    p.add_argument("--batches", default="256,1024,4096")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak (H100 SXM bf16: 989)")
    p.add_argument("--out", default="benchmarks/results/bench_throughput.json")
    args = p.parse_args()
    from unclip_probe.backends.world.stack import UnCLIP

    torch.set_grad_enabled(False)
    dtype = args.dtype if args.device.startswith("cuda") else "fp32"
    pipe = UnCLIP.from_pretrained(args.checkpoints, device=args.device, dtype=dtype)
    flops = flops_per_image(pipe)
    if args.compile:
        for net in (pipe.decoder, pipe.upsampler):
            net.forward = torch.compile(net.forward, mode="reduce-overhead")
    sync = torch.cuda.synchronize if pipe.device.type == "cuda" else (lambda: None)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        prompts = ["a red circle to the left of a blue square"] * batch
        pipe(prompts, seed=0)  # warm (and compile)
        times = []
        for _ in range(args.reps):
            sync()
            t = time.perf_counter()
            pipe(prompts, seed=0)
            sync()
            times.append(time.perf_counter() - t)
        s = statistics.median(times)
        row = {"batch": batch, "seconds": round(s, 3), "images_per_s": round(batch / s, 1),
               "achieved_tflops": round(flops["total"] * batch / s / 1e12, 3)}
        if args.peak_tflops:
            row["mfu"] = round(row["achieved_tflops"] / args.peak_tflops, 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name() if pipe.device.type == "cuda" else platform.processor() or "cpu"
    out = {"command": "python benchmarks/bench_throughput.py " + " ".join(
               f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False) and k != "out"),
           "device": f"{pipe.device} ({name}), {dtype}", "compile": args.compile,
           "defaults": {"decoder": [pipe.defaults.decode.sampler, pipe.defaults.decode.steps],
                        "prior": [pipe.defaults.prior.sampler, pipe.defaults.prior.steps],
                        "upsampler": [pipe.defaults.upsample_sampler, pipe.defaults.upsample_steps]},
           "flops_per_image": flops, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

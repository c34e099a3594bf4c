"""Speed of each real stack's decode against diffusers' own pipeline for the same call.

    python benchmarks/bench_stacks.py [--steps 10] [--repeats 5] [--out benchmarks/results/bench_stacks.json]

On the CPU: tiny random models of each kind (``tests/unit/_tiny_real.py``, the same classes and
layouts as the public repositories), the same embeddings, latents, steps and guidance for
``stack.decode`` and the pipeline (Kandinsky 2.2: ``KandinskyV22Pipeline``; Stable unCLIP:
``StableUnCLIPImg2ImgPipeline`` with ``image_embeds``), each with a DDIM scheduler; median wall
time of `repeats` calls after one warm-up, the best of three such medians taken in turn
with the pipeline's (so a change of load on the machine hits both alike). Target: our decode at most 1.05x the pipeline's time.
On CUDA (when a GPU is present, else "not measured"): the published configs with random fp16
weights at each model's native size, seconds per image for both and peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))

import _tiny_real  # noqa: E402  (test helpers: tiny random models in the public layouts)

from unclip_probe.backends import load_stack  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _kandinsky(root: Path, steps: int):
    from diffusers import DDIMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline

    f = _tiny_real.tiny_kandinsky(root)
    stack = load_stack("kandinsky-2.2", decoder=f["decoder"], prior=f["prior"], device="cpu")
    pipe = KandinskyV22Pipeline.from_pretrained(
        f["decoder"], scheduler=DDIMScheduler.from_pretrained(f["decoder"], subfolder="scheduler"), local_files_only=True)
    negative = KandinskyV22PriorPipeline.from_pretrained(f["prior"], local_files_only=True).get_zero_embed(1)
    g = stack.defaults.decode.guidance
    z, x_T, S = stack.encode_image(_tiny_real.world_images(1)), stack.noise(1, seed=5), stack.image_size
    ours = lambda: stack.decode(z, x_T=x_T, steps=steps, guidance=g)  # noqa: E731
    ref = lambda: pipe(image_embeds=z, negative_image_embeds=negative, latents=x_T.clone(), height=S, width=S,  # noqa: E731
                       num_inference_steps=steps, guidance_scale=g, output_type="pil").images
    return stack, pipe, ours, ref


def _stable_unclip(root: Path, steps: int, variant: str):
    from diffusers import DDIMScheduler, StableUnCLIPImg2ImgPipeline

    folder = _tiny_real.tiny_stable_unclip(root, variant)
    stack = load_stack(f"stable-unclip-{variant}", folder, device="cpu")
    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(
        folder, scheduler=DDIMScheduler.from_pretrained(folder, subfolder="scheduler"), local_files_only=True)
    g = stack.defaults.decode.guidance
    z, x_T, S = stack.encode_image(_tiny_real.world_images(1)), stack.noise(1, seed=5), stack.image_size
    ours = lambda: stack.decode(z, x_T=x_T, steps=steps, guidance=g, seed=5)  # noqa: E731
    ref = lambda: pipe(prompt=[""], image_embeds=z, noise_level=stack.noise_level, latents=x_T.clone(),  # noqa: E731
                       generator=torch.Generator().manual_seed(6), num_inference_steps=steps, guidance_scale=g,
                       height=S, width=S, output_type="pil").images
    return stack, pipe, ours, ref


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/bench_stacks.json")
    args = p.parse_args()
    out = {"command": "python benchmarks/bench_stacks.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                      f"{torch.get_num_threads()} threads", "steps": args.steps, "repeats": args.repeats,
           "cpu_tiny_models": {}, "target": "our decode <= 1.05x the pipeline's time for the same call"}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name, build in (("kandinsky-2.2", lambda r: _kandinsky(r, args.steps)),
                            ("stable-unclip-h", lambda r: _stable_unclip(r, args.steps, "h")),
                            ("stable-unclip-l", lambda r: _stable_unclip(r, args.steps, "l"))):
            stack, pipe, ours, ref = build(Path(tmp) / name)
            pipe.set_progress_bar_config(disable=True)
            # interleaved, so a load change on the machine hits both alike
            t_ours, t_ref = [], []
            for _ in range(3):
                t_ours.append(_median_seconds(ours, args.repeats))
                t_ref.append(_median_seconds(ref, args.repeats))
            a, b = min(t_ours), min(t_ref)
            out["cpu_tiny_models"][name] = {"ours_s": round(a, 4), "pipeline_s": round(b, 4),
                                            "ratio": round(a / b, 3), "met": a / b <= 1.05}
            print(name, out["cpu_tiny_models"][name], flush=True)
    out["cuda_native_size"] = ("not measured: no GPU on this machine" if not torch.cuda.is_available()
                               else "not measured: the CUDA run of the published configs is not written yet")
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

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


def bench(folder: str, device: str, dtype: str, batch: int, reps: int, today: bool = False) -> dict:
    """One end-to-end call per rep at the stack's defaults, or (today) at the defaults before
    DPM-Solver++: DDIM 25 decoder steps and DDIM 64 prior steps."""
    pipe = UnCLIP.from_pretrained(folder, device=device, dtype=dtype)  # the pipeline applies its own autocast
    old = {"sampler": "ddim", "steps": 25, "prior_sampler": "ddim", "prior_steps": 64, "upsample_steps": 10} \
        if today else {}
    dev = pipe.device
    prior_kind = "diffusion" if "diffusion" in pipe.priors else None
    prompts = ["a red circle left of a blue square"] * batch
    z_img = pipe.clip.encode_image([render(s) for s in sample_scenes(batch, seed=0)])

    def run():
        if prior_kind:
            return pipe(prompts, seed=0, prior=prior_kind, **old)  # the pipeline's (and widgets') defaults
        return pipe.decode(z_img, seed=0, **{k: v for k, v in old.items() if not k.startswith("prior")})

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
    d = pipe.defaults
    setting = old or {"sampler": d.decode.sampler, "steps": d.decode.steps, "prior_sampler": d.prior.sampler,
                      "prior_steps": d.prior.steps, "upsample_steps": d.upsample_steps}
    return {"setting": ("before DPM-Solver++: " if today else "defaults: ") + json.dumps(setting),
            "device": str(dev), "dtype": dtype, "batch": batch, "mode": "text->image" if prior_kind else
            "embedding->image (no prior in this stack)", "stages": per_stage, "wall_ms": round(wall, 2),
            "overhead_ratio": round(wall / compute, 3), "images_per_s": round(1e3 * batch / wall, 2),
            "peak_memory_mb": round(peak, 1), "peak_memory_kind": "cuda allocated" if dev.type == "cuda"
            else "process max RSS"}


# ---------------------------------------------------------------------------- samplers side by side
TODAY = {"sampler": "ddim", "steps": 25}  # the decoder's default before DPM-Solver++ (issue 22)


def diffusers_dpm_decode(pipe, z, x_T, steps: int, guidance: float):
    """The peer a user would pick: diffusers' DPMSolverMultistepScheduler (DPM-Solver++ 2M, its defaults
    otherwise) driving this stack's decoder network, with the stack's guidance and conditioning."""
    from diffusers import DPMSolverMultistepScheduler

    from unclip_probe.backends.world.decode import _conditioning
    from unclip_probe.diffusion import cfg_denoiser

    cfg = pipe.decoder_cfg.diffusion
    sched = DPMSolverMultistepScheduler(num_train_timesteps=cfg.T, beta_schedule={"cosine": "squaredcos_cap_v2",
                                        "linear": "linear"}[cfg.schedule],
                                        prediction_type={"v": "v_prediction", "eps": "epsilon", "x0": "sample"}[
                                            cfg.prediction],
                                        rescale_betas_zero_snr=cfg.zero_terminal_snr, timestep_spacing="trailing",
                                        algorithm_type="dpmsolver++", solver_order=2)
    sched.set_timesteps(steps)
    B = z.shape[0]
    text = torch.zeros(B, 1, pipe.decoder_cfg.unet.text_dim)
    mask = torch.zeros(B, 1, dtype=torch.bool)
    model_fn, cond, uncond = _conditioning(pipe.decoder, pipe.decoder_cfg, B, z, text, mask)
    den = cfg_denoiser(model_fn, cond, uncond, guidance)
    x = x_T
    for t in sched.timesteps:
        x = sched.step(den(x, t.expand(B)), t, x).prev_sample
    return x.clamp(-1, 1)


def side_by_side(folder: str, new: dict, n: int = 150, batch: int = 50) -> dict:
    """Decodes of n single-object scenes from their true CLIP image embeddings (guidance as the stack's
    default, one noise per scene shared by every setting), read by the oracle, at today's DDIM 25,
    the new default and diffusers' DPM-Solver++ at the new default's steps: ms per image and readings."""
    from unclip_probe.eval.common import RECONSTRUCTION_SEED, SINGLES
    from unclip_probe.imaging import signed_to_pil
    from unclip_probe.world import detect

    pipe = UnCLIP.from_pretrained(folder, device="cpu")
    scenes = sample_scenes(n, seed=RECONSTRUCTION_SEED + 1000, config=SINGLES)  # not the curve's scenes
    guidance = pipe.defaults.decode.guidance
    settings = {f"ours {TODAY['sampler']} {TODAY['steps']} (before)": ("ours", TODAY),
                f"ours {new['sampler']} {new['steps']} (new default)": ("ours", new),
                f"diffusers DPMSolverMultistepScheduler {new['steps']}": ("diffusers", new)}
    rows = {}
    for label, (who, cfg) in settings.items():
        seconds, match, exact = 0.0, [], []
        for i in range(0, n, batch):
            chunk = scenes[i:i + batch]
            z = pipe.clip.encode_image([render(s) for s in chunk])
            x_T = pipe.noise(len(chunk), seed=i)
            t = time.perf_counter()
            with torch.no_grad():
                if who == "ours":
                    images = pipe.decode(z, x_T=x_T, steps=cfg["steps"], sampler=cfg["sampler"], upsample=False)
                else:
                    images = signed_to_pil(diffusers_dpm_decode(pipe, z, x_T, cfg["steps"], guidance))
            seconds += time.perf_counter() - t
            for s, im in zip(chunk, images):
                got, want = detect(im), s.objects[0]
                ok = any(o.shape == want.shape and o.color == want.color for o in got.objects)
                match.append(ok)
                exact.append(ok and len(got.objects) == 1)
        rows[label] = {"ms_per_image": round(1e3 * seconds / n, 1), "object_matches": round(sum(match) / n, 4),
                       "exact_scene_objects": round(sum(exact) / n, 4), "steps": cfg["steps"], "n": n,
                       "batch": batch, "guidance": guidance}
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoints", default="checkpoints/world")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (the widget target is for 2 cores)")
    p.add_argument("--out", default="benchmarks/results/bench_sampling.json")
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped where absent")
    p.add_argument("--side-by-side", action="store_true", help="also decode 150 scenes at today's DDIM 25, the new "
                                                               "default and diffusers' DPM-Solver++, read by the oracle")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    wanted = args.devices.split(",")
    configs = [("cpu", "fp32")] if "cpu" in wanted else []
    if torch.cuda.is_available() and "cuda" in wanted:
        configs += [("cuda", "fp32"), ("cuda", "bf16"), ("cuda", "fp16")]
    results = [bench(args.checkpoints, d, t, args.batch, args.reps) for d, t in configs]
    results += [bench(args.checkpoints, d, t, args.batch, args.reps, today=True) for d, t in configs]
    out = {"command": "python benchmarks/bench_sampling.py" + (" --side-by-side" if args.side_by_side else ""),
           "checkpoints": args.checkpoints,
           "machine": f"{platform.platform()}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}"
                      + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
           "results": results}
    if args.side_by_side:
        d = UnCLIP.from_pretrained(args.checkpoints, device="cpu").defaults.decode
        out["side_by_side"] = side_by_side(args.checkpoints, {"sampler": d.sampler, "steps": d.steps})
    text = json.dumps(out, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()

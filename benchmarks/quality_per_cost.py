"""Quality per cost of the world stack's samplers: oracle accuracy against steps, DDIM and DPM-Solver++(2M).

    python benchmarks/quality_per_cost.py checkpoints/world                       # the curves (resumable)
    python benchmarks/quality_per_cost.py checkpoints/world --confirm              # the chosen defaults, fresh seeds
    python benchmarks/quality_per_cost.py checkpoints/world --figure notebooks/figures/quality_per_cost.png
    python benchmarks/quality_per_cost.py checkpoints/world --table                # the model card's tables

Decoder: reconstructions from true CLIP image embeddings (no caption, guidance DECODER_GUIDANCE, the
same noise for every setting), 200 single-object and 100 two-object scenes (300), read by the oracle:
a single object of the right shape and colour (``single_shape_color``), exactly one object
(``single_count``), both objects of a pair right and nothing else (``pair_both_objects``).
Diffusion prior: 200 single-object and 100 two-object world captions; the sampled embedding's cosine
to the CLIP image embedding of a render of the caption's scene, and the text -> image reading of
its decode (decoder fixed at DPM-Solver++(2M), 10 steps, reading the caption too, no upsampler).
Upsampler: 300 true 32 px renders upsampled to 64 px: the oracle reads the same scene (agreement),
and PSNR against the true 64 px render.

THE RULE (written before the run, and applied by --confirm): a stage's new default is the setting
with the fewest network calls whose readings are all within one point (0.01) of today's default on
the curve's seeds (decoder: DDIM 25 steps; prior: DDIM 64 steps, its cosine also within 0.01;
upsampler: DDIM 10 steps, its PSNR within 0.1 dB); it is then measured against today's default on
fresh seeds and kept only if it is again within those margins on every reading; otherwise the next
step count of the same sampler is tried.
Times per image are wall-clock of the batched calls on this machine (2 CPU cores; shared with nothing
else only when the JSON says so); bench_sampling.py measures speed properly.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SAMPLERS = ("ddim", "dpm++2m")
DECODER_STEPS = (4, 6, 8, 10, 15, 25)
PRIOR_STEPS = (4, 8, 16, 64)
DEFAULTS = {"decoder": ("ddim", 25), "prior": ("ddim", 64), "upsampler": ("ddim", 10)}
N_SINGLE, N_PAIR = 200, 100
PRIOR_DECODE = ("dpm++2m", 10)  # the decoder under the prior curve, fixed
TOL = 0.01


def decoder_point(stack, sampler: str, steps: int, seed: int) -> dict:
    from unclip_probe.eval.decoder import reconstruction_accuracy

    t = time.perf_counter()
    res = reconstruction_accuracy(stack.decoder, stack.decoder_cfg, stack.clip, n=N_SINGLE, n_pairs=N_PAIR,
                                  steps=steps, sampler=sampler, seed=seed)
    keep = ("single_shape_color", "single_count", "pair_both_objects", "pair_exact")
    return {**{k: res[k] for k in keep}, "seconds_per_image": (time.perf_counter() - t) / (N_SINGLE + N_PAIR)}


def prior_scenes(seed: int):
    from unclip_probe.eval.common import PAIRS, SINGLES
    from unclip_probe.world import caption, sample_scenes

    scenes = sample_scenes(N_SINGLE, seed=seed, config=SINGLES) + sample_scenes(N_PAIR, seed=seed + 1, config=PAIRS)
    return scenes, [caption(s, seed=seed + k) for k, s in enumerate(scenes)]


def prior_point(stack, sampler: str, steps: int, seed: int) -> dict:
    from unclip_probe.world import detect, render

    scenes, prompts = prior_scenes(seed)
    true = stack.clip.encode_image([render(s) for s in scenes])  # (n, D) unit norm
    cos, single, single_exact, pair = [], [], [], []
    seconds = 0.0
    for i in range(0, len(scenes), 50):
        chunk, caps = scenes[i:i + 50], prompts[i:i + 50]
        t = time.perf_counter()
        z = stack.prior(caps, seed=seed + i, steps=steps, sampler=sampler)
        seconds += time.perf_counter() - t
        cos.extend((z * true[i:i + 50]).sum(-1).tolist())
        images = stack.decode(z, prompts=caps, seed=seed + i, sampler=PRIOR_DECODE[0], steps=PRIOR_DECODE[1],
                              upsample=False)
        for s, im in zip(chunk, images):
            got = detect(im)
            match = [any(o.shape == w.shape and o.color == w.color for o in got.objects) for w in s.objects]
            if len(s.objects) == 1:
                single.append(match[0])
                single_exact.append(match[0] and len(got.objects) == 1)
            else:
                pair.append(all(match) and len(got.objects) == 2)
    return {"cosine": float(np.mean(cos)), "single_shape_color": float(np.mean(single)),
            "single_exact": float(np.mean(single_exact)), "pair_both_objects": float(np.mean(pair)),
            "prior_seconds_per_prompt": seconds / len(scenes)}


def upsampler_point(stack, sampler: str, steps: int, seed: int) -> dict:
    from unclip_probe.eval.upsampler import upsampler_quality

    t = time.perf_counter()
    res = upsampler_quality(stack.upsampler, stack.upsampler_cfg, n=300, steps=steps, seed=seed, sampler=sampler)
    return {"oracle_agreement": res["oracle_agreement"], "psnr_db": res["psnr_upsampler_db"],
            "seconds_per_image": (time.perf_counter() - t) / 300}


POINTS = {"decoder": (decoder_point, DECODER_STEPS), "prior": (prior_point, PRIOR_STEPS),
          "upsampler": (upsampler_point, (2, 3, 5, 10))}
READINGS = {"decoder": ("single_shape_color", "single_count", "pair_both_objects"),
            "prior": ("single_shape_color", "single_exact", "pair_both_objects", "cosine"),
            "upsampler": ("oracle_agreement", "psnr_db")}
TOLERANCE = {"psnr_db": 0.1}  # dB; every other reading: TOL


def qualifies(row: dict, default: dict, stage: str) -> bool:
    return all(row[k] >= default[k] - TOLERANCE.get(k, TOL) for k in READINGS[stage])


def choose(curve: dict, stage: str) -> list[tuple[str, int]]:
    """Settings meeting the rule on the curve, fewest network calls first (DPM-Solver++(2M) and DDIM
    both call the network once per step)."""
    default = curve[stage][f"{DEFAULTS[stage][0]}:{DEFAULTS[stage][1]}"]
    rows = [(int(k.split(":")[1]), k.split(":")[0]) for k, r in curve[stage].items() if qualifies(r, default, stage)]
    return [(s, n) for n, s in sorted(rows)]


def figure(curve: dict, path: str) -> None:
    import matplotlib.pyplot as plt

    stages = [st for st in POINTS if curve.get(st)]
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.6), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for sampler, style in zip(SAMPLERS, ("o-", "s--")):
            pts = sorted((int(k.split(":")[1]), r) for k, r in curve[stage].items() if k.startswith(sampler + ":"))
            for reading, color in zip([r for r in READINGS[stage] if r != "psnr_db"][:3], ("C0", "C1", "C2")):
                ax.plot([n for n, _ in pts], [r[reading] for _, r in pts], style, color=color,
                        label=f"{sampler}: {reading}", ms=4)
        if stage == "upsampler":  # its oracle agreement is flat; PSNR is where the steps show
            ax2 = ax.twinx()
            for sampler, style in zip(SAMPLERS, ("o-", "s--")):
                pts = sorted((int(k.split(":")[1]), r) for k, r in curve[stage].items()
                             if k.startswith(sampler + ":"))
                ax2.plot([n for n, _ in pts], [r["psnr_db"] for _, r in pts], style, color="C3", ms=4,
                         label=f"{sampler}: PSNR (dB)")
            ax2.set_ylabel("PSNR against the true 64 px render (dB)"), ax2.legend(fontsize=6, loc="lower left")
        steps = sorted({int(k.split(":")[1]) for k in curve[stage]})
        ax.set_xscale("log"), ax.set_xticks(steps, [str(n) for n in steps]), ax.minorticks_off()
        ax.set_xlabel("sampling steps (network calls)"), ax.set_ylabel("oracle reading")
        ax.set_title(f"{stage}: 300 {'renders' if stage == 'upsampler' else 'scenes'}"), ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def tables(record: dict) -> str:
    """The curves (and the confirmation) as Markdown tables, for the model card."""
    out = []
    for stage in POINTS:
        curve = record["curve"].get(stage) or {}
        if not curve:
            continue
        cols = READINGS[stage]
        out.append(f"**{stage}** ({'; '.join(cols)}; ms per image as measured)\n")
        out.append("| steps | " + " | ".join(f"{smp}" for smp in SAMPLERS) + " |")
        out.append("|---|" + "---|" * len(SAMPLERS))
        steps = sorted({int(k.split(":")[1]) for k in curve})
        for n in steps:
            cells = []
            for smp in SAMPLERS:
                r = curve.get(f"{smp}:{n}")
                sec = r.get("seconds_per_image", r.get("prior_seconds_per_prompt")) if r else None
                cells.append(" / ".join(f"{r[c]:.3f}" if c == "cosine" else (f"{r[c]:.2f}" if c == "psnr_db" else
                                        f"{100 * r[c]:.1f}") for c in cols) + (f" ({1e3 * sec:.0f} ms)" if sec else "")
                             if r else "—")
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        conf = record.get("confirm", {}).get(stage)
        if conf:
            out.append("\nfresh seeds: " + "; ".join(f"{k}: " + " / ".join(
                f"{v[c]:.3f}" if c == "cosine" else (f"{v[c]:.2f}" if c == "psnr_db" else f"{100 * v[c]:.1f}")
                for c in cols) for k, v in conf.items()))
        if record.get("chosen", {}).get(stage):
            ch = record["chosen"][stage]
            out.append(f"\nchosen: {ch['sampler']} {ch['steps']} steps")
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--out", default="benchmarks/results/quality_per_cost.json")
    p.add_argument("--seed", type=int, default=None, help="curve seed (default: the evaluation seeds)")
    p.add_argument("--confirm", action="store_true", help="measure the rule's choice against today's default on "
                                                          "fresh seeds")
    p.add_argument("--stages", default="decoder,prior")
    p.add_argument("--figure", default=None)
    p.add_argument("--table", action="store_true", help="print the curves as Markdown tables")
    args = p.parse_args()
    from unclip_probe.backends import load_stack
    from unclip_probe.eval.common import RECONSTRUCTION_SEED, SINGLE_SEED, UPSAMPLER_SEED

    torch.set_grad_enabled(False)
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {}
    record.setdefault("rule", __doc__.split("THE RULE")[1].split("Times per image")[0].strip())
    record.setdefault("curve", {})
    for stage in POINTS:
        record["curve"].setdefault(stage, {})
    if args.figure:
        figure(record["curve"], args.figure)
        print(f"wrote {args.figure}")
        return
    if args.table:
        print(tables(record))
        return
    stack = load_stack("world", args.folder, device="cpu")
    seeds = {"decoder": RECONSTRUCTION_SEED, "prior": SINGLE_SEED, "upsampler": UPSAMPLER_SEED}
    record["machine"] = f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}"
    for stage in args.stages.split(","):
        fn, steps_list = POINTS[stage]
        if args.confirm:
            fresh = seeds[stage] + 100_000
            conf = record.setdefault("confirm", {}).setdefault(stage, {})
            default_key = f"{DEFAULTS[stage][0]}:{DEFAULTS[stage][1]}"
            if default_key not in conf:
                conf[default_key] = fn(stack, *DEFAULTS[stage], fresh)
            for sampler, steps in choose(record["curve"], stage):
                key = f"{sampler}:{steps}"
                if key not in conf:
                    conf[key] = fn(stack, sampler, steps, fresh)
                    out.write_text(json.dumps(record, indent=2) + "\n")
                ok = qualifies(conf[key], conf[default_key], stage)
                print(stage, key, "confirmed" if ok else "not confirmed", conf[key])
                if ok:
                    record.setdefault("chosen", {})[stage] = {"sampler": sampler, "steps": steps, "seed": fresh}
                    break
            out.write_text(json.dumps(record, indent=2) + "\n")
            continue
        for sampler in SAMPLERS:
            for steps in steps_list:
                key = f"{sampler}:{steps}"
                if key in record["curve"][stage]:
                    continue
                record["curve"][stage][key] = fn(stack, sampler, steps, seeds[stage] if args.seed is None else args.seed)
                print(stage, key, record["curve"][stage][key], flush=True)
                out.write_text(json.dumps(record, indent=2) + "\n")
        record["qualifying"] = {s: [f"{a}:{b}" for a, b in choose(record["curve"], s)] for s in record["curve"]
                                if record["curve"][s]}
        out.write_text(json.dumps(record, indent=2) + "\n")
    record["command"] = "python benchmarks/quality_per_cost.py checkpoints/world [--confirm]"
    out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

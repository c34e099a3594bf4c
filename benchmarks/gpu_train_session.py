"""One lent-GPU session: train the decoder, its text-only twin and both priors at once, then time sampling.

    python benchmarks/gpu_train_session.py --out $OUT --seconds 430

This is the script a lent GPU ran (the model card names the session). A GPU is
lent for a few minutes once, so everything happens in one call:

1. Calibrate: every stage trains for about a minute from scratch
   (``unclip-probe train ... --budget-minutes``), all four side by side, and
   the steps per second each reached are read from its log.
2. Resume each to a step count that fills the remaining time (``--steps`` may
   change between runs of one training; trainer.RESUMABLE_CHANGES). The
   decoder and the text-only decoder get the *same* count, so the binding
   probe compares two decoders of the same architecture and training budget
   (issue 6). The first phase stays inside the warmup, which does not depend
   on ``--steps``, so the two phases make one schedule.
3. Time sampling on CUDA (benchmarks/bench_sampling.py, fp32 / bf16 / fp16).
   The weights (EMA) go to ``--out`` before it starts, one file each, with a
   tarball of the logs, configs and summaries (the device returns at most 8
   files); the tarball is rewritten with the benchmark JSON after.

``--device cpu --seconds 60 --batch-scale 0.125`` runs the same plan on a CPU
as a rehearsal.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

# name -> (stage, batch, lr, warmup, ema, data seed, rendering workers). Batches are 4-8x the CPU runs':
# on a GPU a step of these small nets costs about the same at 32 or 256 images (launch-bound).
JOBS = {
    "decoder": ("decoder", 256, 8e-4, 1000, 0.999, 21, 4),
    "decoder_text": ("decoder-text", 256, 8e-4, 1000, 0.999, 21, 4),
    "prior": ("prior", 256, 3e-4, 1000, 0.999, 23, 3),
    "ar_prior": ("ar-prior", 256, 1e-3, 1000, 0.999, 24, 3),
}
EQUAL_STEPS = ("decoder", "decoder_text")  # same training budget (issue 6, generation side (b))


def _launch(name: str, runs: Path, device: str, steps: int, minutes: float, batch_scale: float) -> subprocess.Popen:
    stage, batch, lr, warmup, ema, seed, workers = JOBS[name]
    cmd = [sys.executable, "-m", "unclip_probe.cli", "train", stage, "--out", str(runs / name), "--device", device,
           "--steps", str(steps), "--batch-size", str(max(8, int(batch * batch_scale))), "--lr", str(lr),
           "--warmup-steps", str(warmup), "--ema-decay", str(ema), "--data-seed", str(seed),
           "--workers", str(workers), "--budget-minutes", f"{minutes:.3f}", "--checkpoint-every", "1000",
           "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    log = open(runs / f"{name}.stdout.txt", "a")
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _rate(log_path: Path) -> tuple[int, float]:
    """(steps done, steps per second) from a trainer's JSONL log."""
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.strip()]
    if not lines:
        return 0, 0.0
    if len(lines) < 3:  # too few for a warm rate: count from the start (slower, so the safe side)
        return lines[-1]["step"], lines[-1]["step"] / max(1e-6, lines[-1]["elapsed_s"])
    a, b = lines[len(lines) // 4], lines[-1]  # skip the first quarter: CUDA warm-up, pool start
    return b["step"], (b["step"] - a["step"]) / max(1e-6, b["elapsed_s"] - a["elapsed_s"])


def _wait(procs: dict[str, subprocess.Popen]) -> dict[str, int]:
    return {name: p.wait() for name, p in procs.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--runs", default="/tmp/unclip_runs")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seconds", type=float, default=430, help="wall time for both training phases")
    p.add_argument("--calibrate-minutes", type=float, default=1.0)
    p.add_argument("--batch-scale", type=float, default=1.0)
    p.add_argument("--jobs", default=",".join(JOBS))
    p.add_argument("--bench-seconds", type=float, default=75, help="limit for each CUDA benchmark run")
    args = p.parse_args()
    t0 = time.monotonic()
    out, runs = Path(args.out), Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    names = args.jobs.split(",")
    report: dict = {"device": args.device, "jobs": {n: JOBS[n] for n in names}, "phases": []}

    # Phase 1: calibration, inside the warmup (steps are a ceiling the budget never lets them reach).
    procs = {n: _launch(n, runs, args.device, 10**6, args.calibrate_minutes, args.batch_scale) for n in names}
    codes = _wait(procs)
    t1 = time.monotonic() - t0
    rates = {n: _rate(runs / n / f"{n}.log.jsonl") for n in names if (runs / n / f"{n}.log.jsonl").exists()}
    report["phases"].append({"phase": "calibrate", "exit_codes": codes, "ended_s": round(t1, 1),
                             "steps_and_rate": rates})
    print(json.dumps(report["phases"][-1]), flush=True)

    # Phase 2: fill the remaining time; a restart costs about what phase 1 spent outside training.
    startup = max(15.0, t1 - 60.0 * args.calibrate_minutes)
    left = args.seconds - t1 - startup
    targets = {n: int(done + 0.85 * rate * left) for n, (done, rate) in rates.items()}
    targets = {n: s for n, s in targets.items() if s > rates[n][0]}  # nothing left to add: keep phase 1
    equal = [n for n in EQUAL_STEPS if n in targets]
    if len(equal) == len(EQUAL_STEPS):
        for n in equal:
            targets[n] = min(targets[m] for m in equal)
    procs = {n: _launch(n, runs, args.device, s, (left + startup) / 60.0, args.batch_scale) for n, s in targets.items()}
    codes = _wait(procs)
    done = {n: _rate(runs / n / f"{n}.log.jsonl")[0] for n in targets}
    report["phases"].append({"phase": "train", "targets": targets, "exit_codes": codes, "steps_done": done,
                             "ended_s": round(time.monotonic() - t0, 1)})
    print(json.dumps(report["phases"][-1]), flush=True)

    # What comes back (at most 8 files, 16 MiB each): the weights one file each, now, so that a
    # benchmark overrunning the call's limit cannot cost them; everything small in a tarball.
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        w = runs / n / f"{n}.safetensors"
        if w.exists():
            shutil.copy(w, out / w.name)
    _pack(report, runs, out, t0)

    # Phase 3: sampling speed on this device (the shipped stack; the new weights have the same shapes).
    if args.device.startswith("cuda"):
        for b in (1, 16):
            with open(runs / f"bench_b{b}.stdout.txt", "w") as log:
                try:
                    subprocess.run([sys.executable, "benchmarks/bench_sampling.py", "--devices", "cuda", "--batch",
                                    str(b), "--out", str(runs / f"bench_sampling_cuda_b{b}.json")],
                                   stdout=log, stderr=subprocess.STDOUT, timeout=args.bench_seconds)
                except subprocess.TimeoutExpired:
                    log.write(f"\ntimed out after {args.bench_seconds} s\n")
        _pack(report, runs, out, t0)
    print(json.dumps(report, indent=2), flush=True)


def _pack(report: dict, runs: Path, out: Path, t0: float) -> None:
    """session.json and every log, config and summary (not the weights or train states) into one tarball."""
    report["ended_s"] = round(time.monotonic() - t0, 1)
    (runs / "session.json").write_text(json.dumps(report, indent=2) + "\n")
    with tarfile.open(out / "session.tar.gz", "w:gz") as tar:
        for f in sorted(runs.rglob("*")):
            if f.is_file() and ".train." not in f.name and f.suffix != ".safetensors":
                tar.add(f, arcname=str(f.relative_to(runs)))


if __name__ == "__main__":
    main()

"""Fingerprint every figure a refactor must not change, and compare two fingerprints.

    python benchmarks/figures_unchanged.py --out benchmarks/results/figures_after.json \
        --compare benchmarks/results/figures_before.json

Runs, each as its own process on the shipped world stack at every default:
the three probes at their command-line defaults (tables and figure bytes), a small
``pipeline_eval`` (n 8 / 4 / 4), the decoder's reconstruction figure and
``unclip-probe generate ... --seed 0`` (image bytes). It writes every number and the
SHA-256 of every PNG into one JSON; with ``--compare`` it lists each value that
differs from an earlier fingerprint and exits 1 when any does. Timings are left out
(they are not figures). ``--pipeline-eval-module`` names the module for a tree that
keeps it elsewhere (before the layout of issue 19 it was ``unclip_probe.eval.pipeline``).
Run from the root of the tree to fingerprint (2 CPU cores: about 5 minutes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TIMING_KEYS = {"seconds", "seconds_with_loading", "command"}
PROMPT = "a red circle left of a blue square"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _drop_timing(x):
    if isinstance(x, dict):
        return {k: _drop_timing(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [_drop_timing(v) for v in x]
    return x


def fingerprint(folder: str, pipeline_eval_module: str) -> dict:
    py = sys.executable
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for probe in ("pca", "typographic", "binding"):
            _run([py, "-m", f"unclip_probe.probes.{probe}", folder, "--json", str(t / f"{probe}.json"),
                  "--figure", str(t / f"{probe}.png")])
            out[f"probe_{probe}"] = _drop_timing(json.loads((t / f"{probe}.json").read_text()))
            out[f"probe_{probe}_figure_sha256"] = _sha(t / f"{probe}.png")
        text = _run([py, "-m", pipeline_eval_module, folder, "--n", "8", "--n-pair", "4", "--n-manip", "4"])
        out["pipeline_eval_small"] = _drop_timing(json.loads(text))
        _run([py, "benchmarks/decoder_figure.py", "--folder", folder, "--out", str(t / "decoder.png")])
        out["decoder_figure_sha256"] = _sha(t / "decoder.png")
        _run([py, "-m", "unclip_probe.cli", "generate", PROMPT, "--n", "4", "--seed", "0", "--checkpoints", folder,
              "--device", "cpu", "--out", str(t / "generate.png")])
        out["generate_seed0_sha256"] = _sha(t / "generate.png")
    return out


def differences(a, b, path: str = "") -> list[str]:
    """Every leaf where a and b differ, as 'path: a != b'."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="checkpoints/world")
    p.add_argument("--out", required=True)
    p.add_argument("--compare", default=None, help="an earlier fingerprint to compare with")
    p.add_argument("--pipeline-eval-module", default="unclip_probe.eval.pipeline")
    args = p.parse_args()
    fp = fingerprint(args.folder, args.pipeline_eval_module)
    Path(args.out).write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
    if args.compare is None:
        print(f"wrote {args.out}")
        return 0
    # a checksum-list key renamed ("checksums") is part of the figures too; compare everything left
    diff = differences(json.loads(Path(args.compare).read_text()), fp)
    print("\n".join(diff) if diff else f"identical to {args.compare}: every table, figure and image")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())

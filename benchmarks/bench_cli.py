"""Start-up time of the `unclip-probe` command (issue 19, item 8: <= 1 s wall on 2 CPU cores).

    python benchmarks/bench_cli.py [--runs 5] [--out benchmarks/results/bench_cli.json]

Each case (``--help``, ``generate --help``, ``world --help``, ``train --help``
and one argument error, exit code 2) runs in a fresh subprocess ``--runs`` times;
the median wall time is recorded. The console script is run with the Python it
was installed for; any other `unclip-probe` on PATH (a version manager's shim,
which adds its own start-up) is timed on ``--help`` as ``--help (via <path>)``.
One more run per case under
``python -X importtime`` says which heavy modules (torch, open_clip, pandas,
matplotlib) were imported and how long importing ``unclip_probe.cli`` took.
Speed is measured here, never asserted in a test.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HEAVY = ("torch", "open_clip", "pandas", "matplotlib", "numpy", "PIL")
CASES = {
    "--help": (["--help"], 0),
    "generate --help": (["generate", "--help"], 0),
    "world --help": (["world", "--help"], 0),
    "train --help": (["train", "--help"], 0),
    "generate --n abc (argument error)": (["generate", "a red circle", "--n", "abc"], 2),
}


def _script() -> str:
    """The installed console script, next to this Python (falls back to PATH)."""
    here = Path(sysconfig.get_path("scripts")) / "unclip-probe"
    if here.is_file():
        return str(here)
    found = shutil.which("unclip-probe")
    if found is None:
        sys.exit("bench_cli: no `unclip-probe` console script; run `pip install -e .` first")
    return found


def _other_scripts(script: str) -> list[str]:
    """Every other `unclip-probe` on PATH (a version manager's shim, say), once each."""
    found, seen = [], {os.path.realpath(script)}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        cand = Path(folder or ".") / "unclip-probe"
        if cand.is_file() and os.access(cand, os.X_OK) and os.path.realpath(cand) not in seen:
            seen.add(os.path.realpath(cand))
            found.append(str(cand))
    return found


def _wall(cmd: list[str], expect: int) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if proc.returncode != expect:
        sys.exit(f"bench_cli: {' '.join(cmd)} exited {proc.returncode}, expected {expect}\n{proc.stderr}")
    return dt


def _imports(script: str, args: list[str]) -> dict:
    """Run once under -X importtime: heavy top-level packages imported, and the CLI module's cumulative time."""
    proc = subprocess.run([sys.executable, "-X", "importtime", script, *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: set[str] = set()
    cli_us = None
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if not cumulative.isdigit():  # the header line
            continue
        seen.add(name.split(".")[0])
        if name == "unclip_probe.cli":
            cli_us = int(cumulative)
    return {"heavy_imported": sorted(m for m in HEAVY if m in seen), "torch_imported": "torch" in seen,
            "import_unclip_probe_cli_s": None if cli_us is None else round(cli_us / 1e6, 3),
            "modules_imported": len(seen)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--budget", type=float, default=1.0, help="target wall seconds per command")
    p.add_argument("--out", default="benchmarks/results/bench_cli.json")
    args = p.parse_args()

    script = _script()
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = {}
    for name, (argv, expect) in CASES.items():
        cmd = [script, *argv]
        _wall(cmd, expect)  # warm the OS file cache; not counted
        times = [_wall(cmd, expect) for _ in range(args.runs)]
        rows[name] = {"argv": argv, "exit_code": expect, "median_s": round(statistics.median(times), 3),
                      "runs_s": [round(t, 3) for t in times], **_imports(script, argv)}
        print(f"{name:40s} median {rows[name]['median_s']:.3f} s  runs {rows[name]['runs_s']}  "
              f"heavy imports {rows[name]['heavy_imported'] or 'none'}")
    for on_path in _other_scripts(script):  # e.g. a pyenv shim, which is what a shell runs
        times = [_wall([on_path, "--help"], 0) for _ in range(args.runs)]
        rows[f"--help (via {on_path})"] = {"argv": ["--help"], "exit_code": 0, "executable": on_path,
                                          "median_s": round(statistics.median(times), 3),
                                          "runs_s": [round(t, 3) for t in times]}
        print(f"{'--help (via ' + on_path + ')':40s} median {statistics.median(times):.3f} s")
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    cores = os.cpu_count()
    spread = max(max(r["runs_s"]) / min(r["runs_s"]) for r in rows.values())
    busy = load_before is not None and max(load_before[0], load_after[0]) > (cores or 1)
    noisy = busy or spread > 1.5
    out = {
        "command": " ".join(["python benchmarks/bench_cli.py", *sys.argv[1:]]),
        "machine": {"cores": cores, "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "executable": script,
        "runs": args.runs,
        "budget_s": args.budget,
        "all_within_budget": all(r["median_s"] <= args.budget for r in rows.values()),
        "load_average_1m": {"before": None if load_before is None else round(load_before[0], 2),
                            "after": None if load_after is None else round(load_after[0], 2)},
        "max_run_spread": round(spread, 2),
        "noisy": noisy,
        "note": ("other processes were loading the CPU (1-min load above the core count, or one case's slowest run "
                 "over 1.5x its fastest): medians are upper bounds" if noisy else "quiet machine"),
        "cases": rows,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path} (all within {args.budget} s: {out['all_within_budget']}, noisy: {noisy})")


if __name__ == "__main__":
    main()

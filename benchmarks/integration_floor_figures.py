"""What the pipeline integration tests' floors guard, measured on their own seeds (tests/integration/test_world_pipeline.py).

    python benchmarks/integration_floor_figures.py   (about 75 s on 2 CPU cores)

The tests assert floors only; this prints the figures those floors sit under, so a
floor can be set (and later raised) from a command rather than a guess. Both call
`pipeline_eval.quick_checks`, so the calls and seeds are one definition.
"""
from __future__ import annotations

import json
from pathlib import Path

from unclip_probe.pipeline import UnCLIP
from unclip_probe.pipeline_eval import quick_checks


def main() -> None:
    pipe = UnCLIP.from_pretrained(Path("checkpoints/world"), device="cpu")
    print(json.dumps(quick_checks(pipe), indent=2))


if __name__ == "__main__":
    main()

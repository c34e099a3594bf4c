"""What the integration tests' floors guard, measured on their own seeds (tests/integration/test_world_pipeline.py,
test_world_decoder.py's reconstructions, test_world_clip.py's position probe).

    python benchmarks/integration_floor_figures.py   (about 2 min on 2 CPU cores)

The tests assert floors only; this prints the figures those floors sit under, so a
floor can be set (and later raised) from a command rather than a guess. The tests and this
script share `pipeline_eval.quick_checks`, `decode_eval.QUICK_N / QUICK_STEPS` and
`clip_eval.QUICK_POSITION_N`, so the calls and seeds are one definition. The position probe is
also printed at its model-card size (3,000 scenes).
"""
from __future__ import annotations

import json
from pathlib import Path

from unclip_probe.eval.clip import QUICK_POSITION_N, position_probe
from unclip_probe.eval.decoder import QUICK_N, QUICK_STEPS, reconstruction_accuracy
from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.eval.pipeline import quick_checks


def main() -> None:
    pipe = UnCLIP.from_pretrained(Path("checkpoints/world"), device="cpu")
    out = quick_checks(pipe)
    out["decoder_reconstructions"] = reconstruction_accuracy(pipe.decoder, pipe.decoder_cfg, pipe.clip,
                                                             n=QUICK_N, steps=QUICK_STEPS)
    out["clip_position_probe"] = {n: position_probe(pipe.clip, n=n) for n in (QUICK_POSITION_N, 3000)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""What the pipeline integration tests' floors guard, measured on their own seeds (tests/integration/test_world_pipeline.py).

    python benchmarks/integration_floor_figures.py   (about 2 min on 2 CPU cores)

The tests assert floors only; this prints the figures those floors sit under, so a
floor can be set (and later raised) from a command rather than a guess. The calls
and seeds are the tests' own: change them together.
"""
from __future__ import annotations

import json
from pathlib import Path

from unclip_probe.pipeline import UnCLIP
from unclip_probe.pipeline_eval import PAIR, SINGLE, text_diff_turns, text_to_image, variations_kept
from unclip_probe.world import sample_scenes


def main() -> None:
    pipe = UnCLIP.from_pretrained(Path("checkpoints/world"), device="cpu")
    out = {
        "text_to_image_diffusion_24_prompts_20_steps_32px": text_to_image(
            pipe, sample_scenes(24, seed=4321, config=SINGLE), seed=0, batch=24, priors=("diffusion",), steps=20,
            upsample=False)["diffusion_prior"],
        "variations_8_pairs": variations_kept(pipe, sample_scenes(8, seed=4242, config=PAIR), n=2),
        "text_diff_8_seeds": text_diff_turns(pipe, sample_scenes(8, seed=4243, config=SINGLE)),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

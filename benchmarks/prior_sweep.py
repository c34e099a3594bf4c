"""Which classifier-free guidance the diffusion prior samples with (issue 5, paper §2.2).

    python benchmarks/prior_sweep.py checkpoints/world --n 200 --guidance 2 3 4
    python benchmarks/prior_sweep.py checkpoints/world --n 200 --guidance 3 --seed 777090 \
        --out benchmarks/results/prior_confirm.json   # fresh prompts: a held-out check of the defaults

The same single-object prompts, seeds and decoder defaults as `pipeline_eval`'s
text -> image row, with only the prior's guidance changed: each image is the
pipeline's 64 px output, read by the oracle (shape and colour right), next to
the mean cosine of the prior's samples to the true image embedding of a render
of the caption's scene. JSON: benchmarks/results/prior_sweep.json.

Defaults chosen on pipeline_eval's prompts read slightly high there; `--seed` draws
other prompts and noise (any seed outside pipeline_eval's EVAL_SEED + 40..60) to
re-measure them out of sample.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from unclip_probe.checkpoints import stack_checksums
from unclip_probe.backends.world.decode import DECODER_GUIDANCE
from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.eval.pipeline import SINGLE, SINGLE_SEED, TEXT_TO_IMAGE_BATCH, text_to_image
from unclip_probe.world import sample_scenes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--n", type=int, default=200, help="single-object prompts (pipeline_eval's first n at the default --seed)")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0])
    p.add_argument("--prior", default="diffusion", help="diffusion | ar")
    p.add_argument("--seed", type=int, default=SINGLE_SEED,
                   help="prompt and noise seed (default: pipeline_eval's single-object row)")
    p.add_argument("--out", default="benchmarks/results/prior_sweep.json")
    args = p.parse_args()
    pipe = UnCLIP.from_pretrained(args.folder, device="cpu")
    scenes = sample_scenes(args.n, seed=args.seed, config=SINGLE)  # pipeline_eval's single-object row by default
    out: dict = {"command": "python benchmarks/prior_sweep.py " + " ".join(sys.argv[1:]),
                 "checksums": stack_checksums(args.folder),
                 "n": args.n, "seed": args.seed, "prior": args.prior, "decoder_guidance": DECODER_GUIDANCE, "seconds": {}}
    for g in args.guidance:
        t = time.perf_counter()
        res = text_to_image(pipe, scenes, seed=args.seed, batch=TEXT_TO_IMAGE_BATCH, priors=(args.prior,),
                            baselines=False, prior_guidance=g)[f"{args.prior}_prior"]
        out[f"guidance_{g:g}"] = res
        out["seconds"][f"guidance_{g:g}"] = round(time.perf_counter() - t, 1)
        print(f"prior guidance {g:g}: {res}", file=sys.stderr)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""The held-out wordings on fresh scenes: the same templates (unclip_probe/world/wordings.py) drawn
from another seed, text -> image through each given stack folder's diffusion prior (issue 24).

    python benchmarks/wordings_confirm.py checkpoints/world [OTHER_FOLDER ...] --seed 777170 [--candidates 4]

`pipeline_eval`'s wording rows decided which prior ships (model card, "What people type"), so
their scenes are no longer fresh; this re-measures every folder on scenes that chose nothing.
Prints JSON and writes it to --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.checkpoints import stack_checksums
from unclip_probe.eval.pipeline import TEXT_TO_IMAGE_BATCH, prompts_to_image
from unclip_probe.world.wordings import heldout_prompts


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--seed", type=int, default=777_170)
    p.add_argument("--prior", default="diffusion", choices=("diffusion", "ar"))
    p.add_argument("--candidates", type=int, default=1,
                   help="decodes per prior sample, the one nearest it kept (decode.pick_nearest); 1: the plain decode")
    p.add_argument("--out", default="benchmarks/results/wordings_confirm.json")
    args = p.parse_args(argv)
    ps = heldout_prompts("single", seed=args.seed)
    out: dict = {"command": "python benchmarks/wordings_confirm.py " + " ".join(argv if argv is not None else
                                                                                __import__("sys").argv[1:]),
                 "seed": args.seed, "prior": args.prior, "candidates": args.candidates, "n": len(ps), "folders": {}}
    for folder in args.folders:
        pipe = UnCLIP.from_pretrained(folder, device="cpu")
        res = prompts_to_image(pipe, ps, seed=args.seed, priors=(args.prior,), baselines=False,
                               batch=TEXT_TO_IMAGE_BATCH, candidates=args.candidates)[f"{args.prior}_prior"]
        weights = "prior" if args.prior == "diffusion" else "ar_prior"
        out["folders"][folder] = {"prior": stack_checksums(folder)[weights], **res}
        r = res["readings"]
        print(folder, "exact", r["exact"], "any", r["any_match"], "held-out pairs", r["held_out_pairs"])
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()

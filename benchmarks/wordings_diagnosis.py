"""Where the held-out wordings' text -> image failures come from: the prior's embedding, the decoder's
reading of it, or the decoder's caption path (issue 24).

    python benchmarks/wordings_diagnosis.py checkpoints/world --seed 777370

On the 300 single-object prompts of `unclip_probe/world/wordings.py` drawn from `--seed` (the
scenes `wordings_confirm.py` reads at that seed, the same prior samples and decoder noise):

- ``embedding_class``: is the embedding itself of the right object? Each of z_t and the diffusion
  prior's sample is given the (shape, colour) whose mean true image embedding (over 1,200 fresh
  single-object scenes) it lies nearest by cosine; no decoder is involved. Per template.
- ``decoded``: the oracle's readings of the decodes of z_t, the prior's sample and the true image
  embedding, once with the typed caption also read by the decoder (the pipeline's way) and once
  from the embedding alone (the decoder's caption-dropped branch, paper §2.1).

Prints a summary and writes JSON to --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.embed import embed_scenes
from unclip_probe.eval.pipeline import TEXT_TO_IMAGE_BATCH, prompts_to_image
from unclip_probe.world.scenes import sample_scenes
from unclip_probe.world.spec import COLORS, SHAPES
from unclip_probe.world.wordings import SINGLE, heldout_prompts

REFERENCE_SEED = 778_000  # fresh single-object scenes whose embeddings make the class means
OBJECTS = [(s, c) for s in SHAPES for c in COLORS]


def class_means(pipe, n: int = 1200):
    """(42, D) unit mean true image embedding of each (shape, colour), over n fresh single objects."""
    scenes = sample_scenes(n, seed=REFERENCE_SEED, config=SINGLE)
    z = embed_scenes(pipe, scenes)
    keys = [(s.objects[0].shape, s.objects[0].color) for s in scenes]
    means = [z[[k == o for k in keys]].mean(0) for o in OBJECTS]
    return F.normalize(torch.stack(means), dim=-1)


def embedding_class(pipe, prompts, seed: int, means) -> dict:
    """Share of prompts whose z_t / prior sample lies nearest its own object's class mean, per template."""
    hits: dict[str, dict[str, list]] = {"text_embedding": {}, "diffusion_prior": {}}
    for i in range(0, len(prompts), TEXT_TO_IMAGE_BATCH):  # text_to_image's batching, so its prior samples
        chunk = prompts[i:i + TEXT_TO_IMAGE_BATCH]
        said = [p.text for p in chunk]
        feeds = {"text_embedding": pipe.clip.encode_text(said), "diffusion_prior": pipe.prior(said, seed=seed + i)}
        for name, z in feeds.items():
            nearest = (F.normalize(z.float(), dim=-1) @ means.T).argmax(-1).tolist()
            for p, k in zip(chunk, nearest):
                o = p.scene.objects[0]
                got = OBJECTS[k]
                hits[name].setdefault(p.template, []).append((got[0] == o.shape, got[1] == o.color))
    out = {}
    for name, by in hits.items():
        every = np.array([h for v in by.values() for h in v])
        out[name] = {"shape": round(float(every[:, 0].mean()), 4), "colour": round(float(every[:, 1].mean()), 4),
                     "both": round(float(every.all(1).mean()), 4),
                     "by_group": {g: round(float(np.array(v).all(1).mean()), 4) for g, v in by.items()}}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--seed", type=int, default=777_370)
    p.add_argument("--out", default="benchmarks/results/wordings_diagnosis.json")
    args = p.parse_args(argv)
    pipe = UnCLIP.from_pretrained(args.folder, device="cpu")
    ps = heldout_prompts("single", seed=args.seed)
    out: dict = {"command": "python benchmarks/wordings_diagnosis.py " + " ".join(
        argv if argv is not None else __import__("sys").argv[1:]), "seed": args.seed, "n": len(ps),
        "embedding_class": embedding_class(pipe, ps, args.seed, class_means(pipe)), "decoded": {}}
    print("embedding class", json.dumps(out["embedding_class"]), flush=True)
    for with_caption in (True, False):
        res = prompts_to_image(pipe, ps, seed=args.seed, priors=("diffusion",), batch=TEXT_TO_IMAGE_BATCH,
                               decode_caption=with_caption)
        key = "with_caption" if with_caption else "embedding_alone"
        out["decoded"][key] = {name: r["readings"] for name, r in res.items()}
        for name, r in res.items():
            print(key, name, "exact", r["readings"]["exact"], "any", r["readings"]["any_match"], flush=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()

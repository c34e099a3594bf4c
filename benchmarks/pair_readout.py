"""How much of a two-object scene the world CLIP's image embedding holds, read without any decoder
(issue 24: the decoder's pair reading from true embeddings).

    python benchmarks/pair_readout.py checkpoints/world

A decoder can only draw what the embedding says. This reads the embedding directly, with two
linear probes fitted on fresh training-split pair scenes and scored on other fresh pair scenes:

- conjunctions: a one-vs-rest logistic regression over the 42 (shape, colour) objects; a scene
  reads exactly right when its two highest-scoring objects are the scene's two. That is the
  decoder's "exact" pair reading with a perfect decoder of what a linear readout sees.
- features: the shapes and the colours alone (6- and 7-way multi-label readouts), so a scene
  can have its shapes and colours right and still bind them wrongly; the gap between the two
  rows is the binding the embedding loses (paper §7, "attribute binding").

and a layout-free swap test: for each scene, is its embedding nearer the same objects at other
places and sizes, or the colours swapped between its objects at the very same places?

Prints JSON and writes it to --out.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.embed import embed_scenes
from unclip_probe.world.scenes import sample_scenes
from unclip_probe.world.spec import COLORS, SHAPES, WorldConfig

PAIR = WorldConfig(min_objects=2, max_objects=2, note_prob=0.0)
OBJECTS = [(s, c) for s in SHAPES for c in COLORS]


def _labels(scenes, keys) -> np.ndarray:
    """(N, len(keys)) 0/1: which keys each scene shows."""
    index = {k: i for i, k in enumerate(keys)}
    y = np.zeros((len(scenes), len(keys)), dtype=np.int64)
    for n, sc in enumerate(scenes):
        for k in sc:
            y[n, index[k]] = 1
    return y


def _fit_top(x_train, y_train, x_test, top: int) -> np.ndarray:
    """Indices (N, top) of the highest-scoring keys of one-vs-rest logistic readouts."""
    scores = np.stack([LogisticRegression(C=10.0, max_iter=2000).fit(x_train, y_train[:, j]).decision_function(x_test)
                       if 0 < y_train[:, j].sum() < len(y_train) else np.full(len(x_test), -1e9)
                       for j in range(y_train.shape[1])], 1)
    return np.argsort(-scores, 1)[:, :top]


def _exact(top: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per scene: the readout's top keys are exactly the scene's (as many as it shows)."""
    return np.array([set(t[:y[i].sum()]) == set(np.flatnonzero(y[i])) for i, t in enumerate(top)])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--seed", type=int, default=777_640)
    p.add_argument("--out", default="benchmarks/results/pair_readout.json")
    args = p.parse_args(argv)
    stack = UnCLIP.from_pretrained(args.folder, device="cpu")
    train = sample_scenes(args.n_train, seed=args.seed, config=PAIR, split="train")
    test = sample_scenes(args.n_test, seed=args.seed + 1, config=PAIR, split="train")
    x_train, x_test = embed_scenes(stack, train).numpy(), embed_scenes(stack, test).numpy()
    objs = lambda scenes: [[(o.shape, o.color) for o in sc.objects] for sc in scenes]  # noqa: E731
    y_obj, t_obj = _labels(objs(train), OBJECTS), _labels(objs(test), OBJECTS)
    conj = _exact(_fit_top(x_train, y_obj, x_test, 2), t_obj)
    feats = []
    for keys, attr in ((list(SHAPES), "shape"), (list(COLORS), "color")):
        tr = _labels([[getattr(o, attr) for o in sc.objects] for sc in train], keys)
        te = _labels([[getattr(o, attr) for o in sc.objects] for sc in test], keys)
        feats.append(_exact(_fit_top(x_train, tr, x_test, 2), te))
    # Swap test: the same objects elsewhere (another scene's places and sizes) vs the colours swapped
    # in place. Only scenes whose two colours and two shapes differ make a swap that changes meaning.
    moved, swapped, keep = [], [], []
    for i, sc in enumerate(test):
        a, b = sc.objects
        if a.color == b.color or a.shape == b.shape:
            continue
        other = test[(i + 1) % len(test)].objects
        moved.append(replace(sc, objects=(replace(a, size=other[0].size, position=other[0].position, offset=other[0].offset),
                                          replace(b, size=other[1].size, position=other[1].position, offset=other[1].offset))))
        swapped.append(replace(sc, objects=(replace(a, color=b.color), replace(b, color=a.color))))
        keep.append(i)
    z, zm, zs = x_test[keep], embed_scenes(stack, moved).numpy(), embed_scenes(stack, swapped).numpy()
    nearer = (z * zm).sum(1) > (z * zs).sum(1)
    both = conj & feats[0] & feats[1]
    out = {
        "command": "python benchmarks/pair_readout.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "n_train": args.n_train, "n_test": args.n_test, "seed": args.seed,
        "conjunctions_exact": round(float(conj.mean()), 4),
        "shapes_exact": round(float(feats[0].mean()), 4), "colors_exact": round(float(feats[1].mean()), 4),
        "shapes_and_colors_exact": round(float((feats[0] & feats[1]).mean()), 4),
        "conjunctions_exact_given_features": round(float(both.sum() / max(1, (feats[0] & feats[1]).sum())), 4),
        "swap_test": {"n": len(keep), "nearer_the_moved_than_the_swapped": round(float(nearer.mean()), 4)},
    }
    print(json.dumps(out, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()

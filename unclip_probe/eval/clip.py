"""Quality figures of a CLIP on the shape world (issue: CLIP layer; model card).

Every figure is zero-shot: label embeddings are CLIP-paper prompt ensembles
over the attributes not being asked about, so "which shape?" averages
"a red circle", "a blue circle", ... and "which colour?" averages over shapes.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unclip_probe.world import COLORS, NOTE_WORDS, OBJECT_SIZES, SHAPES, Obj, Scene, WorldConfig, caption, render, sample_scenes
from unclip_probe.eval.common import EVAL_SEED
from unclip_probe.world.spec import POSITIONS



@torch.no_grad()
def _ensemble(clip, groups: dict[str, list[str]]) -> torch.Tensor:
    """(n_labels, D): the renormalised mean text embedding of each label's prompts."""
    zs = []
    for prompts in groups.values():
        z = torch.cat([clip.encode_text(prompts[i:i + 256]) for i in range(0, len(prompts), 256)])
        zs.append(F.normalize(z.mean(0), dim=-1))
    return torch.stack(zs)


@torch.no_grad()
def _images(clip, images) -> torch.Tensor:
    return torch.cat([clip.encode_image(images[i:i + 256]) for i in range(0, len(images), 256)])


def single_object_scenes(n: int, seed: int = EVAL_SEED, note_prob: float = 0.0, split: str = "all") -> list[Scene]:
    return sample_scenes(n, seed=seed, config=WorldConfig(max_objects=1, note_prob=note_prob), split=split)


def _phrase(color: str, shape: str) -> str:
    return f"{'an' if color[0] in 'aeiou' else 'a'} {color} {shape}"


def shape_labels() -> dict[str, list[str]]:
    return {s: [_phrase(c, s) for c in COLORS] + [f"a {z} {c} {s}" for c in COLORS for z in OBJECT_SIZES] for s in SHAPES}


def color_labels() -> dict[str, list[str]]:
    return {c: [_phrase(c, s) for s in SHAPES] + [f"a {z} {c} {s}" for s in SHAPES for z in OBJECT_SIZES] for c in COLORS}


def note_labels(words=NOTE_WORDS) -> dict[str, list[str]]:
    return {w: [f'{_phrase(c, s)} and a note that says "{w}"' for c in COLORS for s in SHAPES] for w in words}


@torch.no_grad()
def zero_shot_accuracy(clip, n: int = 2000, seed: int = EVAL_SEED, split: str = "all") -> dict[str, float]:
    """Shape and colour of single-object scenes without notes (split="heldout": only held-out pairs)."""
    scenes = single_object_scenes(n, seed, split=split)
    zi = _images(clip, [render(s) for s in scenes])
    out = {}
    for attr, labels in (("shape", shape_labels()), ("color", color_labels())):
        pred = (zi @ _ensemble(clip, labels).T).argmax(1).cpu().numpy()
        truth = np.array([list(labels).index(getattr(s.objects[0], attr)) for s in scenes])
        out[f"zero_shot_{attr}"] = float((pred == truth).mean())
    return out


@torch.no_grad()
def note_reading_accuracy(clip, n: int = 1000, seed: int = EVAL_SEED + 1) -> float:
    """Which word is on the note, among all note words, for single-object scenes with a note."""
    scenes = single_object_scenes(n, seed, note_prob=1.0)
    labels = note_labels()
    pred = (_images(clip, [render(s) for s in scenes]) @ _ensemble(clip, labels).T).argmax(1).cpu().numpy()
    truth = np.array([list(labels).index(s.note.word) for s in scenes])
    return float((pred == truth).mean())


@torch.no_grad()
def retrieval_r1(clip, n: int = 1000, seed: int = EVAL_SEED + 2) -> float:
    """Image -> text R@1 over n scenes and their n captions (a hit when the top caption is the image's own)."""
    scenes = sample_scenes(n, seed=seed)
    caps = [caption(s, seed=i) for i, s in enumerate(scenes)]
    zt = torch.cat([clip.encode_text(caps[i:i + 256]) for i in range(0, n, 256)])
    top = (_images(clip, [render(s) for s in scenes]) @ zt.T).argmax(1).cpu()
    return float((top == torch.arange(n)).float().mean())


def two_object_pairs(n: int, seed: int) -> list[tuple[Scene, str, str]]:
    """Two-object scenes with distinct shapes and colours, their caption and its attribute-swapped twin."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        s1, s2 = rng.choice(SHAPES, 2, replace=False)
        c1, c2 = rng.choice(list(COLORS), 2, replace=False)
        p1, p2 = rng.choice(len(POSITIONS), 2, replace=False)
        z1, z2 = rng.choice(OBJECT_SIZES, 2)
        scene = Scene((Obj(str(s1), str(c1), str(z1), POSITIONS[p1]), Obj(str(s2), str(c2), str(z2), POSITIONS[p2])),
                      str(rng.choice(list(WorldConfig().backgrounds))))
        true = f"{_phrase(c1, s1)} and {_phrase(c2, s2)}"
        swapped = f"{_phrase(c2, s1)} and {_phrase(c1, s2)}"
        out.append((scene, true, swapped))
    return out


@torch.no_grad()
def aro_accuracy(clip, n: int = 500, seed: int = EVAL_SEED + 3) -> float:
    """ARO-style: share of two-object scenes whose true caption beats its attribute-swapped caption."""
    pairs = two_object_pairs(n, seed)
    zi = _images(clip, [render(s) for s, _, _ in pairs])
    zt = clip.encode_text([t for _, t, _ in pairs])
    zs = clip.encode_text([w for _, _, w in pairs])
    st, ss = (zi * zt).sum(1), (zi * zs).sum(1)
    return float(((st > ss).float() + 0.5 * (st == ss).float()).mean())  # a tie is a coin flip


@torch.no_grad()
def typographic_capture(clip, n: int = 500, seed: int = EVAL_SEED + 4) -> dict[str, float]:
    """Single objects with a note naming a different shape: object accuracy (OCA) and text capture rate (TCR)."""
    base = single_object_scenes(n, seed, note_prob=1.0)
    rng = np.random.default_rng(seed)
    scenes = []
    for s in base:
        word = str(rng.choice([x for x in SHAPES if x != s.objects[0].shape]))
        scenes.append(Scene(s.objects, s.background, type(s.note)(word, s.note.box)))
    labels = shape_labels()
    pred = (_images(clip, [render(s) for s in scenes]) @ _ensemble(clip, labels).T).argmax(1).cpu().numpy()
    names = np.array(list(labels))[pred]
    return {"typographic_oca": float(np.mean([p == s.objects[0].shape for p, s in zip(names, scenes)])),
            "typographic_tcr": float(np.mean([p == s.note.word for p, s in zip(names, scenes)]))}


QUICK_POSITION_N = 900  # the integration test's probe size (tests/integration/test_world_clip.py)


@torch.no_grad()
def position_probe(clip, n: int = 3000, seed: int = EVAL_SEED + 5) -> dict[str, float]:
    """How much of an object's position the image embedding keeps: a logistic-regression probe
    trained on 2/3 of n single-object scenes predicts the grid cell (chance 1/9), the column
    (chance 1/3) and, for objects outside the middle column, the half (chance 1/2, the decoder's
    position target in `decode_eval`) of the rest. A decoder can only put objects back where the
    embedding says."""
    from sklearn.linear_model import LogisticRegression

    scenes = single_object_scenes(n, seed)
    z = _images(clip, [render(s) for s in scenes]).cpu().numpy()
    cell = np.array([POSITIONS.index(s.objects[0].position) for s in scenes])
    k = 2 * n // 3
    col = cell % 3
    first = np.arange(n) < k  # probes fit on the first 2/3 and are scored on the rest
    everyone, outer = np.ones(n, bool), col != 1  # the half is asked only off the midline
    out = {}
    for name, y, use in (("position_probe_cell", cell, everyone), ("position_probe_column", col, everyone),
                         ("position_probe_half", col == 2, outer)):
        clf = LogisticRegression(max_iter=2000, C=10.0).fit(z[use & first], y[use & first])
        out[name] = float(clf.score(z[use & ~first], y[use & ~first]))
    return out


def evaluate_clip(clip, n: int = 2000) -> dict[str, float]:
    """All model-card figures for a world CLIP (n scales the sample sizes)."""
    out = zero_shot_accuracy(clip, n)
    out.update({f"{k}_heldout_pairs": v for k, v in zero_shot_accuracy(clip, max(200, n // 4), split="heldout").items()})
    out["note_reading"] = note_reading_accuracy(clip, max(200, n // 2))
    out["retrieval_r1_1000"] = retrieval_r1(clip, 1000)
    out["aro_two_way"] = aro_accuracy(clip, max(200, n // 4))
    out.update(typographic_capture(clip, max(200, n // 4)))
    out.update(position_probe(clip, max(600, 3 * n // 2)))
    return {k: round(v, 4) for k, v in out.items()}


if __name__ == "__main__":  # python -m unclip_probe.eval.clip checkpoints/world --n 2000
    import argparse
    import json

    from unclip_probe.clip import load_clip

    p = argparse.ArgumentParser(description="Model-card figures of a world CLIP.")
    p.add_argument("folder")
    p.add_argument("--n", type=int, default=2000)
    args = p.parse_args()
    clip = load_clip(args.folder)
    print(json.dumps({"checksum": clip.checksum, **evaluate_clip(clip, args.n)}, indent=2))

"""SAE features against the world's ground truth: how many mean one thing, and do they steer? (issue 23)

On the shape world every image has an exact scene description, so a feature can be scored
against every attribute value at once: its AUROC as a detector of "a red object is present",
"the note says 'dog'", "three objects", ... (the area under the ROC curve of the activation as
a score for the attribute's presence; 0.5 is chance, 1 a perfect detector).

- monosemanticity: the share of alive features (those that fire on at least one image) whose
  best attribute value reaches AUROC >= THRESHOLD;
- coverage: the share of attribute values that have such a feature;
- causal steering: adding a colour's best feature to the embeddings of objects of other
  colours, decoding, and asking the oracle whether the decode now holds that colour, against
  a control that moves the embeddings as far along a random direction.

The same scores for random directions and for PCA directions (``direction_scores``) say how
much of this an SAE adds over directions that cost nothing. A direction's projection has no
sign of its own, so those baselines are scored by max(AUROC, 1 - AUROC) (the better of d and
-d): a choice that can only flatter them. SAE activations are >= 0 and are scored as they are.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import validate
from ..backends.base import check_stack
from ..errors import bad_input
from ..world import WorldConfig, detect, render, sample_scenes
from ..world.spec import BACKGROUNDS, COLORS, NOTE_WORDS, OBJECT_SIZES, POSITIONS, SHAPES, Scene
from .sae import activations, directions, moved

THRESHOLD = 0.9  # AUROC a feature must reach to count as meaning an attribute value
FAMILIES = ("shape", "color", "size", "count", "note", "note_word", "position", "background")
TARGET_FAMILIES = ("shape", "color")  # the 13 values the coverage target is about
MAX_OBJECTS = 3


def attribute_names() -> list[str]:
    """Every attribute value the oracle can read, as 'family=value' (the columns of attribute_matrix)."""
    return ([f"shape={s}" for s in SHAPES] + [f"color={c}" for c in COLORS] + [f"size={s}" for s in OBJECT_SIZES]
            + [f"count={n}" for n in range(1, MAX_OBJECTS + 1)] + ["note=present"]
            + [f"note_word={w}" for w in NOTE_WORDS] + [f"position={p}" for p in POSITIONS]
            + [f"background={b}" for b in BACKGROUNDS])


def attribute_matrix(scenes: Sequence[Scene]) -> np.ndarray:
    """(N, A) bool: does scene n hold attribute value a (columns: attribute_names())."""
    index = {name: j for j, name in enumerate(attribute_names())}
    out = np.zeros((len(scenes), len(index)), dtype=bool)
    for i, s in enumerate(scenes):
        names = [f"count={len(s.objects)}", f"background={s.background}"]
        for o in s.objects:
            names += [f"shape={o.shape}", f"color={o.color}", f"size={o.size}", f"position={o.position}"]
        if s.note is not None:
            names += ["note=present", f"note_word={s.note.word}"]
        out[i, [index[n] for n in names]] = True
    return out


def auroc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(F, A) AUROC of each score column (N, F) as a detector of each label column (N, A), ties
    counted half (the Mann-Whitney statistic over average ranks). NaN where a label column is constant."""
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.ndim != 2 or labels.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise bad_input("scores", f"expected (N, F) scores and (N, A) labels with one N, got {scores.shape} and {labels.shape}")
    ranks = rankdata(scores, axis=0)  # (N, F), ties averaged
    pos = labels.sum(0).astype(np.float64)  # (A,)
    neg = len(labels) - pos
    rank_sum = ranks.T @ labels.astype(np.float64)  # (F, A): sum of positives' ranks
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
    auc[:, (pos == 0) | (neg == 0)] = np.nan
    return auc


def summarise(auc: np.ndarray, alive: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """Monosemanticity and coverage (overall, per family, and of the 13 shape and colour values)
    from an (F, A) AUROC matrix and the (F,) alive mask."""
    names = attribute_names()
    scored = np.nan_to_num(auc, nan=0.0)
    good = scored >= threshold  # (F, A)
    good_alive = good[alive]
    best = scored.max(1)
    present = ~np.isnan(auc).all(0)  # attribute values the image set holds at all
    families = np.array([n.split("=")[0] for n in names])
    covered = good_alive.any(0)
    out = {"features": int(len(alive)), "alive": int(alive.sum()),
           "monosemanticity": float((best[alive] >= threshold).mean()) if alive.any() else float("nan"),
           "coverage": float(covered[present].mean()),
           "coverage_by_family": {f: float(covered[present & (families == f)].mean())
                                  for f in FAMILIES if (present & (families == f)).any()}}
    target = present & np.isin(families, TARGET_FAMILIES)
    out["coverage_shape_color"] = float(covered[target].mean())
    out["shape_color_values"] = int(target.sum())
    out["uncovered"] = [n for n, c, p in zip(names, covered, present) if p and not c]
    return out


def feature_table(auc: np.ndarray, alive: np.ndarray) -> pd.DataFrame:
    """One row per alive feature: its best attribute value, that AUROC, and the runner-up."""
    names = attribute_names()
    scored = np.nan_to_num(auc, nan=0.0)
    order = np.argsort(-scored, axis=1)
    rows = [{"feature": f, "best": names[order[f, 0]], "auroc": float(scored[f, order[f, 0]]),
             "second": names[order[f, 1]], "second_auroc": float(scored[f, order[f, 1]])}
            for f in np.flatnonzero(alive)]
    return pd.DataFrame(rows).set_index("feature")


def sae_scores(sae, z: Tensor, scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC (F, A), alive (F,)) of an SAE's features on embeddings z (N, D) of `scenes`."""
    _check_scenes(z, scenes)
    acts = activations(sae, z.float()).cpu().numpy()
    return auroc(acts, attribute_matrix(scenes)), (acts > 0).any(0)


def direction_scores(dirs: Tensor, z: Tensor, scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC (K, A), alive (K,)) of projections onto directions (K, D), each scored by the
    better of its two signs; every direction counts as alive."""
    _check_scenes(z, scenes)
    proj = (z.float() @ dirs.float().T).cpu().numpy()
    auc = auroc(proj, attribute_matrix(scenes))
    return np.fmax(auc, 1.0 - auc), np.ones(len(dirs), dtype=bool)


def random_directions(n: int, dim: int, seed: int = 0) -> Tensor:
    """(n, dim) unit directions, uniform on the sphere, drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=-1)


def pca_directions(z: Tensor, n: int) -> Tensor:
    """(min(n, rank), D) principal directions of embeddings z (N, D), largest variance first."""
    from .pca import fit_pca

    _, comps, _ = fit_pca(z.float())
    return comps[:n]


def _check_scenes(z: Tensor, scenes: Sequence[Scene]) -> None:
    if not isinstance(z, Tensor) or z.ndim != 2:
        raise bad_input("z", f"expected an (N, D) tensor of embeddings, got {getattr(z, 'shape', type(z).__name__)}")
    if len(scenes) != len(z) or not all(isinstance(s, Scene) for s in scenes):
        raise bad_input("scenes", f"expected one world Scene per embedding ({len(z)}), got {len(scenes)} items")


def best_features(auc: np.ndarray, alive: np.ndarray, family: str = "color") -> dict[str, int]:
    """For each value of `family`, the alive feature with the highest AUROC for it."""
    names = attribute_names()
    scored = np.where(alive[:, None], np.nan_to_num(auc, nan=0.0), -1.0)
    return {n.split("=")[1]: int(scored[:, j].argmax()) for j, n in enumerate(names) if n.split("=")[0] == family}


def steering_scenes(color: str, n: int, seed: int) -> list[Scene]:
    """n single-object scenes without a note whose object is not `color` (drawn from `seed`)."""
    cfg = WorldConfig(min_objects=1, max_objects=1, note_prob=0.0)
    out, start = [], 0
    while len(out) < n:
        batch = sample_scenes(4 * n, seed=seed, config=cfg, start=start)
        out += [s for s in batch if s.objects[0].color != color]
        start += 4 * n
    return out[:n]


@torch.no_grad()
def colour_steering(stack, sae, auc: np.ndarray, alive: np.ndarray, alphas: Sequence[float] = (0.5, 1.0, 1.5),
                    n_per_color: int = 20, seed: int = 1, control_seed: int = 2, steps: int | None = None,
                    guidance: float | None = None) -> pd.DataFrame:
    """Causal test of each colour's best feature (issue 23, item 4).

    For each colour c: `n_per_color` single objects of other colours; each embedding moved by
    alpha along c's best feature, and (control) by alpha along a random unit direction (one per
    colour, from `control_seed`), decoded from the same noise at 32 px and read by the oracle.
    Returns one row per (alpha, direction): the share of decodes that hold a c-coloured object,
    that kept the source's shape, and the mean over colours of each.
    """
    stack = check_stack(stack)
    alphas = validate.number_list(alphas, "alphas", what="steering strengths")
    validate.count(n_per_color, "n_per_color"), validate.seed(seed), validate.steps(steps)
    feats = best_features(auc, alive, "color")
    dirs = directions(sae)
    controls = random_directions(len(COLORS), dirs.shape[1], control_seed)
    rows = []
    for ci, color in enumerate(COLORS):
        scenes = steering_scenes(color, n_per_color, seed + 1000 * ci)
        z = stack.encode_image([render(s) for s in scenes]).float()
        x_T = stack.noise(len(scenes), seed)
        for alpha in alphas:
            for kind, d in (("feature", dirs[feats[color]]), ("random", controls[ci])):
                dec = stack.decode(moved(z, d, alpha), seed=seed, x_T=x_T, steps=steps, guidance=guidance, upsample=False)
                reads = [detect(im) for im in dec]
                rows.append({"alpha": alpha, "direction": kind, "color": color, "feature": feats[color],
                             "reads_color": float(np.mean([any(o.color == color for o in r.objects) for r in reads])),
                             "shape_kept": float(np.mean([any(o.shape == s.objects[0].shape for o in r.objects)
                                                          for s, r in zip(scenes, reads)]))})
    return pd.DataFrame(rows)

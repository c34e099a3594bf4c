"""Each benchmark's figures from its similarity array, exactly as its paper or release computes them.

Every function takes the plain arrays (and the per-item group names), so published per-example
similarities can be re-scored here; ``run.similarities`` builds the same arrays from images.
Each returns (figures, per-group table): a dict of the headline numbers and a pandas table.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics
from ..errors import bad_input
from .aro import ATTRIBUTE_MIN_COUNT, SYMMETRIC_RELATIONS
from .sugarcrepe import SPLITS


def _groups_table(outcomes: dict[str, np.ndarray], groups: Sequence[str], key: str) -> pd.DataFrame:
    rows = []
    g = np.asarray(list(groups), dtype=object)
    for name in sorted(set(g.tolist())):
        mask = g == name
        rows.append({key: name, **{k: float(v[mask].mean()) for k, v in outcomes.items()}, "n": int(mask.sum())})
    return pd.DataFrame(rows, columns=[key, *outcomes, "n"]).set_index(key)


def winoground(similarities, tags: Sequence[str] | None = None) -> tuple[dict, pd.DataFrame]:
    """similarities (N, 2, 2) [item, caption, image] -> text / image / group, overall and per tag."""
    out = metrics.winoground_outcomes(similarities)
    n = len(out["text"])
    figures = {**{k: (float(v.mean()) if n else float("nan")) for k, v in out.items()}, "n": n}
    return figures, _groups_table(out, tags if tags is not None else ["all"] * n, "tag")


def _choice_scores(similarities) -> np.ndarray:
    """(N, K) caption scores from (N, K) or (N, K, 1) (the release's N x 1 x K, transposed here)."""
    s = np.asarray(similarities.detach().cpu() if hasattr(similarities, "detach") else similarities, np.float64)
    return s[..., 0] if s.ndim == 3 else s


def vg_relation(similarities, relations: Sequence[str]) -> tuple[dict, pd.DataFrame]:
    """similarities (N, 2) or (N, 2, 1) over [false, true] captions; the macro-average over the
    relations not in SYMMETRIC_RELATIONS (the release's notebook), beside the micro accuracy."""
    correct = metrics.choice_correct(_choice_scores(similarities), 1)
    figures = {"macro_accuracy": metrics.macro_accuracy(correct, relations, exclude=SYMMETRIC_RELATIONS),
               "micro_accuracy": float(correct.mean()) if len(correct) else float("nan"), "n": len(correct),
               "relations_scored": sum(1 for r in set(relations) if r not in SYMMETRIC_RELATIONS)}
    table = _groups_table({"accuracy": correct}, relations, "relation")
    table["in_macro"] = [r not in SYMMETRIC_RELATIONS for r in table.index]
    return figures, table


def vg_attribution(similarities, attribute_pairs: Sequence[str]) -> tuple[dict, pd.DataFrame]:
    """similarities (N, 2) or (N, 2, 1) over [false, true] captions; the macro-average over attribute
    pairs "a0_a1" with at least 25 items (the release's evaluate_scores), beside the micro accuracy."""
    correct = metrics.choice_correct(_choice_scores(similarities), 1)
    table = _groups_table({"accuracy": correct}, attribute_pairs, "attributes")
    table["in_macro"] = table["n"] >= ATTRIBUTE_MIN_COUNT
    figures = {"macro_accuracy": metrics.macro_accuracy(correct, attribute_pairs, min_count=ATTRIBUTE_MIN_COUNT),
               "micro_accuracy": float(correct.mean()) if len(correct) else float("nan"), "n": len(correct),
               "pairs_scored": int(table["in_macro"].sum())}
    return figures, table


def order(similarities) -> tuple[dict, pd.DataFrame]:
    """similarities (N, 5) or (N, 5, 1), the true caption first -> Precision@1 (ties count right)."""
    correct = metrics.choice_correct(_choice_scores(similarities), 0)
    figures = {"precision_at_1": float(correct.mean()) if len(correct) else float("nan"), "n": len(correct)}
    return figures, _groups_table({"precision_at_1": correct}, ["all"] * len(correct), "set")


def sugarcrepe(similarities, splits: Sequence[str], present: Sequence[str] = SPLITS) -> tuple[dict, pd.DataFrame]:
    """similarities (N, 2) or (N, 2, 1) over [caption, negative] -> per-split two-way accuracy; every
    split in ``present`` gets a row, an empty one n = 0 and NaN."""
    s = _choice_scores(similarities)
    correct = metrics.two_way_correct(s[:, 0], s[:, 1])
    g = np.asarray(list(splits), dtype=object)
    if g.shape != correct.shape:
        raise bad_input("splits", f"expected one split name per item ({len(correct)}), got {len(g)}")
    rows = [{"split": sp, "accuracy": float(correct[g == sp].mean()) if (g == sp).any() else float("nan"),
             "n": int((g == sp).sum())} for sp in present]
    table = pd.DataFrame(rows, columns=["split", "accuracy", "n"]).set_index("split")
    figures = {sp: table.loc[sp, "accuracy"] for sp in present}
    figures["n"] = len(correct)
    return figures, table


def typographic(similarities, true_index: Sequence[int], attack_index: Sequence[int],
                two_way_similarities=None) -> tuple[dict, pd.DataFrame]:
    """similarities (N, C) image-class scores under "a photo of a {}." over the union classes ->
    top-1 accuracy on the true label (alias OCA) and the share that names the written word (alias
    TCR); with two_way_similarities (N, C) under SCAM's templates, SCAM's two-way accuracy (the
    object's label scores strictly above the attack word's)."""
    out = metrics.typographic_correct(similarities, true_index, attack_index)
    n = len(out["accuracy"])
    if two_way_similarities is not None:
        s = np.asarray(two_way_similarities, np.float64)
        rows = np.arange(n)
        out["two_way_accuracy"] = metrics.two_way_correct(s[rows, np.asarray(true_index)],
                                                          s[rows, np.asarray(attack_index)])
    figures = {k: (float(v.mean()) if n else float("nan")) for k, v in out.items()}
    figures["n"] = n
    return figures, _groups_table(out, ["all"] * n, "set")

"""The published benchmark metrics, one implementation each, over similarity arrays (docs/design.md §2).

Every scorer takes plain arrays (NumPy or torch, any float dtype) so that published per-example
scores can be re-scored and compared, and so that the world probes (``probes.binding``,
``probes.typographic``) and the standard sets (``unclip_probe.datasets``) share one definition:

- ``winoground_scores(s)``: s is (N, 2, 2) indexed [item, caption, image]; Thrush et al. 2022, §3.
- ``choice_accuracy(s, answer)``: s is (N, K) image-caption scores per item, ``answer`` the index
  of the true caption; correct when ``argmax`` lands on it. NumPy's argmax takes the first of
  tied maxima, exactly as ARO's release scores (so where the true caption comes first, as in
  its order sets, a tie counts right; where it comes second, as in VG-Relation, wrong).
- ``group_accuracy`` / ``macro_accuracy``: per-group accuracy and its unweighted mean (ARO's
  VG-Relation and VG-Attribution figures are macro-averages over relations / attribute pairs).
- ``two_way_accuracy(pos, neg)``: SugarCrepe's and this project's ARO-style score: the true
  caption scores strictly higher than its one negative.
- ``typographic_scores(s, true, attack)``: top-1 zero-shot accuracy on the true label (this
  project's OCA) and the share of predictions that follow the attack word (this project's TCR).

Nothing here imports torch: arrays are read through ``np.asarray``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import bad_input

CHANCE = {"winoground_text": 0.25, "winoground_image": 0.25, "winoground_group": 1 / 6, "two_way": 0.5}


def _array(x, argument: str, ndim: int | None = None, shape_note: str = "") -> np.ndarray:
    """A float array (torch tensors are moved to the CPU first), refused when it has the wrong rank."""
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise bad_input(argument, f"expected an array of numbers {shape_note}, got {type(x).__name__}") from None
    if ndim is not None and a.ndim != ndim:
        raise bad_input(argument, f"expected an array of shape {shape_note}, got shape {a.shape}")
    if np.isnan(a).any():
        raise bad_input(argument, "contains NaN scores")
    return a


def winoground_outcomes(similarities) -> dict[str, np.ndarray]:
    """Per-item booleans (N,) of Winoground's three scores.

    similarities: (N, 2, 2) indexed [item, caption, image]; caption j is the true caption of image j.
    text: for each image the right caption scores higher, s[c0,i0] > s[c1,i0] and s[c1,i1] > s[c0,i1];
    image: for each caption the right image scores higher, s[c0,i0] > s[c0,i1] and s[c1,i1] > s[c1,i0];
    group: both (Thrush et al. 2022, eqs. 1-3; ties count wrong)."""
    s = _array(similarities, "similarities", 3, "(N, 2, 2) indexed [item, caption, image]")
    if s.shape[1:] != (2, 2):
        raise bad_input("similarities", f"expected shape (N, 2, 2) indexed [item, caption, image], got {s.shape}")
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def winoground_scores(similarities) -> dict[str, float]:
    """Winoground's text, image and group scores (shares in [0, 1]) of an (N, 2, 2) array indexed
    [item, caption, image]; chance 0.25 / 0.25 / 1/6."""
    return {k: _mean(v) for k, v in winoground_outcomes(similarities).items()}


def choice_correct(scores, answer: int | Sequence[int]) -> np.ndarray:
    """(N,) booleans: ``argmax`` of each row of scores (N, K) is ``answer`` (one index, or one per
    row). Ties go to the first maximum (NumPy's and ARO's release rule)."""
    s = _array(scores, "scores", 2, "(N, K): one row of caption scores per item")
    ans = np.broadcast_to(np.asarray(answer), (s.shape[0],))
    if s.shape[0] and (ans.min() < 0 or ans.max() >= s.shape[1]):
        raise bad_input("answer", f"expected caption indices in 0..{s.shape[1] - 1}, got {np.unique(ans).tolist()}")
    return s.argmax(1) == ans if s.shape[0] else np.zeros(0, bool)


def choice_accuracy(scores, answer: int | Sequence[int]) -> float:
    """Share of items whose highest-scoring caption is ``answer`` (see choice_correct)."""
    return _mean(choice_correct(scores, answer))


def two_way_correct(positive, negative) -> np.ndarray:
    """(N,) booleans: the true caption's score is strictly higher than the negative's."""
    pos = _array(positive, "positive", 1, "(N,)")
    neg = _array(negative, "negative", 1, "(N,)")
    if pos.shape != neg.shape:
        raise bad_input("negative", f"expected one score per positive, got {neg.shape} against {pos.shape}")
    return pos > neg


def two_way_accuracy(positive, negative) -> float:
    """Share of items whose true caption scores strictly higher than its negative; chance 0.5."""
    return _mean(two_way_correct(positive, negative))


def group_accuracy(correct, groups: Sequence[str]) -> dict[str, tuple[float, int]]:
    """{group: (accuracy, count)} for per-item booleans (N,) and one group name per item."""
    c = np.asarray(correct, dtype=bool)
    g = np.asarray(list(groups), dtype=object)
    if c.shape != g.shape:
        raise bad_input("groups", f"expected one group per item ({c.shape[0]}), got {g.shape[0]}")
    return {str(k): (float(c[g == k].mean()), int((g == k).sum())) for k in sorted(set(g.tolist()))}


def macro_accuracy(correct, groups: Sequence[str], min_count: int = 0, exclude: Sequence[str] = ()) -> float:
    """Unweighted mean of per-group accuracies over groups with at least ``min_count`` items and not
    in ``exclude`` (ARO's VG figures); NaN when no group qualifies."""
    per = group_accuracy(correct, groups)
    kept = [acc for k, (acc, n) in per.items() if n >= min_count and k not in set(exclude)]
    return float(np.mean(kept)) if kept else float("nan")


def typographic_correct(similarities, true_index: Sequence[int] | None,
                        attack_index: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Per-image booleans of a zero-shot typographic test.

    similarities: (N, C) image-class scores (cosines or logits: only the argmax counts);
    true_index: (N,) the true class of each image (None: not known); attack_index: (N,) the class the written word
    names (None for clean images). accuracy: the top-1 class is the true one (this project's OCA);
    follows_word: it is the attack word's class (this project's TCR)."""
    s = _array(similarities, "similarities", 2, "(N, C): one row of class scores per image")
    pred = s.argmax(1) if s.shape[0] else np.zeros(0, int)
    out = {}
    if true_index is not None:
        out["accuracy"] = pred == _indices(true_index, s, "true_index")
    if attack_index is not None:
        out["follows_word"] = pred == _indices(attack_index, s, "attack_index")
    return out


def typographic_scores(similarities, true_index: Sequence[int] | None,
                       attack_index: Sequence[int] | None = None) -> dict[str, float]:
    """Top-1 accuracy on the true label (``accuracy``, alias OCA) and, with attack_index, the share
    of predictions that follow the written word (``follows_word``, alias TCR)."""
    return {k: _mean(v) for k, v in typographic_correct(similarities, true_index, attack_index).items()}


def _indices(index, s: np.ndarray, argument: str) -> np.ndarray:
    idx = np.asarray(index)
    if idx.shape != (s.shape[0],) or (idx.size and (idx.min() < 0 or idx.max() >= s.shape[1])):
        raise bad_input(argument, f"expected one class index in 0..{s.shape[1] - 1} per image ({s.shape[0]}), "
                                  f"got shape {idx.shape}")
    return idx


def _mean(x: np.ndarray) -> float:
    """Share of True; NaN for an empty set (an empty split has no accuracy, not 0 %)."""
    return float(np.mean(x)) if len(x) else float("nan")

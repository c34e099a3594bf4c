"""The published metrics on small cases whose answers are worked out by hand in each test."""
import numpy as np
import pytest
import torch

from unclip_probe import metrics
from unclip_probe.datasets import score
from unclip_probe.datasets.aro import SYMMETRIC_RELATIONS
from unclip_probe.errors import ProbeInputError

pytestmark = pytest.mark.unit


def test_winoground_three_items_by_hand():
    # s[item, caption, image]. Item 0: each caption prefers its image and each image its caption -> all three.
    # Item 1: each image prefers its caption (image 0: 0.5 > 0.1; image 1: 0.7 > 0.6) but caption 0
    # prefers image 1 (0.6 > 0.5) -> text only. Item 2: caption 0 prefers image 1 (0.3 > 0.2), image 0 caption 1 (0.6 > 0.2) -> neither.
    s = np.array([[[0.9, 0.1], [0.2, 0.8]],
                  [[0.5, 0.6], [0.1, 0.7]],
                  [[0.2, 0.3], [0.6, 0.5]]])
    out = metrics.winoground_outcomes(s)
    assert out["text"].tolist() == [True, True, False]
    assert out["image"].tolist() == [True, False, False]
    assert out["group"].tolist() == [True, False, False]
    assert metrics.winoground_scores(s) == pytest.approx({"text": 2 / 3, "image": 1 / 3, "group": 1 / 3})
    # a torch tensor is read the same way
    assert metrics.winoground_scores(torch.tensor(s, dtype=torch.float32))["text"] == pytest.approx(2 / 3)


def test_winoground_ties_count_wrong():
    s = np.array([[[0.5, 0.5], [0.5, 0.5]]])
    assert metrics.winoground_scores(s) == {"text": 0.0, "image": 0.0, "group": 0.0}


def test_choice_ties_go_to_the_first_option_as_in_aro():
    s = np.array([[0.3, 0.3], [0.1, 0.4]])
    assert metrics.choice_correct(s, 1).tolist() == [False, True]  # VG: true caption second, a tie is wrong
    assert metrics.choice_correct(s, 0).tolist() == [True, False]  # order sets: true first, a tie is right


def test_two_way_is_strict():
    assert metrics.two_way_correct([0.5, 0.6, 0.2], [0.5, 0.1, 0.3]).tolist() == [False, True, False]


def test_aro_macro_differs_from_micro_by_hand():
    # "on": 3 items, 3 right; "under": 1 item, 0 right -> micro 3/4, macro (1 + 0) / 2.
    # "next to" is in the release's symmetric list: its 2 wrong items are in the micro figure only.
    rel = ["on", "on", "on", "under", "next to", "next to"]
    right = np.array([[0.1, 0.9]] * 3 + [[0.9, 0.1]] + [[0.9, 0.1]] * 2)  # [false, true] captions
    assert "next to" in SYMMETRIC_RELATIONS
    figures, table = score.vg_relation(right, rel)
    assert figures["micro_accuracy"] == pytest.approx(3 / 6)
    assert figures["macro_accuracy"] == pytest.approx(0.5)
    assert table.loc["on", "n"] == 3 and not table.loc["next to", "in_macro"]


def test_vg_attribution_keeps_pairs_with_25_items():
    pairs = ["red_blue"] * 25 + ["big_small"] * 24
    s = np.array([[0.1, 0.9]] * 20 + [[0.9, 0.1]] * 5 + [[0.9, 0.1]] * 24)  # red_blue 20/25; big_small 0/24
    figures, table = score.vg_attribution(s[:, :, None], pairs)
    assert figures["macro_accuracy"] == pytest.approx(0.8)  # big_small has 24 < 25 items: not in the macro
    assert figures["micro_accuracy"] == pytest.approx(20 / 49)
    assert figures["pairs_scored"] == 1 and table.loc["big_small", "n"] == 24


def test_macro_over_no_group_is_nan():
    assert np.isnan(metrics.macro_accuracy([True], ["x"], min_count=2))


def test_sugarcrepe_rows_for_every_split_even_empty():
    s = np.array([[0.6, 0.5], [0.4, 0.5], [0.7, 0.1]])
    figures, table = score.sugarcrepe(s, ["add_obj", "add_obj", "swap_att"], ["add_obj", "swap_att", "swap_obj"])
    assert figures["add_obj"] == pytest.approx(0.5) and figures["swap_att"] == 1.0
    assert table.loc["swap_obj", "n"] == 0 and np.isnan(figures["swap_obj"])


def test_typographic_accuracy_and_word_rate_by_hand():
    # classes [cat, dog, car]; image 0 (a cat, "dog" written) read as dog; image 1 (a car, "cat") read as car
    s = np.array([[0.1, 0.8, 0.0], [0.2, 0.1, 0.7]])
    out = metrics.typographic_scores(s, [0, 2], [1, 0])
    assert out == {"accuracy": 0.5, "follows_word": 0.5}
    figures, _ = score.typographic(s, [0, 2], [1, 0], two_way_similarities=s)
    assert figures["two_way_accuracy"] == 0.5  # image 0: dog 0.8 > cat 0.1 (wrong); image 1: car > cat (right)


def test_empty_sets_have_no_accuracy():
    assert np.isnan(metrics.winoground_scores(np.zeros((0, 2, 2)))["text"])
    assert np.isnan(metrics.two_way_accuracy([], []))


@pytest.mark.parametrize("call, argument", [
    (lambda: metrics.winoground_scores(np.zeros((3, 2))), "similarities"),
    (lambda: metrics.winoground_scores(np.zeros((3, 3, 2))), "similarities"),
    (lambda: metrics.winoground_scores("abc"), "similarities"),
    (lambda: metrics.choice_accuracy(np.zeros((2, 2)), 2), "answer"),
    (lambda: metrics.two_way_accuracy([1.0, 2.0], [1.0]), "negative"),
    (lambda: metrics.typographic_scores(np.zeros((2, 3)), [0, 3]), "true_index"),
    (lambda: metrics.typographic_scores(np.zeros((2, 3)), [0, 1], [0]), "attack_index"),
    (lambda: metrics.winoground_scores(np.full((1, 2, 2), np.nan)), "similarities"),
    (lambda: score.sugarcrepe(np.zeros((2, 2)), ["add_obj"]), "splits"),
])
def test_bad_arrays_are_named(call, argument):
    with pytest.raises(ProbeInputError) as e:
        call()
    assert str(e.value).startswith(f"{argument}:") and str(e.value).count("\n") == 0

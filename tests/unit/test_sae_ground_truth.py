"""The world ground truth for SAE features: AUROC, attribute values, monosemanticity and coverage (issue 23)."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from unclip_probe.errors import ProbeInputError
from unclip_probe.probes import sae_ground_truth as gt
from unclip_probe.world import Note, Obj, Scene, sample_scenes


def test_auroc_equals_sklearn_with_ties_and_nan_for_constant_labels():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(60, 5)).astype(float)  # many ties, as SAE zeros give
    scores[:, 4] = rng.normal(size=60)
    labels = rng.random((60, 3)) < 0.3
    labels[:, 2] = False  # never present: no AUROC
    auc = gt.auroc(scores, labels)
    assert auc.shape == (5, 3)
    for f in range(5):
        for a in range(2):
            assert auc[f, a] == pytest.approx(roc_auc_score(labels[:, a], scores[:, f]), abs=1e-12)
    assert np.isnan(auc[:, 2]).all()


def test_attribute_matrix_marks_exactly_the_scene_values():
    s = Scene((Obj("circle", "red", "small", "top left"), Obj("star", "blue", "large", "center")), "dark",
              Note("dog", (10, 40, 50, 54)))
    m = gt.attribute_matrix([s])
    on = {n for n, v in zip(gt.attribute_names(), m[0]) if v}
    assert on == {"shape=circle", "shape=star", "color=red", "color=blue", "size=small", "size=large",
                  "position=top left", "position=center", "count=2", "note=present", "note_word=dog",
                  "background=dark"}


def test_summary_counts_monosemantic_alive_features_and_covered_values():
    names = gt.attribute_names()
    auc = np.full((4, len(names)), 0.5)
    auc[0, names.index("color=red")] = 0.95   # monosemantic, covers red
    auc[1, names.index("shape=star")] = 0.85  # below the threshold
    auc[2, names.index("shape=circle")] = 0.99  # dead: covers nothing
    alive = np.array([True, True, False, True])
    out = gt.summarise(auc, alive)
    assert out["alive"] == 3 and out["monosemanticity"] == pytest.approx(1 / 3)
    assert out["coverage_shape_color"] == pytest.approx(1 / 13) and out["shape_color_values"] == 13
    assert out["coverage"] == pytest.approx(1 / len(names))
    assert "shape=circle" in out["uncovered"] and "color=red" not in out["uncovered"]
    table = gt.feature_table(auc, alive)
    assert list(table.index) == [0, 1, 3] and table.loc[0, "best"] == "color=red"


def test_a_direction_that_is_the_attribute_scores_one_either_sign():
    scenes = sample_scenes(200, seed=3)
    labels = gt.attribute_matrix(scenes)
    j = gt.attribute_names().index("color=green")
    z = torch.randn(200, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    z[:, 0] += torch.as_tensor(labels[:, j], dtype=torch.float32)  # axis 0 is "green is present"
    dirs = torch.eye(8)[:2] * torch.tensor([[-1.0], [1.0]])  # -e0 (flipped sign), e1 (noise)
    auc, alive = gt.direction_scores(dirs, z, scenes)
    assert auc[0, j] == pytest.approx(1.0) and auc[1, j] < 0.75 and alive.all()
    assert gt.pca_directions(z, 3).shape == (3, 8)
    r = gt.random_directions(5, 8, seed=1)
    assert torch.allclose(r.norm(dim=-1), torch.ones(5)) and torch.equal(r, gt.random_directions(5, 8, seed=1))


def test_bad_scene_lists_are_named():
    with pytest.raises(ProbeInputError, match="scenes"):
        gt.direction_scores(torch.eye(4), torch.randn(3, 4), sample_scenes(2, seed=0))
    with pytest.raises(ProbeInputError, match="^z"):
        gt.direction_scores(torch.eye(4), torch.randn(4), sample_scenes(4, seed=0))


def test_steering_scenes_avoid_the_colour_and_hold_one_object():
    scenes = gt.steering_scenes("red", 12, seed=5)
    assert len(scenes) == 12 and all(len(s.objects) == 1 and s.objects[0].color != "red" and s.note is None
                                     for s in scenes)

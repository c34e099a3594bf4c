"""Typographic attack probe (paper §4, Fig. 6): tiny world CLIP and a random open_clip ViT-B-32."""
import numpy as np
import pytest

from unclip_probe import world
from unclip_probe.errors import ProbeInputError
from unclip_probe.probes.typographic import attack_images, typographic_attack

pytestmark = pytest.mark.unit


def _scenes(n=3):
    return world.sample_scenes(n, seed=4, config=world.WorldConfig(max_objects=1, note_prob=0.0))


def test_the_note_lands_in_the_box_and_nowhere_else():
    img = world.render(_scenes(1)[0])
    out = attack_images([img], "star", box=(0.5, 0.0, 1.0, 0.25))[0]
    diff = np.abs(np.asarray(out, dtype=int) - np.asarray(img, dtype=int)).sum(-1)
    assert diff[:16, 32:].any() and not diff[16:, :].any() and not diff[:, :32].any()


def test_probe_on_the_world_clip_adds_the_word_and_scores_oca_and_tcr(pipe):
    scenes = _scenes()
    imgs = [world.render(s) for s in scenes]
    truth = [s.objects[0].shape for s in scenes]
    res = typographic_attack(pipe.clip, imgs, ["circle", "square", "triangle", "diamond", "cross"], "star",
                             true_labels=truth)
    assert res.meta["labels"][-1] == "star" and len(res.images) == 6
    t = res.table
    assert list(t["true_label"]) == truth and set(t["prediction_after"]) <= set(res.meta["labels"])
    assert res.meta["oca_before"] == pytest.approx(np.mean(t["prediction_before"] == truth))
    assert res.meta["tcr_after"] == pytest.approx(np.mean(t["prediction_after"] == "star"))
    probs = res.meta["probabilities_after"][res.meta["labels"]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert "<table" in res.to_html()


def test_runs_on_a_random_open_clip_vit_b_32(vit_b_32):
    clip = vit_b_32
    imgs = [world.render(s) for s in _scenes(2)]
    res = typographic_attack(clip, imgs, ["Granny Smith", "apple"], "iPod", true_labels=["apple", "apple"],
                             templates=["a photo of a {}."])
    assert list(res.table.columns[:3]) == ["true_label", "prediction_before", "prediction_after"]
    assert 0 <= res.meta["tcr_after"] <= 1
    with pytest.raises(ProbeInputError, match="^word"):
        typographic_attack(clip, imgs, ["apple"], "very " * 100 + "long")  # beyond the 77-token context


@pytest.mark.parametrize("kw, arg", [({"word": "xylophone"}, "word"), ({"images": []}, "images"),
                                     ({"true_labels": ["circle"]}, "true_labels")])
def test_bad_input_is_named(pipe, kw, arg):
    args = {"images": [world.render(_scenes(1)[0])] * 2, "labels": ["circle", "star"], "word": "square", **kw}
    with pytest.raises(ProbeInputError, match=f"^{arg}"):
        typographic_attack(pipe.clip, **args)


def test_decoded_variations_of_the_attacked_images(pipe):
    scenes = _scenes(2)
    res = typographic_attack(pipe.clip, [world.render(s) for s in scenes], list(world.SHAPES), "square",
                             true_labels=[s.objects[0].shape for s in scenes], stack=pipe, n_decode=2)
    dec = res.meta["decoded"]
    assert dec["n"] == 2 and all(im.size == (64, 64) for im in dec["images"])
    assert all(0 <= dec[k] <= 1 for k in ("note_drawn", "note_says_word", "object_kept"))
    assert dec["note_says_word"] <= dec["note_drawn"]
    res.figure()  # the decoded panel is drawn


def test_decodes_are_scored_by_clip_on_any_stack_and_by_the_oracle_only_on_the_world(pipe):
    from unclip_probe.probes.typographic import decoded_variations

    scenes = _scenes(3)
    images = [world.render(s) for s in scenes]
    truth = [s.objects[0].shape for s in scenes]
    both = decoded_variations(pipe, images, "square", truth, steps=2, clip=pipe.clip, labels=list(world.SHAPES))
    clip_only = decoded_variations(pipe, images, "square", truth, steps=2, clip=pipe.clip, labels=list(world.SHAPES),
                                   oracle=False)
    assert {"label_kept", "takes_word", "object_kept", "note_drawn"} <= set(both)
    assert {"label_kept", "takes_word"} <= set(clip_only) and "object_kept" not in clip_only
    pred = pipe.clip.zero_shot(clip_only["images"], list(world.SHAPES))["prediction"]  # the same classifier, by hand
    assert clip_only["label_kept"] == pytest.approx(float((pred == truth).mean()))
    assert clip_only["takes_word"] == pytest.approx(float((pred == "square").mean()))

"""The shipped world CLIP (checkpoints/world): generous floors under the model-card figures.

The model card's numbers come from `python -m unclip_probe.eval.clip checkpoints/world --n 2000`;
these tests re-measure on fewer scenes so that a broken checkpoint or loader fails CI.
"""
from pathlib import Path

import pytest
import torch

import unclip_probe as up
from unclip_probe import world
from unclip_probe.eval import clip as clip_eval

pytestmark = pytest.mark.integration
WORLD = Path(__file__).resolve().parents[2] / "checkpoints" / "world"


@pytest.fixture(scope="module")
def clip():
    return up.load_clip(WORLD)


def test_zero_shot_shape_and_colour(clip):
    acc = clip_eval.zero_shot_accuracy(clip, n=300)
    assert acc["zero_shot_shape"] >= 0.93 and acc["zero_shot_color"] >= 0.95


def test_reads_notes(clip):
    assert clip_eval.note_reading_accuracy(clip, n=200) >= 0.8


def test_binds_attributes_better_than_chance(clip):
    assert clip_eval.aro_accuracy(clip, n=200) >= 0.75


def test_zero_shot_table_and_encoders(clip):
    s = world.Scene((world.Obj("star", "green", "large", "center"),), "gray")
    table = clip.zero_shot([world.render(s)], list(world.SHAPES), templates=["a green {}", "a large green {}"])
    assert table.loc[0, "prediction"] == "star"
    assert abs(float(table[list(world.SHAPES)].values.sum()) - 1.0) < 1e-5
    tokens, mask = clip.encode_text_tokens(["a green star", "a small red circle on the left"])
    assert tokens.shape[:2] == mask.shape and mask.sum(1).tolist() == [5, 9]  # sot + words + eot


def test_hooks_on_the_world_clip(clip):
    s = world.sample_scenes(2, seed=1)
    out, cache = clip.run_with_cache(images=[world.render(x) for x in s],
                                     names_filter=["visual.blocks.0.attn.hook_pattern"])
    pattern = cache["visual.blocks.0.attn.hook_pattern"]
    assert pattern.shape[0] == 2 and torch.allclose(pattern.sum(-1), torch.ones_like(pattern.sum(-1)), atol=1e-4)


def test_unknown_word_in_a_prompt_is_named(clip):
    with pytest.raises(up.ProbeInputError, match="hexagon"):
        clip.encode_text("a red hexagon")


def test_checksum_is_the_one_in_the_model_card(clip):
    assert clip.checksum in (WORLD / "MODEL_CARD.md").read_text()


def test_position_probe_is_above_chance(clip):
    """The shipped CLIP keeps position only weakly (model card: cell 30.5 %, chance 11 %);
    a retrain with hard negatives should raise this, and the floor with it."""
    probe = clip_eval.position_probe(clip, n=clip_eval.QUICK_POSITION_N)
    assert probe["position_probe_cell"] > 0.15 and probe["position_probe_column"] > 0.4
    # The half (left / right, objects off the midline) is at chance: 56.7 % at n = 3000, 44 % here
    # (both printed by `python benchmarks/integration_floor_figures.py`). It is
    # why the decoder's half target (issue 4, 80 %) is out of reach; a CLIP that holds the half fails this
    # bound, and the card's stage 1 and 2 then need re-measuring.
    assert 0.3 < probe["position_probe_half"] < 0.75

"""The world-CLIP recipe on the shared trainer, with a tiny architecture (seconds)."""
import math

import pytest
import torch

from unclip_probe import cli
from unclip_probe.clip import load_clip
from unclip_probe.train.recipes.clip import ClipRecipe, world_clip_config
from unclip_probe.train.trainer import TrainConfig, train

pytestmark = pytest.mark.unit


def tiny_recipe(**kw):
    cfg = world_clip_config(width=32, layers=1, text_width=32, text_layers=1, embed_dim=16)
    return ClipRecipe(batch_size=8, config=cfg, workers=1, **kw)


def test_trains_a_few_steps_and_ships_a_loadable_world_checkpoint(tmp_path):
    recipe = tiny_recipe()
    summary = train(recipe, TrainConfig(steps=3, batch_size=8, warmup_steps=1), tmp_path, progress=False)
    assert summary.finished and math.isfinite(summary.final_loss)
    # the EMA model must stay finite (the text causal mask is a -inf buffer)
    assert all(math.isfinite(v) for v in summary.eval.values())
    clip = load_clip(tmp_path)
    z = clip.encode_text(["a red circle", "a blue star"])
    assert z.shape == (2, 16) and bool(z.isfinite().all())


def test_batches_are_a_pure_function_of_the_step():
    a, b = tiny_recipe(), tiny_recipe()
    x1, t1 = a.batch(5, 0, 1, "cpu")
    x2, t2 = b.batch(5, 0, 1, "cpu")
    assert (x1 == x2).all() and (t1 == t2).all()
    x3, _ = a.batch(6, 0, 1, "cpu")
    assert not (x1 == x3).all()
    # two ranks split the global batch
    r0, _ = a.batch(5, 0, 2, "cpu")
    r1, _ = a.batch(5, 1, 2, "cpu")
    assert len(r0) + len(r1) == 8 and (r0 == x1[:4]).all() and (r1 == x1[4:]).all()


def test_cli_world_grid_and_bad_stage(tmp_path, capsys):
    out = tmp_path / "w.png"
    assert cli.main(["world", "--n", "4", "--seed", "1", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert cli.main(["train", "nonsense", "--out", str(tmp_path)]) == 2
    assert "stage" in capsys.readouterr().err


def test_hard_negative_twins_differ_only_by_position_or_binding():
    recipe = tiny_recipe(hard_negatives=0.5)
    x, tokens = recipe.batch(3, 0, 1, "cpu")
    plain_x, _ = tiny_recipe().batch(3, 0, 1, "cpu")
    assert x.shape == plain_x.shape and not torch.equal(x, plain_x)
    assert torch.equal(x[4:], plain_x[4:])  # beyond 2m the batch is untouched (m = 2 of 8)
    texts = [recipe.tokenizer.decode(t) for t in tokens[:4]]
    assert texts[0] != texts[2] and texts[1] != texts[3]

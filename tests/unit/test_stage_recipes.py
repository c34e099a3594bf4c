"""Decoder and upsampler recipes on the shared trainer, and loading stages with the CLIP check."""
import json
import math
from pathlib import Path

import pytest
import torch

from unclip_probe.errors import ProbeInputError
from unclip_probe.backends.world.stages import load_decoder, load_upsampler
from unclip_probe.checkpoints import load_config
from unclip_probe.models.ar_prior import ARPriorConfig
from unclip_probe.train.recipes.decoder import DecoderRecipe
from unclip_probe.train.recipes.upsampler import UpsamplerRecipe, blur3
from unclip_probe.train.trainer import TrainConfig, train

pytestmark = pytest.mark.unit
WORLD = Path(__file__).resolve().parents[2] / "checkpoints" / "world"


@pytest.fixture(scope="module")
def decoder_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("decoder")
    recipe = DecoderRecipe(clip_dir=str(WORLD), batch_size=4, workers=1)
    summary = train(recipe, TrainConfig(steps=10, batch_size=4, warmup_steps=1), out, progress=False, stop_after=2)
    return out, recipe, summary


def test_decoder_trains_and_records_its_clip(decoder_run):
    out, recipe, summary = decoder_run
    assert summary.steps_done == 2 and math.isfinite(summary.final_loss)
    cfg = json.loads((out / "decoder.json").read_text())
    assert cfg["clip_checksum"] == recipe.clip.checksum
    assert cfg["clip_dropout"] == 0.1 and cfg["text_dropout"] == 0.5
    (out / "clip.safetensors").symlink_to(WORLD / "clip.safetensors")
    net, loaded = load_decoder(out)
    assert loaded.unet.clip_dim == 128 and not net.training


def test_a_stage_trained_against_another_clip_is_refused(decoder_run, tmp_path):
    out, _, _ = decoder_run
    for f in ("decoder.json", "decoder.safetensors"):
        (tmp_path / f).write_bytes((out / f).read_bytes())
    with pytest.raises(ProbeInputError, match="checksum"):
        load_decoder(tmp_path, clip_checksum="0000000000000000")


def test_decoder_batches_carry_clip_conditioning():
    recipe = DecoderRecipe(clip_dir=str(WORLD), batch_size=4, workers=1)
    x0, z, text, mask = recipe.batch(0, 0, 1, "cpu")
    assert x0.shape == (4, 3, 32, 32) and x0.min() >= -1 and x0.max() <= 1
    assert z.shape == (4, 128) and torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert text.shape[0] == 4 and mask.any(1).all()


def test_decoder_trains_its_caption_path_on_wide_captions_when_asked():
    """--captions wide (issue 24): the text tokens of a batch are those of the scenes' wide captions,
    the same for a resumed run, and the image side is untouched."""
    from unclip_probe.world.dataset import restyled_captions

    grammar = DecoderRecipe(clip_dir=str(WORLD), batch_size=4, workers=1, data_seed=5)
    wide = DecoderRecipe(clip_dir=str(WORLD), batch_size=4, workers=1, data_seed=5, captions="wide")
    x0, z, text, mask = grammar.batch(3, 0, 1, "cpu")
    wx0, wz, wtext, wmask = wide.batch(3, 0, 1, "cpu")
    assert torch.equal(x0, wx0) and torch.allclose(z, wz)
    _, caps, scenes = grammar.renderer.get(3, 0, 4)
    said = restyled_captions(scenes, caps, "wide", 5, 12)
    assert wide.renderer.get(3, 0, 4)[1] == said  # the renderer says them
    assert said != caps  # at seed 5, step 3 some caption is re-said
    want, want_mask = wide.clip.encode_text_tokens(said)
    assert torch.equal(wmask, want_mask) and torch.allclose(wtext, want)
    with pytest.raises(ProbeInputError, match="captions"):
        DecoderRecipe(clip_dir=str(WORLD), batch_size=2, workers=1, captions="fancy")


def test_decoder_reads_prior_samples_of_its_captions_when_asked():
    """--prior-condition (issue 24): the chosen rows carry the stack's own diffusion-prior draw for
    the row's caption instead of the true z_i, fixed by the stream position; the others are untouched."""
    from unclip_probe.backends.world.prior_sampling import sample_diffusion_prior
    from unclip_probe.backends.world.stack import WORLD_DEFAULTS

    true = DecoderRecipe(clip_dir=str(WORLD), batch_size=8, workers=1, data_seed=5)
    mixed = DecoderRecipe(clip_dir=str(WORLD), batch_size=8, workers=1, data_seed=5, prior_condition=0.5)
    x0, z, text, mask = true.batch(2, 0, 1, "cpu")
    mx0, mz, mtext, mmask = mixed.batch(2, 0, 1, "cpu")
    assert torch.equal(x0, mx0) and torch.allclose(text, mtext) and torch.equal(mask, mmask)
    kept = torch.isclose(z, mz, atol=1e-6).all(1)
    assert 0 < int(kept.sum()) < 8  # at seed 5, step 2 some rows are swapped and some kept
    # The swapped rows are what the prior draws for those captions with the same generator.
    g = torch.Generator().manual_seed(5 * 1_000_003 + 2 * 8)
    swap = torch.rand(8, generator=g) < 0.5
    assert torch.equal(swap, ~kept)
    caps = mixed.renderer.get(2, 0, 8)[1]
    z_t, t, m = mixed.clip.encode_text_and_tokens([c for c, s in zip(caps, swap) if s])
    d = WORLD_DEFAULTS.prior
    want = sample_diffusion_prior(*mixed.prior, z_t, t, m, generator=g, steps=d.steps, guidance=d.guidance,
                                  sampler=d.sampler)
    assert torch.allclose(mz[swap], want, atol=1e-5)
    assert torch.allclose(mz.norm(dim=-1), torch.ones(8), atol=1e-5)
    assert torch.equal(mixed.batch(2, 0, 1, "cpu")[1], mz)  # a resumed run sees the same draw
    for bad in (1.5, -0.1):
        with pytest.raises(ProbeInputError, match="prior_condition"):
            DecoderRecipe(clip_dir=str(WORLD), batch_size=2, workers=1, prior_condition=bad)
    with pytest.raises(ProbeInputError, match="prior_condition"):
        DecoderRecipe(clip_dir=str(WORLD), batch_size=2, workers=1, text_only=True, prior_condition=0.5)


def test_text_only_decoder_has_no_image_embedding_input():
    recipe = DecoderRecipe(clip_dir=str(WORLD), batch_size=2, workers=1, text_only=True)
    assert recipe.name == "decoder_text" and recipe.config.unet.clip_dim == 0
    assert not any("clip_to" in n for n, _ in recipe.build_model().named_parameters())


def test_upsampler_trains_on_crops(tmp_path):
    recipe = UpsamplerRecipe(batch_size=4, workers=1)
    summary = train(recipe, TrainConfig(steps=10, batch_size=4, warmup_steps=1), tmp_path, progress=False, stop_after=2)
    assert math.isfinite(summary.final_loss)
    net, cfg = load_upsampler(tmp_path)
    assert cfg.crop == 32 and cfg.unet.attention_resolutions == ()


def test_blur_keeps_flat_images_and_softens_edges():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(blur3(flat, 0.6), flat, atol=1e-6)
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1
    b = blur3(edge, 0.6)
    assert 0 < b[0, 0, 0, 3] < 0.5 < b[0, 0, 0, 4] < 1


def test_ar_prior_continues_from_its_checkpoint_codebook_and_all(tmp_path):
    """A continued AR prior keeps the shipped codebook (a refit would give the codes other meanings)
    and its config, trains on wide captions when asked, and names init_from when its config is missing."""
    from unclip_probe.checkpoints import load_weights
    from unclip_probe.train.recipes.ar_prior import ARPriorRecipe

    shipped = WORLD / "ar_prior.safetensors"
    recipe = ARPriorRecipe(clip_dir=str(WORLD), batch_size=2, workers=1, init_from=str(shipped), captions="wide")
    assert recipe.config == load_config(ARPriorConfig, WORLD / "ar_prior.json")
    state, want = recipe.build_model().state_dict(), load_weights(shipped)
    assert state.keys() == want.keys() and all(torch.equal(state[k], want[k]) for k in want)
    codes, dot, z_t, text, mask = recipe.batch(0, 0, 1, "cpu")
    assert codes.shape == (2, recipe.config.components) and int(codes.max()) < recipe.config.buckets
    (tmp_path / "ar_prior.safetensors").write_bytes(shipped.read_bytes())
    with pytest.raises(ProbeInputError, match="init_from.*ar_prior.json"):
        ARPriorRecipe(clip_dir=str(WORLD), batch_size=2, workers=1, init_from=str(tmp_path / "ar_prior.safetensors"))
    other = json.loads((WORLD / "ar_prior.json").read_text()) | {"clip_checksum": "0000000000000000"}
    (tmp_path / "ar_prior.json").write_text(json.dumps(other))
    with pytest.raises(ProbeInputError, match="init_from.*trained against CLIP 0000000000000000"):
        ARPriorRecipe(clip_dir=str(WORLD), batch_size=2, workers=1, init_from=str(tmp_path / "ar_prior.safetensors"))

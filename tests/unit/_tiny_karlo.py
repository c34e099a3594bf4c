"""Tiny random Karlo v1 alpha folders in the public repositories' layouts (built in seconds, offline).

``tiny_karlo(tmp_path)`` writes ``karlo-v1-alpha/`` (model_index.json, prior/, prior_scheduler/,
text_encoder/, tokenizer/, text_proj/, decoder/, decoder_scheduler/, super_res_first/,
super_res_last/, super_res_scheduler/) with diffusers' own ``save_pretrained``, from the same
classes the hub folders hold; ``variations=True`` writes ``karlo-v1-alpha-image-variations/``
(no prior; image_encoder/ and feature_extractor/ added). Each component is seeded on its own, so
both folders share decoder, text tower and super-res weights, as the two public repos do.

Sizes: CLIP width 32 (the text tower's hidden width equals the embedding width, as ViT-L/14's
768 / 768, which UnCLIPTextProjModel relies on), decoder 16 px with learned variance (6 output
channels), super-res 16 -> 32 px, the real 77-token context (the probes' prompts fit), the real
schedulers' settings. The tokenizer is ``_tiny_clip``'s: one token per character, no merges.
"""
from __future__ import annotations

from pathlib import Path

import torch
import transformers as tf
from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel, UnCLIPScheduler
from diffusers.pipelines.deprecated.unclip import UnCLIPImageVariationPipeline, UnCLIPPipeline, UnCLIPTextProjModel

from _tiny_clip import text_config, vision_config, write_tokenizer

DIM = 32           # CLIP embedding width (ViT-L/14: 768)
CONTEXT = 77       # the real text context
DECODER_SIZE = 16  # the decoder's side (real: 64)
SR_SIZE = 32       # the super-res side (real: 256)
CROSS = 24         # decoder cross-attention width (real: 1536)
CHANNELS = (16, 32)


def _seeded(seed: int, build):
    torch.manual_seed(seed)
    return build()


def _jitter(module: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    """Move every parameter off its initial value (zero-initialised ones included), reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module


def components(root: Path) -> dict:
    """The tiny models and schedulers, by the public repos' component names (both layouts)."""
    tok_dir = write_tokenizer(root / "_tokenizer", context=CONTEXT)
    tokenizer = tf.CLIPTokenizer.from_pretrained(tok_dir, local_files_only=True)
    text_encoder = _seeded(1, lambda: tf.CLIPTextModelWithProjection(text_config(DIM, width=DIM, context=CONTEXT)))
    prior = _seeded(2, lambda: PriorTransformer(num_attention_heads=2, attention_head_dim=16, num_layers=1,
                                                 embedding_dim=DIM, num_embeddings=CONTEXT, additional_embeddings=4))
    with torch.no_grad():  # the CLIP statistics Karlo's prior denormalises with (ViT-L-14_stats.th)
        g = torch.Generator().manual_seed(3)
        prior.clip_mean.copy_(0.3 * torch.randn(1, DIM, generator=g))
        prior.clip_std.copy_(0.5 + torch.rand(1, DIM, generator=g))
    text_proj = _seeded(4, lambda: _jitter(UnCLIPTextProjModel(clip_extra_context_tokens=4, clip_embeddings_dim=DIM,
                                                               time_embed_dim=4 * CHANNELS[0],
                                                               cross_attention_dim=CROSS), 5, 0.2))
    decoder = _seeded(6, lambda: UNet2DConditionModel(
        sample_size=DECODER_SIZE, in_channels=3, out_channels=6, layers_per_block=1,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=CHANNELS, norm_num_groups=8,
        cross_attention_dim=CROSS, attention_head_dim=8, resnet_time_scale_shift="scale_shift",
        class_embed_type="identity"))

    def super_res():
        return UNet2DModel(sample_size=SR_SIZE, in_channels=6, out_channels=3, layers_per_block=1,
                           down_block_types=("ResnetDownsampleBlock2D",) * 2,
                           up_block_types=("ResnetUpsampleBlock2D",) * 2, block_out_channels=CHANNELS,
                           norm_num_groups=8, add_attention=False)

    return {
        "prior": prior, "text_encoder": text_encoder, "tokenizer": tokenizer, "text_proj": text_proj,
        "decoder": decoder, "super_res_first": _seeded(7, super_res), "super_res_last": _seeded(8, super_res),
        # the schedulers as diffusers' scripts/convert_kakao_brain_unclip_to_diffusers.py builds Karlo's
        "prior_scheduler": UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                           num_train_timesteps=1000, clip_sample_range=5.0),
        "decoder_scheduler": UnCLIPScheduler(variance_type="learned_range", prediction_type="epsilon",
                                             num_train_timesteps=1000),
        "super_res_scheduler": UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon",
                                               num_train_timesteps=1000),
        "image_encoder": _seeded(9, lambda: tf.CLIPVisionModelWithProjection(vision_config(DIM, image_size=32))),
        "feature_extractor": tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    }


def tiny_karlo(tmp_path: Path, variations: bool = False) -> Path:
    """Write a tiny karlo-v1-alpha (or, with ``variations``, karlo-v1-alpha-image-variations) folder
    under tmp_path with save_pretrained; returns it."""
    tmp_path = Path(tmp_path)
    c = components(tmp_path)
    if variations:
        folder = tmp_path / "karlo-v1-alpha-image-variations"
        pipe = UnCLIPImageVariationPipeline(**{k: c[k] for k in (
            "decoder", "text_encoder", "tokenizer", "text_proj", "feature_extractor", "image_encoder",
            "super_res_first", "super_res_last", "decoder_scheduler", "super_res_scheduler")})
    else:
        folder = tmp_path / "karlo-v1-alpha"
        pipe = UnCLIPPipeline(**{k: c[k] for k in (
            "prior", "decoder", "text_encoder", "tokenizer", "text_proj", "super_res_first", "super_res_last",
            "prior_scheduler", "decoder_scheduler", "super_res_scheduler")})
    pipe.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):  # the hub's tokenizer/ holds them (transformers 5 saves tokenizer.json)
        (folder / "tokenizer" / name).write_bytes((tmp_path / "_tokenizer" / name).read_bytes())
    return folder

"""Karlo v1 alpha's parts: the folder layout check and the three stages as pure functions over the
diffusers networks, sampled by this package's own samplers (``diffusion/from_diffusers.py``).

How Karlo conditions each network (diffusers' deprecated ``pipeline_unclip*.py``, Karlo's
``karlo/models/*.py``), and what this module does the same way:

- prior (PriorTransformer, predicts x0): input [text tokens, z_t, timestep, noised z_i, query];
  the unconditional branch reads the "" prompt; its output, in the prior's normalised space, is
  denormalised with ``clip_std`` / ``clip_mean`` (ViT-L-14_stats.th) into a *raw* CLIP image
  embedding, the scale the decoder was trained on. Nothing in Karlo normalises embeddings.
- decoder (UNet2DConditionModel, 64 px, 6 output channels = eps + learned variance v):
  ``UnCLIPTextProjModel`` adds proj(z_i) + proj(z_t) to the timestep embedding (``class_labels``)
  and prepends 4 tokens made from z_i to the layer-normed text tokens; the attention mask is
  padded with 4 Trues. The unconditional branch replaces z_i by the learned classifier-free
  guidance embedding and reads the "" prompt. DDIM drops the variance channels; the pipelines'
  DDPM guides eps and keeps the conditional branch's v.
- super-res (two UNet2DModels, 64 -> 256): input [x_t; bicubic(low-res)] (6 channels), no
  guidance; ``super_res_first`` runs every step but the last, ``super_res_last`` the last one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_probe.diffusion import cfg_denoiser, check_sampler, sample_dpmpp_2m
from unclip_probe.diffusion.from_diffusers import (clip_from_config, invert_ddim_at, linspace_timesteps,
                                                   prediction_from_config, sample_ddim_at, sample_ddpm_at,
                                                   schedule_from_config)
from unclip_probe.diffusion.schedules import Schedule
from unclip_probe.errors import bad_input

PIPELINE = "UnCLIPPipeline"
VARIATIONS_PIPELINE = "UnCLIPImageVariationPipeline"
COMPONENTS = {  # karlo-v1-alpha: folder -> (class, the file that names it)
    "prior": ("PriorTransformer", "config.json"),
    "prior_scheduler": ("UnCLIPScheduler", "scheduler_config.json"),
    "text_encoder": ("CLIPTextModelWithProjection", "config.json"),
    "tokenizer": ("CLIPTokenizer", "tokenizer_config.json"),
    "text_proj": ("UnCLIPTextProjModel", "config.json"),
    "decoder": ("UNet2DConditionModel", "config.json"),
    "decoder_scheduler": ("UnCLIPScheduler", "scheduler_config.json"),
    "super_res_first": ("UNet2DModel", "config.json"),
    "super_res_last": ("UNet2DModel", "config.json"),
    "super_res_scheduler": ("UnCLIPScheduler", "scheduler_config.json"),
}
LAYOUT = "model_index.json and " + ", ".join(f"{k}/" for k in COMPONENTS)
REAL_CLIP = "Karlo v1 alpha: OpenAI CLIP ViT-L/14, 768"


# ----------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class Layout:
    """A checked karlo-v1-alpha folder: each component's config, the CLIP width, the image encoder."""

    folder: Path
    configs: dict
    embed_dim: int
    image_encoder: Path | None = None
    feature_extractor: Path | None = None
    learned_variance: bool = field(default=True)


def _read(path: Path, argument: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise bad_input(argument, f"{str(path)!r} is not readable JSON ({type(e).__name__})") from None


def _class_of(cfg: dict) -> str:
    return cfg.get("_class_name") or (cfg.get("architectures") or [""])[0] or cfg.get("tokenizer_class", "")


def check_layout(folder, image_encoder=None) -> Layout:
    """Check a karlo-v1-alpha folder (and an optional image encoder) from its JSON files alone:
    the pipeline class, every component and its class, and one CLIP width throughout. Reads no weights."""
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        what = "not a folder" if not folder.is_dir() else "not a diffusers pipeline folder (no model_index.json)"
        raise bad_input("folder", f"{str(folder)!r} is {what}; expected the kakaobrain/karlo-v1-alpha layout: {LAYOUT}")
    kind = _read(folder / "model_index.json", "folder").get("_class_name")
    if kind == VARIATIONS_PIPELINE:
        raise bad_input("folder", f"{str(folder)!r} is the karlo-v1-alpha-image-variations layout, which has no prior/ "
                                  "(its CLIP statistics set the scale of the embeddings Karlo's decoder reads); load "
                                  "the karlo-v1-alpha folder and pass this one as image_encoder=")
    if kind != PIPELINE:
        raise bad_input("folder", f"{str(folder)!r} holds a {kind!r} pipeline, not Karlo's {PIPELINE!r}; "
                                  f"expected the kakaobrain/karlo-v1-alpha layout: {LAYOUT}")
    configs = {}
    for name, (cls, file) in COMPONENTS.items():
        if not (folder / name / file).is_file():
            raise bad_input("folder", f"{str(folder)!r} has no {name}/{file}; a karlo-v1-alpha folder holds {LAYOUT}")
        cfg = configs[name] = _read(folder / name / file, "folder")
        if name != "tokenizer" and _class_of(cfg) != cls:
            raise bad_input("folder", f"{name}/ holds a {_class_of(cfg)!r}, expected Karlo's {cls!r}")
    D = int(configs["text_proj"].get("clip_embeddings_dim", 768))
    te, prior = configs["text_encoder"], configs["prior"]
    widths = {"text_encoder/ (projection_dim)": te.get("projection_dim"), "text_encoder/ (hidden_size)":
              te.get("hidden_size"), "prior/": prior.get("clip_embed_dim") or prior.get("embedding_dim", 768)}
    for where, w in widths.items():
        if int(w) != D:
            raise bad_input("folder", f"{where} is {w} wide but text_proj/ reads {D}-wide CLIP embeddings "
                                      f"({REAL_CLIP})")
    dec, sr = configs["decoder"], configs["super_res_first"]
    if dec.get("cross_attention_dim") != configs["text_proj"].get("cross_attention_dim"):
        raise bad_input("folder", "decoder/ and text_proj/ disagree on the cross-attention width")
    if sr.get("in_channels") != 2 * dec.get("in_channels", 3):
        raise bad_input("folder", "super_res_first/ must read [x_t; upsampled image] (twice the decoder's channels)")
    enc = fe = None
    if image_encoder is not None:
        enc, fe = _image_encoder(Path(image_encoder), D)
    learned = dec.get("out_channels") == 2 * dec.get("in_channels", 3)  # eps and v (Karlo: 6 channels)
    return Layout(folder, configs, D, enc, fe, learned_variance=learned)


def _image_encoder(path: Path, D: int) -> tuple[Path, Path | None]:
    """The CLIPVisionModelWithProjection folder and its feature extractor, from the image-variations
    repo's root or its image_encoder/ itself; its projection must be D wide."""
    if (path / "image_encoder" / "config.json").is_file():
        enc, fe = path / "image_encoder", path / "feature_extractor"
    elif (path / "config.json").is_file():
        enc, fe = path, path.parent / "feature_extractor"
    else:
        raise bad_input("image_encoder", f"{str(path)!r} holds no CLIP image encoder; expected the "
                                         "karlo-v1-alpha-image-variations folder or its image_encoder/")
    cfg = _read(enc / "config.json", "image_encoder")
    if _class_of(cfg) != "CLIPVisionModelWithProjection":
        raise bad_input("image_encoder", f"{str(enc)!r} holds a {_class_of(cfg)!r}, expected a "
                                         "CLIPVisionModelWithProjection")
    w = int(cfg.get("projection_dim", 0))
    if w != D:
        raise bad_input("image_encoder", f"{str(enc)!r} embeds images {w} wide, but Karlo's decoder reads {D}-wide "
                                         f"CLIP embeddings ({REAL_CLIP}: the image-variations repo's image_encoder/)")
    return enc, fe if (fe / "preprocessor_config.json").is_file() else None


# ----------------------------------------------------------------------------- stages

@dataclass(frozen=True, eq=False)
class Stage:
    """One network's diffusion settings, read from its diffusers scheduler config."""

    schedule: Schedule
    prediction: str
    clip_x0: float | None
    variance: str

    @classmethod
    def from_config(cls, cfg: dict) -> "Stage":
        return cls(schedule_from_config(cfg), prediction_from_config(cfg), clip_from_config(cfg),
                   cfg.get("variance_type", "fixed_small_log"))

    def timesteps(self, steps: int) -> list[int]:
        return linspace_timesteps(self.schedule.T, steps)


class Text(NamedTuple):
    """A batch of encoded prompts: raw projected embedding (B, D), tokens (B, L, W), mask (B, L) bool."""

    emb: Tensor
    hidden: Tensor
    mask: Tensor

    def expand(self, B: int) -> "Text":
        return Text(*(t.expand(B, *t.shape[1:]) for t in self))


def _check_sampler(sampler: str) -> None:
    check_sampler(sampler)  # diffusion.SAMPLERS: every one runs over the stage's own timesteps


def decoder_cond(text_proj, z_raw: Tensor, text: Text) -> dict:
    """The decoder's inputs besides x_t and t for raw embeddings z_raw (B, D) and prompts ``text``."""
    hidden, additive = text_proj(image_embeddings=z_raw, prompt_embeds=text.emb,
                                 text_encoder_hidden_states=text.hidden, do_classifier_free_guidance=False)
    mask = F.pad(text.mask, (text_proj.clip_extra_context_tokens, 0), value=True)  # (B, 4 + L)
    return {"encoder_hidden_states": hidden, "class_labels": additive, "attention_mask": mask}


def decoder_uncond(text_proj, empty: Text) -> dict:
    """The unconditional branch: the learned guidance embedding in place of z_i, the "" prompt."""
    B = empty.emb.shape[0]
    z = text_proj.learned_classifier_free_guidance_embeddings[None].expand(B, -1).to(empty.emb.dtype)
    return decoder_cond(text_proj, z, empty)


def _guided_keep_variance(model_fn, cond: dict, uncond: dict, scale: float, C: int):
    """The pipelines' guidance for a learned-variance model: eps guided, v of the conditional branch."""
    if scale == 1:
        return lambda x, t: model_fn(x, t, cond)
    both = {k: torch.cat([cond[k], uncond[k]]) for k in cond}

    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        out_c, out_u = model_fn(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)  # (B, 2C, H, W) each
        return torch.cat([out_u[:, :C] + scale * (out_c[:, :C] - out_u[:, :C]), out_c[:, C:]], dim=1)
    return denoiser


def sample_decoder(decoder, stage: Stage, cond: dict, uncond: dict, x_T: Tensor, *, steps: int, guidance: float,
                   sampler: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """x_0 (B, 3, S, S) in [-1, 1] from x_T (B, 3, S, S). "ddim": this package's DDIM over the eps
    channels; "ddpm": the pipelines' ancestral sampler with the learned variance; "dpm++2m":
    DPM-Solver++(2M) over the eps channels."""
    _check_sampler(sampler)
    C = x_T.shape[1]
    model_fn = lambda x, t, c: decoder(x, t, **c).sample  # noqa: E731  (B, 2C, S, S) with learned variance
    ts = stage.timesteps(steps)
    if sampler in ("ddim", "dpm++2m"):  # both read the eps channels only
        den = cfg_denoiser(lambda x, t, c: model_fn(x, t, c)[:, :C], cond, uncond, guidance)
        if sampler == "ddim":
            x = sample_ddim_at(den, x_T, stage.schedule, ts, generator=generator, eta=eta,
                               prediction=stage.prediction, clip_x0=stage.clip_x0)
        else:
            x = sample_dpmpp_2m(den, x_T, stage.schedule, timesteps=ts, prediction=stage.prediction,
                                clip_x0=stage.clip_x0)
    else:
        learned = stage.variance == "learned_range"
        den = _guided_keep_variance(model_fn, cond, uncond, guidance, C) if learned else \
            cfg_denoiser(model_fn, cond, uncond, guidance)
        x = sample_ddpm_at(den, x_T, stage.schedule, ts, generator=generator, prediction=stage.prediction,
                           clip_x0=stage.clip_x0, variance=stage.variance)
    return x.clamp(-1, 1)  # as the pipelines clamp the 64 px image


def invert_decoder(decoder, stage: Stage, cond: dict, x_0: Tensor, *, steps: int) -> Tensor:
    """DDIM inversion x_0 -> x_T (B, 3, S, S) under the conditional decoder, unguided, over the
    decoder's timesteps for `steps` (the ones sample_decoder visits)."""
    C = x_0.shape[1]
    return invert_ddim_at(lambda x, t: decoder(x, t, **cond).sample[:, :C], x_0, stage.schedule,
                          stage.timesteps(steps), prediction=stage.prediction)


def upsample_input(low: Tensor, size: int) -> Tensor:
    """The super-res conditioning image: bicubic (antialiased, as the pipelines) (B, 3, h, h) -> (B, 3, size, size)."""
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False, antialias=True)


def sample_super_res(first, last, stage: Stage, low: Tensor, x_T: Tensor, *, steps: int, sampler: str = "ddim",
                     generator: torch.Generator | None = None) -> Tensor:
    """High-res x_0 (B, 3, H, H) from low-res images in [-1, 1] (B, 3, h, h): ``first`` for all
    steps but the last, ``last`` for the last (Karlo's improved SR), no guidance."""
    _check_sampler(sampler)
    up = upsample_input(low, x_T.shape[-1])
    n, calls = len(stage.timesteps(steps)), [0]

    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        net = last if calls[0] == n - 1 else first  # the samplers call once per step, in order
        calls[0] += 1
        return net(torch.cat([x, up], dim=1), t).sample

    if sampler == "ddim":
        return sample_ddim_at(denoiser, x_T, stage.schedule, stage.timesteps(steps), prediction=stage.prediction,
                              clip_x0=stage.clip_x0)
    if sampler == "dpm++2m":
        return sample_dpmpp_2m(lambda x, t: denoiser(x, t)[:, :x.shape[1]], x_T, stage.schedule,
                               timesteps=stage.timesteps(steps), prediction=stage.prediction, clip_x0=stage.clip_x0)
    return sample_ddpm_at(denoiser, x_T, stage.schedule, stage.timesteps(steps), generator=generator,
                          prediction=stage.prediction, clip_x0=stage.clip_x0, variance=stage.variance)


def sample_prior(prior, stage: Stage, text: Text, empty: Text, x_T: Tensor, *, steps: int, guidance: float,
                 sampler: str = "ddim", generator: torch.Generator | None = None) -> Tensor:
    """Raw CLIP image embeddings (B, D) for prompts ``text``: the prior's x0 prediction sampled from
    x_T (B, D) in its normalised space, guided against the "" prompt, then denormalised."""
    _check_sampler(sampler)

    def model_fn(x: Tensor, t: Tensor, c: Text) -> Tensor:
        return prior(x, timestep=t, proj_embedding=c.emb, encoder_hidden_states=c.hidden,
                     attention_mask=c.mask).predicted_image_embedding

    den = cfg_denoiser(lambda x, t, c: model_fn(x, t, Text(*c)), tuple(text), tuple(empty), guidance)
    ts = stage.timesteps(steps)
    if sampler == "ddim":
        x = sample_ddim_at(den, x_T, stage.schedule, ts, prediction=stage.prediction, clip_x0=stage.clip_x0)
    elif sampler == "dpm++2m":
        x = sample_dpmpp_2m(den, x_T, stage.schedule, timesteps=ts, prediction=stage.prediction, clip_x0=stage.clip_x0)
    else:
        x = sample_ddpm_at(den, x_T, stage.schedule, ts, generator=generator, prediction=stage.prediction,
                           clip_x0=stage.clip_x0, variance=stage.variance)
    return prior.post_process_latents(x)  # x * clip_std + clip_mean

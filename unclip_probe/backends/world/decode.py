"""Sampling images from the world decoder and upsampler (paper §2.1), pure functions over networks.

The stack (text -> prior -> decode -> upsample) and the decoder's training
evaluation both call these; the networks know nothing about sampling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_probe.diffusion import cfg_denoiser, invert_ddim, sample, schedule_of
from unclip_probe.errors import bad_input
from unclip_probe.imaging import to_unit
from unclip_probe.models.configs import DecoderConfig, UpsamplerConfig

# The decoder's classifier-free guidance when it draws from fresh noise (paper §2.1): the one
# default the stack, the CLI, the probes and eval.decoder share. Rule: the guidance that reads
# best in the pipeline's text -> image figure, where the decoder also reads the caption (model
# card, "Tuned sampling defaults").
DECODER_GUIDANCE = 2.0
# The most candidate decodes per embedding `pick_nearest` chooses among (each costs a full decode).
MAX_CANDIDATES = 64



def decode_images(unet, cfg: DecoderConfig, clip_emb: Tensor | None, text: Tensor | None, text_mask: Tensor | None,
                  *, x_T: Tensor, steps: int = 25, guidance: float = DECODER_GUIDANCE, eta: float = 0.0,
                  generator: torch.Generator | None = None, callback=None, sampler: str = "ddim") -> Tensor:
    """x_0 in [-1, 1], (B, 3, S, S), from noise x_T (B, 3, S, S); ``sampler`` names one of
    ``diffusion.SAMPLERS`` ("ddim", "ddpm", "dpm++2m").

    clip_emb (B, D) CLIP image embeddings; text (B, L, W) / text_mask (B, L) CLIP text tokens
    (either may be None when the decoder has no such input). Classifier-free guidance drops
    both, as in training's joint dropout: unconditional = zero embedding and no caption.
    """
    _check_image_batch("x_T", x_T, cfg.unet.image_size)
    model_fn, cond, uncond = _conditioning(unet, cfg, x_T.shape[0], clip_emb, text, text_mask)
    denoiser = cfg_denoiser(model_fn, cond, uncond, guidance) if cond else (lambda x, t: unet(x, t))
    return sample(sampler, denoiser, x_T, schedule_of(cfg.diffusion), steps, generator=generator, eta=eta,
                  prediction=cfg.diffusion.prediction, clip_x0=1.0, callback=callback)


def pick_nearest(candidates: Tensor, z: Tensor, encode_image) -> tuple[Tensor, Tensor]:
    """The candidate decode whose CLIP image embedding lies nearest z, per embedding.

    candidates (K, B, 3, S, S) in [-1, 1]: K decodes of each of B embeddings; z (B, D) the embeddings
    they were drawn from; encode_image maps (N, 3, S, S) in [0, 1] to unit-norm (N, D).
    Returns the chosen images (B, 3, S, S) and every candidate's cosine to z (K, B).

    Not in the paper, which reranks only the prior's samples (§2.2, by z_i . z_t): this is the same
    idea one stage on. The decoder draws a wrong shape or object count often enough (model card,
    "Why pairs fail") that several draws from one z differ in what they show, and the CLIP that
    made z can tell which draw shows it (the embedding holds more than one decode draws)."""
    K, B = candidates.shape[:2]
    if z.shape[0] != B:
        raise bad_input("z", f"expected one embedding per candidate column ({B}), got {z.shape[0]}")
    emb = encode_image(to_unit(candidates.flatten(0, 1)))  # (K * B, D), candidate-major
    scores = (emb.view(K, B, -1) * F.normalize(z.to(emb), dim=-1)[None]).sum(-1)  # (K, B)
    best = scores.argmax(0)  # (B,); ties keep the first candidate, the plain decode
    return candidates[best, torch.arange(B, device=candidates.device)], scores


def invert_images(unet, cfg: DecoderConfig, x_0: Tensor, clip_emb: Tensor | None, text: Tensor | None = None,
                  text_mask: Tensor | None = None, *, steps: int = 50, callback=None) -> Tensor:
    """DDIM inversion (x_0 in [-1, 1], (B, 3, S, S) -> x_T) under the conditional decoder, no guidance.

    Sampling x_T back with eta = 0 and the same steps and conditioning reproduces x_0
    (paper §3.1 uses this to keep an image's details in its variations).
    """
    _check_image_batch("x_0", x_0, cfg.unet.image_size)
    if text is None and cfg.unet.text_dim:  # no caption: an all-masked text input, as in training's dropout
        text = torch.zeros(x_0.shape[0], 1, cfg.unet.text_dim, device=x_0.device)
        text_mask = torch.zeros(x_0.shape[0], 1, dtype=torch.bool, device=x_0.device)
    model_fn, cond, _ = _conditioning(unet, cfg, x_0.shape[0], clip_emb, text, text_mask)
    return invert_ddim(lambda x, t: model_fn(x, t, cond), x_0, schedule_of(cfg.diffusion), steps,
                       prediction=cfg.diffusion.prediction, callback=callback)


def _check_image_batch(name: str, x: Tensor, size: int) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (size, size):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise bad_input(name, f"expected a tensor (B, 3, {size}, {size}) for this {size} px decoder, got {got}")


def _conditioning(unet, cfg: DecoderConfig, B: int, clip_emb, text, text_mask):
    """model_fn(x, t, cond) and the cond / uncond dicts for a batch of B."""
    cond = {}
    if cfg.unet.clip_dim:
        if clip_emb is None or clip_emb.shape != (B, cfg.unet.clip_dim):
            raise bad_input("clip_emb", f"expected shape ({B}, {cfg.unet.clip_dim}) (one CLIP embedding per image), "
                                        f"got {None if clip_emb is None else tuple(clip_emb.shape)}")
        cond["clip_emb"] = clip_emb
    if cfg.unet.text_dim:
        cond["text"], cond["text_mask"] = text, text_mask.bool()
    uncond = {"clip_emb": torch.zeros_like(clip_emb)} if cfg.unet.clip_dim else {}
    if cfg.unet.text_dim:
        uncond["text"], uncond["text_mask"] = text, torch.zeros_like(text_mask, dtype=torch.bool)
    if cfg.unet.text_dim and (text is None or text_mask is None or text.shape[0] != B):
        raise bad_input("text", f"expected CLIP token features ({B}, L, {cfg.unet.text_dim}) and a mask ({B}, L)")
    model_fn = lambda x, t, c: unet(x, t, **c)  # noqa: E731
    return model_fn, cond, uncond


def upsample_images(unet, cfg: UpsamplerConfig, low: Tensor, *, x_T: Tensor, steps: int = 10, eta: float = 0.0,
                    generator: torch.Generator | None = None, callback=None, sampler: str = "ddim") -> Tensor:
    """High-res x_0 in [-1, 1] (B, 3, H, H) from low-res images `low` in [-1, 1] (B, 3, h, h)."""
    cond = upsample_base(low, x_T.shape[-1], cfg.base)  # (B, 3, H, H)
    denoiser = lambda x, t: unet(torch.cat([x, cond], dim=1), t)  # noqa: E731
    x = sample(sampler, denoiser, x_T, schedule_of(cfg.diffusion), steps, generator=generator, eta=eta,
               prediction=cfg.diffusion.prediction, clip_x0=None if cfg.residual else 1.0, callback=callback)
    # A residual upsampler generated (scaled) the detail that the base upsampling lacks.
    return (cond + x / cfg.residual_scale).clamp(-1, 1) if cfg.residual else x


def upsample_base(low: Tensor, size: int, mode: str = "bicubic") -> Tensor:
    """Plain interpolation (B, 3, h, h) -> (B, 3, size, size), clamped to [-1, 1] (bicubic overshoots):
    the upsampler's conditioning image and, for a residual upsampler, what its output is added to."""
    return F.interpolate(low, size=(size, size), mode=mode, align_corners=False).clamp(-1, 1)


"""Sampling CLIP image embeddings from the diffusion prior (paper §2.2), pure functions.

"For the diffusion prior ... we generate two samples of z_i and select the one
with a higher dot product with z_t." Classifier-free guidance drops the caption
(tokens and z_t) as in training, in one batched forward.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_probe.clip import trim_padding
from unclip_probe.diffusion import cfg_denoiser, sample, schedule_of
from unclip_probe.models.configs import PriorConfig

# Classifier-free guidance of each prior when the caller names none (paper §2.2 samples both
# priors with guidance). Rule: the best of a sweep read in the pipeline's images, ties to the
# lower value (benchmarks/prior_sweep.py; model card, "Tuned sampling defaults").
PRIOR_GUIDANCE = {"diffusion": 3.0, "ar": 2.0}


@torch.no_grad()
def sample_diffusion_prior(prior, cfg: PriorConfig, z_text: Tensor, text: Tensor, text_mask: Tensor, *,
                           generator: torch.Generator, steps: int = 64, guidance: float = PRIOR_GUIDANCE["diffusion"],
                           candidates: int = 2, callback=None, sampler: str = "ddim") -> Tensor:
    """Unit-norm CLIP image embeddings (B, D) for captions given as
    z_text (B, D) unit-norm CLIP text embeddings and text (B, L, W) / text_mask (B, L) tokens."""
    B, D = z_text.shape
    scale = math.sqrt(D)
    text, text_mask = trim_padding(text, text_mask)
    rep = lambda a: a.repeat_interleave(candidates, dim=0)  # (B * candidates, ...)  # noqa: E731
    # The caption's part of the sequence is fixed through sampling: encode it once, for the
    # conditional and the caption-dropped rows (see PriorTransformer.encode_prefix).
    cond = prior.encode_prefix(rep(z_text) * scale, rep(text), rep(text_mask))
    uncond = prior.encode_prefix(torch.zeros_like(rep(z_text)), rep(text), torch.zeros_like(rep(text_mask)))
    model_fn = prior.forward_prefixed  # (x, t, prefix) -> z_i
    x_T = torch.randn(B * candidates, D, generator=generator, device=generator.device).to(z_text)
    z = sample(sampler, cfg_denoiser(model_fn, cond, uncond, guidance), x_T, schedule_of(cfg.diffusion), steps,
               generator=generator, prediction=cfg.diffusion.prediction, callback=callback)
    z = F.normalize(z, dim=-1).view(B, candidates, D)
    best = (z * z_text[:, None]).sum(-1).argmax(1)  # (B,): higher z_i . z_t wins
    return z[torch.arange(B, device=z.device), best]


@torch.no_grad()
def sample_ar_prior(prior, z_text: Tensor, text: Tensor, text_mask: Tensor, *, generator: torch.Generator,
                    guidance: float = PRIOR_GUIDANCE["ar"], temperature: float = 1.0, callback=None) -> Tensor:
    """Unit-norm CLIP image embeddings (B, D) from the AR prior, one PCA code at a time.

    The z_i . z_t token is drawn from the top half of its training distribution (paper §2.2:
    "sampling with z_i . z_t from the top half ... yields higher quality"). Guidance mixes
    conditional and caption-dropped logits, both from one batched forward per code.
    """
    cfg = prior.cfg
    B = z_text.shape[0]
    dev = z_text.device
    text, text_mask = trim_padding(text, text_mask)
    dot = torch.randint(cfg.dot_buckets // 2, cfg.dot_buckets, (B,), generator=generator, device=generator.device).to(dev)
    both = lambda a, b: torch.cat([a, b], dim=0)  # noqa: E731  [cond; uncond], (2B, ...)
    logits, cache = prior.start(both(dot, dot), both(z_text, torch.zeros_like(z_text)), both(text, text),
                                both(text_mask, torch.zeros_like(text_mask)))  # (2B, K)
    codes = []
    for j in range(cfg.components):
        cond, uncond = logits[:B], logits[B:]
        probs = torch.softmax((uncond + guidance * (cond - uncond)) / temperature, dim=-1)
        nxt = torch.multinomial(probs.cpu() if generator.device.type == "cpu" else probs, 1, generator=generator)
        codes.append(nxt.to(dev)[:, 0])
        if callback is not None:
            callback({"i": j, "steps": cfg.components, "codes": torch.stack(codes, 1)})
        if j + 1 < cfg.components:
            logits, cache = prior.next_logits(both(codes[-1], codes[-1]), cache)
    return prior.decode(torch.stack(codes, 1))

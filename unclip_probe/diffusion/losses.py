"""The denoising training loss every diffusion recipe shares (prior, decoder, upsamplers).

Ho et al. 2020, Alg. 1 ("simple" loss), with the target set by the prediction
type: eps (Ho et al. 2020), x0 (the unCLIP prior, Ramesh et al. 2022 §2.2) or
v (Salimans & Ho 2022, §4; pairs with zero-terminal-SNR schedules, Lin et al. 2023).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_probe.diffusion.schedules import Schedule, check_prediction, q_sample, training_target
from unclip_probe.errors import bad_input


def diffusion_loss(denoiser: Callable[[Tensor, Tensor], Tensor], schedule: Schedule, x0: Tensor, *,
                   prediction: str, generator: torch.Generator, t: Tensor | None = None,
                   noise: Tensor | None = None) -> Tensor:
    """Mean squared error of ``denoiser(x_t, t)`` against the target of ``prediction``.

    denoiser(x_t (B, ...), t (B,) long) -> (B, ...): the model with its conditioning (and any
    condition dropout) closed over, as for the samplers, e.g. ``lambda x, t: model(x, t, emb)``.
    x0: (B, ...) clean data. Draws, in this order, t ~ U{0, ..., T-1} (B,) and eps ~ N(0, I)
    (B, ...) from ``generator`` on its device (the trainer's exact-resume rule), unless ``t`` /
    ``noise`` are given. Returns the scalar loss, averaged over every element.
    """
    if not callable(denoiser):
        raise bad_input("denoiser", f"expected a callable denoiser(x_t, t), got {type(denoiser).__name__}.")
    if not isinstance(schedule, Schedule):
        raise bad_input("schedule", f"expected a Schedule (see make_schedule), got {type(schedule).__name__}.")
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 1:
        raise bad_input("x0", "expected a floating-point tensor of shape (B, ...).")
    check_prediction(prediction)
    if not isinstance(generator, torch.Generator):
        raise bad_input("generator", f"expected a torch.Generator, got {type(generator).__name__}.")
    B = x0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.T, (B,), generator=generator, device=generator.device).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    x_t = q_sample(schedule, x0, t, noise)  # (B, ...)
    out = denoiser(x_t, t)
    if not isinstance(out, Tensor) or out.shape != x0.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise bad_input("denoiser", f"returned {got}, expected a tensor of x0's shape {tuple(x0.shape)}.")
    return F.mse_loss(out, training_target(schedule, x0, t, noise, prediction))

"""The denoising training loss every diffusion recipe shares (prior, decoder, upsamplers).

Ho et al. 2020, Alg. 1 ("simple" loss), with the target set by the prediction
type: eps (Ho et al. 2020), x0 (the unCLIP prior, Ramesh et al. 2022 §2.2) or
v (Salimans & Ho 2022, §4; pairs with zero-terminal-SNR schedules, Lin et al. 2023).

Optional Min-SNR-gamma weighting (Hang et al. 2023): every prediction type's loss
is, per example, a multiple of the x0 error, ||x0_hat - x0||^2 times
w_x0(SNR) = SNR (eps), 1 (x0) or SNR + 1 (v). Uniform v or eps losses therefore
spend most of their gradient on nearly clean inputs, where the condition hardly
matters. Min-SNR caps that x0 weight at gamma, which is what steers a
conditional decoder towards drawing the right object from the CLIP embedding.
We cap SNR + 1 for v (as diffusers does) so the zero-SNR step, the only one
that must draw x0 from the condition alone, keeps weight 1 instead of 0.
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
                   noise: Tensor | None = None, min_snr_gamma: float = 0.0) -> Tensor:
    """Mean squared error of ``denoiser(x_t, t)`` against the target of ``prediction``.

    denoiser(x_t (B, ...), t (B,) long) -> (B, ...): the model with its conditioning (and any
    condition dropout) closed over, as for the samplers, e.g. ``lambda x, t: model(x, t, emb)``.
    x0: (B, ...) clean data. Draws, in this order, t ~ U{0, ..., T-1} (B,) and eps ~ N(0, I)
    (B, ...) from ``generator`` on its device (the trainer's exact-resume rule), unless ``t`` /
    ``noise`` are given. ``min_snr_gamma`` > 0 applies Min-SNR-gamma weighting (module docstring);
    0 is the plain loss. Returns the scalar loss, averaged over every element.
    """
    if not callable(denoiser):
        raise bad_input("denoiser", f"expected a callable denoiser(x_t, t), got {type(denoiser).__name__}.")
    if not isinstance(schedule, Schedule):
        raise bad_input("schedule", f"expected a Schedule (see make_schedule), got {type(schedule).__name__}.")
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 1:
        raise bad_input("x0", "expected a floating-point tensor of shape (B, ...).")
    check_prediction(prediction)
    if isinstance(min_snr_gamma, bool) or not isinstance(min_snr_gamma, (int, float)) or min_snr_gamma < 0:
        raise bad_input("min_snr_gamma", f"expected a number >= 0 (0: no weighting), got {min_snr_gamma!r}.")
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
    target = training_target(schedule, x0, t, noise, prediction)
    if not min_snr_gamma:
        return F.mse_loss(out, target)
    per_example = (out - target).pow(2).flatten(1).mean(1)  # (B,)
    return (min_snr_weight(schedule, t, prediction, min_snr_gamma).to(per_example) * per_example).mean()


def min_snr_weight(schedule: Schedule, t: Tensor, prediction: str, gamma: float) -> Tensor:
    """Per-example loss weight (B,) float64 for timesteps t (B,): min(w_x0, gamma) / w_x0, where
    w_x0 = SNR (eps), 1 (x0) or SNR + 1 (v) is the weight the plain loss puts on the x0 error."""
    ab = schedule.alphas_cumprod.to(t.device)[t]  # float64 on t's device: no host sync in the training step
    snr = ab / (1 - ab).clamp_min(1e-20)
    w_x0 = {"eps": snr, "x0": torch.ones_like(snr), "v": snr + 1}[prediction]
    return w_x0.clamp(max=gamma) / w_x0.clamp_min(1e-20)

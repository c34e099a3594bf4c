"""Diffusion maths, kept apart from the networks (diffusers style; docs/design.md §2, §8).

schedules: noise schedules and forward-process conversions; samplers: DDPM,
DDIM and DDIM inversion as pure functions sharing one signature; guidance:
batched classifier-free guidance; losses: the shared denoising loss.
Models never import this package's samplers, and samplers never import tqdm.
"""
from .guidance import cfg_denoiser
from .losses import diffusion_loss
from .samplers import (ddim_inverse_step, ddim_step, ddpm_step, invert_ddim, sample_ddim, sample_ddpm,
                       sampling_timesteps)
from .schedules import (PREDICTIONS, Schedule, cosine_betas, linear_betas, make_schedule, predict_x0_eps,
                        q_sample, schedule_of, rescale_zero_terminal_snr, training_target, v_target)

__all__ = [
    "Schedule", "make_schedule", "schedule_of", "cosine_betas", "linear_betas", "rescale_zero_terminal_snr", "PREDICTIONS",
    "q_sample", "predict_x0_eps", "v_target", "training_target",
    "sampling_timesteps", "ddpm_step", "ddim_step", "ddim_inverse_step", "sample_ddpm", "sample_ddim",
    "invert_ddim", "cfg_denoiser", "diffusion_loss",
]

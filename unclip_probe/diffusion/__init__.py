"""Diffusion maths, kept apart from the networks (diffusers style; docs/design.md §2, §8).

schedules: noise schedules and forward-process conversions; samplers: DDPM,
DDIM, DPM-Solver++(2M) and DDIM inversion as pure functions sharing one signature
(``sample(name, ...)`` dispatches by name, ``SAMPLERS``); guidance:
batched classifier-free guidance; losses: the shared denoising loss.
Models never import this package's samplers, and samplers never import tqdm.
"""
from .guidance import cfg_denoiser
from .losses import diffusion_loss
from .samplers import (SAMPLERS, check_sampler, ddim_inverse_step, ddim_step, ddpm_step, dpmpp_2m_step,
                       invert_ddim, resolve_sampler, sample, sample_ddim, sample_ddpm, sample_dpmpp_2m, sampling_timesteps)
from .schedules import (PREDICTIONS, Schedule, cosine_betas, linear_betas, make_schedule, predict_x0_eps,
                        q_sample, schedule_of, rescale_zero_terminal_snr, training_target, v_target)

__all__ = [
    "Schedule", "make_schedule", "schedule_of", "cosine_betas", "linear_betas", "rescale_zero_terminal_snr", "PREDICTIONS",
    "q_sample", "predict_x0_eps", "v_target", "training_target",
    "sampling_timesteps", "ddpm_step", "ddim_step", "ddim_inverse_step", "dpmpp_2m_step", "sample_ddpm", "sample_ddim",
    "sample_dpmpp_2m", "sample", "SAMPLERS", "check_sampler", "resolve_sampler",
    "invert_ddim", "cfg_denoiser", "diffusion_loss",
]

"""Bridges from diffusers' scheduler configs to this package's samplers, as small pure functions.

A real stack (``backends/karlo.py``, ...) ships a diffusers scheduler config per stage; these
functions turn it into a :class:`~.schedules.Schedule` and a prediction type, and run this
package's own steps (``ddim_step``, ``ddim_inverse_step``, ``ddpm_step``) over an explicit list
of timesteps. ``samplers.py`` fixes its spacing to "trailing"; a stage trained for another
spacing (Karlo's super-resolution model_last_step is fine-tuned for the reverse step at t = 0,
reached only by the spacing that includes 0: improved-diffusion's ``space_timesteps``, diffusers'
``UnCLIPScheduler`` and ``timestep_spacing="linspace"``) needs its own timesteps, hence the
``*_at`` loops below.

The loops keep the samplers' contract (docs/design.md §8): ``denoiser(x_t, t (B,) long)``,
all noise from ``generator``, no host reads of tensor values, progress through ``callback``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from unclip_probe.diffusion.samplers import ddim_inverse_step, ddim_step, ddpm_step, ddpm_variance
from unclip_probe.diffusion.schedules import Schedule, cosine_betas, linear_betas, x0_eps_from_output
from unclip_probe.errors import bad_input, one_of

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]

PREDICTION_TYPES = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear")
VARIANCES = ("fixed_small_log", "learned_range")


def schedule_from_config(config: Mapping[str, Any]) -> Schedule:
    """The Schedule a diffusers scheduler builds from ``config`` (``num_train_timesteps``,
    ``beta_schedule``, ``beta_start`` / ``beta_end``). Betas are rounded through float32 as the
    schedulers store them, then kept in float64 (``alphas_cumprod`` differs from diffusers' float32
    cumulative product by its rounding only)."""
    T = int(config.get("num_train_timesteps", 1000))
    kind = config.get("beta_schedule", "squaredcos_cap_v2")
    if kind == "squaredcos_cap_v2":
        betas = cosine_betas(T)  # diffusers' betas_for_alpha_bar(T, max_beta=0.999), "cosine"
    elif kind == "linear":
        betas = linear_betas(T, config.get("beta_start", 1e-4), config.get("beta_end", 0.02))
    else:
        raise bad_input("beta_schedule", one_of(kind, BETA_SCHEDULES))
    return Schedule.from_betas(betas.float().double())


def prediction_from_config(config: Mapping[str, Any]) -> str:
    """diffusers' ``prediction_type`` ("epsilon", "sample", "v_prediction") as ours ("eps", "x0", "v")."""
    kind = config.get("prediction_type", "epsilon")
    if kind not in PREDICTION_TYPES:
        raise bad_input("prediction_type", one_of(kind, PREDICTION_TYPES))
    return PREDICTION_TYPES[kind]


def clip_from_config(config: Mapping[str, Any]) -> float | None:
    """The x0 clamp a scheduler applies (``clip_sample`` / ``clip_sample_range``), or None."""
    return float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", True) else None


def linspace_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` timesteps from T-1 down to 0, evenly spaced: round(i (T-1) / (steps-1)), descending.

    Equals diffusers' ``UnCLIPScheduler.set_timesteps`` (and ``timestep_spacing="linspace"``) and
    improved-diffusion's ``space_timesteps(T, str(steps))`` (Karlo's respacing); steps == 1 gives [T-1]."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise bad_input("steps", f"expected an int number of sampling steps in [1, {T}], got {steps!r}.")
    if steps == 1:
        return [T - 1]
    ratio = (T - 1) / (steps - 1)
    return [int(round(i * ratio)) for i in range(steps)][::-1]


def _pairs(schedule: Schedule, timesteps: Sequence[int]) -> list[tuple[int, int]]:
    """(t, t_prev) for descending timesteps, the last going to -1 (the data)."""
    ts = [int(t) for t in timesteps]
    if not ts or any(not 0 <= t < schedule.T for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
        raise bad_input("timesteps", f"expected strictly descending timesteps in [0, {schedule.T - 1}], got {ts!r}.")
    return list(zip(ts, ts[1:] + [-1]))


def _call(denoiser: Denoiser, x: Tensor, t: int, channels: int) -> Tensor:
    out = denoiser(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))  # t: (B,)
    if not isinstance(out, Tensor) or out.shape[0] != x.shape[0] or out.shape[1] != channels \
            or out.shape[2:] != x.shape[2:]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise bad_input("denoiser", f"returned {got}, expected {channels} channels like the sample {tuple(x.shape)}.")
    return out.to(x.dtype)


def _randn(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def sample_ddim_at(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, timesteps: Sequence[int], *,
                   generator: torch.Generator | None = None, eta: float = 0.0, prediction: str = "eps",
                   clip_x0: float | None = None, callback: Callback | None = None) -> Tensor:
    """:func:`~.samplers.sample_ddim` over explicit descending ``timesteps`` (the last step reaches
    the data). x_T (B, ...) -> x_0 (B, ...); one ``torch.randn`` per step when eta > 0."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        raise bad_input("eta", f"expected a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta!r}.")
    if eta > 0 and not isinstance(generator, torch.Generator):
        raise bad_input("generator", "a torch.Generator is required for DDIM with eta > 0.")
    x = x_T
    pairs = _pairs(schedule, timesteps)
    for i, (t, t_prev) in enumerate(pairs):
        out = _call(denoiser, x, t, x.shape[1])
        noise = _randn(x, generator) if eta > 0 else None
        x, x0 = ddim_step(out, x, t, t_prev, schedule, eta=eta, noise=noise, prediction=prediction, clip_x0=clip_x0)
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": t_prev, "steps": len(pairs), "x": x, "x0": x0})
    return x


def ddim_inverse_step_eps(model_out: Tensor, x_s: Tensor, s: int, t: int, schedule: Schedule, *,
                          prediction: str = "eps") -> Tensor:
    """The classic DDIM inversion step x_s -> x_t, s < t (Song et al. 2021 §4.3; Dhariwal & Nichol
    2021 App. F; diffusers' DDIMInverseScheduler): the model's eps at (x_s, t) is kept at every
    level and x0 made consistent with x_s. For an eps-predicting model on a schedule whose last
    alpha_bar is > 0 (Karlo), this is the exact inverse of the eta = 0 step wherever the model's
    output does not change between x_s and x_t. x_s, model_out: (B, ...) -> x_t (B, ...)."""
    ab_s, ab_t = schedule.alpha_bar(s), schedule.alpha_bar(t)
    _, eps = x0_eps_from_output(x_s, model_out, math.sqrt(ab_t), math.sqrt(1 - ab_t), prediction)
    x0 = (x_s - math.sqrt(1 - ab_s) * eps) / math.sqrt(ab_s)
    return math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * eps


INVERSE_RULES = ("eps", "snr")


def invert_ddim_at(denoiser: Denoiser, x_0: Tensor, schedule: Schedule, timesteps: Sequence[int], *,
                   prediction: str = "eps", rule: str = "eps", callback: Callback | None = None) -> Tensor:
    """DDIM inversion over explicit ``timesteps``: x_0 (B, ...) -> x_T (B, ...) such that
    ``sample_ddim_at`` with eta 0 over the same timesteps returns (to first order) x_0.
    rule "eps": :func:`ddim_inverse_step_eps` at every level (eps-predicting models with
    alpha_bar_T > 0); "snr": :func:`~.samplers.ddim_inverse_step`, which keeps the model's x0
    instead once SNR < 1 (the package's rule for v prediction and zero-terminal-SNR schedules)."""
    if rule not in INVERSE_RULES:
        raise bad_input("rule", one_of(rule, INVERSE_RULES))
    step = ddim_inverse_step_eps if rule == "eps" else ddim_inverse_step
    x = x_0
    pairs = _pairs(schedule, timesteps)[::-1]  # (t, s) ascending: (t_last, -1), ..., (T-1, ts[1])
    for i, (t, s) in enumerate(pairs):
        x = step(_call(denoiser, x, t, x.shape[1]), x, s, t, schedule, prediction=prediction)
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": s, "steps": len(pairs), "x": x, "x0": None})
    return x


def learned_range_std(schedule: Schedule, t: int, t_prev: int, v: Tensor) -> Tensor:
    """std of the reverse step when the model predicts its variance as v in [-1, 1] (Nichol &
    Dhariwal 2021, eq. 15, respaced): log var = frac log beta_t + (1 - frac) log beta~_t,
    frac = (v + 1) / 2, with beta_t = 1 - ab_t / ab_prev. As diffusers' UnCLIPScheduler."""
    beta = 1 - schedule.alpha_bar(t) / schedule.alpha_bar(t_prev)
    frac = (v + 1) / 2
    log_var = frac * math.log(beta) + (1 - frac) * math.log(ddpm_variance(schedule, t, t_prev))
    return torch.exp(0.5 * log_var)


def sample_ddpm_at(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, timesteps: Sequence[int], *,
                   generator: torch.Generator, prediction: str = "eps", clip_x0: float | None = None,
                   variance: str = "fixed_small_log", callback: Callback | None = None) -> Tensor:
    """Ancestral DDPM over explicit descending ``timesteps``, as diffusers' ``UnCLIPScheduler``.

    The mean is :func:`~.samplers.ddpm_step`'s posterior mean. ``variance`` "fixed_small_log":
    std sqrt(beta~_t) (clamped at 1e-20 as the scheduler does); "learned_range": the denoiser
    returns 2C channels, [model output; v], and the std is :func:`learned_range_std`. Noise, one
    ``torch.randn`` per step, is added on every step but the last (the scheduler's "t > 0" for its
    timesteps, which end at 0). x_T (B, C, ...) -> x_0 (B, C, ...).
    """
    if variance not in VARIANCES:
        raise bad_input("variance", one_of(variance, VARIANCES))
    if not isinstance(generator, torch.Generator):
        raise bad_input("generator", "a torch.Generator is required for DDPM sampling.")
    C = x_T.shape[1]
    x = x_T
    pairs = _pairs(schedule, timesteps)
    for i, (t, t_prev) in enumerate(pairs):
        out = _call(denoiser, x, t, 2 * C if variance == "learned_range" else C)
        out, v = out.split(C, dim=1) if variance == "learned_range" else (out, None)
        mean, x0 = ddpm_step(out, x, t, t_prev, schedule, noise=torch.zeros_like(x), prediction=prediction,
                             clip_x0=clip_x0)
        x = mean
        if t_prev >= 0:
            noise = _randn(x, generator)
            std = learned_range_std(schedule, t, t_prev, v) if v is not None else \
                math.sqrt(max(ddpm_variance(schedule, t, t_prev), 1e-20))
            x = mean + std * noise
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": t_prev, "steps": len(pairs), "x": x, "x0": x0})
    return x

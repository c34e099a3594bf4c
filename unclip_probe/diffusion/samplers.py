"""Samplers as pure module-level functions sharing one signature (k-diffusion style, docs/design.md §8).

    sample_x(denoiser, x, schedule, steps, *, generator, prediction, clip_x0, callback, timesteps) -> Tensor

Samplers: ``sample_ddpm``, ``sample_ddim`` and ``sample_dpmpp_2m`` (DPM-Solver++(2M)), named in
``SAMPLERS`` for ``sample(name, ...)``, the one dispatch every stage uses.

``denoiser(x_t (B, ...), t (B,) long) -> model output (B, ...)`` of type
``prediction`` ("eps", "x0" or "v"); conditioning and guidance are closed over
by the caller (see :mod:`.guidance`). ``steps`` sampling steps use "trailing"
timesteps (Lin et al. 2023, Table 2; diffusers ``timestep_spacing="trailing"``):
T-1 first, so a zero-terminal-SNR schedule starts from pure noise. After the
last step alpha_bar = 1 (diffusers ``set_alpha_to_one=True``). All noise comes
from ``generator``; loops never read tensor values on the host (no ``.item()``,
no branching on tensors), and never import tqdm or widgets: progress goes to
``callback({"i", "t", "t_prev", "steps", "x", "x0"})``, called after each step
with the new sample ``x`` (at t_prev) and the model's ``x0`` prediction at t.
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from unclip_probe.diffusion.schedules import Schedule, check_prediction, x0_eps_from_output
from unclip_probe.errors import bad_input

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]


# ----------------------------------------------------------------------------- argument checks

def sampling_timesteps(schedule: Schedule, steps: int) -> list[int]:
    """The ``steps`` timesteps visited, descending, trailing spacing: round(T - i T/steps) - 1.

    Equals diffusers' ``set_timesteps`` with ``timestep_spacing="trailing"``; starts at T-1.
    """
    if not isinstance(schedule, Schedule):
        raise bad_input("schedule", f"expected a Schedule (see make_schedule), got {type(schedule).__name__}.")
    T = schedule.T
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise bad_input("steps", f"expected an int number of sampling steps in [1, {T}], got {steps!r}.")
    ratio = T / steps
    return [int(round(T - i * ratio)) - 1 for i in range(steps)]


def _check_sample(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise bad_input(name, f"expected a torch.Tensor of shape (B, ...), got {type(x).__name__}.")
    if not x.is_floating_point() or x.ndim < 1:
        raise bad_input(name, f"expected a floating-point tensor of shape (B, ...), got {x.dtype} {tuple(x.shape)}.")
    return x


def explicit_timesteps(schedule: Schedule, timesteps: Sequence[int]) -> list[int]:
    """A caller's timesteps, checked: integers, strictly descending, in [0, T-1] (k-diffusion style:
    any schedule a caller builds, e.g. diffusers' "linspace" or "leading" spacing)."""
    if not isinstance(schedule, Schedule):
        raise bad_input("schedule", f"expected a Schedule (see make_schedule), got {type(schedule).__name__}.")
    try:
        ts = [int(t) for t in timesteps]
        ok = bool(ts) and all(float(a) == int(a) for a in timesteps)
    except (TypeError, ValueError):
        ts, ok = [], False
    if not ok or any(not 0 <= t < schedule.T for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
        raise bad_input("timesteps", f"expected strictly descending integer timesteps in [0, {schedule.T - 1}], "
                                     f"got {list(timesteps) if isinstance(timesteps, (list, tuple)) else timesteps!r}.")
    return ts


def _check_common(denoiser: object, x: object, x_name: str, schedule: Schedule, steps: int | None, prediction: str,
                  clip_x0: float | None, callback: object, timesteps: Sequence[int] | None = None) -> list[int]:
    if not callable(denoiser):
        raise bad_input("denoiser", f"expected a callable denoiser(x_t, t), got {type(denoiser).__name__}.")
    _check_sample(x_name, x)
    if timesteps is not None:
        ts = explicit_timesteps(schedule, timesteps)
        if steps is not None and steps != len(ts):
            raise bad_input("steps", f"is {steps!r} but {len(ts)} timesteps were given; pass one of them (or both agreeing).")
    else:
        ts = sampling_timesteps(schedule, steps)
    check_prediction(prediction)
    if clip_x0 is not None and (isinstance(clip_x0, bool) or not isinstance(clip_x0, Real) or not clip_x0 > 0):
        raise bad_input("clip_x0", f"expected None or a positive number, got {clip_x0!r}.")
    if callback is not None and not callable(callback):
        raise bad_input("callback", f"expected None or a callable taking a dict, got {type(callback).__name__}.")
    return ts


def _check_generator(generator: object, required: bool) -> None:
    if generator is None and not required:
        return
    if not isinstance(generator, torch.Generator):
        raise bad_input("generator", f"expected a torch.Generator, got {type(generator).__name__}.")


def _check_eps_at_zero_snr(schedule: Schedule, ts: list[int], prediction: str) -> None:
    if prediction == "eps" and schedule.alpha_bar(ts[0]) == 0.0:
        raise bad_input("prediction", "'eps' cannot be sampled from a zero-terminal-SNR schedule "
                        "(x_0 is undefined at alpha_bar = 0); use 'v' or 'x0' (Lin et al. 2023, §3.2).")


def _randn(x: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal noise like x, drawn on the generator's device (as diffusers' randn_tensor)."""
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def _call(denoiser: Denoiser, x: Tensor, t: int) -> Tensor:
    out = denoiser(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))  # t: (B,)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise bad_input("denoiser", f"returned {got}, expected a tensor of the sample's shape {tuple(x.shape)}.")
    # Under autocast the network answers in bf16/fp16; the sampler's state stays in x's dtype.
    return out.to(x.dtype)


def _x0_eps(model_out: Tensor, x_t: Tensor, ab_t: float, prediction: str,
            clip_x0: float | None) -> tuple[Tensor, Tensor]:
    """(x0_hat, eps_hat) at alpha_bar_t; with clip_x0, x0 is clamped and eps recomputed from it
    (improved-diffusion's ``ddim_sample``; diffusers' ``use_clipped_model_output=True``)."""
    x0, eps = x0_eps_from_output(x_t, model_out, math.sqrt(ab_t), math.sqrt(1 - ab_t), prediction)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
        eps = (x_t - math.sqrt(ab_t) * x0) / math.sqrt(1 - ab_t)
    return x0, eps


# ----------------------------------------------------------------------------- single steps

def ddpm_variance(schedule: Schedule, t: int, t_prev: int) -> float:
    """Posterior variance beta~ of q(x_{t_prev} | x_t, x_0) (Ho et al. 2020, eq. 7), host float."""
    ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    return (1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)


def ddpm_step(model_out: Tensor, x_t: Tensor, t: int, t_prev: int, schedule: Schedule, *,
              noise: Tensor | None = None, prediction: str = "eps",
              clip_x0: float | None = None) -> tuple[Tensor, Tensor]:
    """One ancestral DDPM step x_t -> x_{t_prev} (Ho et al. 2020, eqs. 6-7; respaced as in
    Nichol & Dhariwal 2021 §4 with alpha_t = alpha_bar_t / alpha_bar_{t_prev}).

    model_out, x_t, noise: (B, ...); t > t_prev >= -1 host ints (-1: the data). ``noise`` may be
    None only when the posterior variance is 0 (t_prev == -1). Variance "fixed_small" (beta~_t).
    Returns (x_{t_prev}, x0_hat), both (B, ...).
    """
    ab_t, ab_s = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    beta = 1 - ab_t / ab_s
    x0, _ = _x0_eps(model_out, x_t, ab_t, prediction, clip_x0)
    # posterior mean mu~_t(x_t, x_0), eq. 7
    mean = (math.sqrt(ab_s) * beta / (1 - ab_t)) * x0 + (math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)) * x_t
    var = ddpm_variance(schedule, t, t_prev)
    if var > 0:
        if noise is None:
            raise bad_input("noise", f"is required for a DDPM step with non-zero variance (t={t}).")
        mean = mean + math.sqrt(var) * noise
    return mean, x0


def ddim_sigma(schedule: Schedule, t: int, t_prev: int, eta: float) -> float:
    """sigma_t(eta) of DDIM (Song et al. 2021, eq. 16): eta * sqrt(beta~); eta=1 is DDPM's variance."""
    return eta * math.sqrt(ddpm_variance(schedule, t, t_prev))


def ddim_step(model_out: Tensor, x_t: Tensor, t: int, t_prev: int, schedule: Schedule, *,
              eta: float = 0.0, noise: Tensor | None = None, prediction: str = "eps",
              clip_x0: float | None = None) -> tuple[Tensor, Tensor]:
    """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12):

        x_{t_prev} = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma * noise.

    model_out, x_t, noise: (B, ...); t > t_prev >= -1 host ints; ``noise`` needed when sigma > 0.
    Returns (x_{t_prev}, x0_hat), both (B, ...).
    """
    ab_s = schedule.alpha_bar(t_prev)
    x0, eps = _x0_eps(model_out, x_t, schedule.alpha_bar(t), prediction, clip_x0)
    sigma = ddim_sigma(schedule, t, t_prev, eta)
    x = math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - sigma**2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            raise bad_input("noise", f"is required for a DDIM step with eta > 0 (t={t}).")
        x = x + sigma * noise
    return x, x0


def ddim_inverse_step(model_out: Tensor, x_s: Tensor, s: int, t: int, schedule: Schedule, *,
                      prediction: str = "eps", x_in: Tensor | None = None) -> Tensor:
    """One deterministic DDIM inversion step x_s -> x_t, s < t (Song et al. 2021 §4.3; Dhariwal &
    Nichol 2021 App. F), with ``model_out = denoiser(x_in, t)`` and x_in a guess of x_t
    (default x_s, the usual approximation denoiser(x_s, t) ~ denoiser(x_t, t)).

    While SNR_t >= 1 (alpha_bar_t >= 1/2) the model's eps is kept and x0 made consistent with x_s
    at alpha_bar_s; below, where eps_hat ~ x_in says little, its x0 is kept and eps made consistent
    (s >= 0 there). Then x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps. Iterating x_in <- x_t is a
    fixed-point iteration (Pan et al. 2023, "AIDI") whose limit the eta = 0 DDIM step maps back to
    x_s exactly; both routes share that limit. x_s, x_in, model_out: (B, ...) -> x_t (B, ...).
    """
    ab_s, ab_t = schedule.alpha_bar(s), schedule.alpha_bar(t)
    x_in = x_s if x_in is None else x_in
    x0_m, eps_m = x0_eps_from_output(x_in, model_out, math.sqrt(ab_t), math.sqrt(1 - ab_t), prediction)
    if ab_t < 0.5 and s >= 0:
        x0, eps = x0_m, (x_s - math.sqrt(ab_s) * x0_m) / math.sqrt(1 - ab_s)
    else:
        x0, eps = (x_s - math.sqrt(1 - ab_s) * eps_m) / math.sqrt(ab_s), eps_m
    return math.sqrt(ab_t) * x0 + math.sqrt(1 - ab_t) * eps


# ----------------------------------------------------------------------------- loops

def sample_ddpm(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int | None = None, *,
                generator: torch.Generator, prediction: str = "eps", clip_x0: float | None = None,
                callback: Callback | None = None, timesteps: Sequence[int] | None = None) -> Tensor:
    """Ancestral DDPM sampling (Ho et al. 2020, Alg. 2) over ``steps`` trailing timesteps (or the
    caller's descending ``timesteps``).

    x_T: (B, ...) noise, usually ``torch.randn(..., generator=generator)``; returns x_0 (B, ...).
    One ``torch.randn`` per step with non-zero variance, from ``generator``.
    """
    ts = _check_common(denoiser, x_T, "x_T", schedule, steps, prediction, clip_x0, callback, timesteps)
    steps = len(ts)
    _check_generator(generator, required=True)
    _check_eps_at_zero_snr(schedule, ts, prediction)
    x = x_T
    for i, (t, t_prev) in enumerate(zip(ts, ts[1:] + [-1])):
        out = _call(denoiser, x, t)
        noise = _randn(x, generator) if ddpm_variance(schedule, t, t_prev) > 0 else None
        x, x0 = ddpm_step(out, x, t, t_prev, schedule, noise=noise, prediction=prediction, clip_x0=clip_x0)
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": t_prev, "steps": steps, "x": x, "x0": x0})
    return x


def sample_ddim(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int | None = None, *,
                generator: torch.Generator | None = None, eta: float = 0.0, prediction: str = "eps",
                clip_x0: float | None = None, callback: Callback | None = None,
                timesteps: Sequence[int] | None = None) -> Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12); eta = 0 deterministic, eta = 1 DDPM-like.

    x_T: (B, ...); returns x_0 (B, ...). With eta > 0 a ``generator`` is required and one
    ``torch.randn`` is drawn per step (as diffusers' DDIMScheduler does). ``timesteps``: the
    caller's descending timesteps instead of ``steps`` trailing ones.
    """
    ts = _check_common(denoiser, x_T, "x_T", schedule, steps, prediction, clip_x0, callback, timesteps)
    steps = len(ts)
    if isinstance(eta, bool) or not isinstance(eta, Real) or not 0 <= eta <= 1:
        raise bad_input("eta", f"expected a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta!r}.")
    _check_generator(generator, required=eta > 0)
    _check_eps_at_zero_snr(schedule, ts, prediction)
    x = x_T
    for i, (t, t_prev) in enumerate(zip(ts, ts[1:] + [-1])):
        out = _call(denoiser, x, t)
        noise = _randn(x, generator) if eta > 0 else None
        x, x0 = ddim_step(out, x, t, t_prev, schedule, eta=eta, noise=noise, prediction=prediction,
                          clip_x0=clip_x0)
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": t_prev, "steps": steps, "x": x, "x0": x0})
    return x


MIN_ALPHA_BAR = 2.0 ** -24  # alpha_bar at a zero-terminal-SNR start, as diffusers' DPMSolverMultistepScheduler:
# "close to 0 without being 0 so first sigma is not inf" (log-SNR lambda must be finite at the first step)


def dpm_alpha_sigma(schedule: Schedule, t: int) -> tuple[float, float, float]:
    """(alpha_t, sigma_t, lambda_t) of DPM-Solver (Lu et al. 2022, §2): alpha = sqrt(alpha_bar),
    sigma = sqrt(1 - alpha_bar), lambda = log(alpha / sigma), the half log-SNR; t = -1 is the data
    (sigma 0, lambda inf)."""
    if t < 0:
        return 1.0, 0.0, math.inf
    ab = schedule.alpha_bar(t) or MIN_ALPHA_BAR  # only a zero-SNR start is moved
    alpha, sigma = math.sqrt(ab), math.sqrt(1 - ab)
    return alpha, sigma, math.log(alpha) - math.log(sigma)


def dpmpp_2m_step(x0: Tensor, x_t: Tensor, t: int, t_prev: int, schedule: Schedule, *,
                  x0_prev: Tensor | None = None, t_last: int | None = None) -> Tensor:
    """One DPM-Solver++(2M) step x_t -> x_{t_prev} from data predictions (Lu et al. 2022b, Alg. 2,
    the multistep second-order solver; diffusers' "midpoint" form).

    x0: the model's x0 at (x_t, t); x0_prev: its x0 at the previous step's level t_last (None: the
    first-order step, DDIM's eta = 0 update in log-SNR time). With h = lambda_{t_prev} - lambda_t
    and r = (lambda_t - lambda_{t_last}) / h:

        D = x0 + (x0 - x0_prev) / (2 r);   x_{t_prev} = (sigma_prev / sigma_t) x_t - alpha_prev (e^-h - 1) D.

    t_prev = -1 (the data, sigma 0) returns x0: the solver's last step is always first order
    (diffusers' ``final_sigmas_type="zero"``). x0, x_t, x0_prev: (B, ...) -> (B, ...)."""
    if t_prev < 0:
        return x0
    _, sigma_t, lam_t = dpm_alpha_sigma(schedule, t)
    alpha_p, sigma_p, lam_p = dpm_alpha_sigma(schedule, t_prev)
    h = lam_p - lam_t
    D = x0
    if x0_prev is not None:
        r = (lam_t - dpm_alpha_sigma(schedule, t_last)[2]) / h
        D = x0 + (0.5 / r) * (x0 - x0_prev)
    return (sigma_p / sigma_t) * x_t - (alpha_p * math.expm1(-h)) * D


def sample_dpmpp_2m(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int | None = None, *,
                    generator: torch.Generator | None = None, prediction: str = "eps",
                    clip_x0: float | None = None, callback: Callback | None = None,
                    timesteps: Sequence[int] | None = None) -> Tensor:
    """DPM-Solver++(2M) sampling (Lu et al. 2022, "DPM-Solver++: fast solver for guided sampling of
    diffusion probabilistic models", Alg. 2): a deterministic multistep solver of the probability-
    flow ODE in the data-prediction form, second order from its second step, first order on its
    first and last. It needs about half DDIM's steps for the same quality under guidance.

    Equals diffusers' ``DPMSolverMultistepScheduler`` (algorithm_type "dpmsolver++", solver_order 2,
    solver_type "midpoint", final_sigmas_type "zero") over the same timesteps. eps, x0 and v
    predictions; a zero-terminal-SNR schedule starts at alpha_bar = 2**-24 as diffusers does
    (eps is refused there, as for DDIM). x_T: (B, ...) -> x_0 (B, ...); no noise is drawn
    (``generator`` is accepted for the shared signature). clip_x0 clamps each x0 prediction.
    """
    ts = _check_common(denoiser, x_T, "x_T", schedule, steps, prediction, clip_x0, callback, timesteps)
    _check_generator(generator, required=False)
    _check_eps_at_zero_snr(schedule, ts, prediction)
    x, x0_prev, t_last = x_T, None, None
    for i, (t, t_prev) in enumerate(zip(ts, ts[1:] + [-1])):
        out = _call(denoiser, x, t)
        alpha, sigma, _ = dpm_alpha_sigma(schedule, t)
        x0, _ = x0_eps_from_output(x, out, alpha, sigma, prediction)
        if clip_x0 is not None:
            x0 = x0.clamp(-clip_x0, clip_x0)
        x = dpmpp_2m_step(x0, x, t, t_prev, schedule, x0_prev=x0_prev, t_last=t_last)
        x0_prev, t_last = x0, t
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": t_prev, "steps": len(ts), "x": x, "x0": x0})
    return x


SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm, "dpm++2m": sample_dpmpp_2m}


def check_sampler(sampler: object, argument: str = "sampler") -> str:
    """One of SAMPLERS' names, or one sentence naming the argument."""
    from unclip_probe.errors import one_of

    if sampler not in SAMPLERS:
        raise bad_input(argument, one_of(sampler, SAMPLERS))
    return str(sampler)


def resolve_sampler(sampler: str | None, default: str, eta: float = 0.0, argument: str = "sampler") -> str:
    """The sampler a stage runs: ``default`` when None, else a checked name; DDIM's eta with any other
    sampler is refused rather than ignored. Every stack resolves its ``sampler=`` through this."""
    sampler = default if sampler is None else check_sampler(sampler, argument)
    if eta and sampler != "ddim":
        raise bad_input("eta", f"applies to the 'ddim' sampler only, got eta={eta:g} with sampler {sampler!r}.")
    return sampler


def sample(sampler: str, denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int | None = None, *,
           generator: torch.Generator | None = None, eta: float = 0.0, prediction: str = "eps",
           clip_x0: float | None = None, callback: Callback | None = None,
           timesteps: Sequence[int] | None = None) -> Tensor:
    """Run the sampler named ``sampler`` ("ddim", "ddpm" or "dpm++2m") with the shared signature.

    eta is DDIM's alone (DDPM is eta 1 by construction, DPM-Solver++(2M) deterministic): a
    non-zero eta with another sampler is refused rather than ignored."""
    resolve_sampler(sampler, "ddim", eta)
    kw = dict(generator=generator, prediction=prediction, clip_x0=clip_x0, callback=callback, timesteps=timesteps)
    if sampler == "ddim":
        return sample_ddim(denoiser, x_T, schedule, steps, eta=eta, **kw)
    return SAMPLERS[sampler](denoiser, x_T, schedule, steps, **kw)


def invert_ddim(denoiser: Denoiser, x_0: Tensor, schedule: Schedule, steps: int, *,
                prediction: str = "eps", callback: Callback | None = None, fixed_point_iters: int = 0) -> Tensor:
    """DDIM inversion x_0 -> x_T: the eta = 0 sampler run backwards over the same timesteps.

    x_0: (B, ...) data; returns x_T (B, ...) such that ``sample_ddim(denoiser, x_T, schedule,
    steps)`` reproduces x_0: to first order in the step size with ``fixed_point_iters=0`` (Song et
    al. 2021 §4.3; used for unCLIP variations, Ramesh et al. 2022 §3.1), and ever more closely with
    each extra fixed-point iteration per step (one more denoiser call each; Pan et al. 2023).
    Deterministic, no generator. ``callback`` gets i counting up, t the level reached, x (B, ...)
    at t and x0 None.
    """
    ts = _check_common(denoiser, x_0, "x_0", schedule, steps, prediction, None, callback)
    if isinstance(fixed_point_iters, bool) or not isinstance(fixed_point_iters, int) or fixed_point_iters < 0:
        raise bad_input("fixed_point_iters", f"expected an int >= 0, got {fixed_point_iters!r}.")
    _check_eps_at_zero_snr(schedule, ts, prediction)
    x = x_0
    pairs = list(zip(ts[1:] + [-1], ts))[::-1]  # (s, t) ascending: (-1, t_last), ..., (ts[1], T-1)
    for i, (s, t) in enumerate(pairs):
        x_t = x
        for _ in range(1 + fixed_point_iters):
            x_t = ddim_inverse_step(_call(denoiser, x_t, t), x, s, t, schedule, prediction=prediction, x_in=x_t)
        x = x_t
        if callback is not None:
            callback({"i": i, "t": t, "t_prev": s, "steps": steps, "x": x, "x0": None})
    return x

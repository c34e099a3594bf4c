"""Noise schedules and the closed-form maths of the forward process (docs/design.md §1, §8).

Notation follows Ho et al. 2020 (DDPM) and Nichol & Dhariwal 2021 (improved
diffusion): ``betas[t] = beta_t``, ``alphas = 1 - betas``,
``alphas_cumprod[t] = alpha_bar_t = prod_{s<=t} alpha_s`` for t = 0 .. T-1, and

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,   eps ~ N(0, I).

Schedules are float64 and live on the CPU; functions that need them on another
device gather per-batch coefficients there. A schedule that a checkpoint was
trained with must never change once committed: models are only valid with the
exact ``alphas_cumprod`` they saw (improved-diffusion's rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from unclip_probe.errors import bad_input, one_of

KINDS = ("cosine", "linear")
PREDICTIONS = ("eps", "x0", "v")


def _check_T(T: object) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise bad_input("T", f"expected a positive int number of diffusion steps, got {T!r}.")
    return T


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17): (T,) float64 betas.

    alpha_bar(u) = cos(((u + s) / (1 + s)) * pi / 2)^2 for u in [0, 1], and
    beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta). Equals
    diffusers' ``beta_schedule="squaredcos_cap_v2"`` (in float64).
    """
    _check_T(T)
    if not 0 < max_beta <= 1:
        raise bad_input("max_beta", f"expected a number in (0, 1], got {max_beta!r}.")
    if not s >= 0:
        raise bad_input("s", f"expected an offset >= 0, got {s!r}.")

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta) for t in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Linear schedule (Ho et al. 2020, §4): (T,) float64 betas from beta_start to beta_end.

    Not rescaled by 1000 / T (improved-diffusion does that); equals diffusers'
    ``beta_schedule="linear"`` with the same beta_start / beta_end.
    """
    _check_T(T)
    if not 0 < beta_start <= beta_end < 1:
        raise bad_input("beta_start", f"expected 0 < beta_start <= beta_end < 1, got {beta_start!r}, {beta_end!r}.")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2023 ("Common Diffusion Noise Schedules ... are Flawed"), Algorithm 1.

    Shifts and scales sqrt(alpha_bar) so that sqrt(alpha_bar_{T-1}) == 0 (SNR 0:
    the last step really is pure noise) while sqrt(alpha_bar_0) is unchanged.
    (T,) float64 -> (T,) float64, with betas[-1] == 1.
    """
    sqrt_ab = torch.cumprod(1 - betas.to(torch.float64), 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete noise schedule: ``betas``, ``alphas``, ``alphas_cumprod``, each (T,) float64 on the CPU.

    Build with :func:`make_schedule` or :meth:`from_betas`. ``alpha_bar(t)``
    gives host floats for samplers, with ``alpha_bar(-1) == 1`` (the clean data).
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor

    def __post_init__(self) -> None:
        for name in ("betas", "alphas", "alphas_cumprod"):
            v = getattr(self, name)
            if not isinstance(v, Tensor) or v.dtype != torch.float64 or v.ndim != 1 or v.device.type != "cpu":
                raise bad_input(f"Schedule.{name}", "expected a 1-D float64 CPU tensor.")
        if not self.betas.shape == self.alphas.shape == self.alphas_cumprod.shape or len(self.betas) == 0:
            raise bad_input("Schedule", "betas, alphas and alphas_cumprod must have the same non-zero length T.")
        if not bool(((self.betas > 0) & (self.betas <= 1)).all()):
            raise bad_input("Schedule.betas", "expected every beta in (0, 1].")
        if not (torch.equal(self.alphas, 1 - self.betas)
                and torch.allclose(self.alphas_cumprod, torch.cumprod(self.alphas, 0), rtol=1e-12, atol=0)):
            raise bad_input("Schedule", "alphas must be 1 - betas and alphas_cumprod their cumulative product "
                            "(use Schedule.from_betas).")

    @classmethod
    def from_betas(cls, betas: Tensor) -> "Schedule":
        """Schedule from (T,) betas in (0, 1]; alphas and alphas_cumprod are derived in float64."""
        if not isinstance(betas, Tensor) or betas.ndim != 1:
            raise bad_input("betas", f"expected a 1-D tensor, got {type(betas).__name__}.")
        betas = betas.detach().to("cpu", torch.float64)
        alphas = 1 - betas
        return cls(betas, alphas, torch.cumprod(alphas, 0))

    @property
    def T(self) -> int:
        """Number of diffusion steps (timesteps are 0 .. T-1)."""
        return len(self.betas)

    @cached_property
    def _alpha_bar_list(self) -> list[float]:
        return self.alphas_cumprod.tolist()

    def alpha_bar(self, t: int) -> float:
        """alpha_bar_t as a host float; t == -1 means the data itself (alpha_bar = 1)."""
        return 1.0 if t < 0 else self._alpha_bar_list[t]

    @property
    def zero_terminal_snr(self) -> bool:
        """True when alpha_bar_{T-1} == 0, i.e. x_{T-1} is pure noise (Lin et al. 2023)."""
        return self.alpha_bar(self.T - 1) == 0.0


def make_schedule(kind: str, T: int, *, zero_terminal_snr: bool = False) -> Schedule:
    """The schedule ``kind`` in {"cosine", "linear"} with T steps, default parameters.

    ``zero_terminal_snr`` rescales it (Lin et al. 2023, Alg. 1) so alphas_cumprod[-1] == 0;
    such schedules need "v" or "x0" prediction (eps cannot give x_0 at SNR 0).
    """
    if kind not in KINDS:
        raise bad_input("kind", one_of(kind, KINDS) + ".")
    betas = cosine_betas(T) if kind == "cosine" else linear_betas(T)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    return Schedule.from_betas(betas)


def schedule_of(cfg) -> Schedule:
    """The schedule a stage's diffusion config names (``cfg.schedule``, ``cfg.T``, ``cfg.zero_terminal_snr``;
    e.g. ``models.configs.DiffusionConfig``): the one place a stored config becomes a Schedule."""
    return make_schedule(cfg.schedule, cfg.T, zero_terminal_snr=cfg.zero_terminal_snr)


def check_prediction(prediction: object) -> str:
    """Validate a prediction type ("eps", "x0" or "v") and return it."""
    if prediction not in PREDICTIONS:
        raise bad_input("prediction", one_of(prediction, PREDICTIONS) + ".")
    return prediction  # type: ignore[return-value]


def _gather(a: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """a[t] for a (T,) schedule tensor and t (B,), reshaped to (B, 1, ..., 1) in x's dtype/device.

    improved-diffusion's ``_extract_into_tensor``: the maths is done in float64
    before the cast.
    """
    if not isinstance(t, Tensor) or t.ndim != 1 or t.dtype not in (torch.int32, torch.int64):
        raise bad_input("t", "expected a (B,) integer tensor of timesteps.")
    if x.ndim < 1 or t.shape[0] != x.shape[0]:
        raise bad_input("t", f"has batch {tuple(t.shape)}, but the sample has shape {tuple(x.shape)}.")
    out = a.to(t.device)[t].to(device=x.device, dtype=x.dtype)
    return out.reshape(-1, *([1] * (x.ndim - 1)))


def _check_pair(name: str, x: Tensor, other_name: str, other: Tensor) -> None:
    for n, v in ((name, x), (other_name, other)):
        if not isinstance(v, Tensor) or not v.is_floating_point():
            raise bad_input(n, f"expected a floating-point tensor, got {getattr(v, 'dtype', type(v).__name__)}.")
    if x.shape != other.shape:
        raise bad_input(other_name, f"has shape {tuple(other.shape)}, expected {tuple(x.shape)} like {name}.")


def q_sample(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Sample q(x_t | x_0) (Ho et al. 2020, eq. 4): x0, noise (B, ...), t (B,) long -> x_t (B, ...)."""
    _check_pair("x0", x0, "noise", noise)
    ab = _gather(schedule.alphas_cumprod, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def v_target(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Velocity target v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022, §4).

    x0, noise (B, ...), t (B,) long -> v (B, ...).
    """
    _check_pair("x0", x0, "noise", noise)
    ab = _gather(schedule.alphas_cumprod, t, x0)
    return ab.sqrt() * noise - (1 - ab).sqrt() * x0


def x0_eps_from_output(x_t: Tensor, model_out: Tensor, sqrt_ab: Tensor | float, sqrt_1mab: Tensor | float,
                       prediction: str) -> tuple[Tensor, Tensor]:
    """(x0_hat, eps_hat) from a model output, given sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t).

    The coefficients are host floats (samplers) or (B, 1, ...) tensors. Uses
    x_t = sqrt(ab) x_0 + sqrt(1-ab) eps and v = sqrt(ab) eps - sqrt(1-ab) x_0.
    """
    if prediction == "eps":
        return (x_t - sqrt_1mab * model_out) / sqrt_ab, model_out
    if prediction == "x0":
        return model_out, (x_t - sqrt_ab * model_out) / sqrt_1mab
    # v: x_0 = sqrt(ab) x_t - sqrt(1-ab) v, eps = sqrt(ab) v + sqrt(1-ab) x_t (Salimans & Ho 2022, App. D)
    return sqrt_ab * x_t - sqrt_1mab * model_out, sqrt_ab * model_out + sqrt_1mab * x_t


def predict_x0_eps(schedule: Schedule, x_t: Tensor, t: Tensor, model_out: Tensor,
                   prediction: str) -> tuple[Tensor, Tensor]:
    """Convert a model output of type ``prediction`` in {"eps", "x0", "v"} to (x0_hat, eps_hat).

    x_t, model_out (B, ...), t (B,) long -> two (B, ...) tensors with
    x_t == sqrt(alpha_bar_t) x0_hat + sqrt(1 - alpha_bar_t) eps_hat.
    """
    check_prediction(prediction)
    _check_pair("x_t", x_t, "model_out", model_out)
    ab = _gather(schedule.alphas_cumprod, t, x_t)
    return x0_eps_from_output(x_t, model_out, ab.sqrt(), (1 - ab).sqrt(), prediction)


def training_target(schedule: Schedule, x0: Tensor, t: Tensor, noise: Tensor, prediction: str) -> Tensor:
    """What a model of type ``prediction`` should output for x_t = q_sample(x0, t, noise); (B, ...)."""
    check_prediction(prediction)
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    return v_target(schedule, x0, t, noise)

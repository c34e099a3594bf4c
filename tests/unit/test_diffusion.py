"""Schedules, samplers, DDIM inversion, guidance and the loss (docs/design.md §1, §5, §7, §8).

Analytic denoisers stand in for networks: for Gaussian data N(mu, diag(sig^2)) the
exact posterior mean E[x_0 | x_t] is linear in x_t, so the only errors left are the
samplers' own.
"""
from __future__ import annotations

import math

import pytest
import torch

import unclip_probe.diffusion as samplers_by_name

from unclip_probe.diffusion import (Schedule, cfg_denoiser, cosine_betas, ddim_step, ddpm_step, diffusion_loss,
                                    invert_ddim, linear_betas, make_schedule, predict_x0_eps, q_sample,
                                    sample_ddim, sample_ddpm, sampling_timesteps, training_target, v_target)
from unclip_probe.errors import ProbeInputError

pytestmark = pytest.mark.unit

T = 1000
D = 64


def gaussian_denoiser(schedule: Schedule, mu: torch.Tensor, sig: torch.Tensor, prediction: str):
    """The exact model for data N(mu, diag(sig^2)):
    x0_hat = E[x_0 | x_t] = mu + sqrt(ab) sig^2 / (ab sig^2 + 1 - ab) (x_t - sqrt(ab) mu)."""
    ac = schedule.alphas_cumprod

    def denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = ac.to(x.device)[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        x0 = mu + ab.sqrt() * sig**2 / (ab * sig**2 + 1 - ab) * (x - ab.sqrt() * mu)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[prediction]

    return denoiser


def gaussian_data(n: int = 8, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(D, generator=g, dtype=dtype) * 1.2 - 0.6
    sig = torch.rand(D, generator=g, dtype=dtype) * 0.3 + 0.2
    x0 = (mu + sig * torch.randn(n, D, generator=g, dtype=dtype)).clamp(-1, 1)
    return mu, sig, x0


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR for data in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4 / ((a - b) ** 2).mean().item())


def toy_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.tanh(x) * (1 + t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1))) / T)


# ----------------------------------------------------------------------------- schedules

def test_betas_are_float64_and_follow_the_papers():
    b = cosine_betas(T)
    assert b.dtype == torch.float64 and b.shape == (T,) and b.max() <= 0.999
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # Nichol & Dhariwal eq. 17
    ab = torch.cumprod(1 - b, 0)
    for t in (0, 10, 500, 900):
        assert ab[t].item() == pytest.approx(f((t + 1) / T) / f(0), rel=1e-9)
    lin = linear_betas(T)
    assert lin.dtype == torch.float64 and lin[0] == 1e-4 and lin[-1].item() == pytest.approx(0.02)
    for kind in ("cosine", "linear"):
        s = make_schedule(kind, T)
        assert (s.alphas_cumprod.diff() < 0).all() and s.alphas_cumprod[-1] > 0 and not s.zero_terminal_snr
        torch.testing.assert_close(s.alphas, 1 - s.betas, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_zero_terminal_snr_last_step_is_pure_noise(kind):
    plain, z = make_schedule(kind, T), make_schedule(kind, T, zero_terminal_snr=True)
    assert z.alphas_cumprod[-1] == 0 and z.betas[-1] == 1 and z.zero_terminal_snr
    assert z.alphas_cumprod[0].item() == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-12)
    assert (z.alphas_cumprod[:-1] > 0).all() and (z.alphas_cumprod.diff() < 0).all()
    x0, noise = torch.randn(3, 4, 5) * 7, torch.randn(3, 4, 5)
    xt = q_sample(z, x0, torch.full((3,), T - 1), noise)
    assert torch.equal(xt, noise)  # no trace of x0 at all
    assert not torch.equal(q_sample(plain, x0, torch.full((3,), T - 1), noise), noise)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_prediction_conversions_roundtrip(prediction):
    s = make_schedule("cosine", T, zero_terminal_snr=True)
    x0, noise = torch.randn(4, 3, 2, dtype=torch.float64), torch.randn(4, 3, 2, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 998])
    xt = q_sample(s, x0, t, noise)
    x0_hat, eps_hat = predict_x0_eps(s, xt, t, training_target(s, x0, t, noise, prediction), prediction)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, noise)
    ab = s.alphas_cumprod[t].reshape(-1, 1, 1)
    torch.testing.assert_close(v_target(s, x0, t, noise), ab.sqrt() * noise - (1 - ab).sqrt() * x0)


def test_trailing_timesteps_start_at_T_minus_1():
    s = make_schedule("cosine", T)
    assert sampling_timesteps(s, 1) == [T - 1]
    assert sampling_timesteps(s, 4) == [999, 749, 499, 249]
    assert sampling_timesteps(s, T) == list(range(T - 1, -1, -1))
    for steps in (3, 7, 64, 333):
        ts = sampling_timesteps(s, steps)
        assert len(ts) == steps and ts[0] == T - 1 and ts[-1] >= 0 and all(a > b for a, b in zip(ts, ts[1:]))


# ----------------------------------------------------------------------------- samplers

def test_ddim_is_exact_for_a_point_mass():
    """For data = {mu} eps_hat is constant along the ODE, so eta=0 DDIM lands on mu exactly (any steps)."""
    s, mu = make_schedule("linear", T), torch.linspace(-1, 1, D, dtype=torch.float64)
    den = gaussian_denoiser(s, mu, torch.zeros(D, dtype=torch.float64), "eps")
    for steps in (1, 3, 50):
        out = sample_ddim(den, torch.randn(5, D, dtype=torch.float64), s, steps)
        torch.testing.assert_close(out, mu.expand(5, D), rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind,zsnr,prediction", [("cosine", False, "eps"), ("cosine", True, "v"),
                                                  ("linear", False, "x0"), ("linear", True, "v")])
def test_ddim_inversion_roundtrip(kind, zsnr, prediction):
    s = make_schedule(kind, T, zero_terminal_snr=zsnr)
    mu, sig, x0 = gaussian_data()
    den = gaussian_denoiser(s, mu, sig, prediction)
    # plain inversion: first order in the step size
    x_T = invert_ddim(den, x0, s, 100, prediction=prediction)
    assert psnr(sample_ddim(den, x_T, s, 100, prediction=prediction), x0) > 40
    # fixed-point refined inversion: the eta = 0 sampler maps x_T back to x0 almost exactly
    x_T = invert_ddim(den, x0, s, 50, prediction=prediction, fixed_point_iters=3)
    assert psnr(sample_ddim(den, x_T, s, 50, prediction=prediction), x0) > 80
    assert 0.8 < x_T.std().item() < 1.2  # a plausible noise sample, not a blow-up


def test_inversion_roundtrip_float32():
    s = make_schedule("cosine", T, zero_terminal_snr=True)
    mu, sig, x0 = gaussian_data(dtype=torch.float32)
    den = gaussian_denoiser(s, mu, sig, "v")
    x_T = invert_ddim(den, x0, s, 25, prediction="v", fixed_point_iters=3)
    assert psnr(sample_ddim(den, x_T, s, 25, prediction="v"), x0) > 60


def test_ddpm_samples_the_gaussian():
    """Ancestral sampling with the exact model reproduces the data mean; the spread comes out a few
    per cent low at 50 of 1000 steps, as expected of the fixed-small variance beta~ (it omits
    Var[x_0 | x_t]; Bao et al. 2022, Analytic-DPM), and the gap closes as steps grow."""
    s = make_schedule("cosine", T)
    mu, sig, _ = gaussian_data()
    g = torch.Generator().manual_seed(0)
    out = sample_ddpm(gaussian_denoiser(s, mu, sig, "eps"), torch.randn(2000, D, generator=g, dtype=torch.float64),
                      s, 50, generator=g)
    assert (out.mean(0) - mu).abs().max() < 0.05
    assert 0.85 < (out.std(0) / sig).mean() < 1.0


def test_same_generator_seed_same_result_and_callback():
    s = make_schedule("linear", T)
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    runs = [
        lambda seed, cb=None: sample_ddpm(toy_denoiser, x, s, 10, generator=torch.Generator().manual_seed(seed),
                                          callback=cb),
        lambda seed, cb=None: sample_ddim(toy_denoiser, x, s, 10, generator=torch.Generator().manual_seed(seed),
                                          eta=0.5, callback=cb),
    ]
    for run in runs:
        seen = []
        a = run(1, seen.append)
        assert torch.equal(a, run(1)) and not torch.equal(a, run(2))
        assert [d["i"] for d in seen] == list(range(10)) and [d["t"] for d in seen] == sampling_timesteps(s, 10)
        assert seen[-1]["t_prev"] == -1 and torch.equal(seen[-1]["x"], a) and seen[-1]["x0"].shape == x.shape
    assert torch.equal(sample_ddim(toy_denoiser, x, s, 10), sample_ddim(toy_denoiser, x, s, 10))
    assert torch.equal(invert_ddim(toy_denoiser, x, s, 10), invert_ddim(toy_denoiser, x, s, 10))


def test_no_host_reads_inside_the_loops():
    """On the meta device any .item() or branch on a tensor value raises: the loops make none."""
    s = make_schedule("cosine", 100, zero_terminal_snr=True)
    x = torch.empty(2, 3, 8, 8, device="meta")
    g = torch.Generator()
    for out in (sample_ddpm(toy_denoiser, x, s, 10, generator=g, prediction="v", clip_x0=1.0),
                sample_ddim(toy_denoiser, x, s, 10, generator=g, eta=0.3, prediction="x0"),
                invert_ddim(toy_denoiser, x, s, 10, prediction="v", fixed_point_iters=1),
                diffusion_loss(toy_denoiser, s, x, prediction="v", generator=g)):
        assert out.device.type == "meta"


def test_clip_x0_clamps_the_prediction():
    s = make_schedule("cosine", T)
    big = lambda x, t: 5 * torch.ones_like(x)  # x0-prediction far outside [-1, 1]
    x = torch.randn(2, 4, dtype=torch.float64)
    _, x0 = ddim_step(big(x, None), x, 500, 400, s, prediction="x0", clip_x0=1.0)
    assert torch.equal(x0, torch.ones_like(x))
    assert sample_ddim(big, x, s, 5, prediction="x0", clip_x0=1.0).abs().max() <= 1 + 1e-12


# ----------------------------------------------------------------------------- guidance

def test_cfg_is_one_batched_forward():
    calls = []

    def model_fn(x, t, c):
        calls.append((x.shape[0], t.shape[0]))
        return x * c["emb"][:, :1] + c["tokens"][0].sum(1, keepdim=True)

    B = 3
    cond = {"emb": torch.randn(B, 5), "tokens": (torch.randn(B, 7),)}
    uncond = {"emb": torch.zeros(B, 5), "tokens": (torch.zeros(B, 7),)}
    x, t = torch.randn(B, 4), torch.full((B,), 10)
    out = cfg_denoiser(model_fn, cond, uncond, 3.0)(x, t)
    assert calls == [(2 * B, 2 * B)]
    c, u = model_fn(x, t, cond), model_fn(x, t, uncond)
    torch.testing.assert_close(out, u + 3.0 * (c - u))
    calls.clear()
    torch.testing.assert_close(cfg_denoiser(model_fn, cond, uncond, 1)(x, t), c)
    assert calls == [(B, B)]  # scale 1: one conditional pass of batch B
    torch.testing.assert_close(cfg_denoiser(model_fn, cond, uncond, 0.0)(x, t), u)


def test_cfg_inside_a_sampler():
    s = make_schedule("cosine", T)
    model_fn = lambda x, t, c: toy_denoiser(x, t) * c
    cond, uncond = torch.full((2, 1), 1.0), torch.full((2, 1), 0.5)
    x = torch.randn(2, 6)
    guided = sample_ddim(cfg_denoiser(model_fn, cond, uncond, 2.0), x, s, 5)
    manual = sample_ddim(lambda x, t: model_fn(x, t, 0.5 + 2.0 * 0.5), x, s, 5)  # linear in c
    torch.testing.assert_close(guided, manual)


# ----------------------------------------------------------------------------- loss

@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_loss_is_zero_for_the_exact_model_and_reproducible(prediction):
    s = make_schedule("cosine", T, zero_terminal_snr=prediction != "eps")
    mu = torch.linspace(-1, 1, D, dtype=torch.float64)
    x0 = mu.expand(16, D).clone()
    den = gaussian_denoiser(s, mu, torch.zeros(D, dtype=torch.float64), prediction)
    t_not_last = torch.arange(16) * 60  # the point-mass eps model is 0/0 at zero SNR
    assert diffusion_loss(den, s, x0, prediction=prediction, generator=torch.Generator(), t=t_not_last) < 1e-20
    net = torch.nn.Linear(D, D, dtype=torch.float64)
    loss = lambda seed: diffusion_loss(lambda x, t: net(x), s, x0, prediction=prediction,
                                       generator=torch.Generator().manual_seed(seed))
    a = loss(0)
    assert a == loss(0) and a != loss(1)
    a.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_min_snr_weighting_caps_the_x0_weight_of_each_prediction_type():
    s = make_schedule("cosine", T, zero_terminal_snr=True)
    x0 = torch.randn(32, D, dtype=torch.float64)
    t = torch.arange(32) * 31  # includes t = 992 (SNR ~ 0) and t = 0 (SNR ~ 1e5)
    net = torch.nn.Linear(D, D, dtype=torch.float64)
    noise = torch.randn(32, D, dtype=torch.float64)
    kw = dict(generator=torch.Generator(), t=t, noise=noise)
    # A huge gamma caps nothing: the plain loss.
    plain = diffusion_loss(lambda x, t: net(x), s, x0, prediction="v", **kw)
    torch.testing.assert_close(diffusion_loss(lambda x, t: net(x), s, x0, prediction="v", min_snr_gamma=1e9, **kw), plain)
    # gamma = 1 on a v loss weights every example's x0 error by 1: the x0 MSE of the same outputs.
    capped = diffusion_loss(lambda x, t: net(x), s, x0, prediction="v", min_snr_gamma=1.0, **kw)
    ab = s.alphas_cumprod[t][:, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    x0_hat = ab.sqrt() * x_t - (1 - ab).sqrt() * net(x_t)
    torch.testing.assert_close(capped, ((x0_hat - x0) ** 2).mean())
    assert capped < plain  # the nearly clean examples had weight SNR + 1 >> 1
    with pytest.raises(ProbeInputError, match="min_snr_gamma"):
        diffusion_loss(lambda x, t: net(x), s, x0, prediction="v", min_snr_gamma=-1.0, **kw)


# ----------------------------------------------------------------------------- bad input

S = make_schedule("cosine", 50)
Z = make_schedule("cosine", 50, zero_terminal_snr=True)
X = torch.randn(2, 3)
G = torch.Generator()
BAD = [
    ("steps", lambda: sample_ddim(toy_denoiser, X, S, 0)),
    ("steps", lambda: sample_ddpm(toy_denoiser, X, S, 51, generator=G)),
    ("steps", lambda: invert_ddim(toy_denoiser, X, S, 2.5)),
    ("steps", lambda: sample_ddim(toy_denoiser, X, S, True)),
    ("eta", lambda: sample_ddim(toy_denoiser, X, S, 5, eta=-0.1)),
    ("eta", lambda: sample_ddim(toy_denoiser, X, S, 5, eta=1.5, generator=G)),
    ("generator", lambda: sample_ddim(toy_denoiser, X, S, 5, eta=0.5)),
    ("generator", lambda: sample_ddpm(toy_denoiser, X, S, 5, generator=0)),
    ("x_T", lambda: sample_ddim(toy_denoiser, [[1.0, 2.0]], S, 5)),
    ("x_T", lambda: sample_ddpm(toy_denoiser, torch.ones(2, 3, dtype=torch.long), S, 5, generator=G)),
    ("x_0", lambda: invert_ddim(toy_denoiser, "image.png", S, 5)),
    ("prediction", lambda: sample_ddim(toy_denoiser, X, S, 5, prediction="epsilon")),
    ("prediction", lambda: sample_ddpm(toy_denoiser, X, Z, 5, generator=G, prediction="eps")),
    ("prediction", lambda: predict_x0_eps(S, X, torch.zeros(2, dtype=torch.long), X, "sample")),
    ("prediction", lambda: diffusion_loss(toy_denoiser, S, X, prediction="velocity", generator=G)),
    ("clip_x0", lambda: sample_ddim(toy_denoiser, X, S, 5, clip_x0=-1.0)),
    ("callback", lambda: sample_ddim(toy_denoiser, X, S, 5, callback="print")),
    ("schedule", lambda: sample_ddim(toy_denoiser, X, "cosine", 5)),
    ("denoiser", lambda: sample_ddim(lambda x, t: x[:1], X, S, 5)),
    ("denoiser", lambda: sample_ddim(None, X, S, 5)),
    ("fixed_point_iters", lambda: invert_ddim(toy_denoiser, X, S, 5, fixed_point_iters=-1)),
    ("noise", lambda: ddpm_step(X, X, 40, 30, S)),
    ("kind", lambda: make_schedule("cosin", 50)),
    ("T", lambda: make_schedule("linear", 0)),
    ("Schedule", lambda: Schedule(S.betas, S.alphas, S.alphas)),
    ("t", lambda: q_sample(S, X, torch.zeros(3, dtype=torch.long), X)),
    ("noise", lambda: q_sample(S, X, torch.zeros(2, dtype=torch.long), torch.randn(2, 4))),
    ("generator", lambda: diffusion_loss(toy_denoiser, S, X, prediction="v", generator=None)),
    ("scale", lambda: cfg_denoiser(lambda x, t, c: x, X, X, -1.0)),
    ("scale", lambda: cfg_denoiser(lambda x, t, c: x, X, X, float("nan"))),
    ("uncond", lambda: cfg_denoiser(lambda x, t, c: x, {"a": X}, {"b": X}, 2.0)),
    ("uncond", lambda: cfg_denoiser(lambda x, t, c: x, X, torch.randn(3, 3), 2.0)),
    ("x_t", lambda: cfg_denoiser(lambda x, t, c: x, X, X, 2.0)(torch.randn(5, 3), torch.zeros(5))),
]


@pytest.mark.parametrize("argument,call", BAD, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_names_the_argument(argument, call):
    with pytest.raises(ProbeInputError, match=rf"^{argument}: ") as info:
        call()
    message = str(info.value)
    assert message.count("\n") == 0 and len(message) < 240


# ---------------------------------------------------------------------------- samplers by name, explicit timesteps
def _toy(x, t):
    return 0.5 * torch.tanh(x) + 0.01 * t.float().view(-1, *[1] * (x.dim() - 1)) / 100


def test_sample_dispatches_by_name_and_explicit_timesteps_equal_steps():
    from unclip_probe.diffusion import SAMPLERS, sample, sample_ddim, sample_dpmpp_2m, sampling_timesteps

    sched = make_schedule("cosine", 100)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    assert set(SAMPLERS) == {"ddim", "ddpm", "dpm++2m"}
    ts = sampling_timesteps(sched, 7)
    for name, fn in (("ddim", sample_ddim), ("dpm++2m", sample_dpmpp_2m)):
        by_name = sample(name, _toy, x, sched, 7, prediction="v")
        assert torch.equal(by_name, fn(_toy, x, sched, 7, prediction="v"))
        assert torch.equal(by_name, fn(_toy, x, sched, timesteps=ts, prediction="v"))
    assert not torch.allclose(sample("ddim", _toy, x, sched, 7, prediction="v"),
                              sample("dpm++2m", _toy, x, sched, 7, prediction="v"))
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(sample("ddpm", _toy, x, sched, 5, generator=g(), prediction="v"),
                       sample("ddpm", _toy, x, sched, 5, generator=g(), prediction="v"))


def test_dpmpp_2m_first_and_last_steps_are_first_order():
    """One step of DPM-Solver++(2M) lands on the model's x0, as DDIM's does (both are exact there)."""
    from unclip_probe.diffusion import sample_ddim, sample_dpmpp_2m

    sched = make_schedule("linear", 50)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(sample_dpmpp_2m(_toy, x, sched, 1, prediction="x0"),
                               sample_ddim(_toy, x, sched, 1, prediction="x0"))


@pytest.mark.parametrize("call, argument", [
    (lambda s, x: samplers_by_name.sample("dpm2", _toy, x, s, 4), "sampler"),
    (lambda s, x: samplers_by_name.sample("dpm++2m", _toy, x, s, 4, eta=0.3),
     "eta"),
    (lambda s, x: samplers_by_name.sample_dpmpp_2m(
        _toy, x, s, timesteps=[10, 20]), "timesteps"),
    (lambda s, x: samplers_by_name.sample_ddim(
        _toy, x, s, timesteps=[30, 30, 2]), "timesteps"),
    (lambda s, x: samplers_by_name.sample_ddim(
        _toy, x, s, timesteps=[60, 2]), "timesteps"),
    (lambda s, x: samplers_by_name.sample_ddim(
        _toy, x, s, 3, timesteps=[30, 2]), "steps"),
    (lambda s, x: samplers_by_name.sample_dpmpp_2m(
        _toy, x, make_schedule("cosine", 50, zero_terminal_snr=True), 4, prediction="eps"), "prediction"),
])
def test_sampler_bad_input_names_the_argument(call, argument):
    with pytest.raises(ProbeInputError) as e:
        call(make_schedule("cosine", 50), torch.randn(2, 3))
    assert str(e.value).startswith(f"{argument}: ")

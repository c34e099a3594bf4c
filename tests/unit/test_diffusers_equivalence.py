"""Our DDPM / DDIM steps equal diffusers' DDPMScheduler / DDIMScheduler step for step (docs/design.md §8).

Same betas (diffusers builds its own from the matching config; we check they equal
ours), the same deterministic fake model, the same noise (same generator seed).
diffusers config chosen to match our conventions: ``timestep_spacing="trailing"``,
``clip_sample=False``, DDPM ``variance_type="fixed_small"``, DDIM
``set_alpha_to_one=True`` (alpha_bar after the last step is 1), no thresholding.
"""
from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

from unclip_probe.diffusion import (ddim_step, ddpm_step, make_schedule, sample_ddim, sample_ddpm,  # noqa: E402
                                    sampling_timesteps)

pytestmark = pytest.mark.unit

T = 1000
SHAPE = (2, 3, 8, 8)
ATOL = 1e-5
DIFFUSERS_SCHEDULE = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
# (kind, zero_terminal_snr, prediction, steps); eps cannot be sampled at zero terminal SNR
CASES = [
    ("cosine", False, "eps", 50), ("cosine", False, "v", 20), ("linear", False, "eps", 25),
    ("linear", False, "v", 10), ("cosine", True, "v", 25), ("linear", True, "v", 10), ("cosine", False, "x0", 10),
]


def fake_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, smooth, bounded function of x (B, C, H, W) and t (B,): stands in for a network."""
    s = (t.to(x.dtype) / T).reshape(-1, 1, 1, 1)
    return 0.6 * torch.tanh(1.5 * x) + 0.3 * torch.cos(3.0 * s + x) - 0.2 * s


def config(kind: str, zsnr: bool, prediction: str) -> dict:
    return dict(num_train_timesteps=T, beta_schedule=DIFFUSERS_SCHEDULE[kind], beta_start=1e-4, beta_end=0.02,
                prediction_type=DIFFUSERS_PREDICTION[prediction], clip_sample=False, thresholding=False,
                timestep_spacing="trailing", steps_offset=0, rescale_betas_zero_snr=zsnr)


def x_T(seed: int) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind,zsnr", [("cosine", False), ("linear", False), ("cosine", True), ("linear", True)])
def test_schedules_equal_diffusers_betas(kind, zsnr):
    ours = make_schedule(kind, T, zero_terminal_snr=zsnr)
    theirs = DDPMScheduler(**config(kind, zsnr, "v"))
    # diffusers keeps float32, ours float64; its float32 zero-SNR rescale also loses ~2e-6 in 1 - alpha
    torch.testing.assert_close(ours.betas.float(), theirs.betas, rtol=2e-6, atol=2e-6 if zsnr else 1e-7)
    torch.testing.assert_close(ours.alphas_cumprod.float(), theirs.alphas_cumprod, rtol=1e-5, atol=1e-7)
    assert theirs.timesteps.numel() == T
    for steps in (1, 7, 10, 25, 50, 333, T):
        theirs.set_timesteps(steps)
        assert sampling_timesteps(ours, steps) == theirs.timesteps.tolist()


def make_scheduler(cls, kind: str, zsnr: bool, prediction: str, steps: int, precise: bool, **extra):
    """diffusers' scheduler; ``precise`` hands it our float64 schedule (its constructor would round
    any betas to float32, which eps-prediction at alpha_bar_{T-1} ~ 1e-9 amplifies past 1e-5)."""
    sched = cls(**config(kind, zsnr, prediction), **extra)
    if precise:
        ours = make_schedule(kind, T, zero_terminal_snr=zsnr)
        sched.betas, sched.alphas, sched.alphas_cumprod = ours.betas, ours.alphas, ours.alphas_cumprod
        sched.one = sched.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    sched.set_timesteps(steps)
    return sched


def _diffusers_loop(sched, x: torch.Tensor, seed: int, step_kwargs: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    trajectory = []
    for t in sched.timesteps:
        res = sched.step(fake_model(x, t.expand(x.shape[0])), t, x, generator=g, **step_kwargs)
        x = res.prev_sample
        trajectory.append((x, res.pred_original_sample))
    return trajectory


def _record():
    got = []
    return got, lambda d: got.append((d["x"], d["x0"]))


def _assert_trajectories_close(ours, theirs):
    assert len(ours) == len(theirs)
    for i, ((x, x0), (x_d, x0_d)) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(x, x_d, rtol=0, atol=ATOL, msg=lambda m: f"x after step {i}: {m}")
        torch.testing.assert_close(x0, x0_d, rtol=0, atol=ATOL, msg=lambda m: f"x0 at step {i}: {m}")


# float64 with our schedule inside diffusers: every case; float32 with diffusers' own float32
# schedule: the cases that are well conditioned in float32 (v and x0 prediction)
PRECISIONS = [(c, torch.float64) for c in CASES] + [(c, torch.float32) for c in CASES if c[2] != "eps"]
IDS = [f"{k}{'-zsnr' if z else ''}-{p}-{n}steps-{str(d)[6:]}" for (k, z, p, n), d in PRECISIONS]


@pytest.mark.parametrize("case,dtype", PRECISIONS, ids=IDS)
def test_ddpm_sampler_matches_diffusers(case, dtype):
    kind, zsnr, prediction, steps = case
    sched = make_scheduler(DDPMScheduler, *case, precise=dtype == torch.float64, variance_type="fixed_small")
    theirs = _diffusers_loop(sched, x_T(0).to(dtype), seed=1, step_kwargs={})
    ours, cb = _record()
    sample_ddpm(fake_model, x_T(0).to(dtype), make_schedule(kind, T, zero_terminal_snr=zsnr), steps,
                generator=torch.Generator().manual_seed(1), prediction=prediction, callback=cb)
    _assert_trajectories_close(ours, theirs)


# eta = 1 is left out: diffusers' float32 sqrt(1 - alpha_bar_prev - sigma^2) goes NaN there
@pytest.mark.parametrize("eta", [0.0, 0.6])
@pytest.mark.parametrize("case,dtype", PRECISIONS, ids=IDS)
def test_ddim_sampler_matches_diffusers(case, dtype, eta):
    kind, zsnr, prediction, steps = case
    sched = make_scheduler(DDIMScheduler, *case, precise=dtype == torch.float64, set_alpha_to_one=True)
    theirs = _diffusers_loop(sched, x_T(0).to(dtype), seed=2, step_kwargs={"eta": eta})
    ours, cb = _record()
    sample_ddim(fake_model, x_T(0).to(dtype), make_schedule(kind, T, zero_terminal_snr=zsnr), steps,
                generator=torch.Generator().manual_seed(2), eta=eta, prediction=prediction, callback=cb)
    _assert_trajectories_close(ours, theirs)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_single_steps_match_diffusers_from_the_same_state(prediction):
    """Each step fed diffusers' own x_t and the same noise, so errors cannot accumulate or cancel."""
    case = ("cosine", False, prediction, 20)
    ours = make_schedule("cosine", T)
    ddpm = make_scheduler(DDPMScheduler, *case, precise=True)
    ddim = make_scheduler(DDIMScheduler, *case, precise=True, set_alpha_to_one=True)
    ts = sampling_timesteps(ours, 20)
    x = x_T(3).double()
    g = torch.Generator().manual_seed(4)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out = fake_model(x, torch.full((SHAPE[0],), t))
        state = g.get_state()
        ref = ddpm.step(out, ddpm.timesteps[i], x, generator=g)
        noise = torch.randn(SHAPE, generator=torch.Generator().set_state(state), dtype=x.dtype)
        got, got_x0 = ddpm_step(out, x, t, t_prev, ours, noise=noise, prediction=prediction)
        torch.testing.assert_close(got, ref.prev_sample, rtol=0, atol=ATOL)
        torch.testing.assert_close(got_x0, ref.pred_original_sample, rtol=0, atol=ATOL)
        ref = ddim.step(out, ddim.timesteps[i], x, eta=0.7, variance_noise=noise)
        got, got_x0 = ddim_step(out, x, t, t_prev, ours, eta=0.7, noise=noise, prediction=prediction)
        torch.testing.assert_close(got, ref.prev_sample, rtol=0, atol=ATOL)
        torch.testing.assert_close(got_x0, ref.pred_original_sample, rtol=0, atol=ATOL)
        x = ref.prev_sample


# ---------------------------------------------------------------------------- DPM-Solver++(2M)
def _dpm_scheduler(kind: str, zsnr: bool, prediction: str, steps: int, precise: bool = False):
    """diffusers' DPM-Solver++(2M) in its default form, given our float64 schedule. It casts its sigmas
    to float32 in set_timesteps; ``precise`` puts them back in float64 (its own formula, sqrt((1 -
    alpha_bar) / alpha_bar) at the timesteps, then 0), without which eps prediction's x0 at
    alpha_bar_{T-1} ~ 1e-9 (|x0| ~ 1e4) carries float32 rounding of ~1e-4 into the first step."""
    from diffusers import DPMSolverMultistepScheduler

    sched = DPMSolverMultistepScheduler(**{k: v for k, v in config(kind, zsnr, prediction).items()
                                           if k not in ("clip_sample", "steps_offset")},
                                        algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                        lower_order_final=True, final_sigmas_type="zero")
    ours = make_schedule(kind, T, zero_terminal_snr=zsnr)
    sched.alphas_cumprod = ours.alphas_cumprod.clone()
    if zsnr:
        sched.alphas_cumprod[-1] = 2 ** -24  # what its constructor does at zero terminal SNR
    sched.set_timesteps(steps)
    if precise:
        ab = sched.alphas_cumprod[sched.timesteps]
        sched.sigmas = torch.cat([((1 - ab) / ab) ** 0.5, torch.zeros(1, dtype=ab.dtype)])
    return sched


@pytest.mark.parametrize("case,dtype", PRECISIONS, ids=IDS)
def test_dpmpp_2m_sampler_matches_diffusers(case, dtype):
    """DPM-Solver++(2M) equals diffusers' DPMSolverMultistepScheduler step for step: the sample after
    each step and the data prediction it used (the scheduler's model_outputs[-1])."""
    from unclip_probe.diffusion import sample_dpmpp_2m

    kind, zsnr, prediction, steps = case
    sched = _dpm_scheduler(*case, precise=dtype == torch.float64)
    x, theirs = x_T(0).to(dtype), []
    for t in sched.timesteps:
        x = sched.step(fake_model(x, t.expand(x.shape[0])), t, x).prev_sample
        theirs.append((x, sched.model_outputs[-1]))
    ours, cb = _record()
    sample_dpmpp_2m(fake_model, x_T(0).to(dtype), make_schedule(kind, T, zero_terminal_snr=zsnr), steps,
                    prediction=prediction, callback=cb)
    assert sched.timesteps.tolist() == sampling_timesteps(make_schedule(kind, T), steps)
    if prediction == "eps":
        # diffusers' step casts the sample to float32 whatever its dtype; under eps prediction this fake
        # model drives |x| to ~4e3 after the first step, where float32's rounding alone is ~2e-4. The
        # comparison there is relative, at float32's precision: |ours - theirs| <= 1e-5 + 1e-6 |theirs|.
        for i, ((x, x0), (x_d, x0_d)) in enumerate(zip(ours, theirs)):
            torch.testing.assert_close(x, x_d, rtol=1e-6, atol=ATOL, msg=lambda m: f"x after step {i}: {m}")
            torch.testing.assert_close(x0, x0_d, rtol=1e-6, atol=ATOL, msg=lambda m: f"x0 at step {i}: {m}")
        assert len(ours) == len(theirs)
        return
    _assert_trajectories_close(ours, theirs)


def test_dpmpp_2m_takes_explicit_timesteps_as_diffusers_does():
    """k-diffusion style: any descending timesteps, here diffusers' own "linspace" spacing."""
    from unclip_probe.diffusion import sample_dpmpp_2m

    sched = _dpm_scheduler("cosine", True, "v", 12)
    sched.config.timestep_spacing = "linspace"
    sched.set_timesteps(12)
    ts = sched.timesteps.tolist()
    assert ts != sampling_timesteps(make_schedule("cosine", T), 12)
    x = x_T(3)
    for t in sched.timesteps:
        x = sched.step(fake_model(x, t.expand(x.shape[0])), t, x).prev_sample
    ours = sample_dpmpp_2m(fake_model, x_T(3), make_schedule("cosine", T, zero_terminal_snr=True), timesteps=ts,
                           prediction="v")
    torch.testing.assert_close(ours, x, rtol=0, atol=ATOL)

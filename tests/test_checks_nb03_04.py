"""Typical mistakes in the exercises of notebooks 03 (posterior, ddpm_step) and 04 (ddim_step, slerp), each
caught with a message naming the case and the property; plus what the references are (the package's
sampler steps). The contract every check keeps is in tests/test_checks.py."""

import math
import re

import pytest
import torch
from exercise_answers import ddim_step_mine, ddpm_sigma, ddpm_step_eq11, per_sample, posterior, slerp_mine

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import CheckFailed


def _raises(check, fn, label_start, what):
    with pytest.raises(CheckFailed) as info:
        check(fn)
    msg = str(info.value)
    assert msg.startswith(f"{check.name}({label_start}"), msg
    assert what in msg, msg
    return msg


# --- notebook 03: the posterior q(x_{t-1} | x_t, x_0) and x̂_0 from ε̂ ---------------------------------------
def test_posterior_with_beta_instead_of_beta_tilde_is_caught():
    def wrong(x0, x_t, t, s):
        return posterior(x0, x_t, t, s)[0], per_sample(s.betas[t], x0)   # β_t instead of β̃_t

    message = ("posterior_mean_variance(images (4,1,6,6), t=[100,300,600,999], linear T=1000), variance: "
               "wrong value")
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.posterior_mean_variance(wrong)


def test_off_by_one_timestep_is_caught_at_t0():
    wrong = lambda x0, x_t, t, s: posterior(x0, x_t, t.clamp(min=1), s)  # noqa: E731
    message = "at t=0 the previous level is the data), mean: wrong value"
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.posterior_mean_variance(wrong)


def test_a_broadcastable_variance_is_accepted_and_the_learner_function_returned():
    def mine(x0, x_t, t, s):
        mean, var = posterior(x0, x_t, t, s)
        assert var.shape[1:] == (1,) * (x0.dim() - 1)
        return mean, var

    assert checks.posterior_mean_variance(mine) is mine


def test_eps_to_x0_without_square_roots_is_caught():
    def wrong(x_t, eps, ab):
        return (x_t - (1 - torch.as_tensor(ab)) * eps) / torch.as_tensor(ab)

    message = "eps_to_x0(one ᾱ for the batch (a float)): wrong value at index (0, 0, 0, 0)"
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.eps_to_x0(wrong)


# --- notebook 03: ddpm_step, and notebook 04: ddim_step and slerp -------------------------------------------
def test_ddpm_step_with_beta_instead_of_beta_tilde_is_caught():
    def wrong(x_t, eps, t, s, z, variance="fixed_small"):
        return ddpm_step_eq11(x_t, eps, t, s, z, "fixed_large" if variance == "fixed_small" else variance)

    _raises(checks.ddpm_step, wrong, "images (4,1,6,6), t=[100,300,600,999], σ² = β̃", "wrong value at index")


def test_ddpm_step_adding_noise_at_t0_is_caught():
    def wrong(x_t, eps, t, s, z, variance="fixed_small"):
        out = ddpm_step_eq11(x_t, eps, t, s, z, variance)
        if variance == "fixed_large":                                    # forgets "z = 0 if t = 1"
            at_0 = torch.where(t == 0, s.betas[0].sqrt(), torch.zeros((), dtype=torch.float64))
            out = out + per_sample(at_0, x_t) * z
        return out

    _raises(checks.ddpm_step, wrong, "float64 points (5,2), t=[0,1,2,500,999], σ² = β_t (fixed_large)",
            "wrong value at index (0,")


def test_ddpm_step_with_alpha_instead_of_alpha_bar_is_caught():
    def wrong(x_t, eps, t, s, z, variance="fixed_small"):
        a, b = s.alphas[t], s.betas[t]
        # √(1 − α_t) for √(1 − ᾱ_t)
        mean = (x_t - per_sample(b / (1 - a).sqrt(), x_t) * eps) / per_sample(a.sqrt(), x_t)
        return mean + per_sample(ddpm_sigma(t, s, variance), x_t) * z

    _raises(checks.ddpm_step, wrong, "images", "wrong value")


def test_ddpm_step_rejects_an_unknown_variance():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"variance must be one of \('fixed_small', 'fixed_large'\)"):
        checks.ddpm_step.reference(x, x, torch.tensor([1, 2]), dc.NoiseSchedule.linear(10), x, "large")


def _fd_forward(log_p, x, h):                        # one-sided difference: error O(h), not O(h²)
    grad = torch.empty_like(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        grad[:, j] = (log_p(x + e) - log_p(x)) / h
    return grad


def _fd_no_two(log_p, x, h):                          # central difference divided by h instead of 2h
    grad = torch.empty_like(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        grad[:, j] = (log_p(x + e) - log_p(x - e)) / h
    return grad


def _fd_all_at_once(log_p, x, h):                     # shifts every coordinate together: a directional one
    d = (log_p(x + h) - log_p(x - h)) / (2 * h)
    return d[:, None].expand_as(x).clone()


def test_score_fd_mistakes_are_caught():
    _raises(checks.score_fd, _fd_no_two, "log N(x; 0.5, 0.7²)", "off by a constant factor (got = 2")
    _raises(checks.score_fd, _fd_all_at_once, "log N(x; 0.5, 0.7²)", "wrong value at index")
    _raises(checks.score_fd, _fd_forward, "log N(x; 0.5, 0.7²)", "wrong value at index")   # O(h) error


def test_score_fd_reference_matches_autograd_and_the_eps_identity(s):
    """The check's reference is a gradient: it agrees with autograd on the mixture's log p_t, and both
    equal −ε̂/√(1 − ᾱ_t) from the oracle (the identity notebook 03 §5 teaches)."""
    mix = dc.toy.MixtureOracle.eight_gaussians(s)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (5, 250, 900):
        tt = torch.full((6,), t)
        fd = checks.score_fd.reference(lambda z, tt=tt: mix.log_prob(z, tt), x, 1e-5)
        xg = x.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(mix.log_prob(xg, tt).sum(), xg)
        eps_score = -mix(x, tt) / math.sqrt(1 - float(s.alpha_bars[t]))
        assert torch.allclose(fd, auto, rtol=1e-6, atol=1e-6), t
        assert torch.allclose(auto, eps_score, rtol=1e-9, atol=1e-9), t


def test_ddpm_step_reference_is_the_package_sampler_step():
    """Stepping with the reference reproduces dc.samplers.ddpm_sample on the full grid, noise and all."""
    s = dc.NoiseSchedule.linear(40, beta_start=1e-3, beta_end=0.2)
    oracle = dc.toy.MixtureOracle.eight_gaussians(s)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = x_T
    for t in range(s.T - 1, -1, -1):
        tt = torch.full((64,), t)
        z = torch.randn(x.shape, generator=g, dtype=x.dtype) if t > 0 else torch.zeros_like(x)
        x = checks.ddpm_step.reference(x, oracle(x, tt), tt, s, z)
    ref = dc.sample(oracle, s, x_T, sampler="ddpm", steps=s.T, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x, ref, rtol=1e-9, atol=1e-9)


def test_ddim_step_ignoring_sigma_in_the_direction_term_is_caught():
    def wrong(x_t, eps, ab_t, ab_prev, eta, z):
        sig = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))
        x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps + sig * z

    _raises(checks.ddim_step, wrong, "images (4,1,6,6), η=1 (DDPM's β̃)", "wrong value")


def test_ddim_step_without_eta_is_caught():
    def wrong(x_t, eps, ab_t, ab_prev, eta, z):
        return ddim_step_mine(x_t, eps, ab_t, ab_prev, 1.0, z)           # always η = 1

    _raises(checks.ddim_step, wrong, "images (4,1,6,6), η=0 (deterministic)", "wrong value")


def test_ddim_step_eta1_is_the_ddpm_step():
    """DDIM eq. 16 with η = 1 gives σ² = β̃: the step equals the DDPM step between neighbouring levels."""
    s = dc.NoiseSchedule.linear(1000)
    g = torch.Generator().manual_seed(3)
    x_t, eps, z = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    t = 400
    ddim = checks.ddim_step.reference(x_t, eps, float(s.alpha_bars[t]), float(s.alpha_bars[t - 1]), 1.0, z)
    ddpm = checks.ddpm_step.reference(x_t, eps, torch.full((3,), t), s, z)
    torch.testing.assert_close(ddim, ddpm, rtol=1e-10, atol=1e-12)


def test_ddim_step_rejects_bad_levels_and_eta():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="eta must be a number >= 0"):
        checks.ddim_step.reference(x, x, 0.5, 0.6, -0.1, x)
    with pytest.raises(ValueError, match="need 0 < ab_t < ab_prev <= 1"):
        checks.ddim_step.reference(x, x, 0.6, 0.5, 0.0, x)


def test_slerp_by_linear_interpolation_is_caught():
    _raises(checks.slerp, lambda z0, z1, a: (1 - a) * z0 + a * z1, "two noise tensors (1,1,8,8), α=0.5",
            "wrong value")


def test_slerp_without_the_parallel_fallback_is_caught():
    def wrong(z0, z1, alpha):
        theta = torch.acos(torch.clamp((z0 * z1).sum() / (z0.norm() * z1.norm()), -1, 1))
        return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)

    msg = _raises(checks.slerp, wrong, "parallel vectors", "NaN mismatch")
    assert "fall back to linear interpolation" in msg


def test_slerp_normalising_the_result_is_caught():
    def normalised(z0, z1, alpha):                                      # unit-norm output: a different thing
        out = slerp_mine(z0, z1, alpha)
        return out / out.norm()

    _raises(checks.slerp, normalised, "two noise tensors", "wrong value")


def test_slerp_reference_keeps_the_norm_of_equal_norm_vectors_and_rejects_shapes():
    g = torch.Generator().manual_seed(5)
    z0, z1 = torch.randn(1, 1, 28, 28, generator=g), torch.randn(1, 1, 28, 28, generator=g)
    z1 = z1 / z1.norm() * z0.norm()
    for a in (0.1, 0.5, 0.9):
        mid = checks.slerp.reference(z0, z1, a)
        assert math.isclose(float(mid.norm()), float(z0.norm()), rel_tol=1e-5)
        assert float(((1 - a) * z0 + a * z1).norm()) < 0.95 * float(z0.norm())   # lerp shrinks the norm
    with pytest.raises(ValueError, match="same shape"):
        checks.slerp.reference(z0, z1[..., :27], 0.5)


def _sampler_one_z(model, s, x_T, steps, eta=0.0, spacing="leading", generator=None):
    grid = s.grid(steps, spacing)                          # one z drawn once and reused on every step
    ab, x = grid.alpha_bars.tolist(), x_T
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    for i, t in enumerate(grid.ts.tolist()):
        x = ddim_step_mine(x, model(x, torch.full((len(x),), t)), ab[i], ab[i + 1], eta, z)
    return x


def _sampler_paper_timesteps(model, s, x_T, steps, eta=0.0, spacing="leading", generator=None):
    grid = s.grid(steps, spacing)                          # calls the model at t + 1 (the paper's numbering)
    ab, x = grid.alpha_bars.tolist(), x_T
    for i, t in enumerate(grid.ts.tolist()):
        sig = eta * math.sqrt((1 - ab[i + 1]) / (1 - ab[i]) * (1 - ab[i] / ab[i + 1]))
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if sig > 0 else torch.zeros_like(x)
        x = ddim_step_mine(x, model(x, torch.full((len(x),), min(t + 1, s.T - 1))), ab[i], ab[i + 1], eta, z)
    return x


def test_ddim_sampler_mistakes_are_caught():
    _raises(checks.ddim_sampler, _sampler_one_z, "η = 0.5, 8 trailing", "wrong value at index")
    _raises(checks.ddim_sampler, _sampler_paper_timesteps, "η = 0, 10 leading steps", "wrong value at index")

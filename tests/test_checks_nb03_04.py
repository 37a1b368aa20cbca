"""Checks of notebooks 03 (ddpm_step) and 04 (ddim_step, slerp): a correct answer passes, a blank one falls
back to the reference, a wrong one fails with a message naming the case and the property."""

import math
import re

import pytest
import torch

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import CheckFailed

MINE = ("ddpm_step", "ddim_step", "slerp")


def _c(v, x):
    """Per-sample coefficients (B,) -> (B, 1, ...) in x's dtype."""
    return v.to(x).reshape(-1, *[1] * (x.dim() - 1))


# --- independent implementations, written the way a learner would ---------------------------------------
def _sigma(t, s, variance):
    """σ_t of Algorithm 2: √β̃_t or √β_t, and 0 at t = 0."""
    ab, b = s.alpha_bars[t], s.betas[t]
    ab_prev = torch.where(t > 0, s.alpha_bars[(t - 1).clamp(min=0)], torch.ones((), dtype=torch.float64))
    var = b if variance == "fixed_large" else (1 - ab_prev) / (1 - ab) * b
    return torch.where(t > 0, var, torch.zeros((), dtype=torch.float64)).sqrt()


def ddpm_step_eq11(x_t, eps, t, s, z, variance="fixed_small"):
    """DDPM eq. 11 directly: 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε̂) + σ_t z."""
    a, ab, b = s.alphas[t], s.alpha_bars[t], s.betas[t]
    mean = (x_t - _c(b / (1 - ab).sqrt(), x_t) * eps) / _c(a.sqrt(), x_t)
    return mean + _c(_sigma(t, s, variance), x_t) * z


def ddpm_step_float32_tables(x_t, eps, t, s, z, variance="fixed_small"):
    """The same, with the schedule tables cast to x_t's dtype before any arithmetic."""
    a, ab, b = (_c(v[t], x_t) for v in (s.alphas, s.alpha_bars, s.betas))
    ab_prev = _c(torch.where(t > 0, s.alpha_bars[(t - 1).clamp(min=0)], torch.ones((), dtype=torch.float64)),
                 x_t)
    var = b if variance == "fixed_large" else (1 - ab_prev) / (1 - ab) * b
    var = torch.where(_c(t, x_t) > 0, var, torch.zeros_like(var))
    return (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt() + var.sqrt() * z


def ddim_step_mine(x_t, eps, ab_t, ab_prev, eta, z):
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    sig2 = eta**2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sig2) * eps + math.sqrt(sig2) * z


def slerp_mine(z0, z1, alpha):
    u0, u1 = z0 / z0.norm(), z1 / z1.norm()
    theta = torch.acos(torch.clamp((u0 * u1).sum(), -1.0, 1.0))
    if theta.abs() < 1e-4:
        return torch.lerp(z0, z1, alpha)
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)


def test_checks_are_exported():
    for name in MINE:
        check = getattr(dc.checks, name)
        assert check.name == name and name in repr(check) and check.__doc__


@pytest.mark.parametrize(("name", "fn"), [
    ("ddpm_step", ddpm_step_eq11), ("ddpm_step", ddpm_step_float32_tables),
    ("ddim_step", ddim_step_mine), ("slerp", slerp_mine),
])
def test_independent_correct_answers_pass_and_are_returned(name, fn, capsys):
    assert getattr(checks, name)(fn) is fn
    assert f"✓ {name}: matches the reference on" in capsys.readouterr().out


@pytest.mark.parametrize("name", MINE)
def test_the_reference_passes_its_own_check(name):
    check = getattr(checks, name)
    check(check.reference)


@pytest.mark.parametrize("name", MINE)
def test_blank_exercise_returns_the_reference(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise 3.2: write your solution here")

    assert getattr(checks, name)(blank) is getattr(checks, name).reference
    out = capsys.readouterr().out
    assert f"{name}: not implemented yet" in out and "reference implementation" in out


@pytest.mark.parametrize("name", MINE)
@pytest.mark.parametrize(("mistake", "message"), [
    ("float64 result", r"wrong dtype: expected torch\.float32, got torch\.float64"),
    ("extra dimension", r"wrong shape: expected \(.*\), got \(1, .*\)"),
    ("returns None", r"got None \(did you forget `return`\?\)"),
    ("changes its input", r"changed its argument 1 in place"),
])
def test_generic_mistakes_name_the_property(name, mistake, message):
    ref = getattr(checks, name).reference

    def wrong(*args):
        out = ref(*args)
        if mistake == "float64 result":
            return out.double()
        if mistake == "extra dimension":
            return out[None]
        if mistake == "returns None":
            return None
        args[0].mul_(2)
        return out

    with pytest.raises(CheckFailed, match=message):
        getattr(checks, name)(wrong)


def _raises(check, fn, label_start, what):
    with pytest.raises(CheckFailed) as info:
        check(fn)
    msg = str(info.value)
    assert msg.startswith(f"{check.name}({label_start}"), msg
    assert what in msg, msg
    return msg


# --- the mistakes a learner makes, one by one ---------------------------------------------------------
def test_ddpm_step_with_beta_instead_of_beta_tilde_is_caught():
    def wrong(x_t, eps, t, s, z, variance="fixed_small"):
        return ddpm_step_eq11(x_t, eps, t, s, z, "fixed_large" if variance == "fixed_small" else variance)

    _raises(checks.ddpm_step, wrong, "images (4,1,6,6), t=[100,300,600,999], σ² = β̃", "wrong value at index")


def test_ddpm_step_adding_noise_at_t0_is_caught():
    def wrong(x_t, eps, t, s, z, variance="fixed_small"):
        out = ddpm_step_eq11(x_t, eps, t, s, z, variance)
        if variance == "fixed_large":                                    # forgets "z = 0 if t = 1"
            at_0 = torch.where(t == 0, s.betas[0].sqrt(), torch.zeros((), dtype=torch.float64))
            out = out + _c(at_0, x_t) * z
        return out

    _raises(checks.ddpm_step, wrong, "float64 points (5,2), t=[0,1,2,500,999], σ² = β_t (fixed_large)",
            "wrong value at index (0,")


def test_ddpm_step_with_alpha_instead_of_alpha_bar_is_caught():
    def wrong(x_t, eps, t, s, z, variance="fixed_small"):
        a, b = s.alphas[t], s.betas[t]
        mean = (x_t - _c(b / (1 - a).sqrt(), x_t) * eps) / _c(a.sqrt(), x_t)   # √(1 − α_t) for √(1 − ᾱ_t)
        return mean + _c(_sigma(t, s, variance), x_t) * z

    _raises(checks.ddpm_step, wrong, "images", "wrong value")


def test_ddpm_step_rejects_an_unknown_variance():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"variance must be one of \('fixed_small', 'fixed_large'\)"):
        checks.ddpm_step.reference(x, x, torch.tensor([1, 2]), dc.NoiseSchedule.linear(10), x, "large")


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


def test_messages_name_the_exercise_and_the_case():
    msg = _raises(checks.ddim_step, lambda *a: checks.ddim_step.reference(*a) * 1.01, "images", "wrong value")
    assert re.search(r"expected .*, got .*; \d+ of \d+ values differ", msg)

"""Typical mistakes in the exercises of notebook 05 (fast samplers): heun_step, dpmpp_2m_update and
euler_ancestral_step (whose check also names the wrong part of the step), caught on
the fixed cases or, for a step right on the cases only, when run as a whole sampler. The references agree with
the package's samplers, step for step. The contract every check keeps is in tests/test_checks.py; the
schedule fixture `s` is in tests/conftest.py.
"""

import math
import re

import pytest
import torch

import ddpm_course as dc
from ddpm_course import checks, samplers
from ddpm_course.checks import CheckFailed
from ddpm_course.schedule import Grid
from ddpm_course.toy import GaussianOracle, MixtureOracle


@pytest.fixture(scope="module")
def mixture(s):
    return MixtureOracle(s, means=[[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]], stds=[0.15, 0.3, 0.2],
                         weights=[0.5, 0.3, 0.2])


# --- the typical mistakes a learner makes ---------------------------------------------------------------
def _heun_eps_at_zero(x, sig, sig_next, eps):          # corrects the last step too: ε̂(x̃, 0) is undefined
    d = eps(x, sig)
    x_next = x + (sig_next - sig) * d
    return x + (sig_next - sig) * (d + eps(x_next, sig_next)) / 2


def _heun_euler_only(x, sig, sig_next, eps):            # no trapezoidal correction: that is Euler (DDIM)
    return x + (sig_next - sig) * eps(x, sig)


def _heun_end_slope(x, sig, sig_next, eps):             # uses the end slope alone instead of the average
    x_next = x + (sig_next - sig) * eps(x, sig)
    return x_next if sig_next == 0 else x + (sig_next - sig) * eps(x_next, sig_next)


def _heun_from_x_next(x, sig, sig_next, eps):           # applies the correction from x̃' instead of x̃_i
    d = eps(x, sig)
    x_next = x + (sig_next - sig) * d
    return x_next if sig_next == 0 else x_next + (sig_next - sig) * (d + eps(x_next, sig_next)) / 2


def _dpm_first_order(x, sig, sig_next, D, D_prev, h_prev):   # D̂ = D_i always: DPM-Solver++(1) = DDIM
    return (sig_next / sig) * x - math.expm1(-math.log(sig / sig_next)) * D


def _dpm_r_inverted(x, sig, sig_next, D, D_prev, h_prev):    # r = h/h_prev instead of h_prev/h
    h = math.log(sig / sig_next)
    D_hat = D if D_prev is None else (1 + h_prev / (2 * h)) * D - h_prev / (2 * h) * D_prev
    return (sig_next / sig) * x - math.expm1(-h) * D_hat


def _dpm_exp_not_expm1(x, sig, sig_next, D, D_prev, h_prev):  # e^{−h} where the formula has e^{−h} − 1
    h = math.log(sig / sig_next)
    D_hat = D if D_prev is None else (1 + h / (2 * h_prev)) * D - h / (2 * h_prev) * D_prev
    return (sig_next / sig) * x - math.exp(-h) * D_hat


def _dpm_no_first_step(x, sig, sig_next, D, D_prev, h_prev):  # forgets that D_prev is None on the first step
    h = math.log(sig / sig_next)
    D_hat = (1 + h / (2 * h_prev)) * D - h / (2 * h_prev) * D_prev
    return (sig_next / sig) * x - math.expm1(-h) * D_hat


def _ancestral_plain_euler(x, sig, sig_next, eps, z):  # Euler step all the way to σ_{i+1}, then noise on top
    up = checks.ancestral_sigmas(sig, sig_next)[1]
    return x + (sig_next - sig) * eps(x, sig) + up * z


def _ancestral_noise_sigma_next(x, sig, sig_next, eps, z):  # the noise scaled by σ_{i+1} instead of σ_up
    down = checks.ancestral_sigmas(sig, sig_next)[0]
    return x + (down - sig) * eps(x, sig) + sig_next * z


def _ancestral_no_noise(x, sig, sig_next, eps, z):           # forgets the noise: lands below σ_{i+1}
    down = checks.ancestral_sigmas(sig, sig_next)[0]
    return x + (down - sig) * eps(x, sig)


def _ancestral_new_noise(x, sig, sig_next, eps, z):          # draws its own noise instead of using z
    down, up = checks.ancestral_sigmas(sig, sig_next)
    return x + (down - sig) * eps(x, sig) + up * torch.randn_like(x)


HEUN_1 = "heun_step(Gaussian data, points (6,2), σ: 2.0 → 1.0): wrong value at index"
ANC_1 = "euler_ancestral_step(Gaussian data, points (6,2), σ: 2.0 → 1.0): wrong value at index"
PART = "which part is wrong: "
DPM_FIRST = "dpmpp_2m_update(first step (D_prev=None, h_prev=None): the DDIM step, σ: 20 → 8)"
DPM_2 = "dpmpp_2m_update(points (6,2), σ: 8 → 3, h_prev = log(20/8)): wrong value at index"
MISTAKES = [
    ("heun_step", _heun_eps_at_zero, "heun_step(mixture, points (6,2), the last step σ: 0.3 → 0 (no "
                                     "correction)) raised ValueError: ε̂ of a 3-component Gaussian mixture "
                                     "was called at σ = 0"),
    ("heun_step", _heun_euler_only, HEUN_1),
    ("heun_step", _heun_end_slope, HEUN_1),
    ("heun_step", _heun_from_x_next, HEUN_1),
    ("dpmpp_2m_update", _dpm_first_order, DPM_2),
    ("dpmpp_2m_update", _dpm_r_inverted, DPM_2),
    ("dpmpp_2m_update", _dpm_exp_not_expm1, DPM_FIRST + ": wrong value at index"),
    ("dpmpp_2m_update", _dpm_no_first_step, DPM_FIRST + " raised TypeError"),
    ("euler_ancestral_step", _ancestral_plain_euler,
     PART + "with z = 0 your step is the plain Euler step to σ_{i+1}; the deterministic part must stop"),
    ("euler_ancestral_step", _ancestral_noise_sigma_next,
     PART + "the deterministic part is right; the noise is scaled by σ_{i+1} = 1 instead of σ_up = 0.866"),
    ("euler_ancestral_step", _ancestral_no_noise,
     PART + "the deterministic part is right; the noise is scaled by 0, not σ_up = 0.866"),
    ("euler_ancestral_step", _ancestral_new_noise,
     PART + "two calls with the same inputs and z = 0 gave different results: the step must use the z"),
]


@pytest.mark.parametrize(("name", "fn", "message"), MISTAKES, ids=[m[1].__name__ for m in MISTAKES])
def test_typical_mistake_is_caught(name, fn, message):
    with pytest.raises(CheckFailed, match=re.escape(message)):
        getattr(checks, name)(fn)


def test_every_ancestral_failure_starts_with_the_case():
    with pytest.raises(CheckFailed, match=re.escape(ANC_1)):
        checks.euler_ancestral_step(_ancestral_plain_euler)


def test_an_ancestral_step_right_on_the_cases_but_wrong_in_the_sampler_is_caught():
    check, calls = checks.euler_ancestral_step, []

    def drifts(*args):
        calls.append(1)
        out = check.reference(*args)
        return out if len(calls) <= len(check.cases()) else out * 1.001

    where = "euler_ancestral_step(iterated over an 8-step Karras grid, mixture data, seeded noise) vs dc."
    with pytest.raises(CheckFailed, match=re.escape(where)):
        check(drifts)


@pytest.mark.parametrize("spacing", ["karras", "trailing"])
def test_euler_ancestral_loop_reproduces_dc_sample_and_equals_ddim_eta_1(s, mixture, spacing):
    """The reference step in a loop with the sampler's noise order is dc.sample's euler_ancestral; and Euler
    ancestral *is* DDIM η = 1 (hence DDPM's β̃ step on the sub-grid) with the same noise draws."""
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grid = s.grid(7, spacing)
    x_s = x_T / math.sqrt(float(grid.alpha_bars[0]))
    mine = checks.euler_ancestral_sampler_from_step(checks._euler_ancestral_step_reference,
                                                    checks.SigmaEps(mixture, "mixture"), x_s,
                                                    grid.sigmas.tolist(), torch.Generator().manual_seed(4))
    g = lambda: torch.Generator().manual_seed(4)
    x0 = dc.sample(mixture, s, x_T, sampler="euler_ancestral", steps=7, spacing=spacing, generator=g())
    assert torch.allclose(mine, x0, rtol=1e-10, atol=1e-10)
    ddim = dc.sample(mixture, s, x_T, sampler="ddim", eta=1.0, steps=7, spacing=spacing, generator=g())
    assert torch.allclose(ddim, x0, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["heun_step", "dpmpp_2m_update"])
def test_a_step_right_on_the_cases_but_wrong_in_the_sampler_is_caught(name):
    check = getattr(checks, name)
    calls = []

    def drifts(*args):                                 # right on the fixed cases, then off by a little
        calls.append(1)
        out = check.reference(*args)
        return out if len(calls) <= len(check.cases()) else out * 1.001

    with pytest.raises(CheckFailed, match=re.escape(f"{name}(iterated over a {check.steps}-step Karras grid, "
                                                    "mixture data) vs dc.sample(sampler=")):
        check(drifts)


def test_sigma_eps_is_undefined_at_zero_and_matches_the_oracle_model(s):
    gauss = GaussianOracle(s, mean=0.5, std=0.5)
    eps = checks.SigmaEps(gauss, "Gaussian ε̂")
    with pytest.raises(ValueError, match="not defined at σ = 0"):
        eps(torch.zeros(3, 2), 0.0)
    t = torch.tensor([300, 300])
    sig = float(s.sigmas[300])
    x = torch.randn(2, 2, dtype=torch.float64)
    # the VP model ε̂(x, t) and the σ-space ε̂(x̃, σ) agree: x̃ = x √(1 + σ²)
    assert torch.allclose(eps(x * math.sqrt(1 + sig**2), sig), gauss(x, t), rtol=1e-12, atol=1e-12)
    assert repr(eps) == "Gaussian ε̂"


# --- the references are the package's samplers, step for step ------------------------------------------
def _grid(s, sigmas):
    """A grid through the given σ levels, the last one 0."""
    sig = torch.tensor(sigmas, dtype=torch.float64)
    return Grid(ts=s.sigma_to_t(sig[:-1]), alpha_bars=1.0 / (1.0 + sig**2), discrete=False)


def _package_states(sampler, model, grid, x_s):
    """Run a package sampler from x̃ at σ_0 on `grid`; the σ-space state at every level, the last at σ = 0."""
    ab = grid.alpha_bars.tolist()
    states = []
    x = x_s * math.sqrt(ab[0])
    with torch.no_grad():
        final = samplers.SAMPLERS[sampler](samplers.EpsModel(model, grid, x), x, grid,
                                           callback=lambda i, x_i, x0: states.append(x_i / math.sqrt(ab[i])))
    return [*states, final]


def _reference_states(loop, step, eps, x_s, sigmas):
    """The same states from the reference step: the loop run on ever longer prefixes of the σ levels
    (a prefix ending above 0 stops there; DPM-Solver++ then ends with its update, not with x̃ = D)."""
    return [x_s] + [loop(step, eps, x_s, sigmas[: k + 1]) for k in range(1, len(sigmas))]


@pytest.mark.parametrize(("sampler", "loop", "ref"), [
    ("heun", checks.heun_sampler_from_step, checks._heun_step_reference),
    ("dpmpp_2m", checks.dpmpp_2m_sampler_from_update, checks._dpmpp_2m_update_reference),
])
@pytest.mark.parametrize("sigmas", [[0.8, 0.0], [3.0, 1.2, 0.0], [40.0, 5.0, 0.7, 0.05, 0.0]])
def test_reference_steps_equal_the_package_sampler_step_for_step(s, mixture, sampler, loop, ref, sigmas):
    x_s = sigmas[0] * torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = checks.SigmaEps(mixture, "mixture")
    package = _package_states(sampler, mixture, _grid(s, sigmas), x_s)
    mine = _reference_states(loop, ref, eps, x_s, sigmas)
    assert len(package) == len(mine) == len(sigmas)
    for k, (a, b) in enumerate(zip(mine, package, strict=True)):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), (k, (a - b).abs().max())


@pytest.mark.parametrize(("sampler", "loop", "ref"), [
    ("heun", checks.heun_sampler_from_step, checks._heun_step_reference),
    ("dpmpp_2m", checks.dpmpp_2m_sampler_from_update, checks._dpmpp_2m_update_reference),
])
@pytest.mark.parametrize("spacing", ["karras", "trailing"])
def test_reference_loops_reproduce_dc_sample(s, mixture, sampler, loop, ref, spacing):
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grid = s.grid(7, spacing)
    sigmas = grid.sigmas.tolist()
    x_s = x_T / math.sqrt(float(grid.alpha_bars[0]))
    mine = loop(ref, checks.SigmaEps(mixture, "mixture"), x_s, sigmas)
    x0 = dc.sample(mixture, s, x_T, sampler=sampler, steps=7, spacing=spacing)
    assert torch.allclose(mine, x0, rtol=1e-10, atol=1e-10)


def test_dpmpp_reference_rejects_the_step_to_zero():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="need sigma > sigma_next > 0"):
        checks._dpmpp_2m_update_reference(x, 1.0, 0.0, x, None, None)

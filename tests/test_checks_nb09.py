"""Typical mistakes in the exercises of notebook 09 (consistency models): skip_out, cd_target, multistep, each
caught with a message naming the property that failed (the boundary condition, the denoiser, the teacher step,
the re-noising); the references are ddpm_course.consistency's functions. The contract every check keeps is in
tests/test_checks.py."""

import pytest
import torch

from ddpm_course import checks
from ddpm_course import consistency as cm
from ddpm_course.checks import CheckFailed

NAMES = ("skip_out", "cd_target", "multistep")


# --- wrong answers ---------------------------------------------------------------------------------------
def edm_skip_out(sigma, prediction):
    """EDM's c_skip/c_out with σ_data = 0.5: a fine parameterisation, but not the course network's."""
    sd = 0.5
    return sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt()


def x0_skip_out(sigma, prediction):
    """An x0-output: c_skip = 0, c_out = 1 breaks f(x, 0) = x."""
    return torch.zeros_like(sigma), torch.ones_like(sigma)


def v_without_the_square_root(sigma, prediction):
    if prediction == "eps":
        return torch.ones_like(sigma), -sigma
    return 1 / (1 + sigma**2), -sigma / (1 + sigma**2)


def eps_with_the_wrong_sign(sigma, prediction):
    c_skip, c_out = cm.skip_out(sigma, prediction)
    return (c_skip, -c_out) if prediction == "eps" else (c_skip, c_out)


def target_without_the_teacher_step(f_ema, eps_fn, x_next, sig_next, sig_n):
    return f_ema(x_next, sig_n)


def target_at_the_upper_level(f_ema, eps_fn, x_next, sig_next, sig_n):
    return f_ema(cm.teacher_step(eps_fn, x_next, sig_next, sig_n), sig_next)


def target_stepping_up(f_ema, eps_fn, x_next, sig_next, sig_n):
    return f_ema(x_next + (torch.as_tensor(sig_next) - torch.as_tensor(sig_n)).reshape(
        -1, *[1] * (x_next.dim() - 1)).to(x_next) * eps_fn(x_next, sig_next), sig_n)


def multistep_without_renoising(f, x_T, sigmas, noise):
    x = f(x_T, sigmas[0])
    for tau in sigmas[1:]:
        x = f(x, tau)
    return x


def multistep_renoising_the_input(f, x_T, sigmas, noise):
    x = f(x_T, sigmas[0])
    for tau, z in zip(sigmas[1:], noise, strict=True):
        x = f(x_T + tau * z, tau)                                    # starts again from x_T
    return x


def multistep_returning_the_noisy_state(f, x_T, sigmas, noise):
    x = f(x_T, sigmas[0])
    for tau, z in zip(sigmas[1:], noise, strict=True):
        noisy = x + tau * z
        x = f(noisy, tau)
    return noisy if len(sigmas) > 1 else x


WRONG = [
    ("skip_out", edm_skip_out, "the boundary.*ε-model.*wrong value|ε-model, σ from 0.*wrong value"),
    ("skip_out", x0_skip_out, r"the boundary, ε-model.*f\(x, 0\) = x.*c_skip.*index \(0,\)"),
    ("skip_out", v_without_the_square_root, r"v-model, σ = 0, 0.001.*c_out: wrong value at index \(1,\)"),
    ("skip_out", eps_with_the_wrong_sign,
     "ε-model, σ = 0, 0.001.*c_out: wrong value.*\\nlikely cause: the sign is flipped"),
    ("cd_target", target_without_the_teacher_step, "Gaussian data, exact teacher.*wrong value"),
    ("cd_target", target_at_the_upper_level, "wrong value"),
    ("cd_target", target_stepping_up, "wrong value"),
    ("multistep", multistep_without_renoising, "Gaussian data, exact f: 4 levels.*wrong value"),
    ("multistep", multistep_renoising_the_input, "4 levels.*wrong value"),
    ("multistep", multistep_returning_the_noisy_state, "4 levels.*wrong value"),
]


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_is_the_package_function(name):
    check = getattr(checks, name)
    for c in check.cases():
        got = check.reference(*c.args)
        if name == "multistep":
            want = cm.multistep(*c.args[:3], noise=c.args[3])
        else:
            want = getattr(cm, name)(*c.args)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, check_dtype=False)


@pytest.mark.parametrize(("name", "fn", "message"), WRONG, ids=[w[1].__name__ for w in WRONG])
def test_wrong_answers_fail_naming_the_property(name, fn, message):
    with pytest.raises(CheckFailed, match=message):
        getattr(checks, name)(fn)


def test_every_case_of_the_target_meets_the_boundary_or_lies_on_the_grid():
    """The cases exercise the boundary (σ_n = 0, where f is the identity) and the top of the grid."""
    labels = [c.label for c in checks.cd_target.cases()]
    assert any("σ_0 = 0" in lab for lab in labels) and any("top two levels" in lab for lab in labels)

"""Typical mistakes in the exercises of notebooks 01 (ᾱ, q_sample, log-SNR) and 02 (simple loss, time
embedding), each caught with a message naming the case and the property; plus what the references are.
The contract every check keeps (reference, independent answer, blank, generic slips): tests/test_checks.py."""

import math
import re

import pytest
import torch
from exercise_answers import embedding_powers, loss_mse, per_sample

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import CheckFailed


# --- the typical mistakes a learner makes ------------------------------------------------------------
def test_alpha_bars_as_the_product_of_betas_is_caught():
    message = "alpha_bars(linear β, T=1000): wrong value at index (0,)"
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.alpha_bars(lambda b: torch.cumprod(b, 0))                 # ∏ β instead of ∏ (1 − β)


def test_q_sample_without_square_roots_is_caught():
    def wrong(x0, t, n, s):                                              # ᾱ and 1 − ᾱ instead of their roots
        return per_sample(s.alpha_bars[t], x0) * x0 + per_sample(1 - s.alpha_bars[t], x0) * n

    message = "q_sample(images (4,1,8,8), t=[0,10,500,999], linear T=1000): wrong value at index (0,"
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.q_sample(wrong)


def test_log_snr_sign_flip_and_plain_snr_are_caught():
    with pytest.raises(CheckFailed, match=re.escape("log_snr(linear schedule ᾱ, T=1000): wrong value at "
                                                    "index (0,)")):
        checks.log_snr(lambda ab: torch.log1p(-ab) - torch.log(ab))
    with pytest.raises(CheckFailed, match="wrong value"):
        checks.log_snr(lambda ab: ab / (1 - ab))                 # the SNR, not its log


def _embedding(t, dim, order="cos-sin", denominator=None, period=10000.0):
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32)
    w = torch.exp(-math.log(period) * k / (denominator if denominator is not None else half))
    a = t.float()[:, None] * w[None]
    if order == "interleaved":                                             # cos, sin, cos, sin, ...
        return torch.stack([a.cos(), a.sin()], dim=2).flatten(1)
    parts = [a.cos(), a.sin()] if order == "cos-sin" else [a.sin(), a.cos()]
    return torch.cat(parts, dim=1)


@pytest.mark.parametrize(("wrong", "why"), [
    (lambda t, d: _embedding(t, d, order="sin-cos"), "sin first (DDPM's TF code) instead of cos first"),
    (lambda t, d: _embedding(t, d, denominator=d // 2 - 1), "DDPM's half − 1 in the exponent"),
    (lambda t, d: _embedding(t, d, period=1000.0), "max period 1000"),
    (lambda t, d: _embedding(t + 1, d), "the paper's 1-based t"),
    (lambda t, d: _embedding(t, d, order="interleaved"), "interleaved instead of concatenated"),
])
def test_timestep_embedding_mistakes_are_caught(wrong, why):
    with pytest.raises(CheckFailed, match=r"timestep_embedding\(.*\): wrong value at index"):
        checks.timestep_embedding(wrong)


def test_timestep_embedding_tolerance_accepts_float32_rounding_only():
    """Equivalent float32 formulas for ω differ by < 1e-4 at t = 999; the tolerance (atol 5e-4) must
    accept them and still reject an error of 1e-3."""
    t = torch.arange(1000)
    ref = checks.timestep_embedding.reference(t, 64)
    assert (embedding_powers(t, 64) - ref).abs().max() < 1e-4
    checks.timestep_embedding(lambda t, d: checks.timestep_embedding.reference(t, d) + 2e-4)
    with pytest.raises(CheckFailed, match="wrong value"):
        checks.timestep_embedding(lambda t, d: checks.timestep_embedding.reference(t, d) + 1e-3)


def _x_t(x0, t, noise, s, sqrt=True):
    ab = s.alpha_bars[t].to(x0).reshape(-1, *[1] * (x0.dim() - 1))
    return (ab.sqrt() * x0 + (1 - ab).sqrt() * noise) if sqrt else (ab * x0 + (1 - ab) * noise)


@pytest.mark.parametrize(("wrong", "why"), [
    (lambda m, x0, t, n, s: ((n - m(x0, t)) ** 2).mean(), "the model sees x_0 instead of x_t"),
    (lambda m, x0, t, n, s: ((n - m(_x_t(x0, t, n, s), t + 1)) ** 2).mean(), "the paper's 1-based t"),
    (lambda m, x0, t, n, s: ((n - m(_x_t(x0, t, n, s, sqrt=False), t)) ** 2).mean(), "ᾱ instead of √ᾱ"),
    (lambda m, x0, t, n, s: ((n - m(_x_t(x0, t, n, s), t)) ** 2).sum(), "sum instead of mean"),
    (lambda m, x0, t, n, s: ((x0 - m(_x_t(x0, t, n, s), t)) ** 2).mean(), "x_0 as the target"),
    (lambda m, x0, t, n, s: (n - m(_x_t(x0, t, n, s), t)).abs().mean(), "L1 instead of squared error"),
])
def test_simple_loss_mistakes_are_caught(wrong, why):
    with pytest.raises(CheckFailed, match=r"simple_loss\(.*\): wrong value at index \(\): expected"):
        checks.simple_loss(wrong)


def test_simple_loss_as_a_python_float_is_refused():
    with pytest.raises(CheckFailed, match=r"expected a torch.Tensor, got a builtins.float"):
        checks.simple_loss(lambda m, x0, t, n, s: loss_mse(m, x0, t, n, s).item())


def test_simple_loss_cases_call_a_model_that_depends_on_x_t_and_t():
    """The cases must tell x_t from x_0 and t from t + 1, or the mistakes above would pass."""
    for c in checks.simple_loss.cases():
        model, x0, t, noise, s = c.args
        x_t = dc.q_sample(x0, t, noise, s)
        with torch.no_grad():
            assert not torch.allclose(model(x_t, t), model(x0, t))
            assert not torch.allclose(model(x_t, t), model(x_t, (t + 1).clamp(max=s.T - 1)))


def test_checks_leave_the_global_random_state_alone():
    state = torch.get_rng_state()
    checks.simple_loss(loss_mse)
    checks.timestep_embedding(embedding_powers)
    assert torch.equal(torch.get_rng_state(), state)


def test_timestep_embedding_reference_is_the_unet_function():
    t = torch.tensor([3, 77, 999])
    assert torch.equal(checks.timestep_embedding.reference(t, 48), dc.unet.timestep_embedding(t, 48))


def test_simple_loss_reference_is_the_package_loss():
    model, x0, t, noise, s = checks.simple_loss.cases()[0].args
    expected = dc.diffusion.simple_loss(model, x0, s, t=t, noise=noise)
    assert torch.equal(checks.simple_loss.reference(model, x0, t, noise, s), expected)

"""Typical mistakes in the exercises of notebook 06 (evaluation): frechet_distance, mmd2_unbiased and
inception_score, each caught with a message naming the case and the property (for the IS, the slip); the
references are the package's functions and the closed-form cases have their closed-form values. The contract
every check keeps is in tests/test_checks.py."""

import re

import numpy as np
import pytest
import scipy.linalg
import torch

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import CheckFailed


# --- deliberate slips --------------------------------------------------------------------------------
def frechet_no_factor_two(mu1, cov1, mu2, cov2):
    root = scipy.linalg.sqrtm(np.asarray(cov1) @ np.asarray(cov2)).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(np.asarray(cov1 + cov2) - root))


def frechet_unsquared_mean(mu1, cov1, mu2, cov2):
    root = scipy.linalg.sqrtm(np.asarray(cov1) @ np.asarray(cov2)).real
    return float((mu1 - mu2).norm() + np.trace(np.asarray(cov1 + cov2) - 2 * root))


def mmd2_biased(fx, fy):
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3
    return k(fx, fx).mean() + k(fy, fy).mean() - 2 * k(fx, fy).mean()


def mmd2_wrong_kernel(fx, fy):
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 2
    kxx, kyy = k(fx, fx), k(fy, fy)
    m, n = len(fx), len(fy)
    return ((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
            - 2 * k(fx, fy).mean())


SLIPS = {"frechet_distance": [(frechet_no_factor_two, "wrong value"),
                              (frechet_unsquared_mean, "wrong value")],
         "mmd2_unbiased": [(mmd2_biased, "wrong value"), (mmd2_wrong_kernel, "wrong value")]}


def test_references_are_the_package_functions():
    for c in checks.frechet_distance.cases():
        assert checks.frechet_distance.reference(*c.args) == dc.metrics.frechet_distance(*c.args)
    for c in checks.mmd2_unbiased.cases():
        assert checks.mmd2_unbiased.reference(*c.args) == float(dc.metrics.mmd2_unbiased(*c.args))


def test_closed_form_cases_have_their_closed_form_values():
    cases = {c.label: c.args for c in checks.frechet_distance.cases()}
    ref = checks.frechet_distance.reference
    mu, cov, mu2, _ = cases["shifted means, equal covariances (= |μ₁−μ₂|²)"]
    assert ref(mu, cov, mu2, cov) == pytest.approx(float((mu - mu2).square().sum()), rel=1e-8)
    mu, a, _, b = cases["diagonal covariances (= Σ(√a − √b)²)"]
    expected = float((a.diagonal().sqrt() - b.diagonal().sqrt()).square().sum())
    assert ref(mu, a, mu, b) == pytest.approx(expected, rel=1e-8)
    assert ref(*cases["identical Gaussians, d=5 (distance 0)"]) == pytest.approx(0.0, abs=1e-9)


def test_the_package_function_returning_a_0_dim_tensor_passes(capsys):
    assert not isinstance(dc.metrics.mmd2_unbiased(*checks.mmd2_unbiased.cases()[0].args), float)
    assert checks.mmd2_unbiased(dc.metrics.mmd2_unbiased) is dc.metrics.mmd2_unbiased
    assert "✓ mmd2_unbiased: matches the reference on 4 test cases" in capsys.readouterr().out


@pytest.mark.parametrize("name,slip,property_",
                         [(n, f, p) for n, slips in SLIPS.items() for f, p in slips])
def test_wrong_answer_fails_naming_the_case_and_property(name, slip, property_):
    with pytest.raises(CheckFailed) as err:
        getattr(checks, name)(slip)
    msg = str(err.value)
    assert msg.startswith(f"{name}(") and property_ in msg
    assert any(c.label in msg for c in getattr(checks, name).cases())


def test_mmd_cases_are_unchanged_by_the_check():
    # fresh tensors per run: a second run after a mutating one still passes
    before = [c.args[0].clone() for c in checks.mmd2_unbiased.cases()]
    assert all(torch.equal(a, c.args[0]) for a, c in zip(before, checks.mmd2_unbiased.cases(), strict=True))


def _is_no_exp(p):
    p_y = p.mean(0, keepdim=True)
    return float((torch.xlogy(p, p) - torch.xlogy(p, p_y.expand_as(p))).sum(1).mean())


def _is_reversed(p):
    p_y = p.mean(0, keepdim=True).expand_as(p)
    return float((torch.xlogy(p_y, p_y) - torch.xlogy(p_y, p)).sum(1).mean().exp())


def _is_log_zero(p):
    p_y = p.mean(0, keepdim=True)
    return float((p * (p / p_y).log()).sum(1).mean().exp())


@pytest.mark.parametrize("fn, slip", [
    (_is_no_exp, "likely slip: the mean KL without the exp"),
    (_is_reversed, "likely slip: the KL reversed"),
    (_is_log_zero, "likely slip: 0 · log 0 gave NaN"),
])
def test_inception_score_slips_are_named(fn, slip):
    with pytest.raises(checks.CheckFailed, match=re.escape(slip)):
        checks.inception_score(fn)

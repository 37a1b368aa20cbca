"""Checks of notebook 06 (evaluation): frechet_distance and mmd2_unbiased. A correct answer passes (also one
written independently, the way a learner would), a blank one falls back to the reference, a wrong one fails
with a message naming the case and the property."""

import numpy as np
import pytest
import scipy.linalg
import torch

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import CheckFailed

NAMES = ("frechet_distance", "mmd2_unbiased")


# --- independent implementations -------------------------------------------------------------------------
def frechet_scipy(mu1, cov1, mu2, cov2):
    """Textbook FID with scipy's general matrix square root of C₁C₂ (real part)."""
    mu1, cov1, mu2, cov2 = (np.asarray(a, dtype=np.float64) for a in (mu1, cov1, mu2, cov2))
    root = scipy.linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * root))


def mmd2_loops(fx, fy):
    """Unbiased MMD² by explicit sums over pairs i ≠ j."""
    d = fx.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3
    m, n = len(fx), len(fy)
    sxx = sum(k(fx[i], fx[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(fy[i], fy[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(a, b) for a in fx for b in fy) / (m * n)
    return sxx + syy - 2 * sxy


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
         "mmd2_unbiased": [(mmd2_biased, "wrong value"), (mmd2_wrong_kernel, "wrong value"),
                           (lambda fx, fy: None, "expected a number, got None")]}


def test_checks_are_exported_with_docs():
    for name in NAMES:
        check = getattr(dc.checks, name)
        assert check.name == name and name in repr(check) and check.__doc__


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


@pytest.mark.parametrize("name,mine", [("frechet_distance", frechet_scipy), ("mmd2_unbiased", mmd2_loops),
                                       ("frechet_distance", checks.frechet_distance.reference),
                                       ("mmd2_unbiased", dc.metrics.mmd2_unbiased)])
def test_check_passes_on_a_correct_answer(name, mine, capsys):
    check = getattr(checks, name)
    assert check(mine) is mine
    assert f"✓ {name}: matches the reference on {len(check.cases())} test cases" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_blank_exercise_falls_back_to_the_reference(name, capsys):
    def blank(*args):
        raise NotImplementedError("Exercise 6.x: write your solution here")

    check = getattr(checks, name)
    assert check(blank) is check.reference
    assert f"{name}: not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("name,slip,property_",
                         [(n, f, p) for n, slips in SLIPS.items() for f, p in slips])
def test_wrong_answer_fails_naming_the_case_and_property(name, slip, property_):
    with pytest.raises(CheckFailed) as err:
        getattr(checks, name)(slip)
    msg = str(err.value)
    assert msg.startswith(f"{name}(") and property_ in msg
    assert any(c.label in msg for c in getattr(checks, name).cases())


def test_in_place_change_of_an_input_is_named():
    def mutating(fx, fy):
        out = dc.metrics.mmd2_unbiased(fx, fy)
        fx.mul_(2)
        return out

    with pytest.raises(CheckFailed, match="changed its argument 1 in place"):
        checks.mmd2_unbiased(mutating)


def test_mmd_cases_are_unchanged_by_the_check():
    # fresh tensors per run: a second run after a mutating one still passes
    before = [c.args[0].clone() for c in checks.mmd2_unbiased.cases()]
    assert all(torch.equal(a, c.args[0]) for a, c in zip(before, checks.mmd2_unbiased.cases(), strict=True))

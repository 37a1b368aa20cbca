"""Typical mistakes in the exercises of notebook 07 (few-step generation): two_ddim_steps, distill_target,
loss_weight, each caught with a message naming the property; the references are ddpm_course.distill's
functions. The contract every check keeps is in tests/test_checks.py."""

import math

import pytest
import torch

from ddpm_course import checks, distill
from ddpm_course.checks import CheckFailed

NAMES = ("two_ddim_steps", "distill_target", "loss_weight")


# --- wrong answers and the property each check must name -------------------------------------------------
def two_steps_reusing_the_first_prediction(x0_fn, z_t, ab_t, ab_mid, ab_next):
    x0 = x0_fn(z_t, 0)                                               # forgets to ask the teacher again
    z = distill.ddim_step(z_t, x0, ab_t, ab_mid)
    return distill.ddim_step(z, x0, ab_mid, ab_next)


def one_big_step(x0_fn, z_t, ab_t, ab_mid, ab_next):
    return distill.ddim_step(z_t, x0_fn(z_t, 0), ab_t, ab_next)


def target_without_the_ratio_in_the_denominator(z_t, z_next, ab_t, ab_next):
    r = math.sqrt((1 - ab_next) / (1 - ab_t))
    return (z_next - r * z_t) / (math.sqrt(ab_next) - math.sqrt(ab_t))


def target_in_float64(z_t, z_next, ab_t, ab_next):
    return distill.distill_target(z_t.double(), z_next.double(), ab_t, ab_next)


def weight_snr_untruncated(ab, kind):
    snr = ab / (1 - ab)
    return snr if kind == "truncated_snr" else snr + 1


def weight_ignoring_kind(ab, kind):
    return ab / (1 - ab) + 1


WRONG = [
    ("two_ddim_steps", two_steps_reusing_the_first_prediction, "wrong value"),
    ("two_ddim_steps", one_big_step, "wrong value"),
    ("distill_target", target_without_the_ratio_in_the_denominator, "wrong value"),
    ("distill_target", target_in_float64, "wrong dtype"),
    ("loss_weight", weight_snr_untruncated, "truncated_snr.*wrong value"),
    ("loss_weight", weight_ignoring_kind, "truncated_snr.*wrong value"),
]


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_is_the_package_function(name):
    check = getattr(checks, name)
    for c in check.cases():                                          # the reference IS ddpm_course.distill's
        want = getattr(distill, name)(*c.args)
        got = check.reference(*c.args)
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "fn", "message"), WRONG, ids=[w[1].__name__ for w in WRONG])
def test_wrong_answers_fail_naming_the_property(name, fn, message):
    with pytest.raises(CheckFailed, match=message):
        getattr(checks, name)(fn)


def test_the_target_check_cases_satisfy_the_defining_property():
    """In every case, one DDIM step with the reference x̃ from z_t lands on z_t'' (unless ᾱ_t'' = 1)."""
    for c in checks.distill_target.cases():
        z_t, z_next, ab_t, ab_next = c.args
        if ab_next < 1:
            x = checks.distill_target.reference(z_t.double(), z_next.double(), ab_t, ab_next)
            torch.testing.assert_close(distill.ddim_step(z_t.double(), x, ab_t, ab_next), z_next.double())

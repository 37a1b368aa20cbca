"""Checks of notebook 07 (few-step generation): two_ddim_steps, distill_target, loss_weight. A correct answer
passes (also an independently written one), a blank one falls back to the reference, a wrong one fails with
a message naming the case and the property."""

import math

import pytest
import torch

import ddpm_course as dc
from ddpm_course import checks, distill
from ddpm_course.checks import CheckFailed

NAMES = ("two_ddim_steps", "distill_target", "loss_weight")


# --- independent implementations, written the way a learner would ---------------------------------------
def two_ddim_steps_mine(x0_fn, z_t, ab_t, ab_mid, ab_next):
    z = z_t
    for k, (a, b) in enumerate([(ab_t, ab_mid), (ab_mid, ab_next)]):
        x0 = x0_fn(z, k)
        eps = (z - math.sqrt(a) * x0) / math.sqrt(1 - a)           # the noise the DDIM step keeps
        z = math.sqrt(b) * x0 + math.sqrt(1 - b) * eps
    return z


def distill_target_mine(z_t, z_next, ab_t, ab_next):
    r = math.sqrt((1 - ab_next) / (1 - ab_t))
    return (z_next - r * z_t) / (math.sqrt(ab_next) - r * math.sqrt(ab_t))


def loss_weight_mine(ab, kind):
    snr = ab / (1 - ab)
    return snr.clamp(min=1) if kind == "truncated_snr" else 1 + snr


MINE = {"two_ddim_steps": two_ddim_steps_mine, "distill_target": distill_target_mine,
        "loss_weight": loss_weight_mine}


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


def test_checks_are_exported_with_docs():
    for name in NAMES:
        check = getattr(dc.checks, name)
        assert check.name == name and name in repr(check) and check.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_passes_its_own_check_and_is_the_package_function(name, capsys):
    check = getattr(checks, name)
    assert check(check.reference) is check.reference
    assert f"✓ {name}: matches the reference on {len(check.cases())} test cases" in capsys.readouterr().out
    for c in check.cases():                                          # the reference IS ddpm_course.distill's
        want = getattr(distill, name)(*c.args)
        got = check.reference(*c.args)
        torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_independent_correct_answers_pass_and_are_returned(name, capsys):
    assert getattr(checks, name)(MINE[name]) is MINE[name]
    assert f"✓ {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_blank_exercise_falls_back_to_the_reference(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise 7.1: write your solution here")

    check = getattr(checks, name)
    assert check(blank) is check.reference
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "fn", "message"), WRONG, ids=[w[1].__name__ for w in WRONG])
def test_wrong_answers_fail_naming_the_property(name, fn, message):
    with pytest.raises(CheckFailed, match=message):
        getattr(checks, name)(fn)


def test_a_function_changing_its_input_in_place_is_caught():
    def in_place(z_t, z_next, ab_t, ab_next):
        out = distill.distill_target(z_t, z_next, ab_t, ab_next)
        z_t.mul_(0)
        return out

    with pytest.raises(CheckFailed, match="changed its argument 1 in place"):
        checks.distill_target(in_place)


def test_the_target_check_cases_satisfy_the_defining_property():
    """In every case, one DDIM step with the reference x̃ from z_t lands on z_t'' (unless ᾱ_t'' = 1)."""
    for c in checks.distill_target.cases():
        z_t, z_next, ab_t, ab_next = c.args
        if ab_next < 1:
            x = checks.distill_target.reference(z_t.double(), z_next.double(), ab_t, ab_next)
            torch.testing.assert_close(distill.ddim_step(z_t.double(), x, ab_t, ab_next), z_next.double())

"""Typical mistakes in the exercises of notebook 08 (guidance): drop_labels, guided_eps, per_digit_accuracy,
each caught with a message naming the property (and a hint for the other guidance convention). The guidance
reference agrees with what dc.sample does for guidance_scale, and the label-dropout reference with what
ddpm_course.train does. The contract every check keeps is in tests/test_checks.py.
"""

import math

import pytest
import torch
from exercise_answers import per_digit_accuracy_mine

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import CheckFailed


# --- the references are what the package does --------------------------------------------------------------
def test_guided_eps_reference_is_what_dc_sample_does():
    s = dc.NoiseSchedule.linear()
    model = checks.class_mixture(s)
    x_T = torch.randn(9, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.arange(9) % 3
    for scale in (0.0, 1.0, 2.5, 6.0):
        guided = checks.GuidedWith(model, checks.guided_eps.reference, scale)
        ours = dc.sample(guided, s, x_T, sampler="ddim", steps=8, y=y)
        package = dc.sample(model, s, x_T, sampler="ddim", steps=8, y=y, guidance_scale=scale)
        assert torch.allclose(ours, package, atol=1e-12), scale


def test_scale_one_is_the_conditional_and_zero_the_unconditional_model():
    s = dc.NoiseSchedule.linear()
    model = checks.class_mixture(s)
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t, y = torch.full((6,), 300), torch.arange(6) % 3
    cond, null = model(x, t, y), model(x, t, torch.full_like(y, model.null_label))
    assert torch.allclose(checks.guided_eps.reference(cond, null, 1.0), cond, rtol=0, atol=1e-15)
    assert torch.equal(checks.guided_eps.reference(cond, null, 0.0), null)
    assert not torch.allclose(cond, null)                                  # the classes overlap but differ


def test_drop_labels_reference_matches_the_training_loop_and_keeps_the_generator():
    y = torch.randint(0, 10, (4096,), generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    out = checks.drop_labels.reference(y, 0.1, 10, g)
    assert torch.equal(g.get_state(), state)                               # the learner draws the same u
    u = torch.rand(len(y), generator=torch.Generator().manual_seed(3))     # train.py: rand(B) < p -> null
    expected = y.clone()
    expected[u < 0.1] = 10
    assert torch.equal(out, expected)
    frac = (out == 10).double().mean().item()
    assert abs(frac - 0.1) < 4 * math.sqrt(0.1 * 0.9 / len(y))
    assert torch.equal(out[out != 10], y[out != 10])


def test_per_digit_accuracy_reference_by_hand():
    predicted = torch.tensor([0, 1, 1, 2, 0, 2])
    requested = torch.tensor([0, 0, 1, 2, 2, 2])
    acc = checks.per_digit_accuracy.reference(predicted, requested, 4)
    assert acc.dtype == torch.float64
    assert acc[:3].tolist() == [0.5, 1.0, 2 / 3] and math.isnan(acc[3])


# --- wrong answers -----------------------------------------------------------------------------------------
def test_the_other_convention_gets_a_hint():
    with pytest.raises(CheckFailed, match=r"wrong value(.|\n)*Hint: your result is \(1 \+ s\) ε_c − s ε_∅"):
        checks.guided_eps(lambda c, u, s: (1 + s) * c - s * u)


@pytest.mark.parametrize(("wrong", "message"), [
    (lambda c, u, s: s * (c - u), r"guided_eps\(images \(4,1,8,8\), s=3 \(w=2\)\): wrong value"),
    (lambda c, u, s: u + s * (u - c), r"wrong value"),                               # branches swapped
    (lambda c, u, s: c.mul_(s), "changed its argument 1 in place"),                 # an in-place formula
])
def test_wrong_guided_eps_names_the_property(wrong, message):
    with pytest.raises(CheckFailed, match=message) as err:
        checks.guided_eps(wrong)
    assert "Hint" not in str(err.value)


def test_a_guided_eps_right_on_the_cases_but_wrong_in_a_sampler_is_caught():
    calls = []

    def breaks_on_batches_of_12(c, u, s):                                  # the sampler's batch size
        calls.append(c.shape)
        return u + s * (c - u) + (0.1 if c.shape[0] == 12 else 0.0)

    message = r"inside a 10-step DDIM sampler.* vs dc.sample\(guidance_scale=3\)"
    with pytest.raises(CheckFailed, match=message):
        checks.guided_eps(breaks_on_batches_of_12)
    assert len(calls) > 5


def _drop_with(mask_fn):
    def wrong(y, p, null_label, generator):
        u = torch.rand(len(y), generator=generator)
        return torch.where(mask_fn(u, p), torch.full_like(y, null_label), y)
    return wrong


@pytest.mark.parametrize(("wrong", "message"), [
    (_drop_with(lambda u, p: u > p), r"drop_labels\(1000 digits, p=0.1, null label 10\): wrong value"),
    (_drop_with(lambda u, p: u <= 0.1), r"drop_labels\(1000 digits, p=0.5, null label 10\): wrong value"),
    (lambda y, p, n, g: torch.where(torch.rand(len(y)) < p, n, y), "wrong value"),   # ignores the generator
    (lambda y, p, n, g: torch.where(torch.rand(len(y), generator=g) < p, n, y).long(),
     r"int32 labels.*wrong dtype: expected torch.int32, got torch.int64"),
    (lambda y, p, n, g: y.masked_fill_(torch.rand(len(y), generator=g) < p, n),
     "changed its argument 1 in place"),
])
def test_wrong_drop_labels_names_the_property(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.drop_labels(wrong)


@pytest.mark.parametrize(("wrong", "message"), [
    (lambda p, r, k=10: torch.bincount(r[p == r], minlength=k).double() / len(r),        # divides by N
     r"per_digit_accuracy\(200 balanced .*\): wrong value"),
    (lambda p, r, k=10: torch.nan_to_num(per_digit_accuracy_mine(p, r, k)),              # 0 instead of NaN
     r"without a single 9 .*NaN mismatch at index \(9,\)"),
    (lambda p, r, k=10: per_digit_accuracy_mine(p, r, k).float(), "wrong dtype: expected torch.float64"),
    (lambda p, r, k=10: per_digit_accuracy_mine(p, r, 10), r"3 classes\): wrong shape: expected \(3,\)"),
    (lambda p, r, k=10: (p == r).double().mean(), r"wrong shape: expected \(10,\), got \(\)"),
])
def test_wrong_per_digit_accuracy_names_the_property(wrong, message):
    with pytest.raises(CheckFailed, match=message):
        checks.per_digit_accuracy(wrong)

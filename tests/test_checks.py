"""Each exercise check passes a correct answer, falls back on a blank one and names what a wrong one broke."""

import re

import pytest
import torch

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import Check, CheckFailed, case, compare

NAMES = sorted(checks.ALL)


def _map_tensors(obj, fn):
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(_map_tensors(o, fn) for o in obj)
    return obj


def _last_tensor_changed(obj):
    """Perturb one entry of the last tensor of the result: the smallest detectable mistake."""
    if isinstance(obj, tuple):
        return (*obj[:-1], _last_tensor_changed(obj[-1]))
    out = obj.clone()
    out.view(-1)[-1] += 0.01 * (1 + out.view(-1)[-1].abs())
    return out


def test_every_check_is_exported_under_its_name():
    assert NAMES == ["alpha_bars", "eps_to_x0", "posterior_mean_variance", "q_sample", "snr"]
    for name in NAMES:
        assert getattr(dc.checks, name) is checks.ALL[name]
        assert name in repr(checks.ALL[name]) and checks.ALL[name].__doc__


@pytest.mark.parametrize("name", NAMES)
def test_check_passes_on_a_correct_answer_and_returns_it(name, capsys):
    check = checks.ALL[name]

    def mine(*args, **kwargs):
        return check.reference(*args, **kwargs)

    assert check(mine) is mine
    assert f"✓ {name}: matches the reference on" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_blank_exercise_falls_back_to_the_reference(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise 9.9: write your solution here")

    fn = checks.ALL[name](blank)
    assert fn is checks.ALL[name].reference
    out = capsys.readouterr().out
    assert f"{name}: not implemented yet (Exercise 9.9" in out and "reference implementation" in out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("mistake", "message"), [
    ("one value off", r"wrong value at index \(.*\): expected .*, got .*; 1 of \d+ values differ"),
    ("float64 result", "wrong dtype: expected torch.float32, got torch.float64"
                       "|wrong dtype: expected torch.float64, got torch.float32"),
    ("extra dimension", r"wrong shape: expected \(.*\), got \(1, .*\)"),
    ("returns None", r"got None \(did you forget `return`\?\)"),
    ("raises", "raised ZeroDivisionError: oops"),
    ("changes its input", r"changed its argument 1 in place"),
])
def test_wrong_answers_name_the_failing_property(name, mistake, message):
    check = checks.ALL[name]
    ref = check.reference

    def wrong(*args, **kwargs):
        out = ref(*args, **kwargs)
        if mistake == "one value off":
            return _last_tensor_changed(out)
        if mistake == "float64 result":
            return _map_tensors(out, lambda x: x.float() if x.dtype == torch.float64 else x.double())
        if mistake == "extra dimension":
            return _map_tensors(out, lambda x: x[None])
        if mistake == "returns None":
            return None
        if mistake == "raises":
            raise ZeroDivisionError("oops")
        args[0].mul_(2)
        return out

    with pytest.raises(CheckFailed, match=message) as info:
        check(wrong)
    first_label = re.escape(check.cases()[0].label)
    assert re.match(rf"{name}\({first_label}\)", str(info.value)), str(info.value)


# --- the typical mistakes a learner makes, one per check ------------------------------------------------
def _bcast(v, x):
    return v.to(x).reshape(-1, *[1] * (x.dim() - 1))


def _posterior(x0, x_t, t, s, prev=lambda t: t - 1):
    ab = s.alpha_bars[t]
    ab_prev = torch.where(t > 0, s.alpha_bars[prev(t).clamp(min=0)], torch.ones((), dtype=torch.float64))
    beta = 1 - ab / ab_prev
    mean = (_bcast(ab_prev.sqrt() * beta / (1 - ab), x0) * x0
            + _bcast((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab), x0) * x_t)  # DDPM eq. 7
    return mean, _bcast((1 - ab_prev) / (1 - ab) * beta, x0)


MISTAKES = {
    "snr": (lambda ab: ab / (1 + ab), "wrong value at index (0,): expected 9999, got 0.499975"),
    "alpha_bars": (lambda b: torch.cumprod(b, 0), "alpha_bars(linear β, T=1000): wrong value at index (0,)"),
    "q_sample": (lambda x0, t, n, s: _bcast(s.alpha_bars[t], x0) * x0 + _bcast(1 - s.alpha_bars[t], x0) * n,
                 "q_sample(images (4,1,8,8), t=[0,10,500,999], linear T=1000): wrong value at index (0,"),
    "posterior_mean_variance": (
        lambda x0, x_t, t, s: (_posterior(x0, x_t, t, s)[0], _bcast(s.betas[t], x0)),  # β_t instead of β̃_t
        "posterior_mean_variance(images (4,1,6,6), t=[100,300,600,999], linear T=1000), variance: wrong value"
    ),
    "eps_to_x0": (lambda x_t, eps, ab: (x_t - (1 - torch.as_tensor(ab)) * eps) / torch.as_tensor(ab),
                  "eps_to_x0(one ᾱ for the batch (a float)): wrong value at index (0, 0, 0, 0)"),
}


@pytest.mark.parametrize("name", NAMES)
def test_typical_mistake_is_caught(name):
    fn, message = MISTAKES[name]
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.ALL[name](fn)


def test_independent_correct_implementations_pass():
    checks.snr(lambda ab: 1 / (1 / ab - 1))
    checks.alpha_bars(lambda b: torch.exp(torch.cumsum(torch.log1p(-b), 0)))
    checks.q_sample(lambda x0, t, n, s: _bcast(s.alpha_bars[t].sqrt(), x0) * x0
                    + _bcast((1 - s.alpha_bars[t]).sqrt(), x0) * n)
    checks.posterior_mean_variance(_posterior)
    checks.eps_to_x0(lambda x_t, eps, ab: (x_t - (1 - _ab(ab, x_t)).sqrt() * eps) / _ab(ab, x_t).sqrt())


def _ab(ab, x):
    if torch.is_tensor(ab):
        return _bcast(ab, x)
    return torch.tensor(ab).to(x)


def test_off_by_one_timestep_is_caught_at_t0():
    wrong = lambda x0, x_t, t, s: _posterior(x0, x_t, t.clamp(min=1), s)  # noqa: E731
    message = "at t=0 the previous level is the data), mean: wrong value"
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.posterior_mean_variance(wrong)


def test_a_broadcastable_variance_is_accepted_and_the_learner_function_returned():
    def mine(x0, x_t, t, s):
        mean, var = _posterior(x0, x_t, t, s)
        assert var.shape[1:] == (1,) * (x0.dim() - 1)
        return mean, var

    assert checks.posterior_mean_variance(mine) is mine


# --- the framework itself ----------------------------------------------------------------------------------
def test_compare_reports_tuple_length_numbers_and_device():
    def ref(x):
        return x, x * 2

    with pytest.raises(CheckFailed, match=r"f\(a\): expected a tuple of 2 results \(a, b\), got a tuple of"):
        compare("f", lambda x: (x,), ref, [case("a", torch.ones(3))], outputs=("a", "b"))
    with pytest.raises(CheckFailed, match=r"f\(a\), b: wrong value at index \(2,\): expected 6, got 7"):
        compare("f", lambda x: (x, x * 2 + (x == 3)), ref, [case("a", torch.arange(1.0, 4.0))],
                outputs=("a", "b"))
    with pytest.raises(CheckFailed, match=r"g\(n\): wrong value: expected 0\.5, got 0\.25"):
        compare("g", lambda x: x / 4, lambda x: x / 2, [case("n", 1.0)])
    with pytest.raises(CheckFailed, match=r"g\(n\): expected a number, got a builtins.str"):
        compare("g", lambda x: "0.5", lambda x: x / 2, [case("n", 1.0)])
    with pytest.raises(CheckFailed, match=r"NaN mismatch at index \(1,\)"):
        compare("h", lambda x: torch.tensor([1.0, float("nan")]), lambda x: x, [case("n", torch.ones(2))])
    with pytest.raises(CheckFailed, match=r"expected a torch.Tensor, got a numpy.ndarray"):
        compare("h", lambda x: x.numpy(), lambda x: x, [case("n", torch.ones(2))])
    with pytest.raises(CheckFailed, match=r"wrong value at index \(1,\): expected 2, got 3; 1 of 2"):
        compare("i", lambda x: x + torch.tensor([0, 1]), lambda x: x, [case("ints", torch.tensor([1, 2]))])


def test_compare_rejects_a_non_function():
    with pytest.raises(TypeError, match=r"pass your function itself, e.g. dc.checks.snr\(my_fn\); got Tens"):
        checks.snr(torch.ones(3))


def test_a_new_check_is_one_line(capsys):
    double = Check("double", lambda x: 2 * x, lambda: [case("three values", torch.tensor([1.0, 2.0, 3.0]))])
    assert double(lambda x: x + x)(torch.tensor(4.0)) == 8.0
    assert "✓ double: matches the reference on 1 test cases" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=r"double\(three values\): wrong value at index \(0,\): expected 2"):
        double(lambda x: x ** 2)


def test_check_failed_is_an_assertion_error():
    assert issubclass(CheckFailed, AssertionError)


# --- what a learner sees in Jupyter: a short message, the likely slip, the exercise's formula ---------------
def _render(check, fn) -> list[str]:
    with pytest.raises(CheckFailed) as info:
        check(fn)
    return info.value._render_traceback_()


def test_jupyter_shows_a_short_message_with_property_input_and_formula():
    def snr(ab):
        return -(ab / (1 - ab))

    lines = _render(dc.checks.snr, snr)
    assert "check failed" in lines[0] and "snr(linear schedule" in lines[0]          # which input
    text = "\n".join(lines)
    assert "wrong value at index (0,): expected 9999, got -9999" in text             # expected against got
    assert "likely cause: the sign is flipped" in text                               # the property
    assert "the exercise: snr(alpha_bars) -> alpha_bars / (1 - alpha_bars)" in text  # the hint
    assert len(lines) <= 8 and "checks.py" not in text and "Traceback" not in text


def test_an_error_in_the_learners_code_shows_only_the_learners_frames():
    def q_sample(x0, t, noise, s):
        return x0.no_such_attribute

    text = "\n".join(_render(dc.checks.q_sample, q_sample))
    assert "raised AttributeError" in text and "in your code:" in text and "in q_sample" in text
    assert "ddpm_course" not in text


@pytest.mark.parametrize(("wrong", "cause"), [
    (lambda e: -e, "the sign is flipped"),
    (lambda e: e**2, "a square root is missing"),
    (lambda e: e.sqrt(), "a square root too many"),
    (lambda e: 2 * e, "off by a constant factor (got = 2 × expected)"),
    (lambda e: e + 0.5, "off by a constant (got = expected + 0.5)"),
    (lambda e: torch.cat([e[:1], e[:-1]]), "shifted by one index"),
])
def test_diagnose_names_the_usual_slips(wrong, cause):
    e = torch.linspace(0.1, 0.9, 50, dtype=torch.float64) ** 1.5
    assert cause in dc.checks.diagnose(wrong(e), e)


def test_diagnose_says_nothing_about_an_arbitrary_error():
    e = torch.linspace(0.1, 0.9, 50, dtype=torch.float64)
    assert dc.checks.diagnose(e + 0.01 * torch.sin(40 * e), e) == ""


def test_whose_tells_a_blank_exercise_from_the_learners_answer():
    def blank(ab):
        raise NotImplementedError

    def answer(ab):
        return ab / (1 - ab)

    got = dc.checks.snr(blank)
    assert dc.checks.is_reference(got) and "the reference snr" in dc.checks.whose(got, "snr")
    mine = dc.checks.snr(answer)
    assert mine is answer and not dc.checks.is_reference(mine) and dc.checks.whose(mine, "snr") == "your snr"

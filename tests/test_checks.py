"""Every exercise check keeps the same contract: the reference and an independent correct answer pass and are
returned, a blank answer falls back on the reference with a note, a generic wrong answer is named with the
check, the case and the property. Then the registry, the framework itself and what a learner sees in Jupyter.
Each notebook's typical mistakes are in tests/test_checks_nbNN*.py."""

import re
from pathlib import Path

import pytest
import torch
from exercise_answers import INDEPENDENT

import ddpm_course as dc
from ddpm_course import checks
from ddpm_course.checks import Check, CheckFailed, case, compare

NAMES = list(checks.ALL)
IN_NOTEBOOK_ORDER = [
    "snr",                                                                          # 00
    "alpha_bars", "q_sample", "log_snr",                                            # 01
    "simple_loss", "timestep_embedding",                                            # 02
    "posterior_mean_variance", "ddpm_step", "eps_to_x0", "score_fd",                # 03
    "ddim_step", "ddim_sampler", "slerp",                                           # 04
    "heun_step", "dpmpp_2m_update", "karras_sigmas", "euler_ancestral_step",        # 05
    "frechet_distance", "mmd2_unbiased", "inception_score", "fit_cost",             # 06
    "two_ddim_steps", "distill_target", "loss_weight",                              # 07
    "drop_labels", "guided_eps", "per_digit_accuracy",                              # 08
    "skip_out", "cd_target", "multistep",                                           # 09
    "flow_pair", "vp_to_flow", "straightness",                                      # 10
]
# checks that, once the fixed cases agree, also run the answer inside a whole sampler, and what they print
WHOLE_RUN = {
    "heun_step": "✓ heun_step: run as a whole sampler it reproduces dc.sample(sampler='heun'",
    "dpmpp_2m_update": "✓ dpmpp_2m_update: run as a whole sampler it reproduces dc.sample(sampler='dpmpp_2m'",
    "euler_ancestral_step": "✓ euler_ancestral_step: run as a whole sampler with the same noise it "
                            "reproduces dc.sample(sampler='euler_ancestral'",
    "guided_eps": "✓ guided_eps: used as a model inside dc.sample it reproduces "
                  "dc.sample(..., guidance_scale=3)",
}
CHECKS_DIR = Path(checks.__file__).parent
# dc.checks names the notebooks call that are helpers, not exercise checks
HELPERS = {"whose", "is_reference", "GuidedWith", "class_mixture"}


# --- the registry ------------------------------------------------------------------------------------------
def test_all_holds_every_check_in_notebook_order_each_exported_and_documented():
    assert NAMES == IN_NOTEBOOK_ORDER
    assert list(INDEPENDENT) == NAMES                       # an independent answer for every check
    for name in NAMES:
        check = checks.ALL[name]
        assert isinstance(check, Check) and check.name == name
        assert getattr(dc.checks, name) is check
        assert name in repr(check) and check.__doc__


def _used_in(source: Path) -> set[str]:
    return set(re.findall(r"dc\.checks\.([A-Za-z_][A-Za-z_0-9]*)\(", source.read_text()))


def test_every_check_a_notebook_calls_is_registered_in_its_notebooks_module(repo_root):
    modules = {m.__name__.rsplit(".", 1)[1]: m for m in checks.NOTEBOOKS}
    assert all(re.fullmatch(r"nb\d\d_[a-z0-9_]+", name) for name in modules), sorted(modules)
    assert list(modules) == sorted(modules)                  # ALL is in notebook order
    sources = sorted((repo_root / "solutions").glob("[0-9][0-9]_*.py"))
    assert len(sources) >= len(modules)
    for source in sources:
        used = _used_in(source) - HELPERS
        assert used <= set(checks.ALL), f"{source.name} calls checks missing from dc.checks.ALL: " \
                                        f"{sorted(used - set(checks.ALL))}"
        prefix = f"nb{source.name[:2]}_"
        module = next((m for name, m in modules.items() if name.startswith(prefix)), None)
        if used:
            assert module is not None, f"{source.name}: no module ddpm_course/checks/{prefix}*.py"
            mine = {c.name for c in module.CHECKS}
            assert used <= mine, f"{source.name}: {sorted(used - mine)} belong in {module.__name__}"


def test_no_checks_module_is_over_400_lines():
    modules = sorted(CHECKS_DIR.glob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "framework.py", "nb00_welcome.py", "nb08_guidance.py"}
    for path in modules:
        n = len(path.read_text().splitlines())
        assert n <= 400, f"{path.name} has {n} lines; split it"


# --- the contract, for every check --------------------------------------------------------------------------
def _first_result(check):
    c = check.cases()[0]
    return check.reference(*c.args, **c.kwargs)


def _tensors(obj):
    """The tensors of a result (a tensor, a number or a tuple of them), in order."""
    if isinstance(obj, tuple):
        return [t for o in obj for t in _tensors(o)]
    return [obj] if isinstance(obj, torch.Tensor) else []


def _map(obj, fn):
    """fn applied to every tensor (and number) of a result: a tensor, a number or a tuple of them."""
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    return fn(obj)


def _passes(name, fn, capsys):
    check = checks.ALL[name]
    assert check(fn) is fn
    out = capsys.readouterr().out
    assert f"✓ {name}: matches the reference on {len(check.cases())} test cases" in out
    if name in WHOLE_RUN:
        assert WHOLE_RUN[name] in out


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_passes_and_is_returned(name, capsys):
    check = checks.ALL[name]
    _passes(name, check.reference, capsys)

    def mine(*args, **kwargs):                               # the learner's function, not the reference
        return check.reference(*args, **kwargs)

    _passes(name, mine, capsys)
    assert not dc.checks.is_reference(mine)


@pytest.mark.parametrize(("name", "fn"), [(n, f) for n, fns in INDEPENDENT.items() for f in fns],
                         ids=[f.__name__ for fns in INDEPENDENT.values() for f in fns])
def test_an_independent_correct_answer_passes_and_is_returned(name, fn, capsys):
    _passes(name, fn, capsys)


@pytest.mark.parametrize("name", NAMES)
def test_a_blank_exercise_falls_back_to_the_reference_with_a_note(name, capsys):
    def blank(*args, **kwargs):
        raise NotImplementedError("Exercise 9.9: write your solution here")

    fn = checks.ALL[name](blank)
    assert fn is checks.ALL[name].reference and dc.checks.is_reference(fn)
    out = capsys.readouterr().out
    assert f"… {name}: not implemented yet (Exercise 9.9: write your solution here)" in out
    assert "reference implementation" in out and "✓" not in out
    assert "run as a whole sampler" not in out and "inside dc.sample" not in out


def _one_value_off(x):
    if not isinstance(x, torch.Tensor):
        return x + 0.01 * (1 + abs(x))
    out = x.clone()
    out.view(-1)[-1] += 0.01 * (1 + out.view(-1)[-1].abs()) if out.is_floating_point() else 1
    return out


def _other_dtype(x):
    return x.float() if x.dtype == torch.float64 else x.double()


def _is_numbers(result) -> bool:
    """A float, or a tuple of floats such as fit_cost's (t0, C)."""
    return isinstance(result, float) or (
        isinstance(result, tuple) and all(isinstance(v, float) for v in result))


def _generic_mistakes(name):
    """(mistake, message) pairs for the check's result: every check gets the first four (the third only when
    it takes a tensor), tensor results the rest; messages are exact, from the reference's result on the first
    case."""
    check = checks.ALL[name]
    first = _first_result(check)
    args = check.cases()[0].args
    arg = next((i for i, a in enumerate(args) if isinstance(a, torch.Tensor)), None)   # None: numbers only
    number = _is_numbers(first)
    none = "expected a number, got None" if isinstance(first, float) else \
        "got None (did you forget `return`?)"
    mistakes = [
        ("returns None", none),
        ("raises", "raised ZeroDivisionError: oops"),
        *([("changes its input", f"changed its argument {arg + 1} in place")] if arg is not None else []),
        ("one value off", "wrong value: expected" if number else "values differ"),
    ]
    if not number:
        e = _tensors(first)[0]
        mistakes += [
            ("other dtype", f"wrong dtype: expected {e.dtype}, got {_other_dtype(e).dtype}"),
            ("extra dimension", f"wrong shape: expected {tuple(e.shape)}, got {(1, *e.shape)}"),
            ("numpy array", "expected a torch.Tensor, got a numpy.ndarray"),
        ]
    return mistakes


GENERIC = [(n, m, msg) for n in NAMES for m, msg in _generic_mistakes(n)]


@pytest.mark.parametrize(("name", "mistake", "message"), GENERIC, ids=[f"{n}-{m}" for n, m, _ in GENERIC])
def test_a_generic_mistake_is_named_on_the_first_case(name, mistake, message):
    check = checks.ALL[name]
    ref = check.reference

    def wrong(*args, **kwargs):
        out = ref(*args, **kwargs)
        if mistake == "returns None":
            return None
        if mistake == "raises":
            raise ZeroDivisionError("oops")
        if mistake == "changes its input":
            next(a for a in args if isinstance(a, torch.Tensor)).mul_(2)
            return out
        if mistake == "one value off":                     # the last tensor (or number) of the result
            return (*out[:-1], _one_value_off(out[-1])) if isinstance(out, tuple) else _one_value_off(out)
        if mistake == "other dtype":
            return _map(out, _other_dtype)
        if mistake == "extra dimension":
            return _map(out, lambda x: x[None])
        return _map(out, lambda x: x.numpy())

    with pytest.raises(CheckFailed) as info:
        check(wrong)
    msg = str(info.value)
    assert msg.startswith(f"{name}({check.cases()[0].label})"), msg
    assert message in msg, msg
    if mistake == "one value off" and not _is_numbers(_first_result(check)):
        assert re.search(r"wrong value at index \(.*\): expected .*, got .*; 1 of \d+ values differ", msg)
    assert "Hint" not in msg and f"the exercise: {check.__doc__}" in msg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("perturb", ["times 1.5", "plus 1"])
def test_a_wrong_value_is_named_with_the_check_and_a_case(name, perturb):
    check = checks.ALL[name]
    ref = check.reference

    def change(x):
        if perturb == "plus 1" or (isinstance(x, torch.Tensor) and not x.is_floating_point()):
            return x + 1
        return x * 1.5

    def wrong(*args, **kwargs):
        return _map(ref(*args, **kwargs), change)

    with pytest.raises(CheckFailed) as info:
        check(wrong)
    msg = str(info.value)
    label = re.match(rf"{name}\((.*?)\)(, \w+)?: wrong value", msg)
    assert label and any(label.group(1) == c.label for c in check.cases()), msg
    if _tensors(_first_result(check)):
        assert re.search(r"wrong value at index \(.*\): expected .*, got .*; \d+ of \d+ values differ", msg)


# --- notebook 00's check: the slip the welcome notebook shows -----------------------------------------------
def test_snr_with_one_plus_alpha_bar_is_caught():
    message = "snr(linear schedule ᾱ, T=1000): wrong value at index (0,): expected 9999, got 0.499975"
    with pytest.raises(CheckFailed, match=re.escape(message)):
        checks.snr(lambda ab: ab / (1 + ab))


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


def test_the_package_re_exports_the_framework():
    fw = checks.framework
    for name in ("CheckFailed", "Check", "Case", "case", "compare", "TOLERANCES", "diagnose", "is_reference",
                 "whose", "time_limit", "CheckTimeout", "exact"):
        assert getattr(checks, name) is getattr(fw, name), name
    assert checks.TIME_LIMIT_S == fw.TIME_LIMIT_S == 10.0


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
    assert len(lines) <= 8 and "Traceback" not in text
    assert "checks.py" not in text and "framework.py" not in text and "nb00_welcome" not in text


def test_an_error_in_the_learners_code_shows_only_the_learners_frames():
    def q_sample(x0, t, noise, s):
        return x0.no_such_attribute

    text = "\n".join(_render(dc.checks.q_sample, q_sample))
    assert "raised AttributeError" in text and "in your code:" in text and "in q_sample" in text
    assert "ddpm_course" not in text


def test_an_error_raised_inside_the_package_shows_only_the_learners_frames():
    """The learner's code calls the package, which raises: the frames of ddpm_course/diffusion.py are hidden
    like those of ddpm_course/checks/ (the whole package counts, not only the checks)."""
    def q_sample(x0, t, noise, s):
        return dc.diffusion.q_sample(x0.int(), t, noise, s)

    text = "\n".join(_render(dc.checks.q_sample, q_sample))
    assert "raised TypeError" in text and "in your code:" in text and "in q_sample" in text
    assert "ddpm_course" not in text and "diffusion.py" not in text


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

"""Exercise checks: run the learner's function on small fixed inputs and compare it with the reference.

    snr = dc.checks.snr(snr)    # ✓ message and your function back, or CheckFailed saying what is wrong

A check tells *which property* failed: the type of the result, its shape, dtype or device, a NaN, or the
first wrong value (index, expected, got). When the exercise is still blank (the function raises
NotImplementedError) the check prints a short note and returns the reference implementation, so a
student notebook runs top to bottom with every exercise blank.

Adding a check for a new exercise is one line::

    ddim_step = Check("ddim_step", reference_fn, cases_fn)    # cases_fn() -> list of case(label, *args)
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import diffusion
from .schedule import NoiseSchedule


class CheckFailed(AssertionError):
    """The learner's function disagrees with the reference; the message says where and how.

    In Jupyter (IPython) it shows as a short message, not a traceback through this module: which property
    failed on which input, expected against got, the likely cause and the exercise's formula. When the
    learner's own code raised, the learner's frames of that traceback are shown, nobody else's."""

    def _render_traceback_(self) -> list[str]:
        first, *rest = str(self.args[0]).splitlines()
        where, _, what = first.partition(": ")
        lines = [f"\x1b[1;31m✗ check failed\x1b[0m on {where}"]
        lines += [f"  {part}" for part in what.split("; ") if part] + [f"  {line}" for line in rest]
        cause = self.__cause__
        if cause is not None:
            frames = [f for f in traceback.extract_tb(cause.__traceback__) if not _in_package(f.filename)]
            if frames:
                lines.append("  in your code:")
                lines += [f"    {line.rstrip()}" for line in traceback.format_list(frames)]
        return lines


def _in_package(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent)


@dataclass(frozen=True)
class Case:
    """One fixed input: a label a learner can read, and the arguments."""

    label: str
    args: tuple
    kwargs: dict = field(default_factory=dict)


def case(label: str, *args, **kwargs) -> Case:
    return Case(label, args, kwargs)


# Tolerances by result dtype: equivalent formulas agree this well; a wrong formula does not.
TOLERANCES = {
    torch.float64: (1e-7, 1e-10),
    torch.float32: (1e-4, 1e-6),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}


TIME_LIMIT_S = 10.0   # per test case; every reference runs in milliseconds on these inputs


def compare(name: str, student_fn: Callable, reference_fn: Callable, cases: Sequence[Case], *,
            outputs: Sequence[str] | None = None, tolerances: dict | None = None) -> Callable:
    """Run `student_fn` and `reference_fn` on every case and compare the results.

    Returns `student_fn` when every case agrees (printing a ✓ line), the reference when `student_fn`
    raises NotImplementedError (printing a note), and raises CheckFailed otherwise.
    `outputs` names the parts of a tuple result, e.g. ("mean", "variance").
    """
    if not callable(student_fn):
        raise TypeError(f"{name}: pass your function itself, e.g. dc.checks.{name}(my_fn); "
                        f"got {type(student_fn).__name__}")
    tol = {**TOLERANCES, **(tolerances or {})}
    for c in cases:
        where = f"{name}({c.label})"
        expected = reference_fn(*_clone(c.args), **_clone(c.kwargs))
        args, kwargs = _clone(c.args), _clone(c.kwargs)
        state = _global_state()
        try:
            with time_limit(TIME_LIMIT_S):
                got = student_fn(*args, **kwargs)
        except NotImplementedError as err:
            print(f"… {name}: not implemented yet ({err}). The notebook carries on with the reference "
                  "implementation; come back to this exercise any time.")
            return reference_fn
        except CheckTimeout as err:
            raise CheckFailed(f"{where}: your function is {err} on an input this small (an endless loop? "
                              "a loop over every pixel?); the reference takes milliseconds") from None
        except Exception as err:
            raise CheckFailed(f"{where} raised {type(err).__name__}: {err}") from err
        _check_global_state(where, state)
        _check_inputs_unchanged(where, c, args, kwargs)
        _compare(where, got, expected, outputs, tol)
    print(f"✓ {name}: matches the reference on {len(cases)} test cases ({'; '.join(c.label for c in cases)})")
    return student_fn


class Check:
    """A named exercise check: ``Check(name, reference, cases)(student_fn)`` runs `compare`.

    `cases` is a function returning the list of cases; it is called on every run, so each run gets
    fresh tensors. `post` (optional) maps both results before comparing, e.g. to broadcast.
    """

    def __init__(self, name: str, reference: Callable, cases: Callable[[], list[Case]], *,
                 outputs: Sequence[str] | None = None, post: Callable | None = None,
                 tolerances: dict | None = None, doc: str = ""):
        self.name, self.reference, self.cases = name, reference, cases
        self.outputs, self.post, self.tolerances = outputs, post, tolerances
        self.__doc__ = doc or f"Check an implementation of {name} against the reference."
        _REFERENCES[id(reference)] = reference

    def __call__(self, student_fn: Callable) -> Callable:
        try:
            return self._run(student_fn)
        except CheckFailed as err:
            hint = f"\nthe exercise: {self.__doc__}" if self.__doc__ else ""
            raise CheckFailed(f"{err.args[0]}{hint}") from err.__cause__

    def _run(self, student_fn: Callable) -> Callable:
        if self.post is None:
            return compare(self.name, student_fn, self.reference, self.cases(), outputs=self.outputs,
                           tolerances=self.tolerances)
        post = self.post
        result = compare(self.name, _Posted(student_fn, post), _Posted(self.reference, post), self.cases(),
                         outputs=self.outputs, tolerances=self.tolerances)
        return result.fn  # the learner's function (or the reference), not the wrapper

    def __repr__(self) -> str:
        return f"<check {self.name}: call dc.checks.{self.name}(your_function)>"


_REFERENCES: dict[int, Callable] = {}


def is_reference(fn: Callable) -> bool:
    """True when ``fn`` is a check's reference, i.e. the check found the exercise still blank and handed the
    reference back. Notebooks use it so that a blank exercise never prints results as if they were yours."""
    return _REFERENCES.get(id(fn)) is fn


def whose(fn: Callable, name: str) -> str:
    """ "your ddim_step", or "the reference ddim_step (your exercise is still blank)"."""
    return f"the reference {name} (your exercise is still blank)" if is_reference(fn) else f"your {name}"


@dataclass
class _Posted:
    fn: Callable
    post: Callable

    def __call__(self, *args, **kwargs):
        return self.post(self.fn(*args, **kwargs), *args, **kwargs)


# --- comparing results --------------------------------------------------------------------------
def _clone(obj):
    """A deep copy of the tensors in a case: inside tuples, lists, dicts and objects (a NoiseSchedule)."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if hasattr(obj, "__dict__") and not callable(obj) and any(isinstance(v, torch.Tensor)
                                                               for v in vars(obj).values()):
        return copy.deepcopy(obj)
    return obj


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and \
            bool(torch.equal(a, b) or (a.is_floating_point() and torch.allclose(a, b, rtol=0, atol=0,
                                                                                  equal_nan=True)))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if hasattr(a, "__dict__") and not callable(a) and type(a) is type(b):
        return _same(vars(a), vars(b))
    return True


def _check_inputs_unchanged(where: str, c: Case, args: tuple, kwargs: dict) -> None:
    named = [(f"argument {i + 1}", a, b) for i, (a, b) in enumerate(zip(c.args, args, strict=True))]
    named += [(f"argument {k}=", c.kwargs[k], kwargs[k]) for k in c.kwargs]
    for label, before, after in named:
        if not _same(before, after):
            what = "" if isinstance(before, torch.Tensor) else f" (the {type(before).__name__}'s tensors)"
            raise CheckFailed(f"{where}: your function changed its {label}{what} in place; compute a new "
                              "tensor instead (avoid +=, *=, .add_() and friends on inputs)")


def _global_state() -> tuple:
    return torch.get_default_dtype(), torch.is_grad_enabled()


def _check_global_state(where: str, before: tuple) -> None:
    after = _global_state()
    if after != before:
        torch.set_default_dtype(before[0])
        torch.set_grad_enabled(before[1])
        what = "torch's default dtype (torch.set_default_dtype)" if after[0] != before[0] else \
            "torch's gradient mode (torch.set_grad_enabled)"
        raise CheckFailed(f"{where}: your function changed {what} for the whole notebook; leave global "
                          "settings alone (restored now)")


class CheckTimeout(Exception):
    """A learner's function ran past the check's time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CheckTimeout after ``seconds`` (POSIX, main thread: where a Jupyter kernel runs cells);
    elsewhere no limit."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or not seconds:
        yield
        return

    def expire(signum, frame):
        raise CheckTimeout(f"still running after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _compare(where: str, got, expected, outputs, tol) -> None:
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            what = f"a {type(got).__name__} of length {len(got)}" if isinstance(got, (tuple, list)) else \
                _describe(got)
            names = f" ({', '.join(outputs)})" if outputs else ""
            raise CheckFailed(f"{where}: expected a tuple of {len(expected)} results{names}, got {what}")
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            part = outputs[i] if outputs else f"result[{i}]"
            _compare(f"{where}, {part}", g, e, None, tol)
    elif isinstance(expected, torch.Tensor):
        _compare_tensors(where, got, expected, tol)
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        _compare_numbers(where, got, float(expected), tol)
    elif got != expected:
        raise CheckFailed(f"{where}: expected {expected!r}, got {got!r}")


def _describe(obj) -> str:
    if obj is None:
        return "None (did you forget `return`?)"
    return f"a {type(obj).__module__}.{type(obj).__name__}"


def _compare_numbers(where: str, got, expected: float, tol) -> None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        raise CheckFailed(f"{where}: expected a number, got {_describe(got)}")
    rtol, atol = tol[torch.float64]
    if not math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
        raise CheckFailed(f"{where}: wrong value: expected {expected:.8g}, got {got:.8g}")


def _compare_tensors(where: str, got, expected: torch.Tensor, tol) -> None:
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"{where}: expected a torch.Tensor, got {_describe(got)}")
    if got.shape != expected.shape:
        raise CheckFailed(f"{where}: wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}")
    if got.dtype != expected.dtype:
        raise CheckFailed(f"{where}: wrong dtype: expected {expected.dtype}, got {got.dtype} "
                          "(keep the dtype of the inputs; cast schedule tables with .to(x))")
    if got.device != expected.device:
        raise CheckFailed(f"{where}: wrong device: expected {expected.device}, got {got.device}")
    if not expected.is_floating_point():
        bad = got != expected
        if bool(bad.any()):
            _raise_value(where, got, expected, bad, "")
        return
    nan_bad = torch.isnan(got) != torch.isnan(expected)
    if bool(nan_bad.any()):
        i = _index(nan_bad)
        raise CheckFailed(f"{where}: NaN mismatch at index {i}: expected {expected[i].item():.8g}, "
                          f"got {got[i].item():.8g}")
    rtol, atol = tol.get(expected.dtype, TOLERANCES[torch.float32])
    bad = ~torch.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if bool(bad.any()):
        _raise_value(where, got, expected, bad, f" (tolerance: rtol={rtol:g}, atol={atol:g})")


def _index(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in mask.nonzero()[0])


def _raise_value(where, got, expected, bad, tol_note) -> None:
    i = _index(bad)
    diff = (got.double() - expected.double()).abs().masked_fill(~bad, 0)
    j = _index(diff == diff.max())
    cause = diagnose(got, expected)
    raise CheckFailed(f"{where}: wrong value at index {i}: expected {expected[i].item():.8g}, got "
                      f"{got[i].item():.8g}; {int(bad.sum())} of {bad.numel()} values differ, the largest "
                      f"difference is {diff[j].item():.3g} at index {j}{tol_note}"
                      + (f"\nlikely cause: {cause}" if cause else ""))


def diagnose(got: torch.Tensor, expected: torch.Tensor) -> str:
    """Name the usual slip when the wrong result is a simple function of the right one: a flipped sign, a
    missing or extra square root, a constant factor or offset, a table shifted by one index (t vs t − 1).
    Empty when none fits."""
    g, e = got.double().flatten(), expected.double().flatten()
    if not (torch.isfinite(g).all() and torch.isfinite(e).all()) or e.abs().max() == 0:
        return ""

    def close(a, b):
        return bool(torch.allclose(a, b, rtol=1e-5, atol=1e-8 * float(e.abs().max())))

    if close(g, -e):
        return "the sign is flipped (got = −expected)"
    if bool((e >= 0).all()) and close(g, e**2):
        return "a square root is missing (got = expected²)"
    if bool((g >= 0).all()) and close(g**2, e):
        return "a square root too many (got = √expected)"
    nz = e.abs() > 1e-12 * float(e.abs().max())
    ratio = g[nz] / e[nz]
    if nz.sum() > 1 and close(g, float(ratio.median()) * e):
        return f"off by a constant factor (got = {float(ratio.median()):.4g} × expected)"
    offset = float((g - e).median())
    if len(e) > 1 and close(g, e + offset):
        return f"off by a constant (got = expected {'+' if offset >= 0 else '−'} {abs(offset):.4g})"
    if got.dim() == 1 and len(e) > 2 and (close(g[1:], e[:-1]) or close(g[:-1], e[1:])):
        return "shifted by one index (t versus t − 1? the tables start at t = 1)"
    return ""


# --- reference implementations and cases for the course's exercises ----------------------------------
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def _t(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def _randint(g: torch.Generator, high: int, n: int) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=g)


def exact(fn: Callable) -> Callable:
    """`fn` evaluated in float64 and rounded to the dtype of its first floating-point tensor argument:
    the reference a learner's float32 code is compared with, free of the reference's own rounding."""

    def wrapped(*args, **kwargs):
        floats = [isinstance(a, torch.Tensor) and a.is_floating_point() for a in args]
        dtype = next((a.dtype for a, f in zip(args, floats, strict=True) if f), torch.float64)
        up = [a.double() if f else a for a, f in zip(args, floats, strict=True)]
        return _cast(fn(*up, **kwargs), dtype)

    wrapped.__name__ = wrapped.__qualname__ = getattr(fn, "__name__", "reference")
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _cast(obj, dtype):
    if isinstance(obj, torch.Tensor) and obj.is_floating_point():
        return obj.to(dtype)
    if isinstance(obj, tuple):
        return tuple(_cast(o, dtype) for o in obj)
    return obj


def _snr_reference(alpha_bars: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021, eq. 1: SNR = α²/σ²)."""
    return alpha_bars / (1 - alpha_bars)


def _snr_cases() -> list[Case]:
    return [
        case("linear schedule ᾱ, T=1000", NoiseSchedule.linear(1000).alpha_bars),
        case("cosine schedule ᾱ, T=50", NoiseSchedule.cosine(50).alpha_bars),
        case("5 float32 values", torch.tensor([0.999, 0.9, 0.5, 0.1, 0.001], dtype=torch.float32)),
    ]


def _alpha_bars_reference(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s) (DDPM eq. 4), in the dtype of `betas`."""
    return NoiseSchedule(betas).alpha_bars


def _alpha_bars_cases() -> list[Case]:
    return [
        case("linear β, T=1000", NoiseSchedule.linear(1000).betas),
        case("cosine β, T=20", NoiseSchedule.cosine(20).betas),
        case("7 random float32 β", torch.empty(7).uniform_(1e-3, 0.2, generator=_gen(0))),
    ]


def _q_sample_cases() -> list[Case]:
    g, lin, cos = _gen(1), NoiseSchedule.linear(1000), NoiseSchedule.cosine(100)
    x0, eps = _randn(g, 4, 1, 8, 8), _randn(g, 4, 1, 8, 8)
    pts, pts_eps = _randn(g, 6, 2), _randn(g, 6, 2)
    x64, eps64 = _randn(g, 3, 3, 4, 4).double(), _randn(g, 3, 3, 4, 4).double()
    return [
        case("images (4,1,8,8), t=[0,10,500,999], linear T=1000", x0, _t(0, 10, 500, 999), eps, lin),
        case("2-D points (6,2), random t, cosine T=100", pts, _randint(g, 100, 6), pts_eps, cos),
        case("float64 images (3,3,4,4), linear T=1000", x64, _t(999, 0, 250), eps64, lin),
    ]


def _posterior_cases() -> list[Case]:
    # float32 only where β_t is not tiny: 1 − ᾱ_t/ᾱ_{t−1} loses digits in float32 at small t
    g, lin, cos = _gen(2), NoiseSchedule.linear(1000), NoiseSchedule.cosine(100)
    x0, x_t = _randn(g, 4, 1, 6, 6), _randn(g, 4, 1, 6, 6)
    p0, p_t = _randn(g, 5, 2).double(), _randn(g, 5, 2).double()
    return [
        case("images (4,1,6,6), t=[100,300,600,999], linear T=1000", x0, x_t, _t(100, 300, 600, 999), lin),
        case("float64 points (5,2), t=[0,1,2,500,999]: at t=0 the previous level is the data", p0, p_t,
             _t(0, 1, 2, 500, 999), lin),
        case("float64 points (5,2), cosine T=100", p0, p_t, _randint(g, 100, 5), cos),
    ]


def _expand_variance(result, x0, x_t, t, s):
    """A variance of shape (B, 1, ...) is as good as one of x_t's shape: compare them broadcast."""
    if isinstance(result, tuple) and len(result) == 2 and all(isinstance(r, torch.Tensor) for r in result):
        mean, var = result
        try:
            return mean, var.expand_as(x_t)
        except RuntimeError:
            return result
    return result


def _eps_to_x0_cases() -> list[Case]:
    g, ab = _gen(3), NoiseSchedule.linear(1000).alpha_bars
    x_t, eps = _randn(g, 4, 1, 8, 8), _randn(g, 4, 1, 8, 8)
    return [
        case("one ᾱ for the batch (a float)", x_t, eps, float(ab[400])),
        case("one ᾱ per sample, shape (4,)", x_t, eps, ab[_t(0, 100, 500, 999)]),
        case("float64 points (5,2)", _randn(g, 5, 2).double(),
             _randn(g, 5, 2).double(), ab[_t(3, 30, 300, 600, 900)]),
    ]


snr = Check("snr", exact(_snr_reference), _snr_cases,
            doc="snr(alpha_bars) -> alpha_bars / (1 - alpha_bars), elementwise, same shape and dtype.")
alpha_bars = Check("alpha_bars", exact(_alpha_bars_reference), _alpha_bars_cases,
                   doc="alpha_bars(betas) -> cumulative product of 1 - betas, same shape and dtype.")
q_sample = Check("q_sample", exact(diffusion.q_sample), _q_sample_cases,
                 doc="q_sample(x0, t, noise, s) -> sqrt(ab_t) x0 + sqrt(1 - ab_t) noise (DDPM eq. 4).")
posterior_mean_variance = Check(
    "posterior_mean_variance", exact(diffusion.posterior_mean_variance), _posterior_cases,
    outputs=("mean", "variance"), post=_expand_variance,
    doc="posterior_mean_variance(x0, x_t, t, s) -> (mean, variance) of q(x_{t-1} | x_t, x0) (DDPM eq. 6-7).")
eps_to_x0 = Check("eps_to_x0", exact(diffusion.eps_to_x0), _eps_to_x0_cases,
                  doc="eps_to_x0(x_t, eps, ab) -> (x_t - sqrt(1 - ab) eps) / sqrt(ab) (DDIM eq. 9).")

ALL = {c.name: c for c in (snr, alpha_bars, q_sample, posterior_mean_variance, eps_to_x0)}


# --- notebook 03: DDPM sampling --------------------------------------------------------------------------
DDPM_VARIANCES = ("fixed_small", "fixed_large")


def _ddpm_step_reference(x_t, eps, t, s, z, variance="fixed_small"):
    """One ancestral step x_t → x_{t−1} (DDPM Algorithm 2, line 4): x_{t−1} = μ̃_t(x_t, x̂_0) + σ_t z with
    x̂_0 from ε̂ (eq. 15), μ̃ the posterior mean (eq. 7; the same as eq. 11) and σ_t² = β̃_t ("fixed_small")
    or β_t ("fixed_large"); at t = 0 (the paper's t = 1) no noise is added."""
    if variance not in DDPM_VARIANCES:
        raise ValueError(f"variance must be one of {DDPM_VARIANCES}, got {variance!r}")
    x0 = diffusion.eps_to_x0(x_t, eps, s.alpha_bars[t])                       # eq. 15
    mean, var = diffusion.posterior_mean_variance(x0, x_t, t, s)              # eq. 7 (β̃_t, 0 at t = 0)
    if variance == "fixed_large":
        beta = torch.where(t > 0, s.betas[t], torch.zeros((), dtype=torch.float64))
        var = beta.to(x_t).reshape(-1, *([1] * (x_t.dim() - 1)))
    return mean + var.sqrt() * z


def _ddpm_step_cases() -> list[Case]:
    # float32 only where β_t is not tiny; the small-t cases are float64 (see _posterior_cases)
    g, lin, cos = _gen(30), NoiseSchedule.linear(1000), NoiseSchedule.cosine(100)
    img = [_randn(g, 4, 1, 6, 6) for _ in range(3)]
    pts = [_randn(g, 5, 2).double() for _ in range(3)]
    t_small = _t(0, 1, 2, 500, 999)
    return [
        case("images (4,1,6,6), t=[100,300,600,999], σ² = β̃ (fixed_small)", img[0], img[1],
             _t(100, 300, 600, 999), lin, img[2]),
        case("float64 points (5,2), t=[0,1,2,500,999], fixed_small: at t=0 σ = 0", *pts[:2], t_small, lin,
             pts[2]),
        case("float64 points (5,2), t=[0,1,2,500,999], σ² = β_t (fixed_large): no noise at t=0", *pts[:2],
             t_small, lin, pts[2], "fixed_large"),
        case("images (4,1,6,6), cosine T=100, fixed_large", img[0], img[1], _t(10, 40, 70, 99), cos, img[2],
             "fixed_large"),
    ]


ddpm_step = Check("ddpm_step", exact(_ddpm_step_reference), _ddpm_step_cases,
                  doc="ddpm_step(x_t, eps, t, s, z, variance='fixed_small') -> x_{t-1} = mu_tilde + "
                      "sigma_t z (DDPM Algorithm 2, eq. 11); sigma_t^2 = beta_tilde_t or beta_t; 0 at t = 0.")


# --- notebook 04: DDIM -----------------------------------------------------------------------------------
def _ddim_step_reference(x_t, eps, ab_t: float, ab_prev: float, eta: float, z):
    """One DDIM step (Song et al. 2021, eq. 12) from level ᾱ_t to ᾱ_prev:
        x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z,   x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t,
        σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)                                (eq. 16)."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
        raise ValueError(f"eta must be a number >= 0, got {eta!r}")
    if not 0 < ab_t < ab_prev <= 1:
        raise ValueError(f"need 0 < ab_t < ab_prev <= 1, got ab_t={ab_t}, ab_prev={ab_prev}")
    x0 = diffusion.eps_to_x0(x_t, eps, ab_t)                                  # "predicted x_0"
    sig = eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))  # eq. 16
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sig**2) * eps + sig * z


def _ddim_step_cases() -> list[Case]:
    g, ab = _gen(40), NoiseSchedule.linear(1000).alpha_bars.tolist()
    img = [_randn(g, 4, 1, 6, 6) for _ in range(3)]
    pts = [_randn(g, 5, 2).double() for _ in range(3)]
    return [
        case("images (4,1,6,6), η=0 (deterministic), t=500 → 480", *img[:2], ab[500], ab[480], 0.0, img[2]),
        case("images (4,1,6,6), η=1 (DDPM's β̃), t=500 → 480", *img[:2], ab[500], ab[480], 1.0, img[2]),
        case("images (4,1,6,6), η=0.5, a long skip t=999 → 899", *img[:2], ab[999], ab[899], 0.5, img[2]),
        case("float64 points (5,2), η=1, last step to ᾱ_prev = 1 (σ = 0)", *pts[:2], ab[19], 1.0, 1.0,
             pts[2]),
        case("float64 points (5,2), η=0.3, t=200 → 100", *pts[:2], ab[200], ab[100], 0.3, pts[2]),
    ]


def _slerp_reference(z0, z1, alpha: float):
    """Spherical linear interpolation (Shoemake 1985) between z0 and z1, each seen as one flat vector:
        slerp = sin((1 − α)θ)/sin θ · z0 + sin(αθ)/sin θ · z1,   cos θ = ⟨z0, z1⟩/(‖z0‖ ‖z1‖),
    and plain linear interpolation when θ ≈ 0 (parallel vectors, where sin θ = 0)."""
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    a, b = z0.flatten(), z1.flatten()
    theta = torch.arccos((a @ b / (a.norm() * b.norm())).clamp(-1, 1))
    if float(theta.sin()) < 1e-6:
        return (1 - alpha) * z0 + alpha * z1
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / theta.sin()


def _slerp_cases() -> list[Case]:
    g = _gen(41)
    z = [_randn(g, 1, 1, 8, 8) for _ in range(4)]
    v0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    v60 = torch.tensor([0.5, 0.75**0.5], dtype=torch.float64)
    return [
        case("two noise tensors (1,1,8,8), α=0.5", z[0], z[1], 0.5),
        case("two noise tensors (1,1,8,8), α=0.2", z[2], z[3], 0.2),
        case("α=0 gives z0", z[0], z[3], 0.0),
        case("α=1 gives z1", z[1], z[2], 1.0),
        case("float64 unit vectors 60° apart, α=0.5: the unit vector at 30°", v0, v60, 0.5),
        case("parallel vectors z1 = 2·z0 (θ = 0): fall back to linear interpolation",
             torch.tensor([[3.0, 4.0]]), torch.tensor([[6.0, 8.0]]), 0.25),
    ]


ddim_step = Check("ddim_step", exact(_ddim_step_reference), _ddim_step_cases,
                  doc="ddim_step(x_t, eps, ab_t, ab_prev, eta, z) -> sqrt(ab_prev) x0_hat + "
                      "sqrt(1 - ab_prev - sigma^2) eps + sigma z (DDIM eq. 12, sigma from eq. 16).")
slerp = Check("slerp", exact(_slerp_reference), _slerp_cases,
              doc="slerp(z0, z1, alpha) -> spherical interpolation between the flattened z0 and z1; "
                  "linear interpolation when they are parallel.")


# --- notebook 01: forward process / notebook 02: noise prediction -------------------------------------
def _log_snr_reference(alpha_bars: torch.Tensor) -> torch.Tensor:
    """λ = log ᾱ − log(1 − ᾱ) (Kingma et al. 2021, VDM §3), as `NoiseSchedule.log_snr` computes it."""
    return torch.log(alpha_bars) - torch.log1p(-alpha_bars)


def _log_snr_cases() -> list[Case]:
    return [
        case("linear schedule ᾱ, T=1000", NoiseSchedule.linear(1000).alpha_bars),
        case("cosine schedule ᾱ, T=50 (ᾱ_T ≈ 1e-9)", NoiseSchedule.cosine(50).alpha_bars),
        case("5 float32 values", torch.tensor([0.999, 0.9, 0.5, 0.1, 0.001], dtype=torch.float32)),
    ]


def _timestep_embedding_reference(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The U-Net's embedding [cos(t ω_k), sin(t ω_k)], ω_k = 10000^(−k/(dim/2)) (ddpm_course.unet)."""
    from .unet import timestep_embedding  # imported here: `dc.checks` stays light

    return timestep_embedding(t, dim)


def _timestep_embedding_cases() -> list[Case]:
    g = _gen(12)
    return [
        case("t=[0,1,10,999] (integers), dim=8", _t(0, 1, 10, 999), 8),
        case("16 random integer t, dim=48 (the MNIST U-Net's width)", _randint(g, 1000, 16), 48),
        case("fractional t=[0.5,123.25,998.75], dim=64", torch.tensor([0.5, 123.25, 998.75]), 64),
    ]


class _ToyEps:
    """A fixed, parameter-free stand-in for ε_θ whose output depends on x_t and on t."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x).reshape(-1, *[1] * (x.dim() - 1))
        return 0.5 * torch.tanh(x) + 0.3 * torch.sin(0.05 * t)

    def __repr__(self) -> str:
        return "toy ε-model"


def _tiny_unet():
    """The 'tiny' U-Net with every weight random (the zero-initialised output layers too), in eval mode."""
    from .unet import UNet

    with torch.random.fork_rng():  # a fixed network without touching the learner's random state
        torch.manual_seed(13)
        model = UNet("tiny").eval()
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0.0, 0.1)
    return model


def _simple_loss_reference(model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, s: NoiseSchedule):
    """DDPM eq. 14 for given t and ε: mean of (ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t))²."""
    return diffusion.simple_loss(model, x0, s, t=t, noise=noise)


def _simple_loss_cases() -> list[Case]:
    g, lin, cos = _gen(14), NoiseSchedule.linear(1000), NoiseSchedule.cosine(100)
    toy, unet = _ToyEps(), _tiny_unet()
    return [
        case("toy ε-model, images (4,1,8,8), t=[0,10,500,999], linear T=1000", toy, _randn(g, 4, 1, 8, 8),
             _t(0, 10, 500, 999), _randn(g, 4, 1, 8, 8), lin),
        case("toy ε-model, 2-D points (6,2), random t, cosine T=100", toy, _randn(g, 6, 2),
             _randint(g, 100, 6), _randn(g, 6, 2), cos),
        case("a tiny U-Net, digits-shaped (3,1,28,28), t=[5,250,900], linear T=1000", unet,
             _randn(g, 3, 1, 28, 28), _t(5, 250, 900), _randn(g, 3, 1, 28, 28), lin),
    ]


log_snr = Check("log_snr", exact(_log_snr_reference), _log_snr_cases,
                doc="log_snr(alpha_bars) -> log(alpha_bars) - log(1 - alpha_bars), elementwise, same shape "
                    "and dtype (VDM's λ).")
# float32 sines of t·ω up to t = 999: equivalent formulas for ω differ by a few 1e-5, a wrong one by > 1e-2
timestep_embedding = Check(
    "timestep_embedding", _timestep_embedding_reference, _timestep_embedding_cases,
    tolerances={torch.float32: (1e-4, 5e-4)},
    doc="timestep_embedding(t, dim) -> (B, dim) float32 [cos(t w_k), sin(t w_k)], "
        "w_k = 10000^(-k/(dim/2)), k = 0 .. dim/2 - 1 (Transformer sinusoids, as the course U-Net uses).")
simple_loss = Check("simple_loss", _simple_loss_reference, _simple_loss_cases,
                    doc="simple_loss(model, x0, t, noise, s) -> mean((noise - model(x_t, t))^2) with "
                        "x_t = q_sample(x0, t, noise, s) (DDPM eq. 14), a 0-dim tensor.")


# --- notebook 05: fast samplers ----------------------------------------------------------------------------
# Both exercises live in σ-space: x̃ = x/√ᾱ = x_0 + σ ε, where the probability-flow ODE is dx̃/dσ = ε̂(x̃, σ)
# (Karras et al. 2022, eq. 4). The references are written from the math of ddpm_course/samplers.py; after the
# fixed cases, a correct step is also run as a whole sampler and compared with dc.sample (see _SolverCheck).
def _heun_step_reference(x, sigma: float, sigma_next: float, eps):
    """One step of Heun's method on dx̃/dσ = ε̂ (Karras et al. 2022, Algorithm 1, deterministic):
        d = ε̂(x̃_i, σ_i),  x̃' = x̃_i + (σ_{i+1} − σ_i) d                       (an Euler step)
        if σ_{i+1} ≠ 0:  d' = ε̂(x̃', σ_{i+1}),  x̃_{i+1} = x̃_i + (σ_{i+1} − σ_i)(d + d')/2   (the correction)
    ε̂ is not defined at σ = 0, so the last step to σ = 0 is the Euler step alone."""
    d = eps(x, sigma)
    x_next = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_next
    return x + (sigma_next - sigma) * (d + eps(x_next, sigma_next)) / 2


def _dpmpp_2m_update_reference(x, sigma: float, sigma_next: float, D, D_prev, h_prev):
    """One DPM-Solver++(2M) update (Lu et al. 2022, Algorithm 2) from σ_i to σ_{i+1} > 0, in λ = −log σ:
        h = λ_{i+1} − λ_i = log(σ_i/σ_{i+1}),   x̃_{i+1} = (σ_{i+1}/σ_i) x̃_i − (e^{−h} − 1) D̂,
        D̂ = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1},  r = h_{i−1}/h;   first step (D_prev None): D̂ = D_i."""
    if not sigma > sigma_next > 0:
        raise ValueError(f"need sigma > sigma_next > 0, got sigma={sigma}, sigma_next={sigma_next} "
                         "(the last step to σ = 0 is x̃ = D, done by the sampler loop)")
    h = math.log(sigma / sigma_next)
    D_hat = D if D_prev is None else (1 + h / (2 * h_prev)) * D - h / (2 * h_prev) * D_prev
    return (sigma_next / sigma) * x - math.expm1(-h) * D_hat


class SigmaEps:
    """ε̂(x̃, σ) = (x̃ − D(x̃, σ))/σ in σ-space from an exact oracle of `ddpm_course.toy` (its `denoise`).
    ε̂ is not defined at σ = 0: calling it there raises a ValueError that says why."""

    def __init__(self, oracle, label: str):
        self.oracle, self.label = oracle, label

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        sigma = float(sigma)                                                   # a number or a 0-dim tensor
        if sigma <= 0:
            raise ValueError(f"{self.label} was called at σ = {sigma}: ε̂ is not defined at σ = 0, so the "
                             "last step to σ = 0 is the Euler step alone (Karras et al. 2022, Algorithm 1)")
        return (x - self.oracle.denoise(x, sigma)) / sigma

    def __repr__(self) -> str:
        return self.label


def _nb05_oracles():
    from .toy import GaussianOracle, MixtureOracle  # imported here: `dc.checks` stays light

    gauss = SigmaEps(GaussianOracle(None, mean=0.5, std=0.5), "ε̂ of Gaussian data N(0.5, 0.5²)")
    mix = SigmaEps(MixtureOracle(None, means=[[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]], stds=[0.15, 0.3, 0.2],
                                 weights=[0.5, 0.3, 0.2]), "ε̂ of a 3-component Gaussian mixture")
    return gauss, mix


def _heun_step_cases() -> list[Case]:
    g, (gauss, mix) = _gen(50), _nb05_oracles()
    return [
        case("Gaussian data, points (6,2), σ: 2.0 → 1.0", 0.5 + 2.0 * _randn(g, 6, 2), 2.0, 1.0, gauss),
        case("mixture, float64 points (5,2), σ: 10 → 4", 10.0 * _randn(g, 5, 2).double(), 10.0, 4.0, mix),
        case("mixture, points (6,2), a short step σ: 0.5 → 0.4", 0.5 * _randn(g, 6, 2), 0.5, 0.4, mix),
        case("Gaussian data, images (2,1,4,4), σ: 80 → 20", 80.0 * _randn(g, 2, 1, 4, 4), 80.0, 20.0, gauss),
        case("mixture, points (6,2), the last step σ: 0.3 → 0 (no correction)", 0.3 * _randn(g, 6, 2),
             0.3, 0.0, mix),
    ]


def _dpmpp_2m_update_cases() -> list[Case]:
    g = _gen(51)
    pts = [_randn(g, 6, 2) for _ in range(3)]
    img = [_randn(g, 2, 1, 4, 4).double() for _ in range(3)]
    h_prev = math.log(20.0 / 8.0)
    return [
        case("first step (D_prev=None, h_prev=None): the DDIM step, σ: 20 → 8", 20 * pts[0], 20.0, 8.0,
             pts[1], None, None),
        case("points (6,2), σ: 8 → 3, h_prev = log(20/8)", 8 * pts[0], 8.0, 3.0, pts[1], pts[2], h_prev),
        case("float64 images (2,1,4,4), σ: 1.0 → 0.2, h_prev = 0.3 (r = h_prev/h far from 1)", img[0], 1.0,
             0.2, img[1], img[2], 0.3),
        case("float64 images (2,1,4,4), equal steps in λ: σ: 0.5 → 0.25, h_prev = log 2", img[2], 0.5, 0.25,
             img[0], img[1], math.log(2.0)),
    ]


def heun_sampler_from_step(step, eps, x, sigmas):
    """Heun's sampler (Algorithm 1) from a step function: x̃_{i+1} = step(x̃_i, σ_i, σ_{i+1}, eps)."""
    for sig, sig_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x = step(x, sig, sig_next, eps)
    return x


def dpmpp_2m_sampler_from_update(update, eps, x, sigmas):
    """DPM-Solver++(2M) (Algorithm 2) from an update function: D_i = x̃_i − σ_i ε̂ each step, the update
    while σ_{i+1} > 0, and x̃ = D_i on the last step to σ = 0."""
    D_prev = h_prev = None
    for sig, sig_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        D = x - sig * eps(x, sig)                                              # data prediction x̂_0
        if sig_next == 0:
            return D
        x = update(x, sig, sig_next, D, D_prev, h_prev)
        D_prev, h_prev = D, math.log(sig / sig_next)
    return x


class _SolverCheck(Check):
    """A step check that, once every case agrees, also runs the learner's step as a whole sampler on a
    Karras grid with an exact mixture denoiser and compares the sample with ``dc.sample(sampler=...)``."""

    def __init__(self, name, reference, cases, *, sampler: str, loop: Callable, steps: int, doc: str):
        super().__init__(name, reference, cases, doc=doc)
        self.sampler, self.loop, self.steps = sampler, loop, steps

    def whole_sampler(self, x_T: torch.Tensor):
        """The package's sample from x_T on the Karras grid, and what a loop needs to redo it in σ-space:
        (sample, ε̂(x̃, σ), x̃ at σ_max, the list of σ ending in 0)."""
        from .samplers import sample
        from .toy import MixtureOracle

        s = NoiseSchedule.linear(1000)
        mixture = MixtureOracle(s, means=[[-1.0, 0.0], [1.0, 0.5]], stds=[0.2, 0.4])
        sigmas = s.grid(self.steps, "karras").sigmas.tolist()
        x_s = x_T * math.sqrt(1 + sigmas[0] ** 2)                              # x̃ = x/√ᾱ, ᾱ = 1/(1 + σ²)
        expected = sample(mixture, s, x_T, sampler=self.sampler, steps=self.steps, spacing="karras")
        return expected, SigmaEps(mixture, "ε̂ of a 2-component mixture"), x_s, sigmas

    def __call__(self, student_fn: Callable) -> Callable:
        fn = super().__call__(student_fn)
        if fn is not student_fn:                                               # blank exercise: the reference
            return fn
        x_T = torch.randn(16, 2, generator=_gen(52), dtype=torch.float64)
        expected, eps, x_s, sigmas = self.whole_sampler(x_T)
        where = f"{self.name}(iterated over a {self.steps}-step Karras grid, mixture data)"
        try:
            got = self.loop(student_fn, eps, x_s, sigmas)
        except Exception as err:
            raise CheckFailed(f"{where} raised {type(err).__name__}: {err}") from err
        _compare_tensors(where + f" vs dc.sample(sampler={self.sampler!r})", got, expected, TOLERANCES)
        print(f"✓ {self.name}: run as a whole sampler it reproduces dc.sample(sampler={self.sampler!r}, "
              f"spacing='karras', steps={self.steps})")
        return student_fn


heun_step = _SolverCheck(
    "heun_step", exact(_heun_step_reference), _heun_step_cases, sampler="heun", loop=heun_sampler_from_step,
    steps=6, doc="heun_step(x, sigma, sigma_next, eps) -> x̃_{i+1}: Euler step with slope eps(x, sigma), then "
                 "the trapezoidal correction with eps at sigma_next unless sigma_next == 0 (Karras Alg. 1).")
dpmpp_2m_update = _SolverCheck(
    "dpmpp_2m_update", exact(_dpmpp_2m_update_reference), _dpmpp_2m_update_cases, sampler="dpmpp_2m",
    loop=dpmpp_2m_sampler_from_update, steps=8,
    doc="dpmpp_2m_update(x, sigma, sigma_next, D, D_prev, h_prev) -> (sigma_next/sigma) x - expm1(-h) D_hat, "
        "h = log(sigma/sigma_next), D_hat = (1 + 1/(2r)) D - D_prev/(2r), r = h_prev/h; D_hat = D if D_prev "
        "is None (Lu et al. 2022, Algorithm 2).")


# --- notebook 07: few-step generation (progressive distillation) ------------------------------------------
class _GaussianTeacher:
    """The exact clean prediction of data N(mean, std²) at the two levels of a teacher's double step:
    x̂(z, k) = mean + std² α_k/(α_k² std² + σ_k²)(z − α_k mean), α_k = √ᾱ_k, σ_k² = 1 − ᾱ_k."""

    def __init__(self, ab_levels, mean=0.3, std=0.8):
        self.ab, self.mean, self.std = tuple(ab_levels), mean, std

    def __call__(self, z, k):
        ab, s2 = self.ab[k], self.std**2
        a = math.sqrt(ab)
        return self.mean + s2 * a / (ab * s2 + 1 - ab) * (z - a * self.mean)

    def __repr__(self) -> str:
        return "Gaussian teacher"


class _TanhTeacher:
    """A fixed nonlinear stand-in for a network's clean prediction, different at each level k."""

    def __call__(self, z, k):
        return torch.tanh((1.5 + k) * z) - 0.2 * k

    def __repr__(self) -> str:
        return "tanh teacher"


def _two_ddim_steps_cases() -> list[Case]:
    from .distill import halving

    g, lv = _gen(70), halving(NoiseSchedule.linear(1000), 4)
    levels = [tuple(float(v[i]) for v in (lv.ab_t, lv.ab_mid, lv.ab_next)) for i in range(4)]
    img, pts = _randn(g, 3, 1, 6, 6), _randn(g, 5, 2).double()
    return [
        case("Gaussian teacher, images (3,1,6,6), the first step of 4 (t=999 → 874 → 749)",
             _GaussianTeacher(levels[0][:2]), img, *levels[0]),
        case("tanh teacher, images (3,1,6,6), the second step of 4", _TanhTeacher(), img, *levels[1]),
        case("tanh teacher, float64 points (5,2), the last step: ᾱ_t'' = 1, the clean sample", _TanhTeacher(),
             pts, *levels[3]),
        case("Gaussian teacher, float64 points (5,2), ᾱ = 0.3 → 0.5 → 0.8", _GaussianTeacher((0.3, 0.5)), pts,
             0.3, 0.5, 0.8),
    ]


def _distill_target_cases() -> list[Case]:
    g = _gen(71)
    img, img2, pts, pts2 = _randn(g, 3, 1, 6, 6), _randn(g, 3, 1, 6, 6), _randn(g, 5, 2).double(), \
        _randn(g, 5, 2).double()
    return [
        case("images (3,1,6,6), ᾱ_t = 0.1 → ᾱ_t'' = 0.4", img, img2, 0.1, 0.4),
        case("images (3,1,6,6), the last step: ᾱ_t'' = 1, so x̃ = z_t''", img, img2, 0.5, 1.0),
        case("float64 points (5,2), from t = T (ᾱ = 4.04e-5) to ᾱ = 0.06", pts, pts2, 4.0358e-5, 0.0603),
        case("float64 points (5,2), two close levels ᾱ = 0.90 → 0.91", pts, pts2, 0.90, 0.91),
    ]


def _loss_weight_cases() -> list[Case]:
    ab = NoiseSchedule.linear(1000).alpha_bars
    few = torch.tensor([1e-4, 0.3, 0.5, 0.7, 0.99], dtype=torch.float32)
    return [
        case("truncated_snr on the linear schedule's ᾱ (T=1000)", ab, "truncated_snr"),
        case("snr_plus_one on the linear schedule's ᾱ (T=1000)", ab, "snr_plus_one"),
        case("truncated_snr, 5 float32 values around SNR = 1", few, "truncated_snr"),
        case("snr_plus_one, 5 float32 values", few, "snr_plus_one"),
    ]


def _two_ddim_steps_reference(x0_fn, z_t, ab_t, ab_mid, ab_next):
    """Two DDIM steps t → t' → t'' (Salimans & Ho 2022, Algorithm 2, lines 7–8): ddpm_course.distill."""
    from .distill import two_ddim_steps as reference  # imported here: `dc.checks` stays light

    return reference(x0_fn, z_t, ab_t, ab_mid, ab_next)


def _distill_target_reference(z_t, z_next, ab_t, ab_next):
    """x̃ = (z_t'' − (σ_t''/σ_t) z_t)/(α_t'' − (σ_t''/σ_t) α_t) (Algorithm 2, line 9): ddpm_course.distill."""
    from .distill import distill_target as reference

    return reference(z_t, z_next, ab_t, ab_next)


def _loss_weight_reference(ab, kind):
    """max(SNR, 1) or SNR + 1 (Salimans & Ho 2022, §4): ddpm_course.distill.loss_weight."""
    from .distill import loss_weight as reference

    return reference(ab, kind)


two_ddim_steps = Check(
    "two_ddim_steps", _two_ddim_steps_reference, _two_ddim_steps_cases,  # not exact(): float32 x0_fn
    doc="two_ddim_steps(x0_fn, z_t, ab_t, ab_mid, ab_next) -> z_t'': two DDIM steps, each z_s = a_s x0 + "
        "(sig_s/sig_t)(z_t - a_t x0) with x0 = x0_fn(z, k), k = 0 then 1 (Salimans & Ho 2022, Alg. 2).")
distill_target = Check(
    "distill_target", exact(_distill_target_reference), _distill_target_cases,
    doc="distill_target(z_t, z_next, ab_t, ab_next) -> x_tilde = (z_next - (sig''/sig) z_t) / "
        "(a'' - (sig''/sig) a_t) (Salimans & Ho 2022, Algorithm 2, line 9).")
loss_weight = Check(
    "loss_weight", exact(_loss_weight_reference), _loss_weight_cases,
    doc="loss_weight(ab, kind) -> max(SNR, 1) for 'truncated_snr', SNR + 1 for 'snr_plus_one', "
        "SNR = ab / (1 - ab) (Salimans & Ho 2022, §4).")


# --- notebook 06: evaluation -----------------------------------------------------------------------------
def _frechet_distance_reference(mu1, cov1, mu2, cov2) -> float:
    """|μ₁ − μ₂|² + Tr(C₁ + C₂ − 2 (C₁C₂)^½) (Heusel et al. 2017, eq. 6): ddpm_course.metrics."""
    from .metrics import frechet_distance as reference  # imported here: `dc.checks` stays light

    return reference(mu1, cov1, mu2, cov2)


def _random_cov(g: torch.Generator, d: int, rank: int) -> torch.Tensor:
    a = torch.randn(d, rank, generator=g, dtype=torch.float64)
    return a @ a.T / rank


def _frechet_distance_cases() -> list[Case]:
    g = _gen(6)
    d = 5
    mu, cov = torch.randn(d, generator=g, dtype=torch.float64), _random_cov(g, d, 8)
    shift = torch.randn(d, generator=g, dtype=torch.float64)
    a = torch.rand(d, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(d, generator=g, dtype=torch.float64) + 0.1
    mu2, cov2 = torch.randn(d, generator=g, dtype=torch.float64), _random_cov(g, d, 8)
    mu3, cov3 = torch.randn(4, generator=g, dtype=torch.float64), _random_cov(g, 4, 2)
    mu4, cov4 = torch.randn(4, generator=g, dtype=torch.float64), _random_cov(g, 4, 6)
    return [
        case("identical Gaussians, d=5 (distance 0)", mu, cov, mu.clone(), cov.clone()),
        case("shifted means, equal covariances (= |μ₁−μ₂|²)", mu, cov, mu + shift, cov.clone()),
        case("diagonal covariances (= Σ(√a − √b)²)", mu, torch.diag(a), mu.clone(), torch.diag(b)),
        case("random means and full covariances, d=5", mu, cov, mu2, cov2),
        case("singular C₁ (rank 2 in d=4), full C₂", mu3, cov3, mu4, cov4),
    ]


def _mmd2_unbiased_reference(fx: torch.Tensor, fy: torch.Tensor) -> float:
    """Unbiased MMD², k(x, y) = (xᵀy/d + 1)³ (Bińkowski et al. 2018, §4): ddpm_course.metrics."""
    from .metrics import mmd2_unbiased as reference

    return float(reference(fx, fy))


def _mmd2_unbiased_cases() -> list[Case]:
    g = _gen(60)
    x = _randn(g, 40, 6).double()
    y = _randn(g, 30, 6).double()
    return [
        case("one distribution, 40 vs 30 samples, d=6 (≈ 0, may be negative)", x, y),
        case("means shifted by 0.5, d=6", x, y + 0.5),
        case("non-negative features (like ReLU outputs), 25 vs 35 samples, d=8",
             _randn(g, 25, 8).double().relu(), (_randn(g, 35, 8).double() * 1.5).relu()),
        case("3 vs 4 samples, d=2 (the diagonal matters most)",
             _randn(g, 3, 2).double(), _randn(g, 4, 2).double()),
    ]


frechet_distance = Check(
    "frechet_distance", _frechet_distance_reference, _frechet_distance_cases,
    doc="frechet_distance(mu1, cov1, mu2, cov2) -> float: |mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)), "
        "the squared Fréchet distance between two Gaussians (Heusel et al. 2017, eq. 6).")
mmd2_unbiased = Check(
    "mmd2_unbiased", _mmd2_unbiased_reference, _mmd2_unbiased_cases,
    doc="mmd2_unbiased(fx, fy) -> float: unbiased MMD^2 of feature sets (m, d) and (n, d) with the cubic "
        "kernel k(x, y) = (x.y/d + 1)^3, diagonal terms left out (Bińkowski et al. 2018, §4).")


# --- notebook 08: class-conditional generation and classifier-free guidance ------------------------------
# The package applies guidance inside samplers.EpsModel (no stand-alone function), so the references are
# written here from the papers: Ho & Salimans (2021), eq. 6, in the convention s = 1 + w of dc.sample.
def _guided_eps_reference(eps_cond, eps_null, scale: float):
    """Classifier-free guidance with scale s (dc.sample's ``guidance_scale``):
        ε̃ = ε_∅ + s (ε_c − ε_∅),
    which is Ho & Salimans' eq. 6, ε̃ = (1 + w) ε_c − w ε_∅, with w = s − 1. s = 0: unconditional,
    s = 1: conditional, s > 1: guided."""
    return eps_null + scale * (eps_cond - eps_null)


def _guided_eps_cases() -> list[Case]:
    g = _gen(80)
    img = [_randn(g, 4, 1, 8, 8) for _ in range(2)]
    pts = [_randn(g, 5, 2).double() for _ in range(2)]
    return [
        case("images (4,1,8,8), s=3 (w=2)", *img, 3.0),
        case("images (4,1,8,8), s=1: the conditional ε_c", *img, 1.0),
        case("images (4,1,8,8), s=0: the unconditional ε_∅", *img, 0.0),
        case("float64 points (5,2), s=7.5", *pts, 7.5),
        case("float64 points (5,2), s=1.5", *pts, 1.5),
    ]


class _GuidanceCheck(Check):
    """guided_eps: the fixed cases; a hint when the answer is Ho & Salimans' formula with w = scale (the
    other convention); then the learner's function run inside a whole DDIM sampler with an exact
    class-conditional mixture, against dc.sample(guidance_scale=...)."""

    def __call__(self, student_fn: Callable) -> Callable:
        try:
            fn = super().__call__(student_fn)
        except CheckFailed as err:
            if _uses_w_convention(student_fn):
                raise CheckFailed(f"{err}\nHint: your result is (1 + s) ε_c − s ε_∅, Ho & Salimans' "
                                  "eq. 6 with w = scale. Here `scale` is s = 1 + w (as in dc.sample and "
                                  "diffusers): ε̃ = ε_∅ + s (ε_c − ε_∅), so s = 1 means no guidance.") from err
            raise
        if fn is not student_fn:                                               # blank exercise: the reference
            return fn
        where = f"{self.name}(inside a 10-step DDIM sampler, exact class-conditional mixture, s=3)"
        expected, got = _guided_sampler_runs(student_fn, scale=3.0)
        if isinstance(got, Exception):
            raise CheckFailed(f"{where} raised {type(got).__name__}: {got}") from got
        _compare_tensors(where + " vs dc.sample(guidance_scale=3)", got, expected, TOLERANCES)
        print(f"✓ {self.name}: used as a model inside dc.sample it reproduces "
              "dc.sample(..., guidance_scale=3)")
        return student_fn


def _uses_w_convention(student_fn: Callable) -> bool:
    g = _gen(81)
    eps_c, eps_0 = _randn(g, 6).double(), _randn(g, 6).double()
    try:
        got = student_fn(eps_c.clone(), eps_0.clone(), 3.0)
    except Exception:  # noqa: BLE001 - any failure means "not the other convention"
        return False
    return isinstance(got, torch.Tensor) and got.shape == eps_c.shape and \
        bool(torch.allclose(got.double(), 4.0 * eps_c - 3.0 * eps_0))


def class_mixture(s: NoiseSchedule | None = None):
    """The exact class-conditional model the guidance check uses: three overlapping 2-D Gaussians
    (classes 0, 1, 2; null label 3), a `ddpm_course.toy.MixtureOracle`."""
    from .toy import MixtureOracle  # imported here: `dc.checks` stays light

    return MixtureOracle(s or NoiseSchedule.linear(1000), means=[[-1.0, 0.0], [1.0, 0.0], [0.0, 1.2]],
                         stds=[0.6, 0.6, 0.6])


class GuidedWith:
    """A conditional model whose classifier-free guidance is done by ``combine(ε_c, ε_∅, scale)``: call it
    as model(x, t, y) with guidance_scale=1 in dc.sample, and it guides by itself (2 NFE per call)."""

    def __init__(self, model, combine: Callable, scale: float):
        self.model, self.combine, self.scale = model, combine, scale

    def __call__(self, x, t, y):
        null = torch.full_like(y, self.model.null_label)
        return self.combine(self.model(x, t, y), self.model(x, t, null), self.scale)


def _guided_sampler_runs(student_fn: Callable, scale: float):
    """(dc.sample with guidance_scale, the same sampler guided by student_fn) on a fixed x_T and labels."""
    from .samplers import sample

    s = NoiseSchedule.linear(1000)
    model = class_mixture(s)
    x_T = torch.randn(12, 2, generator=_gen(82), dtype=torch.float64)
    y = torch.arange(12) % 3
    expected = sample(model, s, x_T, sampler="ddim", steps=10, y=y, guidance_scale=scale)
    try:
        got = sample(GuidedWith(model, student_fn, scale), s, x_T, sampler="ddim", steps=10, y=y)
    except Exception as err:  # noqa: BLE001 - reported by the caller as CheckFailed
        return expected, err
    return expected, got


def _keeps_generator_state(fn: Callable) -> Callable:
    """``fn`` run without consuming its ``generator`` argument, so the learner's function, called next with
    the same generator, draws the same random numbers."""

    def wrapped(*args, **kwargs):
        gens = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Generator)]
        states = [g_.get_state() for g_ in gens]
        try:
            return fn(*args, **kwargs)
        finally:
            for g_, state in zip(gens, states, strict=True):
                g_.set_state(state)

    wrapped.__name__ = wrapped.__qualname__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _drop_labels_reference(y, p: float, null_label: int, generator):
    """Label dropout for classifier-free guidance (Ho & Salimans 2021, Algorithm 1, p_uncond), as
    ddpm_course.train does it: u = torch.rand(len(y), generator=generator); where u < p the label becomes
    null_label. Returns a new tensor (y itself unchanged)."""
    drop = torch.rand(len(y), generator=generator) < p
    return torch.where(drop.to(y.device), torch.full_like(y, null_label), y)


def _drop_labels_cases() -> list[Case]:
    g = _gen(83)
    digits = _randint(g, 10, 1000)
    return [
        case("1000 digits, p=0.1, null label 10", digits, 0.1, 10, _gen(84)),
        case("1000 digits, p=0.5, null label 10", digits, 0.5, 10, _gen(85)),
        case("1000 digits, p=0: nothing dropped", digits, 0.0, 10, _gen(86)),
        case("1000 digits, p=1: everything dropped", digits, 1.0, 10, _gen(87)),
        case("int32 labels of 3 classes, p=0.2, null label 3", _randint(g, 3, 64).int(), 0.2, 3, _gen(88)),
    ]


def _per_digit_accuracy_reference(predicted, requested, num_classes: int = 10):
    """Accuracy on the requested digits, one per class k: among the samples requested as k, the fraction
    the classifier labels k. float64 tensor (num_classes,), NaN for a class never requested."""
    hits = torch.bincount(requested[predicted == requested].long(), minlength=num_classes)
    asked = torch.bincount(requested.long(), minlength=num_classes)
    return hits.double() / asked.double()                                      # 0/0 = NaN: never requested


def _per_digit_accuracy_cases() -> list[Case]:
    g = _gen(89)
    balanced = torch.arange(200) % 10
    noisy = torch.where(torch.rand(200, generator=g) < 0.3, _randint(g, 10, 200), balanced)
    unbalanced = _randint(g, 9, 50)                                            # digit 9 never requested
    return [
        case("200 balanced requests, 30% relabelled at random", noisy, balanced),
        case("every prediction right", balanced.clone(), balanced),
        case("50 requests without a single 9 (its accuracy is NaN)", _randint(g, 10, 50), unbalanced),
        case("int32 labels, 3 classes", _randint(g, 3, 30).int(), _randint(g, 3, 30).int(), 3),
    ]


guided_eps = _GuidanceCheck(
    "guided_eps", exact(_guided_eps_reference), _guided_eps_cases,
    doc="guided_eps(eps_cond, eps_null, scale) -> eps_null + scale (eps_cond - eps_null): classifier-free "
        "guidance with s = 1 + w (Ho & Salimans 2021, eq. 6: (1 + w) eps_cond - w eps_null).")
drop_labels = Check(
    "drop_labels", _keeps_generator_state(_drop_labels_reference), _drop_labels_cases,
    doc="drop_labels(y, p, null_label, generator) -> a new tensor: y with null_label where "
        "torch.rand(len(y), generator=generator) < p (label dropout for classifier-free guidance).")
per_digit_accuracy = Check(
    "per_digit_accuracy", _per_digit_accuracy_reference, _per_digit_accuracy_cases,
    doc="per_digit_accuracy(predicted, requested, num_classes=10) -> float64 (num_classes,): for each k, the "
        "fraction of samples requested as k that were classified as k; NaN where k was never requested.")

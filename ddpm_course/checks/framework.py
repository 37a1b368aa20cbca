"""The checking framework behind ``dc.checks``: run a learner's function and the reference on fixed cases,
compare the results and say which property failed. Also the helpers the notebook modules build their cases
with (seeded generators, integer timesteps, `exact` references).

Nothing here knows about an exercise; the checks themselves live in ``nbNN_topic.py``, one module per
notebook, and ``ddpm_course/checks/__init__.py`` collects them in ``ALL``.
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


_PACKAGE = Path(__file__).resolve().parents[1]


def _in_package(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(_PACKAGE)  # all of ddpm_course, not only checks/


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


# per test case; every reference runs in milliseconds on these inputs. `compare` reads it here, so change
# (or monkeypatch) ddpm_course.checks.framework.TIME_LIMIT_S, not the copy re-exported by the package.
TIME_LIMIT_S = 10.0


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


# --- building cases: seeded inputs, integer timesteps and exact references ----------------------------
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

"""Checks of notebook 08 (class-conditional generation and classifier-free guidance): drop_labels,
guided_eps (also run inside a whole sampler) and per_digit_accuracy."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import samplers
from ..schedule import NoiseSchedule
from ..toy import MixtureOracle
from .framework import (
    TOLERANCES,
    Case,
    Check,
    CheckFailed,
    _compare_tensors,
    _gen,
    _randint,
    _randn,
    case,
    exact,
)
from .randomness import keeps_generator_state


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
    s = NoiseSchedule.linear(1000)
    model = class_mixture(s)
    x_T = torch.randn(12, 2, generator=_gen(82), dtype=torch.float64)
    y = torch.arange(12) % 3
    expected = samplers.sample(model, s, x_T, sampler="ddim", steps=10, y=y, guidance_scale=scale)
    try:
        got = samplers.sample(GuidedWith(model, student_fn, scale), s, x_T, sampler="ddim", steps=10, y=y)
    except Exception as err:  # noqa: BLE001 - reported by the caller as CheckFailed
        return expected, err
    return expected, got


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
    "drop_labels", keeps_generator_state(_drop_labels_reference), _drop_labels_cases,
    doc="drop_labels(y, p, null_label, generator) -> a new tensor: y with null_label where "
        "torch.rand(len(y), generator=generator) < p (label dropout for classifier-free guidance).")
per_digit_accuracy = Check(
    "per_digit_accuracy", _per_digit_accuracy_reference, _per_digit_accuracy_cases,
    doc="per_digit_accuracy(predicted, requested, num_classes=10) -> float64 (num_classes,): for each k, the "
        "fraction of samples requested as k that were classified as k; NaN where k was never requested.")


CHECKS = (drop_labels, guided_eps, per_digit_accuracy)   # in notebook order: ddpm_course.checks.ALL

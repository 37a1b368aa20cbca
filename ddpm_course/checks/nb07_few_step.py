"""Checks of notebook 07 (few-step generation, progressive distillation): two_ddim_steps, distill_target,
loss_weight."""

from __future__ import annotations

import math

import torch

from .. import distill
from ..schedule import NoiseSchedule
from .framework import Case, Check, _gen, _randn, case, exact


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
    g, lv = _gen(70), distill.halving(NoiseSchedule.linear(1000), 4)
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
    return distill.two_ddim_steps(x0_fn, z_t, ab_t, ab_mid, ab_next)


def _distill_target_reference(z_t, z_next, ab_t, ab_next):
    """x̃ = (z_t'' − (σ_t''/σ_t) z_t)/(α_t'' − (σ_t''/σ_t) α_t) (Algorithm 2, line 9): ddpm_course.distill."""
    return distill.distill_target(z_t, z_next, ab_t, ab_next)


def _loss_weight_reference(ab, kind):
    """max(SNR, 1) or SNR + 1 (Salimans & Ho 2022, §4): ddpm_course.distill.loss_weight."""
    return distill.loss_weight(ab, kind)


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


CHECKS = (two_ddim_steps, distill_target, loss_weight)   # in notebook order: ddpm_course.checks.ALL

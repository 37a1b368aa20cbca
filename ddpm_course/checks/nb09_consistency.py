"""Checks of notebook 09 (consistency models): skip_out (the boundary-respecting parameterisation),
cd_target (the consistency-distillation target) and multistep (the multistep sampler, Algorithm 1). Each
case's label names the property it tests, so a failure says which one is broken."""

from __future__ import annotations

import torch

from .. import consistency
from ..schedule import NoiseSchedule
from .framework import Case, Check, _gen, _randn, case, exact


class _GaussianODE:
    """Data N(mean, std²): the exact ε̂(x̃, σ) = (x̃ − D)/σ of the PF-ODE, and its exact consistency function
    f*(x̃, σ) = mean + (x̃ − mean)·std/√(std² + σ²), the ODE solution from σ down to 0."""

    def __init__(self, mean=0.3, std=0.8):
        self.mean, self.std = mean, std

    def eps(self, x, sigma):
        sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        denoised = self.mean + self.std**2 / (self.std**2 + sig**2) * (x - self.mean)
        return (x - denoised) / sig

    def f(self, x, sigma):
        sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        return self.mean + (x - self.mean) * self.std / (self.std**2 + sig**2).sqrt()

    def __repr__(self) -> str:
        return f"Gaussian N({self.mean}, {self.std}²)"


class _TanhF:
    """A fixed nonlinear stand-in for a trained consistency function (it meets f(x, 0) = x)."""

    def __call__(self, x, sigma):
        sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
        return x / (1 + sig**2) + sig / (1 + sig**2).sqrt() * torch.tanh(x)

    def __repr__(self) -> str:
        return "tanh consistency function"


def _tanh_eps(x, sigma):
    sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.dim() - 1))
    return torch.tanh(x) * (1 + 0.1 * sig)


# --- exercise 9.1: c_skip and c_out ----------------------------------------------------------------------
def _skip_out_cases() -> list[Case]:
    sig = torch.tensor([0.0, 0.01, 0.3, 1.0, 3.0, 157.0], dtype=torch.float64)
    low = torch.tensor([0.0, 1e-3, 0.01], dtype=torch.float64)
    return [
        case("the boundary, ε-model, σ = 0, 0.001, 0.01: f(x, 0) = x needs c_skip = 1, c_out = 0 at σ = 0",
             low, "eps"),
        case("the boundary, v-model, σ = 0, 0.001, 0.01: f(x, 0) = x needs c_skip = 1, c_out = 0 at σ = 0",
             low, "v"),
        case("ε-model, σ from 0 to 157: f must be the denoiser x̃ − σ ε̂", sig, "eps"),
        case("v-model, σ from 0 to 157: f must be x̂_0 = √ᾱ z − √(1−ᾱ) v̂ with ᾱ = 1/(1+σ²), z = √ᾱ x̃", sig,
             "v"),
        case("v-model, float32 σ", sig.float()[1:], "v"),
    ]


def _skip_out_reference(sigma, prediction):
    """(c_skip, c_out): ε: (1, −σ); v: (1/(1+σ²), −σ/√(1+σ²)) (ddpm_course.consistency.skip_out)."""
    return consistency.skip_out(sigma, prediction)


# --- exercise 9.2: the consistency-distillation target ---------------------------------------------------
def _cd_target_cases() -> list[Case]:
    g = _gen(90)
    gauss = _GaussianODE()
    pts, img = _randn(g, 6, 2).double(), _randn(g, 3, 1, 5, 5)
    sig = consistency.cd_levels(NoiseSchedule.linear(1000), 18)
    return [
        case("Gaussian data, exact teacher and f: from σ = 2.0 to 1.5 the target ≈ f*(x̃_{n+1}, 2.0)",
             gauss.f, gauss.eps, 0.3 + 2.0 * pts, 2.0, 1.5),
        case("the last pair, σ_1 → σ_0 = 0: the teacher steps to the clean level, where f(x, 0) = x",
             _TanhF(), _tanh_eps, pts + 0.01 * _randn(g, 6, 2).double(), float(sig[1]), 0.0),
        case("images (3,1,5,5), tanh teacher and f, the top two levels of the 18-level grid (σ = 157 → 98)",
             _TanhF(), _tanh_eps, 80.0 * img, float(sig[-1]), float(sig[-2])),
        case("per-sample levels (6,) for a batch of points", _TanhF(), _tanh_eps, 3.0 * pts,
             torch.linspace(0.5, 4.0, 6, dtype=torch.float64),
             torch.linspace(0.4, 3.0, 6, dtype=torch.float64)),
    ]


def _cd_target_reference(f_ema, eps_fn, x_next, sig_next, sig_n):
    """f_θ⁻(x̃_{n+1} + (σ_n − σ_{n+1}) ε̂(x̃_{n+1}, σ_{n+1}), σ_n): ddpm_course.consistency.cd_target."""
    return consistency.cd_target(f_ema, eps_fn, x_next, sig_next, sig_n)


# --- exercise 9.3: multistep consistency sampling --------------------------------------------------------
def _multistep_cases() -> list[Case]:
    g = _gen(91)
    gauss = _GaussianODE()
    x_T, img_T = 157.0 * _randn(g, 8, 2).double(), 80.0 * _randn(g, 2, 1, 4, 4)
    z3 = [_randn(g, 8, 2).double() for _ in range(3)]
    z2 = [_randn(g, 2, 1, 4, 4) for _ in range(2)]
    return [
        case("one step: the sample is f(x̃_T, τ_0), no noise", _TanhF(), x_T, [157.0], []),
        case("Gaussian data, exact f: 4 levels τ = 157, 3, 0.8, 0.1 with given noise", gauss.f, x_T,
             [157.0, 3.0, 0.8, 0.1], z3),
        case("tanh f, 4 levels: re-noise x + τ z at each later level, then apply f there", _TanhF(), x_T,
             [157.0, 5.0, 1.0, 0.2], z3),
        case("images (2,1,4,4), 3 levels", _TanhF(), img_T, [80.0, 2.0, 0.5], z2),
    ]


def _multistep_reference(f, x_T, sigmas, noise):
    """Algorithm 1 of Song et al. 2023: ddpm_course.consistency.multistep with the given noise."""
    return consistency.multistep(f, x_T, sigmas, noise=noise)


skip_out = Check(
    "skip_out", exact(_skip_out_reference), _skip_out_cases, outputs=("c_skip", "c_out"),
    doc="skip_out(sigma, prediction) -> (c_skip, c_out) with f = c_skip·x̃ + c_out·F: for 'eps' (1, −σ), "
        "the denoiser x̃ − σ ε̂; for 'v' (1/(1+σ²), −σ/√(1+σ²)); both (1, 0) at σ = 0 (Song et al. 2023, "
        "eq. 5).")
cd_target = Check(
    "cd_target", _cd_target_reference, _cd_target_cases,
    doc="cd_target(f_ema, eps_fn, x_next, sig_next, sig_n) -> f_ema(x_hat, sig_n), x_hat = x_next + "
        "(sig_n − sig_next)·eps_fn(x_next, sig_next): one Euler (DDIM) step of the teacher, then the EMA "
        "model at the lower level (Song et al. 2023, Algorithm 2).")
multistep = Check(
    "multistep", _multistep_reference, _multistep_cases,
    doc="multistep(f, x_T, sigmas, noise) -> x: x = f(x_T, sigmas[0]); then for each later tau with its z "
        "in noise: x = f(x + tau·z, tau) (Song et al. 2023, Algorithm 1).")

CHECKS = (skip_out, cd_target, multistep)   # in notebook order: ddpm_course.checks.ALL

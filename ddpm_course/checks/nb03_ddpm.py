"""Checks of notebook 03 (DDPM sampling): posterior_mean_variance, ddpm_step, eps_to_x0 (x̂_0 from ε̂,
DDPM eq. 15, which ddpm_step builds on; no notebook calls this check yet) and score_fd (the score by central
finite differences, which §5 compares with −ε̂/√(1 − ᾱ))."""

from __future__ import annotations

import math

import torch

from .. import diffusion
from ..schedule import NoiseSchedule
from ..toy import MixtureOracle
from .framework import Case, Check, _gen, _randint, _randn, _t, case, exact


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


def _eps_to_x0_cases() -> list[Case]:
    g, ab = _gen(3), NoiseSchedule.linear(1000).alpha_bars
    x_t, eps = _randn(g, 4, 1, 8, 8), _randn(g, 4, 1, 8, 8)
    return [
        case("one ᾱ for the batch (a float)", x_t, eps, float(ab[400])),
        case("one ᾱ per sample, shape (4,)", x_t, eps, ab[_t(0, 100, 500, 999)]),
        case("float64 points (5,2)", _randn(g, 5, 2).double(),
             _randn(g, 5, 2).double(), ab[_t(3, 30, 300, 600, 900)]),
    ]


def _score_fd_reference(log_p, x: torch.Tensor, h: float) -> torch.Tensor:
    """∇ log p at the points x (B, d) by central differences, one coordinate at a time:
        ∂_j log p(x) ≈ (log p(x + h e_j) − log p(x − h e_j)) / (2h)      (error O(h²));
    log_p maps (B, d) to (B,)."""
    grad = torch.empty_like(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        grad[:, j] = (log_p(x + e) - log_p(x - e)) / (2 * h)
    return grad


class _LogDensity:
    """log p of a known distribution as a learner's score_fd receives it: a function (B, d) -> (B,)."""

    def __init__(self, fn, label: str):
        self.fn, self.label = fn, label

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            raise TypeError(f"{self.label} takes a tensor of points (B, d), got "
                            f"{getattr(x, 'shape', type(x).__name__)}")
        return self.fn(x)

    def __repr__(self) -> str:
        return self.label


def _score_fd_cases() -> list[Case]:
    g, lin = _gen(31), NoiseSchedule.linear(1000)
    mix = MixtureOracle.eight_gaussians(lin)
    three = MixtureOracle(lin, means=[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], stds=[0.3, 0.5])

    def gauss_logp(x):                                              # N(0.5, 0.7²) per coordinate
        return (-0.5 * ((x - 0.5) / 0.7) ** 2).sum(1) - x.shape[1] * math.log(0.7 * math.sqrt(2 * math.pi))

    def at(m, t, label):
        return _LogDensity(lambda x: m.log_prob(x, torch.full((len(x),), t)), label)

    return [
        case("log N(x; 0.5, 0.7²), float64 points (6,2), h = 1e-4",
             _LogDensity(gauss_logp, "log N(0.5, 0.7²)"), 2 * _randn(g, 6, 2).double(), 1e-4),
        case("eight Gaussians, log p_t at t = 100, float64 points (5,2), h = 1e-5",
             at(mix, 100, "log p_t, eight Gaussians, t = 100"), 1.5 * _randn(g, 5, 2).double(), 1e-5),
        case("eight Gaussians, log p_t at t = 600, float64 points (5,2), a coarse h = 0.05",
             at(mix, 600, "log p_t, eight Gaussians, t = 600"), _randn(g, 5, 2).double(), 0.05),
        case("a 2-component mixture in 3-D, t = 300, float64 points (4,3), h = 1e-4",
             at(three, 300, "log p_t, 3-D mixture, t = 300"), _randn(g, 4, 3).double(), 1e-4),
    ]


posterior_mean_variance = Check(
    "posterior_mean_variance", exact(diffusion.posterior_mean_variance), _posterior_cases,
    outputs=("mean", "variance"), post=_expand_variance,
    doc="posterior_mean_variance(x0, x_t, t, s) -> (mean, variance) of q(x_{t-1} | x_t, x0) (DDPM eq. 6-7).")
ddpm_step = Check("ddpm_step", exact(_ddpm_step_reference), _ddpm_step_cases,
                  doc="ddpm_step(x_t, eps, t, s, z, variance='fixed_small') -> x_{t-1} = mu_tilde + "
                      "sigma_t z (DDPM Algorithm 2, eq. 11); sigma_t^2 = beta_tilde_t or beta_t; 0 at t = 0.")
eps_to_x0 = Check("eps_to_x0", exact(diffusion.eps_to_x0), _eps_to_x0_cases,
                  doc="eps_to_x0(x_t, eps, ab) -> (x_t - sqrt(1 - ab) eps) / sqrt(ab) (DDIM eq. 9).")


score_fd = Check("score_fd", exact(_score_fd_reference), _score_fd_cases,
                 doc="score_fd(log_p, x, h) -> (B, d): column j is (log_p(x + h e_j) - log_p(x - h e_j)) "
                     "/ (2h), e_j the j-th unit vector (central differences); log_p maps (B, d) to (B,).")


CHECKS = (posterior_mean_variance, ddpm_step, eps_to_x0, score_fd)   # in notebook order: checks.ALL

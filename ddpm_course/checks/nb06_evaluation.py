"""Checks of notebook 06 (evaluation): frechet_distance and mmd2_unbiased."""

from __future__ import annotations

import torch

from .. import metrics
from .framework import Case, Check, _gen, _randn, case


def _frechet_distance_reference(mu1, cov1, mu2, cov2) -> float:
    """|μ₁ − μ₂|² + Tr(C₁ + C₂ − 2 (C₁C₂)^½) (Heusel et al. 2017, eq. 6): ddpm_course.metrics."""
    return metrics.frechet_distance(mu1, cov1, mu2, cov2)


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
    return float(metrics.mmd2_unbiased(fx, fy))


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


CHECKS = (frechet_distance, mmd2_unbiased)   # in notebook order: ddpm_course.checks.ALL

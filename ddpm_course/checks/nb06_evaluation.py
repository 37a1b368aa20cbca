"""Checks of notebook 06 (evaluation): frechet_distance, mmd2_unbiased, inception_score (from p(y | x)) and
fit_cost (the cost per network call from timings)."""

from __future__ import annotations

import torch

from .. import metrics
from .framework import Case, Check, CheckFailed, _gen, _randn, case


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


def _inception_score_reference(p_yx: torch.Tensor) -> float:
    """IS = exp(E_x KL(p(y | x) ‖ p(y))), p(y) = mean_x p(y | x) (Salimans et al. 2016): dc.metrics."""
    return metrics.inception_score_from_probs(p_yx)


def _probs(g: torch.Generator, n: int, k: int, sharp: float) -> torch.Tensor:
    return (sharp * torch.randn(n, k, generator=g, dtype=torch.float64)).softmax(1)


def _inception_score_cases() -> list[Case]:
    g = _gen(61)
    one_hot = torch.eye(10, dtype=torch.float64)[torch.randint(0, 10, (40,), generator=g)]
    return [
        case("soft predictions, 50 images × 10 classes", _probs(g, 50, 10, 1.0)),
        case("confident predictions, 64 images × 10 classes", _probs(g, 64, 10, 4.0)),
        case("one-hot predictions with exact zeros, 40 images (0 · log 0 = 0)", one_hot),
        case("float32, 30 images × 3 classes", _probs(g, 30, 3, 2.0).float()),
    ]


class _ISCheck(Check):
    """inception_score: on a failure, says which usual slip the result matches."""

    def _run(self, student_fn):
        try:
            return super()._run(student_fn)
        except CheckFailed as err:
            raise CheckFailed(err.args[0] + _inception_score_slip(student_fn)) from err


def _inception_score_slip(student_fn) -> str:
    p = _probs(_gen(62), 20, 5, 1.5)
    try:
        got = float(student_fn(p.clone()))
        zeros = float(student_fn(torch.eye(4, dtype=torch.float64).repeat(3, 1)))
    except Exception:
        return ""
    p_y = p.mean(0, keepdim=True)
    kl = (p * (p / p_y).log()).sum(1)
    reverse = (p_y * (p_y / p).log()).sum(1)
    slips = {"the mean KL without the exp (IS = exp of the mean KL)": float(kl.mean()),
             "the KL reversed: KL(p(y) ‖ p(y | x)) instead of KL(p(y | x) ‖ p(y))":
                 float(reverse.mean().exp()),
             "the exp taken per image and then averaged (exp of the mean, not the mean of exp)":
                 float(kl.exp().mean())}
    for what, value in slips.items():
        if abs(got - value) <= 1e-6 * max(1.0, abs(value)):
            return f"\nlikely slip: {what}"
    if zeros != zeros:                                                        # NaN
        return "\nlikely slip: 0 · log 0 gave NaN; it must count as 0 (torch.xlogy(p, q) is p · log q so)"
    return ""


def _fit_cost_reference(nfe, seconds) -> tuple[float, float]:
    """Least squares t = t₀ + C·NFE over the measurements: (t₀, C), the fixed overhead and the cost of one
    network call (the normal equations of a straight-line fit)."""
    x = torch.as_tensor(nfe, dtype=torch.float64)
    y = torch.as_tensor(seconds, dtype=torch.float64)
    C = float(((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum())
    return float(y.mean()) - C * float(x.mean()), C


def _fit_cost_cases() -> list[Case]:
    g = _gen(63)
    nfe = [1, 2, 5, 10, 20, 50]
    jitter = torch.randn(6, generator=g, dtype=torch.float64).tolist()
    noisy = [0.02 + 0.011 * k + 0.002 * e for k, e in zip(nfe, jitter, strict=True)]
    return [
        case("an exact line: t = 0.05 + 0.01 NFE, lists", nfe, [0.05 + 0.01 * k for k in nfe]),
        case("noisy timings, lists of 6", nfe, noisy),
        case("float64 tensors, two points only", torch.tensor([10.0, 30.0], dtype=torch.float64),
             torch.tensor([1.5, 4.0], dtype=torch.float64)),
        case("no overhead at all: t = 0.2 NFE, tensors", torch.tensor([5.0, 10.0, 20.0]),
             torch.tensor([1.0, 2.0, 4.0])),
    ]


frechet_distance = Check(
    "frechet_distance", _frechet_distance_reference, _frechet_distance_cases,
    doc="frechet_distance(mu1, cov1, mu2, cov2) -> float: |mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2)), "
        "the squared Fréchet distance between two Gaussians (Heusel et al. 2017, eq. 6).")
mmd2_unbiased = Check(
    "mmd2_unbiased", _mmd2_unbiased_reference, _mmd2_unbiased_cases,
    doc="mmd2_unbiased(fx, fy) -> float: unbiased MMD^2 of feature sets (m, d) and (n, d) with the cubic "
        "kernel k(x, y) = (x.y/d + 1)^3, diagonal terms left out (Bińkowski et al. 2018, §4).")


inception_score = _ISCheck(
    "inception_score", _inception_score_reference, _inception_score_cases,
    doc="inception_score(p_yx) -> float: exp(mean over images of KL(p(y|x) || p(y))), p(y) = p_yx.mean(0), "
        "with 0 log 0 = 0 (Salimans et al. 2016).")


fit_cost = Check(
    "fit_cost", _fit_cost_reference, _fit_cost_cases, outputs=("t0", "C"),
    doc="fit_cost(nfe, seconds) -> (t0, C): the least-squares line seconds = t0 + C * nfe (C = cov(nfe, "
        "seconds) / var(nfe), t0 = mean(seconds) - C * mean(nfe)); numbers, lists or 1-D tensors in.")


CHECKS = (frechet_distance, mmd2_unbiased, inception_score, fit_cost)   # notebook order: checks.ALL

"""Checks of notebook 04 (DDIM): ddim_step, ddim_sampler (the whole loop) and slerp."""

from __future__ import annotations

import math

import torch

from .. import diffusion, samplers
from ..schedule import NoiseSchedule
from ..toy import GaussianOracle, MixtureOracle
from .framework import Case, Check, _gen, _randn, case, exact
from .randomness import keeps_generator_state


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


def _ddim_sampler_reference(model, s, x_T, steps: int, eta: float = 0.0, spacing: str = "leading",
                            generator=None):
    """DDIM's whole sampler: from x_T, one eq.-12 step per level of s.grid(steps, spacing), fresh noise
    z ~ N(0, I) from ``generator`` on every step whose σ_t(η) > 0; the package's dc.sample(sampler="ddim")."""
    return samplers.sample(model, s, x_T, sampler="ddim", steps=steps, eta=eta, spacing=spacing,
                           generator=generator)


def _ddim_sampler_cases() -> list[Case]:
    g, lin, cos = _gen(42), NoiseSchedule.linear(1000), NoiseSchedule.cosine(1000)
    mix = MixtureOracle.eight_gaussians(lin)
    gauss = GaussianOracle(cos, mean=0.3, std=0.5)
    return [
        case("η = 0, 10 leading steps, eight Gaussians, float64 points (16,2)", mix, lin,
             _randn(g, 16, 2).double(), 10, 0.0, "leading", None),
        case("η = 0.5, 8 trailing steps, seeded noise, eight Gaussians, points (16,2)", mix, lin,
             _randn(g, 16, 2), 8, 0.5, "trailing", _gen(43)),
        case("η = 1 (DDPM), 5 linspace steps, Gaussian data, cosine schedule, images (2,1,4,4)", gauss, cos,
             _randn(g, 2, 1, 4, 4), 5, 1.0, "linspace", _gen(44)),
        case("one step (straight to the clean sample), η = 0.5", mix, lin, _randn(g, 8, 2), 1, 0.5, "leading",
             _gen(45)),
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


ddim_sampler = Check(
    "ddim_sampler", keeps_generator_state(_ddim_sampler_reference), _ddim_sampler_cases,
    doc="ddim_sampler(model, s, x_T, steps, eta=0.0, spacing='leading', generator=None) -> x_0: grid = "
        "s.grid(steps, spacing); for each level i, eps = model(x, t_i) and x = ddim_step(x, eps, ab_i, "
        "ab_i+1, eta, z), z = torch.randn(x.shape, generator=generator, dtype=x.dtype) when "
        "sigma_t(eta) > 0, else 0.")


CHECKS = (ddim_step, ddim_sampler, slerp)   # in notebook order: ddpm_course.checks.ALL

"""Checks of notebook 02 (noise prediction): simple_loss (the DDPM training loss) and timestep_embedding."""

from __future__ import annotations

import torch

from .. import diffusion, unet
from ..schedule import NoiseSchedule
from .framework import Case, Check, _gen, _randint, _randn, _t, case


class _ToyEps:
    """A fixed, parameter-free stand-in for ε_θ whose output depends on x_t and on t."""

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x).reshape(-1, *[1] * (x.dim() - 1))
        return 0.5 * torch.tanh(x) + 0.3 * torch.sin(0.05 * t)

    def __repr__(self) -> str:
        return "toy ε-model"


def _tiny_unet():
    """The 'tiny' U-Net with every weight random (the zero-initialised output layers too), in eval mode."""
    with torch.random.fork_rng():  # a fixed network without touching the learner's random state
        torch.manual_seed(13)
        model = unet.UNet("tiny").eval()
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
    toy, tiny = _ToyEps(), _tiny_unet()
    return [
        case("toy ε-model, images (4,1,8,8), t=[0,10,500,999], linear T=1000", toy, _randn(g, 4, 1, 8, 8),
             _t(0, 10, 500, 999), _randn(g, 4, 1, 8, 8), lin),
        case("toy ε-model, 2-D points (6,2), random t, cosine T=100", toy, _randn(g, 6, 2),
             _randint(g, 100, 6), _randn(g, 6, 2), cos),
        case("a tiny U-Net, digits-shaped (3,1,28,28), t=[5,250,900], linear T=1000", tiny,
             _randn(g, 3, 1, 28, 28), _t(5, 250, 900), _randn(g, 3, 1, 28, 28), lin),
    ]


def _timestep_embedding_reference(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The U-Net's embedding [cos(t ω_k), sin(t ω_k)], ω_k = 10000^(−k/(dim/2)) (ddpm_course.unet)."""
    return unet.timestep_embedding(t, dim)


def _timestep_embedding_cases() -> list[Case]:
    g = _gen(12)
    return [
        case("t=[0,1,10,999] (integers), dim=8", _t(0, 1, 10, 999), 8),
        case("16 random integer t, dim=48 (the MNIST U-Net's width)", _randint(g, 1000, 16), 48),
        case("fractional t=[0.5,123.25,998.75], dim=64", torch.tensor([0.5, 123.25, 998.75]), 64),
    ]


simple_loss = Check("simple_loss", _simple_loss_reference, _simple_loss_cases,
                    doc="simple_loss(model, x0, t, noise, s) -> mean((noise - model(x_t, t))^2) with "
                        "x_t = q_sample(x0, t, noise, s) (DDPM eq. 14), a 0-dim tensor.")

# float32 sines of t·ω up to t = 999: equivalent formulas for ω differ by a few 1e-5, a wrong one by > 1e-2
timestep_embedding = Check(
    "timestep_embedding", _timestep_embedding_reference, _timestep_embedding_cases,
    tolerances={torch.float32: (1e-4, 5e-4)},
    doc="timestep_embedding(t, dim) -> (B, dim) float32 [cos(t w_k), sin(t w_k)], "
        "w_k = 10000^(-k/(dim/2)), k = 0 .. dim/2 - 1 (Transformer sinusoids, as the course U-Net uses).")


CHECKS = (simple_loss, timestep_embedding)   # in notebook order: ddpm_course.checks.ALL

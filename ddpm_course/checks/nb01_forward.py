"""Checks of notebook 01 (forward process): alpha_bars, q_sample, log_snr."""

from __future__ import annotations

import torch

from .. import diffusion
from ..schedule import NoiseSchedule
from .framework import Case, Check, _gen, _randint, _randn, _t, case, exact


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


def _log_snr_reference(alpha_bars: torch.Tensor) -> torch.Tensor:
    """λ = log ᾱ − log(1 − ᾱ) (Kingma et al. 2021, VDM §3), as `NoiseSchedule.log_snr` computes it."""
    return torch.log(alpha_bars) - torch.log1p(-alpha_bars)


def _log_snr_cases() -> list[Case]:
    return [
        case("linear schedule ᾱ, T=1000", NoiseSchedule.linear(1000).alpha_bars),
        case("cosine schedule ᾱ, T=50 (ᾱ_T ≈ 1e-9)", NoiseSchedule.cosine(50).alpha_bars),
        case("5 float32 values", torch.tensor([0.999, 0.9, 0.5, 0.1, 0.001], dtype=torch.float32)),
    ]


alpha_bars = Check("alpha_bars", exact(_alpha_bars_reference), _alpha_bars_cases,
                   doc="alpha_bars(betas) -> cumulative product of 1 - betas, same shape and dtype.")
q_sample = Check("q_sample", exact(diffusion.q_sample), _q_sample_cases,
                 doc="q_sample(x0, t, noise, s) -> sqrt(ab_t) x0 + sqrt(1 - ab_t) noise (DDPM eq. 4).")
log_snr = Check("log_snr", exact(_log_snr_reference), _log_snr_cases,
                doc="log_snr(alpha_bars) -> log(alpha_bars) - log(1 - alpha_bars), elementwise, same shape "
                    "and dtype (VDM's λ).")


CHECKS = (alpha_bars, q_sample, log_snr)   # in notebook order: ddpm_course.checks.ALL

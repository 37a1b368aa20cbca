"""Checks of notebook 00 (welcome): snr, the exercise that shows how a check works."""

from __future__ import annotations

import torch

from ..schedule import NoiseSchedule
from .framework import Case, Check, case, exact


def _snr_reference(alpha_bars: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021, eq. 1: SNR = α²/σ²)."""
    return alpha_bars / (1 - alpha_bars)


def _snr_cases() -> list[Case]:
    return [
        case("linear schedule ᾱ, T=1000", NoiseSchedule.linear(1000).alpha_bars),
        case("cosine schedule ᾱ, T=50", NoiseSchedule.cosine(50).alpha_bars),
        case("5 float32 values", torch.tensor([0.999, 0.9, 0.5, 0.1, 0.001], dtype=torch.float32)),
    ]


snr = Check("snr", exact(_snr_reference), _snr_cases,
            doc="snr(alpha_bars) -> alpha_bars / (1 - alpha_bars), elementwise, same shape and dtype.")


CHECKS = (snr,)   # in notebook order: ddpm_course.checks.ALL

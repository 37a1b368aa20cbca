"""Noise schedules and timestep grids.

A schedule is the sequence β_1 … β_T of DDPM (Ho et al. 2020, eq. 2). Everything else follows from it:

    α_t  = 1 − β_t
    ᾱ_t  = ∏_{s ≤ t} α_s                       (DDPM eq. 4: q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I))
    σ_t  = √((1 − ᾱ_t) / ᾱ_t)                  (the noise level in σ-space, x̃ = x / √ᾱ = x_0 + σ ε)
    λ_t  = log(ᾱ_t / (1 − ᾱ_t)) = −2 log σ_t   (log-SNR)

Convention: tensors are 0-indexed, so index i holds the paper's t = i + 1; a model is called with
the index i ∈ [0, T − 1]. All tables are float64; cast them where they are used.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

SPACINGS = ("leading", "trailing", "linspace", "karras")


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for
    i = 0 … n−1, then a final 0; float64, length n + 1 (n = 1: σ_max, 0)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)                    # n = 1: just σ_max
    sig = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sig, sig.new_zeros(1)])


class NoiseSchedule:
    """β_t and everything derived from it, as 1-D float64 tensors of length T."""

    def __init__(self, betas, name: str = "custom"):
        try:
            betas = torch.as_tensor(betas, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"betas must be a 1-D sequence of numbers, got {type(betas).__name__}") from err
        if betas.dim() != 1:
            raise ValueError(f"betas must be 1-D (one β per step), got shape {tuple(betas.shape)}")
        if betas.numel() < 1:
            raise ValueError("betas must hold at least one value")
        if not torch.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must lie strictly between 0 and 1")
        self.name = name
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = torch.cumprod(self.alphas, dim=0)
        self.sigmas = torch.sqrt((1.0 - self.alpha_bars) / self.alpha_bars)
        self.log_snr = torch.log(self.alpha_bars) - torch.log1p(-self.alpha_bars)

    @property
    def T(self) -> int:
        return self.betas.numel()

    def __repr__(self) -> str:
        return f"NoiseSchedule.{self.name}(T={self.T})"

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """DDPM's schedule (Ho et al. 2020, §4): β rises linearly from 1e-4 to 0.02 over T = 1000."""
        _check_T(T)
        _check_real("beta_start", beta_start)
        _check_real("beta_end", beta_end)
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64), name="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
        """Improved DDPM's schedule (Nichol & Dhariwal 2021, eq. 17): ᾱ_t = f(t)/f(0),
        f(t) = cos²(((t/T + s)/(1 + s)) · π/2), with β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped at 0.999."""
        _check_T(T)
        _check_real("s", s)
        _check_real("max_beta", max_beta)
        if not s > 0:
            raise ValueError(f"s must be > 0, got {s}")
        if not 0 < max_beta < 1:
            raise ValueError(f"max_beta must lie strictly between 0 and 1, got {max_beta}")
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(betas, name="cosine")

    # --- timestep grids -----------------------------------------------------------------------
    def timesteps(self, steps: int, spacing: str = "leading") -> torch.Tensor:
        """The integer timesteps a `steps`-step sampler visits, in decreasing order.

        Same meaning as diffusers' ``timestep_spacing`` (with ``steps_offset=0``):
          leading  : arange(0, S) · (T // S), reversed            (DDIM paper's choice)
          trailing : round(arange(T, 0, −T/S)) − 1                (always starts at t = T − 1)
          linspace : round(linspace(0, T − 1, S)), reversed
        """
        _check_steps(steps, self.T)
        T = self.T
        if spacing == "leading":
            ts = torch.arange(steps, dtype=torch.int64) * (T // steps)
        elif spacing == "trailing":
            ts = torch.round(torch.arange(T, 0, -T / steps, dtype=torch.float64)).long() - 1
        elif spacing == "linspace":
            ts = torch.round(torch.linspace(0, T - 1, steps, dtype=torch.float64)).long()
        elif spacing == "karras":
            raise ValueError("spacing='karras' has no integer timesteps; use grid(steps, 'karras')")
        else:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
        return ts.flip(0) if spacing != "trailing" else ts

    def karras_sigmas(self, steps: int, rho: float = 7.0) -> torch.Tensor:
        """Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,
        from σ at t = T−1 down to σ at t = 0, then a final 0. Length steps + 1."""
        _check_steps(steps, self.T)
        _check_real("rho", rho)
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        return karras_sigmas(steps, float(self.sigmas[0]), float(self.sigmas[-1]), rho)

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous timestep for a noise level: interpolate log σ linearly between the
        neighbouring integer timesteps (as k-diffusion does). Exact at integer timesteps."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        log_sigmas = self.sigmas.log()
        log_s = sigma.log().clamp(log_sigmas[0], log_sigmas[-1])
        hi = torch.searchsorted(log_sigmas, log_s).clamp(1, self.T - 1)
        lo = hi - 1
        w = (log_s - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])
        return lo.double() + w

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ at a (possibly fractional) timestep: log σ interpolated linearly between the neighbouring
        integer timesteps, the inverse of `sigma_to_t`. Exact at integer timesteps; float64 on the CPU."""
        t = torch.as_tensor(t).detach().to("cpu", torch.float64)
        if t.numel() and (float(t.min()) < 0 or float(t.max()) > self.T - 1):
            raise ValueError(f"t must lie in [0, T-1] = [0, {self.T - 1}], got values in "
                             f"[{float(t.min())}, {float(t.max())}]")
        log_sigmas = self.sigmas.log()
        if self.T == 1:
            return self.sigmas[0].expand(t.shape).clone()
        lo = t.floor().long().clamp(0, self.T - 2)
        w = t - lo.double()
        sig = torch.exp((1 - w) * log_sigmas[lo] + w * log_sigmas[lo + 1])
        sig = torch.where(w == 0, self.sigmas[lo], sig)                    # the table itself at integers
        return torch.where(w == 1, self.sigmas[lo + 1], sig)

    def grid(self, steps: int, spacing: str = "leading") -> Grid:
        """The noise levels a sampler walks through: ``steps`` model timesteps and ``steps + 1``
        values of ᾱ, the last one 1 (the clean sample, like DDIM's ``set_alpha_to_one=True``).
        The previous timestep of each step is simply the next entry of the list."""
        if spacing == "karras":
            sig = self.karras_sigmas(steps)
            ts = self.sigma_to_t(sig[:-1])
            ab = 1.0 / (1.0 + sig**2)
            return Grid(ts=ts, alpha_bars=ab, discrete=False)
        ts = self.timesteps(steps, spacing)
        ab = torch.cat([self.alpha_bars[ts], torch.ones(1, dtype=torch.float64)])
        return Grid(ts=ts, alpha_bars=ab, discrete=True)


@dataclass(frozen=True)
class Grid:
    """A sampler's path: model timesteps ``ts`` (length n) and ᾱ at each of the n + 1 levels.

    ``ts`` is a LongTensor for the integer spacings and a float64 tensor for ``karras``.
    """

    ts: torch.Tensor
    alpha_bars: torch.Tensor
    discrete: bool

    @property
    def sigmas(self) -> torch.Tensor:
        """σ = √((1 − ᾱ)/ᾱ) at each of the n + 1 levels; the last is 0."""
        return torch.sqrt((1.0 - self.alpha_bars) / self.alpha_bars)

    def __len__(self) -> int:
        return self.ts.numel()


def _check_real(name: str, value) -> None:
    """A finite real number (not a bool, a string or NaN)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def _check_T(T) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")


def _check_steps(steps, T: int) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in [1, T={T}], got {steps!r}")

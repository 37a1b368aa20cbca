"""The forward process q, its posterior, the training loss, and the ε / x₀ / v / flow parameterisations.

Notation follows DDPM (Ho et al. 2020): x_0 data, ε ~ N(0, I), ᾱ_t = ∏ α_s.
Schedule tables are float64; values are cast to the data's dtype and device where they are used.
"""

from __future__ import annotations

import torch

from .schedule import NoiseSchedule

PREDICTIONS = ("eps", "x0", "v", "flow")   # flow: the rectified-flow velocity u = ε − x_0 (flow.py)


def per_sample(values, like: torch.Tensor) -> torch.Tensor:
    """A number, or per-sample values (B,), as a tensor in the dtype and device of ``like`` (B, ...) that
    broadcasts against it: (B,) -> (B, 1, 1, ...). The package's one broadcasting helper."""
    values = torch.as_tensor(values, dtype=torch.float64).to(device=like.device, dtype=like.dtype)
    return values.reshape(-1, *([1] * (like.dim() - 1))) if values.dim() == 1 and like.dim() > 1 else values


def _check_float(name: str, x) -> None:
    """Images are floating point: an integer x0 (uint8 pixels) would cast ᾱ_t to 0 and give pure noise."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{name} must be a floating-point tensor (scale pixels to [-1, 1] first), got {what}")


def _check_t(t: torch.Tensor, x: torch.Tensor, s: NoiseSchedule) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"t must be an integer tensor (LongTensor) of shape (B,), got {t!r:.60}")
    if t.shape != (x.shape[0],):
        raise ValueError(f"t must have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) > s.T - 1):
        raise ValueError(f"t must lie in [0, T-1] = [0, {s.T - 1}], got values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    return t.cpu().long()


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, s: NoiseSchedule) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) in one shot (DDPM eq. 4): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε."""
    _check_float("x0", x0)
    _check_float("noise", noise)
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}")
    ab = per_sample(s.alpha_bars[_check_t(t, x0, s)], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def q_mean_var(x0: torch.Tensor, t: torch.Tensor, s: NoiseSchedule):
    """Mean and variance of q(x_t | x_0) (DDPM eq. 4): (√ᾱ_t x_0, 1 − ᾱ_t)."""
    ab = per_sample(s.alpha_bars[_check_t(t, x0, s)], x0)
    return ab.sqrt() * x0, (1 - ab).expand_as(x0)


def posterior(x0: torch.Tensor, x_t: torch.Tensor, ab_t, ab_prev):
    """Mean and variance of q(x_prev | x_t, x_0) between any two levels ᾱ_t < ᾱ_prev (DDPM eq. 6–7).

    With β_t' = 1 − ᾱ_t/ᾱ_prev (which is β_t when the levels are neighbours):
        μ̃ = √ᾱ_prev β_t'/(1 − ᾱ_t) · x_0 + √(1 − β_t') (1 − ᾱ_prev)/(1 − ᾱ_t) · x_t      (eq. 7)
        β̃ = (1 − ᾱ_prev)/(1 − ᾱ_t) · β_t'
    ab_t and ab_prev are floats or per-sample tensors (B,).
    """
    ab_t = per_sample(ab_t, x_t) if torch.is_tensor(ab_t) else torch.tensor(ab_t, dtype=x_t.dtype)
    ab_prev = per_sample(ab_prev, x_t) if torch.is_tensor(ab_prev) else torch.tensor(ab_prev, dtype=x_t.dtype)
    beta = 1 - ab_t / ab_prev
    mean = (ab_prev.sqrt() * beta / (1 - ab_t)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x_t
    var = (1 - ab_prev) / (1 - ab_t) * beta
    return mean, var.expand_as(x_t)


def posterior_mean_variance(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, s: NoiseSchedule):
    """q(x_{t−1} | x_t, x_0) on the schedule's own neighbouring timesteps (DDPM eq. 6–7).
    At t = 0 (the paper's t = 1) the previous level is the data itself: ᾱ_prev = 1, β̃ = 0."""
    idx = _check_t(t, x_t, s)
    ab_prev = torch.where(idx > 0, s.alpha_bars[(idx - 1).clamp(min=0)], torch.ones((), dtype=torch.float64))
    return posterior(x0, x_t, s.alpha_bars[idx], ab_prev)


# --- parameterisations: x_t = √ᾱ x_0 + √(1−ᾱ) ε,  v = √ᾱ ε − √(1−ᾱ) x_0  (Salimans & Ho 2022, §4) ---
def eps_to_x0(x_t, eps, ab):
    """x̂_0 = (x_t − √(1−ᾱ) ε̂) / √ᾱ   (DDIM eq. 9)."""
    ab = per_sample(ab, x_t)
    return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()


def x0_to_eps(x_t, x0, ab):
    """ε̂ = (x_t − √ᾱ x̂_0) / √(1−ᾱ)."""
    ab = per_sample(ab, x_t)
    return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


def v_to_eps(x_t, v, ab):
    """ε̂ = √ᾱ v + √(1−ᾱ) x_t."""
    ab = per_sample(ab, x_t)
    return ab.sqrt() * v + (1 - ab).sqrt() * x_t


def v_to_x0(x_t, v, ab):
    """x̂_0 = √ᾱ x_t − √(1−ᾱ) v."""
    ab = per_sample(ab, x_t)
    return ab.sqrt() * x_t - (1 - ab).sqrt() * v


def v_target(x0, eps, ab):
    """v = √ᾱ ε − √(1−ᾱ) x_0."""
    ab = per_sample(ab, x0)
    return ab.sqrt() * eps - (1 - ab).sqrt() * x0


# --- the flow velocity u = ε − x_0 of the straight path (1 − τ) x_0 + τ ε (Liu et al. 2023; flow.py) ------
# With α = √ᾱ, σ = √(1−ᾱ): x_t = α x_0 + σ ε and u = ε − x_0 give ε = (x_t + α u)/(α + σ), x_0 = ε − u.
def flow_to_eps(x_t, u, ab):
    """ε̂ = (x_t + √ᾱ u) / (√ᾱ + √(1−ᾱ))."""
    ab = per_sample(ab, x_t)
    return (x_t + ab.sqrt() * u) / (ab.sqrt() + (1 - ab).sqrt())


def flow_to_x0(x_t, u, ab):
    """x̂_0 = (x_t − √(1−ᾱ) u) / (√ᾱ + √(1−ᾱ))."""
    ab = per_sample(ab, x_t)
    return (x_t - (1 - ab).sqrt() * u) / (ab.sqrt() + (1 - ab).sqrt())


def to_eps(output: torch.Tensor, x_t: torch.Tensor, ab, prediction: str = "eps") -> torch.Tensor:
    """Turn a model output in any parameterisation into ε̂."""
    if prediction == "eps":
        return output
    if prediction == "x0":
        return x0_to_eps(x_t, output, ab)
    if prediction == "v":
        return v_to_eps(x_t, output, ab)
    if prediction == "flow":
        return flow_to_eps(x_t, output, ab)
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def min_snr_weight(t: torch.Tensor, s: NoiseSchedule, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-γ loss weight for ε-prediction (Hang et al. 2023, eq. 9 with ε-targets):
    w_t = min(SNR(t), γ) / SNR(t), SNR(t) = ᾱ_t / (1 − ᾱ_t). It is 1 at high noise (SNR ≤ γ) and
    down-weights the nearly clean timesteps, whose easy gradients otherwise dominate early training."""
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    snr = torch.exp(s.log_snr[t.cpu()])                              # (B,) float64
    return torch.clamp(snr, max=gamma) / snr


def simple_loss(model, x0: torch.Tensor, s: NoiseSchedule, y: torch.Tensor | None = None,
                t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """DDPM's simple objective (eq. 14): E_{t, x_0, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖², t uniform.

    weight: optional per-sample loss weights (B,), e.g. ``min_snr_weight(t, s)``; None is eq. 14 itself."""
    B = x0.shape[0]
    if t is None:
        t = torch.randint(0, s.T, (B,), generator=generator, device="cpu")
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0)
    x_t = q_sample(x0, t, noise, s)
    t = t.to(x0.device)
    eps = model(x_t, t) if y is None else model(x_t, t, y)
    if weight is None:
        return torch.mean((noise - eps) ** 2)
    losses = ((noise - eps) ** 2).flatten(1).mean(1)                    # (B,)
    return torch.mean(per_sample(weight, losses) * losses)

"""Flow matching and rectified flow: the straight path between data and noise, and how it relates to the
course's VP diffusion.

Flow time τ ∈ [0, 1] (τ = 0 data, τ = 1 noise; Liu et al. 2023 and Lipman et al. 2023 run it the other
way, our direction matches the course's t):

    x_τ = (1 − τ) x_0 + τ ε,   velocity  u = dx_τ/dτ = ε − x_0          (the linear path of rectified flow)
    flow matching loss   E ‖u_θ(x_τ, τ) − (ε − x_0)‖²,  τ ~ U, x_0 ~ data, ε ~ N(0, I)
    sampling             dx/dτ = u_θ(x, τ) from x_1 = ε down to τ = 0 (Euler: x ← x − Δτ u_θ)

**VP ↔ linear.** The course's state x_t = √ᾱ x_0 + √(1 − ᾱ) ε is the same point of the same path up to a
scale: dividing by √ᾱ + √(1 − ᾱ) gives x_τ with τ = √(1 − ᾱ)/(√ᾱ + √(1 − ᾱ)) = σ/(1 + σ) (σ-space σ).
The velocity of a diffusion model is u = ε̂ − x̂_0, and one Euler step in τ between two levels is exactly
one DDIM step between them — the same trajectories, so every course sampler applies to a velocity model
(``prediction="flow"`` in dc.sample converts u to ε̂) and every flow sampler to the course's ε-model.

**Reflow** (Liu et al. 2023): pair each noise ε with the sample x_0 = ODE(ε) of a trained model and
fit the velocity of the straight line between them. The pairs are *coupled*, so the paths of the new
model cross less and are straighter: few Euler steps follow them well. Liu et al.'s straightness:
S = ∫ E ‖(x_1 − x_0) − u(x_τ, τ)‖² dτ, zero for straight paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import finetune
from .diffusion import eps_to_x0, per_sample
from .finetune import check_config
from .schedule import NoiseSchedule

KIND = "reflow"


# --- the straight path -----------------------------------------------------------------------------------
def interpolate(x0: torch.Tensor, eps: torch.Tensor, tau) -> torch.Tensor:
    """x_τ = (1 − τ) x_0 + τ ε, τ a number or a tensor (B,)."""
    tau = per_sample(tau, x0)
    return (1 - tau) * x0 + tau * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u = dx_τ/dτ = ε − x_0: the same at every τ of the straight path."""
    return eps - x0


def tau_of_sigma(sigma):
    """τ = σ/(1 + σ) for the σ-space level σ = √((1 − ᾱ)/ᾱ)."""
    return sigma / (1 + sigma)


def sigma_of_tau(tau):
    """σ = τ/(1 − τ), the inverse of tau_of_sigma (τ < 1)."""
    return tau / (1 - tau)


def vp_to_flow(z: torch.Tensor, ab) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_τ, τ) of the VP state z = √ᾱ x_0 + √(1 − ᾱ) ε:  x_τ = z/(√ᾱ + √(1 − ᾱ)),
    τ = √(1 − ᾱ)/(√ᾱ + √(1 − ᾱ)); ab a number or a tensor (B,). τ is float64 (B,) or a 0-d tensor."""
    ab = torch.as_tensor(ab, dtype=torch.float64)
    a, s = ab.sqrt(), (1 - ab).sqrt()
    return z / per_sample(a + s, z), s / (a + s)


def flow_to_vp(x: torch.Tensor, tau) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of vp_to_flow: (z, ᾱ) with ᾱ = (1 − τ)²/((1 − τ)² + τ²), z = x_τ/√((1 − τ)² + τ²)."""
    tau = torch.as_tensor(tau, dtype=torch.float64)
    r2 = (1 - tau) ** 2 + tau**2
    return x / per_sample(r2.sqrt(), x), (1 - tau) ** 2 / r2


def velocity_from_eps(eps_hat: torch.Tensor, z: torch.Tensor, ab) -> torch.Tensor:
    """The flow velocity of a diffusion model's prediction at the VP state z: u = ε̂ − x̂_0,
    x̂_0 = (z − √(1 − ᾱ) ε̂)/√ᾱ."""
    return eps_hat - eps_to_x0(z, eps_hat, ab)


class EpsAsVelocity:
    """A course ε-model ``model(z, t[, y])`` seen as a velocity field ``u(x, τ)`` in flow coordinates:
    z, ᾱ = flow_to_vp(x, τ), t = s.sigma_to_t(σ(τ)), u = ε̂ − x̂_0. τ must lie in the schedule's range
    [τ(σ at t = 0), τ(σ at t = T − 1)]."""

    def __init__(self, model, s: NoiseSchedule, y=None):
        self.model, self.s, self.y = model, s, y
        self.lo, self.hi = float(tau_of_sigma(s.sigmas[0])), float(tau_of_sigma(s.sigmas[-1]))

    def __call__(self, x: torch.Tensor, tau) -> torch.Tensor:
        tau = torch.as_tensor(tau, dtype=torch.float64).reshape(-1).expand(x.shape[0]).cpu()
        if float(tau.min()) < self.lo * (1 - 1e-9) or float(tau.max()) > self.hi * (1 + 1e-9):
            raise ValueError(f"tau must lie in the schedule's range [{self.lo:.5f}, {self.hi:.5f}] (σ at "
                             f"t = 0 and t = T − 1), got values in [{float(tau.min()):.5f}, "
                             f"{float(tau.max()):.5f}]")
        z, ab = flow_to_vp(x, tau)
        t = self.s.sigma_to_t(sigma_of_tau(tau)).to(x.device, torch.promote_types(x.dtype, torch.float32))
        eps = self.model(z, t) if self.y is None else self.model(z, t, self.y)
        return velocity_from_eps(eps.to(x.dtype), z, ab)


def exact_velocity(oracle):
    """u*(x, τ) = E[ε − x_0 | x_τ] = (x − D)/τ for a toy oracle with ``denoise(x̃, σ)`` (dc.toy), with
    D = E[x_0 | x_τ] = denoise(x_τ (1 + σ), σ), σ = τ/(1 − τ); at τ = 1 (pure noise) D = E[x_0]."""
    def u(x: torch.Tensor, tau) -> torch.Tensor:
        tau = torch.as_tensor(tau, dtype=torch.float64).reshape(-1).expand(x.shape[0]).cpu()
        inner = tau < 1
        sig = torch.where(inner, sigma_of_tau(torch.where(inner, tau, 0.5 * torch.ones_like(tau))), 1.0)
        d = oracle.denoise(x * per_sample(1 + sig, x), sig)
        mean = _data_mean(oracle).to(x)
        d = torch.where(per_sample(inner, x).bool(), d, mean.expand_as(d))
        return (x - d) / per_sample(tau, x)
    return u


def _data_mean(oracle) -> torch.Tensor:
    if hasattr(oracle, "weights"):                                       # a mixture: Σ_k π_k μ_k
        return (oracle.weights[:, None] * oracle.means.reshape(len(oracle.weights), -1)).sum(0)
    return torch.as_tensor(oracle.mean, dtype=torch.float64)


# --- sampling and straightness ---------------------------------------------------------------------------
def euler(u_fn, x1: torch.Tensor, taus, return_path: bool = False):
    """Euler's method for dx/dτ = u(x, τ) over the levels ``taus`` (decreasing, e.g. from 1 to 0):
    x_{k+1} = x_k − (τ_k − τ_{k+1}) u(x_k, τ_k). Returns x at the last level (and the path, a list of the
    len(taus) states, with return_path)."""
    taus = [float(v) for v in torch.as_tensor(taus, dtype=torch.float64).reshape(-1)]
    if len(taus) < 2 or any(b >= a for a, b in zip(taus, taus[1:], strict=False)):
        raise ValueError(f"taus must be at least 2 strictly decreasing levels, got {taus}")
    x, path = x1, [x1]
    for a, b in zip(taus, taus[1:], strict=False):
        x = x - (a - b) * u_fn(x, a)
        path.append(x)
    return (x, path) if return_path else x


def uniform_taus(steps: int, tau_max: float = 1.0) -> torch.Tensor:
    """steps + 1 equally spaced levels from tau_max down to 0."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return torch.linspace(tau_max, 0.0, steps + 1, dtype=torch.float64)


def straightness(path, taus) -> float:
    """Liu et al.'s straightness on a discretised path (states at the decreasing levels ``taus``, e.g. from
    ``euler(..., return_path=True)``): S = Σ_k Δτ_k E ‖(x_1 − x_0)/(τ_max − τ_min) − u_k‖² / (τ_max − τ_min),
    u_k = (x_k − x_{k+1})/Δτ_k the velocity on segment k. 0 for a straight path at constant speed."""
    taus = torch.as_tensor(taus, dtype=torch.float64).reshape(-1)
    if len(path) != len(taus) or len(path) < 2:
        raise ValueError(f"path must hold one state per level (len(taus) = {len(taus)} >= 2), got "
                         f"{len(path)}")
    span = float(taus[0] - taus[-1])
    chord = (path[0] - path[-1]).double() / span
    total = 0.0
    for k in range(len(path) - 1):
        d = float(taus[k] - taus[k + 1])
        u_k = (path[k] - path[k + 1]).double() / d
        total += d * float((chord - u_k).pow(2).flatten(1).sum(1).mean())
    return total / span


# --- flow matching and reflow on images --------------------------------------------------------------------
def flow_matching_loss(net, x0: torch.Tensor, eps: torch.Tensor, s: NoiseSchedule, *, y=None,
                       generator=None) -> torch.Tensor:
    """‖F_θ(z, t) − (ε − x_0)‖² for a course U-Net F_θ that outputs the velocity, at the VP state
    z = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (the same point as x_τ, rescaled) with t ~ U[0, T − 1] as the course model
    was trained. Independent ε: flow matching (Lipman et al. 2023); ε paired with x_0 = ODE(ε): reflow."""
    t = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64) * (s.T - 1)
    sig = s.t_to_sigma(t)
    ab = per_sample(1 / (1 + sig**2), x0)
    z = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    tt = t.to(x0.device, torch.promote_types(x0.dtype, torch.float32))
    out = net(z, tt) if y is None else net(z, tt, y)
    return (out - velocity_target(x0, eps)).pow(2).mean()


def fit_velocity(net: nn.Module, s: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor | None = None, *,
                 iters: int = 2000, batch_size: int = 512, lr: float = 2e-3, generator=None,
                 progress: bool = False) -> list[float]:
    """Train a small velocity network on 2-D data in memory (Adam, learning rate decaying linearly to 0):
    with ``eps=None`` each batch draws fresh independent noise — flow matching; with ``eps`` the rows of
    (eps, x0) are pairs — reflow. Returns the losses of flow_matching_loss."""
    from tqdm.auto import tqdm

    if eps is not None and eps.shape != x0.shape:
        raise ValueError(f"eps must have the shape of x0, {tuple(x0.shape)}, got {tuple(eps.shape)}")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    losses = []
    for k in tqdm(range(iters), disable=not progress, desc="flow matching" if eps is None else "reflow"):
        idx = torch.randint(0, x0.shape[0], (batch_size,), generator=generator)
        e = eps[idx] if eps is not None else torch.randn(x0[idx].shape, generator=generator, dtype=x0.dtype)
        for group in opt.param_groups:
            group["lr"] = lr * (1 - k / iters)
        loss = flow_matching_loss(net, x0[idx], e, s, generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    return losses


@dataclass
class ReflowConfig:
    """Everything that defines a reflow run. Plain values only: it is stored in each checkpoint."""

    iters: int = 4000
    batch_size: int = 32
    lr: float = 2e-4                  # Adam, constant
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 100
    pairs: str = ""                   # where the (ε, x_0) pairs came from, for the record
    init: str = ""
    command: str = ""

    def validate(self) -> None:
        check_config(self)


def reflow(cfg: ReflowConfig, out: str | Path, net: nn.Module, s: NoiseSchedule,
           pairs: tuple[torch.Tensor, torch.Tensor], *, resume: bool = False, device=None,
           progress: bool = True, stop_after: int | None = None) -> Path:
    """Fine-tune ``net`` (a course U-Net; it starts from the ε-model's weights, its output now read as the
    velocity) on ``pairs = (ε, x_0)`` with flow_matching_loss; a class-conditional net gets the null label
    (the pairs are unconditional). The loop, checkpoints and resume: finetune.run. Returns last.pt's path."""
    cfg.validate()
    eps_all, x0_all = pairs
    if eps_all.shape != x0_all.shape:
        raise ValueError(f"pairs must be (eps, x0) of one shape, got {tuple(eps_all.shape)} and "
                         f"{tuple(x0_all.shape)}")
    null = getattr(net, "null_label", None)
    conditional = isinstance(null, int) and not isinstance(null, bool)

    def batch_loss(model, batch, step, gen):
        eps, x0 = batch
        y = torch.full((x0.shape[0],), null, dtype=torch.long, device=x0.device) if conditional else None
        return flow_matching_loss(model, x0, eps, s, y=y, generator=gen), {}

    return finetune.run(cfg, KIND, out, net, s, (eps_all, x0_all), batch_loss, resume=resume, device=device,
                        progress=progress, stop_after=stop_after, desc="reflow")


def load_reflowed(path: str | Path, ema: bool = True) -> nn.Module:
    """The velocity U-Net in a ``reflow`` checkpoint, in eval mode on the CPU; sample it with
    ``dc.sample(model, s, x_T, sampler="ddim", steps=N, spacing="trailing", prediction="flow")``."""
    return finetune.load(path, KIND, ema)[0]

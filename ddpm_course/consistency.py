"""Consistency models (Song, Dhariwal, Chen & Sutskever 2023): one network that maps any point of a
probability-flow ODE trajectory straight to the trajectory's origin, so that one evaluation generates.

Everything is written in σ-space (samplers.py): x̃ = x/√ᾱ = x_0 + σ ε, σ = √((1 − ᾱ)/ᾱ), where the
PF-ODE is dx̃/dσ = ε̂(x̃, σ). The network itself sees the VP state z = x̃/√(1 + σ²) and the (float)
timestep t(σ) of the course's schedule, exactly as the samplers call it.

    consistency property   f(x̃_σ, σ) = f(x̃_σ', σ') for all points of one trajectory   (Song et al. §3)
    boundary condition     f(x̃, 0) = x̃                                         (§3, with σ_min = ε = 0)
    parameterisation       f_θ(x̃, σ) = c_skip(σ) x̃ + c_out(σ) F_θ(x̃, σ),
                           c_skip(0) = 1, c_out(0) = 0                                  (eq. 5)

The course's ε-model gives c_skip = 1, c_out = −σ: f_θ is *exactly* the denoiser x̂_0 = x̃ − σ ε̂, and the
boundary condition holds for every θ. A v-output (x̂_0 = √ᾱ z − √(1 − ᾱ) v̂, Salimans & Ho §4) gives
c_skip = 1/(1 + σ²), c_out = −σ/√(1 + σ²): the same boundary, but |c_out| ≤ 1, where ε's |c_out| = σ reaches
157 at t = T − 1 and multiplies every error of F by it — the reason the MNIST consistency model, like the
distilled students, outputs v. An x₀-output (c_skip = 0, c_out = 1) breaks the boundary condition.

Two ways to train f_θ:
  consistency distillation (Algorithm 2): levels σ_1 < … < σ_N, the teacher's one ODE step
      x̂_{n} = x̃_{n+1} + (σ_n − σ_{n+1}) ε̂(x̃_{n+1}, σ_{n+1})   (Euler = DDIM η = 0)
    and the loss d(f_θ(x̃_{n+1}, σ_{n+1}), f_θ⁻(x̂_n, σ_n)) with θ⁻ ← μ θ⁻ + (1 − μ) θ, an EMA of θ;
  easy consistency tuning, ECT (Geng et al. 2024): no teacher. x̃_t = x_0 + t ε and x̃_r = x_0 + r ε share
    one ε, r = t − Δt with Δt/t = n(t)/q^a, n(t) = 1 + k·sigmoid(−b t) at stage a = 0, 1, …: at a = 0 every
    r is 0, the target f(x̃_0, 0) = x_0 and the loss is plain denoising; each stage halves Δt, towards
    consistency. Loss (1/(t − r))·d(f_θ(x̃_t, t), sg f_θ(x̃_r, r)) with the pseudo-Huber metric of iCT (Song &
    Dhariwal 2023): d(a, b) = √(‖a − b‖² + c²) − c.
Multistep sampling (Algorithm 1) is ``dc.sample(..., sampler="consistency")`` (samplers.py).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import finetune
from .diffusion import per_sample
from .finetune import check_config
from .schedule import NoiseSchedule

PARAMETERISATIONS = ("eps", "v")   # the outputs whose c_skip, c_out meet the boundary condition
KIND = "consistency-tuning"


# --- the consistency function -----------------------------------------------------------------------------
def skip_out(sigma: torch.Tensor, prediction: str = "v") -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip(σ), c_out(σ)) of f = c_skip x̃ + c_out F for a network that outputs ``prediction``:
    "eps": (1, −σ), the denoiser x̂_0 = x̃ − σ ε̂;  "v": (1/(1 + σ²), −σ/√(1 + σ²)). Both are (1, 0) at σ = 0."""
    if prediction not in PARAMETERISATIONS:
        why = " (an x0-output has c_skip = 0, c_out = 1: f(x, 0) = F ≠ x)" if prediction == "x0" else ""
        raise ValueError(f"prediction must be one of {PARAMETERISATIONS}, whose f meets the boundary "
                         f"condition f(x, 0) = x, got {prediction!r}{why}")
    sigma = torch.as_tensor(sigma)
    if prediction == "eps":
        return torch.ones_like(sigma), -sigma
    return 1 / (1 + sigma**2), -sigma / (1 + sigma**2).sqrt()


def _check_sigma(sigma: torch.Tensor, s: NoiseSchedule) -> None:
    lo, hi = float(s.sigmas[0]), float(s.sigmas[-1])
    bad = (sigma != 0) & ((sigma < lo * (1 - 1e-9)) | (sigma > hi * (1 + 1e-9)))
    if bool(bad.any()):
        raise ValueError(f"sigma must be 0 (the boundary) or lie in the schedule's range [σ(t=0), σ(t=T−1)] "
                         f"= [{lo:.4g}, {hi:.4g}], got {float(sigma[bad][0]):.4g}")


def consistency_fn(net, x: torch.Tensor, sigma, s: NoiseSchedule, *, prediction: str = "v",
                   y: torch.Tensor | None = None) -> torch.Tensor:
    """f_θ(x̃, σ) = c_skip(σ) x̃ + c_out(σ) F_θ(x̃, σ) (Song et al. 2023, eq. 5) for a course network
    ``net(z, t[, y])``: x̃ (B, ...) in σ-space, σ a number or a tensor (B,) with σ = 0 (where f(x̃, 0) = x̃
    exactly) or σ in the schedule's range. The network gets z = x̃/√(1 + σ²) and t = s.sigma_to_t(σ)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(x.shape[0]).cpu()
    _check_sigma(sigma, s)
    c_skip, c_out = skip_out(sigma, prediction)
    at_boundary = sigma == 0
    t = s.sigma_to_t(torch.where(at_boundary, s.sigmas[0], sigma))  # any t at σ = 0: c_out = 0 cancels F
    z = x / per_sample((1 + sigma**2).sqrt(), x).to(x)
    t = t.to(device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
    F = net(z, t) if y is None else net(z, t, y)
    boundary = at_boundary.to(x.device).view(-1, *[1] * (x.dim() - 1))
    F = torch.where(boundary, torch.zeros_like(F), F)                    # 0·NaN would be NaN
    return per_sample(c_skip, x).to(x) * x + per_sample(c_out, x).to(x) * F


def multistep(f, x_T: torch.Tensor, sigmas, noise=None, generator=None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) in σ-space, for any consistency
    function ``f(x̃, σ)``: x ← f(x̃_T, τ_0); then for n = 1, …, N−1: x̃ = x + τ_n z_n, x ← f(x̃, τ_n)
    (the paper's √(τ_n² − ε²) with ε = σ_min = 0). ``sigmas`` = τ_0 > τ_1 > … (τ_0: the level of x̃_T);
    ``noise``: the N − 1 draws z_n (tensors shaped like x_T), else drawn from ``generator``.
    dc.sample(..., sampler="consistency") is the same loop on a grid, in the VP variables."""
    taus = [float(v) for v in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)]
    if not taus or any(b >= a for a, b in zip(taus, taus[1:], strict=False)) or taus[-1] <= 0:
        raise ValueError(f"sigmas must be positive and strictly decreasing, got {taus}")
    if noise is not None and len(noise) != len(taus) - 1:
        raise ValueError(f"noise must hold len(sigmas) − 1 = {len(taus) - 1} tensors, got {len(noise)}")
    x = f(x_T, taus[0])
    for n, tau in enumerate(taus[1:]):
        z = noise[n] if noise is not None else torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = f(x + tau * z.to(x), tau)
    return x


# --- consistency distillation (Algorithm 2) ---------------------------------------------------------------
def cd_levels(s: NoiseSchedule, N: int, rho: float = 7.0) -> torch.Tensor:
    """The discretisation 0 = σ_0 < σ_1 < … < σ_N: Karras et al.'s ρ-schedule (eq. 5) of N levels from σ(t=0)
    to σ(t=T−1), and the boundary 0 below them; float64, ascending, length N + 1."""
    if not isinstance(N, int) or isinstance(N, bool) or N < 1:
        raise ValueError(f"N must be a positive integer (the number of noise levels), got {N!r}")
    return s.karras_sigmas(N, rho).flip(0)


def teacher_step(eps_fn, x_next: torch.Tensor, sig_next, sig_n) -> torch.Tensor:
    """One Euler step of the PF-ODE dx̃/dσ = ε̂ from σ_{n+1} down to σ_n (DDIM η = 0 in σ-space):
    x̂_n = x̃_{n+1} + (σ_n − σ_{n+1}) ε̂(x̃_{n+1}, σ_{n+1}). ``eps_fn(x̃, σ)`` is the teacher's ε̂."""
    sig_next, sig_n = (torch.as_tensor(v, dtype=x_next.dtype, device=x_next.device)
                       for v in (sig_next, sig_n))
    return x_next + per_sample(sig_n - sig_next, x_next) * eps_fn(x_next, sig_next)


def cd_target(f_ema, eps_fn, x_next: torch.Tensor, sig_next, sig_n) -> torch.Tensor:
    """The distillation target of Algorithm 2 (lines 5–6): f_θ⁻(x̂_n, σ_n), where x̂_n is the teacher's one
    ODE step from (x̃_{n+1}, σ_{n+1}); ``f_ema(x̃, σ)`` is the EMA model's consistency function."""
    with torch.no_grad():
        return f_ema(teacher_step(eps_fn, x_next, sig_next, sig_n), sig_n)


def oracle_eps_fn(oracle, s: NoiseSchedule):
    """ε̂(x̃, σ) of an exact oracle of dc.toy (a model ``oracle(z, t)`` with float t), in σ-space."""
    def eps_fn(x, sigma):
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(x.shape[0]).cpu()
        z = x / per_sample((1 + sigma**2).sqrt(), x).to(x)
        return oracle(z, s.sigma_to_t(sigma).to(x.device)).to(x)
    return eps_fn


def distill_toy(net: nn.Module, oracle, s: NoiseSchedule, x_data: torch.Tensor, *, N: int = 18,
                iters: int = 2000, batch_size: int = 512, lr: float = 1e-3, ema_decay: float = 0.95,
                prediction: str = "v", generator=None,
                progress: bool = False) -> tuple[nn.Module, list[float]]:
    """Consistency distillation (Algorithm 2) of a toy network from an exact ODE teacher: repeat
    x ~ data, n ~ U{0, …, N−1} (pairs σ_n < σ_{n+1} of ``cd_levels``, σ_0 = 0 the boundary);
    x̃_{n+1} = x + σ_{n+1} ε; x̂_n = one Euler step of the teacher; L = ‖f_θ(x̃_{n+1}, σ_{n+1}) −
    f_θ⁻(x̂_n, σ_n)‖² (squared ℓ2 as d); θ⁻ ← μ θ⁻ + (1 − μ) θ with μ = ``ema_decay``.
    ``net`` (z, t) → ``prediction``, e.g. dc.distill.ToyMLP fitted to the oracle, so f starts as the
    denoiser. Returns (θ⁻, the losses); θ⁻, the target network, is the model the paper samples with."""
    from tqdm.auto import tqdm

    skip_out(torch.zeros(1), prediction)                                  # fail now on a bad prediction
    sig = cd_levels(s, N)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    eps_fn = oracle_eps_fn(oracle, s)
    losses = []
    net.train()
    for _ in tqdm(range(iters), disable=not progress, desc="consistency distillation"):
        x0 = x_data[torch.randint(0, x_data.shape[0], (batch_size,), generator=generator)]
        n = torch.randint(0, N, (batch_size,), generator=generator)       # pair (σ_n, σ_{n+1})
        sig_n, sig_next = sig[n], sig[n + 1]
        x_next = x0 + per_sample(sig_next, x0).to(x0) * torch.randn(x0.shape, generator=generator,
                                                                     dtype=x0.dtype)
        target = cd_target(lambda x, sg: consistency_fn(ema, x, sg, s, prediction=prediction), eps_fn,
                           x_next, sig_next, sig_n)
        loss = (consistency_fn(net, x_next, sig_next, s, prediction=prediction) - target).pow(2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
                p_ema.lerp_(p, 1 - ema_decay)                               # θ⁻ ← μ θ⁻ + (1 − μ) θ
        losses.append(loss.item())
    return ema, losses


# --- easy consistency tuning (Geng et al. 2024) -----------------------------------------------------------
def ect_delta(t: torch.Tensor, stage: int, q: float = 2.0, k: float = 8.0, b: float = 1.0) -> torch.Tensor:
    """ECT's mapping Δt = t · n(t)/q^a, n(t) = 1 + k · sigmoid(−b t), at stage a (t in σ units)."""
    if not isinstance(stage, int) or isinstance(stage, bool) or stage < 0:
        raise ValueError(f"stage must be an integer >= 0, got {stage!r}")
    t = torch.as_tensor(t, dtype=torch.float64)
    return t * (1 + k * torch.sigmoid(-b * t)) / q**stage


def ect_r(t: torch.Tensor, stage: int, sigma_min: float, **mapping) -> torch.Tensor:
    """r = t − Δt (``ect_delta``), and r = 0 — the boundary, where the target is the data itself — when
    t − Δt falls below σ_min, the smallest level the network knows (σ at t = 0)."""
    r = torch.as_tensor(t, dtype=torch.float64) - ect_delta(t, stage, **mapping)
    return torch.where(r < sigma_min, torch.zeros_like(r), r)


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """d(a, b) = √(‖a − b‖² + c²) − c per sample (iCT, Song & Dhariwal 2023): ≈ ‖a − b‖²/(2c) for small
    errors, ≈ ‖a − b‖ for large ones."""
    if not c > 0:
        raise ValueError(f"c must be > 0, got {c!r}")
    return ((a - b).pow(2).flatten(1).sum(1) + c**2).sqrt() - c


def huber_c(x: torch.Tensor) -> float:
    """iCT's c = 0.00054 √d for data of d = C·H·W dimensions in [−1, 1] (0.015 for MNIST's 784)."""
    return 0.00054 * math.sqrt(x[0].numel())


def sample_sigma(s: NoiseSchedule, B: int, generator=None) -> torch.Tensor:
    """Noise levels of the training pairs: t ~ U[0, T−1] (continuous), as the course model was trained,
    mapped to σ(t); float64 (B,)."""
    return s.t_to_sigma(torch.rand(B, generator=generator, dtype=torch.float64) * (s.T - 1))


def ect_loss(net, x0: torch.Tensor, s: NoiseSchedule, stage: int, *, y=None, prediction: str = "v",
             c: float | None = None, generator=None) -> torch.Tensor:
    """The ECT loss of one batch: x̃_t = x_0 + t ε, x̃_r = x_0 + r ε (one ε), the target sg f_θ(x̃_r, r)
    computed without dropout and without gradient (f = x_0 exactly where r = 0), weight 1/(t − r)."""
    B = x0.shape[0]
    t = sample_sigma(s, B, generator)
    r = ect_r(t, stage, float(s.sigmas[0]))
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = x0 + per_sample(t, x0).to(x0) * eps
    x_r = x0 + per_sample(r, x0).to(x0) * eps
    was_training = net.training
    with torch.no_grad():
        net.eval()
        target = consistency_fn(net, x_r, r, s, prediction=prediction, y=y)
        net.train(was_training)
    f = consistency_fn(net, x_t, t, s, prediction=prediction, y=y)
    w = (1 / (t - r)).to(f)
    return (w * pseudo_huber(f, target, c if c is not None else huber_c(x0))).mean()


@dataclass
class TuneConfig:
    """Everything that defines an ECT run on images. Plain values only: it is stored in each checkpoint."""

    iters: int = 6400
    stage_iters: int = 800            # updates per stage a; Δt/t = n(t)/q^a
    batch_size: int = 32
    lr: float = 2e-4                  # Adam, constant
    grad_clip: float = 1.0
    ema_decay: float = 0.999          # the EMA is what is exported and sampled
    prediction: str = "v"             # what the consistency network outputs (it starts from an ε-model)
    q: float = 2.0
    k: float = 8.0
    b: float = 1.0
    label_dropout: float = 1.0        # 1: every label is the null label (an unconditional model)
    seed: int = 0
    checkpoint_every: int = 100
    data: str = "mnist_subset"
    init: str = ""                    # where the weights came from, for the record
    command: str = ""

    def validate(self) -> None:
        check_config(self)
        v = self.stage_iters
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"stage_iters must be a positive integer, got {self.stage_iters!r}")
        skip_out(torch.zeros(1), self.prediction)
        if not 0.0 <= self.label_dropout <= 1.0:
            raise ValueError(f"label_dropout must lie in [0, 1], got {self.label_dropout}")
        if not self.q > 1:
            raise ValueError(f"q must be > 1 (Δt shrinks by q per stage), got {self.q}")

    def stage(self, step: int) -> int:
        return step // self.stage_iters


def stage_path(out: str | Path, stage: int) -> Path:
    """Where ``tune`` saves the model at the end of stage ``stage``."""
    return Path(out) / f"stage_{stage:02d}.pt"


def tune(cfg: TuneConfig, out: str | Path, net: nn.Module, s: NoiseSchedule, data: tuple | None = None, *,
         resume: bool = False, device: torch.device | None = None, progress: bool = True,
         stop_after: int | None = None) -> Path:
    """Run (or continue) easy consistency tuning of ``net`` (a course U-Net, e.g. the shipped ε-model) in
    folder ``out`` (the loop, checkpoints and resume: finetune.run), one snapshot per finished stage
    (``stage_path``). data: ``(images, labels or None)``, default ``data.load(cfg.data, "train")``. A
    class-conditional net gets the null label with probability ``cfg.label_dropout``, its label otherwise.
    Returns the path of the last checkpoint."""
    cfg.validate()
    if data is None:
        from .data import load
        data = load(cfg.data, "train")
    x_all, y_all = data
    null = getattr(net, "null_label", None)
    conditional = isinstance(null, int) and not isinstance(null, bool)
    labels = y_all if y_all is not None else torch.zeros(x_all.shape[0], dtype=torch.long)

    def batch_loss(model, batch, step, gen):
        x0, y = batch
        if not conditional:
            y = None
        elif y_all is None or cfg.label_dropout == 1.0:
            y = torch.full_like(y, null)
        else:
            y = y.clone().long()
            y[(torch.rand(y.shape[0], generator=gen) < cfg.label_dropout).to(y.device)] = null
        stage = cfg.stage(step)
        return ect_loss(model, x0, s, stage, y=y, prediction=cfg.prediction, generator=gen), {"stage": stage}

    def snapshot(step):
        done = step % cfg.stage_iters == 0 or step == cfg.iters
        return stage_path(out, cfg.stage(step - 1)) if done else None

    return finetune.run(cfg, KIND, out, net, s, (x_all, labels), batch_loss, snapshot=snapshot, resume=resume,
                        device=device, progress=progress, stop_after=stop_after, desc="consistency tuning")


def load_tuned(path: str | Path, ema: bool = True) -> tuple[nn.Module, str]:
    """The consistency model in a ``tune`` checkpoint: (U-Net in eval mode on the CPU, prediction)."""
    net, config = finetune.load(path, KIND, ema)
    return net, config["prediction"]

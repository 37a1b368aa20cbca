"""Samplers: one short loop per paper, all behind ``sample(...)``.

Every sampler walks a ``Grid`` (``s.grid(steps, spacing)``): model timesteps ``ts[0..n-1]`` and n + 1
levels ᾱ_0 < … < ᾱ_n = 1, the last one the clean sample. Level i has the VP state
x_i = √ᾱ_i x_0 + √(1 − ᾱ_i) ε, or in σ-space x̃ = x/√ᾱ = x_0 + σ ε with σ = √((1 − ᾱ)/ᾱ).

A sampler has the signature ``f(eps_model, x, grid, *, generator=None, callback=None, **options)``
(like k-diffusion's ``sampling.py``): ``eps_model(x, i)`` is ε̂ at level i (see `EpsModel`), and
``callback(i, x_i, x0_hat)`` is called once per step with the state and the predicted clean sample.

NFE counts denoiser evaluations per sample: one per model call, two when classifier-free guidance runs
the conditional and unconditional branch (they go through the network as one batch of 2B).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .diffusion import PREDICTIONS, eps_to_x0, per_sample, to_eps, x0_to_eps
from .schedule import Grid, NoiseSchedule

VARIANCES = ("fixed_small", "fixed_large")
X0_CLIPS = (None, "static", "dynamic")
DYNAMIC_PERCENTILE = 0.995   # Imagen's p (Saharia et al. 2022, §2.3); diffusers' dynamic_thresholding_ratio


def threshold_x0(x0: torch.Tensor, how: str | None) -> torch.Tensor:
    """Keep the predicted clean image x̂_0 in the data range [−1, 1]:
    "static": clip x̂_0 to [−1, 1] (the reference code of DDPM);
    "dynamic": Imagen's dynamic thresholding (Saharia et al. 2022, §2.3): per sample, s = the p-th percentile
      of |x̂_0| (p = 0.995), s ← max(s, 1), then x̂_0 ← clip(x̂_0, −s, s)/s, which pulls saturated pixels
      inwards instead of flattening them; None: unchanged."""
    if how is None:
        return x0
    if how == "static":
        return x0.clamp(-1.0, 1.0)
    flat = x0.reshape(len(x0), -1).abs().float()
    s = torch.quantile(flat, DYNAMIC_PERCENTILE, dim=1).clamp(min=1.0).to(x0.dtype)
    s = per_sample(s, x0)
    return torch.maximum(torch.minimum(x0, s), -s) / s


class EpsModel:
    """Wraps a user model once: broadcasts t, calls it (with classifier-free guidance when asked),
    checks the output, converts x₀- or v-predictions to ε̂, optionally clips or thresholds x̂_0 (and returns
    the ε̂ that goes with the clipped x̂_0), counts NFE and remembers where values stopped being finite.
    ``eps_model(x, i)`` is ε̂(x, t_i) at level i of ``grid``."""

    def __init__(self, model, grid: Grid, x_T: torch.Tensor, y=None, guidance_scale: float = 1.0,
                 prediction: str = "eps", x0_clip: str | None = None):
        if not callable(model):
            raise TypeError("model must be callable as model(x, t) or model(x, t, y), "
                            f"got {type(model).__name__}")
        if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point():
            got = x_T.dtype if isinstance(x_T, torch.Tensor) else type(x_T).__name__
            raise TypeError(f"x_T must be a floating-point tensor, got {got}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if x0_clip not in X0_CLIPS:
            raise ValueError(f"x0_clip must be one of {X0_CLIPS}, got {x0_clip!r}")
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real) \
                or not math.isfinite(guidance_scale) or guidance_scale < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0 (1 = no guidance), got "
                             f"{guidance_scale!r}")
        _check_x_T(model, x_T)
        B = x_T.shape[0]
        self.model, self.grid, self.prediction, self.x0_clip = model, grid, prediction, x0_clip
        self.scale = float(guidance_scale)         # the guidance scale s = 1 + w (w: Ho & Salimans' weight)
        # integer t for the integer grids; float t between them (karras), at least float32 so t stays exact
        t_dtype = torch.int64 if grid.discrete else torch.promote_types(x_T.dtype, torch.float32)
        self.ts = grid.ts.to(device=x_T.device, dtype=t_dtype)[:, None].expand(-1, B).contiguous()
        self.ab = grid.alpha_bars.tolist()
        self.y = self._check_y(y, B, x_T.device)
        self.nfe, self._sums = 0, []

    def _check_y(self, y, B, device):
        if y is None:
            if self.scale != 1.0:
                raise ValueError(f"guidance_scale={self.scale} needs class labels y (or guidance_scale=1.0)")
            return None
        y = torch.as_tensor(y, device=device)
        if y.dtype not in (torch.int64, torch.int32) or y.shape != (B,):
            raise ValueError(f"y must be an integer tensor of shape (B,) = ({B},), "
                             f"got {y.dtype} {tuple(y.shape)}")
        if self.scale == 1.0:
            return y
        null = getattr(self.model, "null_label", None)
        if not isinstance(null, int):
            raise ValueError(f"guidance_scale={self.scale} != 1 needs a class-conditional model with an "
                             "integer attribute model.null_label (the label of the unconditional branch)")
        if self.scale == 0.0:                                     # ε̃ = ε_∅: the conditional branch is unused
            return torch.full_like(y, null)
        return torch.cat([y, torch.full_like(y, null)])           # conditional and unconditional labels

    def __call__(self, x: torch.Tensor, i: int) -> torch.Tensor:
        t, guided = self.ts[i], self.y is not None and self.scale not in (0.0, 1.0)
        if guided:                                                # both branches in one batch of 2B
            x2 = torch.cat([x, x])
            out = self._check(self.model(x2, torch.cat([t, t]), self.y), x2).reshape(2, *x.shape)
        else:
            out = self._check(self.model(x, t) if self.y is None else self.model(x, t, self.y), x)
        eps = to_eps(out, x, self.ab[i], self.prediction)         # conversion is affine, so guide after it
        if guided:
            eps = eps[1] + self.scale * (eps[0] - eps[1])  # ε̃ = ε_∅ + s (ε_y − ε_∅), s = 1 + w (H&S eq. 6)
        if self.x0_clip is not None:                   # clip x̂_0, then the ε̂ of the same x_t (DDIM eq. 9)
            x0 = threshold_x0(eps_to_x0(x, eps, self.ab[i]), self.x0_clip)
            eps = x0_to_eps(x, x0, self.ab[i])
        self.nfe += 2 if guided else 1
        self._sums.append((i, eps.sum()))           # NaN/inf survive a sum: one cheap pass, no device sync
        return eps

    @staticmethod
    def _check(out, x):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"model must return a tensor, got {type(out).__name__}")
        if not out.is_floating_point():
            raise TypeError(f"model must return a floating-point tensor, got {out.dtype}")
        if out.shape != x.shape:
            raise ValueError(f"model output must have the shape of its input x, {tuple(x.shape)}, "
                             f"got {tuple(out.shape)}")
        return out.to(x.dtype)             # a float64 output keeps the sample in x_T's dtype, as promised

    def check_finite(self, x: torch.Tensor, sampler: str) -> None:
        """Raise, naming the first step with NaN/inf, if the final sample is not finite (one sync)."""
        if bool(torch.isfinite(x).all()):
            return
        sums = torch.stack([v for _, v in self._sums]).cpu() if self._sums else torch.zeros(0)
        bad = (~torch.isfinite(sums)).nonzero()           # (a huge finite sum may overflow: blame the first)
        i = self._sums[int(bad[0])][0] if len(bad) else len(self.grid) - 1
        raise ValueError(f"{sampler}: NaN/inf appeared at step {i} (t = {float(self.grid.ts[i]):g}) of "
                         f"{len(self.grid)}; check the model output and x_T")


def _check_x_T(model, x_T: torch.Tensor) -> None:
    """A non-empty batch; when the model says what it expects (a U-Net's config and parameters), the shape
    (C, H, W) and the device must match: a raw torch error deep inside the network names neither."""
    if x_T.dim() < 2 or x_T.shape[0] == 0:
        raise ValueError(f"x_T must be a non-empty batch (B, ...) with B >= 1, got shape {tuple(x_T.shape)}")
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "in_channels") and hasattr(cfg, "image_size"):
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if tuple(x_T.shape[1:]) != want:
            raise ValueError(f"x_T must have shape (B, {', '.join(map(str, want))}) for this model, got "
                             f"{tuple(x_T.shape)}")
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    if first is not None and first.device != x_T.device:
        raise ValueError(f"x_T is on {x_T.device} but the model is on {first.device}: move one of them "
                         "(x_T.to(device))")


def _randn(like: torch.Tensor, generator) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (CPU by default), then moved: CPU seeds are reproducible."""
    dev = generator.device if generator is not None else "cpu"
    return torch.randn(like.shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


# --- the samplers --------------------------------------------------------------------------------------
def ddpm_sample(eps_model, x, grid, *, variance="fixed_small", generator=None, callback=None):
    """Ancestral sampling (DDPM Algorithm 2) on any grid, with β_t' = 1 − ᾱ_t/ᾱ_prev between levels.
    variance: "fixed_small" β̃_t' = (1 − ᾱ_prev)/(1 − ᾱ_t) β_t'  or  "fixed_large" β_t'  (DDPM §3.2).
    The last step, to ᾱ = 1, adds no noise (β̃ = 0 there; for "fixed_large" we also add none)."""
    ab, n = grid.alpha_bars.tolist(), len(grid)
    for i in range(n):
        a, a_prev = ab[i], ab[i + 1]
        eps = eps_model(x, i)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)                  # x̂_0               (eq. 15)
        if callback:
            callback(i, x, x0)
        beta = 1 - a / a_prev
        x = (math.sqrt(a_prev) * beta / (1 - a)) * x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)) * x
        var = beta if variance == "fixed_large" else (1 - a_prev) / (1 - a) * beta   # β or β̃ (eq. 7)
        if i < n - 1:                                                     # x_{t-1} = μ̃ + σ_t z
            x = x + math.sqrt(var) * _randn(x, generator)
    return x


def ddim_sample(eps_model, x, grid, *, eta=0.0, generator=None, callback=None):
    """DDIM (Song et al. 2021, eq. 12): x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z,
    σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)  (eq. 16). η = 0 is deterministic, η = 1 is DDPM."""
    ab = grid.alpha_bars.tolist()
    for i in range(len(grid)):
        a, a_prev = ab[i], ab[i + 1]
        eps = eps_model(x, i)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)                  # "predicted x_0" (eq. 12)
        if callback:
            callback(i, x, x0)
        sig = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sig**2, 0.0)) * eps   # max: rounding
        if sig > 0:
            x = x + sig * _randn(x, generator)
    return x


def euler_sample(eps_model, x, grid, *, generator=None, callback=None):
    """Euler on the probability-flow ODE dx̃/dσ = ε̂(x̃, σ) in σ-space (Karras et al. 2022, eq. 4 with
    x̃ = x/√ᾱ). One step is exactly a DDIM(η = 0) step."""
    ab, sig = grid.alpha_bars.tolist(), grid.sigmas.tolist()
    xs = x / math.sqrt(ab[0])                                             # x̃ = x/√ᾱ
    for i in range(len(grid)):
        eps = eps_model(xs * math.sqrt(ab[i]), i)                         # the model sees x = x̃/√(1+σ²)
        if callback:
            callback(i, xs * math.sqrt(ab[i]), xs - sig[i] * eps)
        xs = xs + (sig[i + 1] - sig[i]) * eps
    return xs                                                             # σ_n = 0, so x = x̃


def heun_sample(eps_model, x, grid, *, generator=None, callback=None):
    """Heun's 2nd-order method on dx̃/dσ = ε̂ (Karras et al. 2022, Algorithm 1, no churn): an Euler step,
    then the trapezoidal correction, skipped on the last step to σ = 0. NFE = 2·steps − 1."""
    ab, sig = grid.alpha_bars.tolist(), grid.sigmas.tolist()
    xs = x / math.sqrt(ab[0])
    for i in range(len(grid)):
        d = eps_model(xs * math.sqrt(ab[i]), i)                           # slope at σ_i       (line 5)
        if callback:
            callback(i, xs * math.sqrt(ab[i]), xs - sig[i] * d)
        x_next = xs + (sig[i + 1] - sig[i]) * d                           # Euler step          (line 6)
        if sig[i + 1] > 0:
            d2 = eps_model(x_next * math.sqrt(ab[i + 1]), i + 1)          # slope at σ_{i+1}    (line 9)
            x_next = xs + (sig[i + 1] - sig[i]) * (d + d2) / 2            # trapezoidal rule    (line 10)
        xs = x_next
    return xs


MAX_STEP_GROWTH = 2.0
"""The multistep solvers (dpmpp_2m, dpmpp_2m_sde, unipc) extrapolate D linearly in λ only while the new step
is at most this many times the last one, h ≤ 2 h_{i−1}; beyond it the weight h/(2h_{i−1}) on D_{i−1}
exceeds 1 (the line reaches further ahead than the two points it was fitted on are apart) and the step
falls back to first order (DDIM's). Uniform-in-t grids end with such a jump (σ ≈ 0.18 → σ_min ≈ 0.01 for
leading and linspace); on the Gaussian oracle the unguarded 20-step DPM-Solver++(2M) ends with std 0.62
instead of 0.50 (benchmarks/final_steps.py). Karras grids never trigger it. diffusers extrapolates
regardless (its ``lower_order_final`` only acts on the last steps below 15 steps): pass
``max_growth=math.inf`` to the sampler functions for its rule."""


def _second_order(h: float, h_old: float | None, max_growth: float) -> bool:
    return h_old is not None and h <= max_growth * h_old


def dpmpp_2m_sample(eps_model, x, grid, *, generator=None, callback=None, max_growth=MAX_STEP_GROWTH):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): integrates the linear part exactly in λ = −log σ,
    using the data prediction D = x̃ − σ ε̂ extrapolated from the last two steps.
        x̃_{i+1} = (σ_{i+1}/σ_i) x̃_i − (e^{−h} − 1) D̂,   h = λ_{i+1} − λ_i,
        D̂ = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1},  r = h_{i−1}/h   (first step: D̂ = D_i, i.e. DDIM).
    The last step to σ = 0 is exact: x = D_i. Steps more than ``max_growth`` times the previous in λ use
    D̂ = D_i (see MAX_STEP_GROWTH)."""
    return _dpmpp_2m(eps_model, x, grid, sde=False, generator=generator, callback=callback,
                     max_growth=max_growth)


def _data_prediction(eps_model, xs, i, ab, sig, callback):
    """D_i = x̃_i − σ_i ε̂(x_i, t_i), the predicted clean sample x̂_0 at level i (1 NFE); tells callback."""
    D = xs - sig[i] * eps_model(xs * math.sqrt(ab[i]), i)
    if callback:
        callback(i, xs * math.sqrt(ab[i]), D)
    return D


def _dpmpp_2m(eps_model, x, grid, *, sde, generator, callback, max_growth):
    """The multistep loop shared by the ODE (dpmpp_2m) and SDE (dpmpp_2m_sde) variants."""
    ab, sig = grid.alpha_bars.tolist(), grid.sigmas.tolist()
    xs, D_old, h_old = x / math.sqrt(ab[0]), None, None
    for i in range(len(grid)):
        D = _data_prediction(eps_model, xs, i, ab, sig, callback)
        if sig[i + 1] == 0:                                               # the last step: x = x̂_0
            return D
        h = math.log(sig[i] / sig[i + 1])
        second = _second_order(h, h_old, max_growth)
        D_hat = (1 + h / (2 * h_old)) * D - h / (2 * h_old) * D_old if second else D
        if sde:
            xs = (sig[i + 1] / sig[i] * math.exp(-h)) * xs - math.expm1(-2 * h) * D_hat
            xs = xs + sig[i + 1] * math.sqrt(-math.expm1(-2 * h)) * _randn(xs, generator)
        else:
            xs = (sig[i + 1] / sig[i]) * xs - math.expm1(-h) * D_hat
        D_old, h_old = D, h
    return xs


def ancestral_sigmas(sigma: float, sigma_next: float) -> tuple[float, float]:
    """(σ_down, σ_up) of an ancestral step from σ to σ_next: σ_up² = σ_next² (σ² − σ_next²)/σ² and
    σ_down² = σ_next² − σ_up², so that the Euler step to σ_down plus noise σ_up z lands at σ_next."""
    up = math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
    return math.sqrt(sigma_next**2 - up**2), up


def euler_ancestral_sample(eps_model, x, grid, *, generator=None, callback=None):
    """Euler ancestral in σ-space ("Euler a": k-diffusion's sample_euler_ancestral, diffusers'
    EulerAncestralDiscreteScheduler). Each step splits the move from σ_i to σ_{i+1} into a deterministic
    Euler step down to σ_down and fresh noise back up to σ_{i+1}, as DDPM's ancestral step does:
        σ_up = √(σ_{i+1}² (σ_i² − σ_{i+1}²) / σ_i²),  σ_down = √(σ_{i+1}² − σ_up²),
        x̃ ← x̃ + (σ_down − σ_i) ε̂ + σ_up z."""
    ab, sig = grid.alpha_bars.tolist(), grid.sigmas.tolist()
    xs = x / math.sqrt(ab[0])
    for i in range(len(grid)):
        eps = eps_model(xs * math.sqrt(ab[i]), i)
        if callback:
            callback(i, xs * math.sqrt(ab[i]), xs - sig[i] * eps)
        s_down, s_up = ancestral_sigmas(sig[i], sig[i + 1])
        xs = xs + (s_down - sig[i]) * eps
        if s_up > 0:
            xs = xs + s_up * _randn(xs, generator)
    return xs


def dpmpp_2m_sde_sample(eps_model, x, grid, *, generator=None, callback=None,
                        max_growth=MAX_STEP_GROWTH):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, §5 and App. B; diffusers' "sde-dpmsolver++", midpoint): the
    reverse SDE's linear part integrated exactly in λ = −log σ, with the data prediction extrapolated as in
    DPM-Solver++(2M) and fresh noise of the exact variance,
        x̃_{i+1} = (σ_{i+1}/σ_i) e^{−h} x̃_i + (1 − e^{−2h}) D̂ + σ_{i+1} √(1 − e^{−2h}) z,
    h = λ_{i+1} − λ_i, D̂ as in dpmpp_2m (first step: D̂ = D_i). The last step to σ = 0 is x = D_i."""
    return _dpmpp_2m(eps_model, x, grid, sde=True, generator=generator, callback=callback,
                     max_growth=max_growth)


def unipc_sample(eps_model, x, grid, *, generator=None, callback=None, max_growth=MAX_STEP_GROWTH):
    """UniPC (Zhao et al. 2023; diffusers' UniPCMultistepScheduler default: order 2, B(h) = e^h − 1 ("bh2"),
    data prediction, lower order at the first and last step). In σ-space with λ = −log σ, h = λ_{i+1} − λ_i:
      UniP (predictor) x̃_{i+1} = (σ_{i+1}/σ_i) x̃_i − (e^{−h} − 1) (D_i + Σ_k ρ_k^p ΔD_k)   — with order 2 and
        ρ^p = ½ this is DPM-Solver++(2M);
      UniC (corrector), once D_{i+1} = D(x̃_{i+1}) is known: the same step redone with the new difference
        ΔD_{i+1} = D_{i+1} − D_i,
        x̃_{i+1}ᶜ = (σ_{i+1}/σ_i) x̃_i − (e^{−h} − 1)(D_i + Σ_k ρ_k^c ΔD_k + ρ^c ΔD_{i+1}).
    ΔD_k = (D_{i−k} − D_i)/r_k, r_k = (λ_{i−k} − λ_i)/h; ρ solves R ρ = b with R_{jk} = r_k^{j−1} and
    b_j = j! h φ_{j+1}(h)/B(h) (the paper's §3; UniC-p has order p + 1). The corrector reuses D_{i+1},
    evaluated at the uncorrected x̃_{i+1}: it costs no extra network call. The last step to σ = 0 is x = D;
    a step more than ``max_growth`` times the previous in λ is predicted (and corrected) at order 1."""
    ab, sig = grid.alpha_bars.tolist(), grid.sigmas.tolist()
    xs, Ds, lams, prev, h_old = x / math.sqrt(ab[0]), [], [], None, None
    for i in range(len(grid)):
        D = _data_prediction(eps_model, xs, i, ab, sig, callback)
        if sig[i + 1] == 0:                                               # the last step: x = x̂_0
            return D
        lam = -math.log(sig[i])
        if prev is not None:                                              # UniC: correct x̃_i with D_i
            x_before, order = prev
            xs = _unipc_step(x_before, Ds, lams, sig[i - 1], sig[i], order, D_new=D)
        Ds, lams = (Ds + [D])[-2:], (lams + [lam])[-2:]
        h = math.log(sig[i] / sig[i + 1])
        order = 2 if _second_order(h, h_old, max_growth) else 1          # first step: no D_{i−1} yet
        prev = (xs, order)
        xs = _unipc_step(xs, Ds, lams, sig[i], sig[i + 1], order)        # UniP: predict x̃_{i+1}
        h_old = h
    return xs


def _unipc_step(xs, Ds, lams, sig_s, sig_t, order, D_new=None):
    """One UniP step from σ_s (data predictions Ds at λs, last = current) to σ_t, or the UniC step when the
    prediction D_new at σ_t is given. bh2: B(h) = e^{−h} − 1 in the data-prediction (x₀) form."""
    h = math.log(sig_s / sig_t)
    hh = -h
    phi_1 = math.expm1(hh)                                                 # e^{−h} − 1 = B(h)
    b1 = (phi_1 / hh - 1) / phi_1                                         # 1!·hφ₂/B
    b2 = 2 * ((phi_1 / hh - 1) / hh - 0.5) / phi_1                        # 2!·hφ₃/B
    D0 = Ds[-1]
    corr = 0
    if D_new is None:                                                     # predictor
        if order == 2:
            r = (lams[-2] - lams[-1]) / h
            corr = 0.5 * (Ds[-2] - D0) / r                                # ρ^p = ½ (bh2, order 2)
    elif order == 1:
        corr = 0.5 * (D_new - D0)                                         # ρ^c = ½
    else:
        r = (lams[-2] - lams[-1]) / h                                     # R = [[1, 1], [r, 1]], R ρ = b
        rho_0, rho_1 = (b1 - b2) / (1 - r), (b2 - r * b1) / (1 - r)
        corr = rho_0 * (Ds[-2] - D0) / r + rho_1 * (D_new - D0)
    return (sig_t / sig_s) * xs - phi_1 * (D0 + corr)


def consistency_sample(eps_model, x, grid, *, generator=None, callback=None):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a consistency model, whose
    clean prediction x̂_0 *is* f_θ(x_t, t): x ← f_θ(x_T, T); then for each later level τ of the grid
    x_τ = √ᾱ_τ x + √(1 − ᾱ_τ) z, z ~ N(0, I)   (σ-space: x̃_τ = x + τ z; the paper's √(τ² − ε²) with ε = 0)
    and x ← f_θ(x_τ, τ). One step is one-step generation; the grid's levels are the τ_n."""
    ab, n = grid.alpha_bars.tolist(), len(grid)
    for i in range(n):
        x0 = eps_to_x0(x, eps_model(x, i), ab[i])                         # f_θ(x_τ, τ)
        if callback:
            callback(i, x, x0)
        if i < n - 1:                                                     # re-noise to τ_{i+1}
            x = math.sqrt(ab[i + 1]) * x0 + math.sqrt(1 - ab[i + 1]) * _randn(x, generator)
    return x0


SAMPLERS = {"ddpm": ddpm_sample, "ddim": ddim_sample, "euler": euler_sample, "heun": heun_sample,
            "dpmpp_2m": dpmpp_2m_sample, "euler_ancestral": euler_ancestral_sample,
            "dpmpp_2m_sde": dpmpp_2m_sde_sample, "unipc": unipc_sample,
            "consistency": consistency_sample}
# (and ddim with η > 0): they draw fresh noise
STOCHASTIC = ("ddpm", "euler_ancestral", "dpmpp_2m_sde", "consistency")


# --- the public entry points -----------------------------------------------------------------------------
@dataclass
class SampleInfo:
    """What ``sample(..., return_info=True)`` returns next to the sample.

    nfe: denoiser evaluations per sample (guidance counts 2 per call); timesteps: the model timesteps
    (length steps); alpha_bars: ᾱ at the steps + 1 levels (last 1); trajectory: one (x_t, x̂_0) pair
    per step, on the CPU, x_t the state at the start of the step and x̂_0 the model's clean prediction."""

    nfe: int
    timesteps: torch.Tensor
    alpha_bars: torch.Tensor
    trajectory: list = field(default_factory=list)

    @property
    def sigmas(self) -> torch.Tensor:
        return torch.sqrt((1.0 - self.alpha_bars) / self.alpha_bars)


def _sampler_options(sampler, eta, variance, grid):
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {tuple(SAMPLERS)}, got {sampler!r}")
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not eta >= 0:
        raise ValueError(f"eta must be a number >= 0, got {eta!r}")
    if variance is not None and variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if sampler != "ddim" and eta != 0:
        raise ValueError(f"eta applies only to sampler='ddim', got eta={eta} with sampler={sampler!r}")
    if sampler != "ddpm" and variance is not None:
        raise ValueError(f"variance applies only to sampler='ddpm', got variance={variance!r}")
    if sampler == "ddim":
        ab = grid.alpha_bars[:-1]                                         # the last step has σ = 0
        ratio = (1 - ab[:-1]) / (1 - ab[:-1] / ab[1:])                   # σ² ≤ 1 − ᾱ_prev ⟺ η² ≤ ratio
        if len(ratio) and eta**2 > float(ratio.min()):
            raise ValueError(f"eta={eta} is too large for this grid (DDIM needs σ_t² ≤ 1 − ᾱ_prev): "
                             f"use eta <= {math.sqrt(float(ratio.min())):.4f}")
        return {"eta": float(eta)}
    return {"variance": variance or "fixed_small"} if sampler == "ddpm" else {}


def _check_noise_differs(x_T: torch.Tensor, generator) -> None:
    """A stochastic sampler's first draw z must not *be* x_T: seeding both with the same number makes
    x_{t-1} = μ + σ·x_T, which adds the noise twice and blows the sample up (|x| ≫ 1 for 0 < η < 1).
    Peeks at the generator without advancing it."""
    state = generator.get_state()
    z = _randn(x_T, generator)
    generator.set_state(state)
    if torch.equal(z, x_T):
        raise ValueError("generator: its first draw equals x_T (both seeded with the same number?); the "
                         "sampler's noise must be independent of x_T: seed the generator differently")


def sample(model, s: NoiseSchedule, x_T: torch.Tensor, sampler: str = "ddim", steps: int = 50,
           eta: float = 0.0, spacing: str = "leading", generator: torch.Generator | None = None,
           progress: bool = False, y=None, guidance_scale: float = 1.0, *, variance: str | None = None,
           prediction: str = "eps", x0_clip: str | None = None, return_info: bool = False):
    """Draw samples from ``model`` starting at the noise ``x_T``.

    sampler: a name in SAMPLERS (ddpm, ddim, euler, heun, dpmpp_2m, euler_ancestral, dpmpp_2m_sde, unipc,
    consistency — Algorithm 1 of Song et al. 2023, for consistency models);
    spacing: "leading" | "trailing" | "linspace" | "karras";  eta (ddim only) ≥ 0;  variance (ddpm only):
    "fixed_small" (default) | "fixed_large";  prediction: what the model outputs, "eps" | "x0" | "v";
    y, guidance_scale: class labels and classifier-free guidance (scale ≠ 1 needs ``model.null_label``);
    x0_clip: None | "static" (clip x̂_0 to [−1, 1]) | "dynamic" (Imagen's thresholding), see threshold_x0.
    Returns the sample (shape, dtype and device of x_T), or ``(sample, SampleInfo)`` if return_info.
    """
    grid = s.grid(steps, spacing)                                         # validates steps and spacing
    opts = _sampler_options(sampler, eta, variance, grid)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator (torch.Generator().manual_seed(n)) or None, "
                        f"got {type(generator).__name__} {generator!r}")
    if generator is not None and (sampler in STOCHASTIC or opts.get("eta", 0) > 0):
        _check_noise_differs(x_T, generator)
    eps_model = EpsModel(model, grid, x_T, y=y, guidance_scale=guidance_scale, prediction=prediction,
                         x0_clip=x0_clip)
    trajectory = []
    with torch.no_grad(), tqdm(total=len(grid), desc=sampler, disable=not progress) as bar:

        def callback(i, x_t, x0_hat):
            bar.update(1)
            if return_info:
                trajectory.append((x_t.detach().to("cpu", copy=True), x0_hat.detach().to("cpu", copy=True)))

        x0 = SAMPLERS[sampler](eps_model, x_T, grid, generator=generator, callback=callback, **opts)
    eps_model.check_finite(x0, sampler)
    if not return_info:
        return x0
    return x0, SampleInfo(eps_model.nfe, grid.ts.clone(), grid.alpha_bars.clone(), trajectory)


def ddim_invert(model, s: NoiseSchedule, x0: torch.Tensor, steps: int = 50, spacing: str = "leading",
                progress: bool = False, y=None, guidance_scale: float = 1.0, *, prediction: str = "eps",
                return_info: bool = False):
    """DDIM inversion x_0 → x_T: the η = 0 ODE run backwards (Song et al. 2021, §4.3), an Euler step
    in σ-space per level. ε is not defined at σ = 0, so each step uses the slope at the current point
    labelled with the next (noisier) timestep, as diffusers' DDIMInverseScheduler does.
    ``ddim_sample`` on the same steps and spacing maps the result back close to x0. With return_info
    the trajectory runs in the order visited, clean → noisy."""
    grid = s.grid(steps, spacing)
    eps_model = EpsModel(model, grid, x0, y=y, guidance_scale=guidance_scale, prediction=prediction)
    ab, sig = grid.alpha_bars.tolist(), grid.sigmas.tolist()
    xs, trajectory = x0, []
    with torch.no_grad():
        for i in tqdm(reversed(range(len(grid))), total=len(grid), desc="ddim_invert", disable=not progress):
            eps = eps_model(xs * math.sqrt(ab[i + 1]), i)                 # the current state, at t_i
            if return_info:
                trajectory.append((xs * math.sqrt(ab[i + 1]), xs - sig[i + 1] * eps))
            xs = xs + (sig[i] - sig[i + 1]) * eps                         # Euler step up in σ
    x_T = xs * math.sqrt(ab[0])
    eps_model.check_finite(x_T, "ddim_invert")
    if not return_info:
        return x_T
    return x_T, SampleInfo(eps_model.nfe, grid.ts.clone(), grid.alpha_bars.clone(),
                           [(a.cpu(), b.cpu()) for a, b in trajectory])

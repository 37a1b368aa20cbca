"""Correct answers to every exercise, written from the formulas the way a learner would, not from the package.

`INDEPENDENT` maps each check's name to one or more of them: tests/test_checks.py runs every one through its
check (the contract test). The per-notebook tests (tests/test_checks_nbNN*.py) build their typical mistakes
from the same functions. Not a test module: pytest collects only test_*.py.
"""

import math

import pytest
import torch
import torch.nn.functional as F


def per_sample(v, x):
    """Per-sample coefficients (B,) -> (B, 1, ...) in x's dtype."""
    return v.to(x).reshape(-1, *[1] * (x.dim() - 1))


# --- notebook 00 and 01 -------------------------------------------------------------------------------------
def snr_inverted(ab):
    return 1 / (1 / ab - 1)


def alpha_bars_log_sum(b):
    return torch.exp(torch.cumsum(torch.log1p(-b), 0))


def q_sample_sqrt(x0, t, n, s):
    return per_sample(s.alpha_bars[t].sqrt(), x0) * x0 + per_sample((1 - s.alpha_bars[t]).sqrt(), x0) * n


def log_snr_ratio(ab):
    return torch.log(ab / (1 - ab))


# --- notebook 02 --------------------------------------------------------------------------------------------
def loss_mse(model, x0, t, noise, s):
    ab = s.alpha_bars[t].to(x0).reshape(-1, *[1] * (x0.dim() - 1))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise                       # DDPM eq. 4
    return F.mse_loss(model(x_t, t), noise)                                # eq. 14


def embedding_powers(t, dim):
    half = dim // 2
    w = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)   # ω_k = 10000^(−k/half)
    a = t.double()[:, None] * w[None]
    return torch.cat([a.cos(), a.sin()], dim=1).float()


# --- notebook 03 --------------------------------------------------------------------------------------------
def posterior(x0, x_t, t, s, prev=lambda t: t - 1):
    ab = s.alpha_bars[t]
    ab_prev = torch.where(t > 0, s.alpha_bars[prev(t).clamp(min=0)], torch.ones((), dtype=torch.float64))
    beta = 1 - ab / ab_prev
    mean = (per_sample(ab_prev.sqrt() * beta / (1 - ab), x0) * x0
            + per_sample((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab), x0) * x_t)  # DDPM eq. 7
    return mean, per_sample((1 - ab_prev) / (1 - ab) * beta, x0)


def ddpm_sigma(t, s, variance):
    """σ_t of Algorithm 2: √β̃_t or √β_t, and 0 at t = 0."""
    ab, b = s.alpha_bars[t], s.betas[t]
    ab_prev = torch.where(t > 0, s.alpha_bars[(t - 1).clamp(min=0)], torch.ones((), dtype=torch.float64))
    var = b if variance == "fixed_large" else (1 - ab_prev) / (1 - ab) * b
    return torch.where(t > 0, var, torch.zeros((), dtype=torch.float64)).sqrt()


def ddpm_step_eq11(x_t, eps, t, s, z, variance="fixed_small"):
    """DDPM eq. 11 directly: 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε̂) + σ_t z."""
    a, ab, b = s.alphas[t], s.alpha_bars[t], s.betas[t]
    mean = (x_t - per_sample(b / (1 - ab).sqrt(), x_t) * eps) / per_sample(a.sqrt(), x_t)
    return mean + per_sample(ddpm_sigma(t, s, variance), x_t) * z


def ddpm_step_float32_tables(x_t, eps, t, s, z, variance="fixed_small"):
    """The same, with the schedule tables cast to x_t's dtype before any arithmetic."""
    a, ab, b = (per_sample(v[t], x_t) for v in (s.alphas, s.alpha_bars, s.betas))
    ab_prev = per_sample(torch.where(t > 0, s.alpha_bars[(t - 1).clamp(min=0)],
                                     torch.ones((), dtype=torch.float64)), x_t)
    var = b if variance == "fixed_large" else (1 - ab_prev) / (1 - ab) * b
    var = torch.where(per_sample(t, x_t) > 0, var, torch.zeros_like(var))
    return (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt() + var.sqrt() * z


def _ab(ab, x):
    if torch.is_tensor(ab):
        return per_sample(ab, x)
    return torch.tensor(ab).to(x)


def eps_to_x0_mine(x_t, eps, ab):
    return (x_t - (1 - _ab(ab, x_t)).sqrt() * eps) / _ab(ab, x_t).sqrt()


def score_fd_stacked(log_p, x, h):               # all 2d shifted copies in one batch, then split
    d = x.shape[1]
    e = h * torch.eye(d, dtype=x.dtype)
    plus = log_p((x[:, None] + e[None]).reshape(-1, d)).reshape(len(x), d)
    minus = log_p((x[:, None] - e[None]).reshape(-1, d)).reshape(len(x), d)
    return (plus - minus) / (2 * h)


# --- notebook 04 --------------------------------------------------------------------------------------------
def ddim_step_mine(x_t, eps, ab_t, ab_prev, eta, z):
    x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    sig2 = eta**2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev - sig2) * eps + math.sqrt(sig2) * z


def ddim_sampler_mine(model, s, x_T, steps, eta=0.0, spacing="leading", generator=None):
    grid = s.grid(steps, spacing)                 # the levels, written with the timestep list and ᾱ table
    x, ab = x_T, grid.alpha_bars.tolist()
    for i, t in enumerate(grid.ts.tolist()):
        eps = model(x, torch.full((len(x),), t))
        sig = eta * math.sqrt((1 - ab[i + 1]) / (1 - ab[i]) * (1 - ab[i] / ab[i + 1]))
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if sig > 0 else torch.zeros_like(x)
        x = ddim_step_mine(x, eps, ab[i], ab[i + 1], eta, z)
    return x


def slerp_mine(z0, z1, alpha):
    u0, u1 = z0 / z0.norm(), z1 / z1.norm()
    theta = torch.acos(torch.clamp((u0 * u1).sum(), -1.0, 1.0))
    if theta.abs() < 1e-4:
        return torch.lerp(z0, z1, alpha)
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)


# --- notebook 05 --------------------------------------------------------------------------------------------
def heun_karras(x, sig, sig_next, eps):                # Karras' form with the denoiser D = x̃ − σ ε̂
    dt = sig_next - sig
    d1 = eps(x, sig)
    if sig_next == 0:
        return x + dt * d1
    x_e = x + dt * d1
    return x + 0.5 * dt * d1 + 0.5 * dt * eps(x_e, sig_next)


def dpmpp_2m_lambda(x, sig, sig_next, D, D_prev, h_prev):  # written with λ = −log σ and σ_{i+1}/σ_i
    lam, lam_next = -math.log(sig), -math.log(sig_next)
    ratio = math.exp(lam - lam_next)
    if D_prev is None:
        return ratio * x + (1 - ratio) * D
    r = h_prev / (lam_next - lam)
    return ratio * x + (1 - ratio) * (D + (D - D_prev) / (2 * r))


def karras_sigmas_loop(n, sigma_min, sigma_max, rho=7.0):   # one level at a time, as EDM's Table 1 writes it
    out = []
    for i in range(n):
        w = i / (n - 1) if n > 1 else 0.0
        out.append((sigma_max ** (1 / rho) + w * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho)
    return torch.tensor(out + [0.0], dtype=torch.float64)


def euler_ancestral_ddim(x, sig, sig_next, eps, z):  # as DDIM η = 1 in σ-space: x̂_0 + σ_down ε̂ + σ_up z
    e = eps(x, sig)
    up = sig_next * math.sqrt(max(0.0, 1 - sig_next**2 / sig**2))
    return (x - sig * e) + math.sqrt(sig_next**2 - up**2) * e + up * z


# --- notebook 06 --------------------------------------------------------------------------------------------
def frechet_scipy(mu1, cov1, mu2, cov2):
    """Textbook FID with scipy's general matrix square root of C₁C₂ (real part)."""
    import numpy as np

    linalg = pytest.importorskip("scipy.linalg")
    mu1, cov1, mu2, cov2 = (np.asarray(a, dtype=np.float64) for a in (mu1, cov1, mu2, cov2))
    root = linalg.sqrtm(cov1 @ cov2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * root))


def mmd2_loops(fx, fy):
    """Unbiased MMD² by explicit sums over pairs i ≠ j."""
    d = fx.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3
    m, n = len(fx), len(fy)
    sxx = sum(k(fx[i], fx[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(fy[i], fy[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(a, b) for a in fx for b in fy) / (m * n)
    return sxx + syy - 2 * sxy


def inception_score_loops(p_yx):               # entropy form: H(mean p) − mean H(p), exp of it
    p = p_yx.double()
    p_y = p.mean(0)
    h_y = -sum(float(v) * math.log(float(v)) for v in p_y if v > 0)
    h_yx = [-sum(float(v) * math.log(float(v)) for v in row if v > 0) for row in p]
    return math.exp(h_y - sum(h_yx) / len(h_yx))


def fit_cost_lstsq(nfe, seconds):                 # numpy's polynomial fit of degree 1
    import numpy as np

    C, t0 = np.polyfit(np.asarray(nfe, dtype=float), np.asarray(seconds, dtype=float), 1)
    return float(t0), float(C)


# --- notebook 07 --------------------------------------------------------------------------------------------
def two_ddim_steps_mine(x0_fn, z_t, ab_t, ab_mid, ab_next):
    z = z_t
    for k, (a, b) in enumerate([(ab_t, ab_mid), (ab_mid, ab_next)]):
        x0 = x0_fn(z, k)
        eps = (z - math.sqrt(a) * x0) / math.sqrt(1 - a)           # the noise the DDIM step keeps
        z = math.sqrt(b) * x0 + math.sqrt(1 - b) * eps
    return z


def distill_target_mine(z_t, z_next, ab_t, ab_next):
    r = math.sqrt((1 - ab_next) / (1 - ab_t))
    return (z_next - r * z_t) / (math.sqrt(ab_next) - r * math.sqrt(ab_t))


def loss_weight_mine(ab, kind):
    snr = ab / (1 - ab)
    return snr.clamp(min=1) if kind == "truncated_snr" else 1 + snr


# --- notebook 08 --------------------------------------------------------------------------------------------
def drop_labels_mine(y, p, null_label, generator):
    u = torch.rand(y.shape[0], generator=generator)
    out = y.clone()
    out[u < p] = null_label
    return out


def guided_eps_mine(eps_cond, eps_null, scale):
    return scale * eps_cond + (1 - scale) * eps_null                       # the same line, rearranged


def guided_eps_ho_salimans(eps_cond, eps_null, scale):
    w = scale - 1                                                          # s = 1 + w
    return (1 + w) * eps_cond - w * eps_null                               # Ho & Salimans eq. 6


def per_digit_accuracy_mine(predicted, requested, num_classes=10):
    out = torch.empty(num_classes, dtype=torch.float64)
    for k in range(num_classes):
        asked = requested == k
        out[k] = (predicted[asked] == k).double().mean() if asked.any() else math.nan
    return out


# --- notebook 09 --------------------------------------------------------------------------------------------
def skip_out_mine(sigma, prediction):
    ab = 1 / (1 + sigma * sigma)                                           # ᾱ from σ
    if prediction == "eps":                                                # x̃ − σ ε̂
        return torch.ones_like(sigma), -sigma
    return ab, -(1 - ab).sqrt()                                            # √ᾱ·√ᾱ x̃ − √(1−ᾱ) v̂


def cd_target_mine(f_ema, eps_fn, x_next, sig_next, sig_n):
    with torch.no_grad():
        d = torch.as_tensor(sig_n, dtype=x_next.dtype) - torch.as_tensor(sig_next, dtype=x_next.dtype)
        slope = eps_fn(x_next, sig_next)                                   # dx̃/dσ at the upper level
        return f_ema(x_next + d.reshape(-1, *[1] * (x_next.dim() - 1)) * slope, sig_n)


def multistep_mine(f, x_T, sigmas, noise):
    x = f(x_T, sigmas[0])
    for tau, z in zip(sigmas[1:], noise, strict=True):
        x = f(x + tau * z, tau)
    return x


def flow_pair_mine(x0, eps, tau):
    tau = torch.as_tensor(tau, dtype=x0.dtype).reshape(-1, *[1] * (x0.dim() - 1))
    return x0 + tau * (eps - x0), eps - x0                                 # walk from x_0 along u


def vp_to_flow_mine(z, ab):
    scale = ab.sqrt() + (1 - ab).sqrt()                                    # √ᾱ + √(1−ᾱ)
    sigma = ((1 - ab) / ab).sqrt()
    return z / scale.to(z.dtype).reshape(-1, *[1] * (z.dim() - 1)), sigma / (1 + sigma)


def straightness_mine(path, taus):
    taus = [float(t) for t in taus]
    x = torch.stack([p.double() for p in path])                            # (K+1, B, ...)
    d = torch.tensor([a - b for a, b in zip(taus, taus[1:], strict=False)], dtype=torch.float64)
    u = (x[:-1] - x[1:]) / d.reshape(-1, *[1] * (x.dim() - 1))
    chord = (x[0] - x[-1]) / (taus[0] - taus[-1])
    err = (u - chord).pow(2).flatten(2).sum(2).mean(1)                      # per segment
    return float((d * err).sum() / (taus[0] - taus[-1]))


INDEPENDENT = {
    "snr": (snr_inverted,),
    "alpha_bars": (alpha_bars_log_sum,),
    "q_sample": (q_sample_sqrt,),
    "log_snr": (log_snr_ratio,),
    "simple_loss": (loss_mse,),
    "timestep_embedding": (embedding_powers,),
    "posterior_mean_variance": (posterior,),
    "ddpm_step": (ddpm_step_eq11, ddpm_step_float32_tables),
    "eps_to_x0": (eps_to_x0_mine,),
    "score_fd": (score_fd_stacked,),
    "ddim_step": (ddim_step_mine,),
    "ddim_sampler": (ddim_sampler_mine,),
    "slerp": (slerp_mine,),
    "heun_step": (heun_karras,),
    "dpmpp_2m_update": (dpmpp_2m_lambda,),
    "karras_sigmas": (karras_sigmas_loop,),
    "euler_ancestral_step": (euler_ancestral_ddim,),
    "frechet_distance": (frechet_scipy,),
    "mmd2_unbiased": (mmd2_loops,),
    "inception_score": (inception_score_loops,),
    "fit_cost": (fit_cost_lstsq,),
    "two_ddim_steps": (two_ddim_steps_mine,),
    "distill_target": (distill_target_mine,),
    "loss_weight": (loss_weight_mine,),
    "drop_labels": (drop_labels_mine,),
    "guided_eps": (guided_eps_mine, guided_eps_ho_salimans),
    "per_digit_accuracy": (per_digit_accuracy_mine,),
    "skip_out": (skip_out_mine,),
    "cd_target": (cd_target_mine,),
    "multistep": (multistep_mine,),
    "flow_pair": (flow_pair_mine,),
    "vp_to_flow": (vp_to_flow_mine,),
    "straightness": (straightness_mine,),
}

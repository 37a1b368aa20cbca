# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · DDPM sampling: running the noise backwards
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json). Nothing trains here: about 2,000
# U-Net calls on batches of 8 to 30.
#
# **You will**
# - derive the posterior q(x_{t−1} | x_t, x_0) (DDPM eq. 6–7), implement it and verify it by Monte Carlo;
# - see why DDPM's two variance choices β_t and β̃_t (§3.2) bracket the true reverse variance;
# - write one step of **ancestral sampling** (Algorithm 2) and run the whole sampler yourself, first
#   on 2-D toy data with an *exact* denoiser (no training, no model error), then on MNIST with the
#   course's trained U-Net;
# - watch trajectories: x_t and the model's running guess x̂_0 of the final image;
# - see what ε̂ is: the **score** ∇ log p_t up to a factor, and x̂_0 is the posterior mean E[x_0 | x_t]
#   (**Tweedie's formula**), both checked numerically on data whose density is known.
#
# **Exercises:** 3.1 the posterior mean and variance · 3.2 one reverse step x_t → x_{t−1} · 3.3 the score by
# finite differences.
#
# **Prerequisites:** notebook 01 (the forward process, ᾱ_t, `q_sample`) and notebook 02 (a network
# ε_θ(x_t, t) trained to predict the noise). Gaussians: products of Gaussian densities are Gaussian.

# %%
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, Image, display

import ddpm_course as dc

device = dc.device()
print(f"device: {device}")

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1

# %%
n_toy = 1_000 if FAST else 5_000        # 2-D points sampled with the exact denoiser
n_mc = 400_000 if FAST else 4_000_000   # Monte-Carlo draws for the posterior check
n_digits = 8                            # MNIST digits in the animation
mnist_steps = 50 if FAST else 1000      # DDPM steps on MNIST (the paper: 1000)
compare_steps = 25 if FAST else 50      # steps of the β vs β̃ comparison on MNIST
n_grid = 30                             # digits in the full-mode grid: 0…9 three times (full mode only)
torch.manual_seed(0)

s = dc.NoiseSchedule.linear(T=1000)     # DDPM's schedule: β from 1e-4 to 0.02


def per_sample(v, x):
    """Per-sample numbers v (B,) → shape (B, 1, …, 1) in x's dtype and device, to multiply with x."""
    return v.to(x).reshape(-1, *([1] * (x.dim() - 1)))


# %% [markdown]
# ## 1 · What the sampler needs: the reverse of one noising step
#
# The forward process adds a little noise per step, q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I) with
# α_t = 1 − β_t (DDPM eq. 2). To generate, we would like to undo it: start from x_T ~ N(0, I) and draw
# x_{T−1}, x_{T−2}, …, x_0 from q(x_{t−1} | x_t). That distribution depends on the whole data set
# (which images could have produced this x_t?), so we cannot write it down.
#
# **Conditioned on the clean image x_0 it is easy.** By Bayes' rule,
# q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) · q(x_{t−1} | x_0), a product of two Gaussian densities in
# x_{t−1} (the second is the closed form of notebook 01, eq. 4). Completing the square gives a Gaussian
# (**DDPM eq. 6–7**):
#
# $$q(x_{t-1}\mid x_t, x_0) = \mathcal N\big(x_{t-1};\ \tilde\mu_t(x_t, x_0),\ \tilde\beta_t I\big),$$
# $$\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
#   + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,\qquad
#   \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# The mean is a weighted average of "where the data is" (x_0) and "where we are" (x_t); the variance
# β̃_t is a little smaller than β_t. At the paper's t = 1 there is nothing left to undo: ᾱ_0 = 1 (the
# data itself), so β̃_1 = 0 and μ̃_1 = x_0.
#
# ### Exercise 3.1 — the posterior mean and variance
#
# Write `posterior_mean_variance(x0, x_t, t, s)`. `x0` and `x_t` have shape (B, …); `t` is a LongTensor
# (B,) of timesteps in the course's convention, **index i = paper's t − 1** (so `s.alpha_bars[t]` is
# ᾱ_t and `s.alpha_bars[t - 1]` is ᾱ_{t−1}; where t = 0 use ᾱ_{t−1} = 1). Return the mean (shape of
# `x_t`) and the variance (shape of `x_t`, or (B, 1, …) — both are fine), in `x_t`'s dtype.
# The helper `per_sample(v, x)` defined above turns a (B,) tensor of schedule values into something
# you can multiply with `x`. Hint: `torch.where(t > 0, …, …)` handles t = 0.

# %% tags=["exercise"]
def posterior_mean_variance(x0, x_t, t, s):
    """Mean μ̃_t and variance β̃_t of q(x_{t−1} | x_t, x_0) (DDPM eq. 6–7); t holds indices (paper's t − 1)."""
    ### BEGIN SOLUTION
    ab, beta, alpha = s.alpha_bars[t], s.betas[t], s.alphas[t]
    ab_prev = torch.where(t > 0, s.alpha_bars[(t - 1).clamp(min=0)], torch.ones((), dtype=torch.float64))
    coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
    coef_xt = alpha.sqrt() * (1 - ab_prev) / (1 - ab)
    mean = per_sample(coef_x0, x_t) * x0 + per_sample(coef_xt, x_t) * x_t
    return mean, per_sample((1 - ab_prev) / (1 - ab) * beta, x_t)
    ### END SOLUTION


# %%
posterior_mean_variance = dc.checks.posterior_mean_variance(posterior_mean_variance)

# %% [markdown]
# **Trust, but verify.** Take one number x_0 = 0.7, draw many pairs (x_{t−1}, x_t) from the forward
# process, keep the pairs whose x_t lands in a narrow window around some value, and look at the x_{t−1}
# that produced them: their mean and variance should be μ̃_t and β̃_t.

# %%
g = torch.Generator().manual_seed(0)
t_check, x0_val, window = 200, 0.7, 0.004
ab_prev, ab, beta = (float(v) for v in (s.alpha_bars[t_check - 1], s.alpha_bars[t_check], s.betas[t_check]))
x_prev = math.sqrt(ab_prev) * x0_val + math.sqrt(1 - ab_prev) * torch.randn(n_mc, generator=g, dtype=torch.float64)
x_t_mc = math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * torch.randn(n_mc, generator=g, dtype=torch.float64)
x_t_val = math.sqrt(ab) * x0_val + 0.5 * math.sqrt(1 - ab)               # some typical value of x_t
kept = x_prev[(x_t_mc - x_t_val).abs() < window]

mean, var = posterior_mean_variance(torch.tensor([x0_val], dtype=torch.float64),
                                    torch.tensor([x_t_val], dtype=torch.float64), torch.tensor([t_check]), s)
print(f"t = {t_check + 1}: kept {len(kept)} of {n_mc} draws with |x_t − {x_t_val:.3f}| < {window}")
print(f"  mean of x_(t-1):     Monte Carlo {kept.mean():.4f}   formula μ̃ = {float(mean):.4f}")
print(f"  variance of x_(t-1): Monte Carlo {kept.var():.5f}  formula β̃ = {float(var):.5f}")

# %% [markdown]
# The Monte-Carlo numbers agree with the formulas up to sampling noise (a couple of thousand kept draws
# give two to three digits). How much of μ̃ comes from x_0 and how much from x_t changes with t: at
# large t one step removes only a sliver of the noise, so x_{t−1} stays close to x_t (weight ≈ 1) and
# x_0 contributes a little per step — it adds up over hundreds of steps. At small t the posterior leans
# on x_0, and at t = 1 it *is* x_0.

# %%
t_axis = np.arange(1, s.T + 1)
idx = torch.arange(s.T)
ab_prev_all = torch.cat([torch.ones(1, dtype=torch.float64), s.alpha_bars[:-1]])
coef_x0 = (ab_prev_all.sqrt() * s.betas / (1 - s.alpha_bars)).numpy()
coef_xt = (s.alphas.sqrt() * (1 - ab_prev_all) / (1 - s.alpha_bars)).numpy()

fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(t_axis, coef_x0, label=r"weight of $x_0$ in $\tilde\mu_t$")
ax.plot(t_axis, coef_xt, label=r"weight of $x_t$ in $\tilde\mu_t$")
ax.set(xscale="log", xlabel="t (log scale)", title="The posterior mean mixes x_0 and x_t (DDPM eq. 7)")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## 2 · β_t or β̃_t? The variance of the reverse step (DDPM §3.2)
#
# The sampler does not know x_0, so it cannot use q(x_{t−1} | x_t, x_0) directly. DDPM models the
# reverse step as a Gaussian p_θ(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I) whose **mean** is learned and
# whose **variance is fixed**. (Notation: this σ_t is the standard deviation of one reverse step. DDIM's
# σ_t(η) in notebook 04 generalises it; the σ of notebook 05 is a different quantity, the noise level
# √((1 − ᾱ)/ᾱ); notebook 00's table lists every σ.) The paper tried two values and found similar sample quality with both:
#
# - σ_t² = β_t ("fixed_large"): exactly right if the data itself were x_0 ~ N(0, I);
# - σ_t² = β̃_t ("fixed_small"): exactly right if the data were a single point x_0 (then
#   q(x_{t−1} | x_t) *is* the posterior above).
#
# **Where the truth lies.** The true reverse step averages the posterior over all clean images that
# could have produced x_t. By the law of total variance,
#
# $$\operatorname{Var}[x_{t-1}\mid x_t] = \tilde\beta_t + c_t^2\,\operatorname{Var}[x_0\mid x_t],\qquad
#   c_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\ \text{(the weight of } x_0
#   \text{ in } \tilde\mu_t),$$
#
# so β̃_t is a **lower bound for any data**, reached when x_t pins x_0 down completely. For Gaussian data
# x_0 ~ N(0, v² I) everything is Gaussian: x_t has variance V_t = ᾱ_t v² + 1 − ᾱ_t, and reversing the
# step x_t = √α_t x_{t−1} + √β_t ε gives exactly
#
# $$\operatorname{Var}[x_{t-1}\mid x_t] = \beta_t\,\frac{V_{t-1}}{V_t},$$
#
# which is β̃_t for v = 0 and β_t for v = 1. β_t is the top of the bracket for data with coordinatewise
# variance up to 1 — DDPM §3.2 calls the two "the extreme choices", following the entropy bounds of
# Sohl-Dickstein et al. (2015). Pixels scaled to [−1, 1] have variance below 1.

# %%
fig, ax = plt.subplots(figsize=(6.5, 3.6))
for v in (0.0, 0.003, 0.01, 0.03, 0.1, 1.0, 1.5):
    V = s.alpha_bars * v**2 + 1 - s.alpha_bars
    V_prev = torch.cat([torch.tensor([v**2], dtype=torch.float64), V[:-1]])
    ax.plot(t_axis, (V_prev / V).numpy(), ls="--" if v > 1 else "-",
            label=f"data std v = {v:g}" + (" (β̃_t)" if v == 0 else " (β_t)" if v == 1 else ""))
ax.set(xscale="log", xlabel="t (log scale)", ylabel=r"true Var$[x_{t-1}|x_t]$ / $\beta_t$",
       title="β̃_t (point data) and β_t (unit-variance data) bracket the truth")
ax.set_ylim(0, 1.1)
plt.tight_layout()
ax.grid(alpha=0.3)
ax.legend(fontsize=8, ncol=2)
plt.show()

# %% [markdown]
# A small data spread v behaves like a point (β̃_t) while the noise √(1 − ᾱ_t) is much larger than v —
# from far away the data looks like a point — and like β_t once the noise is smaller than v. Images lie
# near a thin manifold: point-like across it, spread out along it, so the truth is in between and
# differs by direction. Either way, the two choices differ only at small t (the first few dozen of the
# 1000 steps), where β̃_t/β_t climbs from 0 to 1. That is why, with 1000 steps, DDPM saw little difference. With *fewer, bigger* steps
# the gap widens (each step's β is larger); section 4 measures the effect, and notebook 04 shows how
# DDIM turns this choice into a dial. Improved DDPM (Nichol & Dhariwal 2021, eq. 15) goes further and
# *learns* an interpolation between log β_t and log β̃_t.
#
# ## 3 · Ancestral sampling (DDPM Algorithm 2)
#
# The network predicts the noise, ε_θ(x_t, t). Solving x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε for x_0 gives the
# model's guess of the clean image (**DDPM eq. 15**):
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}} .$$
#
# Plugging x̂_0 into the posterior mean μ̃_t gives the model's mean, which simplifies to
# (**DDPM eq. 11**)
#
# $$\mu_\theta(x_t, t) = \tilde\mu_t(x_t, \hat x_0) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t
#   - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big).$$
#
# **Algorithm 2 (sampling).** x_T ~ N(0, I); for t = T, …, 1: z ~ N(0, I) if t > 1 else z = 0, and
# $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$. Then return x_0.
#
# Each step draws fresh noise: the sampler is *ancestral*, sampling each x_{t−1} from its parent x_t.
#
# ### Exercise 3.2 — one reverse step
#
# Write `ddpm_step(x_t, eps, t, s, z, variance="fixed_small")`: given x_t, the predicted noise
# `eps` = ε_θ(x_t, t), the timestep indices `t` (B,) and the standard normal noise `z`, return x_{t−1}
# = μ_θ + σ_t z with σ_t² = β̃_t for `"fixed_small"` and β_t for `"fixed_large"`. At t = 0 (the paper's
# t = 1) add no noise, whichever the variance. You may use eq. 11, or eq. 15 followed by your
# `posterior_mean_variance` — they are the same thing.

# %% tags=["exercise"]
def ddpm_step(x_t, eps, t, s, z, variance="fixed_small"):
    """x_{t−1} = μ_θ(x_t, t) + σ_t z (DDPM Algorithm 2, eq. 11); σ_t² = β̃_t or β_t, and 0 at t = 0."""
    ### BEGIN SOLUTION
    ab = per_sample(s.alpha_bars[t], x_t)
    x0_hat = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()                  # eq. 15
    mean, var = posterior_mean_variance(x0_hat, x_t, t, s)            # μ̃_t(x_t, x̂_0) = eq. 11
    if variance == "fixed_large":
        var = per_sample(torch.where(t > 0, s.betas[t], torch.zeros((), dtype=torch.float64)), x_t)
    return mean + var.sqrt() * z
    ### END SOLUTION


# %%
ddpm_step = dc.checks.ddpm_step(ddpm_step)

# %% [markdown]
# ## 4 · Sampling 2-D toy data with the exact denoiser
#
# To watch the sampler without worrying about a network's mistakes, use data whose best possible
# noise predictor is known in closed form: a mixture of eight Gaussians on a circle.
# `dc.toy.MixtureOracle` computes ε̂(x_t, t) = E[ε | x_t] exactly — it is the network a perfect
# training run would produce — and is called like a model, `oracle(x, t)`.
#
# Here is Algorithm 2 in full, with your `ddpm_step`: 1000 steps from x_T ~ N(0, I).

# %%
oracle = dc.toy.MixtureOracle.eight_gaussians(s)
data = dc.toy.eight_gaussians(n_toy, generator=torch.Generator().manual_seed(1))
x_T = torch.randn(n_toy, 2, generator=torch.Generator().manual_seed(2))


def ddpm_sample_by_hand(model, s, x_T, generator, variance="fixed_small"):
    """DDPM Algorithm 2 with ddpm_step: t = T, …, 1 is the index T − 1, …, 0."""
    x = x_T
    for t in reversed(range(s.T)):
        t_batch = torch.full((len(x),), t)
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if t > 0 else torch.zeros_like(x)
        x = ddpm_step(x, model(x, t_batch), t_batch, s, z, variance)
    return x


x0_mine = ddpm_sample_by_hand(oracle, s, x_T, torch.Generator().manual_seed(3))

# %% [markdown]
# The package's sampler `dc.sample(model, s, x_T, sampler="ddpm", steps=1000)` runs the same algorithm.
# Given the same random generator it draws the same z's in the same order, so the results agree up to
# float32 rounding. `return_info=True` also returns the trajectory: for every step, the state x_t and
# the model's guess x̂_0.

# %%
x0_pkg, info = dc.sample(oracle, s, x_T, sampler="ddpm", steps=s.T, generator=torch.Generator().manual_seed(3),
                         return_info=True)
print(f"{dc.checks.whose(ddpm_step, 'ddpm_step')} in a loop vs dc.sample: largest difference "
      f"{float((x0_mine - x0_pkg).abs().max()):.2e}")
print(f"model calls: {info.nfe}; trajectory: {len(info.trajectory)} pairs (x_t, x̂_0) of shape "
      f"{tuple(info.trajectory[0][0].shape)}")

fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.5))
dc.viz.scatter_2d(x_T, ax=axes[0], title="x_T ~ N(0, I)", color="C3")
dc.viz.scatter_2d(x0_pkg, ax=axes[1], title="DDPM samples (1000 steps)")
dc.viz.scatter_2d(data, ax=axes[2], title="the data", color="C2")
plt.tight_layout()
plt.show()

nearest = torch.cdist(x0_pkg.double(), oracle.means).argmin(1)
print("share of samples per mixture component:", np.round(torch.bincount(nearest, minlength=8).numpy() / n_toy, 3),
      "(true: 0.125 each)")

# %% [markdown]
# **Trajectories.** Left: the paths of 50 samples through the 1000 states x_T → x_0; each path is a
# random walk that drifts towards one of the modes. Right: the model's guess x̂_0 along the same
# paths. At large t the noise hides everything and the best guess is the average of the data (the
# centre); as t falls, the guess commits to one mode and then sharpens.

# %%
states = [x for x, _ in info.trajectory] + [x0_pkg]
guesses = [x0_hat for _, x0_hat in info.trajectory]
fig, axes = plt.subplots(1, 2, figsize=(8.5, 4.2))
dc.viz.plot_trajectories_2d(states, n_paths=50, ax=axes[0], title="x_t from t = T to 0")
dc.viz.plot_trajectories_2d(guesses, n_paths=50, ax=axes[1], title=r"predicted $\hat x_0$ along the way")
plt.tight_layout()
plt.show()

shown = [0, 500, 800, 900, 950, 990, 999]
fig, axes = plt.subplots(1, len(shown), figsize=(2.1 * len(shown), 2.3))
for ax, i in zip(axes, shown, strict=True):
    dc.viz.scatter_2d(info.trajectory[i][0], ax=ax, s=1)
    ax.set_title(f"x_t at t = {int(info.timesteps[i]) + 1}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# **β vs β̃ with fewer steps.** The package's DDPM sampler also runs on a coarser grid of timesteps
# (`steps` < T): between two visited levels it uses β' = 1 − ᾱ_t/ᾱ_prev in place of β_t. The exact
# denoiser lets us measure the damage directly: each mixture component has standard deviation 0.1, so
# the spread of the samples around their nearest mode should be 0.1.

# %%
spread = oracle.spread     # RMS distance per coordinate to the nearest mixture mean (the truth is 0.1)
step_counts = (10, 20, 100) if FAST else (10, 20, 100, 1000)
fig, axes = plt.subplots(2, len(step_counts), figsize=(2.9 * len(step_counts), 6))
for j, steps in enumerate(step_counts):
    for i, variance in enumerate(("fixed_small", "fixed_large")):
        x0 = dc.sample(oracle, s, x_T, sampler="ddpm", steps=steps, variance=variance,
                       generator=torch.Generator().manual_seed(3))
        dc.viz.scatter_2d(x0, ax=axes[i, j], s=1)
        axes[i, j].set_title(f"{steps} steps, {'β̃' if i == 0 else 'β'}: spread {spread(x0):.3f}", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# With 1000 steps both variances give the right spread (full mode shows it). With few steps, β_t adds
# far too much noise that the remaining steps cannot remove, and β̃_t does much better — but neither is
# right at 10 steps. DDIM's Table 1 makes the same point on CIFAR-10 (the "σ̂" row: FID 367 at 10
# steps); notebook 04 fixes it.

# %% [markdown]
# ## 5 · What ε̂ is: the score and Tweedie's formula
#
# The exact denoiser of §4 returns ε̂(x_t, t) = E[ε | x_t]: the noise that is *on average* in x_t. Two
# identities say why this is the right thing to learn; notebooks 05 (the probability-flow ODE) and 08
# (guidance from Bayes' rule) rest on both.
#
# **The score.** The noisy data have the density p_t(x_t) = ∫ q(x_t | x_0) p(x_0) dx_0, a blur of the data
# by the Gaussian q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (DDPM eq. 4). Differentiate under the integral:
#
# $$\nabla_{x_t}\log p_t(x_t) = \mathbb E\big[\nabla_{x_t}\log q(x_t\mid x_0)\,\big|\,x_t\big]
#   = \mathbb E\Big[-\frac{x_t - \sqrt{\bar\alpha_t}\,x_0}{1-\bar\alpha_t}\,\Big|\,x_t\Big]
#   = -\frac{\mathbb E[\varepsilon\mid x_t]}{\sqrt{1-\bar\alpha_t}} .$$
#
# A network trained with the simple loss (eq. 14) is a least-squares regression of ε on (x_t, t), and least
# squares learns the conditional mean E[ε | x_t]. So
#
# $$\nabla_{x_t}\log p_t(x_t) \approx -\frac{\hat\varepsilon_\theta(x_t, t)}{\sqrt{1-\bar\alpha_t}} :$$
#
# predicting the noise *is* estimating the score, up to a known factor (DDPM §3.2 draws the link to denoising
# score matching, Vincent 2011; Song et al. 2021 build on it). The minus sign says the score points away
# from the noise: towards where the data are dense.
#
# **Tweedie's formula** (Robbins 1956; Efron 2011) is the same identity solved for the clean image: for
# Gaussian noise the posterior mean of x_0 is
#
# $$\mathbb E[x_0\mid x_t] = \frac{x_t + (1-\bar\alpha_t)\,\nabla_{x_t}\log p_t(x_t)}{\sqrt{\bar\alpha_t}}
#   = \frac{x_t - \sqrt{1-\bar\alpha_t}\;\mathbb E[\varepsilon\mid x_t]}{\sqrt{\bar\alpha_t}} .$$
#
# With ε̂ in place of E[ε | x_t] that is eq. 15 of §1, the guess x̂_0 every sampler in the course computes:
# x̂_0 is the *posterior mean* of the clean image, the average over every x_0 that could have produced x_t.
# (That is why x̂_0 is blurry at large t: an average of many digits.)
#
# **Checking it.** `dc.toy.MixtureOracle.log_prob(x, t)` computes log p_t(x_t) of the eight Gaussians
# directly: p_t is again a Gaussian mixture, with components N(√ᾱ μ_k, (ᾱ s_k² + 1 − ᾱ) I). It never touches
# ε̂, so we can differentiate it numerically and compare.
#
# ### Exercise 3.3 — the score by finite differences
#
# Write `score_fd(log_p, x, h)`: `log_p` maps points x of shape (B, d) to log-densities (B,); return the
# gradient (B, d) by central differences, column j being (log p(x + h e_j) − log p(x − h e_j))/(2h) with
# e_j the j-th unit vector. (One-sided differences are only accurate to O(h); central ones to O(h²).)

# %% tags=["exercise"]
def score_fd(log_p, x, h):
    """∇ log p at the points x (B, d) by central finite differences with step h."""
    ### BEGIN SOLUTION
    grad = torch.empty_like(x)
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h                                    # h e_j
        grad[:, j] = (log_p(x + e) - log_p(x - e)) / (2 * h)
    return grad
    ### END SOLUTION


# %%
score_fd = dc.checks.score_fd(score_fd)

# %% [markdown]
# Now the identity, at three noise levels: the finite-difference score of log p_t against −ε̂/√(1 − ᾱ_t)
# from the oracle, at points spread over the plane.

# %%
x_probe = 2.0 * torch.randn(200, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
for t in (50, 300, 700):
    t_batch = torch.full((len(x_probe),), t)
    fd = score_fd(lambda z, tb=t_batch: oracle.log_prob(z, tb), x_probe, 1e-5)
    from_eps = -oracle(x_probe, t_batch) / math.sqrt(1 - float(s.alpha_bars[t]))
    print(f"t = {t:3d}: max |finite-difference score − (−ε̂/√(1 − ᾱ))| = {(fd - from_eps).abs().max().item():.1e}"
          f"   (the score's typical size: {fd.norm(dim=1).median().item():.2f})")

# %% [markdown]
# Agreement to ~10⁻⁸ is the O(h²) error of the differences (and float64 rounding): the two are the same
# function. Tweedie's formula can be checked without any formula at all, by Monte Carlo: draw many clean
# points x_0 from the data, weigh each by how likely it is to have produced a given x_t, w ∝ q(x_t | x_0),
# and average. That weighted average is E[x_0 | x_t] by Bayes' rule; compare it with x̂_0 from ε̂.

# %%
t_mc = 400
ab_mc = float(s.alpha_bars[t_mc])
x0_data = oracle.sample(n_mc // 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)[0]
x_query = x_probe[:8]
log_w = -(x_query[:, None] - math.sqrt(ab_mc) * x0_data[None]).pow(2).sum(-1) / (2 * (1 - ab_mc))  # log q(x_t|x_0)
w = torch.softmax(log_w, dim=1)                                     # Bayes: p(x_0 | x_t) on the draws
posterior_mean = w @ x0_data
x0_tweedie = dc.diffusion.eps_to_x0(x_query, oracle(x_query, torch.full((8,), t_mc)), ab_mc)
print(f"t = {t_mc}, {len(x0_data):,} draws: max |Monte-Carlo E[x_0 | x_t] − x̂_0 from ε̂| = "
      f"{(posterior_mean - x0_tweedie).abs().max().item():.3f} (sampling error of a weighted average)")

# %% [markdown]
# The score as a picture: arrows of −ε̂/√(1 − ᾱ_t) (scaled to a common length per panel) over samples of the
# noisy data p_t (green), in the same window of x_t for every t. At large t the noise hides the modes, p_t is
# one broad blob close to N(0, I) and the score points to its centre; as t falls the blob splits and the
# arrows point to the nearest mode. Sampling follows these arrows (plus noise) from left to right.

# %%
u = torch.linspace(-2.5, 2.5, 17, dtype=torch.float64)
grid_pts = torch.stack(torch.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
for ax, t in zip(axes, (800, 150, 30), strict=True):
    ab_t = float(s.alpha_bars[t])
    score = -oracle(grid_pts, torch.full((len(grid_pts),), t)) / math.sqrt(1 - ab_t)
    arrows = score / score.norm(dim=1).max()
    noise = torch.randn(data.shape, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    noisy = dc.diffusion.q_sample(data.double(), torch.full((len(data),), t), noise, s)   # samples of p_t
    ax.scatter(*noisy.T, s=1, alpha=0.3, color="C2")
    ax.quiver(grid_pts[:, 0], grid_pts[:, 1], arrows[:, 0], arrows[:, 1], angles="xy", color="C0", width=0.004)
    ax.set(xlim=(-2.7, 2.7), ylim=(-2.7, 2.7))
    ax.set_title(f"t = {t}: score of p_t (ᾱ = {ab_t:.3f})", fontsize=10)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · MNIST with the course's trained model
#
# `dc.load_pretrained("mnist")` returns the U-Net trained in notebook 02's recipe (shipped with the
# package, no download) and its noise schedule. The model is class-conditional — `model(x, t, y)` with a
# digit label y — and notebook 08 explains how; here we simply ask for the digits 0, 1, 2, … so that
# the grids are easy to read.

# %%
model, s_mnist = dc.load_pretrained("mnist")
model = model.to(device).eval()
print(s_mnist, f"U-Net with {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters on {device}")

y = torch.arange(n_digits, device=device) % 10
x_T_img = torch.randn(n_digits, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
x0_img, info_img = dc.sample(model, s_mnist, x_T_img, sampler="ddpm", steps=mnist_steps, y=y,
                             generator=torch.Generator().manual_seed(1), progress=True, return_info=True)
dc.viz.show_row(x0_img.cpu(), labels=[f"y = {int(v)}" for v in y],
                title=f"DDPM, {mnist_steps} steps (NFE = {info_img.nfe})")
plt.show()

# %% [markdown]
# **The animation** below plays the sampler: top row x_t, bottom row the model's guess x̂_0 at that
# step. The guesses are blurry averages at first ("some digit-shaped blob"), then commit to a shape
# long before the noise in x_t is gone; the last steps only polish details. (Fast mode runs 50 of
# the 1000 steps; the full mode runs them all.)

# %%
n_frames = 25
frame_ids = np.unique(np.linspace(0, len(info_img.trajectory) - 1, n_frames).round().astype(int))
frames = [torch.cat([info_img.trajectory[i][0], info_img.trajectory[i][1].clamp(-1, 1)]) for i in frame_ids]
frames.append(torch.cat([x0_img.cpu(), x0_img.cpu()]))
labels = [f"t = {int(info_img.timesteps[i]) + 1}: x_t (top), x̂_0 (bottom)" for i in frame_ids] + ["t = 0: done"]
anim = dc.viz.animate_images(frames, labels=labels, nrow=n_digits, interval=150)
HTML(anim.to_jshtml())

# %% [markdown]
# **β vs β̃ on MNIST.** Same starting noise, same random draws, few steps: with β_t (fixed_large) the
# extra noise of every big step survives into the final image.

# %%
rows = []
for variance in ("fixed_small", "fixed_large"):
    rows.append(dc.sample(model, s_mnist, x_T_img, sampler="ddpm", steps=compare_steps, variance=variance, y=y,
                          generator=torch.Generator().manual_seed(1)).cpu())
fig = dc.viz.show_grid(torch.cat(rows), nrow=n_digits, size=8)
fig.axes[0].set_title(f"{compare_steps} DDPM steps: top σ² = β̃ (fixed_small), bottom σ² = β (fixed_large)",
                      fontsize=10)
plt.show()

# %% [markdown]
# **Full mode: 30 digits, 1000 steps** (a few minutes on a laptop CPU, seconds on a GPU). In fast mode
# the notebook shows the picture that full mode saved, if you have the repository's `docs/figures`.


# %%
if not FAST:
    y_grid = torch.arange(n_grid, device=device) % 10
    x_T_grid = torch.randn(n_grid, 1, 28, 28, generator=torch.Generator().manual_seed(10)).to(device)
    grid = dc.sample(model, s_mnist, x_T_grid, sampler="ddpm", steps=1000, y=y_grid,
                     generator=torch.Generator().manual_seed(11), progress=True)
    dc.viz.show_grid(grid.cpu(), nrow=10, title="DDPM, 1000 steps (σ² = β̃)", size=6)
    plt.show()
elif (png := dc.course.course_file("docs", "figures", "03_ddpm_mnist_1000_steps.png")) is not None:
    display(Image(filename=str(png), width=420))
else:
    print("docs/figures/03_ddpm_mnist_1000_steps.png is not here (e.g. in Colab): run in full mode to draw it.")

# %% [markdown]
# ## Summary
#
# - Conditioned on x_0, the reverse of the forward process is Gaussian: q(x_{t−1} | x_t, x_0) =
#   N(μ̃_t, β̃_t I) (DDPM eq. 6–7); its mean mixes x_0 and x_t.
# - DDPM predicts ε, turns it into a guess x̂_0 (eq. 15) and steps to μ̃_t(x_t, x̂_0) (eq. 11) plus fresh
#   noise σ_t z: ancestral sampling, Algorithm 2, one network call per step, T = 1000 steps.
# - The fixed variance σ_t² is β̃_t or β_t (§3.2): the true reverse variance lies between them (exactly
#   β̃ for point data, β for N(0, I) data). They differ only at small t — unless you take big steps.
# - With an exact denoiser, 1000 DDPM steps reproduce the data distribution; with 10–20 steps the
#   ancestral sampler is visibly wrong. A trained U-Net behaves the same way on MNIST.
# - ε̂ estimates the **score**: ∇ log p_t(x_t) = −E[ε | x_t]/√(1 − ᾱ_t), and x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t
#   is the posterior mean E[x_0 | x_t] (**Tweedie's formula**). Notebooks 05 and 08 build on both.
#
# **Next:** notebook 04 (DDIM) keeps the same trained model but changes the sampler: a family of
# processes with the same marginals, from DDPM-like (η = 1) to deterministic (η = 0), that works with
# 10–50 steps.
#
# **Read more:** Ho, Jain & Abbeel, *Denoising Diffusion Probabilistic Models* (NeurIPS 2020), §2–3.2,
# eq. 6–7, 11, 15 and Algorithm 2 · Nichol & Dhariwal, *Improved Denoising Diffusion Probabilistic
# Models* (ICML 2021), §3.1 on learning the variance · Sohl-Dickstein et al., *Deep Unsupervised Learning
# using Nonequilibrium Thermodynamics* (ICML 2015), where the reverse process was introduced · Vincent,
# *A Connection Between Score Matching and Denoising Autoencoders* (Neural Computation 2011) · Efron,
# *Tweedie's Formula and Selection Bias* (JASA 2011), after Robbins (1956).

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
# # 01 · The forward process: noise schedules and the closed form q(x_t | x_0)
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json). Nothing trains here: a GPU
# changes little.
#
# **You will**
# - see how a diffusion model destroys data: T = 1000 small Gaussian steps (DDPM eq. 2);
# - compare DDPM's *linear* β schedule with Improved DDPM's *cosine* schedule;
# - derive the closed form q(x_t | x_0) (DDPM eq. 4) by composing Gaussians, implement it, and check
#   empirically that it gives the same distribution as running the chain step by step;
# - read a schedule through its signal-to-noise ratio and log-SNR;
# - slide t in an interactive explorer and watch a digit dissolve.
#
# **Exercises:** 1.1 ᾱ from β · 1.2 `q_sample` · 1.3 the log-SNR.
#
# **Prerequisites:** notebook 00 (how exercises and checks work); Gaussians and the rule that a sum of
# independent Gaussians is Gaussian with the variances added.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import ddpm_course as dc

device = dc.device()
print(f"device: {device}")

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1

# %%
n_samples = 1_000 if FAST else 10_000  # Monte-Carlo samples of the one-shot formula
n_chain = 200 if FAST else 2_000        # samples pushed through the 1000-step chain (1000× the work each)
n_digits = 8                            # digits in the interactive explorer
_ = torch.manual_seed(0)

# %% [markdown]
# ## 1 · The forward process, one step at a time
#
# DDPM (Ho, Jain & Abbeel 2020) turns an image x_0 into noise with a Markov chain of T steps. Step t
# shrinks the previous state a little and adds a little Gaussian noise (**DDPM eq. 2**):
#
# $$q(x_t \mid x_{t-1}) = \mathcal N\!\big(x_t;\ \sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I\big),
#   \qquad\text{i.e.}\qquad x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\varepsilon_t,\quad
#   \varepsilon_t\sim\mathcal N(0, I).$$
#
# The variances β_1 < … < β_T form the **noise schedule**. The factor √(1 − β_t) is what keeps the
# process *variance preserving*: if x_{t−1} has unit variance, so has x_t, since
# (1 − β_t)·1 + β_t = 1. Without it the variance would grow without bound; with it, x_T is a standard
# Gaussian whatever the image was.
#
# The images are MNIST digits scaled to [−1, 1] (the course ships 5,000 real digits, so this works
# offline). Let us run the chain on one digit, step by step, with DDPM's schedule.

# %%
x_train, _ = dc.data.load_mnist_subset("train")  # (4000, 1, 28, 28) in [-1, 1], and labels
x_digits = x_train[:n_digits]                     # (8, 1, 28, 28)
x0 = x_digits[:1]                                 # one digit, (1, 1, 28, 28)

linear = dc.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)  # DDPM §4
print(linear, "β_1 =", float(linear.betas[0]), "β_T =", float(linear.betas[-1]))

g = torch.Generator().manual_seed(1)
x, chain = x0.clone(), {}
for i in range(linear.T):                  # index i is the paper's t = i + 1
    beta = float(linear.betas[i])
    x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(x.shape, generator=g)  # eq. 2
    if i + 1 in (1, 50, 100, 200, 400, 700, 1000):
        chain[i + 1] = x
dc.viz.show_row(torch.cat(list(chain.values())), labels=[f"t = {t}" for t in chain],
                title="The forward chain, step by step (DDPM eq. 2)")
plt.show()

# %% [markdown]
# ## 2 · Two noise schedules
#
# **Linear** (DDPM §4): β_t rises linearly from 10⁻⁴ to 0.02 over T = 1000 steps.
#
# **Cosine** (Nichol & Dhariwal 2021, *Improved DDPM*, eq. 17) fixes ᾱ_t instead of β_t:
#
# $$\bar\alpha_t = \frac{f(t)}{f(0)},\qquad f(t) = \cos^2\!\Big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\Big),
#   \quad s = 0.008,\qquad \beta_t = 1 - \frac{\bar\alpha_t}{\bar\alpha_{t-1}}\ \text{(clipped at 0.999)}.$$
#
# Here ᾱ_t = ∏_{s≤t}(1 − β_s) is the product of all the shrink factors so far; section 3 shows it is
# all one needs to know about the chain. The panels show β_t, ᾱ_t and the log-SNR λ_t (section 4).
# Note how the linear schedule drives ᾱ_t to almost 0 well before t = T, while the cosine schedule
# lowers it evenly.

# %%
cosine = dc.NoiseSchedule.cosine(T=1000, s=0.008)
schedules = {"linear (DDPM)": linear, "cosine (Improved DDPM)": cosine}
dc.viz.plot_schedules(schedules, quantities=("betas", "alpha_bars", "log_snr"))
plt.show()

# %% [markdown]
# ### Exercise 1.1 — ᾱ from β
#
# Write `alpha_bars(betas)`: given the 1-D tensor β_1 … β_T, return the tensor of
#
# $$\alpha_t = 1-\beta_t,\qquad \bar\alpha_t = \prod_{s=1}^{t}\alpha_s \qquad (\text{DDPM eq. 4 and the line above it}),$$
#
# with the same shape and dtype as `betas`. (Hint: `torch.cumprod`.)

# %% tags=["exercise"]
def alpha_bars(betas):
    """ᾱ_t = ∏_{s ≤ t} (1 − β_s) for every t, same shape and dtype as `betas`."""
    ### BEGIN SOLUTION
    return torch.cumprod(1 - betas, dim=0)
    ### END SOLUTION


# %%
alpha_bars = dc.checks.alpha_bars(alpha_bars)

# %% [markdown]
# Your function agrees with the table `NoiseSchedule` stores:

# %%
for name, s in schedules.items():
    mine = alpha_bars(s.betas)
    print(f"{name:24s} ᾱ_1 = {float(mine[0]):.6f}  ᾱ_500 = {float(mine[499]):.4f}  ᾱ_T = {float(mine[-1]):.2e}"
          f"  max |difference| = {float((mine - s.alpha_bars).abs().max()):.1e}")

# %% [markdown]
# ## 3 · The closed form q(x_t | x_0): composing Gaussians
#
# To train a model at step t we need samples of x_t. Running the chain t times per sample would be far
# too slow. Fortunately the chain collapses into one Gaussian. Write α_t = 1 − β_t and unroll two steps
# of eq. 2:
#
# $$x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{1-\alpha_t}\,\varepsilon_t
#       = \sqrt{\alpha_t\alpha_{t-1}}\,x_{t-2}
#         + \underbrace{\sqrt{\alpha_t(1-\alpha_{t-1})}\,\varepsilon_{t-1} + \sqrt{1-\alpha_t}\,\varepsilon_t}_{\text{two independent zero-mean Gaussians}}.$$
#
# A sum of independent Gaussians is Gaussian with the variances added:
# α_t(1 − α_{t−1}) + (1 − α_t) = 1 − α_tα_{t−1}. So two steps are one step with shrink factor
# √(α_tα_{t−1}) and noise variance 1 − α_tα_{t−1}. By induction over all t steps (**DDPM eq. 4**):
#
# $$q(x_t \mid x_0) = \mathcal N\!\big(x_t;\ \sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big)
#   \quad\Longleftrightarrow\quad
#   x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\quad \varepsilon\sim\mathcal N(0, I).$$
#
# One random draw gives x_t for any t. This is the *reparameterisation* the whole course builds on:
# x_t is the image scaled by √ᾱ_t plus noise scaled by √(1 − ᾱ_t).

# %% [markdown]
# ### Exercise 1.2 — `q_sample`
#
# Write `q_sample(x0, t, noise, s)`, the sampler of eq. 4 for a *batch*:
#
# - `x0`: images (B, C, H, W) — or any shape (B, …), e.g. 2-D points (B, 2);
# - `t`: a LongTensor (B,) of 0-based timesteps (index i is the paper's t = i + 1), one per sample;
# - `noise`: ε with the shape of `x0`;
# - `s`: a `NoiseSchedule`; `s.alpha_bars` is a float64 tensor of length T.
#
# Return √ᾱ_t x_0 + √(1 − ᾱ_t) ε in the dtype of `x0`. Two traps: ᾱ_t has shape (B,) and must be
# reshaped to (B, 1, 1, …) to broadcast against x0, and the float64 table must be cast to x0's dtype
# (e.g. `.to(x0)`).

# %% tags=["exercise"]
def q_sample(x0, t, noise, s):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε for a batch (DDPM eq. 4)."""
    ### BEGIN SOLUTION
    ab = s.alpha_bars[t].to(x0).reshape(-1, *[1] * (x0.dim() - 1))  # (B, 1, 1, ...)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    ### END SOLUTION


# %%
q_sample = dc.checks.q_sample(q_sample)

# %% [markdown]
# ### Does one shot equal T steps? An empirical check
#
# Two claims to test with Monte Carlo:
#
# 1. **`q_sample` has the right moments.** Noise the same digit with `n_samples` independent ε at a
#    given t; the per-pixel sample mean should be √ᾱ_t x_0 and the per-pixel sample variance 1 − ᾱ_t.
#    The standard error of a mean of n samples is √((1 − ᾱ_t)/n), so we report the worst pixel's
#    deviation in standard errors (a z-score; with 784 pixels, values up to ≈ 4 are chance).
# 2. **The chain gives the same distribution.** Run eq. 2 step by step on `n_chain` copies and compare
#    its moments with eq. 4 too. Each chain sample costs 1000 noise draws instead of one, so we afford
#    fewer of them — and the timing line shows why training always uses eq. 4.
#
# `dc.diffusion.q_mean_var` returns the closed-form mean and variance.

# %%
import time

check_ts = [10, 100, 300, 600, 999]                     # 0-based timesteps

def moment_errors(x_t, t):
    """Worst per-pixel deviation of the sample mean in standard errors, and the sample variance divided by
    the closed-form variance, averaged over the 784 pixels."""
    mean, var = dc.diffusion.q_mean_var(x0, torch.tensor([t]), linear)
    se = (var / x_t.shape[0]).sqrt()
    z_mean = ((x_t.mean(0, keepdim=True) - mean) / se).abs().max()
    var_ratio = (x_t.var(0, keepdim=True) / var).mean()
    return float(z_mean), float(var_ratio)

g = torch.Generator().manual_seed(2)
start = time.perf_counter()
shot = {}                                               # eq. 4: one draw per sample and t
for i in check_ts:
    t_batch = torch.full((n_samples,), i, dtype=torch.long)
    shot[i] = q_sample(x0.expand(n_samples, -1, -1, -1), t_batch, torch.randn((n_samples, *x0.shape[1:]),
                       generator=g), linear)
time_shot = time.perf_counter() - start

start = time.perf_counter()
x_chain, chained = x0.expand(n_chain, -1, -1, -1).clone(), {}
for i in range(max(check_ts) + 1):                      # eq. 2, on every copy at once
    beta = float(linear.betas[i])
    x_chain = math.sqrt(1 - beta) * x_chain + math.sqrt(beta) * torch.randn(x_chain.shape, generator=g)
    if i in check_ts:
        chained[i] = x_chain.clone()
time_chain = time.perf_counter() - start

print(f"one shot (eq. 4): {n_samples} samples at {len(check_ts)} values of t in {time_shot:.2f} s;  "
      f"chain (eq. 2): {n_chain} samples, {max(check_ts) + 1} steps, in {time_chain:.1f} s")
def tolerance(n):  # 3 standard errors of the variance ratio averaged over 784 independent pixels
    return 3 * math.sqrt(2 / ((n - 1) * 784))

print(f"{'':5s} | {f'q_sample, n = {n_samples}':^25s} | {f'chain, n = {n_chain}':^25s}")
print(f"{'t':>5} | {'max |z| mean':>12} {'var ratio':>12} | {'max |z| mean':>12} {'var ratio':>12}")
for i in check_ts:
    (zq, vq), (zc, vc) = moment_errors(shot[i], i), moment_errors(chained[i], i)
    print(f"{i + 1:5d} | {zq:12.2f} {vq:12.4f} | {zc:12.2f} {vc:12.4f}")
print(f"chance level: max |z| up to about 4; var ratio within 1 ± {tolerance(n_samples):.4f} (q_sample), "
      f"1 ± {tolerance(n_chain):.4f} (chain)")

# %% [markdown]
# Both columns stay at chance level. The mean: the worst of 784 pixels deviates by a few standard errors
# √((1 − ᾱ_t)/n), as chance predicts. The variance: the ratio of sample to closed-form variance,
# averaged over the pixels, is 1 within its sampling error. A wrong formula stands out: with ᾱ_t in
# place of √ᾱ_t every pixel's mean at t = 300 would be off by about 9 standard errors (n = 1,000), and
# with (1 − ᾱ_t) in place of √(1 − ᾱ_t) the variance ratio there would be 0.6 instead of 1.
#
# The histograms of one pixel make the same point visually: at each t, the chain (eq. 2, T steps) and
# the one-shot formula (eq. 4) draw from the same Gaussian, drawn as a line.

# %%
r, c = 14, 14  # a pixel in the middle of the digit
fig, axes = plt.subplots(1, len(check_ts), figsize=(3 * len(check_ts), 2.6), sharey=False)
for ax, i in zip(axes, check_ts, strict=True):
    mean, var = dc.diffusion.q_mean_var(x0, torch.tensor([i]), linear)
    m, sd = float(mean[0, 0, r, c]), float(var[0, 0, r, c]) ** 0.5
    bins = np.linspace(m - 4 * sd, m + 4 * sd, 40)
    ax.hist(chained[i][:, 0, r, c].numpy(), bins=bins, density=True, alpha=0.5, label="chain (eq. 2)")
    ax.hist(shot[i][:, 0, r, c].numpy(), bins=bins, density=True, alpha=0.5, label="one shot (eq. 4)")
    ax.plot(bins, np.exp(-0.5 * ((bins - m) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), "k", lw=1)
    ax.set_title(f"t = {i + 1}: N({m:.2f}, {sd:.2f}²)", fontsize=9)
    ax.set_yticks([])
axes[0].legend(fontsize=7)
fig.suptitle(f"Pixel ({r}, {c}) of x_t over {n_samples} draws", y=1.02)
plt.show()

# %% [markdown]
# ## 4 · Signal-to-noise ratio and log-SNR
#
# For data of unit variance the signal part √ᾱ_t x_0 of x_t has variance ᾱ_t and the noise part 1 − ᾱ_t.
# Their ratio is the signal-to-noise ratio, and its logarithm the **log-SNR** (Kingma et al. 2021,
# *Variational Diffusion Models*, eq. 2 and §3):
#
# $$\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t},\qquad
#   \lambda_t = \log\mathrm{SNR}(t) = \log\bar\alpha_t - \log(1-\bar\alpha_t).$$
#
# λ_t falls monotonically from about +9 (almost clean) to −10 (linear) or −20 (cosine); at λ = 0 signal
# and noise are equally strong. VDM shows that the continuous-time diffusion loss depends on the
# schedule only through λ at the two ends, so λ is the natural "clock" to compare schedules with; later
# notebooks use σ_t = √((1 − ᾱ_t)/ᾱ_t) = e^{−λ_t/2}, the noise level of the rescaled x_t/√ᾱ_t.

# %% [markdown]
# ### Exercise 1.3 — the log-SNR
#
# Write `log_snr(alpha_bars)`: λ = log ᾱ − log(1 − ᾱ) for every entry of a tensor of ᾱ values in
# (0, 1), same shape and dtype. For ᾱ very close to 0 or 1 compute it as a difference of two logs
# (`torch.log1p(-ab)` is the accurate log(1 − ᾱ)), not as the log of a ratio.

# %% tags=["exercise"]
def log_snr(alpha_bars):
    """λ = log(ᾱ / (1 − ᾱ)), elementwise, same shape and dtype."""
    ### BEGIN SOLUTION
    return torch.log(alpha_bars) - torch.log1p(-alpha_bars)
    ### END SOLUTION


# %%
log_snr = dc.checks.log_snr(log_snr)

# %% [markdown]
# Below, left: λ_t over t. The dashed line is λ = 0. Right: how the T steps are spread over noise
# levels — a histogram of λ_t over t. The linear schedule crosses λ = 0 at t ≈ 260 and spends about
# 30 % of its steps below λ = −5, where x_t is essentially pure noise (SNR < 0.007); the cosine schedule
# crosses λ = 0 at t ≈ 500 and spends its steps evenly across the range where the image actually
# changes. This is the reason Nichol & Dhariwal introduced it (Improved DDPM, §3.2).

# %%
t_axis = np.arange(1, 1001)
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
for name, s in schedules.items():
    lam = log_snr(s.alpha_bars)
    a.plot(t_axis, lam.numpy(), label=name)
    b.hist(lam.numpy(), bins=np.linspace(-20, 10, 31), alpha=0.5, label=name)
    crossing = int((lam < 0).nonzero()[0]) + 1
    print(f"{name:24s} λ_1 = {float(lam[0]):5.1f}, λ_T = {float(lam[-1]):6.1f}, SNR < 1 from t = {crossing}, "
          f"steps with λ < −5: {float((lam < -5).double().mean()):.0%}")
a.axhline(0, color="gray", ls="--", lw=0.8)
a.set(xlabel="t", ylabel=r"$\lambda_t$", title="log-SNR over t")
a.legend()
b.set(xlabel=r"$\lambda_t$", ylabel="number of steps", title="How many steps sit at each noise level")
fig.tight_layout()
plt.show()

# %% [markdown]
# Neither schedule reaches SNR = 0 exactly: ᾱ_T is 4·10⁻⁵ (linear) and 2·10⁻⁹ (cosine), so x_T keeps a
# faint trace of the data. Samplers start from pure noise anyway; Lin et al. (2024, *Common Diffusion
# Noise Schedules and Sample Steps are Flawed*) show that this mismatch matters for large images and
# rescale schedules to zero terminal SNR. At 28 × 28 with λ_T = −10 it is negligible.

# %% [markdown]
# ## 5 · A digit across t, and an explorer
#
# The same digit and the same ε, noised with eq. 4 at the same t under both schedules (each panel is
# titled with its t and log-SNR). With the linear schedule the digit is barely visible at t ≈ 450 and gone
# by t = 600; with the cosine schedule it is still visible at t = 600.

# %%
ts = torch.tensor([0, 50, 150, 300, 450, 600, 800, 999])
eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3)).expand(len(ts), -1, -1, -1)
for name, s in schedules.items():
    x_t = q_sample(x0.expand(len(ts), -1, -1, -1), ts, eps, s)
    dc.viz.show_row(x_t, labels=[f"t={int(t) + 1}\nλ={float(s.log_snr[t]):.1f}" for t in ts], title=name)
    plt.show()

# %% [markdown]
# The explorer below noises eight digits. Slide t (the slider shows the 0-based index t − 1) and switch
# the schedule: the left panel shows x_t with its two coefficients √ᾱ_t and √(1 − ᾱ_t), the right panel
# marks t on the ᾱ_t curves. The static figure under the code is the same explorer at t = 300, so this
# notebook reads well without a running kernel.

# %%
explorer = dc.widgets.forward_explorer(x_digits, schedules, generator=torch.Generator().manual_seed(4))
explorer.render(t=299, schedule="linear (DDPM)")
plt.show()

# %%
display(explorer.widget())

# %% [markdown]
# ## Summary
#
# - The forward process adds Gaussian noise in T small steps, x_t = √(1 − β_t) x_{t−1} + √β_t ε
#   (DDPM eq. 2); the √(1 − β_t) factor keeps the variance at 1.
# - Composing Gaussians collapses the chain into one step: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with
#   ᾱ_t = ∏(1 − β_s) (DDPM eq. 4). We checked it empirically: the one-shot `q_sample` and the T-step
#   chain have the same per-pixel means and variances, within sampling error.
# - The schedule is best read through the log-SNR λ_t = log(ᾱ_t/(1 − ᾱ_t)). DDPM's linear schedule
#   spends about 30 % of its steps at λ < −5 (almost pure noise); the cosine schedule spreads its steps
#   evenly over the noise levels where the image changes.
# - You wrote `alpha_bars`, `q_sample` and `log_snr`; the package versions are
#   `dc.NoiseSchedule(betas).alpha_bars`, `dc.q_sample` and `NoiseSchedule.log_snr`.
#
# **Next:** notebook 02 trains a network to predict the noise ε in x_t — the model the reverse process
# needs.
#
# **Papers**
# - J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models.* NeurIPS 2020 — eq. 2 (the
#   forward chain), eq. 4 (the closed form), §4 (the linear schedule).
# - A. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models.* ICML 2021 — §3.2 and
#   eq. 17 (the cosine schedule).
# - D. Kingma, T. Salimans, B. Poole, J. Ho. *Variational Diffusion Models.* NeurIPS 2021 — the SNR and
#   log-SNR view of schedules.
# - S. Lin, B. Liu, J. Li, X. Yang. *Common Diffusion Noise Schedules and Sample Steps are Flawed.*
#   WACV 2024 — zero terminal SNR.

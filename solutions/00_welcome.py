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
# # 00 · Welcome: how this course works
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json).
#
# **You will:** check your set-up and device, learn how exercises and their checks work, and solve a
# warm-up exercise on the noise schedule that every later notebook builds on.
#
# ## What the course covers
# How a diffusion model turns noise into an image, from first principles: the forward (noising)
# process, the DDPM sampler, DDIM, fast ODE samplers, how to measure sample quality, and how to
# generate in a few steps or steer generation with guidance. The notebooks run in this order:
#
# | # | notebook | you will write |
# |---|---|---|
# | 00 | welcome: set-up, device check, how exercises work | the signal-to-noise ratio (warm-up) |
# | 01 | the forward process: schedules, the closed form q(x_t \| x_0), SNR, a widget over t | ᾱ from β, `q_sample`, the log-SNR |
# | 02 | noise prediction and a compact U-Net; the simple loss; training; EMA | the loss, the time embedding |
# | 03 | DDPM ancestral sampling: the posterior, β vs β̃, trajectories, the score and Tweedie's formula | posterior mean/variance, one reverse step, the score by finite differences |
# | 04 | DDIM: η, determinism, step skipping, inversion and interpolation | the DDIM step, the whole DDIM sampler, slerp |
# | 05 | fast samplers: the probability-flow ODE, Euler/Heun in σ-space, DPM-Solver++(2M), UniPC, step schedules, measured order, the SDE view and stochastic samplers | a Heun step, the DPM-Solver++ update, the Karras schedule, the Euler-ancestral step |
# | 06 | evaluation: classifier FID/KID, the Inception Score, quality vs number of steps, timing | the Fréchet distance, the unbiased MMD² (KID), the Inception Score, the cost per network call |
# | 07 | few-step generation: distilling the course model | the two-step teacher, the distillation target, the loss weight |
# | 08 | class-conditional generation and classifier-free guidance | label dropout, the guided ε, per-digit accuracy |
# | 09 | consistency models: one-step generation, consistency distillation on toy data, tuning the course model | c_skip and c_out, the distillation target, the multistep sampler |
# | 10 | flow matching and rectified flow: the same samplers on straight paths; where the field goes next | the flow-matching pair, the VP-to-flow conversion, straightness |
#
# 32 exercises in all, each with a check.
#
# Every notebook lists its objectives and run time at the top and ends with a summary.

# %% [markdown]
# ## How the notebooks work
#
# **The package.** Everything the notebooks derive also lives, tested, in the Python package
# `ddpm_course`, imported as `dc`. A notebook explains an idea, you write it, and from then on the
# notebook uses your version or the package's.
#
# **Exercises.** An exercise is a code cell with a function to complete. In your copy its body reads
# `raise NotImplementedError("Exercise 0.1: ...")`: replace that line with your code. The cell after
# it runs a **check**, e.g. `snr = dc.checks.snr(snr)`, which calls your function on small fixed
# inputs and compares the result with a reference implementation:
#
# - ✓ *matches the reference*: the check hands back your function and the notebook uses it;
# - `CheckFailed`: the message says which property is wrong — the type, shape or dtype of the
#   result, or the first wrong value with the expected and the computed number;
# - *not implemented yet*: a short note, and the notebook carries on with the reference.
#   So every notebook runs top to bottom even with all exercises blank: skip one and come back later.
#
# **Solutions.** `notebooks/NN_topic.ipynb` is your copy, with blank exercises. The same notebook
# with every exercise filled in is `solutions/NN_topic.ipynb`. Try first; peek when stuck.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import ddpm_course as dc

# %% [markdown]
# ## Your device
#
# `dc.device()` picks the fastest device once — an NVIDIA GPU (CUDA), then Apple silicon (MPS),
# then the CPU — and every notebook and helper uses that choice. Set the environment variable
# `DDPM_COURSE_DEVICE=cpu` before starting Jupyter to force one. Everything in the course runs on a
# CPU; a GPU makes training and large sampling runs much faster.

# %%
device = dc.device()
print(f"ddpm_course {dc.__version__}, torch {torch.__version__}, device: {device}")
x = torch.randn(256, 256, device=device)
print(f"a 256×256 matrix product on {(x @ x).device}: fine")

# %% [markdown]
# ## Fast mode
#
# Some notebooks train a model or draw thousands of samples. With the environment variable
# `DDPM_COURSE_FAST=1` they shrink those sizes (training steps, sample counts) so a notebook runs in
# seconds; the code path is the same, only the numbers change. The automated tests run every
# notebook this way. The next cell is the notebook's *parameters* cell: it is where such sizes are
# set, and tools like papermill can override it.

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1

# %%
n_levels = 4 if FAST else 6  # how many noise levels the figure at the end shows
print("fast mode: on" if FAST else "fast mode: off (full sizes)")

# %% [markdown]
# ## Warm-up: the noise schedule
#
# A diffusion model is trained to undo a *forward process* that adds Gaussian noise to the data in
# T = 1000 small steps with variances β_1, …, β_T (DDPM, Ho et al. 2020, eq. 2). Notebook 01 derives
# the closed form that jumps there in one go (eq. 4):
#
# $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\qquad
#   \bar\alpha_t = \prod_{s\le t}(1-\beta_s),\quad \varepsilon\sim\mathcal N(0, I).$$
#
# ᾱ_t falls from almost 1 (clean data) to almost 0 (pure noise). `dc.NoiseSchedule` holds these
# tables; DDPM used β rising linearly from 10⁻⁴ to 0.02, Improved DDPM a cosine-shaped ᾱ.

# %%
linear = dc.NoiseSchedule.linear(T=1000)
cosine = dc.NoiseSchedule.cosine(T=1000)
t = torch.arange(1, linear.T + 1)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(t, linear.alpha_bars, label="linear β (DDPM)")
ax.plot(t, cosine.alpha_bars, label="cosine (Improved DDPM)")
ax.set(xlabel="t", ylabel=r"$\bar\alpha_t$", title="How much of the signal is left at step t")
ax.legend()
plt.show()

# %% [markdown]
# ### Exercise 0.1 — the signal-to-noise ratio
#
# In x_t the signal √ᾱ_t x_0 carries variance ᾱ_t (for unit-variance data) and the noise carries
# 1 − ᾱ_t. Their ratio is the **signal-to-noise ratio**
#
# $$\mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}.$$
#
# Write `snr(alpha_bars)`: it takes a tensor of ᾱ values and returns the SNR of each entry, a tensor
# of the same shape and dtype. Then run the check below it.

# %% tags=["exercise"]
def snr(alpha_bars):
    """Signal-to-noise ratio ᾱ / (1 − ᾱ) of each entry of the tensor `alpha_bars`."""
    ### BEGIN SOLUTION
    return alpha_bars / (1 - alpha_bars)
    ### END SOLUTION


# %%
snr = dc.checks.snr(snr)

# %% [markdown]
# This is what a wrong answer looks like: the check names the test case, the property that failed,
# the first wrong entry and how many entries are wrong.

# %%
try:
    dc.checks.snr(lambda ab: ab / (1 + ab))  # a deliberate slip: 1 + ᾱ instead of 1 − ᾱ
except dc.checks.CheckFailed as err:
    print("CheckFailed:", err)

# %% [markdown]
# The SNR spans many orders of magnitude, so it is plotted on a log scale: log SNR(t) (the *log-SNR*
# λ_t) is the natural "clock" of a diffusion process, and later notebooks use it to compare schedules
# and to build fast samplers. The cosine schedule spends more steps at moderate noise levels.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(t, snr(linear.alpha_bars), label="linear β")
ax.plot(t, snr(cosine.alpha_bars), label="cosine")
ax.axhline(1.0, color="gray", lw=0.8, ls="--")
ax.set(yscale="log", xlabel="t", ylabel=r"SNR$(t) = \bar\alpha_t / (1 - \bar\alpha_t)$", title="Signal-to-noise ratio")
ax.legend()
plt.show()

# %% [markdown]
# ## A digit, noised
#
# The course's models learn handwritten digits (MNIST). The package ships 5,000 real digits, so this
# works offline. Below, one digit scaled to [−1, 1] is noised with the closed form above at a few
# steps t, each panel titled with its SNR: once the SNR drops well below 1 the digit is hard to see.

# %%
from importlib.resources import files

digits = np.load(files("ddpm_course") / "assets" / "mnist_subset.npz")["train_images"]
x0 = torch.from_numpy(digits[0]).float().div(127.5).sub(1.0)[None, None]  # (1, 1, 28, 28) in [-1, 1]
steps = torch.linspace(0, linear.T - 1, n_levels).round().long()
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))

fig, axes = plt.subplots(1, n_levels, figsize=(1.8 * n_levels, 2.2))
for ax, step in zip(axes, steps, strict=True):
    x_t = dc.q_sample(x0, step[None], noise, linear)
    ax.imshow(x_t[0, 0], cmap="gray", vmin=-2, vmax=2)
    ax.set_title(f"t={int(step) + 1}\nSNR={float(snr(linear.alpha_bars[step])):.2g}", fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Notation, once for the whole course
#
# The papers the course follows reuse the same letters for different things. The course keeps each paper's
# letters where it quotes that paper and says so when a symbol changes meaning; this table is the key.
#
# | symbol | meaning in this course | where it changes meaning |
# |---|---|---|
# | t, T | timestep 1…T (T = 1000); code indexes it 0…T − 1 | |
# | β_t, α_t, ᾱ_t | DDPM: noise added at step t, α_t = 1 − β_t, ᾱ_t = ∏ α_s | 07 (Salimans & Ho, VDM): α_t = √ᾱ_t; the DDIM paper writes α_t for DDPM's ᾱ_t |
# | x_0, x_t, ε | clean image, noisy image x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, the noise | |
# | ε̂ = ε_θ(x_t, t), x̂_0 | the network's noise prediction and the clean image it implies | 07: the student predicts v = α_t ε − σ_t x_0 instead |
# | SNR, log-SNR | ᾱ_t/(1 − ᾱ_t) and its logarithm (01) | 05: λ = −log σ is *half* of 01's log-SNR |
# | σ | 05 (σ-space, Karras et al.): σ = √((1 − ᾱ)/ᾱ), with x̃ = x/√ᾱ = x_0 + σ ε | 03: DDPM's reverse-step std (σ_t² = β_t or β̃_t); 04: DDIM's σ_t(η); 07: σ_t = √(1 − ᾱ_t) |
# | η | DDIM's stochasticity: 0 deterministic, 1 as DDPM (04) | |
# | D | data prediction x̂_0 in σ-space (05, DPM-Solver++) | |
# | s | the guidance scale of `dc.sample` (08): s = 1 + w, w Ho & Salimans' weight | in code `s` is also the NoiseSchedule object; 01's cosine schedule has an offset s |
# | NFE | network function evaluations: the cost of a sampler | |
#
# ## Summary
#
# - The course runs on CUDA, Apple MPS or the CPU, chosen once by `dc.device()`;
#   `DDPM_COURSE_FAST=1` shrinks sizes, never code paths.
# - Exercises: replace `raise NotImplementedError(...)` with your code, run the check; a ✓ means the
#   notebook now uses your function, a `CheckFailed` says what to fix, a blank exercise falls back to
#   the reference. Full solutions are in `solutions/`.
# - The schedule ᾱ_t and the SNR ᾱ_t/(1 − ᾱ_t) say how much signal is left at step t.
#
# **Next:** notebook 01 derives the forward process and its closed form, and you will write `q_sample`.

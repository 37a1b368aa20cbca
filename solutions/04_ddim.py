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
# # 04 · DDIM: fewer steps, determinism, inversion and interpolation
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json). Nothing trains here.
#
# **You will**
# - see why a model trained for DDPM can be sampled by a whole *family* of processes: DDIM's
#   non-Markovian forward process has the same marginals q(x_t | x_0) (DDIM eq. 7);
# - implement the DDIM update (eq. 12) with the noise level σ_t(η) (eq. 16), and check that η = 1 is
#   DDPM and η = 0 a deterministic sampler;
# - skip steps: leading, trailing and linspace timestep spacings, and a bug to avoid in one library;
# - see that the same x_T gives the same image at any number of steps (η = 0);
# - keep the predicted x̂_0 in range with clipping or Imagen's dynamic thresholding, and measure both;
# - run the sampler backwards — **DDIM inversion** — measure the reconstruction error, and interpolate
#   between two real digits with spherical interpolation of their latents;
# - play with η and the number of steps in an interactive explorer.
#
# **Exercises:** 4.1 the DDIM step · 4.2 the whole DDIM sampler · 4.3 spherical interpolation (slerp).
#
# **Prerequisites:** notebook 03 (the posterior q(x_{t−1} | x_t, x_0), ancestral sampling, β̃_t).

# %%
import json
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
n_toy = 1_000 if FAST else 5_000                               # 2-D points for the toy experiments
n_digits = 8                                                   # MNIST digits per row
eta_steps = 10 if FAST else 50                                 # DDIM steps of the η comparison on MNIST
consistency_steps = (5, 10) if FAST else (10, 20, 50, 100)     # "same x_T, any number of steps"
inversion_steps = (10, 20) if FAST else (10, 20, 50, 100, 200)  # inversion + reconstruction on MNIST
interp_steps = 10 if FAST else 50                              # steps for the interpolation
n_interp = 5 if FAST else 11                                   # images along an interpolation
explorer_steps = (5, 10, 20) if FAST else (5, 10, 20, 50, 100)  # choices in the interactive explorer
torch.manual_seed(0)

s = dc.NoiseSchedule.linear(T=1000)

# %% [markdown]
# ## 1 · The same marginals, a different process (DDIM §3)
#
# Look again at what DDPM's network learned. The training loss (DDPM eq. 14) only ever draws
# x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε from the **marginals** q(x_t | x_0); it never looks at how x_{t−1} and
# x_t are linked. So any other process with the same marginals could use the very same network.
#
# Song, Meng & Ermon (2021) build such a family. For any choice of σ_t ≥ 0, define the reverse-time
# conditionals (**DDIM eq. 7**; the paper writes α_t for DDPM's ᾱ_t — we keep ᾱ):
#
# $$q_\sigma(x_{t-1}\mid x_t, x_0) = \mathcal N\Big(\sqrt{\bar\alpha_{t-1}}\,x_0
#   + \sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\;\frac{x_t-\sqrt{\bar\alpha_t}\,x_0}{\sqrt{1-\bar\alpha_t}},
#   \ \sigma_t^2 I\Big).$$
#
# The fraction is the noise ε that x_t carries. The mean puts x_{t−1} at the right signal level with
# *part* of that same noise, and σ_t z tops up fresh noise; the two noise parts add up to variance
# 1 − ᾱ_{t−1}. So if x_t has the marginal q(x_t | x_0), x_{t−1} has q(x_{t−1} | x_0) (DDIM Lemma 1).
# The matching forward process q_σ(x_t | x_{t−1}, x_0) now depends on x_0 too: it is
# **non-Markovian** — but nobody needs to run it, only its marginals matter.
#
# **The sampler (DDIM eq. 12).** Replace the unknown x_0 by the model's guess
# x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t and the noise by ε_θ:
#
# $$x_{t-1} = \underbrace{\sqrt{\bar\alpha_{t-1}}\,\hat x_0}_{\text{predicted }x_0}
#   + \underbrace{\sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\;\varepsilon_\theta(x_t, t)}_{\text{direction pointing to }x_t}
#   + \underbrace{\sigma_t z}_{\text{random noise}},\qquad z\sim\mathcal N(0, I).$$
#
# **The σ_t(η) family (DDIM eq. 16).**
#
# $$\sigma_t(\eta) = \eta\,\sqrt{\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}}\,
#   \sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_{t-1}}}.$$
#
# (σ_t(η) is the standard deviation of the fresh noise, like notebook 03's σ_t; from notebook 05 on, a bare
# σ means the noise level √((1 − ᾱ)/ᾱ) of σ-space instead.) With η = 1, σ_t² = β̃_t of notebook 03 and
# the process is DDPM's. With η = 0 there is no fresh noise
# at all: the sampler is a **deterministic** map from x_T to x_0 — this is "DDIM" proper.
# Nothing above needs t − 1 to be the *neighbouring* step: the same formulas hold between any two
# visited levels ᾱ_t < ᾱ_prev (DDIM §4.2), which is how DDIM skips steps.
#
# ### Exercise 4.1 — the DDIM step
#
# Write `ddim_step(x_t, eps, ab_t, ab_prev, eta, z)`: `ab_t` = ᾱ_t and `ab_prev` = ᾱ_prev are Python
# floats with 0 < ᾱ_t < ᾱ_prev ≤ 1, `eta` ≥ 0 a float, `z` standard normal noise of `x_t`'s shape.
# Return x_prev from eq. 12 with σ from eq. 16 (`math.sqrt` works on floats).

# %% tags=["exercise"]
def ddim_step(x_t, eps, ab_t, ab_prev, eta, z):
    """x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z (DDIM eq. 12), σ = σ_t(η) (eq. 16)."""
    ### BEGIN SOLUTION
    x0_hat = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_prev)
    direction = math.sqrt(1 - ab_prev - sigma**2) * eps
    return math.sqrt(ab_prev) * x0_hat + direction + sigma * z
    ### END SOLUTION


# %%
ddim_step = dc.checks.ddim_step(ddim_step)

# %% [markdown]
# **The marginals really do not change.** With the *true* noise of x_t (we know x_0 here), `ddim_step`
# steps through q_σ itself. Start from x_T ~ q(x_T | x_0), walk down 10 levels, and at each level look
# at the noise that x_t carries, e_t = (x_t − √ᾱ_t x_0)/√(1 − ᾱ_t): its standard deviation should stay 1
# for every η (up to the sampling error of n points: the starting e_T itself has std
# ≈ 1 ± 1/√(2n)). Its correlation with the starting noise e_T shows what η changes: with η = 0 the noise
# is *never* replaced, with η = 1 fresh noise gradually takes over.

# %%
x0_toy = dc.toy.eight_gaussians(n_toy, generator=torch.Generator().manual_seed(1)).double()
grid10 = s.grid(10, "leading")                   # 10 visited levels, then ᾱ = 1
ab10 = grid10.alpha_bars.tolist()
e_T = torch.randn(x0_toy.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
print(f"std of the starting noise e_T: {float(e_T.std()):.3f}")

for eta in (0.0, 0.5, 1.0):
    g = torch.Generator().manual_seed(3)
    x = math.sqrt(ab10[0]) * x0_toy + math.sqrt(1 - ab10[0]) * e_T
    stds, corrs = [], []
    for i in range(len(grid10) - 1):                                   # stop before ᾱ = 1 (no noise left)
        true_eps = (x - math.sqrt(ab10[i]) * x0_toy) / math.sqrt(1 - ab10[i])
        z = torch.randn(x.shape, generator=g, dtype=x.dtype)
        x = ddim_step(x, true_eps, ab10[i], ab10[i + 1], eta, z)
        e = (x - math.sqrt(ab10[i + 1]) * x0_toy) / math.sqrt(1 - ab10[i + 1])
        stds.append(float(e.std()))
        corrs.append(float((e * e_T).mean() / (e.std() * e_T.std())))
    print(f"η = {eta}: std of e_t along the way {np.round(stds, 3)}")
    print(f"         correlation with e_T        {np.round(corrs, 3)}")

# %% [markdown]
# ## 2 · DDIM on toy data with the exact denoiser
#
# Now the whole sampler around your `ddim_step`. `s.grid(steps, spacing)` lists the visited timesteps
# `grid.ts` (length steps) and `grid.alpha_bars`, the ᾱ of the steps + 1 levels (the last one ᾱ = 1: the
# clean sample); step i goes from level i to level i + 1.
#
# ### Exercise 4.2 — the whole DDIM sampler
#
# Write `ddim_sampler(model, s, x_T, steps, eta=0.0, spacing="leading", generator=None)`: start from x_T
# and, for every level i, call the model at t_i (a tensor of shape (B,): `torch.full((len(x),), t)`) and
# take one `ddim_step` to level i + 1. The fresh noise z must be `torch.randn(x.shape, generator=generator,
# dtype=x.dtype)`, drawn only on steps whose σ_t(η) > 0 (none when η = 0, and never on the last step, where
# ᾱ_prev = 1), so that the same generator gives the same samples as `dc.sample`.

# %% tags=["exercise"]
def ddim_sampler(model, s, x_T, steps, eta=0.0, spacing="leading", generator=None):
    """DDIM (eq. 12) on s.grid(steps, spacing), fresh noise only where σ_t(η) > 0."""
    ### BEGIN SOLUTION
    grid = s.grid(steps, spacing)
    ab, x = grid.alpha_bars.tolist(), x_T
    for i, t in enumerate(grid.ts.tolist()):
        eps = model(x, torch.full((len(x),), t))
        sigma = eta * math.sqrt((1 - ab[i + 1]) / (1 - ab[i]) * (1 - ab[i] / ab[i + 1]))   # eq. 16
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if sigma > 0 else torch.zeros_like(x)
        x = ddim_step(x, eps, ab[i], ab[i + 1], eta, z)
    return x
    ### END SOLUTION


# %%
ddim_sampler = dc.checks.ddim_sampler(ddim_sampler)

# %% [markdown]
# On the 2-D mixture of notebook 03 with its exact noise predictor, 50 steps:

# %%
oracle = dc.toy.MixtureOracle.eight_gaussians(s)
x_T = torch.randn(n_toy, 2, generator=torch.Generator().manual_seed(4))
mine = ddim_sampler(oracle, s, x_T, 50, eta=0.5, generator=torch.Generator().manual_seed(5))
pkg = dc.sample(oracle, s, x_T, sampler="ddim", steps=50, eta=0.5, generator=torch.Generator().manual_seed(5))
print(f"{dc.checks.whose(ddim_sampler, 'ddim_sampler')} vs dc.sample(sampler='ddim'), η = 0.5: largest "
      f"difference {float((mine - pkg).abs().max()):.1e}")

ddpm = dc.sample(oracle, s, x_T, sampler="ddpm", steps=50, generator=torch.Generator().manual_seed(6))
ddim1 = dc.sample(oracle, s, x_T, sampler="ddim", steps=50, eta=1.0, generator=torch.Generator().manual_seed(6))
print(f"DDIM with η = 1 vs DDPM (σ² = β̃), same noise draws: largest difference {float((ddim1 - ddpm).abs().max()):.1e}"
      " (float32 rounding: two ways of writing the same update)")

# %% [markdown]
# **From stochastic to deterministic.** The paths of 50 samples through 50 steps, for three values of
# η. At η = 1 each step adds fresh noise, so paths jitter; at η = 0 they are smooth curves — the
# sampler follows an ordinary differential equation (notebook 05 makes this precise: DDIM with η = 0 is
# Euler's method on the *probability-flow ODE*).

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, eta in zip(axes, (1.0, 0.5, 0.0), strict=True):
    x0, info = dc.sample(oracle, s, x_T, sampler="ddim", steps=50, eta=eta,
                         generator=torch.Generator().manual_seed(7), return_info=True)
    dc.viz.plot_trajectories_2d([x for x, _ in info.trajectory] + [x0], n_paths=50, ax=ax, title=f"η = {eta:g}")
plt.tight_layout()
plt.show()


# %% [markdown]
# How accurate are the samples? Each mixture component has standard deviation 0.1, so the RMS distance
# of the samples to their nearest mode (per coordinate) should be 0.1.

# %%
spread = oracle.spread     # RMS distance per coordinate to the nearest mixture mean (the truth is 0.1)
print("spread of the samples (truth 0.100)")
print("steps " + "".join(f"   η = {eta:<4g}" for eta in (0.0, 0.5, 1.0)))
for steps in (5, 10, 20, 50):
    row = [spread(dc.sample(oracle, s, x_T, sampler="ddim", steps=steps, eta=eta,
                            generator=torch.Generator().manual_seed(8))) for eta in (0.0, 0.5, 1.0)]
    print(f"{steps:5d} " + "".join(f"   {r:8.3f}" for r in row))

# %% [markdown]
# With a *perfect* denoiser, η hardly matters here: all samplers need about 20 steps. So differences
# between η values at few steps come from the *model's* errors, and how they play out depends on the
# model. DDIM's Table 1 (CIFAR-10, a large well-trained network) found η = 0 far ahead at few steps:
# FID 13.4 for η = 0 against 41.1 for η = 1 at 10 steps. Section 4 looks at the course's small model,
# and notebook 06 measures quality against steps for each η.
#
# ## 3 · Skipping steps: which timesteps to visit?
#
# With S < T steps we must choose S of the T timesteps. The course uses the names of diffusers'
# `timestep_spacing` (DDIM's own choice is "leading"):
#
# - **leading**: 0, T/S, 2T/S, … (reversed) — never visits t = T, so x_T ~ N(0, I) is fed to the
#   model at a slightly less noisy level;
# - **trailing**: T, T − T/S, … — starts at t = T (recommended by Lin et al. 2024, *Common Diffusion
#   Noise Schedules and Sample Steps are Flawed*);
# - **linspace**: S evenly spaced values from T to 1, rounded.
#
# After the last visited timestep every sampler in the course jumps to ᾱ = 1, the clean sample.

# %%
S = 10
print(f"T = {s.T}, S = {S}; timesteps in the paper's convention t = index + 1")
for spacing in ("leading", "trailing", "linspace"):
    ts = s.timesteps(S, spacing)
    print(f"  {spacing:9s} {(ts + 1).tolist()}")

fig, ax = plt.subplots(figsize=(7, 2.3))
for k, spacing in enumerate(("leading", "trailing", "linspace")):
    ts = s.timesteps(S, spacing)
    ax.scatter(ts + 1, np.full(S, k), s=25, label=spacing)
ax.set(yticks=[0, 1, 2], yticklabels=["leading", "trailing", "linspace"], xlabel="t", xlim=(-20, 1020),
       title=f"the {S} timesteps each spacing visits")
ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# **A trap in a popular library.** In DDIM the previous level of each step is simply the *next entry of
# the list*. diffusers' `DDIMScheduler` instead computes it as t − T//S. That is the same thing for
# leading and trailing spacing, but not for linspace, whose entries are (T − 1)/(S − 1) ≈ 111 apart
# for S = 10, not T//S = 100: the scheduler then steps to an ᾱ that is not the one the model is called
# at next (open upstream issues; the course's tests compare against diffusers and show this deviation).
# Here is the damage on the toy data, using your `ddim_step` with the wrong previous level:

# %%
ts = s.timesteps(S, "linspace")
wrong_prev = ts - s.T // S                                        # diffusers' rule, right only for even gaps
print("linspace timesteps      ", (ts + 1).tolist())
print("next entry (correct)    ", (ts[1:] + 1).tolist() + ["clean"])
print("t − T//S (diffusers)    ", [int(p) + 1 if p >= 0 else "clean" for p in wrong_prev])


def ddim_linspace_with_wrong_prev(model, x):
    for t, p in zip(ts.tolist(), wrong_prev.tolist(), strict=True):
        ab_prev = float(s.alpha_bars[p]) if p >= 0 else 1.0
        x = ddim_step(x, model(x, torch.full((len(x),), t)), float(s.alpha_bars[t]), ab_prev, 0.0, torch.zeros_like(x))
    return x


right = dc.sample(oracle, s, x_T, sampler="ddim", steps=S, spacing="linspace")
print(f"spread with {S} linspace steps: correct {spread(right):.3f}, "
      f"with t − T//S {spread(ddim_linspace_with_wrong_prev(oracle, x_T)):.3f} (truth 0.100)")

# %% [markdown]
# ### The training schedule decides where the steps land
#
# A uniform-in-t grid is uniform in *t*, not in noise: which noise levels it visits depends on the schedule
# β_t the model was trained with (notebook 01). DDPM's linear β and the cosine schedule of Nichol & Dhariwal
# (2021, §3.2, eq. 17) give the same ten timesteps very different σ-levels. With the exact denoiser there is
# no model error, so the difference below is the schedule's alone: DDIM (η = 0) on the eight Gaussians,
# error against a 200-step solve of the same ODE, and the spread (truth 0.100).

# %%
schedules = {"linear (DDPM)": s, "cosine (Nichol & Dhariwal)": dc.NoiseSchedule.cosine()}
x_T_sched = torch.randn(n_toy, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
print(f"{'schedule':>27} {'spacing':>9} " + "".join(f"{'S = ' + str(n):>22}" for n in (5, 10, 20)))
for name, sched in schedules.items():
    exact = dc.toy.MixtureOracle.eight_gaussians(sched)
    reference = dc.sample(exact, sched, x_T_sched, sampler="dpmpp_2m", steps=200, spacing="karras")
    for spacing in ("leading", "trailing"):
        cells = []
        for n in (5, 10, 20):
            x = dc.sample(exact, sched, x_T_sched, sampler="ddim", steps=n, spacing=spacing)
            error = (x - reference).pow(2).sum(1).mean().sqrt().item()
            cells.append(f"error {error:.3f}, {spread(x):.3f}")
        print(f"{name:>27} {spacing:>9} " + "".join(f"{c:>22}" for c in cells))

fig, ax = plt.subplots(figsize=(6.5, 3.2))
for (name, sched), marker in zip(schedules.items(), "os", strict=True):
    ax.semilogy(range(10), sched.grid(10, "trailing").sigmas[:-1], marker=marker, label=name)
ax.set(xlabel="step i of 10 (trailing)", ylabel=r"$\sigma_i$", title="Where ten uniform-in-t steps land")
ax.grid(alpha=0.3, which="both")
ax.legend()
plt.show()

# %% [markdown]
# The cosine schedule keeps ᾱ_t high for longer, so a uniform-in-t grid spends more of its steps at the
# small noise levels where the modes are resolved, and its 10-step DDIM is about as good as the linear
# schedule's 20-step one. (The cosine schedule also starts at a far larger σ_max; at those levels x̃ is pure
# noise and a step costs almost no accuracy.) So "DDIM with 10 steps" is not one method: its quality
# depends on the schedule the network was trained on, a choice fixed at training time. Karras' schedule
# (notebook 05) removes that dependence by choosing the σ-levels directly.

# %% [markdown]
# ## 4 · MNIST: η, and the same x_T at any number of steps
#
# Now the trained U-Net (`dc.load_pretrained("mnist")`, class-conditional: we ask for the digits
# 0, 1, 2, … so the grids read easily; notebook 08 explains labels and guidance). First η, at few
# steps: same x_T, same random draws. Look at the strokes *and* at the background. Two effects pull
# in opposite directions. Fresh noise (η > 0) must be removed again by later steps, which costs
# accuracy when there are few of them — the reason DDIM prefers η = 0. But with η = 0 nothing ever
# re-noises the image, so the network's own errors stay in it, while η = 1 gives every step a chance to
# correct them. Which effect wins depends on how good the model is: notebook 06 measures both on the
# course model. For these class-conditional digits, where the network is nearly exact (FID at the
# real-vs-real floor), η = 0 is better at 10 steps (FID 0.30 against 0.50 for η = 1); for unconditional
# samples, whose branch of the network is less accurate, η = 1 wins (2.39 against 2.72). The course's
# first model, `dc.load_pretrained("mnist_early")`, trained for a third as long, makes the second effect
# visible: rerun the cell with it and the η = 0 row gets a speckled background. Judging by eye on eight
# digits is only a first impression.

# %%
model, s_mnist = dc.load_pretrained("mnist")
model = model.to(device).eval()
y = torch.arange(n_digits, device=device) % 10
x_T_img = torch.randn(n_digits, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)

rows, names = [], []
for eta in (0.0, 0.5, 1.0):
    rows.append(dc.sample(model, s_mnist, x_T_img, sampler="ddim", steps=eta_steps, eta=eta, y=y,
                          generator=torch.Generator().manual_seed(1)).cpu())
    names.append(f"η = {eta:g}")
fig = dc.viz.show_grid(torch.cat(rows), nrow=n_digits, size=8)
fig.axes[0].set_title(f"DDIM, {eta_steps} steps; rows: " + ", ".join(names), fontsize=10)
plt.show()

# %% [markdown]
# **Same x_T → same image.** With η = 0 the sampler is a deterministic function of x_T, and it
# approximates the same ODE whatever the number of steps: 5, 10 or 100 steps from one x_T give
# (nearly) the same digit, differing in detail only (DDIM §5.2, "sample consistency"). With η = 1 the image
# depends on the random draws as much as on x_T: two seeds, two different digits.

# %%
rows, names = [], []
for steps in consistency_steps:
    rows.append(dc.sample(model, s_mnist, x_T_img, sampler="ddim", steps=steps, y=y).cpu())
    names.append(f"η=0, {steps} steps")
for seed in (1, 2):
    rows.append(dc.sample(model, s_mnist, x_T_img, sampler="ddim", steps=consistency_steps[1], eta=1.0, y=y,
                          generator=torch.Generator().manual_seed(seed)).cpu())
    names.append(f"η=1, {consistency_steps[1]} steps, seed {seed}")
fig = dc.viz.show_grid(torch.cat(rows), nrow=n_digits, size=8)
fig.axes[0].set_title("rows: " + "; ".join(names), fontsize=8)
plt.show()

# %% [markdown]
# ### Keeping x̂_0 in range: clipping and dynamic thresholding
#
# Every step predicts the clean image x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t (eq. 9) and moves towards it. Early
# in sampling, at large t, that prediction divides by a small √ᾱ_t and can land far outside the data range
# [−1, 1]; an imperfect network makes it worse. Two standard remedies act on x̂_0 before the step uses it:
#
# - **static clipping**: x̂_0 ← clip(x̂_0, −1, 1). DDPM's reference code does it at every step, and it is the
#   default of diffusers' DDPM and DDIM schedulers (`clip_sample=True`);
# - **dynamic thresholding** (Saharia et al. 2022, *Imagen*, §2.3): per sample, take s = the 99.5th
#   percentile of |x̂_0|, s ← max(s, 1), and set x̂_0 ← clip(x̂_0, −s, s)/s. Saturated pixels are pulled
#   inwards instead of piling up at ±1; Imagen needs it at high guidance scales, which push x̂_0 far out.
#
# Either way the step then uses the ε̂ that goes with the new x̂_0 for the same x_t,
# ε̂ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t), so the two predictions stay consistent. In the package this is one
# option of every sampler, `dc.sample(..., x0_clip="static" | "dynamic")` (checked step for step against
# diffusers). Five unconditional DDIM steps from one x_T, with the range of the first x̂_0:

# %%
clip_rows, clip_names = [], []
for how in (None, "static", "dynamic"):
    x0, info = dc.sample(model, s_mnist, x_T_img, sampler="ddim", steps=5, x0_clip=how, return_info=True)
    first_x0 = info.trajectory[0][1]
    clip_rows.append(x0.clamp(-1, 1).cpu())
    clip_names.append(f"x0_clip={how}")
    print(f"x0_clip={str(how):8s} first x̂_0 in [{first_x0.min():6.2f}, {first_x0.max():5.2f}]; final pixels "
          f"outside [−1, 1]: {(x0.abs() > 1 + 2 / 255).float().mean():.1%}")
fig = dc.viz.show_grid(torch.cat(clip_rows), nrow=n_digits, size=8)
fig.axes[0].set_title("DDIM, 5 steps, unconditional; rows: " + ", ".join(clip_names), fontsize=10)
plt.show()

clip_path = dc.course.course_file("benchmarks/results/x0_clipping.json")
if clip_path is not None:
    clip_study = json.loads(clip_path.read_text())
    print(f"benchmarks/x0_clipping.py, n = {clip_study['n']} unconditional digits per cell "
          f"(real-vs-real FID {np.mean(clip_study['floor_fid']):.2f}):")
    for r in clip_study["rows"]:
        print(f"  {r['sampler']:>9} [{r['spacing']}] {r['steps']:2d} steps, x0_clip={str(r['x0_clip']):8s} "
              f"FID {r['fid']:6.2f}   pixels outside [−1, 1] {r['clipped_far_fraction']:6.1%}")

# %% [markdown]
# What the measurement says on the course model, unguided: **static clipping changes almost nothing** (DDIM
# 4.15 against 4.14 at 5 steps, DPM-Solver++(2M) 6.09 against 6.31), except that no pixel ends outside the
# data range. **Dynamic thresholding hurts** (4.86 and 10.74 at 5 steps): dividing by s > 1 dims every
# stroke of a sample whose x̂_0 overshoots anywhere, and this network's overshoots are small, so there is
# nothing for the rescaling to save. Thresholding earns its keep where x̂_0 leaves the range far and often,
# as with Imagen's guidance scales of 5–10 on large images; try it with `guidance_scale` in notebook 08. A
# standard trick is a hypothesis to measure, not a default to copy.

# %% [markdown]
# ## 5 · DDIM inversion: from an image back to its noise
#
# A deterministic sampler is an invertible map (up to discretisation error), so we can run it
# backwards: start from a real image x_0 and step *up* the noise levels to a latent x_T that the η = 0
# sampler maps back to x_0 (DDIM §5.4). Each up-step is eq. 12 with the roles of the levels swapped,
# x_next = √ᾱ_next x̂_0 + √(1 − ᾱ_next) ε̂, where ε̂ must be evaluated at the current, less noisy
# point — a small approximation that shrinks with the step size. `dc.ddim_invert(model, s, x0, steps)`
# does it.
#
# On the toy data the denoiser is exact, so the reconstruction error is pure discretisation error:

# %%
print("steps   RMS reconstruction error   latent mean, std")
for steps in (10, 20, 50, 100):
    z = dc.ddim_invert(oracle, s, x0_toy.float(), steps=steps)
    rec = dc.sample(oracle, s, z, sampler="ddim", steps=steps)
    print(f"{steps:5d}   {float((rec - x0_toy.float()).pow(2).mean().sqrt()):24.4f}   "
          f"{float(z.mean()):+.3f}, {float(z.std()):.3f}")

# %% [markdown]
# The error shrinks as the steps get smaller, and the latents of the toy data look like N(0, I)
# noise (mean 0, standard deviation 1). Now real MNIST test digits (never seen in training), with
# their labels:

# %%
x_real, y_real = dc.data.load_mnist_subset("test")
x_real, y_real = x_real[:n_digits].to(device), y_real[:n_digits].to(device)
rows, errors = [x_real.cpu()], []
for steps in inversion_steps:
    z = dc.ddim_invert(model, s_mnist, x_real, steps=steps, y=y_real)
    rec = dc.sample(model, s_mnist, z, sampler="ddim", steps=steps, y=y_real)
    errors.append(float((rec - x_real).pow(2).mean()))
    rows.append(rec.cpu())
print("steps:", inversion_steps)
print("mean squared error of the reconstruction (pixels in [-1, 1]):", np.round(errors, 4))
print(f"latent of the last run: mean {float(z.mean()):+.3f}, std {float(z.std()):.3f}")
fig = dc.viz.show_grid(torch.cat([rows[0], z.cpu().clamp(-2.5, 2.5) / 2.5, *rows[1:]]), nrow=n_digits, size=8)
fig.axes[0].set_title(f"rows: real digits, their latents x_T ({inversion_steps[-1]} steps), reconstructions "
                      f"with {', '.join(map(str, inversion_steps))} steps", fontsize=8)
plt.show()

# %% [markdown]
# The reconstructions come close to the real digits, closer with more steps. The latents, though,
# are not quite typical N(0, I) draws: you can often still see the digit in them, and their standard
# deviation (printed above) can be well below 1. A trained network's η = 0 sampler only approximates
# the exact ODE map, and inverting it from a real image lands in a slightly atypical region of the
# latent space — one reason why image-editing methods built on inversion add corrections (e.g.
# null-text inversion, Mokady et al. 2023).

# %% [markdown]
# ## 6 · Interpolating between two digits
#
# Two latents x_T^(a), x_T^(b) decode to two digits. What lies between them? Not the straight line:
# in d = 784 dimensions, a standard Gaussian vector has length ≈ √d = 28 almost surely (the lengths
# concentrate on a thin shell), and the midpoint (x^(a) + x^(b))/2 of two independent ones has length
# ≈ √(d/2) ≈ 19.8 — a latent the model has never seen, with too little noise. **Spherical linear
# interpolation** (slerp; Shoemake 1985, used for generative models by White 2016 and in DDIM §5.3)
# follows the great circle instead:
#
# $$\mathrm{slerp}(z_0, z_1; \alpha) = \frac{\sin((1-\alpha)\theta)}{\sin\theta}\,z_0
#   + \frac{\sin(\alpha\theta)}{\sin\theta}\,z_1,\qquad
#   \cos\theta = \frac{\langle z_0, z_1\rangle}{\lVert z_0\rVert\,\lVert z_1\rVert}.$$
#
# ### Exercise 4.3 — slerp
#
# Write `slerp(z0, z1, alpha)` for two tensors of the same shape, each treated as **one** long vector
# (flatten all dimensions to compute θ), and a float α ∈ [0, 1]. Clamp cos θ to [−1, 1] before
# `torch.arccos` (rounding can push it just outside), and where sin θ is (nearly) 0 — parallel
# vectors — fall back to linear interpolation (1 − α) z0 + α z1.

# %% tags=["exercise"]
def slerp(z0, z1, alpha):
    """Spherical linear interpolation from z0 (α = 0) to z1 (α = 1), each seen as one flat vector."""
    ### BEGIN SOLUTION
    a, b = z0.flatten(), z1.flatten()
    theta = torch.arccos(torch.clamp(torch.dot(a, b) / (a.norm() * b.norm()), -1.0, 1.0))
    if float(torch.sin(theta)) < 1e-6:
        return (1 - alpha) * z0 + alpha * z1
    return (torch.sin((1 - alpha) * theta) * z0 + torch.sin(alpha * theta) * z1) / torch.sin(theta)
    ### END SOLUTION


# %%
slerp = dc.checks.slerp(slerp)

# %%
g = torch.Generator().manual_seed(9)
za, zb = torch.randn(1, 1, 28, 28, generator=g), torch.randn(1, 1, 28, 28, generator=g)
print(f"‖z_a‖ = {float(za.norm()):.1f}, ‖z_b‖ = {float(zb.norm()):.1f} (√784 = 28)")
print(f"midpoint: straight line ‖(z_a + z_b)/2‖ = {float(((za + zb) / 2).norm()):.1f}, "
      f"slerp ‖slerp(z_a, z_b, 0.5)‖ = {float(slerp(za, zb, 0.5).norm()):.1f}")

# %% [markdown]
# Now invert two real test digits of different classes and decode the interpolated latents with
# η = 0. Interpolating *between* classes needs the model's unconditional mode, so here we call it
# without labels (it then uses its null label) for the inversion and the decoding alike. Top row:
# slerp; bottom row: straight-line interpolation for comparison.

# %%
pick = [0, int((y_real != y_real[0]).nonzero()[0])]              # two digits of different classes
z_pair = dc.ddim_invert(model, s_mnist, x_real[pick], steps=interp_steps)
alphas = np.linspace(0, 1, n_interp)
z_slerp = torch.cat([slerp(z_pair[:1], z_pair[1:], float(a)) for a in alphas])
z_lerp = torch.cat([(1 - float(a)) * z_pair[:1] + float(a) * z_pair[1:] for a in alphas])
decoded = dc.sample(model, s_mnist, torch.cat([z_slerp, z_lerp]), sampler="ddim", steps=interp_steps)
fig = dc.viz.show_grid(decoded.cpu(), nrow=n_interp, size=8)
fig.axes[0].set_title(f"from a real {int(y_real[pick[0]])} to a real {int(y_real[pick[1]])}: "
                      "slerp (top) and straight line (bottom) between their DDIM latents", fontsize=9)
plt.show()
print("latent norms along slerp:", np.round([float(z.norm()) for z in z_slerp], 1))
print("latent norms along lerp: ", np.round([float(z.norm()) for z in z_lerp], 1))

# %% [markdown]
# The ends reproduce the two real digits (inversion), and slerp morphs one into the other through
# digit-like images. The straight line shrinks the latent in the middle (see the norms), and the
# decoded images there typically get thinner, weaker strokes.
#
# ## 7 · Explore: η and the number of steps
#
# The explorer below runs DDIM from the same x_T as section 4. Move η from 0 (deterministic) to 1
# (DDPM) and change the number of steps; each result is cached, and the title shows the number of
# network evaluations (NFE) and the time it took. Without a running kernel you see the static figure
# only.

# %%
explorer = dc.widgets.sampler_explorer(model, s_mnist, x_T_img, samplers=("ddim",), steps=explorer_steps, y=y)
explorer.render()          # the figure for the default settings (also shown without a live kernel)
plt.show()
display(explorer.widget())

# %% [markdown]
# ## 8 · Reproducibility: which numbers decide a sample
#
# A sample is a function of three things: x_T, the sampler's fresh noise z (only when η > 0, or for DDPM),
# and the network's arithmetic. The course seeds each explicitly, and you should too:
#
# - **Generators, not the global seed.** `torch.manual_seed(0)` seeds one global stream that every library
#   call may advance; a `torch.Generator().manual_seed(n)` passed as `generator=` is yours alone. Use one
#   for x_T and a *different* one for the sampler's noise (the same seed for both would make z = x_T: section
#   7's explorer was once broken exactly so, and `dc.sample` now refuses it).
# - **Noise drawn on the CPU.** `dc.sample` draws z on the generator's device (the CPU by default) and then
#   moves it, so the same seeds give the same noise on a laptop, on Colab's GPU and on Apple's MPS.
# - **η = 0 needs no noise at all.** The deterministic sampler ignores the generator: x_T alone decides.
# - **The last bits.** Different devices, batch sizes and library versions can still change the network's
#   output in its last digits (reductions in another order); `torch.use_deterministic_algorithms(True)`
#   removes the run-to-run part on one machine, at some cost in speed.

# %%
def draw(seed_noise, eta, global_seed=None):
    if global_seed is not None:
        torch.manual_seed(global_seed)                 # the global stream: changes nothing below
    return dc.sample(oracle, s, x_T, sampler="ddim", steps=20, eta=eta,
                     generator=torch.Generator().manual_seed(seed_noise))


same = torch.equal(draw(11, 0.5), draw(11, 0.5, global_seed=123))
other = float((draw(11, 0.5) - draw(12, 0.5)).abs().max())
det = float((draw(11, 0.0) - draw(12, 0.0)).abs().max())
print(f"η = 0.5, same noise seed, different global seed: identical = {same}")
print(f"η = 0.5, noise seed 11 vs 12: largest difference {other:.2f} (a different sample)")
print(f"η = 0, noise seed 11 vs 12: largest difference {det:.1e} (x_T alone decides)")

# %% [markdown]
# ## Summary
#
# - DDPM's network only knows the marginals q(x_t | x_0), so any process with those marginals can
#   use it. DDIM's family q_σ (eq. 7) is one: non-Markovian, with a free noise level σ_t.
# - The DDIM update (eq. 12) = predicted x_0 + direction pointing to x_t + σ_t z, with
#   σ_t(η) (eq. 16): η = 1 is DDPM ancestral sampling (σ² = β̃), η = 0 is deterministic.
# - The same formulas hold between any two levels, so DDIM runs on S ≪ T steps. Spacings choose
#   which: leading (DDIM's), trailing (starts at t = T), linspace. The previous level is the next
#   entry of the list — diffusers' DDIMScheduler uses t − T//S, wrong for linspace.
# - With η = 0, x_T determines the image, almost independently of the number of steps; the map can be
#   run backwards (DDIM inversion) with an error that shrinks as the steps get smaller.
# - Interpolate Gaussian latents with slerp: straight lines leave the shell where N(0, I) lives.
#
# **Next:** notebook 05 reads DDIM(η = 0) as Euler's method on the probability-flow ODE and builds
# higher-order samplers (Heun, DPM-Solver++) that need even fewer steps.
#
# **Read more:** Song, Meng & Ermon, *Denoising Diffusion Implicit Models* (ICLR 2021): §3 (eq. 7,
# Lemma 1), eq. 12 and 16, §4.2 (accelerated sampling), §4.3 (the ODE), §5.2–5.4 (consistency,
# interpolation, reconstruction), Table 1 · Lin et al., *Common Diffusion Noise Schedules and Sample
# Steps are Flawed* (WACV 2024), on trailing spacing · Shoemake, *Animating Rotation with Quaternion
# Curves* (SIGGRAPH 1985) and White, *Sampling Generative Networks* (2016) on slerp · Mokady et al.,
# *Null-text Inversion* (CVPR 2023), on inverting guided models.

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
# # 09 · Consistency models: one network evaluation per sample
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json).
#
# The course's MNIST consistency model comes from a separate run of `benchmarks/consistency_mnist.py`
# (about an hour on one CPU core); this notebook derives the method, runs it for real on 2-D data with an
# exact teacher, samples the shipped model and reads the measured comparison.
#
# **You will**
# - see what a *consistency function* is: the map from any point of a probability-flow ODE trajectory to
#   the trajectory's origin, so that **one** evaluation generates a sample (Song, Dhariwal, Chen &
#   Sutskever 2023);
# - build it on the course's ε-model, f = c_skip x̃ + c_out F with the boundary condition f(x, 0) = x, and
#   see why the MNIST model outputs v instead of ε;
# - write the consistency-distillation target (their Algorithm 2) and distil a toy model from the *exact*
#   ODE, then draw where its one step lands against the exact trajectories;
# - write multistep consistency sampling (Algorithm 1): trade a second step for quality;
# - see how easy consistency tuning (ECT, Geng et al. 2024) turns the course's diffusion model into a
#   consistency model with no teacher ODE, and compare the result with progressive distillation (notebook
#   07) and the training-free solvers at 1, 2 and 4 network evaluations.
#
# **Exercises:** 9.1 c_skip and c_out · 9.2 the consistency-distillation target · 9.3 the multistep sampler.
#
# **Prerequisites:** notebook 05 (the probability-flow ODE in σ-space), notebook 06 (FID/KID), notebook 07
# (why a few-step model predicts v, and progressive distillation).

# %%
import copy
import math
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, display

import ddpm_course as dc
from ddpm_course import consistency, distill

device = dc.device()
print(f"device: {device}")
t_start = time.perf_counter()

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1
FIGURES = None         # a folder to save the full-mode figures into (the course keeps them in docs/figures)

# %%
n_data = 20_000                                  # 2-D training points (cheap: the mixture is known exactly)
n_eval = 1_000 if FAST else 5_000                # 2-D points per comparison
fit_iters = 1_000 if FAST else 4_000             # fitting the toy network to the exact denoiser
cd_iters = 600 if FAST else 4_000                # consistency-distillation updates (toy)
tune_updates = 2 if FAST else 20                 # the MNIST tuning demonstration (the real run: 6,400)
n_fid = 0 if FAST else 1_000                     # MNIST samples per live FID (0: none; it needs ~1,000)
torch.manual_seed(0)

s = dc.NoiseSchedule.linear(T=1000)
oracle = dc.toy.MixtureOracle.eight_gaussians(s)  # the exact ε̂ of eight Gaussians (std 0.1, radius 1.5)
SIG_MIN, SIG_MAX = float(s.sigmas[0]), float(s.sigmas[-1])
print(f"σ-space levels of the course schedule: σ(t=0) = {SIG_MIN:.4f} … σ(t=T−1) = {SIG_MAX:.1f}")

# %% [markdown]
# ## 1 · The consistency property
#
# Notebook 05 wrote sampling as the probability-flow ODE in σ-space, x̃ = x/√ᾱ = x_0 + σ ε:
#
# $$\frac{d\tilde x}{d\sigma} = \hat\varepsilon(\tilde x, \sigma),$$
#
# solved from σ_max down to σ = 0. Each starting noise has **one** trajectory, and each trajectory one end
# point. A *consistency function* maps every point of a trajectory to that end point (Song et al. 2023, §3):
#
# $$f(\tilde x_\sigma, \sigma) = f(\tilde x_{\sigma'}, \sigma') \quad\text{for all points of one trajectory},
# \qquad f(\tilde x, 0) = \tilde x .$$
#
# The second condition, the **boundary condition**, pins the function down: at σ = 0 the point *is* the
# end point. If a network learns f, one evaluation at σ_max turns noise into a sample.
#
# Compare it with what the denoiser answers. D(x̃, σ) = E[x_0 | x̃] is the *average* of all the data the
# point could lead to; f is *where this trajectory ends*. Below, the exact ODE of the eight-Gaussians data
# (the exact denoiser, many small steps), with the denoiser's answer drawn at three points of each path:
# at high noise it points to the centre, at low noise to the end.

# %%
x_T = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(1))
x_ode, info = dc.sample(oracle, s, x_T, sampler="dpmpp_2m", steps=200, spacing="trailing", return_info=True)


def ode_error(x):
    """RMS distance of each sample to where the exact probability-flow ODE takes the same x_T."""
    return float((x - x_ode).pow(2).sum(1).mean().sqrt())


sig_path = info.sigmas[:-1]
fig, ax = plt.subplots(figsize=(6, 6))
paths = torch.stack([xt for xt, _ in info.trajectory] + [x_ode])          # VP states along the ODE
for j in range(10):
    ax.plot(paths[:, j, 0], paths[:, j, 1], color="0.6", lw=0.8)
    ax.plot(*x_ode[j].numpy(), "o", color="C0", ms=4)
    for k, col in zip((40, 120, 175), ("C3", "C1", "C2"), strict=True):
        xt, x0_hat = info.trajectory[k]
        ax.annotate("", x0_hat[j].numpy(), xt[j].numpy(), arrowprops=dict(arrowstyle="->", color=col, lw=0.8))
for k, col in zip((40, 120, 175), ("C3", "C1", "C2"), strict=True):
    ax.plot([], [], color=col, label=f"denoiser's x̂_0 at σ = {float(sig_path[k]):.2f}")
ax.plot([], [], "o", color="C0", label="end of the trajectory = f(x̃, σ) at every point")
dc.viz.scatter_2d(oracle.sample(2000, generator=torch.Generator().manual_seed(2))[0], ax=ax, color="0.85",
                  lim=2.5, title="exact ODE trajectories of eight Gaussians")
ax.legend(fontsize=7, loc="lower left")
plt.show()

# %% [markdown]
# ## 2 · The parameterisation and the boundary condition
#
# A network can learn f and still break the boundary condition, unless the condition is built in. Song et
# al. (2023, eq. 5) write
#
# $$f_\theta(\tilde x, \sigma) = c_\text{skip}(\sigma)\, \tilde x + c_\text{out}(\sigma)\, F_\theta(\tilde x, \sigma),
# \qquad c_\text{skip}(0) = 1,\; c_\text{out}(0) = 0,$$
#
# so f_θ(x̃, 0) = x̃ for **every** θ. The course's networks need no new architecture for this: the clean
# prediction x̂_0 of notebook 03 already has this form.
#
# - An **ε-network**: x̂_0 = x̃ − σ ε̂, so c_skip = 1 and c_out = −σ. The consistency function *starts as*
#   the denoiser, exactly, and the boundary condition holds.
# - A **v-network** (notebook 07): the network sees z = √ᾱ x̃ and x̂_0 = √ᾱ z − √(1 − ᾱ) v̂ with
#   ᾱ = 1/(1 + σ²), so c_skip = 1/(1 + σ²) and c_out = −σ/√(1 + σ²).
# - An **x₀-network**: c_skip = 0, c_out = 1. The boundary condition fails: f(x, 0) = F(x, 0) ≠ x.
#
# ### Exercise 9.1 — c_skip and c_out
#
# Write `skip_out(sigma, prediction)`: `sigma` is a tensor of σ-levels (0 allowed), `prediction` is "eps"
# or "v"; return the pair (c_skip, c_out) of tensors shaped like `sigma`.

# %% tags=["exercise"]
def skip_out(sigma, prediction):
    """(c_skip, c_out) of f = c_skip·x̃ + c_out·F for a network that outputs ε ("eps") or v ("v")."""
    ### BEGIN SOLUTION
    if prediction == "eps":
        return torch.ones_like(sigma), -sigma                     # x̂_0 = x̃ − σ ε̂
    return 1 / (1 + sigma**2), -sigma / torch.sqrt(1 + sigma**2)  # ᾱ x̃ − √(1 − ᾱ) v̂
    ### END SOLUTION


# %%
skip_out = dc.checks.skip_out(skip_out)

# %% [markdown]
# Both parameterisations meet the boundary condition, so why does the course's MNIST consistency model
# output v? Look at |c_out|: every error of the network's output reaches the sample multiplied by it.

# %%
sig = torch.logspace(-2, math.log10(SIG_MAX), 200, dtype=torch.float64)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for pred, style in (("eps", "-"), ("v", "--")):
    c_skip, c_out = skip_out(sig, pred)
    axes[0].semilogx(sig, c_skip, style, label=f"{pred}: c_skip")
    axes[1].loglog(sig, c_out.abs(), style, label=f"{pred}: |c_out|")
axes[0].set(xlabel="σ", title="c_skip: how much of x̃ is kept")
axes[1].set(xlabel="σ", title="|c_out|: how much a network error is amplified")
for ax in axes:
    ax.axvline(SIG_MAX, color="0.7", lw=0.8)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"at σ_max = {SIG_MAX:.0f}: an ε-error of 0.01 moves the one-step sample by {SIG_MAX * 0.01:.2f} per pixel "
      f"(the data range is [−1, 1]); a v-error of 0.01 by {SIG_MAX / math.sqrt(1 + SIG_MAX**2) * 0.01:.3f}")

# %% [markdown]
# The package's `consistency.consistency_fn(net, x̃, σ, s, prediction=...)` is this function for any
# course network: it feeds the network z = x̃/√(1 + σ²) and the (float) timestep of σ, as the samplers do.
# With the shipped ε-model it is exactly the denoiser, and at σ = 0 exactly the identity:

# %%
mnist, s_mnist = dc.load_pretrained("mnist")
x_real, _ = dc.data.load_mnist_subset("test")
x0 = x_real[:8].to(device)
sig8 = torch.tensor([0.0, 0.05, 0.3, 1.0, 3.0, 10.0, 50.0, SIG_MAX], dtype=torch.float64)
noisy = x0 + sig8.float().to(device).view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=torch.Generator()
                                                                       .manual_seed(3)).to(device)
with torch.no_grad():
    f_eps = consistency.consistency_fn(mnist, noisy, sig8, s_mnist, prediction="eps")
    ab = 1 / (1 + sig8[1:] ** 2)
    z = noisy[1:] * ab.sqrt().float().to(device).view(-1, 1, 1, 1)
    x0_hat = dc.diffusion.eps_to_x0(z, mnist(z, s_mnist.sigma_to_t(sig8[1:]).float().to(device)), ab)
print(f"f(x̃, 0) − x̃: {float((f_eps[0] - noisy[0]).abs().max()):.1e} (the boundary condition, exactly)")
print(f"f − denoiser x̂_0 at σ > 0: {float((f_eps[1:] - x0_hat).abs().max()):.1e}")
dc.viz.show_row(noisy.clamp(-1, 1).cpu(), labels=[f"σ = {v:.3g}" for v in sig8.tolist()],
                title="x̃ = x_0 + σ ε (shown clipped to [−1, 1])")
dc.viz.show_row(f_eps.clamp(-1, 1).cpu(), labels=[f"σ = {v:.3g}" for v in sig8.tolist()],
                title="f(x̃, σ) of the ε-model = its denoiser x̂_0: the consistency function before tuning")

# %% [markdown]
# At small σ the denoiser already is a good consistency function. At σ ≈ 10 it returns the blurry average
# of section 1, and at σ = 50 and 157 its small ε-errors, multiplied by |c_out| = σ, come back as noise:
# both are what tuning has to fix.
#
# ## 3 · Consistency distillation (Song et al. 2023, Algorithm 2)
#
# Discretise σ into levels 0 = σ_0 < σ_1 < … < σ_N (Karras et al.'s ρ = 7 spacing, N = 18, from σ(t=0)
# to σ(t=T−1)). One update:
#
# 1. draw data x and a pair index n; noise it to the upper level, x̃_{n+1} = x + σ_{n+1} ε;
# 2. the **teacher** takes one ODE step down to σ_n: x̂_n = x̃_{n+1} + (σ_n − σ_{n+1}) ε̂(x̃_{n+1}, σ_{n+1})
#    (an Euler step, that is DDIM, notebook 05);
# 3. the **target** is the target network's answer at the lower point, f_θ⁻(x̂_n, σ_n); at n = 0 it is x̂_0
#    itself (boundary condition);
# 4. descend on d(f_θ(x̃_{n+1}, σ_{n+1}), f_θ⁻(x̂_n, σ_n)) and update θ⁻ ← μ θ⁻ + (1 − μ) θ (an EMA).
#
# Consistency is learnt from the bottom up: at σ_1 the target is nearly exact, and each level passes its
# answer to the next. The teacher's step is the only place the diffusion model enters; with an exact ODE
# teacher, the consistency model can only be limited by its own capacity and the N-level discretisation.
#
# ### Exercise 9.2 — the distillation target
#
# Write `cd_target(f_ema, eps_fn, x_next, sig_next, sig_n)`: `f_ema(x̃, σ)` is the target network's
# consistency function, `eps_fn(x̃, σ)` the teacher's ε̂ in σ-space, `x_next` = x̃_{n+1}; the levels are
# numbers or per-sample tensors (B,). Return f_θ⁻(x̂_n, σ_n) (no gradient flows into a target: the
# decorator `torch.no_grad()` sees to that).

# %% tags=["exercise"]
@torch.no_grad()
def cd_target(f_ema, eps_fn, x_next, sig_next, sig_n):
    """The consistency-distillation target f_ema(x̂_n, σ_n), x̂_n one teacher Euler step from x_next."""
    ### BEGIN SOLUTION
    step = torch.as_tensor(sig_n, dtype=x_next.dtype) - torch.as_tensor(sig_next, dtype=x_next.dtype)
    step = step.reshape(-1, *[1] * (x_next.dim() - 1))              # per sample, broadcast over the rest
    x_hat = x_next + step * eps_fn(x_next, sig_next)                 # dx̃/dσ = ε̂
    return f_ema(x_hat, sig_n)
    ### END SOLUTION


# %%
cd_target = dc.checks.cd_target(cd_target)

# %% [markdown]
# **Distillation for real, on toy data.** The network is a small MLP (`distill.ToyMLP`, predicting v) fitted
# to the exact denoiser, so at the start f_θ is the denoiser. The teacher is the *exact* ODE. The package's
# `consistency.distill_toy` runs the loop above with your target's formula (`consistency.cd_target`), the
# squared ℓ2 distance and μ = 0.95.

# %%
g = torch.Generator().manual_seed(0)
x_data = oracle.sample(n_data, generator=g)[0]
net = distill.ToyMLP()
distill.fit_to_oracle(net, oracle, s, x_data, iters=fit_iters, batch_size=256, generator=g)
denoiser_net = copy.deepcopy(net).eval()
t0 = time.perf_counter()
cm_net, losses = consistency.distill_toy(net, oracle, s, x_data, N=18, iters=cd_iters, batch_size=512, lr=1e-3,
                                         ema_decay=0.95, generator=torch.Generator().manual_seed(1))
print(f"{cd_iters} updates in {time.perf_counter() - t0:.1f} s")

one = dict(sampler="consistency", steps=1, spacing="trailing", prediction="v")
x_den = dc.sample(denoiser_net, s, x_T, **one)          # f at the start: the denoiser's one step
x_cm = dc.sample(cm_net, s, x_T, **one)
fig, axes = plt.subplots(1, 4, figsize=(16, 4))
axes[0].semilogy(np.convolve(losses, np.ones(25) / 25, mode="valid"))
axes[0].set(xlabel="update", title="consistency loss (running mean)")
dc.viz.scatter_2d(x_den, ax=axes[1], lim=2.5, title=f"denoiser, 1 step: ODE error {ode_error(x_den):.2f}")
dc.viz.scatter_2d(x_cm, ax=axes[2], lim=2.5, title=f"consistency model, 1 step: ODE error {ode_error(x_cm):.2f}")
ax = axes[3]
for j in range(14):
    ax.plot(paths[:, j, 0], paths[:, j, 1], color="0.7", lw=0.8)
    ax.annotate("", x_cm[j].numpy(), x_T[j].numpy(), arrowprops=dict(arrowstyle="->", color="C3", lw=0.8))
    ax.plot(*x_ode[j].numpy(), "o", color="C0", ms=3)
ax.plot([], [], color="C3", label="one consistency step")
ax.plot([], [], "o", color="C0", label="end of the exact trajectory")
ax.set(xlim=(-2.5, 2.5), ylim=(-2.5, 2.5), aspect="equal", title="one step vs the exact ODE")
ax.legend(fontsize=7)
plt.tight_layout()
dc.course.save_figure(fig, "09_toy_consistency.png", FIGURES)
plt.show()
print(f"spread around the nearest mixture mean (truth 0.10): denoiser {oracle.spread(x_den):.2f}, "
      f"consistency model {oracle.spread(x_cm):.2f}, exact ODE {oracle.spread(x_ode):.2f}")

# %% [markdown]
# One network evaluation now lands near the end of the exact trajectory that starts at the same noise: the
# network learned the *ODE map*, not the average. Its remaining error is the consistency error accumulated
# over the 18 levels plus the MLP's capacity — with more updates (full mode) it shrinks.
#
# ## 4 · Multistep consistency sampling (Song et al. 2023, Algorithm 1)
#
# One step gives f(x̃_T, σ_max). To spend a second evaluation, add noise back to an intermediate level τ
# and map again:
#
# $$x \leftarrow f(\tilde x_T, \tau_0);\qquad \text{for } n = 1, \dots, N-1:\; \tilde x = x + \tau_n z_n,\;
# z_n \sim \mathcal N(0, I),\; x \leftarrow f(\tilde x, \tau_n)$$
#
# (the paper adds noise of variance τ_n² − ε², with ε = σ_min = 0 here). Each round corrects part of the
# previous answer's error; unlike an ODE solver, the steps do not need to be small.
#
# ### Exercise 9.3 — the multistep sampler
#
# Write `multistep(f, x_T, sigmas, noise)`: `f(x̃, σ)` a consistency function, `x_T` the starting point in
# σ-space at level `sigmas[0]`, `sigmas` the decreasing levels τ_0 > τ_1 > …, `noise` the list of the
# len(sigmas) − 1 draws z_n. Return the final x.

# %% tags=["exercise"]
def multistep(f, x_T, sigmas, noise):
    """Multistep consistency sampling: f at τ_0, then re-noise to each later τ_n with z_n and apply f."""
    ### BEGIN SOLUTION
    x = f(x_T, sigmas[0])
    for tau, z in zip(sigmas[1:], noise, strict=True):
        x = f(x + tau * z, tau)
    return x
    ### END SOLUTION


# %%
multistep = dc.checks.multistep(multistep)

# %% [markdown]
# `dc.sample(model, s, x_T, sampler="consistency", steps=N, spacing=...)` is the same loop on a course
# grid: the levels τ_n are the grid's levels, and the loop runs in the VP variables (re-noising
# z = √ᾱ x + √(1 − ᾱ) z_n is x̃ = x + σ z_n, rescaled). Both give the same samples with the same draws:

# %%
grid = s.grid(4, "trailing")
taus = grid.sigmas[:-1]
gen = torch.Generator().manual_seed(4)
x_pkg = dc.sample(cm_net, s, x_T, sampler="consistency", steps=4, spacing="trailing", prediction="v",
                  generator=gen)
g4 = torch.Generator().manual_seed(4)
draws = [torch.randn(x_T.shape, generator=g4) for _ in range(3)]
x_mine = multistep(lambda x, sg: consistency.consistency_fn(cm_net, x, sg, s, prediction="v"),
                   x_T * math.sqrt(1 + float(taus[0]) ** 2), taus.tolist(), draws)
print(f"{dc.checks.whose(multistep, 'multistep')} vs dc.sample(sampler='consistency'): largest difference "
      f"{float((x_mine - x_pkg).abs().max()):.1e}; levels τ = {[round(v, 2) for v in taus.tolist()]}")

fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, steps in zip(axes, (1, 2, 4), strict=True):
    x = dc.sample(cm_net, s, x_T, sampler="consistency", steps=steps, spacing="trailing", prediction="v",
                  generator=torch.Generator().manual_seed(5))
    dc.viz.scatter_2d(x, ax=ax, lim=2.5, title=f"{steps} step{'s' * (steps > 1)}: spread {oracle.spread(x):.3f}")
plt.tight_layout()
plt.show()

# %% [markdown]
# Multistep sampling is stochastic: samples no longer follow the ODE from their x_T (compare the spread,
# not the ODE error). Whether a second step helps depends on where f is weakest: the levels of a trailing
# grid, τ_1 = σ(t = 499) ≈ 3.4 for two steps, sit where this small model is good.
#
# ## 5 · Easy consistency tuning of the course model (Geng et al. 2024)
#
# Distillation needs a teacher ODE step per update. **Consistency training** (Song et al. 2023,
# Algorithm 3) needs none: it uses the *same* noise at two levels, x̃_t = x + t ε and x̃_r = x + r ε, as
# a one-sample estimate of the ODE step between them. ECT makes it easy by starting from a trained diffusion
# model and *annealing* the gap Δt = t − r:
#
# $$\frac{\Delta t}{t} = \frac{n(t)}{q^{a}}, \qquad n(t) = 1 + k\,\mathrm{sigmoid}(-b t),
# \qquad q = 2,\; k = 8,\; b = 1,$$
#
# at stage a = 0, 1, 2, …. At a = 0 every Δt ≥ t, so r = 0, the target f(x̃_0, 0) = x is the clean data and
# the loss is **plain denoising** — the diffusion model is already the answer (here it also teaches the ε-
# network to output v). Each later stage halves Δt and moves towards consistency. The loss is
# (1/(t − r)) d(f_θ(x̃_t, t), sg f_θ(x̃_r, r)) with the pseudo-Huber metric d(a, b) = √(‖a − b‖² + c²) − c
# (Song & Dhariwal 2023) and a stop-gradient target, no EMA teacher.

# %%
t_grid = torch.logspace(-2, math.log10(SIG_MAX), 200, dtype=torch.float64)
fig, ax = plt.subplots(figsize=(6, 3.5))
for a in range(8):
    r = consistency.ect_r(t_grid, a, SIG_MIN)
    ax.semilogx(t_grid, (t_grid - r) / t_grid, label=f"stage {a}")
ax.set(xlabel="t (σ-level)", ylabel="(t − r)/t", title="ECT: the gap between the two levels, per stage")
ax.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# The tuning loop (`consistency.tune`, with its checkpoints and resume in `finetune.run`) is what
# `benchmarks/consistency_mnist.py` ran for the shipped model. A few updates here show the mechanics:

# %%
tune_dir = Path(tempfile.mkdtemp(prefix="ect_demo_"))
cfg = consistency.TuneConfig(iters=tune_updates, stage_iters=max(1, tune_updates // 2), batch_size=8,
                             checkpoint_every=tune_updates, init="mnist")
start, _ = dc.load_pretrained("mnist", device="cpu")
t0 = time.perf_counter()
consistency.tune(cfg, tune_dir, start, s_mnist, dc.data.load_mnist_subset("train"), device=device,
                 progress=False)
print(f"{tune_updates} ECT updates of batch 8 in {time.perf_counter() - t0:.1f} s; files: "
      f"{sorted(p.name for p in tune_dir.iterdir())}")

# %% [markdown]
# **The shipped run.** `benchmarks/consistency_mnist.py train` ran 8 stages of 800 ECT updates of batch 32
# from the shipped ε-model (about an hour on one CPU core), unconditional, and `stages` measured every
# stage's end (below). The one-step FID fell from 49 (stage 0, plain denoising) to its best after stage 4,
# then *rose* again: as Δt shrinks, the two levels of a pair get closer, the loss weight 1/(t − r) grows,
# and one noise sample per pair becomes too noisy an estimate of the ODE step for batches of 32 (the loss
# climbs from 3 to 15 over the last stages). The shipped `mnist_consistency` is the EMA after stage 4,
# chosen on noise that is not one of the comparison's seeds. Its manifest says how to sample it:

# %%
meta = dc.pretrained.manifest("mnist_consistency")
print("sampling recipe:", meta["sampling"])
print("tuning:", {k: v for k, v in meta["consistency"].items() if k != "init_sha256"})
print(f"shipped: {meta['steps']} updates, {meta['wall_time_s'] / 60:.0f} min of training")
cmodel, _ = dc.load_pretrained("mnist_consistency")
x_T_img = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(6)).to(device)
rows = []
with torch.no_grad():
    for steps in (1, 2, 4):
        recipe = {**meta["sampling"], "steps": steps}
        rows.append(dc.sample(cmodel, s_mnist, x_T_img, generator=torch.Generator().manual_seed(7), **recipe))
fig, axes = plt.subplots(3, 1, figsize=(9, 1.0 * 3))
for ax, x, steps in zip(axes, rows, (1, 2, 4), strict=True):
    dc.viz.show_grid(x.clamp(-1, 1).cpu(), nrow=16, ax=ax, title=f"mnist_consistency, {steps} NFE")
plt.tight_layout()
plt.show()

tuning = dc.course.load_result("consistency_tuning.json")
if tuning is not None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    log = tuning["log"]
    axes[0].semilogy([r["update"] for r in log], [r["loss"] for r in log])
    for a in range(1, 8):
        axes[0].axvline(a * tuning["stage_iters"], color="0.85", lw=0.8)
    axes[0].set(xlabel="update", title="ECT loss (running mean; grey: stage boundaries)")
    for steps in (1, 2):
        pts = [(r["update"], r["fid"]) for r in tuning["stages"] if r["steps"] == steps and r["ema"]]
        axes[1].plot(*zip(*pts, strict=True), "o-", label=f"{steps} NFE")
    axes[1].set(xlabel="update (end of each stage)", ylabel=f"FID (n = {tuning['n']})", yscale="log",
                title="the model after each stage")
    axes[1].legend()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 6 · Equal-NFE comparison: consistency model, distillation, solvers
#
# `benchmarks/consistency_mnist.py compare` samples, from the same noise per seed: the consistency model
# (1, 2, 4 NFE), the progressive-distillation students of notebook 07, DDIM and DPM-Solver++(2M) with
# trailing spacing, and DPM-Solver++ at 10 NFE. FID and KID come from the course's MNIST classifier
# (notebook 06), mean ± standard deviation over 3 seeds of n = 1,000, with the real-vs-real floor.

# %%
import statistics

few = dc.course.load_result("few_step.json")
if few is not None:
    stats = dc.metrics.seed_stats(few["rows"])                  # {(sampler, NFE): mean, std, seeds}
    floor = dc.metrics.seed_stats([{"fid": v} for v in few["real_vs_real_fid"]], by=())[()]
    print(f"n = {few['n']}, seeds {few['seeds']}; real-vs-real floor FID {floor.mean:.2f}")
    for nfe in sorted({k[1] for k in stats}):
        print(f"NFE {nfe}:")
        for k in sorted((k for k in stats if k[1] == nfe), key=lambda k: stats[k].mean):
            print(f"   {k[0]:32s} FID {stats[k].mean:6.2f} ± {stats[k].std:.2f}")

    def compare(a, b):
        return (f"{a[0]} at {a[1]} NFE (FID {stats[a].mean:.2f}) {dc.metrics.verdict(stats[a], stats[b])} "
                f"{b[0]} at {b[1]} NFE (FID {stats[b].mean:.2f})")

    cm1, cm2, cm4 = (("consistency model (ECT)", k) for k in (1, 2, 4))
    solver10 = min((k for k in stats if k[1] == 10), key=lambda k: stats[k].mean)   # the better spacing
    print("\ngoal 1:", compare(cm1, ("progressive distillation", 1)))
    print("goal 2:", compare(cm2, solver10))
    print("        and", compare(cm4, solver10))
    print("the article ('1–10 steps, possibly one at slightly lower quality'):", compare(cm1, cm2))

tau = dc.course.load_result("consistency_tau.json")             # the 2-step level τ_1, swept
if tau is not None:
    print(f"\n2 NFE against the intermediate level τ_1 (selection noise, n = {tau['n']}): "
          + ", ".join(f"τ_1 = {k}: {v:.2f}" for k, v in tau["sweep_fid"].items()))
    print(f"with τ_1 = {tau['best_tau1']} on the comparison's seeds: FID "
          f"{statistics.mean(tau['fid_at_best'].values()):.2f} (trailing's τ_1 = 3.42 above)")

# %%
for name in ("09_few_step.png", "09_few_step_samples.png"):
    path = dc.course.course_file("docs", "figures", name)
    if path is not None:
        display(Image(filename=str(path), width=760 if name == "09_few_step.png" else 520))

# %% [markdown]
# **Reading the comparison.** The verdict lines above are the measurement; a difference within two standard
# deviations of the seeds is called a tie. The last two lines tune what Algorithm 1 leaves open, the level
# τ_1 of the second step: `dc.sample`'s trailing grid puts it at 3.42, and the sweep (chosen on noise that
# is not one of the seeds) shows how much a tuned level buys. Three things to keep in mind:
#
# - *What each method had.* The distilled students had a teacher (8 DDIM steps) and 1,600 updates of batch
#   32 in 25 minutes; the consistency model had no teacher at all and 4,000 updates of the same batch size
#   in 40 minutes (each needs one extra forward pass for its target). Both are short CPU runs: the papers'
#   runs are several hundred times longer, and ECT's later stages, which failed here, need larger batches.
# - *Where consistency models win.* At 1–2 NFE the training-free solvers cannot follow curved trajectories
#   in one or two jumps (section 1), while a consistency model was trained for exactly that jump.
# - *Where they do not.* A model tuned for one step spends its capacity at σ_max; by 10 NFE DPM-Solver++ with
#   the original model is hard to beat. On CIFAR-10 the papers report consistency distillation 3.55 at 1
#   step and 2.93 at 2 (Song et al. 2023), ECT 3.60 at 1 and 2.11 at 2 (Geng et al. 2024), against
#   progressive distillation's 8.34 at 1 step and DPM-Solver's 4.70 at 10 NFE.
#
# In full mode, a live check of the shipped model at the first seed's noise:

# %%
if n_fid:
    x_T_fid = torch.randn(n_fid, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for steps in (1, 2):
        with torch.no_grad():
            x = torch.cat([dc.sample(cmodel, s_mnist, xb.to(device), generator=torch.Generator().manual_seed(10_000),
                                     **{**meta["sampling"], "steps": steps}).cpu() for xb in x_T_fid.split(500)])
        print(f"mnist_consistency, {steps} NFE: FID {dc.metrics.fid(x.clamp(-1, 1)):.2f} (n = {n_fid})")
else:
    print("fast mode: no live FID (it needs ~1,000 samples); the measured FIDs are the table above")

# %% [markdown]
# ## Summary
#
# - A consistency function maps every point of a probability-flow trajectory to its end point; with the
#   boundary condition f(x, 0) = x built into f = c_skip x̃ + c_out F, one evaluation at σ_max generates.
# - The course's ε-model is already such an f (c_skip = 1, c_out = −σ: the denoiser), but |c_out| = σ
#   amplifies its errors 157× at σ_max; the tuned model outputs v, whose |c_out| ≤ 1.
# - Consistency distillation (Algorithm 2) trains f_θ(x̃_{n+1}, σ_{n+1}) to match an EMA target at the
#   point one teacher ODE step lower; on toy data with the exact ODE, one step lands near the trajectory's
#   end where the denoiser returns the average.
# - Multistep sampling (Algorithm 1) alternates f and re-noising; it is `dc.sample(sampler="consistency")`.
# - ECT tunes a diffusion model into a consistency model with no teacher: same-noise pairs at two levels,
#   the gap halved stage by stage from plain denoising. Section 6 prints how the result compares at equal
#   NFE with progressive distillation and the solvers.
#
# **Next:** notebook 10 straightens the trajectories themselves: flow matching and rectified flow.
#
# **Read more:** Song, Dhariwal, Chen & Sutskever, *Consistency Models* (ICML 2023): §3, eq. 5,
# Algorithms 1–3 · Song & Dhariwal, *Improved Techniques for Training Consistency Models* (2023), the
# pseudo-Huber metric and dropping the EMA teacher · Geng et al., *Consistency Models Made Easy* (2024),
# ECT · Lu & Song, *Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models* (2024), sCM ·
# Kim et al., *Consistency Trajectory Models* (2023).

# %%
print(f"notebook run time: {time.perf_counter() - t_start:.0f} s ({'fast' if FAST else 'full'} mode, {device})")

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
# # 07 · Few-step generation: progressive distillation
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json).
#
# The course's distilled MNIST students come from a separate run of `benchmarks/distill_mnist.py` (reduced
# recipe: about 25 minutes on one CPU core; the paper-scale recipe is a GPU job of about 15–30 minutes,
# estimated); this notebook runs its mechanics and reads the measured results.
#
# **You will**
# - see why even a *perfect* denoiser cannot sample in 1–4 steps with an ODE solver, and what a model
#   trained for few steps has to learn instead;
# - derive progressive distillation (Salimans & Ho 2022, Algorithm 2): a student learns to do in **one**
#   DDIM step what its teacher does in **two**, then becomes the teacher of the next round, halving the
#   number of steps each time;
# - write the two-step DDIM teacher, the distillation target x̃ and the loss weighting;
# - see why the student must not predict ε at few steps, and use the v-parameterisation instead;
# - distil for real on 2-D toy data with an exact teacher, from 128 steps down to 1, and compare the
#   1-, 2- and 4-step students with DDIM and DPM-Solver++ at the same number of network evaluations (NFE);
# - run the same machinery on the course's MNIST model, and read honestly where the MNIST comparison
#   stands.
#
# **Exercises:** 7.1 the two-step DDIM teacher · 7.2 the distillation target x̃ · 7.3 the loss weight.
#
# **Prerequisites:** notebook 04 (the DDIM step), notebook 05 (the probability-flow ODE, DPM-Solver++),
# notebook 06 (FID/KID) for the last section.

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
from ddpm_course import distill

device = dc.device()
print(f"device: {device}")
t_start = time.perf_counter()

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1
FIGURES = None         # a folder to save the full-mode figures into (the course keeps them in docs/figures)

# %%
n_data = 20_000                                  # 2-D training points (cheap: the mixture is known exactly)
n_eval = 1_000 if FAST else 5_000                # 2-D points per sampler comparison
fit_iters = 1_000 if FAST else 4_000             # fitting the toy network to the exact denoiser
toy_teacher_steps = 32 if FAST else 128          # the first teacher's DDIM steps; rounds halve it down to 1
toy_iters = 150 if FAST else 600                 # updates per distillation round (toy)
mnist_iters = 2 if FAST else 60                  # updates of the MNIST demonstration round (8 -> 4 steps)
mnist_batch = 4 if FAST else 32
n_fid = 0 if FAST else 1_000                     # MNIST samples per FID (0: no FID; it needs ~1,000)
torch.manual_seed(0)

s = dc.NoiseSchedule.linear(T=1000)
oracle = dc.toy.MixtureOracle.eight_gaussians(s)  # the exact ε̂ of eight Gaussians (std 0.1, radius 1.5)


# %% [markdown]
# ## 1 · Why distil? Even a perfect denoiser needs many steps
#
# Notebook 05 ended with the best training-free samplers: DPM-Solver++(2M) gives good MNIST digits in
# 10–20 network evaluations. Below ~5 they fall apart, and the reason is not the network. Take the
# *exact* denoiser of the eight-Gaussians mixture and sample with 1, 2 and 4 steps from the same noise:

# %%
x_T = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(1))
x_ode = dc.sample(oracle, s, x_T, sampler="dpmpp_2m", steps=200, spacing="trailing")   # ≈ the exact ODE map


def ode_error(x):
    """RMS distance of each sample to where the exact probability-flow ODE takes the same x_T."""
    return float((x - x_ode).pow(2).sum(1).mean().sqrt())


spread = oracle.spread     # RMS distance per coordinate to the nearest mixture mean (the truth is 0.1)

fig, axes = plt.subplots(2, 4, figsize=(12, 6))
for row, sampler in enumerate(("ddim", "dpmpp_2m")):
    for col, steps in enumerate((1, 2, 4)):
        x = dc.sample(oracle, s, x_T, sampler=sampler, steps=steps, spacing="trailing")
        dc.viz.scatter_2d(x, ax=axes[row, col], lim=2.5,
                          title=f"{sampler}, {steps} step{'s' * (steps > 1)}: ODE error {ode_error(x):.2f}")
    dc.viz.scatter_2d(x_ode, ax=axes[row, 3], lim=2.5, title="the exact ODE map (200 steps)")
plt.tight_layout()
plt.show()

# %% [markdown]
# With one step, DDIM returns the denoiser's output at t = T: **E[x_0 | x_T]**, the average of all
# the data the noise could lead to — the centre of the circle. The exact ODE, started from the same
# x_T, ends on one of the eight modes. Both are "right": the denoiser answers the question "what is
# x_0 on average?", while a sampler needs "where does *this* trajectory end?". A solver bridges the two
# by taking many small steps, over which the average is a good guide. DPM-Solver++ is smarter about
# the path but cannot escape this with 1–4 evaluations.
#
# **Distillation** trains a network to answer the second question directly: its one step must land
# where the many-step sampler lands. The price is training; the reward is 1–4 NFE per sample. Two
# families exist: *progressive distillation* (Salimans & Ho 2022, this notebook) and *consistency
# distillation* (Song et al. 2023, which trains f(x_t, t) = x_0 along each ODE trajectory directly).
#
# ## 2 · Progressive distillation (Salimans & Ho 2022, Algorithm 2)
#
# **Notation.** The paper writes z_t = α_t x + σ_t ε with α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t) (the course's
# x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε in other letters). *Careful:* this σ_t is not the σ-space σ of notebook 05,
# which is σ_t/α_t.
#
# **DDIM with a clean prediction.** A deterministic DDIM step (DDIM eq. 12 with η = 0) from level t to
# a less noisy level s can be written with the model's clean prediction x̂ = x̂(z_t) alone (Salimans &
# Ho §2): the noise the step keeps is ε̂ = (z_t − α_t x̂)/σ_t, so
#
# $$z_s = \alpha_s\,\hat x + \frac{\sigma_s}{\sigma_t}\,\big(z_t - \alpha_t\,\hat x\big).$$
#
# **One round.** The student takes N steps on a grid t_0 > t_1 > … > t_N (where ᾱ = 1); the teacher takes
# 2N steps, the same levels with a midpoint t' between each pair. For each training example:
#
# 1. draw x from the data, a level t = t_i (i uniform) and ε; form z_t = α_t x + σ_t ε (Alg. 2, lines 4–6);
# 2. run **two** DDIM steps of the teacher, t → t' → t'' (lines 7–8), asking the teacher for a new x̂
#    at the midpoint;
# 3. compute the target x̃: the clean prediction with which **one** DDIM step from z_t lands exactly on
#    the teacher's z_t'' (line 9);
# 4. minimise w(λ_t) ‖x̃ − x̂_θ(z_t)‖² over the student's weights θ (line 11; λ_t = log SNR).
#
# When the round has converged, the student becomes the teacher, N halves, and a new student starts as a
# **copy** of it (lines 2, 14–15). Each round only asks the network to merge two steps into one — a small
# change — so the student starts close to the answer and learns quickly.
#
# The grids: the student's N-step grid must be every other level of the teacher's 2N-step grid. The
# course's `"trailing"` spacing (notebook 04) nests for powers of two and starts at t = T, where x_T ~ N(0, I)
# lives (a 1-step `"leading"` grid would start at t = 0!). `distill.halving(s, N)` lists the levels:

# %%
lv = distill.halving(s, 4)
print("student timesteps t_i   ", (lv.t + 1).tolist(), "then ᾱ = 1")
print("teacher midpoints t'    ", (lv.t_mid + 1).tolist())
print("ᾱ at t, t', t''         ")
for i in range(4):
    print(f"   step {i}: {float(lv.ab_t[i]):.5f} → {float(lv.ab_mid[i]):.5f} → {float(lv.ab_next[i]):.5f}")

# %% [markdown]
# ### Exercise 7.1 — the two-step DDIM teacher
#
# Write `two_ddim_steps(x0_fn, z_t, ab_t, ab_mid, ab_next)`: `ab_t`, `ab_mid`, `ab_next` are the Python
# floats ᾱ_t > … (ᾱ_t < ᾱ_t' < ᾱ_t'' ≤ 1), and `x0_fn(z, k)` returns the teacher's clean prediction for
# the state z at level k (k = 0: ᾱ_t, k = 1: ᾱ_t'). Take the DDIM step above from ᾱ_t to ᾱ_t', ask the
# teacher again at the new point, take the step from ᾱ_t' to ᾱ_t'', and return z_t''.

# %% tags=["exercise"]
def two_ddim_steps(x0_fn, z_t, ab_t, ab_mid, ab_next):
    """Two deterministic DDIM steps t → t' → t'' of a teacher with clean prediction x0_fn(z, k)."""
    ### BEGIN SOLUTION
    def step(z, x0, a_from, a_to):                                 # z_s = α_s x̂ + (σ_s/σ_t)(z_t − α_t x̂)
        return math.sqrt(a_to) * x0 + math.sqrt((1 - a_to) / (1 - a_from)) * (z - math.sqrt(a_from) * x0)

    z_mid = step(z_t, x0_fn(z_t, 0), ab_t, ab_mid)
    return step(z_mid, x0_fn(z_mid, 1), ab_mid, ab_next)
    ### END SOLUTION


# %%
two_ddim_steps = dc.checks.two_ddim_steps(two_ddim_steps)

# %% [markdown]
# With the exact denoiser as the teacher, two steps of your function are two steps of the package's DDIM
# sampler. Here is step i = 1 of the 4-step student: the teacher's levels t, t' and t''.

# %%
i = 1
levels = (float(lv.ab_t[i]), float(lv.ab_mid[i]), float(lv.ab_next[i]))
ts = (int(lv.t[i]), int(lv.t_mid[i]))
z_t = torch.randn(500, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 1.2


def oracle_x0(z, k):
    """The exact teacher's clean prediction at level k: x̂ = (z − σ ε̂)/α (DDIM eq. 9)."""
    eps = oracle(z, torch.full((len(z),), ts[k]))
    return (z - math.sqrt(1 - levels[k]) * eps) / math.sqrt(levels[k])


z_two = two_ddim_steps(oracle_x0, z_t, *levels)
grid = dc.schedule.Grid(ts=torch.tensor(ts), alpha_bars=torch.tensor(levels, dtype=torch.float64), discrete=True)
by_sampler = dc.samplers.ddim_sample(dc.samplers.EpsModel(oracle, grid, z_t), z_t, grid)
print(f"{dc.checks.whose(two_ddim_steps, 'two_ddim_steps')} vs the package's DDIM on the same two levels: largest "
      f"difference "
      f"{float((z_two - by_sampler).abs().max()):.1e}")

# %% [markdown]
# ### The target x̃
#
# The student will take one DDIM step from z_t straight to ᾱ_t'': z_t'' = α_t'' x̃ + (σ_t''/σ_t)(z_t − α_t x̃).
# We want it to land where the teacher landed, so solve for x̃ (Salimans & Ho, Algorithm 2, line 9):
#
# $$\tilde x = \frac{z_{t''} - \frac{\sigma_{t''}}{\sigma_t}\, z_t}{\alpha_{t''} - \frac{\sigma_{t''}}{\sigma_t}\,\alpha_t}.$$
#
# At the last step ᾱ_t'' = 1 (σ_t'' = 0) this is simply x̃ = z_t'': the student must output the teacher's
# final sample.
#
# ### Exercise 7.2 — the distillation target
#
# Write `distill_target(z_t, z_next, ab_t, ab_next)` with z_next = z_t'' and `ab_t`, `ab_next` floats.

# %% tags=["exercise"]
def distill_target(z_t, z_next, ab_t, ab_next):
    """x̃ such that one DDIM step from z_t (level ᾱ_t) with clean prediction x̃ lands on z_next (ᾱ_t'')."""
    ### BEGIN SOLUTION
    ratio = math.sqrt((1 - ab_next) / (1 - ab_t))                # σ_t'' / σ_t
    return (z_next - ratio * z_t) / (math.sqrt(ab_next) - ratio * math.sqrt(ab_t))
    ### END SOLUTION


# %%
distill_target = dc.checks.distill_target(distill_target)

# %% [markdown]
# Two facts to check numerically. (a) One DDIM step with x̃ reproduces the teacher's two steps. (b) x̃ is a
# **weighted average** of the teacher's two clean predictions, x̃ = (a x̂(z_t') + b x̂(z_t))/(a + b) with
# a = α_t'' − σ_t'' α_t'/σ_t' and b = σ_t''(α_t'/σ_t' − α_t/σ_t), both ≥ 0 (expand the two steps to see
# it). So the target is as well behaved as the teacher, although the formula divides by a small number.

# %%
x_tilde = distill_target(z_t, z_two, levels[0], levels[2])
one_step = distill.ddim_step(z_t, x_tilde, levels[0], levels[2])
print(f"(a) one step with x̃ vs the teacher's two steps: largest difference {float((one_step - z_two).abs().max()):.1e}")
al = [math.sqrt(v) for v in levels]
sg = [math.sqrt(1 - v) for v in levels]
a = al[2] - sg[2] * al[1] / sg[1]
b = sg[2] * (al[1] / sg[1] - al[0] / sg[0])
z_mid = distill.ddim_step(z_t, oracle_x0(z_t, 0), levels[0], levels[1])
average = (a * oracle_x0(z_mid, 1) + b * oracle_x0(z_t, 0)) / (a + b)
print(f"(b) weights a = {a:.4f}, b = {b:.4f}; x̃ vs the weighted average: largest difference "
      f"{float((x_tilde - average).abs().max()):.1e}")

fig, ax = plt.subplots(figsize=(5, 5))
for j in range(12):
    path = torch.stack([z_t[j], z_mid[j], z_two[j]]).numpy()
    ax.plot(path[:, 0], path[:, 1], "-o", color="C0", ms=3, lw=1, label="teacher: two steps" if j == 0 else None)
    ax.annotate("", z_two[j].numpy(), z_t[j].numpy(), arrowprops=dict(arrowstyle="->", color="C3", lw=1))
    ax.plot(*x_tilde[j].numpy(), "x", color="C3", ms=5, label="target x̃" if j == 0 else None)
    ax.plot(*oracle_x0(z_t, 0)[j].numpy(), "+", color="0.4", ms=6, label="teacher's x̂(z_t)" if j == 0 else None)
ax.plot([], [], color="C3", label="student: one step")
ax.set(title=f"step {i} of the 4-step student (t = {ts[0] + 1} → t'' = {int(lv.t[i + 1]) + 1})", aspect="equal")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3 · What the student predicts, and how the loss is weighted
#
# **Not ε.** The course's U-Net predicts ε, and x̂ = (z_t − σ_t ε̂)/α_t. At t = T on our schedule
# α_T = √ᾱ_T ≈ 0.0064, so any error in ε̂ is multiplied by 1/α_T ≈ 157 in x̂. Over many small steps this
# does not matter (the next step keeps only a fraction α of x̂), but a 1-step sampler returns x̂ itself.
# Salimans & Ho (§4) therefore let the student predict x, or both, or
#
# $$v = \alpha_t\,\varepsilon - \sigma_t\,x, \qquad \hat x = \alpha_t z_t - \sigma_t \hat v,$$
#
# which is well conditioned at every noise level. Our students predict v (the samplers accept
# `prediction="v"`). They start as copies of the teacher's weights, so the first round must also teach
# the network its new output; that is why it gets more updates.

# %%
ab_T = float(s.alpha_bars[-1])
print(f"ᾱ_T = {ab_T:.2e}: an error δ in ε̂ becomes {math.sqrt(1 - ab_T) / math.sqrt(ab_T):.0f} δ in x̂ "
      f"(ε-prediction) but {math.sqrt(1 - ab_T):.3f} δ in x̂ with v-prediction")

# %% [markdown]
# **The weighting.** The loss is written in x-space, w(λ_t) ‖x̃ − x̂_θ‖², with SNR = α_t²/σ_t² = ᾱ/(1 − ᾱ).
# Since ‖x − x̂‖² = ‖ε − ε̂‖²/SNR, the weight w = SNR gives DDPM's ε-loss, which puts almost no weight on
# x̂ at high noise — exactly where a few-step student needs it. Salimans & Ho (§4) propose
#
# - **truncated SNR**: w = max(SNR, 1), the larger of the x-loss and the ε-loss;
# - **SNR + 1**: w = SNR + 1, which equals the v-loss ‖ṽ − v̂‖² exactly (since x = α_t z_t − σ_t v).
#
# Both stay ≥ 1 at high noise. The package's default is SNR + 1.
#
# ### Exercise 7.3 — the loss weight
#
# Write `loss_weight(ab, kind)`: `ab` a tensor of ᾱ values, `kind` either `"truncated_snr"` or
# `"snr_plus_one"`; return w of the same shape and dtype (any other kind: raise a `ValueError`).

# %% tags=["exercise"]
def loss_weight(ab, kind):
    """w(λ_t) of the x-space loss: max(SNR, 1) ("truncated_snr") or SNR + 1 ("snr_plus_one")."""
    snr = ab / (1 - ab)
    ### BEGIN SOLUTION
    if kind == "truncated_snr":
        return torch.maximum(snr, torch.ones_like(snr))
    if kind == "snr_plus_one":
        return snr + 1
    raise ValueError(f"kind must be 'truncated_snr' or 'snr_plus_one', got {kind!r}")
    ### END SOLUTION


# %%
loss_weight = dc.checks.loss_weight(loss_weight)

# %%
t_axis = np.arange(1, s.T + 1)
fig, ax = plt.subplots(figsize=(6, 3.2))
snr = s.alpha_bars / (1 - s.alpha_bars)
ax.plot(t_axis, snr, label="SNR (the ε-loss)", color="0.6", ls="--")
ax.plot(t_axis, loss_weight(s.alpha_bars, "truncated_snr"), label="max(SNR, 1)")
ax.plot(t_axis, loss_weight(s.alpha_bars, "snr_plus_one"), label="SNR + 1 (the v-loss)", ls=":")
ax.set(yscale="log", xlabel="t", ylabel="weight of ‖x̃ − x̂‖²", title="loss weightings (linear schedule)")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · Distillation for real, on toy data
#
# Everything above is in `ddpm_course.distill`: `two_ddim_steps`, `distill_target`, `loss_weight`,
# `distill_loss` (one batch of Algorithm 2) and `distill(...)`, the loop over rounds with checkpoints
# and resume.
#
# **The trained model.** On 2-D data, a small MLP (`distill.ToyMLP`, predicting v) plays the part of the
# course's U-Net. We train it to reproduce the exact denoiser of the mixture (`distill.fit_to_oracle`:
# regression on the oracle's E[ε | x_t], so it takes seconds, not minutes).
#
# **The rounds.** The first teacher is the **exact** denoiser with `toy_teacher_steps` DDIM steps; the
# first student starts from the MLP; every later teacher is the previous student. Rounds halve the steps
# down to 1. Each round saves its student, so we can compare all of them.

# %%
g = torch.Generator().manual_seed(0)
x_data = oracle.sample(n_data, generator=g)[0]
net = distill.ToyMLP()
t0 = time.perf_counter()
losses = distill.fit_to_oracle(net, oracle, s, x_data, iters=fit_iters, batch_size=256, generator=g)
net.eval()
print(f"fitted the MLP in {time.perf_counter() - t0:.1f} s; loss {np.mean(losses[:20]):.4f} → "
      f"{np.mean(losses[-20:]):.4f}")
x = dc.sample(net, s, x_T, sampler="ddim", steps=toy_teacher_steps, spacing="trailing", prediction="v")
print(f"the MLP itself, DDIM with {toy_teacher_steps} steps: ODE error {ode_error(x):.3f}, spread {spread(x):.3f}")

# %%
cfg = distill.DistillConfig(teacher_steps=toy_teacher_steps, final_steps=1, iters=toy_iters,
                            first_round_iters=2 * toy_iters, batch_size=512, lr=2e-3, ema_decay=0.99,
                            teacher_prediction="eps", student_prediction="v", checkpoint_every=10 * toy_iters)
print("rounds (student steps):", cfg.rounds())
toy_run = Path(tempfile.mkdtemp(prefix="distill_toy_"))
t0 = time.perf_counter()
distill.distill(cfg, toy_run, oracle, s, (x_data, None), student=net, device=torch.device("cpu"))
toy_seconds = time.perf_counter() - t0
print(f"{len(cfg.rounds())} rounds in {toy_seconds:.1f} s")

# %% [markdown]
# **Students versus solvers at equal NFE.** Every student samples with its own number of DDIM steps
# (1 NFE each). We compare them with DDIM and DPM-Solver++(2M) at the same NFE — both given the *exact*
# denoiser, the best a training-free solver can ever get — by the ODE error (distance to where the exact
# ODE takes the same x_T) and the spread around the modes (truth 0.1).

# %%
students = {}
for steps in cfg.rounds():
    model, n_steps, prediction = distill.load_student(distill.student_path(toy_run, steps), net=net)
    students[steps] = dc.sample(model, s, x_T, sampler="ddim", steps=n_steps, spacing="trailing",
                                prediction=prediction)
solvers = {name: {n: dc.sample(oracle, s, x_T, sampler=name, steps=n, spacing="trailing") for n in cfg.rounds()}
           for name in ("ddim", "dpmpp_2m")}
print(" NFE   student ODE error  spread   |  DDIM (exact) error  spread  |  DPM-Solver++ (exact) error  spread")
for n in sorted(cfg.rounds()):
    st, dd, dp = students[n], solvers["ddim"][n], solvers["dpmpp_2m"][n]
    print(f"{n:4d}   {ode_error(st):17.3f}  {spread(st):6.3f}   |  {ode_error(dd):18.3f}  {spread(dd):6.3f}  |  "
          f"{ode_error(dp):26.3f}  {spread(dp):6.3f}")

fig = plt.figure(figsize=(13, 7.5))
ax = fig.add_subplot(2, 4, (1, 5))
nfes = sorted(cfg.rounds())
ax.plot(nfes, [ode_error(students[n]) for n in nfes], "o-", label="distilled students")
ax.plot(nfes, [ode_error(solvers["ddim"][n]) for n in nfes], "s--", label="DDIM, exact denoiser")
ax.plot(nfes, [ode_error(solvers["dpmpp_2m"][n]) for n in nfes], "^--", label="DPM-Solver++(2M), exact")
ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="RMS distance to the exact ODE endpoint",
       title="eight Gaussians: error at equal NFE")
ax.set_xticks(nfes, [str(n) for n in nfes])
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
for col, n in enumerate((1, 2, 4)):
    dc.viz.scatter_2d(students[n], ax=fig.add_subplot(2, 4, 2 + col), lim=2.5, title=f"student, {n} NFE")
    dc.viz.scatter_2d(solvers["dpmpp_2m"][n], ax=fig.add_subplot(2, 4, 6 + col), lim=2.5, color="C2",
                      title=f"DPM-Solver++ (exact), {n} NFE")
plt.tight_layout()
dc.course.save_figure(fig, "07_toy_students.png", FIGURES, dpi=90)
plt.show()

# %% [markdown]
# **Reading the result.** At 1, 2 and 4 NFE the students end close to the exact ODE endpoints and on
# the modes, where the solvers — with a perfect denoiser — are still far off. The students' error is
# roughly flat across NFE: it is the *accumulated* error of imperfect rounds (each student only
# approximates its teacher, and that error is inherited), not a discretisation error. More updates per
# round, or a bigger network, lower it; at high NFE the solvers win, as they should.
#
# Points that land between two modes are the price of a smooth network: the exact ODE map x_T → x_0 jumps
# where the basins of two modes meet, and an MLP cannot jump.
#
# ## 5 · The same machinery on MNIST
#
# The teacher is the course's class-conditional U-Net (it predicts ε). The student is a copy of it that
# predicts v. Labels pass through: teacher and student see the same label, and with probability
# `label_dropout` = 0.5 it is the null label, so one student serves both `model(x, t, y)` and `model(x, t)`.
# (Guidance is not distilled: the student matches the unguided teacher; Meng et al. 2023 distil guided
# models.)
#
# First, one batch of Algorithm 2 by hand: real digits x, a level of the 4-step student, the teacher's
# two DDIM steps, the target x̃, and what the freshly copied student predicts.

# %%
model, s_mnist = dc.load_pretrained("mnist")
model = model.to(device).eval()
x_real, y_real = dc.data.load_mnist_subset("train")
x4, y4 = x_real[:6].to(device), y_real[:6].to(device)
lv4 = distill.halving(s_mnist, 4)
i = 1                                                          # the second of the student's 4 steps
ab3 = [float(v[i]) for v in (lv4.ab_t, lv4.ab_mid, lv4.ab_next)]
t3 = [torch.full((6,), int(v[i]), device=device) for v in (lv4.t, lv4.t_mid)]
eps = torch.randn(x4.shape, generator=torch.Generator().manual_seed(3)).to(device)
z4 = math.sqrt(ab3[0]) * x4 + math.sqrt(1 - ab3[0]) * eps     # z_t = α_t x + σ_t ε


@torch.no_grad()
def teacher_x0(z, k):
    return distill.predict_x0(model(z, t3[k], y4), z, ab3[k], "eps")


with torch.no_grad():
    z4_two = two_ddim_steps(teacher_x0, z4, *ab3)
    x4_tilde = distill_target(z4, z4_two, ab3[0], ab3[2])
    student0 = model                                          # the copy starts with the teacher's weights …
    x4_student = distill.predict_x0(student0(z4, t3[0], y4), z4, ab3[0], "v")   # … but its output is read as v
rows = torch.cat([x4, z4.clamp(-1, 1), z4_two.clamp(-1, 1), x4_tilde.clamp(-1, 1), x4_student.clamp(-1, 1)])
fig = dc.viz.show_grid(rows.cpu(), nrow=6, size=6)
fig.axes[0].set_title(f"rows: x; z_t (t = {int(lv4.t[i]) + 1}); the teacher's z_t'' after two steps (t'' = "
                      f"{int(lv4.t[i + 1]) + 1}); the target x̃; the new student's x̂ (ε-weights read as v)",
                      fontsize=7)
plt.show()

# %% [markdown]
# The target x̃ is a clean-looking digit: one step towards it from z_t reaches the teacher's z_t''. The
# new student's x̂ is wrong — its weights were trained to output ε, and we now read the output as v —
# which is what the longer first round fixes. Now `distill.distill` runs a real round, 8 teacher steps →
# a 4-step student, with `mnist_iters` updates of batch `mnist_batch`. That is the mechanics only:
# a usable student needs thousands of updates per round (the GPU command below).

# %%
mnist_run = Path(tempfile.mkdtemp(prefix="distill_mnist_"))
cfg_m = distill.DistillConfig(teacher_steps=8, final_steps=4, iters=mnist_iters, batch_size=mnist_batch,
                              checkpoint_every=max(1, mnist_iters), teacher="mnist")
distill.distill(cfg_m, mnist_run, model, s_mnist, (x_real, y_real), device=device)
print(open(mnist_run / "log.jsonl").read().strip().splitlines()[-1])

# what one update costs here (after a warm-up update), and what the full recipe would cost at that speed
student = copy.deepcopy(model).train()
opt = torch.optim.Adam(student.parameters(), lr=1e-5)
g_time = torch.Generator().manual_seed(5)
for k in range(3):
    if k == 1:
        t0 = time.perf_counter()
    loss = distill.distill_loss(student, model, x_real[:mnist_batch].to(device), lv4, y=y_real[:mnist_batch].to(device),
                                generator=g_time)
    opt.zero_grad()
    loss.backward()
    opt.step()
sec_per_update = (time.perf_counter() - t0) / 2
full = distill.DistillConfig(teacher_steps=256, final_steps=1, iters=3000, first_round_iters=6000)
n_full = sum(full.iters_in_round(r) for r in range(len(full.rounds())))
print(f"{sec_per_update:.2f} s per update of batch {mnist_batch} here ({device}); the full run "
      f"({len(full.rounds())} rounds, {n_full:,} updates of batch 128) would take about "
      f"{n_full * sec_per_update * 128 / mnist_batch / 3600:.0f} hours at this speed")
del student, opt

# %% [markdown]
# **The full run** (the paper-scale recipe, a GPU job; resumable — interrupt it and add `--resume`):
#
# ```
# python benchmarks/distill_mnist.py train --out runs/distill_mnist          # 256 → 128 → … → 1 steps
# python benchmarks/distill_mnist.py evaluate --out runs/distill_mnist --n 2000
# python benchmarks/distill_mnist.py export --out runs/distill_mnist --steps 4 --name mnist_distilled_4
# ```
#
# **The course's run.** The machine that made the course had no GPU, so the course ran a reduced recipe
# that a 2-core CPU finishes in hours (preset `cpu`; `docs/results_distill.md` has the details):
#
# ```
# python benchmarks/distill_mnist.py train --out runs/distill_cpu --preset cpu --precision fp32
# python benchmarks/distill_mnist.py evaluate --out runs/distill_cpu --n 1000
# ```
#
# It differs from the full recipe in two ways that matter. The **first teacher** is DDIM with 8 steps, not
# 256, and the rounds go 8 → 4 → 2 → 1: every student imitates its teacher, so a student of this run can
# at best approach what DDIM-8 does with the teacher network. And it **trains far less**: 1,600 updates of
# batch 32 in all (800 in the first round, which also has to turn the ε-network into a v-network, then 400
# per round) on one CPU core, against the full recipe's thousands of updates of batch 128 per round on a
# GPU.
#
# ## 6 · Does a few-step student beat DPM-Solver++ at the same NFE?
#
# On the toy data, yes, clearly (section 4), against solvers that even had the exact denoiser.
#
# On MNIST the answer is a measurement, kept with the course in `benchmarks/results/distill_mnist.json`
# (written by `evaluate` above). The next cell prints it, one block per NFE: the distilled student (its own
# DDIM steps, 1 NFE each) and the *teacher network* with DDIM and with DPM-Solver++(2M) on two step
# spacings, `trailing` and `karras` — all from the same x_T, unconditional, n samples each, scored with the
# course's FID and KID (notebook 06).
#
# **How to read it.** Lower is better for both. No sampler can go below the real-vs-real floor in the
# header (n real digits against the test set), so compare distances above it. KID's ± is its spread over
# random subsets, and FID at n = 1,000 also moves between draws of x_T (notebook 06 measured by how much):
# a gap of that size is a tie. The row "the first teacher" is the sampler this run distilled from, DDIM with
# 8 NFE — the quality the students can at best approach. The last lines are the verdict: at each NFE, the
# student's FID minus the best FID of the training-free samplers at the same NFE (negative: the student
# wins), in FID points and as a fraction of that best FID.

# %%
bench, samples_png = distill.measured_results()     # looked up from this folder upwards
if bench is None:
    print("benchmarks/results/distill_mnist.json is not here (e.g. a pip install without the course "
          "repository): there is no measured MNIST comparison to show; the live demonstration below still runs.")
else:
    print(f"benchmarks/results/distill_mnist.json: n = {bench['n']} samples per row (seed {bench['seed']}); "
          f"real-vs-real FID floor {bench['real_vs_real_fid']:.2f}")
    if recipe := bench.get("distillation"):
        seen = sum(recipe["updates_per_round"]) * recipe["batch_size"]
        print(f"the run: first teacher DDIM with {recipe['teacher_steps']} steps; students with {recipe['rounds']} "
              f"steps after {recipe['updates_per_round']} updates of batch {recipe['batch_size']} ({seen:,} "
              f"examples, 1/{n_full * full.batch_size / seen:.0f} of the full recipe's); "
              f"{recipe['wall_time_s'] / 3600:.1f} h of training")
    print(f"\n{'NFE':>4}  {'sampler':45s} {'FID':>7}   KID ×1e3")
    for nfe in sorted({r["nfe"] for r in bench["rows"]}):
        for r in sorted((r for r in bench["rows"] if r["nfe"] == nfe), key=lambda r: "student" not in r["sampler"]):
            print(f"{nfe:>4}  {r['sampler']:45s} {r['fid']:7.2f}   {1e3 * r['kid']:6.2f} ± {1e3 * r['kid_std']:.2f}")
    print()
    verdicts = {c.nfe: c for c in distill.compare_rows(bench["rows"])}
    for nfe in (1, 2, 4):
        if (c := verdicts.get(nfe)) is None:
            print(f"NFE {nfe}: no distilled student was measured at this NFE")
        elif abs(c.delta) < 0.005:
            print(f"NFE {nfe}: the student ties with {c.best_other_label} (FID {c.student_fid:.2f})")
        else:
            print(f"NFE {nfe}: the student (FID {c.student_fid:.2f}) {'beats' if c.delta < 0 else 'trails'} the "
                  f"best training-free sampler, {c.best_other_label} (FID {c.best_other_fid:.2f}), by "
                  f"{abs(c.delta):.2f} FID ({abs(c.relative):.0%} {'lower' if c.delta < 0 else 'higher'})")

# %% [markdown]
# The same comparison live, on a few samples (and FID on 1,000 in full mode): the teacher's DDIM and
# DPM-Solver++(2M) at NFE = 1, 2, 4, and every distilled student shipped with the package
# (`mnist_distilled_*` in `dc.pretrained.available()`; its manifest says how to sample it, and which
# shipped model taught it: `mnist`, the course model of every other notebook, whose sha256 the manifest
# records).

# %%
shipped = sorted(n for n in dc.pretrained.available() if n.startswith("mnist_distilled"))
print("shipped distilled students:", shipped or "none")
teacher_name = dc.pretrained.manifest(shipped[0])["distillation"]["teacher"] if shipped else "mnist"
teacher = dc.load_pretrained(teacher_name, device=device)[0] if teacher_name != "mnist" else model
print(f"their teacher: {teacher_name!r}")
x_T_img = torch.randn(max(n_fid, 10), 1, 28, 28, generator=torch.Generator().manual_seed(4))


def generate(m, **kw):
    return torch.cat([dc.sample(m, s_mnist, xb.to(device), **kw).cpu() for xb in x_T_img.split(250)]).clamp(-1, 1)


live, grid_rows = [], []
for nfe in (1, 2, 4):
    runs = [("teacher DDIM (trailing)", teacher, dict(sampler="ddim", steps=nfe, spacing="trailing")),
            ("teacher DPM-Solver++(2M) (karras)", teacher,
             dict(sampler="dpmpp_2m", steps=nfe, spacing="karras"))]
    for name in shipped:
        how = dc.pretrained.manifest(name).get("sampling", {})
        if how.get("steps") == nfe:
            runs.append((f"student {name}", dc.load_pretrained(name, device=device)[0],
                         dict(sampler=how["sampler"], steps=nfe, spacing=how["spacing"],
                              prediction=how["prediction"])))
    for label, m, kw in runs:
        imgs = generate(m, **kw)
        grid_rows.append(imgs[:10])
        live.append((nfe, label, dc.metrics.fid(imgs) if n_fid else float("nan")))
fig = dc.viz.show_grid(torch.cat(grid_rows), nrow=10, size=6)
fig.axes[0].set_title("rows: " + "; ".join(f"{lab} @ {n}" for n, lab, _ in live), fontsize=6)
plt.show()
if n_fid:
    print(f"FID, n = {n_fid} (real-vs-real floor {dc.metrics.real_baseline(n_fid):.2f}):")
    for nfe, label, fid in live:
        print(f"  NFE {nfe}: {label:36s} {fid:7.2f}")
else:
    print("fast mode: no FID (it needs ~1,000 samples per sampler); the measured FIDs are the table above")

# %%
if samples_png is not None:
    print("the samples of the measured run (10 per sampler and NFE, the first of the same x_T):")
    display(Image(filename=str(samples_png), width=640))
else:
    print("docs/figures/07_mnist_students.png is not here: `benchmarks/distill_mnist.py evaluate` draws it.")

# %% [markdown]
# **Where it stands.** The verdict lines above are the measurement. Read them with three facts in mind:
#
# - *The ceiling.* A student imitates its teacher, so the chain of rounds can at best reproduce the first
#   teacher's samples (the "first teacher" row, DDIM with 8 steps). Compare each student with that row:
#   how much of the teacher's quality survived the halving rounds?
# - *Where the students win.* At NFE ≤ 4 the training-free samplers must cross the whole noise range in a
#   few large steps, and their error is the discretisation error of section 2. The students were trained
#   for exactly those steps, so they win even after a short run — the wider the gap, the fewer the steps.
#   Karras spacing, excellent at 20+ steps, wastes a few-step budget at low noise (its grid ends at σ_min
#   before the last jump to 0): trailing spacing is the fair baseline at NFE ≤ 4.
# - *Where they do not.* No student can beat its first teacher, and the quality-versus-NFE study of their
#   teacher (`benchmarks/results/quality_vs_nfe.md`) shows it with 10 NFE of DPM-Solver++ (FID 2.27) doing
#   better than DDIM-8 and so better than any student of this run. At 4 NFE its own DPM-Solver++(2M) with
#   trailing spacing already ties with the 4-step student: distillation pays at 1–2 steps. A longer run
#   from a many-step teacher (the `gpu` preset, 256 steps) lowers the ceiling; the CPU run trades that for
#   an affordable 25 minutes. FID at n = 1,000 is also noisy: differences of a few tenths are ties.
#
# What to expect at full scale, from the papers: on CIFAR-10, progressive distillation reaches FID 3.0 with
# 4 steps (Salimans & Ho 2022) and consistency distillation 3.55 with 1 step and 2.93 with 2 (Song et al.
# 2023), while the training-free DPM-Solver needs 10 NFE for FID 4.70 (Lu et al. 2022). At NFE ≤ 4 a
# well-distilled student beats the solvers by a wide margin; by 10–20 NFE the solvers catch up, with no
# training at all. The GPU recipe of section 5 is the way to test that on MNIST.
#
# ## Summary
#
# - A denoiser, even the exact one, answers "what is x_0 on average?"; a 1–4-step sampler needs "where
#   does this trajectory end?". ODE solvers need many steps to turn the first into the second;
#   distillation trains a network to answer the second directly.
# - Progressive distillation (Salimans & Ho 2022, Algorithm 2): the student learns to match **two** DDIM
#   steps of its teacher with **one**: target x̃ = (z_t'' − (σ_t''/σ_t) z_t)/(α_t'' − (σ_t''/σ_t) α_t), a
#   weighted average of the teacher's two predictions. Then the student becomes the teacher, N halves.
# - The student starts as a copy of the teacher, predicts v (ε-prediction amplifies errors by 1/α_t at
#   t = T), and is trained with the truncated-SNR or SNR + 1 weight (= the v-loss).
# - On toy data with an exact teacher, 1–4-step students beat DDIM and DPM-Solver++ at the same NFE even
#   though the solvers used the exact denoiser; the students' error is inherited from round to round.
# - On MNIST the answer is measured: section 6 prints the course's run (a reduced CPU distillation from a
#   DDIM-8 teacher) against DDIM and DPM-Solver++ at each NFE from `benchmarks/results/distill_mnist.json`,
#   with the verdict per NFE; `docs/results_distill.md` describes the run. The paper-scale recipe is a GPU
#   job (`benchmarks/distill_mnist.py`).
#
# **Next:** notebook 08 adds class labels and classifier-free guidance.
#
# **Read more:** Salimans & Ho, *Progressive Distillation for Fast Sampling of Diffusion Models* (ICLR
# 2022): §2 (DDIM with x̂), §3 and Algorithm 2, §4 (parameterisations and weightings) ·
# Luhman & Luhman, *Knowledge Distillation in Iterative Generative Models* (2021), the one-shot
# predecessor · Meng et al., *On Distillation of Guided Diffusion Models* (CVPR 2023) · Song, Dhariwal,
# Chen & Sutskever, *Consistency Models* (ICML 2023), consistency distillation and training · Lu et al.,
# *DPM-Solver++* (2022), the training-free baseline.

# %%
print(f"notebook run time: {time.perf_counter() - t_start:.0f} s ({'fast' if FAST else 'full'} mode, {device})")

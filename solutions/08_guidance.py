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
# # 08 · Class-conditional generation and classifier-free guidance
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json). Nothing trains here: the GPU only
# speeds up the U-Net calls.
#
# **You will**
# - see how one network is both a conditional model ε_θ(x_t, t, y) and an unconditional one ε_θ(x_t, t, ∅),
#   thanks to *label dropout* during training, and write that dropout;
# - derive guidance from Bayes' rule: **classifier guidance** (Dhariwal & Nichol 2021) and
#   **classifier-free guidance** (Ho & Salimans 2021, eq. 6), and untangle the two conventions for its
#   scale (w in the paper, s = 1 + w in `dc.sample` and diffusers);
# - watch guidance act *exactly* on 2-D data with a closed-form class-conditional denoiser;
# - generate MNIST digits at several guidance scales, count what guidance costs (2 NFE per step), and
#   explore it interactively;
# - **measure** the trade-off: accuracy on the requested digits goes up with the scale, diversity and
#   FID get worse.
#
# **Exercises:** 8.1 label dropout · 8.2 the guided ε · 8.3 accuracy on the requested digits.
#
# **Prerequisites:** notebooks 03–05 (samplers, ε̂ and the score) and 06 (FID/KID with a digit classifier);
# Bayes' rule p(y | x) = p(x | y) p(y) / p(x).

# %%
import math
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Image, Markdown, display

import ddpm_course as dc
from ddpm_course.toy import MixtureOracle

device = dc.device()
print(f"device: {device}")
t_start = time.perf_counter()

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1
FIGURES = None         # a folder to save the full-mode figures into (the course keeps them in docs/figures)

# %%
n_points = 600 if FAST else 3000                    # 2-D points per guidance scale (exact denoiser: cheap)
grid_scales = (0.0, 1.0, 3.0, 7.5)                  # guidance scales in the MNIST grid
grid_steps = 10 if FAST else 20                     # DPM-Solver++(2M) steps for the grid
n_digits = 5 if FAST else 10                        # columns of the grid: digits 0, 1, …
explorer_steps = (10,) if FAST else (5, 10, 20)
explorer_scales = (1.0, 2.0, 3.0, 5.0, 7.5)
sweep_scales = (1.0, 5.0) if FAST else (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5)
sweep_n = 20 if FAST else 500                       # samples per scale in the live sweep (10 per digit min)
sweep_steps = 10                                    # DPM-Solver++(2M) steps in the sweep

# %% [markdown]
# ## 1 · One network, two models: conditioning and label dropout
#
# A **class-conditional** diffusion model predicts the noise given the class too, ε_θ(x_t, t, y), and so
# learns the conditional distributions p(x | y): sample with y = 3 and you get a 3. The course U-Net
# (`ddpm_course/unet.py`) takes the label through an embedding table: row y is a learned vector added to the
# time embedding, which every ResBlock receives. The table has **11** rows for 10 digits: row 10 is the
# **null label** ∅, "no label given" (`model.null_label`).
#
# The null label is what makes classifier-free guidance possible (Ho & Salimans 2021, **Algorithm 1**,
# "joint training"): during training each label is replaced by ∅ with probability p_uncond (the course
# model used p = 0.2, `label_dropout` in `ddpm_course/train.py`). The network then learns the conditional
# model on 80 % of the examples and the *unconditional* one, ε_θ(x_t, t, ∅) for p(x), on the other 20 %
# — one set of weights, two models, no extra cost.
#
# ### Exercise 8.1 — label dropout
#
# Write `drop_labels(y, p, null_label, generator)`: `y` is a LongTensor of labels (B,). Draw one uniform
# number per label, u = `torch.rand(len(y), generator=generator)` (exactly this call, so that your
# result can be compared with the reference), and return a **new** tensor equal to `y` except where
# u < p, where it holds `null_label`. Do not modify `y` itself (the training loop still needs it).

# %% tags=["exercise"]
def drop_labels(y, p, null_label, generator):
    """Replace each label by `null_label` with probability p (classifier-free guidance training)."""
    ### BEGIN SOLUTION
    drop = torch.rand(len(y), generator=generator) < p
    return torch.where(drop, torch.full_like(y, null_label), y)
    ### END SOLUTION


# %%
drop_labels = dc.checks.drop_labels(drop_labels)

# %% [markdown]
# What the network sees in one training batch of 128 digits (∅ is label 10):

# %%
model, s = dc.load_pretrained("mnist")            # EMA weights, eval mode, on dc.device()
print(f"label embedding table: {tuple(model.label_emb.weight.shape)} (10 digits + the null label "
      f"{model.null_label})")
batch = torch.arange(128) % 10
dropped = drop_labels(batch, 0.1, model.null_label, torch.Generator().manual_seed(0))
print("labels fed to the network:", " ".join("∅" if v == model.null_label else str(int(v))
                                               for v in dropped[:40]), "…")
print(f"dropped: {(dropped == model.null_label).sum().item()} of {len(batch)} "
      f"(expected 12.8 on average)")

# %% [markdown]
# ## 2 · Guidance from Bayes' rule
#
# Notebook 03 (§5) related the noise prediction to the **score** of the noisy data distribution:
# ∇ log p_t(x_t) = −ε̂(x_t, t)/√(1 − ᾱ_t). Bayes' rule, p(x_t | y) = p(y | x_t) p(x_t)/p(y), splits the
# conditional score into the unconditional one plus a classifier's gradient (p(y) does not depend on x_t):
#
# $$\nabla \log p_t(x_t \mid y) = \nabla \log p_t(x_t) + \nabla \log p_t(y \mid x_t).$$
#
# **Guidance** turns up the second term with a scale s ≥ 1, sampling with the score of
# p_t(x_t) p_t(y | x_t)^s instead — a distribution that favours images the classifier is *very* sure of.
#
# **Classifier guidance** (Dhariwal & Nichol 2021, *Diffusion Models Beat GANs on Image Synthesis*, §4 and
# **Algorithms 1–2**) trains a separate classifier p_φ(y | x_t) on *noisy* images and, in DDIM form,
# replaces ε̂ by ε̂ − s √(1 − ᾱ_t) ∇ log p_φ(y | x_t). It works, but needs a second network trained on every
# noise level, and its gradients can be "adversarial" (they raise the classifier's confidence without
# making the image better). We do not build one here.
#
# **Classifier-free guidance** (Ho & Salimans 2021, *Classifier-Free Diffusion Guidance*) gets the classifier
# for free from the model of §1: by Bayes again, ∇ log p_t(y | x_t) = ∇ log p_t(x_t | y) − ∇ log p_t(x_t),
# and in terms of noise predictions that is −(ε_c − ε_∅)/√(1 − ᾱ_t), with ε_c = ε_θ(x_t, t, y) and
# ε_∅ = ε_θ(x_t, t, ∅). Adding w times this implicit classifier's gradient to the conditional score gives
# the paper's **eq. 6**:
#
# $$\tilde\varepsilon = (1 + w)\,\varepsilon_c - w\,\varepsilon_\varnothing
#   \qquad\text{(Ho \& Salimans, eq. 6; } w = 0\text{: plain conditional sampling).}$$
#
# **Two conventions.** `dc.sample(..., y=y, guidance_scale=s)` — like diffusers' `guidance_scale` and the
# Imagen paper (Saharia et al. 2022) — writes the same thing as a step from ε_∅ towards ε_c, *extrapolated*:
#
# $$\tilde\varepsilon = \varepsilon_\varnothing + s\,(\varepsilon_c - \varepsilon_\varnothing),
#   \qquad s = 1 + w .$$
#
# | dc.sample `guidance_scale` s | Ho & Salimans w | what it samples |
# |---|---|---|
# | 0 | −1 | the unconditional model p(x) (the label is ignored) |
# | 1 | 0 | the conditional model p(x \| y), no guidance |
# | 3 | 2 | guided: the score of p_t(x) p_t(y \| x)^3 ∝ p_t(x \| y) p_t(y \| x)^2 |
# | 7.5 | 6.5 | strongly guided |
#
# In general the guided score is that of p_t(x_t)^{1−s} p_t(x_t | y)^s ∝ p_t(x_t | y) p_t(y | x_t)^{s−1}
# (check: take ∇ log and substitute the scores). Whenever you read a guidance scale, first find out which
# convention it is in: "w = 1" in the paper is "guidance_scale = 2" in diffusers.
#
# ### Exercise 8.2 — the guided ε
#
# Write `guided_eps(eps_cond, eps_null, scale)`: two tensors of the same shape and the scale s in
# `dc.sample`'s convention; return ε̃. Your function is also run inside a whole sampler and compared with
# `dc.sample(..., guidance_scale=3)`.

# %% tags=["exercise"]
def guided_eps(eps_cond, eps_null, scale):
    """Classifier-free guidance: ε̃ = ε_∅ + s (ε_c − ε_∅), s = 1 + w (Ho & Salimans 2021, eq. 6)."""
    ### BEGIN SOLUTION
    return eps_null + scale * (eps_cond - eps_null)
    ### END SOLUTION


# %%
guided_eps = dc.checks.guided_eps(guided_eps)

# %% [markdown]
# ## 3 · Guidance, exactly: three overlapping classes in 2-D
#
# To see what guidance does without any model error, take data whose class-conditional denoiser is a
# formula: three Gaussian classes in the plane that overlap (`dc.toy.MixtureOracle`; called with a label
# y ∈ {0, 1, 2} it is the exact ε for that class, with the null label 3 the exact ε of the whole mixture).
# We sample every class at several scales from the **same** x_T, guiding with *your* `guided_eps`
# (`dc.checks.GuidedWith` calls the model twice, with y and with ∅, and combines the two with your function).

# %%
s2d = dc.NoiseSchedule.linear()
classes = MixtureOracle(s2d, means=[[-1.0, 0.0], [1.0, 0.0], [0.0, 1.2]], stds=[0.6, 0.6, 0.6])
y2d = torch.arange(n_points) % 3
x_T_2d = torch.randn(n_points, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
toy_scales = (0.0, 1.0, 3.0, 7.0)
toy = {sc: dc.sample(dc.checks.GuidedWith(classes, guided_eps, sc), s2d, x_T_2d, sampler="dpmpp_2m", steps=25,
                     spacing="karras", y=y2d) for sc in toy_scales}

fig, axes = plt.subplots(1, len(toy_scales), figsize=(3.3 * len(toy_scales), 3.4))
for ax, sc in zip(axes, toy_scales, strict=True):
    for k in range(3):
        dc.viz.scatter_2d(toy[sc][y2d == k], ax=ax, color=f"C{k}", s=3, lim=3)
    ax.set_title(f"s = {sc:g} (w = {sc - 1:g})", fontsize=10)
axes[0].set_ylabel("colour = requested class")
plt.tight_layout()
plt.show()

# %% [markdown]
# At s = 0 the labels are ignored: every colour is spread over the whole mixture. At s = 1 each class is
# its own Gaussian, overlapping its neighbours. As s grows, the samples of each class are pushed **away
# from the other classes** — towards where a classifier would be most certain — and squeezed together.
# Two numbers tell the story: the *accuracy* of the exact Bayes classifier p(k | x_0) on the requested
# classes (fidelity), and the spread of each class compared with its true standard deviation 0.6
# (diversity):

# %%
def bayes_labels(x0):
    """The most probable class of each clean point under the true mixture (posterior at σ = 0)."""
    return classes.posterior_weights(x0, torch.zeros(len(x0), dtype=torch.float64)).argmax(1)


print(f"{'s':>5} {'accuracy':>9} {'spread / 0.6':>13}")
for sc, x0 in toy.items():
    acc = (bayes_labels(x0) == y2d).double().mean().item()
    spread = torch.stack([x0[y2d == k].std(0).mean() for k in range(3)]).mean().item()
    print(f"{sc:>5g} {acc:>9.1%} {spread / 0.6:>13.2f}")

# %% [markdown]
# (s = 1 does not reach 100 %: the classes overlap, so even perfect samples of class 0 sometimes fall
# where class 1 is more likely. That is the Bayes error.)
#
# **What distribution is this?** At every noise level the guided ε is the score of
# p_t(x | y) p_t(y | x)^{s−1}. The figure compares class 0's guided samples with the same tilt applied to the
# *clean* distribution, p(x | 0) p(0 | x)^{s−1} (contours). They are close but not equal: the tilted noisy
# densities are not the noisy versions of the tilted clean one, so guided sampling is a heuristic that
# *sharpens*, not an exact sampler of a known target.

# %%
def log_normal(x, mean, std):
    return -((x - mean) ** 2).sum(-1) / (2 * std**2) - math.log(2 * math.pi * std**2)


lin = torch.linspace(-3, 3, 200, dtype=torch.float64)
pts = torch.stack(torch.meshgrid(lin, lin, indexing="xy"), -1).reshape(-1, 2)
log_pk = torch.stack([log_normal(pts, m, 0.6) for m in classes.means], 1)      # log p(x | k), (N, 3)
log_p = torch.logsumexp(log_pk + math.log(1 / 3), 1)                            # log p(x)
fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, sc in zip(axes, (3.0, 7.0), strict=True):
    tilted = log_pk[:, 0] + (sc - 1) * (log_pk[:, 0] + math.log(1 / 3) - log_p)  # log p(x|0) p(0|x)^(s−1)
    ax.contour(lin, lin, (tilted - tilted.max()).exp().reshape(200, 200), levels=5, cmap="Greys")
    dc.viz.scatter_2d(toy[sc][y2d == 0], ax=ax, color="C0", s=3, lim=3)
    ax.set_title(f"class 0 at s = {sc:g}: samples vs p(x|0) p(0|x)^{sc - 1:g}", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4 · Guided MNIST digits
#
# Now the course's U-Net (`dc.load_pretrained("mnist")`, loaded in §1; trained with label dropout 0.2).
# Each column below asks for one digit and starts from one fixed x_T; each row is a guidance scale.
# DPM-Solver++(2M) on the Karras grid (notebook 05).

# %%
x_T = torch.randn(n_digits, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
labels = (torch.arange(n_digits) % 10).to(device)
grid_runs = {}
for scale in grid_scales:
    t0 = time.perf_counter()
    x0, info = dc.sample(model, s, x_T, sampler="dpmpp_2m", steps=grid_steps, spacing="karras", y=labels,
                         guidance_scale=scale, return_info=True)
    grid_runs[scale] = (x0.cpu(), info.nfe, time.perf_counter() - t0)

fig, axes = plt.subplots(len(grid_scales), 1, figsize=(1.1 * n_digits, 1.35 * len(grid_scales)))
for ax, (scale, (x0, nfe, _)) in zip(axes, grid_runs.items(), strict=True):
    dc.viz.show_grid(x0.clamp(-1, 1), nrow=n_digits, ax=ax)
    ax.set_title(f"s = {scale:g} (w = {scale - 1:g}):  NFE {nfe} per sample", fontsize=9)
fig.suptitle(f"requested digits: {labels.tolist()}; DPM-Solver++(2M), {grid_steps} steps", fontsize=10)
plt.tight_layout()
plt.show()
dc.course.save_figure(fig, "08_guidance_grid.png", FIGURES, dpi=80)

# %%
print(f"{'s':>5} {'NFE/sample':>10} {'seconds':>8} {'pixels outside [-1, 1]':>23} {'classifier says':>16}")
for scale, (x0, nfe, sec) in grid_runs.items():
    outside = (x0.abs() > 1).double().mean().item()
    said = dc.metrics.classify(x0.clamp(-1, 1)).tolist()
    print(f"{scale:>5g} {nfe:>10} {sec:>8.2f} {outside:>23.1%} {str(said):>16}")

# %% [markdown]
# Read the rows top to bottom:
#
# - **s = 0** is the unconditional model: the digits ignore the request (the classifier's labels show which
#   digits came out).
# - **s = 1** is the conditional model: the requested digits, in the variety of handwriting the data has.
# - **s = 3, 7.5**: bolder, more prototypical strokes; at high scales the images saturate — more pixels end
#   up outside [−1, 1] before clipping, because the extrapolated ε̃ overshoots. (Large-scale guidance is
#   why Imagen introduced dynamic thresholding and why DPM-Solver++ was designed with guided sampling in
#   mind: Saharia et al. 2022; Lu et al. 2022b.)
#
# **The cost.** Every guided step needs *both* ε_c and ε_∅, so NFE doubles: 2 per step instead of 1.
# `dc.sample` runs the two branches as one batch of 2B images through the network (the labels y and ∅
# side by side), so on a GPU that is not yet busy the wall time grows by less than 2×; on a CPU it is close
# to 2×. Compare the *seconds* column of s = 1 with the others above.
#
# A corollary: s = 0 needs only ε_∅, so the cheap way to sample unconditionally is to pass the null label
# as y with s = 1 (one NFE per step). Same result:

# %%
x_uncond, info = dc.sample(model, s, x_T, sampler="dpmpp_2m", steps=grid_steps, spacing="karras",
                           y=torch.full_like(labels, model.null_label), return_info=True)
print(f"max |(y = ∅, s = 1) − (s = 0)| = {(x_uncond.cpu() - grid_runs[0.0][0]).abs().max().item():.1e}, "
      f"NFE {info.nfe} instead of {grid_runs[0.0][1]}")

# %% [markdown]
# ## 5 · Explore: the guidance scale
#
# The explorer samples the same digits from one fixed x_T with the sampler, number of steps and guidance
# scale you pick (the *guidance* dropdown is `guidance_scale`, our s; the title shows it next to the NFE
# and the wall time). It starts unguided (s = 1) and uses the package's default `leading` step spacing. The
# static figure shows that first setting, so the notebook reads well without a running kernel.

# %%
explorer = dc.widgets.sampler_explorer(model, s, x_T, samplers=("dpmpp_2m", "ddim"), steps=explorer_steps,
                                       y=labels, guidance_scales=explorer_scales)
fig = explorer.render()                           # the default setting; the widget starts there too (cached)
plt.show()
display(explorer.widget())

# %% [markdown]
# ## 6 · Measuring the trade-off: fidelity against diversity
#
# Guidance buys **fidelity** (samples that clearly are what was asked for) with **diversity**. Two
# measurements from notebook 06 make this concrete, using the course's digit classifier
# (`dc.metrics`):
#
# - **accuracy on the requested digits**: the fraction of samples the classifier labels as the digit
#   they were asked to be — fidelity to the condition;
# - **FID** against real digits of all classes — the distance of the whole sample set from the data
#   distribution. It penalises lost diversity as much as bad images.
#
# Ho & Salimans (2021) saw the same trade-off on ImageNet: their best FID came at a small guidance
# (w ≈ 0.1–0.3), while the Inception Score, which rewards confident, classifiable images, kept rising with w.
#
# ### Exercise 8.3 — accuracy on the requested digits
#
# Write `per_digit_accuracy(predicted, requested, num_classes=10)`: two LongTensors (N,) of predicted and
# requested digits. Return a float64 tensor (num_classes,) whose entry k is the fraction of samples
# *requested as k* that were *predicted as k*, and NaN for a digit that was never requested. (Hint:
# `torch.bincount(..., minlength=num_classes)` counts; 0/0 in floating point is NaN.)

# %% tags=["exercise"]
def per_digit_accuracy(predicted, requested, num_classes=10):
    """Accuracy on the requested digits, one entry per digit (NaN if never requested)."""
    ### BEGIN SOLUTION
    correct = requested[predicted == requested]
    hits = torch.bincount(correct, minlength=num_classes).double()
    return hits / torch.bincount(requested, minlength=num_classes).double()
    ### END SOLUTION


# %%
per_digit_accuracy = dc.checks.per_digit_accuracy(per_digit_accuracy)

# %% [markdown]
# The sweep: n samples per scale, balanced over the digits, the **same** x_T and labels at every scale
# (so differences come from the scale, not from the noise), DPM-Solver++(2M) with a fixed number of steps.
# In fast mode it is a tiny slice (n = 20 — far too few for FID, which is then dominated by its
# small-sample bias; accuracy is still informative); in full mode n = 500 per scale.

# %%
def guidance_sweep(scales, n, steps, seed=0):
    """Accuracy, worst digit, FID, KID and Inception Score of n balanced samples per guidance scale."""
    x_T = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    y = torch.arange(n) % 10
    rows = []
    for scale in scales:
        x0 = torch.cat([dc.sample(model, s, xb.to(device), sampler="dpmpp_2m", steps=steps, spacing="karras",
                                  y=yb.to(device), guidance_scale=scale).clamp(-1, 1).cpu()
                        for xb, yb in zip(x_T.split(250), y.split(250), strict=True)])
        acc = per_digit_accuracy(dc.metrics.classify(x0), y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                # fid() warns about small n: we say so above
            fid = dc.metrics.fid(x0)
        rows.append({"scale": scale, "accuracy": acc.nanmean().item(), "worst": acc.min().item(), "fid": fid,
                     "kid": dc.metrics.kid(x0).mean, "is": dc.metrics.inception_score(x0, splits=2).mean})
    return rows


t0 = time.perf_counter()
sweep = guidance_sweep(sweep_scales, sweep_n, sweep_steps)
print(f"n = {sweep_n} per scale, DPM-Solver++(2M) {sweep_steps} steps ({time.perf_counter() - t0:.0f} s)")
print(f"{'s':>5} {'accuracy':>9} {'worst digit':>12} {'FID':>8} {'KID ×1e3':>9} {'IS':>6}")
for r in sweep:
    print(f"{r['scale']:>5g} {r['accuracy']:>9.1%} {r['worst']:>12.0%} {r['fid']:>8.2f} {1e3 * r['kid']:>9.2f} "
          f"{r['is']:>6.2f}")

# %% [markdown]
# The course's full-size run of this sweep (`benchmarks/guidance_sweep.py`: n = 500 per scale, which also
# reports a within-class diversity measure and the time per sample) is kept with the course; here is its
# table and plot when the notebook can find them:

# %%
table = dc.course.course_file("benchmarks", "results", "guidance_sweep.md")
plot = dc.course.course_file("benchmarks", "results", "guidance_sweep.png")
if table is None or plot is None:
    print("(benchmarks/results/guidance_sweep.md/.png are not available here: run "
          "`python benchmarks/guidance_sweep.py` in the course repository to make them)")
else:
    display(Markdown("\n".join(line for line in table.read_text().splitlines() if not line.startswith("!["))))
    display(Image(filename=str(plot)))

# %%
if not FAST:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([r["scale"] for r in sweep], [100 * r["accuracy"] for r in sweep], "o-", label="accuracy (%)")
    ax.set(xlabel="guidance scale s (w = s − 1)", ylabel="accuracy on requested digits (%)", ylim=(0, 102))
    ax2 = ax.twinx()
    ax2.plot([r["scale"] for r in sweep], [r["fid"] for r in sweep], "s--", color="C3", label="FID")
    ax2.set_ylabel("FID", color="C3")
    ax.set_title(f"this run: n = {sweep_n} per scale, {sweep_steps} steps", fontsize=9)
    ax.grid(alpha=0.3)
    plt.tight_layout()
    plt.show()
    dc.course.save_figure(fig, "08_tradeoff.png", FIGURES, dpi=90)
elif (path := dc.course.course_file("docs", "figures", "08_guidance_grid.png")) is not None:
    print("the full-mode grid (10 digits, 20 steps):")
    display(Image(filename=str(path)))

# %% [markdown]
# How to read it: accuracy climbs from chance (≈ 10 % at s = 0, where the label is ignored) to nearly
# every digit right at s ≥ 2 or so. On the course model FID is lowest at s = 1 — plain conditional
# sampling, which here is close to the real-vs-real floor — and **rises** with every step of guidance
# beyond it, as the samples of each digit collapse towards a few prototypical shapes (the diversity column
# of the benchmark table falls). The unconditional model (s = 0) has a far higher FID than the conditional
# one: it sees only a fifth of the training examples (label dropout 0.2) and must also learn how often
# each digit occurs, which it does unevenly, so the unconditional branch is the weaker model. Guidance
# buys the last few points of accuracy (about 95 → 99.8 % at s = 2) with an FID four times higher.
# The Inception Score (notebook 06) tells the same story from the other side: it *rises* with guidance,
# from 9.36 at s = 1 to 9.97 at s = 7.5, because every sample becomes a more confident digit, while FID and
# the diversity column get worse. Even the unguided conditional samples beat real digits on IS (8.64 for
# 500 real test digits): requested in exactly equal numbers and drawn cleanly, they are easier to classify
# than handwriting. A metric that rewards confidence and
# ignores variety within a class prefers strong guidance; that is why GAN-era papers plotted IS against FID
# as a trade-off curve, and why neither number alone picks the scale. Which scale is "best" depends on what
# you want: for a classifier-friendly picture of a requested digit,
# a high s; for samples that look like the data set as a whole, s near 1. Compare numbers only within one
# classifier, reference set and n, and against the real-vs-real floor (notebook 06).

# %% [markdown]
# ## Summary
#
# - A **class-conditional** model ε_θ(x_t, t, y) trained with **label dropout** (labels replaced by a null
#   label ∅ with probability p, 0.2 for the course model; Ho & Salimans 2021, Algorithm 1) is also an unconditional model
#   ε_θ(x_t, t, ∅).
# - Bayes' rule splits the conditional score into the unconditional score plus a classifier's gradient;
#   **guidance** scales up that gradient. **Classifier guidance** (Dhariwal & Nichol 2021) takes it from a
#   separately trained noisy-image classifier; **classifier-free guidance** takes it from the difference
#   ε_c − ε_∅.
# - Ho & Salimans' **eq. 6**: ε̃ = (1 + w) ε_c − w ε_∅. `dc.sample`'s `guidance_scale` (and diffusers')
#   is **s = 1 + w**: ε̃ = ε_∅ + s (ε_c − ε_∅). s = 0 unconditional, s = 1 conditional, s > 1 guided.
# - The guided ε is the score of p_t(x | y) p_t(y | x)^{s−1} at each noise level: samples move away from
#   other classes and contract — exactly visible on 2-D data.
# - Cost: **2 NFE per step** (both branches, batched as 2B) for s ∉ {0, 1}; s = 0 needs only ε_∅ and s = 1
#   only ε_c (one NFE per step); sample unconditionally with y = ∅ and s = 1.
# - Trade-off, measured (`benchmarks/results/guidance_sweep.md`): accuracy on the requested digits rises
#   with s; diversity falls; FID is lowest at s = 1 on this model (at the real-vs-real floor) and grows
#   with every step beyond.
#
# ## Where the field goes next
#
# The course stops at what a compact U-Net on MNIST can show and measure on a laptop. Each line below is a
# direction the same ideas grow into, why it matters, and where to start reading:
#
# - **Fewer steps by training, not solving.** Consistency models learn a map from any point of the ODE
#   trajectory straight to its end, so one network call can sample (Song, Dhariwal, Chen & Sutskever 2023;
#   **notebook 09** builds one from the course model); with guidance folded in, distillation removes the 2×
#   cost of this notebook too (Meng et al. 2023).
# - **Straighter paths.** Flow matching and rectified flow train the network on straight lines between noise
#   and data, and "reflow" straightens them further, so Euler's error at few steps shrinks (Lipman et al.
#   2023; Liu, Gong & Liu 2023; **notebook 10**). Learned step schedules choose *where* the few steps go
#   (Sabour, Fidler & Kreis 2024, "Align your steps").
# - **Architectures.** Transformers on image patches replace the U-Net and scale predictably with compute
#   (DiT: Peebles & Xie 2023; U-ViT: Bao et al. 2023).
# - **Stronger conditioning.** Text embeddings enter through cross-attention and classifier-free guidance
#   with the empty prompt as ∅ (Imagen: Saharia et al. 2022; Stable Diffusion: Rombach et al. 2022); spatial
#   controls (edges, poses, depth) attach to a frozen model (ControlNet: Zhang, Rao & Agrawala 2023).
# - **Latent diffusion.** Diffusing in the latent space of an autoencoder instead of in pixels makes
#   high-resolution images affordable; everything in notebooks 01–08 applies unchanged to the latents
#   (Rombach et al. 2022).
#
# **Next:** notebook 09, consistency models: one network evaluation per sample.
#
# ## References
#
# - Ho, Salimans (2021). *Classifier-Free Diffusion Guidance.* NeurIPS 2021 Workshop on Deep Generative
#   Models; arXiv:2207.12598 — eq. 6, Algorithms 1 (training with p_uncond) and 2 (guided sampling).
# - Dhariwal, Nichol (2021). *Diffusion Models Beat GANs on Image Synthesis.* NeurIPS. arXiv:2105.05233 —
#   classifier guidance, §4, Algorithms 1–2.
# - Saharia et al. (2022). *Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding*
#   (Imagen). NeurIPS. arXiv:2205.11487 — guidance weight in the s convention, dynamic thresholding.
# - Lu, Zhou, Bao, Chen, Li, Zhu (2022b). *DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
#   Probabilistic Models.* arXiv:2211.01095.
# - Meng, Rombach, Gao, Kingma, Ermon, Ho, Salimans (2023). *On Distillation of Guided Diffusion Models.*
#   CVPR. arXiv:2210.03142.
# - Heusel et al. (2017). *GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
#   Equilibrium* — FID.
# - Song, Dhariwal, Chen, Sutskever (2023). *Consistency Models.* ICML. arXiv:2303.01469.
# - Lipman, Chen, Ben-Hamu, Nickel, Le (2023). *Flow Matching for Generative Modeling.* ICLR. arXiv:2210.02747.
# - Liu, Gong, Liu (2023). *Flow Straight and Fast: Learning to Generate and Transfer Data with Rectified
#   Flow.* ICLR. arXiv:2209.03003.
# - Sabour, Fidler, Kreis (2024). *Align Your Steps: Optimizing Sampling Schedules in Diffusion Models.* ICML.
#   arXiv:2404.14507.
# - Peebles, Xie (2023). *Scalable Diffusion Models with Transformers* (DiT). ICCV. arXiv:2212.09748.
# - Bao et al. (2023). *All are Worth Words: A ViT Backbone for Diffusion Models* (U-ViT). CVPR.
#   arXiv:2209.12152.
# - Rombach, Blattmann, Lorenz, Esser, Ommer (2022). *High-Resolution Image Synthesis with Latent Diffusion
#   Models.* CVPR. arXiv:2112.10752.
# - Zhang, Rao, Agrawala (2023). *Adding Conditional Control to Text-to-Image Diffusion Models* (ControlNet).
#   ICCV. arXiv:2302.05543.

# %%
print(f"notebook run time: {time.perf_counter() - t_start:.0f} s ({'fast' if FAST else 'full'} mode, {device})")

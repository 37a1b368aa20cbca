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
# # 06 · Evaluating samplers: FID, KID, the real-vs-real floor, quality versus NFE
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json). Full mode draws 4 × 1,000 samples
# at 5 and 10 steps (≈ 60,000 U-Net evaluations); fast mode a small slice of them.
#
# **You will**
# - see why sample quality is measured in the feature space of a network, and why a *domain* classifier
#   replaces Inception for MNIST;
# - write the Fréchet distance between two Gaussians (FID) and the unbiased MMD² behind KID, and check
#   them against `dc.metrics`;
# - measure the **real-vs-real floor**: the FID of real digits, which is not 0 and depends on n;
# - compute the **Inception Score** with the digit classifier and see what it cannot see;
# - read the committed study of quality versus the number of network evaluations (NFE) for every
#   sampler, with error bars and wall time, and DDIM's Table 1 at MNIST scale beside the paper's;
# - recompute a small slice of that study live;
# - label the ways sampling fails at too few steps (blur, artefacts, collapse), each with its own measure;
# - measure what sampling costs: time against NFE (a cost C per network call), throughput and peak memory
#   against batch size.
#
# **Exercises:** 6.1 the Fréchet distance · 6.2 the unbiased MMD² with the cubic kernel · 6.3 the Inception
# Score · 6.4 the cost of one network call from timings.
#
# **Prerequisites:** notebooks 03–05 (the samplers); mean and covariance of a data set; the idea of a
# matrix square root (C^½ C^½ = C).

# %%
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Image, Markdown, display
from tqdm.auto import tqdm

import ddpm_course as dc

device = dc.device()
print(f"device: {device}")
t_start = time.perf_counter()

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1

# %%
n_live = 64 if FAST else 1000                                 # samples per live setting
live_settings = [(0.0, 5), (1.0, 5)] if FAST else [(0.0, 5), (1.0, 5), (0.0, 10), (1.0, 10)]  # (η, S)
floor_ns = [64, 128, 256, 512, 1000]                          # n of the real-vs-real floor (cheap: no sampling)
n_gallery = 64 if FAST else 500                               # samples per row of the failure gallery
print("fast mode: on" if FAST else "fast mode: off (full sizes)", f"— {n_live} samples per live setting")

# %% [markdown]
# ## Why FID, and why not on pixels
#
# A sampler is good if its samples look like the data *as a distribution*: sharp digits, every digit
# equally often, the same variety of styles. Pixel-wise distances miss this (a digit shifted by one pixel
# is far from itself in pixels). **FID** (Heusel et al. 2017) maps every image to a feature vector of a
# trained network, fits a Gaussian N(μ, C) to the features of the generated images and one to the
# features of real images, and reports the Fréchet (2-Wasserstein) distance between the two Gaussians
# (the closed form of Dowson & Landau 1982, which Heusel et al. 2017 named FID):
#
# $$d^2\big((\mu_1, C_1), (\mu_2, C_2)\big) = \lVert\mu_1-\mu_2\rVert^2
#   + \operatorname{Tr}\!\big(C_1 + C_2 - 2\,(C_1C_2)^{1/2}\big).$$
#
# The first term sees wrong *kinds* of features (mean), the second wrong *variety* (covariance). For
# ImageNet-like photos the network is Inception-v3 (2,048 features). Inception knows nothing about
# handwritten digits, and its weights cannot be downloaded here, so `dc.metrics` uses a **domain
# classifier**: a small CNN trained on the bundled MNIST training digits (98.2 % held-out accuracy), whose
# 64 penultimate ReLU activations are the features. The reference set is the 1,000 held-out *test*
# digits, seen neither by the classifier nor by the diffusion model (docs/results_eval.md).
# Consequence: **our FIDs are comparable with each other, never with published CIFAR-10 or ImageNet FIDs.**

# %%
x_test, y_test = dc.metrics.real_images("test")
x_train, _ = dc.metrics.real_images("train")
net = dc.metrics.classifier()
print(f"reference digits: {tuple(x_test.shape)}; classifier: {sum(p.numel() for p in net.parameters()):,} "
      f"parameters; features per image: {dc.metrics.features(x_test[:2]).shape[1]}")
print(f"classifier accuracy on the test digits: {dc.metrics.accuracy(x_test, y_test):.3f}")
dc.viz.show_grid(x_test[:32], nrow=16, title="real test digits (the FID reference set)", size=8)
plt.show()

# %% [markdown]
# ### Exercise 6.1 — the Fréchet distance between two Gaussians
#
# Write `frechet_distance(mu1, cov1, mu2, cov2)`: means are float64 tensors (d,), covariances float64
# (d, d), symmetric positive semi-definite (possibly singular). Return the number d² of the formula above
# as a Python float (or a 0-d tensor).
#
# The matrix square root: C₁C₂ is not symmetric, but it has the same eigenvalues as the symmetric PSD
# matrix C₁^½ C₂ C₁^½, so Tr (C₁C₂)^½ = Σᵢ √λᵢ(C₁^½ C₂ C₁^½). A symmetric PSD matrix has the square
# root V diag(√λ) Vᵀ from `torch.linalg.eigh`. Round-off can make tiny eigenvalues negative: clamp them
# to 0 before the square root. (`scipy.linalg.sqrtm(C1 @ C2).real` works too, but is less robust.)

# %% tags=["exercise"]
def frechet_distance(mu1, cov1, mu2, cov2):
    """|μ₁ − μ₂|² + Tr(C₁ + C₂ − 2 (C₁C₂)^½) (Dowson & Landau 1982; FID of Heusel et al. 2017), as a float."""
    ### BEGIN SOLUTION
    def sqrt_psd(m):
        w, v = torch.linalg.eigh((m + m.T) / 2)
        return (v * w.clamp(min=0).sqrt()) @ v.T

    s1 = sqrt_psd(cov1)
    lam = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp(min=0)
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * lam.sqrt().sum())
    ### END SOLUTION


# %%
frechet_distance = dc.checks.frechet_distance(frechet_distance)

# %% [markdown]
# **FID by hand.** Features of two image sets → mean and covariance (N − 1 denominator) → your distance.
# Below: 1,000 real *training* digits, and the same digits damaged in two ways (Gaussian noise, a 3×3
# blur), each against the test reference. Your numbers must agree with `dc.metrics.fid`.

# %%
def stats(images):
    f = dc.metrics.features(images)
    return f.mean(0), torch.cov(f.T)  # torch.cov uses the unbiased N − 1 denominator


def blur(x):
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


g = torch.Generator().manual_seed(0)
real = x_train[torch.randperm(len(x_train), generator=g)[:1000]]
sets = {"real train digits": real,
        "Gaussian noise σ = 0.3": (real + 0.3 * torch.randn(real.shape, generator=g)).clamp(-1, 1),
        "3×3 box blur": blur(real)}
mu_ref, cov_ref = stats(x_test)
rows = []
for name, imgs in sets.items():
    mine = frechet_distance(*stats(imgs), mu_ref, cov_ref)
    rows.append((name, mine, dc.metrics.fid(imgs)))
    print(f"{name:24s} FID by hand {mine:8.3f}   dc.metrics.fid {rows[-1][2]:8.3f}")
assert all(abs(a - b) <= 1e-6 * max(1.0, b) for _, a, b in rows)
dc.viz.show_row(torch.cat([imgs[:4] for imgs in sets.values()]), labels=[n for n in sets for _ in range(4)],
                size=1.2)
plt.show()

# %% [markdown]
# Blur is barely visible at this size and yet costs more FID than the noise: the classifier's features
# respond to stroke edges. FID ranks the damage in the expected order, and the real digits score close to,
# but not exactly, 0. That remainder is the subject of the next section but one.
#
# ### Exercise 6.2 — KID: the unbiased MMD² with a cubic kernel
#
# FID assumes Gaussian features and is biased at small n (below). **KID** (Bińkowski et al. 2018, §4) is
# the squared maximum mean discrepancy between the two feature sets X = {x₁…x_m}, Y = {y₁…y_n} with the
# polynomial kernel k(x, y) = (xᵀy / d + 1)³, estimated without bias by leaving out the i = j terms:
#
# $$\widehat{\mathrm{MMD}}^2_u = \frac{1}{m(m-1)}\sum_{i\ne j} k(x_i,x_j) + \frac{1}{n(n-1)}\sum_{i\ne j}
#   k(y_i,y_j) - \frac{2}{mn}\sum_{i,j} k(x_i,y_j).$$
#
# Write `mmd2_unbiased(fx, fy)` for feature matrices fx (m, d) and fy (n, d), returning a float (or 0-d
# tensor). Hint: build the three kernel matrices with one matrix product each and subtract their
# diagonals. Because it is unbiased, the estimate is ≈ 0 and *can be negative* for two samples of one
# distribution.

# %% tags=["exercise"]
def mmd2_unbiased(fx, fy):
    """Unbiased MMD² of two feature sets with k(x, y) = (xᵀy/d + 1)³ (Bińkowski et al. 2018)."""
    ### BEGIN SOLUTION
    d, m, n = fx.shape[1], fx.shape[0], fy.shape[0]
    kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((fx, fx), (fy, fy), (fx, fy)))
    return float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (n * (n - 1))
                 - 2 * kxy.mean())
    ### END SOLUTION


# %%
mmd2_unbiased = dc.checks.mmd2_unbiased(mmd2_unbiased)

# %% [markdown]
# `dc.metrics.kid` averages the MMD² over 100 random subsets of 500 images from each side and reports the
# mean and the standard deviation. With a single subset as large as both sets, the subset is just a
# reordering, and the unbiased MMD² does not depend on order — so one subset of everything must equal your
# function on the full feature sets:

# %%
f_ref = dc.metrics.features(x_test)
for name, imgs in sets.items():
    f = dc.metrics.features(imgs)
    mine = mmd2_unbiased(f, f_ref)
    pkg = dc.metrics.kid_from_features(f, f_ref, subsets=1, subset_size=1000).mean
    k = dc.metrics.kid(imgs)
    print(f"{name:24s} MMD² by hand {1e3 * mine:9.2f}e-3  one full subset {1e3 * pkg:9.2f}e-3   "
          f"KID (100 subsets of 500) {1e3 * k.mean:8.2f} ± {1e3 * k.std:.2f} e-3")
    assert abs(mine - pkg) <= 1e-9 * max(1.0, abs(pkg))

# %% [markdown]
# ## The real-vs-real floor
#
# A perfect generator does not score FID 0. Its n samples are a finite draw, so their mean and covariance
# are noisy estimates, and the noise *adds* to d² (a squared distance averages positive). The floor is
# measured by scoring n **real** digits from the training split against the test reference:
# `dc.metrics.real_baseline(n, seed)`. A sampler is only as far from perfect as its FID *minus this floor*,
# and two FIDs are comparable only at the same n. KID is unbiased: its real-vs-real value is 0 within its
# standard deviation, at every n.

# %%
floor = {n: [dc.metrics.real_baseline(n, seed=s) for s in range(3)] for n in floor_ns}
floor_kid = {n: dc.metrics.real_baseline_kid(n, subsets=20) for n in floor_ns}
for n in floor_ns:
    print(f"n = {n:5d}: FID real vs real {np.mean(floor[n]):6.3f} ± {np.std(floor[n], ddof=1):.3f}   "
          f"KID×10³ {1e3 * floor_kid[n].mean:7.2f} ± {1e3 * floor_kid[n].std:.2f}")

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.errorbar(floor_ns, [np.mean(floor[n]) for n in floor_ns], [np.std(floor[n], ddof=1) for n in floor_ns],
            marker="o", capsize=3, label="FID, real vs real (3 draws)")
c = np.mean(floor[floor_ns[-1]]) * floor_ns[-1]
ax.plot(floor_ns, [c / n for n in floor_ns], "k--", lw=0.8, label="∝ 1/n")
ax.set(xscale="log", yscale="log", xlabel="n (images scored)", ylabel="FID",
       title="The FID of real digits: a floor that shrinks like 1/n")
ax.legend()
plt.show()

# %% [markdown]
# At n = 64 (the feature dimension) the sample covariance is singular and the floor is an order of
# magnitude higher than at 1,000: never compare an FID from 64 samples with one from 1,000.
# `dc.metrics.fid` warns below n = 64. The course's study uses n = 1,000 everywhere.

# %% [markdown]
# ## The Inception Score, with a digit classifier
#
# Before FID, GAN papers reported the **Inception Score** (Salimans et al. 2016, §4). It asks a classifier
# for p(y | x), the class probabilities of each sample, and rewards two things at once: each sample should
# be *confidently* one class (p(y | x) peaked), and the classes should be *varied* over the samples (the
# marginal p(y) = E_x p(y | x) flat):
#
# $$\mathrm{IS} = \exp\Big(\mathbb E_x\, \mathrm{KL}\big(p(y\mid x)\,\|\,p(y)\big)\Big)
#   = \exp\big(H(y) - \mathbb E_x H(y\mid x)\big).$$
#
# It lies between 1 and the number of classes: 10 with the course's digit classifier in place of Inception
# (`dc.metrics.inception_score(images, ref="mnist")`, the mean ± std over 10 chunks, as usually reported).
# Higher is better, and there is no reference set: IS never looks at real images.
#
# ### Exercise 6.3 — the Inception Score from class probabilities
#
# Write `inception_score(p_yx)`: `p_yx` is an (N, K) tensor of class probabilities, one row per image.
# Return exp of the mean over images of KL(p(y | x) ‖ p(y)), with p(y) the mean of the rows. Probabilities
# can be exactly 0, and 0 · log 0 counts as 0: `torch.xlogy(a, b)` computes a · log b with that rule.

# %% tags=["exercise"]
def inception_score(p_yx):
    """exp(E_x KL(p(y|x) ‖ p(y))) for class probabilities p_yx (N, K) (Salimans et al. 2016)."""
    ### BEGIN SOLUTION
    p_y = p_yx.mean(0, keepdim=True)                                    # the marginal p(y)
    kl = (torch.xlogy(p_yx, p_yx) - torch.xlogy(p_yx, p_y)).sum(1)      # KL(p(y|x) ‖ p(y)) per image
    return float(kl.mean().exp())
    ### END SOLUTION


# %%
inception_score = dc.checks.inception_score(inception_score)

# %% [markdown]
# The same damaged digits as above, and two sets built to expose what IS cannot see: the ten digits of one
# class only (confident, but no variety), and **one real digit per class, each copied 100 times**, a
# "generator" that has memorised ten images (for each class, the test digit the classifier is surest of):

# %%
x_test_all, y_test_all = dc.metrics.real_images("test")
p_test = dc.metrics.class_probabilities(x_test_all)
one_each = torch.stack([x_test_all[y_test_all == k][p_test[y_test_all == k, k].argmax()] for k in range(10)])
is_sets = {**sets, "only the digit 1": x_test_all[y_test_all == 1][:1000],
           "10 digits, each copied 100×": one_each.repeat(100, 1, 1, 1)}     # every chunk holds all ten
print(f"{'':30s} {'IS (mine)':>10} {'IS ± std (dc.metrics)':>22} {'FID':>8}")
for name, imgs in is_sets.items():
    mine = inception_score(dc.metrics.class_probabilities(imgs))
    pkg = dc.metrics.inception_score(imgs)
    print(f"{name:30s} {mine:10.2f} {pkg.mean:15.2f} ± {pkg.std:4.2f} {dc.metrics.fid(imgs):8.2f}")

# %% [markdown]
# Real digits score ≈ 9.2 (the mean over ten chunks of 100; one p(y) from all 1,000 images gives a little
# more, since a chunk's marginal is noisier), close to the maximum of 10. Noise and blur, which the
# classifier still reads as the right digits, cost little IS but much FID. A single class scores ≈ 1: no
# variety. And the ten memorised digits score *higher than real data*: every copy is a confident
# prediction, and the classes are perfectly balanced. IS measures
# confident variety *between* classes only; it is blind to diversity within a class and to copying, and it
# has no notion of what real data look like (Barratt & Sharma 2018, *A Note on the Inception Score*). FID,
# which compares with held-out real digits, catches all three (its 1,000 copies of 10 images have a
# degenerate covariance). That is why the course reports IS beside FID, never instead of it; notebook 08
# uses the pair to show guidance trading diversity for confidence.

# %% [markdown]
# ## Quality versus NFE: the committed study
#
# `benchmarks/quality_vs_nfe.py` samples 1,000 unconditional digits per *cell* (sampler, steps, η,
# spacing, seed) from the shipped model, quantises them to 8-bit pixels and scores FID and KID; seeds
# 0, 1, 2 give error bars. The costs: a run takes hours on a CPU, so the results are committed —
# `benchmarks/results/quality_vs_nfe.{md,png,json}`. The JSON holds `model_sha256`, `floor`
# ({n: {"fid": [per draw], "kid": [...]}}) and `cells`, a list of records, each with `cell` (sampler,
# steps, eta, variance, spacing, n, seed, kind), `label`, `nfe`, `fid`, `kid_mean`, `kid_std` and
# `seconds_per_sample` (wall clock on the machine that ran it).

# %%
study_path = dc.course.course_file("benchmarks/results/quality_vs_nfe.json")
study = json.loads(study_path.read_text()) if study_path else None
if study is None:
    print("benchmarks/results/quality_vs_nfe.json is not here (e.g. a pip install without the repository): "
          "skipping the committed results; the live slice below still runs.")
else:
    print(f"{len(study['cells'])} cells, model sha256 {study['model_sha256'][:16]}…; {study['model']}")


# %%
def group_cells(cells, n=1000):
    """{(label, spacing): {nfe: [records over seeds]}} for the unconditional cells of n samples (the
    study's n; a few expensive cells, e.g. 1000-step DDPM, were run on fewer and are left out here)."""
    out = {}
    for r in cells:
        if r["cell"]["kind"] == "uncond" and r["cell"]["n"] == n:
            out.setdefault((r["label"], r["cell"]["spacing"]), {}).setdefault(r["nfe"], []).append(r)
    return out


def mean_sd(values):
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


if study is not None:
    groups = group_cells(study["cells"])
    lines = ["| sampler (spacing) | NFE | seeds | FID | KID×10³ | ms / sample (wall) |", "|---|---|---|---|---|---|"]
    for (label, spacing), by_nfe in sorted(groups.items()):
        for nfe, recs in sorted(by_nfe.items()):
            f, fs = mean_sd([r["fid"] for r in recs])
            k, ks = mean_sd([1e3 * r["kid_mean"] for r in recs])
            ms = np.mean([1e3 * r["seconds_per_sample"] for r in recs])
            lines.append(f"| {label} ({spacing}) | {nfe} | {len(recs)} | {f:.2f} ± {fs:.2f} | {k:.0f} ± {ks:.0f} "
                         f"| {ms:.0f} |")
    fl = study["floor"].get("1000", {}).get("fid", [])
    lines.append(f"\nReal-vs-real floor at n = 1000: FID {np.mean(fl):.3f} ({len(fl)} draws)." if fl else "")
    display(Markdown("\n".join(lines)))

# %% [markdown]
# The same numbers as a plot: FID against NFE per sampler with seed-to-seed error bars, and FID against
# wall time per sample — NFE is the fair unit of cost (the U-Net dominates), wall time is what you wait.

# %%
if study is not None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for (label, spacing), by_nfe in sorted(groups.items()):
        nfes = sorted(by_nfe)
        ms = [mean_sd([r["fid"] for r in by_nfe[k]]) for k in nfes]
        wall = [np.mean([1e3 * r["seconds_per_sample"] for r in by_nfe[k]]) for k in nfes]
        kw = dict(marker="o", capsize=3, label=f"{label} ({spacing})")
        ax1.errorbar(nfes, [m for m, _ in ms], [s for _, s in ms], **kw)
        ax2.errorbar(wall, [m for m, _ in ms], [s for _, s in ms], ls="none", **kw)
    if fl:
        for ax in (ax1, ax2):
            ax.axhline(np.mean(fl), color="gray", ls="--", lw=0.8, label="real vs real, n = 1000")
    ax1.set(xscale="log", yscale="log", xlabel="NFE", ylabel="FID (n = 1000)", title="quality versus NFE")
    ax2.set(xscale="log", yscale="log", xlabel="ms per sample (wall, shared CPU)", ylabel="FID",
            title="quality versus wall time")
    ax1.legend(fontsize=7)
    plt.tight_layout()
    plt.show()
    png = dc.course.course_file("benchmarks/results/quality_vs_nfe.png")
    if png:
        print("The study's own figure (benchmarks/results/quality_vs_nfe.png):")
        display(Image(filename=str(png), width=720))

# %% [markdown]
# How to read it: lower is better, and only differences larger than the error bars count (one seed: no
# bar — treat its digits with care). Points of the study that have not been computed yet are simply
# absent; `python benchmarks/quality_vs_nfe.py --list` shows the plan and what remains. Wall time per
# sample on a shared CPU is indicative only (each cell's JSON records the load average).

# %% [markdown]
# ## Model error against discretisation error: the early checkpoint
#
# A sampler can only be as good as the ε̂ it integrates. The course also ships `mnist_early`, its first
# model: the same network trained for a third as long (153,600 images instead of 460,800) with a plainer
# recipe. The same study was run on it (`benchmarks/results/mnist_early/`). Put side by side, the two
# models separate the two kinds of error: where a curve still falls with NFE, the sampler's
# discretisation error dominates; where it flattens, what is left is the model's own error, and no solver
# removes it — only training does.

# %%
early_path = dc.course.course_file("benchmarks/results/mnist_early/quality_vs_nfe.json")
if study is not None and early_path is not None:
    early = json.loads(early_path.read_text())
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, st, ls in (("mnist", study, "-"), ("mnist_early", early, ":")):
        g = group_cells(st["cells"])
        for i, key in enumerate([("ddim η=0", "leading"), ("ddim η=1", "leading"), ("dpmpp_2m", "karras")]):
            if key in g:
                nfes = sorted(g[key])
                ax.plot(nfes, [np.mean([r["fid"] for r in g[key][k]]) for k in nfes], ls=ls, marker="o",
                        color=f"C{i}", label=f"{name}: {key[0]} ({key[1]})")
    if fl:
        ax.axhline(np.mean(fl), color="gray", ls="--", lw=0.8, label="real vs real, n = 1000")
    ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="FID (n = 1000, unconditional)",
           title="same samplers, two models: solid = mnist, dotted = mnist_early")
    ax.legend(fontsize=7)
    plt.tight_layout()
    plt.show()
else:
    print("the two studies are not both here (a pip install without the repository): nothing to compare")

# %% [markdown]
# What the two models show (n = 1,000, unconditional). On `mnist_early` the deterministic samplers
# flatten at FID ≈ 5.4 from 10 NFE on (DPM-Solver++(2M): 5.36, 5.37, 5.35 at 10, 20 and 50 NFE): the ODE
# is solved well enough and what is left is model error. Only stochastic sampling kept improving there
# (DDIM η = 1 reaches 4.70 at 50 steps), because fresh noise corrects part of an imperfect ε̂. The
# shipped model, the same network trained three times as long with a better recipe, moves the curves
# down by a factor of about 2.5 at equal NFE (DPM-Solver++(2M): 2.27 at 10 NFE, 2.10 at 20): the sampler
# did not change, ε̂ did. Its curves flatten too, at about 2, and that floor is again the model's: its
# unconditional branch draws the ten digits unevenly ("1" about 6 %, "9" up to 15 %), while with balanced
# labels the same network reaches the real-vs-real floor (DDIM, 10 steps, class-conditional: FID 0.30).

# %% [markdown]
# ## DDIM's Table 1 at MNIST scale
#
# DDIM (Song, Meng & Ermon 2021, Table 1) varies the stochasticity η (eq. 16: σ_τᵢ(η) = η·√((1 − ᾱ_{τᵢ₋₁})
# /(1 − ᾱ_τᵢ))·√(1 − ᾱ_τᵢ/ᾱ_τᵢ₋₁)) and the number of steps S. On CIFAR-10 (50k samples, quadratic
# spacing):

# %%
PAPER = {0.0: (13.36, 6.84, 4.67, 4.16, 4.04), 0.2: (14.04, 7.11, 4.77, 4.25, 4.09),
         0.5: (16.66, 8.35, 5.25, 4.46, 4.29), 1.0: (41.07, 18.36, 8.01, 5.78, 4.73),
         "σ̂": (367.43, 133.37, 32.72, 9.99, 3.17)}
PAPER_S = (10, 20, 50, 100, 1000)
display(Markdown("\n".join(["| η | " + " | ".join(f"S = {S}" for S in PAPER_S) + " |", "|---|" + "---|" * 5]
                           + [f"| {eta} | " + " | ".join(map(str, v)) + " |" for eta, v in PAPER.items()])))

# %% [markdown]
# The teachable facts: η = 0 (deterministic DDIM) is best at few steps, FID rises with η, and the gap
# closes as S grows. Our grid comes from `benchmarks/ddim_table1.py` (`benchmarks/results/ddim_table1.json`,
# the cells the CPU budget allowed) or, failing that, from the DDIM cells of the quality-versus-NFE study
# (`ddim`, spacing `leading`, the paper's uniform skip). Expect differences: uniform rather than quadratic
# spacing, n = 1,000 instead of 50,000, and a model whose unconditional branch still has a visible error.
# Where the model's error is larger than the discretisation error, fresh noise corrects part of it and
# η = 1 can win; the report therefore also runs η = 0 and η = 1 on the class-conditional branch, where the
# network is nearly exact — and there the paper's order holds (printed below when it has been computed).

# %%
ours = {}  # (η, S) -> [FID per seed], n = 1000
table_path = dc.course.course_file("benchmarks/results/ddim_table1.json")
trend_lines = []
if table_path:
    table_json = json.loads(table_path.read_text())
    trend_lines = table_json.get("trend", [])
    for key, vals in table_json["fid"].items():
        kv = dict(part.split("=") for part in key.split(","))
        if int(kv["n"]) == 1000:
            ours[(float(kv["eta"]), int(kv["S"]))] = vals
    print(f"from {table_path.name}")
elif study is not None:
    for r in study["cells"]:
        c = r["cell"]
        if (c["sampler"], c["spacing"], c["kind"], c["n"]) == ("ddim", "leading", "uncond", 1000):
            ours.setdefault((c["eta"], c["steps"]), []).append(r["fid"])
    print("benchmarks/results/ddim_table1.json not found: using the DDIM cells of quality_vs_nfe.json")
if ours:
    steps_ = sorted({S for _, S in ours})
    etas = sorted({e for e, _ in ours})
    cell = lambda v: f"{np.mean(v):.2f}" + (f" ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else "") if v else "–"
    display(Markdown("\n".join(["| η | " + " | ".join(f"S = {S}" for S in steps_) + " |",
                                "|---|" + "---|" * len(steps_)]
                               + [f"| {e:g} | " + " | ".join(cell(ours.get((e, S), [])) for S in steps_) + " |"
                                  for e in etas])))
else:
    print("no committed DDIM results found; the live slice below computes a corner of the table")
if trend_lines:
    print("The trend, as benchmarks/ddim_table1.py computes it from these cells:")
    for line in trend_lines:
        print(" -", line)
cond_check = table_json.get("cond", {}) if table_path else {}
if cond_check:
    print("The same η = 0 / η = 1 comparison on the class-conditional branch (FID, n = 1000):")
    for key, r in sorted(cond_check.items()):
        print(f" - {key}: FID {r['fid']:.3f}, requested digit drawn {r['accuracy']:.1%}")

# %% [markdown]
# ## A slice recomputed live
#
# Now the real thing on a small scale: the shipped model (`dc.load_pretrained("mnist")`), unconditional
# (y = None: the null label), DDIM with η = 0 and η = 1 at S = 5 (full mode adds S = 10), n samples each
# from the same noise, quantised to 8-bit pixels like the study, scored with FID and KID, timed. In fast
# mode n = 64: far too few for FID to mean much in absolute terms (see the floor at 64 above), so the
# real-vs-real floor at the same n is printed beside it, and KID is the number to look at.

# %%
model, s = dc.load_pretrained("mnist")


def quantise(x):
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


x_T = torch.randn(n_live, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(device)
live = {}
for eta, S in live_settings:
    with dc.metrics.Timer() as timer:
        x0, info = dc.sample(model, s, x_T, sampler="ddim", steps=S, eta=eta,
                             generator=torch.Generator(device).manual_seed(1), y=None, return_info=True)
    x0 = quantise(x0.cpu())
    live[(eta, S)] = dict(x0=x0, nfe=info.nfe, fid=dc.metrics.fid(x0), kid=dc.metrics.kid(x0),
                          ms=1e3 * timer.seconds / n_live)
floor_live = dc.metrics.real_baseline(n_live)
print(f"n = {n_live}; real-vs-real floor at this n: FID {floor_live:.3f}")
for (eta, S), r in live.items():
    committed = [c["fid"] for c in groups.get((f"ddim η={eta:g}", "leading"), {}).get(S, [])] \
        if study is not None and n_live == 1000 else []
    note = f"   (committed, n = 1000: {np.mean(committed):.2f})" if committed else ""
    print(f"ddim η={eta:g} S={S:3d}  NFE {r['nfe']:3d}  FID {r['fid']:7.3f}  KID×10³ {1e3 * r['kid'].mean:7.1f} ± "
          f"{1e3 * r['kid'].std:.1f}  {r['ms']:6.1f} ms/sample{note}")
fig, axes = plt.subplots(len(live), 1, figsize=(8, 1.1 * len(live)), squeeze=False)
for ax, ((eta, S), r) in zip(axes[:, 0], live.items(), strict=True):
    dc.viz.show_grid(r["x0"][:16], nrow=16, title=f"ddim η={eta:g}, S={S} (same noise)", ax=ax)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What goes wrong at too few steps: a labelled gallery
#
# One number hides *how* a sampler fails. With too few steps the course model fails in three ways, each
# with a measure of its own (from `dc.metrics`, all relative to real digits, so 1 means "like the data"):
#
# - **blur, and with it lost diversity**: a first-order solver with huge steps lands on an average of the
#   digits x_T could become (x̂_0 is a posterior mean, notebook 03 §5): `sharpness` (the energy of
#   pixel-to-pixel differences) falls below 1, and so does `diversity` (the mean pairwise distance of
#   classifier features): averaged digits look alike;
# - **artefacts**: too much noise left in leaves speckle: `sharpness` above 1, many pixels outside [−1, 1]
#   before clipping;
# - **breakdown and collapse**: an overshooting higher-order step leaves saturated noise, not digits; the
#   classifier files most of it under one class, so the class histogram collapses.
#
# Every row starts from the same x_T (the first 8 of n shown; the measures use all n).

# %%
gallery = {"reference: DPM-Solver++(2M), 20 Karras steps": dict(sampler="dpmpp_2m", steps=20, spacing="karras"),
           "blur: DDIM, 2 steps": dict(sampler="ddim", steps=2, spacing="trailing"),
           "artefacts: DDPM with σ² = β, 10 steps": dict(sampler="ddpm", steps=10, variance="fixed_large"),
           "breakdown: Heun, 3 steps (5 NFE)": dict(sampler="heun", steps=3, spacing="karras")}
x_T_gallery = torch.randn(n_gallery, 1, 28, 28, generator=torch.Generator().manual_seed(5)).to(device)
shown = {}
print(f"n = {n_gallery} per row; real digits: sharpness 1, diversity 1, largest class share ≈ 11 %")
print(f"{'':46s} {'sharpness':>9} {'diversity':>9} {'top class':>10} {'clipped':>8}")
for label, kw in tqdm(gallery.items(), desc="gallery"):
    raw = dc.sample(model, s, x_T_gallery, generator=torch.Generator().manual_seed(6), **kw).cpu()
    x0 = raw.clamp(-1, 1)
    shares = dc.metrics.class_shares(x0)
    shown[label] = x0[:8]
    print(f"{label:46s} {dc.metrics.sharpness(x0):9.2f} {dc.metrics.diversity(x0):9.2f} "
          f"{shares.max():6.0%} ({int(shares.argmax())}) {(raw.abs() > 1 + 2 / 255).float().mean():8.1%}")
fig, axes = plt.subplots(len(shown), 1, figsize=(8, 1.25 * len(shown)))
for ax, (label, x0) in zip(axes, shown.items(), strict=True):
    dc.viz.show_grid(x0, nrow=8, title=label, ax=ax)
plt.tight_layout()
plt.show()

# %% [markdown]
# The committed study records which digit the classifier reads in each of its 1,000 samples per cell
# (`class_shares`), so the collapse can be followed against NFE for every sampler (the data: ≈ 10 % each):

# %%
if study is not None:
    picks = (("heun", "karras"), ("dpmpp_2m", "karras"), ("ddim η=0", "leading"))
    fig, axes = plt.subplots(1, len(picks), figsize=(12, 3.4), sharey=True)
    for ax, key in zip(axes, picks, strict=True):
        by_nfe = {nfe: recs[0]["class_shares"] for nfe, recs in sorted(groups.get(key, {}).items())
                  if "class_shares" in recs[0]}
        bottom = np.zeros(len(by_nfe))
        for digit in range(10):
            heights = np.array([shares[digit] for shares in by_nfe.values()])
            ax.bar([str(k) for k in by_nfe], heights, bottom=bottom, color=plt.cm.tab10(digit),
                   label=str(digit))
            bottom += heights
        ax.set(title=f"{key[0]} ({key[1]})", xlabel="NFE")
    axes[0].set_ylabel("share of the samples per digit")
    axes[-1].legend(title="digit", fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    plt.tight_layout()
    plt.show()

# %% [markdown]
# Read the bars from the left. At 5 NFE Heun's samples are not digits at all (the gallery's last row) and
# the classifier files almost all of them under one digit; FID only says "very bad" (58.9). DPM-Solver++(2M)
# at 5 NFE draws too few 1s and too many 3s, and DDIM's first-order steps keep the shares closest to even.
# From 20 NFE on, every sampler's histogram is as even as the model's unconditional branch allows (shares
# between about 6 and 13 %: a property of the model, not of the sampler). FID mixes all of this into one
# number; the gallery and the histogram say which failure it is.

# %% [markdown]
# ## What sampling costs: time, throughput and memory
#
# Quality is half of the trade-off; cost is the other. Each step of a sampler calls the network once (twice
# with guidance) and does a little arithmetic besides, so the time of one sampling run on a batch is
#
# $$t(\mathrm{NFE}) \approx t_0 + C\cdot\mathrm{NFE},$$
#
# with C the time of one network call on the batch and t₀ a fixed overhead: cost is O(NFE · C), which for
# DDPM's 1000 steps is O(T · C). Memory is O(parameters + B × activations): the weights once, plus what one
# forward pass keeps alive for each image of the batch (no gradients are stored while sampling).
#
# ### Exercise 6.4 — the cost of one network call from timings
#
# Write `fit_cost(nfe, seconds)`: given measured sampling times at several NFE (numbers, lists or 1-D
# tensors), return (t₀, C) of the least-squares line, C = cov(NFE, t)/var(NFE) and t₀ = mean(t) − C·mean(NFE).

# %% tags=["exercise"]
def fit_cost(nfe, seconds):
    """Least squares seconds = t0 + C · nfe: returns (t0, C)."""
    ### BEGIN SOLUTION
    x = torch.as_tensor(nfe, dtype=torch.float64)
    y = torch.as_tensor(seconds, dtype=torch.float64)
    C = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).pow(2).sum()
    return float(y.mean() - C * x.mean()), float(C)
    ### END SOLUTION


# %%
fit_cost = dc.checks.fit_cost(fit_cost)

# %% [markdown]
# A small timing of your own, on this machine: DDIM on a batch of 16 digits at a few NFE, timed with
# `dc.metrics.Timer` (which waits for a GPU to finish), then your fit.

# %%
x_T_cost = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(9)).to(device)
cost_nfes = (1, 2, 4, 8) if FAST else (1, 2, 5, 10, 20)
times = []
for k in cost_nfes:
    with dc.metrics.Timer() as timer:
        dc.sample(model, s, x_T_cost, sampler="ddim", steps=k, spacing="trailing")
    times.append(timer.seconds)
t0_fit, C_fit = fit_cost(cost_nfes, times)
print("NFE:     " + " ".join(f"{k:7d}" for k in cost_nfes))
print("seconds: " + " ".join(f"{t:7.3f}" for t in times))
print(f"fit: t0 = {1e3 * t0_fit:.1f} ms, C = {1e3 * C_fit:.1f} ms per call on 16 images "
      f"({1e3 * C_fit / 16:.2f} ms per image and call) on {device}")

# %% [markdown]
# The committed benchmark (`benchmarks/cost_memory.py`, measured on an idle core of the course's CPU machine)
# measures the same line on a batch of 64, the throughput against batch size, and the peak memory of a fresh
# process against batch size:

# %%
cost_path = dc.course.course_file("benchmarks/results/cost_memory.json")
if cost_path is None:
    print("benchmarks/results/cost_memory.json is not here (a pip install without the repository)")
else:
    cost = json.loads(cost_path.read_text())
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    k = np.array([r["nfe"] for r in cost["nfe_rows"]])
    axes[0].plot(k, [r["seconds"] for r in cost["nfe_rows"]], "o", label="measured")
    axes[0].plot(k, cost["fit"]["t0_s"] + cost["fit"]["C_s_per_call"] * k, "--",
                 label=f"t₀ + C·NFE, C = {1e3 * cost['fit']['C_s_per_call']:.0f} ms")
    axes[0].set(xlabel="NFE", ylabel="seconds", title=f"time of one run, batch {cost['batch']}")
    b = [r["batch"] for r in cost["batch_rows"]]
    axes[1].plot(b, [r["images_per_s"] for r in cost["batch_rows"]], "o-")
    axes[1].set(xscale="log", xlabel="batch size", ylabel="images / s",
                title=f"throughput at NFE {cost['throughput_nfe']}")
    mb = [r["batch"] for r in cost["memory_rows"]]
    axes[2].plot(mb, [r["peak_bytes"] / 2**20 for r in cost["memory_rows"]], "o-", label="one step's peak (measured)")
    axes[2].axhline(cost["parameter_bytes"] / 2**20, color="gray", ls="--", label="the weights (fp32)")
    axes[2].set(xscale="log", yscale="log", xlabel="batch size", ylabel="MiB",
                title="memory of one sampling step")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    plt.tight_layout()
    plt.show()
    print(f"{cost['parameters'] / 1e6:.2f} M parameters = {cost['parameter_bytes'] / 2**20:.1f} MiB; activations "
          f"{cost['activation_bytes_per_image'] / 2**10:.0f} KiB per image; C = "
          f"{cost['fit']['C_ms_per_image_call']:.2f} ms per image and call ({cost['device']}, {cost['threads']} "
          f"thread(s); {cost['machine']})")

# %% [markdown]
# Three things to read off. The time is a straight line in NFE, with an overhead too small to see: halving
# the steps halves the cost, which is the whole point of fast samplers and distillation. Throughput on one
# CPU thread peaks at a batch of about 16 and then falls (larger activations no longer fit the caches); a GPU
# keeps gaining up to far larger batches. And the memory of a step grows linearly with the batch, about
# 1.7 MiB per 28×28 image, so from a batch of 4 on the activations outweigh the 6.2 MiB of weights: for
# sampling, the batch size, not the model, sets the memory.

# %% [markdown]
# ## Summary
#
# - FID = ‖μ₁ − μ₂‖² + Tr(C₁ + C₂ − 2(C₁C₂)^½) between Gaussians fitted to network features (Heusel et
#   al. 2017). For MNIST the features come from a domain classifier, so the numbers are comparable only
#   within this course (same network, reference set and n).
# - KID is the unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ (Bińkowski et al. 2018): no Gaussian assumption,
#   0 in expectation for real data, with an error bar from subsets.
# - FID has a **floor**: real digits score > 0, roughly ∝ 1/n. Always state n and print
#   `dc.metrics.real_baseline(n)` beside a result.
# - Quality versus NFE: compare samplers at equal NFE with error bars over seeds; wall time adds the cost of
#   each sampler's bookkeeping.
# - Too few steps fail in recognisable ways: **blur** (sharpness < 1), **artefacts** (sharpness > 1,
#   saturated pixels) and **collapse** (diversity < 1, one class taking over); measure each beside FID.
# - Cost is O(NFE · C) plus a small overhead, and memory O(parameters + batch × activations): fit C from
#   timings, and pick the batch size by throughput and peak memory (`benchmarks/cost_memory.py`).
# - The **Inception Score** rewards confident, varied classes and never looks at real data: ten memorised
#   digits score 10. Report it beside FID, never instead.
# - DDIM's Table 1 on MNIST: where the model is nearly exact (class-conditional samples) η = 0 wins at
#   few steps, as in the paper; where its error is larger (unconditional samples), fresh noise (η = 1)
#   corrects part of it and wins. Model error against discretisation error: compare `mnist_early`.
#
# **Further reading:** Heusel et al. 2017, *GANs trained by a two time-scale update rule converge to a local
# Nash equilibrium* (FID); Bińkowski et al. 2018, *Demystifying MMD GANs* (KID); Song, Meng & Ermon 2021,
# *Denoising diffusion implicit models*, Table 1; Kynkäänniemi et al. 2023, *The role of ImageNet classes in
# Fréchet Inception Distance* (why the feature network matters); Stein et al. 2023, *Exposing flaws of
# generative model evaluation metrics* (other feature networks). Next: notebook 07 makes few steps good
# enough by distillation.

# %%
print(f"notebook run time: {time.perf_counter() - t_start:.0f} s ({'fast' if FAST else 'full'} mode, {device})")

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
# # 10 · Flow matching and rectified flow: the same samplers on straight paths
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json).
#
# The course's MNIST rectified flow comes from a separate run of `benchmarks/reflow_mnist.py` (about 50
# minutes on one CPU core: 6,000 ODE samples of the course model, then the reflow fine-tune); this
# notebook derives the method, runs it for real on 2-D data and reads the measured comparison.
#
# **You will**
# - write flow matching as one more choice of interpolation between data and noise, x_τ = (1 − τ) x_0 + τ ε,
#   whose velocity ε − x_0 is the training target (Lipman et al. 2023; Liu et al. 2023);
# - turn the course's ε-model into a velocity field by a change of variables, and check numerically that
#   it has *the same trajectories*: an Euler step in flow time is a DDIM step, and every course sampler
#   runs a velocity model;
# - measure how straight the paths are, and straighten them with **reflow**: pair noise with the samples
#   it leads to and fit the straight lines between them;
# - compare the reflowed MNIST model with the consistency model, the distilled students and the
#   training-free solvers at 1, 2 and 4 network evaluations (NFE).
#
# **Exercises:** 10.1 the flow-matching pair · 10.2 the VP-to-flow conversion · 10.3 straightness.
#
# **Prerequisites:** notebook 04 (DDIM), notebook 05 (the probability-flow ODE in σ-space), notebooks 07–09
# for the comparison.

# %%
import copy
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Image, display

import ddpm_course as dc
from ddpm_course import distill, flow

device = dc.device()
print(f"device: {device}")
t_start = time.perf_counter()

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1
FIGURES = None         # a folder to save the full-mode figures into (the course keeps them in docs/figures)

# %%
n_data = 20_000                                  # 2-D training points
n_eval = 1_000 if FAST else 5_000                # 2-D points per comparison
fm_iters = 3_000 if FAST else 8_000              # flow matching from scratch (toy)
reflow_iters = 1_500 if FAST else 4_000          # reflow (toy)
n_img = 16 if FAST else 64                       # MNIST images for the straightness measurement
path_steps = 10 if FAST else 40                  # Euler steps of a "many-step" path
torch.manual_seed(0)

s = dc.NoiseSchedule.linear(T=1000)
oracle = dc.toy.MixtureOracle.eight_gaussians(s)  # the exact ε̂ of eight Gaussians (std 0.1, radius 1.5)

# %% [markdown]
# ## 1 · Flow matching: one more way to go from data to noise
#
# Every model so far noised data along the *variance-preserving* path x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.
# Flow matching picks the straight line instead, with a flow time τ from 0 (data) to 1 (noise):
#
# $$x_\tau = (1-\tau)\, x_0 + \tau\, \varepsilon, \qquad u = \frac{dx_\tau}{d\tau} = \varepsilon - x_0 .$$
#
# (Liu et al. 2023 and Lipman et al. 2023 run time the other way, from noise at 0 to data at 1; here τ grows
# with the noise, like the course's t.) A network u_θ(x_τ, τ) is trained by regression on that velocity,
# the **flow-matching loss** E‖u_θ(x_τ, τ) − (ε − x_0)‖², and samples by integrating dx/dτ = u_θ from
# x_1 = ε down to τ = 0 — Euler: x ← x − Δτ u_θ(x, τ).
#
# The single path of one (x_0, ε) pair is straight, but the network cannot know which x_0 a point came
# from: it learns the average, u*(x, τ) = E[ε − x_0 | x_τ], and the paths of *that* ODE bend, exactly like
# the probability-flow ODE of notebook 05. For the mixture it is a formula, `flow.exact_velocity(oracle)`.
#
# ### Exercise 10.1 — the flow-matching pair
#
# Write `flow_pair(x0, eps, tau)`: return (x_τ, u) for data x0, noise eps and τ a number or a tensor (B,)
# (one τ per sample; reshape it to broadcast over the other dimensions).

# %% tags=["exercise"]
def flow_pair(x0, eps, tau):
    """The point x_τ of the straight path from x0 to eps and its velocity u = dx_τ/dτ."""
    ### BEGIN SOLUTION
    tau = torch.as_tensor(tau, dtype=x0.dtype, device=x0.device)
    if tau.dim() == 1:
        tau = tau.reshape(-1, *[1] * (x0.dim() - 1))
    return (1 - tau) * x0 + tau * eps, eps - x0
    ### END SOLUTION


# %%
flow_pair = dc.checks.flow_pair(flow_pair)

# %% [markdown]
# The straight lines of random pairs cross each other everywhere; the ODE of the average velocity does not
# cross itself (an ODE's paths never do), so it bends.

# %%
g = torch.Generator().manual_seed(0)
x_data = oracle.sample(n_data, generator=g)[0]
x_T = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
taus_many = flow.uniform_taus(100)
x_exact, exact_path = flow.euler(flow.exact_velocity(oracle), x_T, taus_many, return_path=True)
exact_path = torch.stack(exact_path)

fig, axes = plt.subplots(1, 2, figsize=(10, 5))
pairs_x0 = x_data[:40].double()
for j in range(40):
    line = torch.stack([flow_pair(pairs_x0[j:j + 1], x_T[j:j + 1], float(t))[0][0] for t in (0.0, 1.0)])
    axes[0].plot(line[:, 0], line[:, 1], color="C0", lw=0.6, alpha=0.7)
axes[0].set(title="training pairs: straight lines that cross", xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
for j in range(40):
    axes[1].plot(exact_path[:, j, 0], exact_path[:, j, 1], color="C3", lw=0.6, alpha=0.8)
axes[1].set(title="the ODE of the average velocity u*: curved, never crossing", xlim=(-3, 3), ylim=(-3, 3),
            aspect="equal")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2 · The course's ε-model is already a flow
#
# Divide the VP state by √ᾱ + √(1 − ᾱ):
#
# $$\frac{x_t}{\sqrt{\bar\alpha}+\sqrt{1-\bar\alpha}} = (1-\tau)\,x_0 + \tau\,\varepsilon, \qquad
# \tau = \frac{\sqrt{1-\bar\alpha}}{\sqrt{\bar\alpha}+\sqrt{1-\bar\alpha}} = \frac{\sigma}{1+\sigma}$$
#
# with σ = √((1 − ᾱ)/ᾱ) the σ-space level of notebook 05. So the VP path and the straight path visit the
# *same points*, rescaled, and a diffusion model's prediction gives the velocity u = ε̂ − x̂_0 (with
# x̂_0 = (x_t − √(1 − ᾱ) ε̂)/√ᾱ). Conversely, a velocity network's output u converts to
# ε̂ = (x_t + √ᾱ u)/(√ᾱ + √(1 − ᾱ)): that is what `prediction="flow"` does inside `dc.sample`.
#
# ### Exercise 10.2 — from the VP state to flow time
#
# Write `vp_to_flow(z, ab)`: z a batch of VP states, ab a float64 tensor (B,) of their ᾱ. Return (x_τ, τ):
# x_τ in the dtype of z, τ a tensor (B,) in the dtype of ab.

# %% tags=["exercise"]
def vp_to_flow(z, ab):
    """The point x_τ of the straight path and its flow time τ, for the VP state z at level ᾱ."""
    ### BEGIN SOLUTION
    a, s_ = ab.sqrt(), (1 - ab).sqrt()                              # √ᾱ, √(1 − ᾱ)
    scale = (a + s_).to(z.dtype).reshape(-1, *[1] * (z.dim() - 1))
    return z / scale, s_ / (a + s_)
    ### END SOLUTION


# %%
vp_to_flow = dc.checks.vp_to_flow(vp_to_flow)

# %% [markdown]
# Three numerical facts follow. (a) The exact ε-oracle, converted, *is* the exact velocity. (b) One Euler
# step in τ between two levels is exactly one DDIM step between them (expand x − Δτ (ε̂ − x̂_0) with
# x = (1 − τ) x̂_0 + τ ε̂: it is (1 − τ') x̂_0 + τ' ε̂). (c) So DDIM on the ε-model and Euler on its velocity
# walk the same trajectories, and the course's other samplers run a velocity model through
# `prediction="flow"`.

# %%
tau_check = torch.linspace(0.02, 0.99, n_eval, dtype=torch.float64)
x_check = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
as_velocity = flow.EpsAsVelocity(oracle, s)
print(f"(a) converted ε-oracle vs the exact velocity: largest difference "
      f"{float((as_velocity(x_check, tau_check) - flow.exact_velocity(oracle)(x_check, tau_check)).abs().max()):.1e}")

grid = s.grid(8, "trailing")
x_ddim = dc.sample(oracle, s, x_T, sampler="ddim", steps=8, spacing="trailing")
taus_grid = torch.cat([flow.tau_of_sigma(grid.sigmas[:-1]), torch.zeros(1, dtype=torch.float64)])
x1, tau1 = vp_to_flow(x_T, grid.alpha_bars[:1].expand(len(x_T)))
x_euler = flow.euler(as_velocity, x1, taus_grid)
print(f"(b) DDIM, 8 trailing steps, vs Euler in τ on the same levels: largest difference "
      f"{float((x_ddim - x_euler).abs().max()):.1e}; τ levels {[round(v, 3) for v in taus_grid.tolist()]}")


def exact_velocity_net(z, t):
    """A 'network' that outputs the exact velocity u at the VP state z, timestep t (prediction='flow')."""
    return flow.velocity_from_eps(oracle(z, t), z, 1 / (1 + s.t_to_sigma(t) ** 2))


for sampler in ("heun", "dpmpp_2m", "unipc"):
    a = dc.sample(oracle, s, x_T, sampler=sampler, steps=8, spacing="karras")
    b = dc.sample(exact_velocity_net, s, x_T, sampler=sampler, steps=8, spacing="karras", prediction="flow")
    print(f"(c) {sampler:9s} on the ε-oracle vs on the velocity 'network': largest difference "
          f"{float((a - b).abs().max()):.1e}")

# %% [markdown]
# The same is true of the course's MNIST model: its DDIM samples are Euler samples of its velocity field.

# %%
mnist, s_mnist = dc.load_pretrained("mnist")
x_T_img = torch.randn(n_img, 1, 28, 28, generator=torch.Generator().manual_seed(3)).to(device)
g_img = s_mnist.grid(path_steps, "trailing")
taus_img = torch.cat([flow.tau_of_sigma(g_img.sigmas[:-1]), torch.zeros(1, dtype=torch.float64)])
with torch.no_grad():
    x_ddim_img = dc.sample(mnist, s_mnist, x_T_img, sampler="ddim", steps=path_steps, spacing="trailing")
    x1_img, _ = vp_to_flow(x_T_img, g_img.alpha_bars[:1].expand(n_img))
    x_euler_img, path_img = flow.euler(flow.EpsAsVelocity(mnist, s_mnist), x1_img, taus_img, return_path=True)
print(f"MNIST, {path_steps} steps: DDIM vs Euler in τ on the course model, largest difference "
      f"{float((x_ddim_img - x_euler_img).abs().max()):.1e}")

# %% [markdown]
# ## 3 · How straight are the paths?
#
# If a path were a straight line walked at constant speed, one Euler step would follow it exactly. Liu et
# al. (2023) measure the departure from that as
#
# $$S = \int_0^1 \mathbb E\,\big\| (x_1 - x_0) - u(x_\tau, \tau) \big\|^2 \, d\tau,$$
#
# zero for straight paths. On a discretised path with states at levels τ_0 > τ_1 > … > τ_K, the segment
# velocity is u_k = (x_k − x_{k+1})/Δτ_k, the chord velocity (x_0 − x_K)/(τ_0 − τ_K), and
# S ≈ Σ_k Δτ_k E‖chord − u_k‖² / (τ_0 − τ_K).
#
# ### Exercise 10.3 — straightness
#
# Write `straightness(path, taus)`: `path` a list of tensors (B, ...), one per level, `taus` the decreasing
# levels. Average ‖·‖² (summed over all but the batch dimension) over the batch; return a Python float.

# %% tags=["exercise"]
def straightness(path, taus):
    """Liu et al.'s straightness S of a discretised path (0: straight at constant speed)."""
    ### BEGIN SOLUTION
    taus = [float(t) for t in taus]
    span = taus[0] - taus[-1]
    chord = (path[0] - path[-1]).double() / span
    total = 0.0
    for k in range(len(path) - 1):
        dt = taus[k] - taus[k + 1]
        u_k = (path[k] - path[k + 1]).double() / dt
        total += dt * float((chord - u_k).pow(2).flatten(1).sum(1).mean())
    return total / span
    ### END SOLUTION


# %%
straightness = dc.checks.straightness(straightness)

# %%
S_exact = straightness(list(exact_path), taus_many)
S_mnist = straightness(path_img, taus_img)
print(f"eight Gaussians, exact ODE (100 Euler steps): S = {S_exact:.3f}  (E‖x_1 − x_0‖² = "
      f"{float((exact_path[0] - exact_path[-1]).pow(2).sum(1).mean()):.2f})")
print(f"MNIST, the course model's ODE ({path_steps} steps, {n_img} images): S = {S_mnist:.1f}  (E‖x_1 − x_0‖² = "
      f"{float((path_img[0] - path_img[-1]).pow(2).flatten(1).sum(1).mean()):.0f})")

# %% [markdown]
# ## 4 · Rectified flow: straighten the paths by re-pairing (Liu et al. 2023)
#
# The paths bend because independent pairs (x_0, ε) cross. **Reflow** removes the crossings: draw noise ε,
# run the trained model's ODE to its sample x_0 = ODE(ε), and fit a new velocity model on the straight
# lines between these *coupled* pairs with the same flow-matching loss. The new model's paths are straighter
# (Liu et al. prove the coupling's transport cost cannot increase), so few Euler steps follow them — and
# repeating it ("k-rectified flow") straightens them further.
#
# On toy data, in three steps: (1) flow matching from scratch, independent pairs; (2) pairs from its ODE;
# (3) reflow, starting from the first model's weights (`flow.fit_velocity`; a `distill.ToyMLP` outputs the
# velocity).

# %%
fm_net = distill.ToyMLP()
t0 = time.perf_counter()
fm_losses = flow.fit_velocity(fm_net, s, x_data, iters=fm_iters, generator=torch.Generator().manual_seed(4))
print(f"flow matching from scratch: {fm_iters} updates in {time.perf_counter() - t0:.1f} s")

flow_recipe = dict(sampler="ddim", spacing="trailing", prediction="flow")  # DDIM on a velocity = Euler in τ
with torch.no_grad():
    eps_pairs = torch.randn(n_data, 2, generator=torch.Generator().manual_seed(5))
    x0_pairs = dc.sample(fm_net, s, eps_pairs, steps=50, **flow_recipe)
rf_net = copy.deepcopy(fm_net)
t0 = time.perf_counter()
rf_losses = flow.fit_velocity(rf_net, s, x0_pairs, eps_pairs, iters=reflow_iters,
                              generator=torch.Generator().manual_seed(6))
print(f"reflow on {n_data} pairs: {reflow_iters} updates in {time.perf_counter() - t0:.1f} s")


def toy_path(net, steps=50):
    """Euler in τ with the network's velocity over `steps` trailing levels: (final sample, path, levels)."""
    gr = s.grid(steps, "trailing")
    lv = torch.cat([flow.tau_of_sigma(gr.sigmas[:-1]), torch.zeros(1, dtype=torch.float64)])
    with torch.no_grad():
        final, info = dc.sample(net, s, x_T.float(), steps=steps, return_info=True, **flow_recipe)
    states = [flow.vp_to_flow(xt, gr.alpha_bars[k])[0] for k, (xt, _) in enumerate(info.trajectory)]
    return final, states + [final], lv


fig, axes = plt.subplots(2, 4, figsize=(16, 8))
for row, (name, net) in enumerate((("flow matching", fm_net), ("reflow", rf_net))):
    x_ref, states, lv = toy_path(net)
    S = straightness(states, lv)
    pth = torch.stack(states)
    for j in range(30):
        axes[row, 0].plot(pth[:, j, 0], pth[:, j, 1], color="C3" if row == 0 else "C2", lw=0.6)
    axes[row, 0].set(title=f"{name}: paths, S = {S:.3f}", xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
    for col, steps in enumerate((1, 2, 4), start=1):
        with torch.no_grad():
            x = dc.sample(net, s, x_T.float(), steps=steps, **flow_recipe)
        err = float((x - x_ref).pow(2).sum(1).mean().sqrt())
        dc.viz.scatter_2d(x, ax=axes[row, col], lim=2.5,
                          title=f"{name}, {steps} Euler step{'s' * (steps > 1)}\nspread {oracle.spread(x):.2f}, "
                                f"off its 50-step ODE {err:.2f}")
plt.tight_layout()
dc.course.save_figure(fig, "10_toy_reflow.png", FIGURES)
plt.show()

# %% [markdown]
# After one reflow, one Euler step lands about where 50 steps of the first model do: the straightness S
# dropped, and with it the error of a big step. The price: a reflowed model can only be as good as the
# samples it was paired with — it copies the first model's ODE map, errors included — and a second ODE run
# over the training set is needed to make the pairs.
#
# ## 5 · Reflow of the course's MNIST model
#
# `benchmarks/reflow_mnist.py` pairs 6,000 noise images with the course model's DPM-Solver++ samples
# (20 Karras steps), and fine-tunes the course U-Net, its output now read as the velocity, on the straight
# lines between them. The shipped result is `mnist_reflow`; its manifest names the recipe: DDIM with
# `prediction="flow"`, which is Euler in flow time.

# %%
meta = dc.pretrained.manifest("mnist_reflow")
print("sampling recipe:", meta["sampling"])
print("reflow:", {k: v for k, v in meta["reflow"].items() if k != "init_sha256"},
      f"— {meta['steps']} updates, {meta['wall_time_s'] / 60:.0f} min of training")
rmodel, _ = dc.load_pretrained("mnist_reflow")
with torch.no_grad():
    x_rf, info_rf = dc.sample(rmodel, s_mnist, x_T_img, steps=path_steps, return_info=True, **flow_recipe)
    rf_states = [flow.vp_to_flow(xt.to(device), g_img.alpha_bars[k])[0]
                 for k, (xt, _) in enumerate(info_rf.trajectory)] + [x_rf]
print(f"straightness on the same {n_img} noise images, {path_steps} levels: course model S = {S_mnist:.1f}, "
      f"reflow model S = {straightness(rf_states, taus_img):.1f}")
rows = []
with torch.no_grad():
    for steps in (1, 2, 4):
        rows.append(dc.sample(rmodel, s_mnist, x_T_img[:16], steps=steps, **flow_recipe))
        rows.append(dc.sample(mnist, s_mnist, x_T_img[:16], sampler="ddim", steps=steps, spacing="trailing"))
fig, axes = plt.subplots(6, 1, figsize=(9, 1.0 * 6))
for k, (ax, x) in enumerate(zip(axes, rows, strict=True)):
    steps = (1, 2, 4)[k // 2]
    who = "mnist_reflow, Euler" if k % 2 == 0 else "the course model, DDIM"
    dc.viz.show_grid(x.clamp(-1, 1).cpu(), nrow=16, ax=ax, title=f"{who}, {steps} NFE")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · Equal-NFE comparison: straight paths, consistency, distillation, solvers
#
# The same benchmark as notebook 09 (`benchmarks/consistency_mnist.py compare`): every few-step model of the
# course and the training-free solvers on the same noise, 3 seeds of n = 1,000, FID from the course's MNIST
# classifier, with the real-vs-real floor.

# %%
few = dc.course.load_result("few_step.json")
if few is not None:
    stats = dc.metrics.seed_stats(few["rows"])                  # {(sampler, NFE): mean, std, seeds}
    for nfe in (1, 2, 4):
        ranked = sorted((k for k in stats if k[1] == nfe), key=lambda k: stats[k].mean)
        print(f"NFE {nfe}: " + " < ".join(f"{k[0]} {stats[k].mean:.2f}" for k in ranked))
    rf = "rectified flow (reflow)"
    for nfe in (1, 2, 4):
        if (rf, nfe) in stats:
            best = min((k for k in stats if k[1] == nfe and k[0] != rf), key=lambda k: stats[k].mean)
            print(f"at {nfe} NFE the reflow model (FID {stats[(rf, nfe)].mean:.2f}) "
                  f"{dc.metrics.verdict(stats[(rf, nfe)], stats[best])} the best other, {best[0]} "
                  f"(FID {stats[best].mean:.2f})")
for name in ("09_few_step.png",):
    path = dc.course.course_file("docs", "figures", name)
    if path is not None:
        display(Image(filename=str(path), width=760))

# %% [markdown]
# **Reading it.** Reflow and consistency tuning attack the same problem from two sides: reflow makes the
# trajectories straight so that a crude solver follows them; a consistency model learns the end points of
# curved trajectories directly. The reflow model inherits its teacher's ODE map (its pairs came from 20
# DPM-Solver++ steps of the course model), so it can at best reach that sampler's quality; a 1-step model
# needs one more stage, distilling the straightened flow (Liu et al. 2023; InstaFlow, 2023, does this for
# Stable Diffusion).
#
# ## 7 · Where the field goes next
#
# - *Straighter paths by construction.* Flow matching with optimal-transport or minibatch couplings (Tong et
#   al. 2023; Pooladian et al. 2023) pairs noise and data so paths cross less *before* any reflow; the large
#   text-to-image models of 2024–25 (Stable Diffusion 3, Flux) train rectified flows with the straight
#   path of section 1 and sample them with the course's samplers.
# - *Few-step models as a continuum.* Consistency models, their continuous-time versions (sCM, Lu & Song
#   2024), consistency trajectory models and shortcut models learn maps between *any* two levels, so one
#   model serves 1, 2 or 4 steps.
# - *Solver and path together.* The probability-flow ODE of notebook 05 is one path among many; choosing the
#   interpolation (VP, linear, cosine) changes how curved it is, and therefore how many steps any solver
#   needs. The change of variables of section 2 is the tool that lets one compare them.
#
# ## Summary
#
# - Flow matching regresses the velocity ε − x_0 of the straight path x_τ = (1 − τ) x_0 + τ ε; the model
#   learns the average velocity, whose ODE paths bend.
# - The VP path is the straight path rescaled: x_τ = x_t/(√ᾱ + √(1 − ᾱ)), τ = σ/(1 + σ). A diffusion model's
#   velocity is ε̂ − x̂_0; Euler in τ is DDIM; `prediction="flow"` runs a velocity model with every sampler.
# - Straightness S = ∫ E‖(x_1 − x_0) − u‖² dτ measures how far the paths are from lines; reflow re-pairs
#   noise with its own ODE samples and refits, straightening them so that 1–4 Euler steps suffice.
# - On MNIST, section 6 prints where the reflowed course model stands at equal NFE against the consistency
#   model, the distilled students and the solvers.
#
# **Read more:** Liu, Gong & Liu, *Flow Straight and Fast: Learning to Generate and Transfer Data with
# Rectified Flow* (ICLR 2023) · Lipman et al., *Flow Matching for Generative Modeling* (ICLR 2023) ·
# Albergo & Vanden-Eijnden, *Building Normalizing Flows with Stochastic Interpolants* (ICLR 2023) · Liu et
# al., *InstaFlow* (2023) · Esser et al., *Scaling Rectified Flow Transformers* (Stable Diffusion 3, 2024) ·
# Lipman et al., *Flow Matching Guide and Code* (Meta, 2024).

# %%
print(f"notebook run time: {time.perf_counter() - t_start:.0f} s ({'fast' if FAST else 'full'} mode, {device})")

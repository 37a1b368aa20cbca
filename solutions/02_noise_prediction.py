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
# # 02 · Noise prediction and the U-Net
#
# **Time:** CPU fast mode {{time:cpu_fast}} · CPU full {{time:cpu_full}} · GPU full {{time:gpu_full}}
# (≈ marks an estimate; how each was measured: docs/runtimes.json). Full mode on a CPU trains only a
# short demonstration run; the shipped weights come from a separate run (docs/results_training.md); on
# a GPU full mode includes it.
#
# **You will**
# - see why DDPM trains a network to predict the *noise* ε in x_t: the reparameterised posterior mean
#   (DDPM eq. 10–12) and the simple loss (eq. 14), and write that loss;
# - write the sinusoidal time embedding that tells the network which step t it is at;
# - take the course's U-Net apart: its stages, shapes and parameter counts;
# - train it with the package's trainer (a few steps here; the real run on a GPU in full mode), load
#   the shipped weights and look at what a trained ε-predictor does;
# - learn why sampling uses an exponential moving average (EMA) of the weights.
#
# **Exercises:** 2.1 the simple loss · 2.2 the sinusoidal time embedding.
#
# **Prerequisites:** notebook 01 (the closed form x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε); a little PyTorch
# (modules, `loss.backward()`, an optimiser step).

# %%
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Image, display

import ddpm_course as dc

device = dc.device()
print(f"device: {device}")

# %% tags=["parameters"]
FAST = dc.fast_mode()  # True when DDPM_COURSE_FAST=1

# %%
ON_GPU = device.type == "cuda"
n_eval = 32 if FAST else 128              # held-out digits for loss measurements
n_t_eval = 8 if FAST else 16              # timesteps for the loss-per-t curve
sample_steps = 10 if FAST else 50         # DDIM steps for sample grids (notebook 04 explains DDIM)
meta = dc.pretrained.manifest("mnist")   # how the shipped weights were made: command, steps, batch size, ...
# the package's trainer: a handful of steps in fast mode; in full mode on a GPU the run of the shipped weights
train_steps, train_batch = (6, 16) if FAST else ((meta["steps"], meta["batch_size"]) if ON_GPU else (100, 32))
_ = torch.manual_seed(0)

x_train, y_train = dc.data.load_mnist_subset("train")   # (4000, 1, 28, 28) in [-1, 1], labels (4000,)
x_test, y_test = dc.data.load_mnist_subset("test")      # (1000, 1, 28, 28): never trained on
s = dc.NoiseSchedule.linear(T=1000)                     # DDPM's schedule, as in notebook 01

# %% [markdown]
# ## 1 · Why predict the noise?
#
# The reverse process goes back one step at a time with a Gaussian
# p_θ(x_{t−1} | x_t) = 𝒩(μ_θ(x_t, t), σ_t² I) (DDPM eq. 1 and §3.2). Its ideal mean is the mean of the
# *forward posterior* q(x_{t−1} | x_t, x_0), which notebook 03 derives (DDPM eq. 6–7):
#
# $$\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
#     + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t .$$
#
# It needs x_0, which the sampler does not have. But x_t and x_0 are tied by notebook 01's closed form,
# x_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t. Substituting it and simplifying (**DDPM eq. 10**):
#
# $$\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon\Big).$$
#
# x_t is known to the sampler; only ε is missing. So DDPM lets the network predict ε and plugs the
# prediction in (**eq. 11**): μ_θ(x_t, t) = (x_t − β_t/√(1 − ᾱ_t) · ε_θ(x_t, t))/√α_t. Let us confirm
# eq. 10 numerically: the posterior mean from (x_0, x_t) and from (x_t, ε) agree to rounding error.

# %%
g = torch.Generator().manual_seed(0)
x0, t = x_test[:6], torch.tensor([0, 10, 100, 400, 700, 999])
eps = torch.randn(x0.shape, generator=g)
x_t = dc.q_sample(x0, t, eps, s)

mean_from_x0, _ = dc.diffusion.posterior_mean_variance(x0, x_t, t, s)  # eq. 7
a, b, ab = (v[t].float().reshape(-1, 1, 1, 1) for v in (s.alphas, s.betas, s.alpha_bars))
mean_from_eps = (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()           # eq. 10
print("largest difference between eq. 7 and eq. 10:", float((mean_from_x0 - mean_from_eps).abs().max()))

# %% [markdown]
# With eq. 11, the KL term of the variational bound at step t becomes a squared error on ε
# (**DDPM eq. 12**):
#
# $$L_{t-1} - C = \mathbb E_{x_0,\varepsilon}\Big[\frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)}
#    \big\lVert \varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t)\big\rVert^2\Big].$$
#
# Ho et al. found that *dropping the weight* trains better and gives better samples (§3.4, §4.2 and
# Table 2): the **simple loss** (**eq. 14**) draws t uniformly and regresses ε with unit weight,
#
# $$L_\text{simple}(\theta) = \mathbb E_{t,\,x_0,\,\varepsilon}
#    \big\lVert \varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ t)\big\rVert^2 .$$
#
# The plot shows the weight eq. 14 throws away (with σ_t² = β_t, the weight is β_t / (2 α_t (1 − ᾱ_t))):
# at t = 1 it is 0.5, about 100 times its smallest value (0.005) and 70 times its median, and it falls
# off fast (0.07 at t = 10), although at small t the noise is tiny and removing it barely changes the image. Relative to the bound, L_simple gives more weight to the larger t,
# where denoising is hard — the part that matters for samples. Two more reasons for ε: it is a target
# of unit variance at every t (a well-scaled regression problem), and −ε_θ/√(1 − ᾱ_t) is an estimate of
# the score ∇ log q(x_t), linking DDPM to denoising score matching (DDPM §3.2).

# %%
w = s.betas ** 2 / (2 * s.betas * s.alphas * (1 - s.alpha_bars))   # eq. 12 weight with σ_t² = β_t
w_min_snr = dc.diffusion.min_snr_weight(torch.arange(s.T), s, gamma=5.0)   # min(SNR, 5)/SNR
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.semilogy(range(1, s.T + 1), w.numpy(), label="eq. 12 (from the bound)")
ax.axhline(1.0, color="C1", label="eq. 14 (simple loss)")
ax.semilogy(range(1, s.T + 1), w_min_snr.numpy(), color="C2", label="min-SNR-5 (the course model)")
ax.set(xlabel="t", ylabel="weight of ‖ε − ε_θ‖²", title="How the losses weight the timesteps")
ax.legend(fontsize=8)
plt.show()
print(f"min-SNR-5 weight: {float(w_min_snr[0]):.4f} at t = 1, 1 from t = {int((w_min_snr < 1).sum()) + 1} on")

# %% [markdown]
# The simple loss is not the last word. Its unit weight still spends much of the training signal on the
# nearly clean timesteps, where ε is easy to guess and the gradients of different t pull the shared
# weights in conflicting directions. **Min-SNR-γ** (Hang et al. 2023, eq. 9 for an ε-target) caps the
# signal-to-noise ratio SNR(t) = ᾱ_t/(1 − ᾱ_t) in the weight,
#
# $$w_t = \frac{\min(\mathrm{SNR}(t),\ \gamma)}{\mathrm{SNR}(t)},\qquad \gamma = 5,$$
#
# which is 1 (the simple loss) wherever SNR(t) ≤ γ, the noisy steps that decide what a sample looks like,
# and shrinks the weight of the clean end (the green curve). The paper reports 3.4× faster convergence.
# The course model is trained with it (`TrainConfig(loss_weighting="min_snr")`), because the course
# measured it: two runs with the same recipe, one with each weighting, scored after 400 and 800 steps
# (`benchmarks/results/learning_curve.md`, FID on 500 samples of DPM-Solver++(2M) with 10 steps): with
# min-SNR the class-conditional FID was 6.5 and then 0.81, with the simple loss 8.9 and 2.35.

# %% [markdown]
# ### Exercise 2.1 — the simple loss
#
# Write `simple_loss(model, x0, t, noise, s)`, one Monte-Carlo estimate of eq. 14 with the timesteps
# `t` (LongTensor (B,), 0-based) and the noise `noise` (shape of `x0`) already drawn:
#
# 1. noise the batch with the closed form: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (use `dc.q_sample` or your
#    notebook 01 version);
# 2. call the network: `eps_hat = model(x_t, t)`;
# 3. return the mean over all entries of (ε − ε̂)², as a 0-dim tensor (not a Python float: training
#    calls `.backward()` on it).

# %% tags=["exercise"]
def simple_loss(model, x0, t, noise, s):
    """DDPM eq. 14 for given t and ε: mean of (ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t))²."""
    ### BEGIN SOLUTION
    x_t = dc.q_sample(x0, t, noise, s)
    return torch.mean((noise - model(x_t, t)) ** 2)
    ### END SOLUTION


# %%
simple_loss = dc.checks.simple_loss(simple_loss)

# %% [markdown]
# A baseline worth remembering: a network that always answers ε̂ = 0 scores E[ε²] = 1. A freshly built
# course U-Net is exactly such a network (its output layer starts at zero, so training starts from a
# stable point), and your loss confirms it. Whatever the network learns must bring the loss below 1.

# %%
fresh = dc.UNet("mnist").to(device)
t_rand = torch.randint(0, s.T, (n_eval,), generator=g)
noise = torch.randn(x_test[:n_eval].shape, generator=g)
with torch.no_grad():
    print("simple loss of an untrained U-Net:", float(simple_loss(fresh, x_test[:n_eval].to(device),
                                                                  t_rand.to(device), noise.to(device), s)))

# %% [markdown]
# ## 2 · Telling the network the time: sinusoidal embeddings
#
# The same network serves all 1000 steps, and what it should do depends strongly on t: at t = 10 the
# noise is a faint speckle on a clear digit, at t = 900 the digit is a faint trace in the noise. So t
# is an input. A single number is a poor input for a network, so DDPM encodes it the way the
# Transformer encodes token positions (Vaswani et al. 2017, §3.5; DDPM App. B): a vector of sines and
# cosines at geometrically spaced frequencies. In the form the course's U-Net uses, for an even width d
# and k = 0, …, d/2 − 1,
#
# $$\omega_k = 10000^{-k/(d/2)},\qquad
#   \mathrm{emb}(t) = \big[\cos(t\,\omega_0), \dots, \cos(t\,\omega_{d/2-1}),\ \sin(t\,\omega_0), \dots, \sin(t\,\omega_{d/2-1})\big].$$
#
# Fast frequencies (k near 0) separate neighbouring steps; slow ones (ω down to 10⁻⁴) change smoothly over
# the whole range, so nearby t get similar vectors. An MLP then maps emb(t) to the vector each ResBlock
# adds to its features. (DDPM's TensorFlow code puts the sines first and divides by d/2 − 1 in the
# exponent; any fixed convention works, but a trained network needs the one it was trained with.)

# %% [markdown]
# ### Exercise 2.2 — the sinusoidal time embedding
#
# Write `timestep_embedding(t, dim)`: `t` is a tensor (B,) of timesteps — integers, or floats for
# samplers that land between steps — and `dim` an even width. Return the float32 tensor (B, dim) above:
# all the cosines first, then all the sines. (Hint: `torch.arange(dim // 2)` gives k; compute `t.float()`
# times the frequencies as a (B, dim/2) outer product.)

# %% tags=["exercise"]
def timestep_embedding(t, dim):
    """[cos(t ω_k), sin(t ω_k)] with ω_k = 10000^(−k/(dim/2)), k = 0 … dim/2 − 1: a (B, dim) float32 tensor."""
    ### BEGIN SOLUTION
    half = dim // 2
    omega = 10000.0 ** (-torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * omega[None, :]                       # (B, dim/2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)    # (B, dim)
    ### END SOLUTION


# %%
timestep_embedding = dc.checks.timestep_embedding(timestep_embedding)

# %% [markdown]
# Left: the embedding of every t (rows) at the U-Net's width — the first half of the columns are cosines,
# the second half sines, fast frequencies on the left of each half, slow ones on the right. Right: the
# cosine similarity between the embeddings of two timesteps. It is 1 on the diagonal, drops quickly over
# the first few steps (the fast frequencies tell neighbours apart) and then slowly (the slow frequencies
# give a coarse position), and not monotonically, since the slow frequencies beat against each other: at
# the U-Net's width 32 the code below prints about 0.58 for steps 100 apart, 0.21 for 150, 0.51 for 200 and
# 0.12 for 800.

# %%
width = dc.unet.get_config("mnist").base_channels
emb = timestep_embedding(torch.arange(s.T), width)                       # (1000, width)
unit = emb / emb.norm(dim=1, keepdim=True)
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
im = a.imshow(emb.numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
a.set(xlabel="embedding dimension", ylabel="t − 1", title=f"emb(t), width {width}")
fig.colorbar(im, ax=a)
im = b.imshow((unit @ unit.T).numpy(), cmap="viridis")
b.set(xlabel="t' − 1", ylabel="t − 1", title="cosine similarity of emb(t) and emb(t')")
fig.colorbar(im, ax=b)
fig.tight_layout()
plt.show()
similarity = unit @ unit.T
print("cosine similarity, steps apart: " + ", ".join(f"{d}: {float(similarity.diagonal(d).mean()):.2f}"
                                                      for d in (1, 10, 100, 150, 200, 800)))

# %% [markdown]
# ## 3 · The U-Net, stage by stage
#
# ε_θ must return an image-shaped tensor, use context from the whole 28 × 28 digit, and keep pixel-level
# detail. DDPM's answer (App. B), inherited from PixelCNN++, is a **U-Net**: a downsampling path of
# residual blocks that halves the resolution level by level, a middle block with self-attention at the
# lowest resolution, and an upsampling path that concatenates the stored activations of the way down
# (the *skip connections*) so fine detail need not pass through the bottleneck. Every residual block
# receives the time embedding (and, for this class-conditional model, a label embedding added to it) and
# adds it to its feature channels.
#
# Below: the course model as shipped (`dc.load_pretrained("mnist")` returns the network and its noise
# schedule), its configuration and size; then every stage with the shape of its output for a batch of
# one digit (recorded with forward hooks) and its parameter count.

# %%
model, s_model = dc.load_pretrained("mnist")
assert torch.equal(s_model.alpha_bars, s.alpha_bars), "the shipped model uses DDPM's linear schedule"
print(model.config)
print(f"{dc.unet.count_parameters(model):,} parameters; null label (for classifier-free guidance): "
      f"{model.null_label}")

# %%
def trace(model, x, t, y=None):
    """(name, module, output shape) of every stage, in the order the forward pass runs them."""
    stages, hooks = [], []
    for name, m in model.named_modules():
        outer_conv = name in ("conv_in", "conv_out") or name.startswith(("downsample.", "upsample."))
        if isinstance(m, (dc.unet.ResBlock, dc.unet.Attention)) or (outer_conv and isinstance(m, torch.nn.Conv2d)):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: stages.append((name, mod, tuple(out.shape[1:])))))
    try:
        with torch.no_grad():
            model(x, t, y)
    finally:
        for h in hooks:
            h.remove()
    return stages

stages = trace(model, x_test[:1].to(device), torch.tensor([500], device=device))
print(f"{'stage':24s} {'module':10s} {'output (C, H, W)':>17s} {'parameters':>11s}")
for name, m, shape in stages:
    print(f"{name:24s} {type(m).__name__:10s} {str(shape):>17s} {dc.unet.count_parameters(m):>11,}")

# %% [markdown]
# Parameters per part of the network. The embeddings are cheap. The up path holds the most, because its
# ResBlocks take the concatenated skip connections as extra input channels; and the levels with the most
# channels (14 × 14 and 7 × 7) hold more than the full-resolution one.

# %%
def part(name):
    top = name.split(".")[0]
    return {"time_mlp": "time embedding MLP", "label_emb": "label embedding", "conv_in": "input conv",
            "down": "down path", "downsample": "down path", "mid1": "middle", "mid_attn": "middle",
            "mid2": "middle", "up": "up path", "upsample": "up path", "norm_out": "output",
            "conv_out": "output"}[top]

counts = {}
for name, p in model.named_parameters():
    counts[part(name)] = counts.get(part(name), 0) + p.numel()
total = sum(counts.values())
for k, v in counts.items():
    print(f"{k:20s} {v:>10,}  {v / total:6.1%}")
print(f"{'total':20s} {total:>10,}")

# %% [markdown]
# The same information as a picture of the "U", drawn from the traced shapes (resolution falls going
# down, channels rise; each arrow → is a skip connection concatenated on the way up):

# %%
def u_diagram(stages):
    """One line per resolution: the stages of the down path on the left, of the up path on the right."""
    by_res = {}
    for name, m, (c, h, _w) in stages:
        side = "up" if name.startswith(("up", "conv_out")) else "mid" if name.startswith("mid") else "down"
        by_res.setdefault(h, {"down": [], "mid": [], "up": []})[side].append(f"{type(m).__name__[:4]}{c}")
    lines = []
    for h, sides in sorted(by_res.items(), reverse=True):
        down, up = " ".join(sides["down"]), " ".join(sides["up"])
        lines.append(f"{h:>3}×{h:<3} {down:>44s}  ──skips──▶  {up}")
        if sides["mid"]:
            lines.append(f"{'':41s}└──▶ middle: {' '.join(sides['mid'])} ──┘")
    return "\n".join(lines)

print("(Res = ResBlock, Atte = self-attention, Conv = convolution; the number is the output channels)\n")
print(u_diagram(stages))

# %% [markdown]
# One residual block in full. `emb` is the linear map that turns the 4·C-wide time(+label) embedding into
# one number per channel, added to the features after the first convolution:

# %%
print(model.down[0].blocks[0])

# %% [markdown]
# ## 4 · Training
#
# Training is **DDPM Algorithm 1**, eq. 14 with stochastic gradient descent:
#
# ```
# repeat
#     x_0 ~ data,  t ~ Uniform{1, …, T},  ε ~ N(0, I)
#     take a gradient step on  ∇_θ ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖²
# until converged
# ```
#
# Here is one step of it by hand, with your `simple_loss`, on a fresh U-Net and a small batch — the loss
# on the same batch goes down after the step:

# %%
net = dc.UNet("mnist").to(device)
opt = torch.optim.AdamW(net.parameters(), lr=5e-4)
x0_b = x_train[:8].to(device)
t_b = torch.randint(0, s.T, (8,), generator=g).to(device)
eps_b = torch.randn(x0_b.shape, generator=g).to(device)
net.eval()  # no dropout, so the two evaluations are comparable
loss = simple_loss(net, x0_b, t_b, eps_b, s)
opt.zero_grad()
loss.backward()
opt.step()
with torch.no_grad():
    print(f"loss before the step {float(loss):.4f}, after {float(simple_loss(net, x0_b, t_b, eps_b, s)):.4f}")

# %% [markdown]
# A real run needs more than that loop, and `dc.train` has it: AdamW with a linear warm-up and then a
# cosine decay of the learning rate to 0 (or a constant one), the min-SNR weighting above, gradient
# clipping, mixed precision on GPUs, atomic checkpoints that can be resumed, DDP over several GPUs, an EMA
# of the weights (section 6) and label dropout (section 7). The shipped weights were made by this
# command (from their manifest):

# %%
print(meta["command"])
print(f"{meta['steps']} steps, batch {meta['batch_size']}, EMA decay {meta['ema_decay']}, "
      f"{meta['wall_time_s'] / 60:.0f} min of training on the machine that made it")

# %% [markdown]
# The next cell runs the same trainer from Python: `train_steps` steps with batch `train_batch` on the
# 4,000 bundled training digits. In fast mode that is a handful of steps (enough to see the machinery
# work, not to learn digits); in full mode on a GPU it is the run of the shipped weights (the steps and
# batch size of their manifest, a few minutes); in full mode on a CPU 100 steps of 32. The checkpoint goes
# to a temporary folder.

# %%
run_dir = Path(tempfile.mkdtemp(prefix="ddpm_course_02_"))
cfg = dc.train.TrainConfig(model="mnist", data="mnist_subset", steps=train_steps, batch_size=train_batch,
                           checkpoint_every=min(200, train_steps), sample_every=-1)
start = time.perf_counter()
last = dc.train.train(cfg, run_dir, data=(x_train, y_train), progress=True)
print(f"{train_steps} steps in {time.perf_counter() - start:.0f} s; checkpoint: {last}")

# %% [markdown]
# The trainer logs the smoothed loss every 50 steps and at the last step to `log.jsonl` in the run
# folder. Fast mode has only that last entry. Below it, the curve of the run that produced the shipped
# weights, made from its log (`benchmarks/training_figures.py`). Its loss is the min-SNR-weighted one,
# which sits below the simple loss because the weights are ≤ 1: it falls from about 0.8 to 0.02 within
# 500 steps, then improves slowly to 0.013 while the learning rate (dashed) decays to zero.

# %%
def read_log(run_dir):
    path = Path(run_dir) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

log = read_log(run_dir)
if len(log) > 1:
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot([r["step"] for r in log], [r["loss"] for r in log])
    ax.set(xlabel="step", ylabel="simple loss (smoothed)", yscale="log", title=f"this run ({train_steps} steps)")
    plt.show()
else:
    print("log of this run:", log)

dc.course.show_figure("02_training_loss.png")        # the long run's loss curve, committed in docs/figures

# %% [markdown]
# ## 5 · What a trained ε-predictor does
#
# Now the shipped model. First, samples: starting from pure noise x_T, a sampler calls ε_θ again and
# again (notebooks 03–05 are about exactly how). Here DDIM with `sample_steps` steps, one sample per
# class label 0–9:

# %%
x_T = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(1)).to(device)
labels = torch.arange(10, device=device)
samples = dc.sample(model, s, x_T, sampler="ddim", steps=sample_steps, y=labels, progress=True)
dc.viz.show_row(samples, labels=[f"y = {i}" for i in range(10)], title=f"shipped weights, DDIM, {sample_steps} steps")
plt.show()

# %% [markdown]
# What the network sees and answers, for one held-out digit at several t: the input x_t, the true noise
# ε, the prediction ε̂ = ε_θ(x_t, t), and the denoised guess x̂_0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t
# (eq. 4 solved for x_0). At small t, x̂_0 is practically the digit itself: ε̂ is only a rough guess of
# the faint noise, but its error is multiplied by the tiny √(1 − ᾱ_t)/√ᾱ_t. At large t it is the other way
# round: x_t is almost pure noise, so ε̂ ≈ x_t is easy, while x̂_0 first turns into a blurry "average
# digit" of the right class (around t = 600: the best guess in squared error when little information is
# left), and near t = T the division by the tiny √ᾱ_t blows every small error of ε̂ up into noise. This is
# why a sampler walks down in many steps instead of jumping from x_T to x̂_0 in one.

# %%
ts = torch.tensor([20, 100, 250, 400, 600, 800, 999])
x0_one = x_test[:1].expand(len(ts), -1, -1, -1).to(device)
eps_one = torch.randn(x0_one.shape[1:], generator=torch.Generator().manual_seed(2)).expand_as(x0_one).to(device)
x_t = dc.q_sample(x0_one, ts, eps_one, s)
with torch.no_grad():
    eps_hat = model(x_t, ts.to(device), y_test[:1].expand(len(ts)).to(device))
x0_hat = dc.diffusion.eps_to_x0(x_t, eps_hat, s.alpha_bars[ts])
rows = {"x_t": x_t, "ε (true)": eps_one / 3, "ε̂ = ε_θ(x_t, t)": eps_hat / 3, "x̂_0": x0_hat.clamp(-1, 1)}
fig, axes = plt.subplots(len(rows), len(ts), figsize=(1.3 * len(ts), 1.45 * len(rows)))
for r, (label, imgs) in enumerate(rows.items()):
    for c in range(len(ts)):
        axes[r, c].imshow(dc.viz.to_numpy_image(imgs[c]), cmap="gray", vmin=0, vmax=1)
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
        if r == 0:
            axes[r, c].set_title(f"t = {int(ts[c]) + 1}", fontsize=9)
    axes[r, 0].set_ylabel(label, fontsize=9)
fig.suptitle("noise drawn scaled by 1/3 to fit the gray range", fontsize=8, y=0.01)
fig.tight_layout()
plt.show()

# %% [markdown]
# The loss per timestep on held-out digits tells the same story in numbers. For small t the noise is
# hard to separate from the digit's own pixels (ε has to be read off a tiny perturbation) and the loss is
# highest; for large t x_t is nearly ε itself and predicting it is easy. Everything stays below the
# untrained baseline of 1.

# %%
def loss_per_t(model, t_values, n, seed=3):
    """Simple loss on n held-out digits (with their labels) at each timestep, the same ε for all t."""
    gen = torch.Generator().manual_seed(seed)
    x0, y = x_test[:n].to(device), y_test[:n].to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    out = []
    with torch.no_grad():
        for t in t_values:
            t_batch = torch.full((n,), int(t), dtype=torch.long)
            out.append(float(dc.diffusion.simple_loss(model, x0, s, y=y, t=t_batch, noise=noise)))
    return out

t_values = torch.linspace(0, s.T - 1, n_t_eval).round().long()
per_t = loss_per_t(model, t_values, n_eval)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.plot((t_values + 1).numpy(), per_t, "o-", ms=3, label="shipped weights (EMA)")
ax.axhline(1.0, color="gray", ls="--", label="ε̂ = 0 (untrained)")
ax.set(xlabel="t", ylabel="simple loss", yscale="log", title=f"Held-out loss per t ({n_eval} digits)")
ax.legend()
plt.show()
print(f"average over t: {sum(per_t) / len(per_t):.4f}")

# %% [markdown]
# ## 6 · EMA: the weights one samples with
#
# SGD never settles: with a constant learning rate the weights keep jittering around a good region, and
# each gradient step drags them towards whatever the last mini-batch (with its random t and ε) favoured.
# Sampling runs the network hundreds of times, and a jittered network makes a slightly different error
# at each call. The fix used by DDPM (App. B: decay 0.9999) and almost every diffusion model since is an
# **exponential moving average** of the weights, kept beside the trained ones:
#
# $$\theta_\text{EMA} \leftarrow d\,\theta_\text{EMA} + (1-d)\,\theta \quad\text{after every step},$$
#
# an average over roughly the last 1/(1 − d) steps (1,000 for the course's d = 0.999). `dc.train.ema_update`
# does this, with the warm-up d_n = min(d, (1 + n)/(10 + n)) so the random initial weights are forgotten
# quickly. Only θ is trained; θ_EMA is what gets saved for sampling (`dc.load_pretrained` returns it).
#
# A toy first: SGD with noisy gradients on a two-parameter quadratic bowl. The raw iterate (grey) wanders
# around the minimum with a spread set by the learning rate; the EMA (red) is the average of that walk and
# sits much closer to the minimum.

# %%
toy = torch.nn.Linear(2, 1, bias=False)            # its 2 weights are the parameters θ
with torch.no_grad():
    toy.weight.copy_(torch.tensor([[2.5, -2.0]]))
toy_ema = torch.nn.Linear(2, 1, bias=False)
toy_ema.load_state_dict(toy.state_dict())
toy_opt = torch.optim.SGD(toy.parameters(), lr=0.05)
gen = torch.Generator().manual_seed(4)
path_raw, path_ema = [], []
for step in range(2000):
    loss = 0.5 * (toy.weight ** 2 * torch.tensor([1.0, 4.0])).sum()           # minimum at θ = 0
    toy_opt.zero_grad()
    loss.backward()
    toy.weight.grad += torch.randn(toy.weight.shape, generator=gen)           # mini-batch noise
    toy_opt.step()
    dc.train.ema_update(toy_ema, toy, decay=0.99, step=step)
    path_raw.append(toy.weight.detach().flatten().clone())
    path_ema.append(toy_ema.weight.detach().flatten().clone())
path_raw, path_ema = torch.stack(path_raw), torch.stack(path_ema)
fig, ax = plt.subplots(figsize=(4.2, 4))
ax.plot(path_raw[:, 0], path_raw[:, 1], color="0.6", lw=0.5, label="raw SGD iterate θ")
ax.plot(path_ema[:, 0], path_ema[:, 1], color="C3", lw=1.2, label="EMA, d = 0.99")
ax.plot([0], [0], "k*", ms=10, label="minimum")
ax.set(aspect="equal", title="SGD with noisy gradients")
ax.legend(fontsize=8)
plt.show()
tail = slice(1000, None)
print(f"mean distance to the minimum over the last 1000 steps: raw {path_raw[tail].norm(dim=1).mean():.3f}, "
      f"EMA {path_ema[tail].norm(dim=1).mean():.3f}")

# %% [markdown]
# Now the real thing. The checkpoint of the run in section 4 holds both weight sets ("model" and "ema").
# We compare their held-out loss on the same digits, t and ε (in full mode also samples from both, from
# the same x_T). Early in training — the few steps of fast mode, or the 100 CPU steps of full mode — the
# comparison can go either way, and the EMA is often *worse*: it averages over weights that are still
# improving quickly, so it lags behind them. The average pays off once the raw weights merely jitter
# around a good region. The figure under it was made the same way (256 held-out digits, DDIM with 50
# steps) from the final checkpoint of the run that produced the shipped weights, and there the two are
# the same: held-out loss 0.0244 for both, the same digits. That run decays the learning rate to zero
# (cosine), and a vanishing step size does what the EMA does — the raw weights stop jittering, and the
# average catches up with them. With a constant learning rate the EMA is what removes the jitter: the
# course's first model (`mnist_early`, constant rate) measured 0.0235 raw against 0.0223 EMA, and its raw
# weights left a speckle of noise in the samples.

# %%
ckpt = dc.train.load_checkpoint(last)
raw_model = dc.train.model_from_checkpoint(ckpt, ema=False).to(device)
ema_model = dc.train.model_from_checkpoint(ckpt, ema=True).to(device)
t_mix = torch.linspace(0, s.T - 1, n_eval).round().long()     # one t per digit, spread over [0, T-1]
noise = torch.randn(x_test[:n_eval].shape, generator=torch.Generator().manual_seed(5)).to(device)
with torch.no_grad():
    for label, m in (("raw", raw_model), ("EMA", ema_model)):
        loss = dc.diffusion.simple_loss(m, x_test[:n_eval].to(device), s, y=y_test[:n_eval].to(device),
                                        t=t_mix, noise=noise)
        print(f"step {ckpt['step']}: held-out simple loss with the {label} weights: {float(loss):.4f}")
if not FAST:
    pair = [dc.sample(m, s, x_T, sampler="ddim", steps=sample_steps, y=labels) for m in (raw_model, ema_model)]
    dc.viz.show_grid(torch.cat(pair), nrow=10, size=8, title="this run: raw weights (top), EMA weights (bottom)")
    plt.show()
dc.course.show_figure("02_ema_vs_raw.png")

# %% [markdown]
# The run folder (checkpoint with both weight sets, optimiser state and log) is no longer needed; skip
# the next cell to keep it.

# %%
shutil.rmtree(run_dir)

# %% [markdown]
# ## 7 · Label dropout: one network, conditional and unconditional
#
# The shipped model is class-conditional: `model(x_t, t, y)` with a digit label y, whose embedding is
# added to the time embedding. During training the trainer replaces each label with the extra **null
# label** (`model.null_label` = 10) with probability 0.2 (`TrainConfig.label_dropout`), so the same
# network also learns the unconditional ε_θ(x_t, t) — the call `model(x_t, t)` without y uses the null
# label. Having both is what **classifier-free guidance** (Ho & Salimans 2021) needs; notebook 08 uses it
# to trade diversity for class fidelity. A quick look: the same x_T, unconditional and conditional.

# %%
uncond = dc.sample(model, s, x_T, sampler="ddim", steps=sample_steps)
dc.viz.show_grid(torch.cat([uncond, samples]), nrow=10, size=8,
                 title="same x_T: unconditional (top), labels 0–9 (bottom)")
plt.show()

# %% [markdown]
# ## Summary
#
# - Substituting x_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t into the posterior mean gives
#   μ̃_t = (x_t − β_t/√(1 − ᾱ_t) · ε)/√α_t (DDPM eq. 10): knowing ε is knowing the reverse step, so the
#   network predicts ε (eq. 11). The variational bound weights ‖ε − ε_θ‖² by a t-dependent factor
#   (eq. 12); the simple loss drops it (eq. 14), and you wrote it.
# - t enters through sinusoidal embeddings (Transformer-style; cosines then sines at frequencies
#   10000^(−k/(d/2))), which you wrote, followed by an MLP; every ResBlock adds the result to its channels.
# - The course U-Net: 28 → 14 → 7 pixels, ResBlocks, self-attention at 7 × 7, skip connections
#   concatenated on the way up; about 1.6 M parameters, most of them in the up path.
# - Training = Algorithm 1 plus engineering (`dc.train`); the shipped weights come from the documented
#   command. A network that predicts 0 scores 1; the trained one is far below at every t, worst at small t.
# - Sample with the EMA of the weights: it averages out the jitter of SGD. Label dropout trains the
#   unconditional model inside the conditional one, for guidance in notebook 08.
#
# **Next:** notebook 03 uses ε_θ to run the reverse process: DDPM's ancestral sampler.
#
# **Papers**
# - J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models.* NeurIPS 2020 — eq. 10–12
#   (ε-parameterisation), eq. 14 (simple loss), Algorithm 1, App. B (U-Net, EMA).
# - A. Vaswani et al. *Attention Is All You Need.* NeurIPS 2017 — §3.5, sinusoidal position encodings.
# - O. Ronneberger, P. Fischer, T. Brox. *U-Net.* MICCAI 2015; T. Salimans et al. *PixelCNN++.* ICLR 2017
#   — the architecture DDPM adapted.
# - A. Nichol, P. Dhariwal. *Improved DDPM.* ICML 2021 — loss weighting and schedules revisited.
# - J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance.* 2022 — label dropout (notebook 08).

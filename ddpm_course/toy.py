"""2-D toy data and exact denoisers: the training-free oracle.

For data whose distribution we know in closed form, the best possible noise predictor
ε̂(x_t, t) = E[ε | x_t] is a formula, so samplers can be tested and compared with no training and no
model error. In σ-space (x̃ = x/√ᾱ = x_0 + σ ε) the optimal denoiser D(x̃, σ) = E[x_0 | x̃] gives
ε̂ = (x̃ − D)/σ.

* ``GaussianOracle``: x_0 ~ N(μ, s² I). D = μ + s²/(s² + σ²)(x̃ − μ), and the probability-flow ODE has
  the exact solution x̃(σ₁) = μ + (x̃(σ₀) − μ)·√(s² + σ₁²)/√(s² + σ₀²).
* ``MixtureOracle``: x_0 ~ Σ_k π_k N(μ_k, s_k² I). Given x̃, component k has posterior weight
  ∝ π_k N(x̃; μ_k, (s_k² + σ²) I) and D is the weighted sum of the per-component Gaussian denoisers.
  It is also class-conditional: ``model(x, t, y)`` with y = k uses component k alone, and
  y = ``null_label`` (= K) the whole mixture, so classifier-free guidance can be run exactly.

Both oracles are model callables ``eps = oracle(x, t)`` with t a tensor (B,): integer timesteps use
the schedule's ᾱ_t, fractional ones σ(t) from ``NoiseSchedule.t_to_sigma`` (log-σ interpolation, the
inverse of ``sigma_to_t``), so the oracle is exact on every grid, the Karras one included.
"""

from __future__ import annotations

import math

import torch

from .diffusion import per_sample
from .schedule import NoiseSchedule


# --- 2-D data sets, each (n, 2) with roughly unit scale ---------------------------------------------------
def two_moons(n: int, noise: float = 0.05, generator=None, dtype=torch.float32) -> torch.Tensor:
    """Two interleaved half circles (as scikit-learn's make_moons), centred."""
    u = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper[:, None], torch.stack([u.cos(), u.sin()], 1),
                    torch.stack([1 - u.cos(), 0.5 - u.sin()], 1))
    x = (x - torch.tensor([0.5, 0.25], dtype=torch.float64)) * 1.5
    return (x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)).to(dtype)


def swiss_roll(n: int, noise: float = 0.05, generator=None, dtype=torch.float32) -> torch.Tensor:
    """The 2-D swiss roll: the spiral (t cos t, t sin t), t ∈ [1.5π, 4.5π], scaled to about [−1.5, 1.5]."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator, dtype=torch.float64))
    x = torch.stack([t * t.cos(), t * t.sin()], 1) / 10
    return (x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)).to(dtype)


def eight_gaussians(n: int, radius: float = 1.5, std: float = 0.1, generator=None,
                    dtype=torch.float32) -> torch.Tensor:
    """Eight equal Gaussians on a circle; the same distribution as ``MixtureOracle.eight_gaussians``."""
    return MixtureOracle(None, *_eight_gaussian_parameters(radius, std)).sample(n, generator, dtype)[0]


def checkerboard(n: int, generator=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform on the 8 black squares of a 4×4 board covering [−2, 2]²."""
    col = torch.randint(0, 4, (n,), generator=generator)
    row = 2 * torch.randint(0, 2, (n,), generator=generator) + (col % 2)   # black: row + col even
    corner = torch.stack([col, row], 1).double() - 2
    return (corner + torch.rand(n, 2, generator=generator, dtype=torch.float64)).to(dtype)


DATASETS = {"two_moons": two_moons, "swiss_roll": swiss_roll, "eight_gaussians": eight_gaussians,
            "checkerboard": checkerboard}


def make(name: str, n: int, generator=None, dtype=torch.float32) -> torch.Tensor:
    """``n`` points (n, 2) from the toy data set ``name``."""
    if name not in DATASETS:
        raise ValueError(f"name must be one of {tuple(DATASETS)}, got {name!r}")
    return DATASETS[name](n, generator=generator, dtype=dtype)


# --- exact denoisers -----------------------------------------------------------------------------------
def _sigma(s: NoiseSchedule, t: torch.Tensor) -> torch.Tensor:
    """σ at the model timesteps t (B,): the table at integers, log-σ interpolation between them."""
    if s is None:
        raise ValueError("this oracle has no schedule (s=None): pass a NoiseSchedule to call it as a model")
    if not isinstance(t, torch.Tensor) or t.dim() != 1:
        raise TypeError(f"t must be a tensor of shape (B,), got {t!r:.60}")
    if t.is_floating_point():
        return s.t_to_sigma(t)
    t = t.cpu().long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) > s.T - 1):
        raise ValueError(f"t must lie in [0, T-1] = [0, {s.T - 1}]")
    return s.sigmas[t]


class GaussianOracle:
    """Exact ε̂ for data x_0 ~ N(mean, std² I); ``mean`` is a number or a tensor of one sample's shape."""

    def __init__(self, s: NoiseSchedule, mean=0.0, std: float = 1.0):
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std!r}")
        self.s, self.mean, self.std = s, torch.as_tensor(mean, dtype=torch.float64), float(std)

    def denoise(self, xs: torch.Tensor, sigma) -> torch.Tensor:
        """D(x̃, σ) = μ + s²/(s² + σ²)(x̃ − μ), with σ a number or a tensor (B,)."""
        sig = per_sample(torch.as_tensor(sigma, dtype=torch.float64).reshape(-1), xs)
        mu = self.mean.to(xs)
        return mu + self.std**2 / (self.std**2 + sig**2) * (xs - mu)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = _sigma(self.s, t)
        sig = per_sample(sigma, x)
        xs = x * (1 + sig**2).sqrt()                                      # x̃ = x/√ᾱ, ᾱ = 1/(1 + σ²)
        return (xs - self.denoise(xs, sigma)) / sig

    def ode_solution(self, xs0: torch.Tensor, sigma0: float, sigma1: float) -> torch.Tensor:
        """Exact probability-flow ODE solution in σ-space from x̃(σ₀) to x̃(σ₁)."""
        mu = self.mean.to(xs0)
        return mu + (xs0 - mu) * math.sqrt(self.std**2 + sigma1**2) / math.sqrt(self.std**2 + sigma0**2)

    def sample(self, n: int, shape=(2,), generator=None, dtype=torch.float32) -> torch.Tensor:
        x = torch.randn(n, *shape, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * x).to(dtype)


class MixtureOracle:
    """Exact ε̂ for x_0 ~ Σ_k weights_k N(means_k, stds_k² I); means (K, *shape), stds and weights (K,).

    Class-conditional: ``oracle(x, t, y)`` with y ∈ [0, K) uses that component only; y = ``null_label``
    (= K) the full mixture. Without y it is the unconditional mixture denoiser.
    """

    def __init__(self, s: NoiseSchedule | None, means, stds, weights=None):
        self.s = s
        self.means = torch.as_tensor(means, dtype=torch.float64)
        K = self.means.shape[0]
        self.stds = torch.as_tensor(stds, dtype=torch.float64).expand(K).clone()
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (K,) or not torch.all(w >= 0) or not math.isclose(float(w.sum()), 1.0, rel_tol=1e-9):
            raise ValueError(f"weights must be K = {K} non-negative numbers summing to 1, got {w.tolist()}")
        if not torch.all(self.stds > 0):
            raise ValueError(f"stds must be > 0, got {self.stds.tolist()}")
        self.weights, self.null_label = w, K

    @classmethod
    def eight_gaussians(cls, s: NoiseSchedule | None, radius: float = 1.5, std: float = 0.1) -> MixtureOracle:
        """The eight-Gaussians data set as a mixture (same parameters as ``eight_gaussians``)."""
        return cls(s, *_eight_gaussian_parameters(radius, std))

    def posterior_weights(self, xs: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """p(k | x̃) ∝ π_k N(x̃; μ_k, (s_k² + σ²) I), shape (B, K); σ (B,) float64."""
        d = xs[0].numel()
        var = self.stds.to(xs)[None] ** 2 + sigma.to(xs)[:, None] ** 2                     # (B, K)
        mu = self.means.to(xs).reshape(1, len(self.means), -1)
        dist2 = (xs.reshape(len(xs), 1, -1) - mu).pow(2).sum(-1)                            # ‖x̃ − μ_k‖²
        logp = self.weights.to(xs).log()[None] - 0.5 * d * var.log() - dist2 / (2 * var)
        w = (logp - logp.amax(1, keepdim=True)).exp()         # softmax by hand: torch.softmax is very slow
        return w / w.sum(1, keepdim=True)                      # on tiny float64 inputs with several threads

    def denoise(self, xs: torch.Tensor, sigma, y: torch.Tensor | None = None) -> torch.Tensor:
        """D(x̃, σ) = Σ_k p(k | x̃) [μ_k + s_k²/(s_k² + σ²)(x̃ − μ_k)]; with y, p(k | x̃, y)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(len(xs))
        w = self.posterior_weights(xs, sigma)
        if y is not None:
            y = y.to(xs.device).long()
            cond = y != self.null_label
            one_hot = torch.nn.functional.one_hot(y.clamp(max=self.null_label - 1), self.null_label)
            w = torch.where(cond[:, None], one_hot.to(w), w)
        s2 = self.stds.to(xs)[None] ** 2
        shrink = s2 / (s2 + sigma.to(xs)[:, None] ** 2)                                     # (B, K)
        flat, mu = xs.reshape(len(xs), 1, -1), self.means.to(xs).reshape(1, len(self.means), -1)
        D = (w[..., None] * (mu + shrink[..., None] * (flat - mu))).sum(1)
        return D.reshape(xs.shape)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None and (int(y.min()) < 0 or int(y.max()) > self.null_label):
            raise ValueError(f"y must lie in [0, K] = [0, {self.null_label}] (K = the null label)")
        sigma = _sigma(self.s, t)
        sig = per_sample(sigma, x)
        xs = x * (1 + sig**2).sqrt()
        return (xs - self.denoise(xs, sigma, y)) / sig

    def log_prob(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """log p_t(x_t) of the noisy data at timesteps t (B,), in the VP scale the model sees: x_t =
        √ᾱ x_0 + √(1 − ᾱ) ε is a mixture of N(√ᾱ μ_k, (ᾱ s_k² + 1 − ᾱ) I). Shape (B,), float64. Independent
        of the denoiser, so ∇ log p_t (by autograd or finite differences) checks the identity
        ∇ log p_t(x_t) = −ε̂(x_t, t)/√(1 − ᾱ_t) (notebook 03, §5)."""
        sig = _sigma(self.s, t).to(torch.float64)
        ab = (1 / (1 + sig**2)).to(x.device)[:, None]                                        # (B, 1)
        flat = x.to(torch.float64).reshape(len(x), 1, -1)                                    # (B, 1, d)
        d = flat.shape[-1]
        mu = self.means.to(x.device).reshape(1, len(self.means), -1) * ab.sqrt()[..., None]  # (B, K, d)
        var = ab * self.stds.to(x.device)[None] ** 2 + 1 - ab                                # (B, K)
        logp = (self.weights.to(x.device).log()[None] - 0.5 * d * torch.log(2 * math.pi * var)
                - (flat - mu).pow(2).sum(-1) / (2 * var))
        return torch.logsumexp(logp, dim=1)

    def spread(self, x: torch.Tensor) -> float:
        """RMS distance per coordinate from each sample to its nearest mixture mean: the components' std
        when a sampler draws the mixture exactly (0.1 for eight_gaussians), larger when samples smear out
        between the modes, smaller when they collapse onto them (the notebooks' measure of a toy sampler)."""
        d = torch.cdist(x.double().flatten(1), self.means.double().flatten(1)).min(1).values
        return float(d.pow(2).mean().div(self.means[0].numel()).sqrt())

    def sample(self, n: int, generator=None, dtype=torch.float32):
        """n draws from the mixture and their component labels: (x (n, *shape), k (n,))."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, *self.means.shape[1:], generator=generator, dtype=torch.float64)
        x = self.means[k] + self.stds[k].reshape(-1, *([1] * (z.dim() - 1))) * z
        return x.to(dtype), k


class Switched:
    """A deliberately imperfect model for experiments with model error: the ε̂ of ``high`` where σ > ``sigma``
    and of ``low`` at σ ≤ ``sigma`` (both oracles, or any model(x, t) on the schedule ``s``). E.g. a
    mixture with the wrong component width at high noise, exact below: where along the trajectory an error
    is made, and whether a sampler can still recover from it (notebook 05, the SDE view)."""

    def __init__(self, s: NoiseSchedule, high, low, sigma: float):
        if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and sigma > 0):
            raise ValueError(f"sigma must be a number > 0 (where the model switches), got {sigma!r}")
        if not (callable(high) and callable(low)):
            raise TypeError("high and low must be models, callable as model(x, t)")
        self.s, self.high, self.low, self.sigma = s, high, low, float(sigma)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        above = per_sample(_sigma(self.s, t) > self.sigma, x).bool()          # (B, 1, ...)
        return torch.where(above, self.high(x, t), self.low(x, t))


def _eight_gaussian_parameters(radius: float, std: float):
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([angles.cos(), angles.sin()], 1)
    return means, torch.full((8,), float(std), dtype=torch.float64)

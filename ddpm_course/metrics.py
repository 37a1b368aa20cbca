"""Evaluation: a domain classifier's features, FID and KID, digit classification, timing.

FID (Heusel et al. 2017) fits a Gaussian to the features of generated and of real images and measures
the Fréchet (2-Wasserstein) distance between the two Gaussians:

    FID = |μ₁ − μ₂|² + tr(C₁) + tr(C₂) − 2 tr((C₁^½ C₂ C₁^½)^½)        (Dowson & Landau 1982)

KID (Bińkowski et al. 2018, "Demystifying MMD GANs", §4) is the unbiased squared MMD between the two
feature sets with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged over random subsets.
It has no Gaussian assumption and no bias from small n, so it is the better number when n is small.

The "Inception" network of image-net FID is replaced by a small CNN trained on real MNIST digits
(benchmarks/train_classifier.py); its penultimate layer gives the features, its logits label the digits.
The reference set is the bundled subset's held-out ``test`` split (1,000 digits, 100 per class), never
seen by the classifier or the diffusion model. FID numbers are comparable only within one extractor,
reference set and sample size n; always report :func:`real_baseline` beside them.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

RANGE_TOL = 1e-3      # images may exceed [-1, 1] by this much (float round-off), not more
EIG_TOL = 1e-6        # eigenvalues above -EIG_TOL · λ_max count as round-off of a PSD matrix (see _sqrt_psd)


# --- the feature classifier ----------------------------------------------------------------------
class DigitClassifier(nn.Module):
    """A small VGG-style CNN: two blocks of two 3×3 convolutions, max-pooling, one hidden layer.

    ``features(x)`` is the hidden layer after its ReLU (the penultimate layer, used by FID/KID), times a
    fixed ``feature_scale`` set after training so that the training digits' features have mean square 1
    per coordinate (so xᵀy/d in KID's kernel is O(1), as with Inception features, and FID does not
    depend on the arbitrary scale training ended at). ``forward(x)`` returns the 10 logits.
    Input: images in [-1, 1] of shape (N, 1, 28, 28).
    """

    def __init__(self, width: int = 16, feature_dim: int = 64, num_classes: int = 10, dropout: float = 0.3):
        super().__init__()
        w = width
        self.conv = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                                       # 28 -> 14
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),                                                       # 14 -> 7
        )
        self.hidden = nn.Linear(2 * w * 7 * 7, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.register_buffer("feature_scale", torch.ones(()))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.hidden(self.conv(x).flatten(1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.penultimate(x) * self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.penultimate(x)))


# --- reference sets ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """What ``ref=`` names: an image shape, a feature network (shipped weights) and real images.

    A CIFAR-10 Inception reference would be one more entry with its own network and real images.
    """

    name: str
    shape: tuple[int, int, int]
    weights: str          # name of the shipped weights (ddpm_course/weights/<weights>.json)
    ref_split: str        # real images the statistics come from (held out)
    baseline_split: str   # other real images, for the real-vs-real floor


REFS = {"mnist": Reference("mnist", (1, 28, 28), "mnist_classifier", ref_split="test",
                           baseline_split="train")}


def _reference(ref: str) -> Reference:
    if not isinstance(ref, str) or ref not in REFS:
        raise ValueError(f"ref must be one of {sorted(REFS)}, got {ref!r}")
    return REFS[ref]


def real_images(split: str, ref: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled real digits of one split: (images in [-1, 1], float32 (N, 1, 28, 28); labels (N,))."""
    _reference(ref)
    from .data import load_mnist_subset

    return load_mnist_subset(split)


@lru_cache(maxsize=8)
def _classifier(ref: str, device: str) -> DigitClassifier:
    from .pretrained import load_state_dict, manifest

    name = _reference(ref).weights
    state = load_state_dict(name)  # verifies the sha256 recorded in the manifest
    net = DigitClassifier(**manifest(name)["config"]["model"])
    net.load_state_dict(state)
    return net.to(device).eval().requires_grad_(False)


def classifier(ref: str = "mnist", device: torch.device | str | None = None) -> DigitClassifier:
    """The shipped, checksum-verified feature classifier for ``ref`` (eval mode, no gradients), loaded
    once per device (default: the CPU)."""
    return _classifier(ref, str(torch.device(device if device is not None else "cpu")))


# --- input checks --------------------------------------------------------------------------------
def _check_images(images, ref: str, name: str = "images", min_n: int = 1) -> torch.Tensor:
    r = _reference(ref)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, {', '.join(map(str, r.shape))}), "
                        f"got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point with values in [-1, 1], got dtype {images.dtype}")
    if images.dim() != 4 or tuple(images.shape[1:]) != r.shape:
        raise ValueError(f"{name} must have shape (N, {', '.join(map(str, r.shape))}) for ref={ref!r}, "
                         f"got {tuple(images.shape)}")
    if images.shape[0] < min_n:
        raise ValueError(f"{name} must hold at least {min_n} images, got {images.shape[0]}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or inf")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1 - RANGE_TOL or hi > 1 + RANGE_TOL:
        raise ValueError(f"{name} must lie in [-1, 1] (tolerance {RANGE_TOL}), got values in "
                         f"[{lo:.4g}, {hi:.4g}]; map uint8 pixels with x / 127.5 - 1 and clip sampler "
                         "outputs explicitly")
    return images


# --- features and labels -------------------------------------------------------------------------
@torch.no_grad()
def features(images: torch.Tensor, ref: str = "mnist", batch_size: int = 500) -> torch.Tensor:
    """Penultimate-layer features of the domain classifier, float64 (N, d), on the images' device."""
    images = _check_images(images, ref)
    net = classifier(ref, images.device)
    out = [net.features(b.float()) for b in images.split(batch_size)]
    return torch.cat(out).double()


@torch.no_grad()
def classify(images: torch.Tensor, ref: str = "mnist", batch_size: int = 500) -> torch.Tensor:
    """Predicted digit of each image (argmax of the classifier's logits), LongTensor (N,)."""
    images = _check_images(images, ref)
    net = classifier(ref, images.device)
    return torch.cat([net(b.float()).argmax(1) for b in images.split(batch_size)]).long()


@torch.no_grad()
def class_probabilities(images: torch.Tensor, ref: str = "mnist", batch_size: int = 500) -> torch.Tensor:
    """p(y | x) of the domain classifier for each image (softmax of its logits), float64 (N, classes)."""
    images = _check_images(images, ref)
    net = classifier(ref, images.device)
    return torch.cat([net(b.float()).double().softmax(1) for b in images.split(batch_size)]).cpu()


class InceptionScore(NamedTuple):
    mean: float
    std: float


def inception_score_from_probs(p_yx: torch.Tensor) -> float:
    """IS = exp(E_x KL(p(y | x) ‖ p(y))) with p(y) = the mean of p(y | x) over the images (Salimans et al.
    2016, §4); 0 · log 0 counts as 0. Between 1 (every image the same spread over classes, or p(y | x) = p(y))
    and the number of classes (each image one class for sure, and every class equally often)."""
    p_y = p_yx.mean(0, keepdim=True)
    kl = (torch.xlogy(p_yx, p_yx) - torch.xlogy(p_yx, p_y.expand_as(p_yx))).sum(1)
    return float(kl.mean().exp())


def inception_score(images: torch.Tensor, ref: str = "mnist", splits: int = 10) -> InceptionScore:
    """The Inception Score with the course's digit classifier in place of Inception (so 1 ≤ IS ≤ 10 on
    MNIST): high when each sample is confidently one digit *and* the digits are varied. It never looks at
    real images, so it cannot tell a model that copies one good digit per class from the data; FID can.
    As usual, the mean ± std over ``splits`` equal chunks of the images."""
    if not isinstance(splits, int) or isinstance(splits, bool) or splits < 1:
        raise ValueError(f"splits must be a positive integer, got {splits!r}")
    images = _check_images(images, ref, min_n=splits)
    p = class_probabilities(images, ref)
    scores = torch.tensor([inception_score_from_probs(c) for c in p.chunk(splits)], dtype=torch.float64)
    return InceptionScore(float(scores.mean()), float(scores.std()) if splits > 1 else 0.0)


def accuracy(images: torch.Tensor, labels: torch.Tensor, ref: str = "mnist") -> float:
    """Fraction of images the classifier labels as ``labels`` (e.g. the digits that conditional samples
    were asked for)."""
    labels = torch.as_tensor(labels)
    if labels.dtype not in (torch.int64, torch.int32) or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be an integer tensor of shape ({images.shape[0]},), "
                         f"got {labels.dtype} {tuple(labels.shape)}")
    return (classify(images, ref).cpu() == labels.cpu()).double().mean().item()


def class_shares(images: torch.Tensor, ref: str = "mnist") -> torch.Tensor:
    """Fraction of the images the classifier reads as each class, float64 (num_classes,), summing to 1.
    An unconditional model that learnt p(x) gives each MNIST digit about 10 %."""
    pred = classify(images, ref).cpu()
    return torch.bincount(pred, minlength=10).double() / pred.numel()


def _mean_pairwise(f: torch.Tensor) -> float:
    d = torch.cdist(f, f)
    n = len(f)
    return float(d.sum() / (n * (n - 1)))


def diversity(images: torch.Tensor, ref: str = "mnist") -> float:
    """Mean pairwise distance between the classifier features of the images, divided by the same for as
    many real reference images: 1 = as varied as the data, below 1 = samples that look alike (lost
    diversity, mode collapse), above 1 = more scattered than the data (e.g. noise the classifier sees)."""
    images = _check_images(images, ref, min_n=2)
    n = min(len(images), 1000)
    real = real_images(_reference(ref).ref_split, ref)[0][:n]
    return _mean_pairwise(features(images[:n], ref).cpu()) / _mean_pairwise(features(real, ref).cpu())


def _gradient_energy(x: torch.Tensor) -> float:
    dx, dy = x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]
    return float(dx.double().pow(2).mean() + dy.double().pow(2).mean())


def sharpness(images: torch.Tensor, ref: str = "mnist") -> float:
    """Mean squared difference between neighbouring pixels, divided by the same for the real reference
    images: 1 = edges as crisp as the data's, below 1 = blurred, above 1 = noise or speckle (which adds
    pixel-to-pixel jumps)."""
    images = _check_images(images, ref)
    real = real_images(_reference(ref).ref_split, ref)[0]
    return _gradient_energy(images.cpu()) / _gradient_energy(real)


@dataclass(frozen=True)
class Memorisation:
    """Nearest-neighbour test for copying: d_train, d_held are each sample's pixel-space L2 distance to
    its nearest training digit and to its nearest held-out digit (equal-sized sets).

    train_closer: fraction of samples nearer to a training digit than to any held-out digit. A model that
    generalises draws from p(x), which the two sets sample alike: about 0.5. A model that copies its
    training set: towards 1. ratio: median of d_train / d_held (about 1, or below 1 when copying).
    copies: fraction with d_train < d_held / 3 (a near-duplicate of a training digit)."""
    train_closer: float
    ratio: float
    copies: float
    n_ref: int


@torch.no_grad()
def memorisation(images: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor,
                 seed: int = 0) -> Memorisation:
    """Compare each image's nearest neighbour among ``train`` and among ``held_out`` (images in [-1, 1]);
    the larger set is subsampled (``seed``) to the size of the smaller, so neither side has more chances."""
    for name, v in (("images", images), ("train", train), ("held_out", held_out)):
        if not isinstance(v, torch.Tensor) or v.dim() != 4 or v.shape[0] < 1:
            raise ValueError(f"{name} must be a tensor of shape (N, C, H, W) with N >= 1")
    if train.shape[1:] != images.shape[1:] or held_out.shape[1:] != images.shape[1:]:
        raise ValueError(f"train and held_out must have the images' shape {tuple(images.shape[1:])}, got "
                         f"{tuple(train.shape[1:])} and {tuple(held_out.shape[1:])}")
    m = min(train.shape[0], held_out.shape[0])
    g = torch.Generator().manual_seed(seed)
    train = train[torch.randperm(train.shape[0], generator=g)[:m]]
    held_out = held_out[torch.randperm(held_out.shape[0], generator=g)[:m]]
    x = images.flatten(1).double().cpu()
    d_train = torch.cdist(x, train.flatten(1).double().cpu()).min(1).values      # (N,)
    d_held = torch.cdist(x, held_out.flatten(1).double().cpu()).min(1).values    # (N,)
    return Memorisation(train_closer=(d_train < d_held).double().mean().item(),
                        ratio=(d_train / d_held).median().item(),
                        copies=(d_train < d_held / 3).double().mean().item(), n_ref=m)


# --- Fréchet distance ----------------------------------------------------------------------------
def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (N − 1 denominator) of features (N, d), in float64."""
    if feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"feats must have shape (N, d) with N >= 2, got {tuple(feats.shape)}")
    f = feats.double()
    mu = f.mean(0)
    fc = f - mu
    return mu, fc.T @ fc / (f.shape[0] - 1)


def _psd_eigvals(m: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigen-decomposition of a symmetric PSD matrix, negative round-off clamped to 0.

    A covariance is PSD, but its computed eigenvalues can come out slightly negative (≈ −1e-16 · λ_max in
    float64) when it is singular — always the case when N ≤ d or features are dead ReLUs. Those are set to
    0. An eigenvalue below −EIG_TOL · λ_max is not round-off: the matrix is not a covariance, so we raise.
    """
    w, v = torch.linalg.eigh((m + m.T) / 2)
    scale = max(float(w.abs().max()), 1e-300)
    if float(w.min()) < -EIG_TOL * scale:
        raise ValueError(f"{name} is not positive semi-definite (eigenvalue {float(w.min()):.3g}, "
                         f"largest {scale:.3g})")
    return w.clamp(min=0), v


def _sqrt_psd(m: torch.Tensor, name: str) -> torch.Tensor:
    """Symmetric square root V diag(√λ) Vᵀ of a PSD matrix (defined even when m is singular)."""
    w, v = _psd_eigvals(m, name)
    return (v * w.sqrt()) @ v.T


def _check_stats(mu, cov, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    mu, cov = torch.as_tensor(mu, dtype=torch.float64), torch.as_tensor(cov, dtype=torch.float64)
    if mu.dim() != 1:
        raise ValueError(f"mu{name} must be a vector (d,), got shape {tuple(mu.shape)}")
    if cov.shape != (mu.numel(), mu.numel()):
        d = mu.numel()
        raise ValueError(f"cov{name} must have shape (d, d) = ({d}, {d}), got {tuple(cov.shape)}")
    if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
        raise ValueError(f"mu{name} and cov{name} must be finite")
    if not torch.allclose(cov, cov.T, rtol=1e-6, atol=1e-10 * float(cov.abs().max().clamp(min=1))):
        raise ValueError(f"cov{name} must be symmetric")
    return mu, cov


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Fréchet distance between N(mu1, cov1) and N(mu2, cov2), computed in float64.

        d² = |μ₁ − μ₂|² + tr C₁ + tr C₂ − 2 tr (C₁^½ C₂ C₁^½)^½

    tr (C₁C₂)^½ is taken as Σ √λᵢ of the *symmetric* PSD matrix C₁^½ C₂ C₁^½, which has the same
    eigenvalues as C₁C₂ (AB and BA share their spectrum). This avoids scipy's general ``sqrtm``, whose
    complex round-off on singular covariances needs ad-hoc fixes; tiny negative eigenvalues from round-off
    are clamped to 0 (see ``_psd_eigvals``), anything larger raises.
    """
    mu1, cov1 = _check_stats(mu1, cov1, "1")
    mu2, cov2 = _check_stats(mu2, cov2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must have the same dimension, got {mu1.numel()} and {mu2.numel()}")
    s1 = _sqrt_psd(cov1, "cov1")
    _psd_eigvals(cov2, "cov2")
    lam, _ = _psd_eigvals(s1 @ cov2 @ s1, "cov1^½ cov2 cov1^½")
    d2 = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * lam.sqrt().sum()
    return float(d2.clamp(min=0))  # ≥ 0 mathematically; only round-off can make it −1e-13


# --- reference statistics --------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _ref_features(ref: str) -> torch.Tensor:
    x, _ = real_images(_reference(ref).ref_split, ref)
    return features(x, ref)


def ref_stats(ref: str = "mnist") -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, C) of the reference set's features, float64 (computed once from the shipped real images)."""
    return gaussian_stats(_ref_features(ref))


def _min_fid_n(ref: str) -> int:
    return _ref_features(ref).shape[1]


def fid(images: torch.Tensor, ref: str = "mnist") -> float:
    """FID of ``images`` (N, 1, 28, 28) in [-1, 1] against the held-out real digits of ``ref``.

    Needs N ≥ 2. Below N = d (the feature dimension, 64) the sample covariance is singular and FID is
    strongly biased upwards, so a warning is issued; compare samplers at one fixed N (≥ 1,000 here).
    """
    images = _check_images(images, ref, min_n=2)
    if images.shape[0] < _min_fid_n(ref):
        warnings.warn(f"FID from {images.shape[0]} images (< feature dimension {_min_fid_n(ref)}) is "
                      "strongly biased upwards; use >= 1000 images and the same N for every model, or KID",
                      stacklevel=2)
    mu, cov = gaussian_stats(features(images, ref).cpu())
    return frechet_distance(mu, cov, *ref_stats(ref))


# --- KID -----------------------------------------------------------------------------------------
class KID(NamedTuple):
    mean: float
    std: float


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (xᵀy / d + 1)³ (Bińkowski et al. 2018, eq. 7 with the defaults of their code)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² estimate: mean off-diagonal k(x,x') + mean off-diagonal k(y,y') − 2 mean k(x,y)."""
    m, n = fx.shape[0], fy.shape[0]
    kxx, kyy, kxy = polynomial_kernel(fx, fx), polynomial_kernel(fy, fy), polynomial_kernel(fx, fy)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sxx + syy - 2 * kxy.mean()


def kid_from_features(fx: torch.Tensor, fy: torch.Tensor, subsets: int = 100, subset_size: int = 500,
                      seed: int = 0) -> KID:
    """KID between two feature sets: unbiased MMD² on ``subsets`` random subsets (without replacement
    inside a subset) of size min(subset_size, N_x, N_y); returns the mean and standard deviation."""
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if fx.dim() != 2 or fy.dim() != 2 or fx.shape[1] != fy.shape[1]:
        raise ValueError(f"features must be (N, d) with the same d, got {tuple(fx.shape)} and "
                         f"{tuple(fy.shape)}")
    m = min(subset_size, fx.shape[0], fy.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per subset, got subset size {m}")
    g = torch.Generator().manual_seed(seed)
    fx, fy = fx.double().cpu(), fy.double().cpu()
    pick = lambda f: f[torch.randperm(f.shape[0], generator=g)[:m]]
    vals = torch.stack([mmd2_unbiased(pick(fx), pick(fy)) for _ in range(subsets)])
    std = float(vals.std()) if subsets > 1 else 0.0
    return KID(float(vals.mean()), std)


def kid(images: torch.Tensor, ref: str = "mnist", subsets: int = 100, subset_size: int = 500,
        seed: int = 0) -> KID:
    """KID (mean, std over subsets) of ``images`` in [-1, 1] against the held-out real digits of ``ref``.

    Unbiased: ≈ 0 (and can be slightly negative) when the images come from the reference distribution.
    Needs N ≥ 2; subsets have size min(subset_size, N, N_ref). The default 500 is half the 1,000 reference
    digits, so the subsets differ and their spread (the std) means something.
    """
    images = _check_images(images, ref, min_n=2)
    return kid_from_features(features(images, ref).cpu(), _ref_features(ref), subsets, subset_size, seed)


# --- the real-vs-real floor ----------------------------------------------------------------------
def _baseline_images(n: int, ref: str, seed: int) -> torch.Tensor:
    r = _reference(ref)
    x, _ = real_images(r.baseline_split, ref)
    if not isinstance(n, int) or not 2 <= n <= x.shape[0]:
        raise ValueError(f"n must be an int in [2, {x.shape[0]}] (the size of the {r.baseline_split!r} "
                         f"split), got {n!r}")
    return x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]


def real_baseline(n: int = 1000, ref: str = "mnist", seed: int = 0) -> float:
    """FID of n real digits from the *train* split against the *test* reference: the best score a
    perfect generator of n samples can expect (it is not 0: finite n, and the splits differ)."""
    return fid(_baseline_images(n, ref, seed), ref)


def real_baseline_is(n: int = 1000, ref: str = "mnist", seed: int = 0, splits: int = 10) -> InceptionScore:
    """Inception Score of n real train-split digits: what a generator of perfect digits scores."""
    return inception_score(_baseline_images(n, ref, seed), ref, splits=splits)


def real_baseline_kid(n: int = 1000, ref: str = "mnist", seed: int = 0, subsets: int = 100) -> KID:
    """KID of n real train-split digits against the test reference (≈ 0 up to its std)."""
    return kid(_baseline_images(n, ref, seed), ref, subsets=subsets)


# --- timing --------------------------------------------------------------------------------------
def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.synchronize()


class Timer:
    """Wall-clock timer that waits for queued GPU work: ``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        _sync()
        self.start = time.perf_counter()
        self.seconds = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        _sync()
        self.seconds = time.perf_counter() - self.start


def time_per_sample(fn, n: int, repeats: int = 1, warmup: int = 0) -> float:
    """Seconds per sample of ``fn()``, a call that produces ``n`` samples; best of ``repeats`` runs
    after ``warmup`` untimed calls (the minimum is the least disturbed by other processes)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (samples produced by one call), got {n!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        times.append(t.seconds)
    return min(times) / n


# --- results over seeds ------------------------------------------------------------------------------------
class SeedStats(NamedTuple):
    """A score over seeds: mean, sample standard deviation (0 for one seed) and the number of seeds."""

    mean: float
    std: float
    n: int


def seed_stats(rows: list[dict], value: str = "fid", by: tuple[str, ...] = ("sampler", "nfe")) -> dict:
    """Group result rows (dicts, one per seed, e.g. benchmarks/results/few_step.json's) by the ``by`` keys:
    {(row[by[0]], row[by[1]], …): SeedStats of row[value]}."""
    import statistics

    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(float(r[value]))
    return {k: SeedStats(statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v))
            for k, v in groups.items()}


def verdict(a: SeedStats, b: SeedStats, k: float = 2.0) -> str:
    """"beats", "ties with" or "loses to" for a score where lower is better (FID): a tie when the means
    differ by at most k·√(std_a² + std_b²), the seeds' noise."""
    if abs(a.mean - b.mean) <= k * (a.std**2 + b.std**2) ** 0.5:
        return "ties with"
    return "beats" if a.mean < b.mean else "loses to"

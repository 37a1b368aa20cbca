"""Toy data sets and the exact (training-free) denoisers."""

import math

import pytest
import torch

import ddpm_course as dc
from ddpm_course import toy
from ddpm_course.toy import GaussianOracle, MixtureOracle

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py, like the schedule fixture `s`


@pytest.mark.parametrize("name", sorted(toy.DATASETS))
def test_datasets_shape_and_determinism(name):
    a = toy.make(name, 500, generator=torch.Generator().manual_seed(0))
    b = toy.make(name, 500, generator=torch.Generator().manual_seed(0))
    c = toy.make(name, 500, generator=torch.Generator().manual_seed(1))
    assert a.shape == (500, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.3 < a.std(0).min().item() and a.abs().max().item() < 3     # roughly unit scale
    assert toy.make(name, 3, dtype=torch.float64).dtype == torch.float64


def test_dataset_geometry():
    g = torch.Generator().manual_seed(0)
    cb = toy.checkerboard(4000, generator=g).double()
    cell = torch.floor(cb) + 2                                           # column, row in 0..3
    assert torch.all((cell.sum(1) % 2) == 0)                            # only the black squares
    assert len(torch.unique(cell, dim=0)) == 8
    assert torch.all(cb.abs() <= 2)
    eg = toy.eight_gaussians(4000, generator=g).double()
    assert eg.norm(dim=1).mean().item() == pytest.approx(1.5, abs=0.02)
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 1.5 * torch.stack([angles.cos(), angles.sin()], 1)        # one cluster every 45°
    dist, k = torch.cdist(eg, centres).min(1)
    assert dist.max() < 5.5 * 0.1 and torch.bincount(k, minlength=8).min() > 400
    sr = toy.swiss_roll(4000, noise=0.0, generator=g).double()
    r = sr.norm(dim=1) * 10                                              # radius = t ∈ [1.5π, 4.5π]
    assert r.min() >= 1.5 * math.pi - 1e-9 and r.max() <= 4.5 * math.pi + 1e-9
    p = toy.two_moons(4000, noise=0.0, generator=g, dtype=torch.float64) / 1.5 + torch.tensor([0.5, 0.25])
    upper, lower = (p.norm(dim=1) - 1).abs(), ((p - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs()
    assert torch.all(torch.minimum(upper, lower) < 1e-9)               # on one of two unit half circles
    assert torch.all(p[upper < 1e-9, 1] >= 0) and torch.all(p[lower < 1e-9, 1] <= 0.5)
    assert 0.45 < (upper < 1e-9).double().mean() < 0.55


def test_make_rejects_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        toy.make("spirals", 10)


def test_gaussian_oracle_is_the_vp_formula(s):
    """E[ε | x_t] for x_0 ~ N(μ, s²): √(1−ᾱ)(x_t − √ᾱ μ)/(ᾱ s² + 1 − ᾱ), written in VP space."""
    mu, std = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.7
    oracle = GaussianOracle(s, mean=mu, std=std)
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.tensor([0, 1, 100, 500, 998, 999])
    ab = s.alpha_bars[t][:, None]
    expect = (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * std**2 + 1 - ab)
    assert torch.allclose(oracle(x, t), expect, rtol=1e-10)


@pytest.mark.parametrize("oracle_name", ["gauss", "mixture"])
def test_oracle_residual_is_orthogonal(s, oracle_name):
    """The conditional mean is characterised by E[(ε − ε̂(x_t)) f(x_t)] = 0 for every f; check f = 1, x_t,
    and the posterior weights of the mixture, by Monte Carlo within 5 standard errors."""
    g = torch.Generator().manual_seed(0)
    if oracle_name == "gauss":
        oracle = GaussianOracle(s, mean=0.3, std=0.5)
        x0 = oracle.sample(100_000, generator=g, dtype=torch.float64)
    else:
        oracle = MixtureOracle.eight_gaussians(s, radius=1.5, std=0.2)
        x0 = oracle.sample(100_000, generator=g, dtype=torch.float64)[0]
    for t in (50, 300, 700):
        eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        ab = s.alpha_bars[t].item()
        x_t = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
        r = eps - oracle(x_t, torch.full((len(x0),), t))
        feats = [torch.ones_like(x_t), x_t, x_t**2]
        for f in feats:
            prod = r * f
            assert torch.all(prod.mean(0).abs() < 5 * prod.std(0) / math.sqrt(len(x0))), (t, f[0])
        # and ε̂ is not trivially right: the residual is smaller than ε itself
        assert r.pow(2).mean() < eps.pow(2).mean()


def test_single_component_mixture_is_gaussian(s):
    mu = torch.tensor([[0.4, -0.2]], dtype=torch.float64)
    mix, gauss = MixtureOracle(s, mu, [0.6]), GaussianOracle(s, mean=mu[0], std=0.6)
    x, t = torch.randn(5, 2, dtype=torch.float64), torch.tensor([0, 10, 300, 700, 999])
    assert torch.allclose(mix(x, t), gauss(x, t), rtol=1e-10, atol=1e-12)


def test_mixture_on_images(s):
    """The oracles accept any sample shape (B, C, H, W), e.g. a two-class mixture of 1×4×4 'images'."""
    means = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)]).double()
    mix = MixtureOracle(s, means, [0.1, 0.1])
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    assert mix(x, torch.tensor([5, 50, 500])).shape == x.shape
    x0 = dc.sample(mix, s, x, sampler="ddim", steps=30)
    assert torch.all((x0.mean((1, 2, 3)) - x0.mean((1, 2, 3)).round()).abs() < 0.15)


def test_float_t_uses_log_sigma_interpolation(s):
    mix = MixtureOracle.eight_gaussians(s)
    x = torch.randn(4, 2, dtype=torch.float64)
    t_int = torch.tensor([0, 17, 500, 999])
    assert torch.equal(mix(x, t_int), mix(x, t_int.double()))          # exact at integer timesteps
    sig = torch.tensor([0.05, 0.9, 13.0, 100.0], dtype=torch.float64)
    t = s.sigma_to_t(sig)
    assert torch.allclose(s.t_to_sigma(t), sig, rtol=1e-12)
    xs = x * (1 + sig[:, None] ** 2).sqrt()
    expect = (xs - mix.denoise(xs, sig)) / sig[:, None]                  # ε̂ at exactly that σ
    assert torch.allclose(mix(x, t), expect, rtol=1e-10)


def test_conditional_mixture(s):
    mix = MixtureOracle(s, [[-1.0, 0.0], [1.0, 0.0]], [0.2, 0.4], weights=[0.7, 0.3])
    x, t = torch.randn(4, 2, dtype=torch.float64), torch.full((4,), 400)
    for k in (0, 1):
        comp = GaussianOracle(s, mean=mix.means[k], std=mix.stds[k].item())
        assert torch.allclose(mix(x, t, torch.full((4,), k)), comp(x, t), rtol=1e-10)
    assert mix.null_label == 2
    assert torch.allclose(mix(x, t, torch.full((4,), 2)), mix(x, t), rtol=1e-12)
    mixed = mix(x, t, torch.tensor([0, 2, 1, 2]))
    assert torch.allclose(mixed[1], mix(x, t)[1])
    assert torch.allclose(mixed[2], mix(x, t, torch.full((4,), 1))[2])
    with pytest.raises(ValueError, match=r"y must lie in \[0, K\]"):
        mix(x, t, torch.full((4,), 3))


def test_gaussian_ode_solution_solves_the_ode(s):
    """dx̃/dσ = ε̂(x̃, σ) = (x̃ − D(x̃, σ))/σ along x̃(σ) = μ + (x̃₀ − μ)√(s²+σ²)/√(s²+σ₀²)."""
    oracle = GaussianOracle(s, mean=0.2, std=0.8)
    xs0 = torch.randn(10, 2, dtype=torch.float64)
    for sig in (0.1, 1.0, 20.0):
        h = 1e-5 * sig
        d = (oracle.ode_solution(xs0, 50.0, sig + h) - oracle.ode_solution(xs0, 50.0, sig - h)) / (2 * h)
        xs = oracle.ode_solution(xs0, 50.0, sig)
        assert torch.allclose(d, (xs - oracle.denoise(xs, sig)) / sig, rtol=1e-6)
    assert torch.allclose(oracle.ode_solution(xs0, 3.0, 3.0), xs0)


def test_oracle_errors(s):
    with pytest.raises(ValueError, match="std must be > 0"):
        GaussianOracle(s, std=0.0)
    with pytest.raises(ValueError, match="weights must be K = 2 non-negative numbers summing to 1"):
        MixtureOracle(s, [[0.0], [1.0]], [0.1, 0.1], weights=[0.5, 0.6])
    with pytest.raises(ValueError, match="stds must be > 0"):
        MixtureOracle(s, [[0.0], [1.0]], [0.1, 0.0])
    with pytest.raises(ValueError, match="no schedule"):
        MixtureOracle(None, [[0.0], [1.0]], [0.1, 0.1])(torch.zeros(1, 1), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, T-1\]"):
        GaussianOracle(s)(torch.zeros(1, 2), torch.tensor([1000]))
    with pytest.raises(TypeError, match=r"t must be a tensor of shape \(B,\)"):
        GaussianOracle(s)(torch.zeros(1, 2), 5)


def test_switched_model_uses_high_above_sigma_and_low_below(s):
    from ddpm_course.toy import Switched

    high, low = GaussianOracle(s, mean=1.0, std=0.5), GaussianOracle(s, mean=-1.0, std=0.5)
    model = Switched(s, high, low, sigma=1.0)
    t = torch.tensor([0, 200, 999, 50])                            # σ ≈ 0.01, 0.55, 157, 0.25 … and a mix
    x = torch.randn(4, 2, dtype=torch.float64)
    above = s.sigmas[t] > 1.0
    want = torch.where(above[:, None], high(x, t), low(x, t))
    assert above.any() and (~above).any()
    assert torch.equal(model(x, t), want)
    tf = torch.tensor([850.5, 10.25])                                # fractional timesteps (Karras grids)
    assert torch.equal(model(x[:2], tf)[0], high(x[:2], tf)[0]) and torch.equal(model(x[:2], tf)[1],
                                                                                 low(x[:2], tf)[1])
    with pytest.raises(ValueError, match="sigma must be a number > 0"):
        Switched(s, high, low, sigma=0)
    with pytest.raises(TypeError, match="high and low must be models"):
        Switched(s, high, "low", sigma=1.0)

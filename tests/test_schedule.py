"""NoiseSchedule: β/ᾱ tables, σ and log-SNR, timestep spacings (checked against diffusers), Karras σ,
σ ↔ t interpolation and the sampler grids."""

import math
import os

import pytest
import torch

import ddpm_course as dc

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def s():
    return dc.NoiseSchedule.linear(T=1000, beta_start=1e-4, beta_end=0.02)


def test_linear_schedule_values(s):
    assert s.T == 1000
    for table in (s.betas, s.alphas, s.alpha_bars, s.sigmas, s.log_snr):
        assert table.dtype == torch.float64 and table.shape == (1000,)
    assert s.betas[0] == pytest.approx(1e-4, abs=1e-18) and s.betas[-1] == pytest.approx(0.02, abs=1e-18)
    step = torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64)
    assert torch.allclose(s.betas[1:] - s.betas[:-1], step)
    assert s.alpha_bars[0] == pytest.approx(1 - 1e-4, abs=1e-15)             # ᾱ_1 = 1 − β_1
    assert s.alpha_bars[-1] == pytest.approx(4.04e-5, abs=5e-8)               # the well-known ᾱ_T ≈ 4.04e-5
    assert torch.allclose(s.alpha_bars, torch.cumprod(1 - s.betas, 0), rtol=1e-14, atol=0)
    assert torch.all(s.alpha_bars[1:] < s.alpha_bars[:-1])


def test_sigma_and_log_snr(s):
    ab = s.alpha_bars
    assert torch.allclose(s.sigmas**2, (1 - ab) / ab, rtol=1e-12)
    assert torch.allclose(s.log_snr, torch.log(ab / (1 - ab)), rtol=1e-12)
    assert torch.allclose(s.log_snr, -2 * s.sigmas.log(), rtol=1e-12)


def test_cosine_schedule_properties():
    T, eps = 1000, 0.008
    c = dc.NoiseSchedule.cosine(T=T, s=eps)
    f = lambda t: math.cos((t / T + eps) / (1 + eps) * math.pi / 2) ** 2
    # ᾱ at index i is f(i + 1)/f(0) (Nichol & Dhariwal eq. 17) wherever β was not clipped
    unclipped = c.betas < 0.999
    assert int((~unclipped).sum()) == 1 and not unclipped[-1]                 # only the last β hits 0.999
    expect = torch.tensor([f(i + 1) / f(0) for i in range(T - 1)], dtype=torch.float64)
    assert torch.allclose(c.alpha_bars[:-1], expect, rtol=1e-10)
    assert c.betas.max() == pytest.approx(0.999)
    assert torch.all(c.alpha_bars[1:] < c.alpha_bars[:-1])
    assert c.betas[0] < 1e-4                                                   # gentler start than linear
    # log-SNR falls monotonically and crosses 0 (ᾱ = 1/2) near the middle, unlike the linear schedule
    assert torch.all(c.log_snr[1:] < c.log_snr[:-1])
    assert abs(float(c.log_snr[T // 2 - 1])) < 0.05
    assert float(dc.NoiseSchedule.linear().log_snr[T // 2 - 1]) < -1.5


@pytest.mark.parametrize("bad", [dict(T=0), dict(T=2.5), dict(beta_start=0.0),
                                 dict(beta_start=0.1, beta_end=0.01), dict(beta_end=1.0)])
def test_linear_bad_arguments(bad):
    with pytest.raises(ValueError):
        dc.NoiseSchedule.linear(**bad)


def test_bad_betas_and_cosine_s():
    with pytest.raises(ValueError, match="betas"):
        dc.NoiseSchedule([0.1, 1.0])
    with pytest.raises(ValueError, match="s must be"):
        dc.NoiseSchedule.cosine(s=0.0)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 10, 50, 333, 1000])
def test_spacings_equal_diffusers(s, spacing, steps):
    """Our timesteps are diffusers' (steps_offset=0) for DDIMScheduler and DDPMScheduler alike."""
    diffusers = pytest.importorskip("diffusers")
    ours = s.timesteps(steps, spacing)
    assert ours.dtype == torch.int64 and ours.shape == (steps,)
    for cls in (diffusers.DDIMScheduler, diffusers.DDPMScheduler):
        sched = cls(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=0)
        sched.set_timesteps(steps)
        assert torch.equal(ours, sched.timesteps.long()), cls.__name__


def test_spacing_shapes(s):
    assert s.timesteps(10, "leading").tolist() == list(range(900, -1, -100))
    assert s.timesteps(10, "trailing").tolist() == list(range(999, 98, -100))
    assert s.timesteps(4, "linspace").tolist() == [999, 666, 333, 0]
    assert s.timesteps(1000, "leading").tolist() == list(range(999, -1, -1))


def test_karras_sigmas(s):
    sig = s.karras_sigmas(10)
    assert sig.shape == (11,) and sig.dtype == torch.float64
    assert sig[0] == pytest.approx(float(s.sigmas[-1]), rel=1e-12)           # σ at t = T − 1
    assert sig[-2] == pytest.approx(float(s.sigmas[0]), rel=1e-12)           # σ at t = 0
    assert sig[-1] == 0 and torch.all(sig[1:] < sig[:-1])
    # ρ = 7: σ^{1/7} is evenly spaced (Karras et al. 2022, eq. 5)
    root = sig[:-1] ** (1 / 7)
    assert torch.allclose(root[1:] - root[:-1], (root[-1] - root[0]).expand(9) / 9, rtol=1e-10)
    assert s.karras_sigmas(1).tolist() == pytest.approx([float(s.sigmas[-1]), 0.0])
    with pytest.raises(ValueError, match="rho"):
        s.karras_sigmas(10, rho=0)


def test_sigma_to_t_and_back(s):
    t_int = torch.arange(0, 1000, 37)
    assert torch.equal(s.sigma_to_t(s.sigmas[t_int]), t_int.double())      # exact at integer timesteps
    assert torch.equal(s.t_to_sigma(t_int), s.sigmas[t_int])
    t = torch.tensor([0.0, 0.25, 3.5, 500.7, 998.999, 999.0], dtype=torch.float64)
    assert torch.allclose(s.sigma_to_t(s.t_to_sigma(t)), t, atol=1e-9)
    # log σ is linear between neighbours
    mid = s.t_to_sigma(torch.tensor([10.5]))
    expect = 0.5 * (s.sigmas[10].log() + s.sigmas[11].log())
    assert mid.log().item() == pytest.approx(expect.item(), rel=1e-14)
    with pytest.raises(ValueError, match="T-1"):
        s.t_to_sigma(torch.tensor([1000.5]))


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace", "karras"])
def test_grid(s, spacing):
    g = s.grid(20, spacing)
    assert len(g) == 20 and g.alpha_bars.shape == (21,) and g.alpha_bars[-1] == 1.0
    assert torch.all(g.alpha_bars[1:] > g.alpha_bars[:-1])
    assert g.sigmas[-1] == 0
    if spacing == "karras":
        assert not g.discrete and g.ts.is_floating_point()
        assert torch.allclose(g.sigmas, s.karras_sigmas(20), rtol=1e-12)
        assert torch.allclose(s.t_to_sigma(g.ts), g.sigmas[:-1], rtol=1e-10)
    else:
        assert g.discrete and torch.equal(g.ts, s.timesteps(20, spacing))
        assert torch.equal(g.alpha_bars[:-1], s.alpha_bars[g.ts])


@pytest.mark.parametrize("steps", [0, 1001, 2.0, True])
def test_bad_steps(s, steps):
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, T=1000\]"):
        s.grid(steps, "leading")


def test_bad_spacing(s):
    with pytest.raises(ValueError, match="spacing must be one of"):
        s.grid(10, "quadratic")
    with pytest.raises(ValueError, match="karras"):
        s.timesteps(10, "karras")

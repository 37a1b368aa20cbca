"""Forward process, posterior and parameterisations (DDPM eq. 4, 6–7; Salimans & Ho 2022 for v)."""

import pytest
import torch

import ddpm_course as dc
from ddpm_course import diffusion as D


def test_q_sample_is_the_closed_form(s):
    x0, noise = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    t = torch.tensor([0, 10, 500, 999])
    ab = s.alpha_bars[t].float().reshape(4, 1, 1, 1)
    assert torch.allclose(dc.q_sample(x0, t, noise, s), ab.sqrt() * x0 + (1 - ab).sqrt() * noise, atol=1e-6)


@pytest.mark.parametrize("t", [0, 100, 600, 999])
def test_q_sample_moments(s, t):
    """Empirical mean and variance of x_t ~ q(x_t | x_0) match √ᾱ x_0 and 1 − ᾱ (DDPM eq. 4)."""
    g = torch.Generator().manual_seed(t)
    n = 200_000
    x0 = torch.full((n, 1), 1.7, dtype=torch.float64)
    x_t = dc.q_sample(x0, torch.full((n,), t), torch.randn(n, 1, generator=g, dtype=torch.float64), s)
    mean, var = D.q_mean_var(x0[:1], torch.tensor([t]), s)
    se_mean, se_var = (var.item() / n) ** 0.5, var.item() * (2 / n) ** 0.5
    assert abs(x_t.mean().item() - mean.item()) < 5 * se_mean
    assert abs(x_t.var().item() - var.item()) < 5 * se_var
    assert mean.item() == pytest.approx(1.7 * s.alpha_bars[t].sqrt().item(), rel=1e-12)


def test_q_sample_errors(s):
    x0 = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="t must be an integer tensor"):
        dc.q_sample(x0, torch.tensor([1.0, 2.0]), x0, s)
    with pytest.raises(ValueError, match=r"t must lie in \[0, T-1\]"):
        dc.q_sample(x0, torch.tensor([0, 1000]), x0, s)
    with pytest.raises(ValueError, match="t must have shape"):
        dc.q_sample(x0, torch.tensor([0]), x0, s)
    with pytest.raises(ValueError, match="noise must have the shape"):
        dc.q_sample(x0, torch.tensor([0, 1]), torch.zeros(2, 4), s)


@pytest.mark.parametrize("t", [1, 50, 999])
def test_posterior_is_ddpm_eq7(s, t):
    """μ̃_t = √ᾱ_{t−1} β_t/(1 − ᾱ_t) x_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) x_t,
    β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t."""
    x0, x_t = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    b, a, ab, ab_prev = s.betas[t], s.alphas[t], s.alpha_bars[t], s.alpha_bars[t - 1]
    mean, var = D.posterior_mean_variance(x0, x_t, torch.full((3,), t), s)
    expect = ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    assert torch.allclose(mean, expect, rtol=1e-12)
    assert torch.allclose(var, ((1 - ab_prev) / (1 - ab) * b).expand(3, 4), rtol=1e-12)


def test_posterior_at_first_step_is_the_data(s):
    x0, x_t = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    mean, var = D.posterior_mean_variance(x0, x_t, torch.zeros(2, dtype=torch.long), s)
    assert torch.allclose(mean, x0, atol=1e-12) and torch.all(var == 0)


@pytest.mark.parametrize("levels", [(300, 299), (700, 400)])
def test_posterior_is_the_true_conditional(s, levels):
    """Simulate x_prev ~ q(x_prev | x_0), x_t ~ q(x_t | x_prev) for a fixed x_0 and regress x_prev on x_t:
    the slope, intercept and residual variance are those of posterior(x_0, x_t, ᾱ_t, ᾱ_prev)."""
    t, p = levels
    ab_t, ab_p = s.alpha_bars[t].item(), s.alpha_bars[p].item()
    g, n, x0 = torch.Generator().manual_seed(t), 400_000, 0.8
    z = torch.randn(2, n, generator=g, dtype=torch.float64)
    x_p = ab_p**0.5 * x0 + (1 - ab_p) ** 0.5 * z[0]
    x_t = (ab_t / ab_p) ** 0.5 * x_p + (1 - ab_t / ab_p) ** 0.5 * z[1]
    A = torch.stack([x_t, torch.ones_like(x_t)], 1)
    slope, intercept = torch.linalg.lstsq(A, x_p[:, None]).solution.flatten()
    resid = (x_p - slope * x_t - intercept).var().item()
    x0_, zero, one = (torch.full((1, 1), v, dtype=torch.float64) for v in (x0, 0.0, 1.0))
    m0, var = D.posterior(x0_, zero, ab_t, ab_p)                     # μ̃ at x_t = 0: the intercept
    m1, _ = D.posterior(x0_, one, ab_t, ab_p)
    assert intercept.item() == pytest.approx(m0.item(), abs=5e-3)
    assert slope.item() == pytest.approx((m1 - m0).item(), abs=5e-3)
    assert resid == pytest.approx(var.item(), rel=1e-2)


def test_conversions_round_trip():
    x0, eps = torch.randn(5, 2, 3, dtype=torch.float64), torch.randn(5, 2, 3, dtype=torch.float64)
    for ab in (0.999, 0.3, 1e-4, torch.tensor([0.9, 0.5, 0.1, 0.01, 0.999], dtype=torch.float64)):
        abb = D.per_sample(ab, x0)
        x_t = abb.sqrt() * x0 + (1 - abb).sqrt() * eps
        v = D.v_target(x0, eps, ab)
        assert torch.allclose(D.eps_to_x0(x_t, eps, ab), x0, atol=1e-9)
        assert torch.allclose(D.x0_to_eps(x_t, x0, ab), eps, atol=1e-9)
        assert torch.allclose(D.v_to_eps(x_t, v, ab), eps, atol=1e-9)
        assert torch.allclose(D.v_to_x0(x_t, v, ab), x0, atol=1e-9)
        assert torch.allclose(D.to_eps(eps, x_t, ab, "eps"), eps)
        assert torch.allclose(D.to_eps(x0, x_t, ab, "x0"), eps, atol=1e-9)
        assert torch.allclose(D.to_eps(v, x_t, ab, "v"), eps, atol=1e-9)
        u = eps - x0                                                  # the flow velocity of the straight path
        assert torch.allclose(D.flow_to_eps(x_t, u, ab), eps, atol=1e-9)
        assert torch.allclose(D.flow_to_x0(x_t, u, ab), x0, atol=1e-9)
        assert torch.allclose(D.to_eps(u, x_t, ab, "flow"), eps, atol=1e-9)
    with pytest.raises(ValueError, match=r"prediction must be one of \('eps', 'x0', 'v', 'flow'\)"):
        D.to_eps(eps, eps, 0.5, "score")


def test_simple_loss(s):
    """The loss is ‖ε − ε_θ(x_t, t)‖² averaged; the exact Gaussian denoiser beats a zero predictor."""
    from ddpm_course.toy import GaussianOracle

    g = torch.Generator().manual_seed(0)
    x0 = 0.5 + 0.2 * torch.randn(4096, 2, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (4096,), generator=g)
    noise = torch.randn(4096, 2, generator=g, dtype=torch.float64)
    zero = lambda x, t: torch.zeros_like(x)
    assert D.simple_loss(zero, x0, s, t=t, noise=noise).item() == pytest.approx(noise.pow(2).mean().item())
    oracle = GaussianOracle(s, mean=0.5, std=0.2)
    assert D.simple_loss(oracle, x0, s, t=t, noise=noise) < 0.8 * D.simple_loss(zero, x0, s, t=t, noise=noise)
    calls = []
    spy = lambda x, t, y: calls.append(y) or torch.zeros_like(x)
    D.simple_loss(spy, x0[:3], s, y=torch.tensor([1, 2, 3]))
    assert calls[0].tolist() == [1, 2, 3]


def test_min_snr_weight_is_hang_et_al_eq_for_eps(s):
    """w_t = min(SNR_t, γ)/SNR_t: 1 where SNR ≤ γ (high noise), γ/SNR where the sample is nearly clean."""
    t = torch.arange(s.T)
    w = D.min_snr_weight(t, s, gamma=5.0)
    snr = s.alpha_bars / (1 - s.alpha_bars)
    assert torch.allclose(w, torch.clamp(snr, max=5.0) / snr)
    assert w[-1].item() == 1.0 and w[0].item() == pytest.approx(5.0 / snr[0].item())
    assert (w[1:] >= w[:-1]).all()                  # monotone: SNR falls as t grows
    with pytest.raises(ValueError, match="gamma must be > 0"):
        D.min_snr_weight(t, s, gamma=0.0)


def test_weighted_simple_loss_weights_each_sample(s):
    """With per-sample weights the loss is mean_b w_b · mean_pixels (ε − ε̂)²; weight 1 is eq. 14."""
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(6, 1, 4, 4, generator=g), torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([0, 10, 100, 400, 800, 999])
    zero = lambda x, t: torch.zeros_like(x)
    w = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    plain = D.simple_loss(zero, x0, s, t=t, noise=noise)
    ones = D.simple_loss(zero, x0, s, t=t, noise=noise, weight=torch.ones(6))
    assert ones.item() == pytest.approx(plain.item())
    expect = noise[3:].pow(2).flatten(1).mean(1).sum() / 6
    assert D.simple_loss(zero, x0, s, t=t, noise=noise, weight=w).item() == pytest.approx(expect.item())

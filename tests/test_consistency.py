"""Consistency models (ddpm_course.consistency): the boundary condition for every network, f = the denoiser
for the ε-model, the distillation target against a hand computation with the exact Gaussian ODE, the multistep
sampler against a hand computation and against dc.sample(sampler="consistency"), ECT's mapping schedule, a
toy-scale consistency distillation that learns the ODE map, and tuning that resumes bit-identically."""

import copy
import math

import pytest
import torch

import ddpm_course as dc
from ddpm_course import consistency as cm
from ddpm_course import distill
from ddpm_course.diffusion import eps_to_x0, v_to_x0
from ddpm_course.train import CheckpointError, load_checkpoint

S = dc.NoiseSchedule.linear(1000)
SIG_MIN, SIG_MAX = float(S.sigmas[0]), float(S.sigmas[-1])


class _Net(torch.nn.Module):
    """A small nonlinear stand-in for a U-Net: out = tanh(W z) + t/1000."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, z, t):
        return torch.tanh(self.lin(z)) + t.reshape(-1, 1).to(z) / 1000


def _levels():
    return torch.tensor([0.0, SIG_MIN, 0.3, 2.0, 40.0, SIG_MAX], dtype=torch.float64)


# --- the parameterisation ------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_boundary_condition_holds_for_any_network(prediction):
    torch.manual_seed(0)
    x = torch.randn(5, 2)
    f = cm.consistency_fn(_Net(), x, 0.0, S, prediction=prediction)
    assert torch.equal(f, x)                                         # exactly, not approximately
    c_skip, c_out = cm.skip_out(torch.zeros(1, dtype=torch.float64), prediction)
    assert float(c_skip) == 1.0 and float(c_out) == 0.0


def test_eps_parameterisation_is_exactly_the_denoiser():
    torch.manual_seed(1)
    net, sig = _Net().double(), _levels()
    x = torch.randn(6, 2, dtype=torch.float64) * (1 + sig[:, None])
    f = cm.consistency_fn(net, x, sig, S, prediction="eps")
    ab = 1 / (1 + sig**2)
    z = x * ab.sqrt()[:, None]
    t = S.sigma_to_t(sig.clamp(min=SIG_MIN))
    torch.testing.assert_close(f[1:], eps_to_x0(z, net(z, t), ab)[1:])     # x̂_0 = (z − √(1−ᾱ) ε̂)/√ᾱ
    torch.testing.assert_close(f[1:], (x - sig[:, None] * net(z, t))[1:])  # = x̃ − σ ε̂ in σ-space


def test_v_parameterisation_is_the_v_clean_prediction_with_bounded_c_out():
    torch.manual_seed(2)
    net, sig = _Net().double(), _levels()[1:]
    x = torch.randn(5, 2, dtype=torch.float64) * (1 + sig[:, None])
    ab = 1 / (1 + sig**2)
    z = x * ab.sqrt()[:, None]
    f = cm.consistency_fn(net, x, sig, S, prediction="v")
    torch.testing.assert_close(f, v_to_x0(z, net(z, S.sigma_to_t(sig)), ab))
    assert float(cm.skip_out(sig, "v")[1].abs().max()) <= 1.0
    assert float(cm.skip_out(sig, "eps")[1].abs().max()) > 100     # ε's c_out is −σ: 157 at t = T − 1


def test_x0_prediction_and_sigmas_outside_the_schedule_are_refused():
    with pytest.raises(ValueError, match="boundary condition.*x0-output"):
        cm.skip_out(torch.ones(1), "x0")
    with pytest.raises(ValueError, match="sigma must be 0 .* or lie in"):
        cm.consistency_fn(_Net(), torch.zeros(1, 2), SIG_MIN / 2, S)
    with pytest.raises(ValueError, match="sigma must be 0"):
        cm.consistency_fn(_Net(), torch.zeros(1, 2), 2 * SIG_MAX, S)


# --- consistency distillation ----------------------------------------------------------------------------
def test_cd_levels_are_karras_levels_above_the_boundary():
    sig = cm.cd_levels(S, 18)
    assert sig.shape == (19,) and sig[0] == 0 and torch.all(sig[1:] > sig[:-1])
    assert math.isclose(float(sig[1]), SIG_MIN, rel_tol=1e-12) and math.isclose(float(sig[-1]), SIG_MAX)
    with pytest.raises(ValueError, match="N must be a positive integer"):
        cm.cd_levels(S, 0)


def test_cd_target_by_hand_with_the_exact_gaussian_ode():
    """Teacher = exact Gaussian ε̂, f_ema = the exact consistency function f*(x̃, σ) = μ + (x̃ − μ) s/√(s² + σ²):
    the target is f*(x̃ + Δσ ε̂, σ_n) by hand, and tends to f*(x̃_{n+1}, σ_{n+1}) as the step shrinks."""
    mu, sd = 0.3, 0.8
    oracle = dc.toy.GaussianOracle(S, mean=mu, std=sd)
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 + mu

    def f_star(xs, sigma):
        return oracle.ode_solution(xs, float(sigma), 0.0)

    def eps(xs, sigma):
        return (xs - oracle.denoise(xs, sigma)) / sigma

    target = cm.cd_target(f_star, eps, x, 2.0, 1.5)
    eps_hat = (x - (mu + sd**2 / (sd**2 + 4) * (x - mu))) / 2.0          # (x̃ − D)/σ at σ = 2
    by_hand = mu + (x + (1.5 - 2.0) * eps_hat - mu) * sd / math.sqrt(sd**2 + 1.5**2)
    torch.testing.assert_close(target, by_hand)
    errors = [float((cm.cd_target(f_star, eps, x, 2.0, 2.0 - h) - f_star(x, 2.0)).abs().max())
              for h in (0.4, 0.2, 0.1)]
    assert errors[0] > 1.7 * errors[1] > 1.7**2 * errors[2]           # the Euler step's local error O(h²)


def test_oracle_eps_fn_is_the_oracle_in_sigma_space():
    oracle = dc.toy.GaussianOracle(S, mean=0.2, std=0.5)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    got = cm.oracle_eps_fn(oracle, S)(x, 1.3)
    torch.testing.assert_close(got, (x - oracle.denoise(x, 1.3)) / 1.3)


def test_distill_toy_learns_the_ode_map():
    """Toy-scale Algorithm 2 with the exact teacher: the 1-step consistency model lands much closer to where
    the exact ODE takes each x_T than the denoiser it starts from (which returns E[x_0 | x_T])."""
    torch.manual_seed(0)
    oracle = dc.toy.MixtureOracle.eight_gaussians(S)
    g = torch.Generator().manual_seed(0)
    x_data = oracle.sample(4000, generator=g)[0]
    net = distill.ToyMLP(hidden=64)
    distill.fit_to_oracle(net, oracle, S, x_data, iters=300, batch_size=256, generator=g)
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    x_ode = dc.sample(oracle, S, x_T, sampler="dpmpp_2m", steps=100, spacing="trailing")

    def err(model):
        x = dc.sample(model, S, x_T, sampler="consistency", steps=1, spacing="trailing", prediction="v")
        return float((x - x_ode).pow(2).sum(1).mean().sqrt())

    before = err(net)
    ema, losses = cm.distill_toy(net, oracle, S, x_data, N=18, iters=400, batch_size=256, lr=1e-3,
                                 generator=torch.Generator().manual_seed(2))
    after = err(ema)
    assert before > 1.0 and after < 0.5 * before, (before, after)
    assert len(losses) == 400 and all(math.isfinite(v) for v in losses)


# --- multistep sampling ----------------------------------------------------------------------------------
def test_multistep_by_hand():
    def f(x, sigma):
        return torch.tanh(x) / (1 + sigma)

    x_T = torch.tensor([[3.0, -1.0]], dtype=torch.float64)
    z = [torch.tensor([[0.5, 0.25]], dtype=torch.float64)]
    got = cm.multistep(f, x_T, [10.0, 2.0], noise=z)
    x = math.tanh(3.0) / 11, math.tanh(-1.0) / 11
    want = torch.tensor([[math.tanh(x[0] + 2 * 0.5) / 3, math.tanh(x[1] + 2 * 0.25) / 3]],
                        dtype=torch.float64)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="strictly decreasing"):
        cm.multistep(f, x_T, [1.0, 2.0])
    with pytest.raises(ValueError, match="noise must hold"):
        cm.multistep(f, x_T, [10.0, 2.0, 1.0], noise=z)


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_dc_sample_consistency_is_multistep_in_vp_variables(steps):
    """dc.sample(sampler="consistency") on a grid = consistency.multistep on the grid's σ levels with f the
    v-model's consistency function, given the same noise draws."""
    torch.manual_seed(5)
    net = _Net().double()
    grid = S.grid(steps, "trailing")
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    got = dc.sample(net, S, x_T, sampler="consistency", steps=steps, spacing="trailing", prediction="v",
                    generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    noise = [torch.randn(x_T.shape, generator=g, dtype=x_T.dtype) for _ in range(steps - 1)]
    sig = grid.sigmas[:-1]
    want = cm.multistep(lambda x, s_: cm.consistency_fn(net, x, s_, S, prediction="v"),
                        x_T * math.sqrt(1 + float(sig[0]) ** 2), sig, noise=noise)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_consistency_sampling_needs_noise_independent_of_x_T():
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(8))
    with pytest.raises(ValueError, match="first draw equals x_T"):
        dc.sample(_Net(), S, x_T, sampler="consistency", steps=2, spacing="trailing",
                  generator=torch.Generator().manual_seed(8))


# --- ECT ---------------------------------------------------------------------------------------------------
def test_ect_schedule_starts_as_denoising_and_shrinks_by_q_per_stage():
    t = torch.tensor([SIG_MIN, 0.1, 1.0, 10.0, SIG_MAX], dtype=torch.float64)
    assert torch.all(cm.ect_r(t, 0, SIG_MIN) == 0)                    # stage 0: every target is the data
    d1, d2 = cm.ect_delta(t, 1), cm.ect_delta(t, 2)
    torch.testing.assert_close(d1 / d2, torch.full_like(t, 2.0))
    torch.testing.assert_close(cm.ect_delta(t, 0), t * (1 + 8 * torch.sigmoid(-t)))
    r = cm.ect_r(t, 6, SIG_MIN)
    assert torch.all((r == 0) | (r >= SIG_MIN)) and torch.all(r < t)
    assert float(r[-1] / t[-1]) > 0.98                                # late stages: r close to t
    with pytest.raises(ValueError, match="stage must be an integer"):
        cm.ect_delta(t, -1)


def test_pseudo_huber_limits():
    a, c = torch.zeros(2, 4), 0.01
    small, large = torch.full((2, 4), 1e-4), torch.full((2, 4), 10.0)
    torch.testing.assert_close(cm.pseudo_huber(small, a, c), small.pow(2).sum(1) / (2 * c), rtol=1e-3, atol=0)
    torch.testing.assert_close(cm.pseudo_huber(large, a, c), large.norm(dim=1) - c, rtol=1e-4, atol=0)
    assert math.isclose(cm.huber_c(torch.zeros(1, 1, 28, 28)), 0.00054 * 28)
    with pytest.raises(ValueError, match="c must be > 0"):
        cm.pseudo_huber(a, a, 0.0)


def test_ect_loss_at_stage_0_is_a_weighted_denoising_loss():
    """With every r = 0 the target is x_0 itself: the loss equals (1/t)·d(f(x_0 + t ε, t), x_0) by hand."""
    torch.manual_seed(9)
    net = _Net().double()
    x0 = torch.randn(16, 2, dtype=torch.float64)
    loss = cm.ect_loss(net, x0, S, 0, prediction="v", generator=torch.Generator().manual_seed(10))
    g = torch.Generator().manual_seed(10)
    t = cm.sample_sigma(S, 16, g)
    eps = torch.randn(x0.shape, generator=g, dtype=x0.dtype)
    f = cm.consistency_fn(net, x0 + t[:, None] * eps, t, S, prediction="v")
    want = (cm.pseudo_huber(f, x0, cm.huber_c(x0)) / t).mean()
    torch.testing.assert_close(loss, want)


def test_tune_resumes_bit_identically_and_refuses_other_settings(tmp_path):
    torch.manual_seed(11)
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (64,))
    init = dc.UNet("tiny")
    cfg = cm.TuneConfig(iters=6, stage_iters=3, batch_size=4, checkpoint_every=2)
    cpu = torch.device("cpu")
    cm.tune(cfg, tmp_path / "a", copy.deepcopy(init), S, (x, y), device=cpu, progress=False)
    cm.tune(cfg, tmp_path / "b", copy.deepcopy(init), S, (x, y), device=cpu, progress=False,
            stop_after=4)
    cm.tune(cfg, tmp_path / "b", copy.deepcopy(init), S, (x, y), device=cpu, progress=False,
            resume=True)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("a", "b"))
    assert a["step"] == b["step"] == 6
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    assert (tmp_path / "a" / "stage_00.pt").exists() and (tmp_path / "a" / "stage_01.pt").exists()
    net, pred = cm.load_tuned(tmp_path / "a" / "last.pt")
    assert pred == "v" and not net.training
    other = cm.TuneConfig(iters=6, stage_iters=3, batch_size=4, checkpoint_every=2, lr=1e-3)
    with pytest.raises(CheckpointError, match="other settings.*lr"):
        cm.tune(other, tmp_path / "a", copy.deepcopy(init), S, (x, y), device=cpu, progress=False,
                resume=True)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("iters", 0, "iters must be a positive integer"),
    ("prediction", "x0", "boundary condition"),
    ("label_dropout", 1.5, "label_dropout must lie in"),
    ("q", 1.0, "q must be > 1"),
    ("ema_decay", 1.0, "ema_decay must lie in"),
])
def test_tune_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        cm.TuneConfig(**{field: value}).validate()

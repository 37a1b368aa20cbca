"""Flow matching and rectified flow (ddpm_course.flow): the straight path and its velocity, the VP ↔ flow-time
change of variables (both ways, and the same point of the same path), the course's ε-model as a velocity field
(equal to the exact toy velocity for the exact oracle), one Euler step in flow time = one DDIM step (so every
course sampler applies), prediction="flow" in dc.sample, the straightness measure on paths whose answer is
known, the flow-matching loss by hand, and a reflow loop that resumes bit-identically."""

import copy
import math

import pytest
import torch

import ddpm_course as dc
from ddpm_course import flow
from ddpm_course.train import CheckpointError, load_checkpoint

S = dc.NoiseSchedule.linear(1000)


def _oracle():
    return dc.toy.MixtureOracle.eight_gaussians(S)


def test_straight_path_and_its_velocity():
    x0, eps = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(flow.interpolate(x0, eps, 0.0), x0)
    assert torch.equal(flow.interpolate(x0, eps, 1.0), eps)
    h = 1e-6
    for tau in (0.1, 0.5, 0.9):                                          # u = dx_τ/dτ, the same at every τ
        d = (flow.interpolate(x0, eps, tau + h) - flow.interpolate(x0, eps, tau - h)) / (2 * h)
        torch.testing.assert_close(d, flow.velocity_target(x0, eps))


def test_vp_and_flow_time_are_the_same_point_of_the_same_path():
    x0, eps = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    t = torch.tensor([0, 100, 500, 900, 999])
    ab = S.alpha_bars[t]
    z = dc.q_sample(x0, t, eps, S)
    x, tau = flow.vp_to_flow(z, ab)
    torch.testing.assert_close(x, flow.interpolate(x0, eps, tau))
    torch.testing.assert_close(tau, flow.tau_of_sigma(S.sigmas[t]))     # τ = σ/(1 + σ)
    z2, ab2 = flow.flow_to_vp(x, tau)
    torch.testing.assert_close(z2, z)
    torch.testing.assert_close(ab2, ab)
    torch.testing.assert_close(flow.sigma_of_tau(tau), S.sigmas[t])


def test_the_eps_oracle_as_a_velocity_is_the_exact_velocity():
    o = _oracle()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tau = torch.linspace(0.02, 0.99, 8, dtype=torch.float64)
    torch.testing.assert_close(flow.EpsAsVelocity(o, S)(x, tau), flow.exact_velocity(o)(x, tau))
    at_one = flow.exact_velocity(o)(x, 1.0)                              # pure noise: u = x − E[x_0]
    torch.testing.assert_close(at_one, x - flow._data_mean(o))
    with pytest.raises(ValueError, match="tau must lie in the schedule's range"):
        flow.EpsAsVelocity(o, S)(x, 1.0)


def test_velocity_from_eps_is_eps_minus_x0():
    x0, eps = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    ab = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    z = ab.sqrt()[:, None] * x0 + (1 - ab).sqrt()[:, None] * eps
    torch.testing.assert_close(flow.velocity_from_eps(eps, z, ab), eps - x0)


@pytest.mark.parametrize(("steps", "spacing"),
                         [(1, "trailing"), (4, "trailing"), (10, "leading"), (7, "karras")])
def test_euler_in_flow_time_is_ddim_on_the_same_levels(steps, spacing):
    o = _oracle()
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    grid = S.grid(steps, spacing)
    want = dc.sample(o, S, x_T, sampler="ddim", steps=steps, spacing=spacing)
    taus = torch.cat([flow.tau_of_sigma(grid.sigmas[:-1]), torch.zeros(1, dtype=torch.float64)])
    x1, _ = flow.vp_to_flow(x_T, grid.alpha_bars[0])
    got = flow.euler(flow.EpsAsVelocity(o, S), x1, taus)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_prediction_flow_makes_every_sampler_run_a_velocity_model():
    """A network that outputs the exact velocity u = ε̂ − x̂_0 of the oracle, sampled with prediction="flow",
    gives the oracle's samples for each sampler."""
    o = _oracle()

    def velocity_net(z, t):
        return flow.velocity_from_eps(o(z, t), z, 1 / (1 + S.t_to_sigma(t) ** 2))

    x_T = torch.randn(40, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for sampler in ("ddim", "heun", "dpmpp_2m", "unipc"):
        a = dc.sample(o, S, x_T, sampler=sampler, steps=8, spacing="karras")
        b = dc.sample(velocity_net, S, x_T, sampler=sampler, steps=8, spacing="karras", prediction="flow")
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_euler_and_uniform_taus_by_hand_and_bad_levels():
    x = flow.euler(lambda x, tau: x * 0 + tau, torch.zeros(1, 1, dtype=torch.float64), [1.0, 0.5, 0.0])
    assert float(x) == pytest.approx(-(0.5 * 1.0 + 0.5 * 0.5))
    want = torch.tensor([1, 0.75, 0.5, 0.25, 0], dtype=torch.float64)
    torch.testing.assert_close(flow.uniform_taus(4), want)
    with pytest.raises(ValueError, match="strictly decreasing"):
        flow.euler(lambda x, tau: x, torch.zeros(1, 1), [0.0, 1.0])
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        flow.uniform_taus(0)


def test_straightness_is_zero_for_a_line_and_known_for_a_bend():
    taus = flow.uniform_taus(4)
    a, b = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    line = [flow.interpolate(b, a, float(t)) for t in taus]
    assert flow.straightness(line, taus) == pytest.approx(0.0, abs=1e-12)
    # a bend (2,0) → (1,1) → (0,0) as τ goes 1 → 0.5 → 0
    bend = [torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 0.0]])]
    t2 = [1.0, 0.5, 0.0]
    # segment velocities (2, −2) and (2, 2) against the chord (2, 0): ‖·‖² = 4 on both halves → S = 4
    assert flow.straightness(bend, t2) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="one state per level"):
        flow.straightness(bend, taus)


def test_exact_toy_paths_are_curved_and_rectified_pairs_are_straight():
    """The exact ODE of eight Gaussians bends its paths (S > 0); the straight line between the same noise and
    its ODE end point — what reflow learns — has S = 0."""
    o = _oracle()
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    taus = flow.uniform_taus(100)
    x0, path = flow.euler(flow.exact_velocity(o), x_T, taus, return_path=True)
    assert flow.straightness(path, taus) > 0.05
    line = [flow.interpolate(x0, x_T, float(t)) for t in taus]
    assert flow.straightness(line, taus) < 1e-20


def test_flow_matching_loss_by_hand():
    torch.manual_seed(5)
    net = torch.nn.Linear(2, 2).double()

    def model(z, t):
        return net(z) + t[:, None] / 1000

    x0, eps = torch.randn(16, 2, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    loss = flow.flow_matching_loss(model, x0, eps, S, generator=torch.Generator().manual_seed(6))
    t = torch.rand(16, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 999
    ab = (1 / (1 + S.t_to_sigma(t) ** 2))[:, None]
    z = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    torch.testing.assert_close(loss, (model(z, t) - (eps - x0)).pow(2).mean())


def test_reflow_resumes_bit_identically_and_refuses_other_settings(tmp_path):
    torch.manual_seed(7)
    eps, x0 = torch.randn(32, 1, 28, 28), torch.rand(32, 1, 28, 28) * 2 - 1
    init = dc.UNet("tiny")
    cfg = flow.ReflowConfig(iters=5, batch_size=4, checkpoint_every=2)
    cpu = torch.device("cpu")
    flow.reflow(cfg, tmp_path / "a", copy.deepcopy(init), S, (eps, x0), device=cpu, progress=False)
    for kw in (dict(stop_after=3), dict(resume=True)):
        flow.reflow(cfg, tmp_path / "b", copy.deepcopy(init), S, (eps, x0), device=cpu, progress=False, **kw)
    a, b = (load_checkpoint(tmp_path / d / "last.pt") for d in ("a", "b"))
    assert a["step"] == b["step"] == 5
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    model = flow.load_reflowed(tmp_path / "a" / "last.pt")
    x = dc.sample(model, S, torch.randn(2, 1, 28, 28), sampler="ddim", steps=2, spacing="trailing",
                  prediction="flow")
    assert x.shape == (2, 1, 28, 28) and torch.isfinite(x).all()
    with pytest.raises(CheckpointError, match="other settings.*batch_size"):
        flow.reflow(flow.ReflowConfig(iters=5, batch_size=8, checkpoint_every=2), tmp_path / "a",
                    copy.deepcopy(init), S, (eps, x0), device=cpu, progress=False, resume=True)
    with pytest.raises(ValueError, match="pairs must be"):
        flow.reflow(cfg, tmp_path / "c", copy.deepcopy(init), S, (eps, x0[:, :, :27]), device=cpu)
    assert not math.isnan(float(a["wall_time"]))

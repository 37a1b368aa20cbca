"""Cross-check against diffusers (pinned 0.42.1 in the dev extra), step for step, same model, same noise.

The model is a fixed, nonlinear, time-dependent ε-predictor (a random 3×3 conv with tanh) on 1×8×8
"images" in float64. Scheduler configurations, chosen so that both sides compute the same thing:

* all: ``num_train_timesteps=1000, beta_schedule="linear"`` (1e-4 → 0.02), ``steps_offset=0``,
  ``prediction_type="epsilon"``. diffusers builds β in float32; most tests replace its
  ``alphas_cumprod`` by our float64 table so that agreement is to ~1e-12, and one test keeps
  diffusers' own float32 table (agreement to float32 precision).
* DDIMScheduler: ``clip_sample=False, set_alpha_to_one=True`` (last step to ᾱ = 1), η = 0, spacing
  ``leading`` and ``trailing`` with steps dividing T. Excepted: ``linspace``, where diffusers' DDIM takes
  the previous timestep as t − T//S instead of the next entry of its own list (a known upstream bug,
  which we deliberately do not copy; ``test_diffusers_ddim_linspace_uses_t_minus_T_over_S`` shows it).
  The same t − T//S rule also misplaces trailing grids when S does not divide T.
* DDPMScheduler: ``clip_sample=False, variance_type="fixed_small"`` (β̃) or ``"fixed_large"`` (β); it looks
  the previous timestep up in its list, so linspace agrees too. Noise: one N(0, I) draw per step from
  the same CPU generator; diffusers skips the draw at t = 0 and we skip it on the last step.
* DPMSolverMultistepScheduler: ``algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
  lower_order_final=True, final_sigmas_type="zero", timestep_spacing="trailing"`` (its leading and
  linspace rules differ from DDIM's: they space S + 1 points and drop one). diffusers computes the
  update in float32 (it casts the sample up to float32 "for precision"), so agreement is to ~1e-6.
"""

import os

import pytest
import torch

import ddpm_course as dc

os.environ.setdefault("HF_HUB_OFFLINE", "1")
diffusers = pytest.importorskip("diffusers")
# diffusers 0.42.1 calls np.array on a tensor with numpy 2's copy keyword; harmless here
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]   # tests/conftest.py, like the schedule fixture `s`

BASE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
            prediction_type="epsilon")


class FixedConvNet:
    """A deterministic nonlinear ε-model: ε = (1 − t/T) tanh(w ∗ x) + (t/T) 0.9 x, w a fixed random 3×3."""

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.w = 0.5 * torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)

    def __call__(self, x, t):
        tt = (t.to(x.dtype) / 1000).reshape(-1, 1, 1, 1)
        return (1 - tt) * torch.tanh(torch.nn.functional.conv2d(x, self.w.to(x), padding=1)) + tt * 0.9 * x


def noise(seed=0, dtype=torch.float64):
    return torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def run_diffusers(sched, model, x, generator=None):
    """The usual diffusers loop; returns the final sample and the state at the start of every step."""
    states = []
    for t in sched.timesteps:
        states.append(x)
        eps = model(x, t.expand(len(x)))
        kw = {} if generator is None else {"generator": generator}
        x = sched.step(eps, t, x, **kw).prev_sample
    return x, states


def run_ours(model, s, x, **kw):
    x0, info = dc.sample(model, s, x, return_info=True, **kw)
    return x0, [a for a, _ in info.trajectory]


def assert_step_for_step(ours, theirs, rtol, atol):
    (x_ours, states_ours), (x_theirs, states_theirs) = ours, theirs
    assert len(states_ours) == len(states_theirs)
    for i, (a, b) in enumerate(zip(states_ours, states_theirs, strict=True)):
        assert torch.allclose(a, b.to(a), rtol=rtol, atol=atol), f"step {i}: {(a - b).abs().max().item():.3g}"
    assert torch.allclose(x_ours, x_theirs.to(x_ours), rtol=rtol, atol=atol)


def ddim_scheduler(spacing):
    return diffusers.DDIMScheduler(**BASE, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                                   timestep_spacing=spacing)


def float64_tables(sched, s):
    sched.alphas_cumprod = s.alpha_bars.clone()
    return sched


@pytest.mark.parametrize("spacing, steps", [("leading", 10), ("leading", 50), ("trailing", 20),
                                            ("trailing", 100)])
def test_ddim_matches_ddimscheduler(s, spacing, steps):
    model, x = FixedConvNet(), noise()
    sched = float64_tables(ddim_scheduler(spacing), s)
    sched.set_timesteps(steps)
    theirs = run_diffusers(sched, model, x)
    ours = run_ours(model, s, x, sampler="ddim", steps=steps, spacing=spacing)
    assert_step_for_step(ours, theirs, rtol=1e-10, atol=1e-10)


def test_ddim_matches_with_diffusers_float32_tables(s):
    """Without the float64 tables: the schedules differ only by float32 rounding of β."""
    model, x = FixedConvNet(), noise()
    sched = ddim_scheduler("leading")
    sched.set_timesteps(50)
    assert torch.allclose(sched.alphas_cumprod.double(), s.alpha_bars, rtol=1e-5)
    assert_step_for_step(run_ours(model, s, x, sampler="ddim", steps=50), run_diffusers(sched, model, x),
                         rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spacing, steps, variance", [
    ("leading", 1000, "fixed_small"), ("leading", 50, "fixed_small"), ("linspace", 25, "fixed_small"),
    ("trailing", 20, "fixed_small"), ("leading", 50, "fixed_large")])
def test_ddpm_matches_ddpmscheduler(s, spacing, steps, variance):
    """Same model and the same noise draws. With trailing spacing diffusers draws one more N(0, I) at the
    last step and scales it by √1e-20 (its clamp of the zero variance), hence atol 1e-9 there."""
    model, x = FixedConvNet(), noise()
    sched = float64_tables(diffusers.DDPMScheduler(**BASE, clip_sample=False, variance_type=variance,
                                                   timestep_spacing=spacing, steps_offset=0), s)
    sched.set_timesteps(steps)
    theirs = run_diffusers(sched, model, x, generator=torch.Generator().manual_seed(5))
    ours = run_ours(model, s, x, sampler="ddpm", steps=steps, spacing=spacing, variance=variance,
                    generator=torch.Generator().manual_seed(5))
    assert_step_for_step(ours, theirs, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("steps", [5, 10, 20, 25])
def test_dpmpp_2m_matches_dpmsolvermultistep(s, steps):
    model, x = FixedConvNet(), noise()
    sched = float64_tables(diffusers.DPMSolverMultistepScheduler(
        **BASE, algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True,
        final_sigmas_type="zero", timestep_spacing="trailing", steps_offset=0, use_karras_sigmas=False), s)
    sched.set_timesteps(steps)
    assert torch.equal(sched.timesteps.long(), s.timesteps(steps, "trailing"))
    assert torch.allclose(sched.sigmas.double(), s.grid(steps, "trailing").sigmas, rtol=1e-6)
    assert_step_for_step(run_ours(model, s, x, sampler="dpmpp_2m", steps=steps, spacing="trailing"),
                         run_diffusers(sched, model, x), rtol=1e-5, atol=1e-5)


def test_diffusers_ddim_linspace_uses_t_minus_T_over_S(s):
    """Why our linspace DDIM differs from diffusers': with 7 linspace steps the list is
    999, 832, 666, 500, 333, 166, 0, but DDIMScheduler.step moves from 999 to 999 − 1000//7 = 857,
    not to 832."""
    model, x = FixedConvNet(), noise()
    sched = float64_tables(ddim_scheduler("linspace"), s)
    sched.set_timesteps(7)
    ts = [999, 832, 666, 500, 333, 166, 0]
    assert sched.timesteps.tolist() == s.timesteps(7, "linspace").tolist() == ts
    t = torch.full((4,), 999)
    eps = model(x, t)
    theirs = sched.step(eps, 999, x).prev_sample

    def ddim_step(ab_prev):                                             # DDIM eq. 12 with η = 0
        ab = s.alpha_bars[999].item()
        x0 = (x - (1 - ab) ** 0.5 * eps) / ab**0.5
        return ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * eps

    assert torch.allclose(theirs, ddim_step(s.alpha_bars[857].item()), rtol=1e-12)   # t − T//S
    assert not torch.allclose(theirs, ddim_step(s.alpha_bars[832].item()), rtol=1e-3)  # the list's next entry
    ours, info = dc.sample(model, s, x, sampler="ddim", steps=7, spacing="linspace", return_info=True)
    assert torch.allclose(info.trajectory[1][0], ddim_step(s.alpha_bars[832].item()), rtol=1e-12)
    sched.set_timesteps(7)
    assert (run_diffusers(sched, model, x)[0] - ours).abs().max() > 1e-3    # the whole run differs


def to_vp(states, sigmas):
    """diffusers' Euler-type schedulers keep x̃ = x √(1 + σ²) (σ-space); ours record x."""
    return [x / (1 + float(sig) ** 2) ** 0.5 for x, sig in zip(states, sigmas, strict=False)]


@pytest.mark.parametrize("steps", [5, 10, 25])
def test_euler_ancestral_matches_eulerancestraldiscrete(s, steps):
    """Same model and noise (one N(0, I) per step from one CPU generator, float32 as diffusers draws it in
    the model output's dtype; diffusers also draws at the last step, where σ_up = 0). diffusers keeps its
    σ table in float32, hence 1e-5. Started from x̃_T = x_T √(1 + σ_max²) (its init_noise_sigma rounds that
    to σ_max for trailing spacing)."""
    model, x = FixedConvNet(), noise(dtype=torch.float32)
    sched = float64_tables(diffusers.EulerAncestralDiscreteScheduler(**BASE, timestep_spacing="trailing",
                                                                     steps_offset=0), s)
    sched.set_timesteps(steps)
    grid = s.grid(steps, "trailing")
    assert torch.allclose(sched.sigmas.double(), grid.sigmas, rtol=1e-5)
    g_theirs, states, xs = torch.Generator().manual_seed(3), [], x * (1 + float(grid.sigmas[0]) ** 2) ** 0.5
    for t in sched.timesteps:
        states.append(xs)
        eps = model(sched.scale_model_input(xs, t), t.expand(len(xs)))
        xs = sched.step(eps, t, xs, generator=g_theirs).prev_sample
    ours = run_ours(model, s, x, sampler="euler_ancestral", steps=steps, spacing="trailing",
                    generator=torch.Generator().manual_seed(3))
    assert_step_for_step(ours, (xs, to_vp(states, grid.sigmas)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_dpmpp_2m_sde_matches_sde_dpmsolver(s, steps):
    """DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", midpoint, lower order at the end): the
    same float32 noise draw per step (diffusers draws one at the last step too and multiplies it by 0)."""
    model, x = FixedConvNet(), noise(dtype=torch.float32)
    sched = float64_tables(diffusers.DPMSolverMultistepScheduler(
        **BASE, algorithm_type="sde-dpmsolver++", solver_order=2, solver_type="midpoint",
        lower_order_final=True, final_sigmas_type="zero", timestep_spacing="trailing", steps_offset=0,
        use_karras_sigmas=False), s)
    sched.set_timesteps(steps)
    theirs = run_diffusers(sched, model, x, generator=torch.Generator().manual_seed(4))
    ours = run_ours(model, s, x, sampler="dpmpp_2m_sde", steps=steps, spacing="trailing",
                    generator=torch.Generator().manual_seed(4))
    assert_step_for_step(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("steps", [2, 5, 10, 20])
def test_unipc_matches_unipcmultistep(s, steps):
    """UniPCMultistepScheduler with its defaults (order 2, bh2, data prediction, corrector on, lower order
    at the end, final σ = 0), trailing spacing. Its states are the *predicted* samples (the corrector
    then moves them before the next predictor); ours record the same. diffusers casts to float32."""
    model, x = FixedConvNet(), noise()
    sched = float64_tables(diffusers.UniPCMultistepScheduler(
        **BASE, solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True,
        disable_corrector=[], final_sigmas_type="zero", timestep_spacing="trailing", steps_offset=0), s)
    sched.set_timesteps(steps)
    theirs = run_diffusers(sched, model, x)
    ours = run_ours(model, s, x, sampler="unipc", steps=steps, spacing="trailing")
    assert_step_for_step(ours, theirs, rtol=1e-5, atol=1e-5)
    dpm = dc.sample(model, s, x, sampler="dpmpp_2m", steps=steps, spacing="trailing")
    if steps > 2:                                                # the corrector changes the result
        assert (ours[0] - dpm).abs().max() > 1e-4


@pytest.mark.parametrize("x0_clip", ["static", "dynamic"])
def test_x0_clipping_matches_ddpmscheduler(s, x0_clip):
    """DDPMScheduler(clip_sample=True) clips x̂_0 before its posterior mean; thresholding=True is Imagen's
    dynamic thresholding (p = 0.995; sample_max_value raised so that s is not capped at 1, as in Imagen).
    The model is scaled up so that x̂_0 leaves [−1, 1] and the clipping matters."""
    model, x = FixedConvNet(), noise()
    big = lambda x, t: 3.0 * model(x, t)                                       # noqa: E731
    kw = dict(clip_sample=True) if x0_clip == "static" else \
        dict(clip_sample=False, thresholding=True, dynamic_thresholding_ratio=0.995, sample_max_value=1e6)
    sched = float64_tables(diffusers.DDPMScheduler(**BASE, variance_type="fixed_small", steps_offset=0,
                                                   timestep_spacing="leading", **kw), s)
    sched.set_timesteps(20)
    theirs = run_diffusers(sched, big, x, generator=torch.Generator().manual_seed(5))
    ours = run_ours(big, s, x, sampler="ddpm", steps=20, generator=torch.Generator().manual_seed(5),
                    x0_clip=x0_clip)
    assert_step_for_step(ours, theirs, rtol=1e-6, atol=1e-6)
    plain = dc.sample(big, s, x, sampler="ddpm", steps=20, generator=torch.Generator().manual_seed(5))
    assert (plain - ours[0]).abs().max() > 1e-3                                # the clipping did something


def test_x0_clipping_matches_ddimscheduler_with_the_clipped_eps(s):
    """DDIMScheduler(clip_sample=True) with use_clipped_model_output=True: the ε̂ of the direction term is
    recomputed from the clipped x̂_0, as ours always is (diffusers' default keeps the unclipped ε̂)."""
    model, x = FixedConvNet(), noise()
    big = lambda x, t: 3.0 * model(x, t)                                       # noqa: E731
    sched = float64_tables(diffusers.DDIMScheduler(**BASE, clip_sample=True, set_alpha_to_one=True,
                                                   steps_offset=0, timestep_spacing="leading"), s)
    sched.set_timesteps(10)
    states, xs = [], x
    for t in sched.timesteps:
        states.append(xs)
        xs = sched.step(big(xs, t.expand(len(xs))), t, xs, use_clipped_model_output=True).prev_sample
    ours = run_ours(big, s, x, sampler="ddim", steps=10, x0_clip="static")
    assert_step_for_step(ours, (xs, states), rtol=1e-8, atol=1e-8)
    assert (dc.sample(big, s, x, sampler="ddim", steps=10) - ours[0]).abs().max() > 1e-3

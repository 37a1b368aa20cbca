"""The sampler explorers of notebooks 04, 05 and 08 exactly as the notebooks build them: the shipped MNIST
model, x_T drawn with ``torch.Generator().manual_seed(0)``, the notebooks' labels. At every η of the slider
and every sampler of the dropdown the picture must be ``dc.sample`` with the same arguments (the explorer's
noise seeded by ``widgets.noise_seed``) and stay a digit-range image: the bug this guards against drew the
sampler's fresh noise from the same seed as x_T, so that DDIM with 0 < η < 1 blew up to |x| ≈ 5–20.

Four digits and the fast-mode step choices keep it to a few seconds on one core."""

import numpy as np
import pytest
import torch

import ddpm_course as dc
from ddpm_course import viz, widgets

ETAS = [round(0.1 * k, 1) for k in range(11)]       # the η slider: 0.0, 0.1, …, 1.0
N = 4


@pytest.fixture(scope="module")
def mnist():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, s = dc.load_pretrained("mnist", device="cpu")
    x_T = torch.randn(N, 1, 28, 28, generator=torch.Generator().manual_seed(0))   # as notebooks 04, 05, 08
    y = torch.arange(N) % 10
    yield model, s, x_T, y
    torch.set_num_threads(threads)


def shown(fig):
    return np.asarray(fig.axes[0].images[0].get_array())


def raw_sample(model, s, x_T, y, **kw):
    g = torch.Generator().manual_seed(widgets.noise_seed(0))
    return dc.sample(model, s, x_T, y=y, generator=g, **kw)


def test_the_noise_seed_is_never_a_small_notebook_seed():
    seeds = {widgets.noise_seed(k) for k in range(1000)}
    assert len(seeds) == 1000 and min(seeds) > 10**6
    assert widgets.noise_seed(0) == widgets.noise_seed(0)                       # deterministic


@pytest.mark.parametrize("eta", ETAS)
def test_notebook04_ddim_explorer_matches_dc_sample_and_stays_in_range(mnist, eta):
    model, s, x_T, y = mnist
    ex = widgets.sampler_explorer(model, s, x_T, samplers=("ddim",), steps=(5, 10, 20), y=y)
    fig = ex.render(steps=5, eta=eta)
    x0 = raw_sample(model, s, x_T, y, sampler="ddim", steps=5, eta=eta)
    np.testing.assert_allclose(shown(fig), viz.make_grid(x0.clamp(-1, 1)), atol=1e-6)
    assert float(x0.abs().max()) < 1.5, f"η = {eta}: |x0| reached {float(x0.abs().max()):.1f}"
    assert float((x0.abs() > 1.1).float().mean()) < 0.01      # a slight overshoot of the background only


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "heun", "ddim", "euler", "ddpm"])
def test_notebook05_explorer_every_sampler(mnist, sampler):
    model, s, x_T, y = mnist
    ex = widgets.sampler_explorer(model, s, x_T, samplers=("dpmpp_2m", "heun", "ddim", "euler", "ddpm"),
                                  steps=(5, 10, 20), y=y)
    fig = ex.render(sampler=sampler, steps=10, eta=0.5)          # η only reaches DDIM, as in the widget
    kw = {"eta": 0.5} if sampler == "ddim" else {}
    x0 = raw_sample(model, s, x_T, y, sampler=sampler, steps=10, **kw)
    np.testing.assert_allclose(shown(fig), viz.make_grid(x0.clamp(-1, 1)), atol=1e-6)
    assert float(x0.abs().max()) < 2.0


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.3), ("ddim", 0.7), ("dpmpp_2m", 0.0)])
def test_notebook08_guided_explorer(mnist, sampler, eta):
    model, s, x_T, y = mnist
    ex = widgets.sampler_explorer(model, s, x_T, samplers=("dpmpp_2m", "ddim"), steps=(10,), y=y,
                                  guidance_scales=(1.0, 2.0, 3.0, 5.0, 7.5))
    fig = ex.render(sampler=sampler, steps=10, eta=eta, guidance_scale=2.0)
    kw = {"eta": eta} if sampler == "ddim" else {}
    x0 = raw_sample(model, s, x_T, y, sampler=sampler, steps=10, guidance_scale=2.0, **kw)
    np.testing.assert_allclose(shown(fig), viz.make_grid(x0.clamp(-1, 1)), atol=1e-6)
    assert float(x0.abs().max()) < 2.5


@pytest.mark.parametrize("sampler,kw", [("ddim", {"eta": 0.5}), ("ddpm", {})])
def test_sample_refuses_a_generator_that_replays_x_T(sampler, kw):
    s = dc.NoiseSchedule.linear(100)
    x_T = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="generator: its first draw equals x_T"):
        dc.sample(lambda x, t, y=None: torch.zeros_like(x), s, x_T, sampler=sampler, steps=5,
                  generator=torch.Generator().manual_seed(0), **kw)
    g = torch.Generator().manual_seed(1)                         # a different seed passes, and the check
    dc.samplers._check_noise_differs(x_T, g)                      # only peeks: g is where it was
    fresh = torch.Generator().manual_seed(1)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=fresh))

"""The interactive parts of notebooks 03 and 04, without a kernel: notebook 04's DDIM explorer
(dc.widgets.sampler_explorer restricted to ddim, η slider, steps dropdown) and notebook 03's animation
of x_t and x̂_0. An exact mixture denoiser on 8×8 "images" stands in for the U-Net."""

import numpy as np
import pytest
import torch

import ddpm_course as dc
from ddpm_course import viz, widgets

STEPS = (5, 10, 20)           # notebook 04's explorer_steps in fast mode


class Counting:
    """A class-conditional model that counts its calls (to see the explorer's cache at work)."""

    def __init__(self, model):
        self.model, self.null_label, self.calls = model, model.null_label, 0

    def __call__(self, x, t, y=None):
        self.calls += 1
        return self.model(x, t, y)


@pytest.fixture()
def setup():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors: one thread is much faster on a shared machine
    s = dc.NoiseSchedule.linear(1000)
    means = 0.5 * torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = Counting(dc.toy.MixtureOracle(s, means, torch.full((10,), 0.2)))
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4)
    ex = widgets.sampler_explorer(model, s, x_T, samplers=("ddim",), steps=STEPS, y=y)
    yield s, model, x_T, y, ex
    torch.set_num_threads(threads)


def image(fig):
    return np.asarray(fig.axes[0].images[0].get_array())


def test_defaults_are_ddim_middle_steps_and_eta_zero(setup):
    *_, ex = setup
    assert ex.defaults["sampler"] == "ddim" and ex.defaults["steps"] == 10 and ex.defaults["eta"] == 0.0
    assert set(ex._control_factories) == {"sampler", "steps", "eta"}          # no guidance control


def test_render_shows_exactly_dc_sample_with_those_settings(setup):
    s, model, x_T, y, ex = setup
    fig = ex.render()
    title = fig.axes[0].get_title()
    assert "ddim, 10 steps, η = 0" in title and "NFE = 10" in title
    expected = dc.sample(model, s, x_T, sampler="ddim", steps=10, eta=0.0, y=y)
    np.testing.assert_allclose(image(fig), viz.make_grid(expected.clamp(-1, 1)), atol=1e-6)


def test_results_are_cached_and_eta_changes_the_image(setup):
    *_, model, _, _, ex = setup
    a = image(ex.render(eta=0.0))
    calls = model.calls
    assert np.array_equal(image(ex.render(eta=0.0)), a) and model.calls == calls   # cached: no new calls
    b = image(ex.render(eta=1.0))
    assert model.calls == calls + 10 and not np.allclose(a, b)                     # stochastic: differs
    assert np.array_equal(image(ex.render(eta=1.0)), b)                            # seeded: repeatable
    assert "η = 1" in ex.last_figure.axes[0].get_title()


def test_steps_change_the_nfe(setup):
    *_, ex = setup
    for steps in STEPS:
        assert f"NFE = {steps}" in ex.render(steps=steps).axes[0].get_title()


def test_widget_callback_rerenders_on_eta_and_steps(setup):
    *_, ex = setup
    box = ex.widget()
    n = ex.n_renders
    eta, steps = ex._controls["eta"], ex._controls["steps"]
    assert (eta.min, eta.max) == (0.0, 1.0) and tuple(steps.options) == STEPS
    assert tuple(ex._controls["sampler"].options) == ("ddim",)
    eta.value = 0.5
    assert ex.n_renders == n + 1 and ex.values["eta"] == 0.5
    assert "η = 0.5" in ex.last_figure.axes[0].get_title()
    steps.value = 5
    assert ex.n_renders == n + 2 and "ddim, 5 steps" in ex.last_figure.axes[0].get_title()
    assert len(box.children) == 2


def test_notebook_03_animation_has_one_frame_per_chosen_step_plus_the_end(setup):
    s, model, x_T, y, _ = setup
    x0, info = dc.sample(model, s, x_T, sampler="ddpm", steps=20, y=y,
                         generator=torch.Generator().manual_seed(2), return_info=True)
    ids = np.unique(np.linspace(0, len(info.trajectory) - 1, 8).round().astype(int))
    frames = [torch.cat([info.trajectory[i][0], info.trajectory[i][1].clamp(-1, 1)]) for i in ids]
    frames.append(torch.cat([x0, x0]))
    anim = viz.animate_images(frames, labels=[str(i) for i in range(len(frames))], nrow=len(x_T))
    html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == len(ids) + 1
    # the last guess x̂_0 (at t = 1) is already the final sample up to the last, noiseless step
    assert torch.allclose(info.trajectory[-1][1], x0, atol=1e-2)

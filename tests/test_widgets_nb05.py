"""The sampler explorer as notebook 05 uses it: a class-conditional model, five samplers, a fixed x_T.

Tested without a kernel: the render function and the widget callback, on an exact class-conditional
mixture denoiser shaped like images (so no training and no network are needed).
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ddpm_course as dc  # noqa: E402
from ddpm_course.toy import MixtureOracle  # noqa: E402

SAMPLERS = ("dpmpp_2m", "heun", "ddim", "euler", "ddpm")   # the notebook's choice, in its order
STEPS = (5, 10, 20)                                        # the notebook's fast-mode steps


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


class CountingModel:
    """An exact class-conditional denoiser for ten 'digit' images (K = 10, null label 10), counting calls."""

    def __init__(self, s):
        means = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.oracle = MixtureOracle(s, means=means, stds=[0.2] * 10)
        self.null_label = self.oracle.null_label
        self.calls = 0

    def __call__(self, x, t, y=None):
        self.calls += 1
        return self.oracle(x, t, y)


@pytest.fixture
def setup():
    s = dc.NoiseSchedule.linear()
    model = CountingModel(s)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(4) % 10
    explorer = dc.widgets.sampler_explorer(model, s, x_T, samplers=SAMPLERS, steps=STEPS, y=labels)
    return explorer, model, s, x_T, labels


def _shown_image(fig):
    return fig.axes[0].images[0].get_array()


def test_default_render_is_the_first_sampler_at_the_middle_steps(setup):
    explorer, model, s, x_T, labels = setup
    fig = explorer.render()
    assert fig.axes[0].get_title().startswith("dpmpp_2m, 10 steps\nNFE = 10,")
    assert model.calls == 10


def test_the_picture_is_the_sample_from_the_fixed_x_T(setup):
    explorer, model, s, x_T, labels = setup
    fig = explorer.render(sampler="heun", steps=5)
    expected = dc.sample(model, s, x_T, sampler="heun", steps=5, y=labels).clamp(-1, 1)
    assert np.allclose(_shown_image(fig), dc.viz.make_grid(expected), atol=1e-6)
    assert "heun, 5 steps\nNFE = 9," in fig.axes[0].get_title()            # Heun: 2·steps − 1 evaluations


def test_ddim_and_euler_show_the_same_digits(setup):
    explorer, model, s, x_T, labels = setup
    ddim = _shown_image(explorer.render(sampler="ddim", steps=10, eta=0.0)).copy()
    euler = _shown_image(explorer.render(sampler="euler", steps=10))
    assert np.allclose(ddim, euler, atol=1e-5)


def test_eta_only_changes_ddim(setup):
    explorer, model, s, x_T, labels = setup
    det = _shown_image(explorer.render(sampler="ddim", steps=10, eta=0.0)).copy()
    fig = explorer.render(sampler="ddim", steps=10, eta=1.0)
    assert "η = 1" in fig.axes[0].get_title()
    assert not np.allclose(det, _shown_image(fig))
    calls = model.calls
    explorer.render(sampler="heun", steps=10, eta=1.0)                       # η is ignored (and not shown)
    heun_calls = model.calls - calls
    assert heun_calls == 19
    assert "η" not in explorer.last_figure.axes[0].get_title()


def test_results_are_cached_so_the_static_figure_and_the_widget_share_one_run(setup):
    explorer, model, s, x_T, labels = setup
    explorer.render()                                                          # the notebook's static figure
    calls = model.calls
    box = explorer.widget()                                                    # renders the same default
    assert model.calls == calls and explorer.n_renders == 2
    assert len(box.children) == 2


def test_widget_callback_rerenders_when_a_control_changes(setup):
    explorer, model, s, x_T, labels = setup
    explorer.widget()
    n, calls = explorer.n_renders, model.calls
    explorer._controls["sampler"].value = "ddpm"
    assert explorer.n_renders == n + 1 and explorer.values["sampler"] == "ddpm"
    assert model.calls == calls + 10
    assert explorer.last_figure.axes[0].get_title().startswith("ddpm, 10 steps\nNFE = 10,")
    explorer._controls["steps"].value = 20
    assert explorer.n_renders == n + 2
    assert explorer.last_figure.axes[0].get_title().startswith("ddpm, 20 steps\nNFE = 20,")


def test_an_unknown_sampler_is_refused(setup):
    explorer = setup[0]
    with pytest.raises(ValueError, match="sampler must be one of"):
        explorer.render(sampler="heun_typo")

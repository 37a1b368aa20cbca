"""The guidance explorer as notebook 08 uses it: dc.widgets.sampler_explorer with a guidance dropdown.

Tested without a kernel: the render function and the widget callback, on an exact class-conditional mixture
denoiser shaped like images (ten 'digits', null label 10), so no training and no network are needed.
"""

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ddpm_course as dc  # noqa: E402
from ddpm_course.toy import MixtureOracle  # noqa: E402

SAMPLERS = ("dpmpp_2m", "ddim")                   # the notebook's choice, in its order
STEPS = (5,)                                      # one steps option, as in the notebook's fast mode
SCALES = (1.0, 2.0, 3.0, 5.0, 7.5)                # the notebook's guidance scales


@pytest.fixture(autouse=True)
def _close_figures():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                      # tiny tensors: one thread is faster on a shared machine
    yield
    plt.close("all")
    torch.set_num_threads(threads)


class CountingModel:
    """An exact class-conditional denoiser for ten overlapping 'digit' images (so guidance matters),
    recording every call's batch and labels."""

    def __init__(self, s):
        means = 0.3 * (torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
        self.oracle = MixtureOracle(s, means=means, stds=[0.3] * 10)
        self.null_label = self.oracle.null_label
        self.calls = []

    def __call__(self, x, t, y=None):
        self.calls.append((x.shape[0], None if y is None else y.clone()))
        return self.oracle(x, t, y)


@pytest.fixture
def setup():
    s = dc.NoiseSchedule.linear()
    model = CountingModel(s)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(4)
    explorer = dc.widgets.sampler_explorer(model, s, x_T, samplers=SAMPLERS, steps=STEPS, y=labels,
                                           guidance_scales=SCALES)
    return explorer, model, s, x_T, labels


def _shown(fig):
    return np.asarray(fig.axes[0].images[0].get_array())


def _title(fig):
    return fig.axes[0].get_title()


def test_the_explorer_has_a_guidance_control_starting_unguided(setup):
    explorer = setup[0]
    assert set(explorer._control_factories) == {"sampler", "steps", "eta", "guidance_scale"}
    assert explorer.defaults["guidance_scale"] == 1.0 and explorer.defaults["steps"] == 5


def test_unguided_default_costs_one_nfe_per_step_and_passes_the_labels(setup):
    explorer, model, s, x_T, labels = setup
    fig = explorer.render()
    assert _title(fig).startswith("dpmpp_2m, 5 steps\nNFE = 5,")
    assert len(model.calls) == 5 and all(b == 4 and torch.equal(y, labels) for b, y in model.calls)


@pytest.mark.parametrize("scale", [2.0, 7.5])
def test_guided_render_is_dc_sample_with_that_scale_at_two_nfe_per_step(setup, scale):
    explorer, model, s, x_T, labels = setup
    fig = explorer.render(guidance_scale=scale)
    assert re.search(r"NFE = 10,", _title(fig)) and re.search(rf"\b[sw] = {scale:g}\b", _title(fig))
    assert len(model.calls) == 5                                           # one batched call per step …
    batch, y = model.calls[0]
    assert batch == 8 and torch.equal(y, torch.cat([labels, torch.full_like(labels, 10)]))  # … of 2B
    expected = dc.sample(model, s, x_T, sampler="dpmpp_2m", steps=5, y=labels, guidance_scale=scale)
    np.testing.assert_allclose(_shown(fig), dc.viz.make_grid(expected.clamp(-1, 1)), atol=1e-6)


def test_the_scale_changes_the_picture(setup):
    explorer = setup[0]
    one = _shown(explorer.render(guidance_scale=1.0)).copy()
    five = _shown(explorer.render(guidance_scale=5.0))
    assert np.abs(one - five).max() > 0.05                                  # display units: [0, 1]


def test_widget_callback_follows_the_guidance_dropdown_and_caches(setup):
    explorer, model = setup[:2]
    box = explorer.widget()
    assert len(box.children) == 2
    assert list(explorer._controls["guidance_scale"].options) == list(SCALES)
    n, calls = explorer.n_renders, len(model.calls)
    explorer._controls["guidance_scale"].value = 3.0
    assert explorer.n_renders == n + 1 and explorer.values["guidance_scale"] == 3.0
    assert len(model.calls) == calls + 5 and "NFE = 10," in _title(explorer.last_figure)
    explorer._controls["guidance_scale"].value = 1.0                       # back: served from the cache
    explorer._controls["guidance_scale"].value = 3.0
    assert len(model.calls) == calls + 5 and explorer.n_renders == n + 3
    explorer._controls["sampler"].value = "ddim"
    assert _title(explorer.last_figure).startswith("ddim, 5 steps, η = 0") and len(model.calls) == calls + 10


def test_guidance_without_labels_is_refused():
    s = dc.NoiseSchedule.linear()
    model = CountingModel(s)
    explorer = dc.widgets.sampler_explorer(model, s, torch.randn(2, 1, 8, 8), samplers=SAMPLERS, steps=STEPS,
                                           guidance_scales=SCALES)
    with pytest.raises(ValueError, match="guidance_scale=3.0 needs class labels y"):
        explorer.render(guidance_scale=3.0)

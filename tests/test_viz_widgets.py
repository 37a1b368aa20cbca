"""Figures and widget callbacks, tested without a kernel or a display."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ddpm_course as dc  # noqa: E402
from ddpm_course import viz, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_make_grid_maps_minus_one_to_black_and_one_to_white():
    imgs = torch.stack([torch.full((1, 4, 4), -1.0), torch.full((1, 4, 4), 1.0)])
    grid = viz.make_grid(imgs, nrow=2, padding=0)
    assert grid.shape == (4, 8)
    assert np.allclose(grid[:, :4], 0.0) and np.allclose(grid[:, 4:], 1.0)


def test_make_grid_rejects_wrong_shape():
    with pytest.raises(ValueError, match="images must be a tensor of shape"):
        viz.make_grid(torch.zeros(3, 28, 28))


def test_show_row_labels_every_panel():
    fig = viz.show_row(torch.zeros(3, 1, 8, 8), labels=["a", "b", "c"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["a", "b", "c"]


def test_plot_schedules_draws_one_line_per_schedule():
    fig = viz.plot_schedules({"linear": dc.NoiseSchedule.linear(), "cosine": dc.NoiseSchedule.cosine()})
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 for ax in fig.axes)


def test_trajectory_plot_and_scatter_validate_shapes():
    traj = [torch.randn(10, 2) * (1 - i / 5) for i in range(6)]
    fig = viz.plot_trajectories_2d(traj, n_paths=4)
    assert len(fig.axes[0].lines) == 4
    with pytest.raises(ValueError, match="points must have shape"):
        viz.scatter_2d(torch.zeros(5, 3))


def test_animation_has_one_frame_per_state(tmp_path):
    frames = [torch.rand(4, 1, 8, 8) * 2 - 1 for _ in range(3)]
    anim = viz.animate_images(frames, labels=["t=3", "t=2", "t=1"])
    html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == 3


def test_save_grid_writes_png(tmp_path):
    path = tmp_path / "g.png"
    viz.save_grid(torch.zeros(4, 1, 8, 8), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_forward_explorer_render_shows_the_chosen_t():
    s = dc.NoiseSchedule.linear()
    ex = widgets.forward_explorer(torch.zeros(4, 1, 8, 8), {"linear": s, "cosine": dc.NoiseSchedule.cosine()},
                                  generator=torch.Generator().manual_seed(0))
    fig = ex.render(t=499, schedule="cosine")
    assert "t = 500" in fig.axes[0].get_title()
    assert fig.axes[1].lines[-1].get_xdata()[0] == 500  # the marker sits at the chosen t
    with pytest.raises(ValueError, match="t must lie in"):
        ex.render(t=1000)
    with pytest.raises(ValueError, match="schedule must be one of"):
        ex.render(t=10, schedule="quadratic")


def test_forward_explorer_widget_callback_rerenders_on_slider_change():
    ex = widgets.forward_explorer(torch.zeros(2, 1, 8, 8), {"linear": dc.NoiseSchedule.linear()})
    box = ex.widget()
    n = ex.n_renders
    slider = ex._controls["t"]
    slider.value = 900
    assert ex.n_renders == n + 1 and ex.values["t"] == 900
    assert "t = 901" in ex.last_figure.axes[0].get_title()
    assert len(box.children) == 2

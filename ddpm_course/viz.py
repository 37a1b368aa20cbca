"""Figures the notebooks draw: image grids, schedules, 2-D point clouds, trajectories, animations.

Every function takes tensors in the course's conventions (images in [-1, 1], shape (N, C, H, W); 2-D
points (N, 2)) and returns the matplotlib Figure (or Animation) it drew, so notebooks can tweak or save it
and tests can inspect it without a display.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch


def _check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"{name} must be a tensor of shape (N, 1 or 3, H, W), got {shape}")
    return images.detach().float().cpu()


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """One image (C, H, W) in [-1, 1] -> an (H, W) or (H, W, 3) array in [0, 1] for imshow."""
    x = ((image.detach().float().cpu() + 1) / 2).clamp(0, 1)  # display only: values outside [-1,1] saturate
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile N images into one array (rows of `nrow`, default ≈ √N), ready for imshow."""
    from torchvision.utils import make_grid as tv_make_grid

    images = _check_images(images)
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = tv_make_grid(images, nrow=nrow, padding=padding, pad_value=1.0)  # (3, H', W')
    return to_numpy_image(grid[: images.shape[1]])  # torchvision repeats 1 channel to 3; keep gray as gray


def show_grid(images: torch.Tensor, nrow: int | None = None, title: str | None = None, ax=None,
              size: float = 4.0):
    """Show a grid of images in [-1, 1]; returns the Figure."""
    grid = make_grid(images, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def save_grid(images: torch.Tensor, path, nrow: int | None = None) -> None:
    """Write a grid of images in [-1, 1] to a PNG file."""
    plt.imsave(path, make_grid(images, nrow), cmap="gray", vmin=0, vmax=1)


def show_row(images: torch.Tensor, labels=None, title: str | None = None, size: float = 1.4):
    """Images side by side with a label under each (e.g. x_t for several t)."""
    images = _check_images(images)
    n = images.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(size * n, size * 1.25), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(to_numpy_image(images[i]), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_schedules(schedules: dict, quantities=("alpha_bars", "log_snr")):
    """Compare noise schedules: one panel per quantity (ᾱ_t, log-SNR, β_t, σ_t …) over t."""
    labels = {"alpha_bars": r"$\bar\alpha_t$", "log_snr": r"log-SNR $\lambda_t$", "betas": r"$\beta_t$",
              "sigmas": r"$\sigma_t$ (log scale)"}
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.5 * len(quantities), 3.2), squeeze=False)
    for ax, q in zip(axes[0], quantities, strict=True):
        for name, s in schedules.items():
            ax.plot(np.arange(1, s.T + 1), getattr(s, q).numpy(), label=name)
        ax.set_xlabel("t")
        ax.set_title(labels.get(q, q))
        if q == "sigmas":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def scatter_2d(points, ax=None, title: str | None = None, color="C0", s: float = 2.0,
               lim: float | None = 3.5):
    """Scatter a 2-D point cloud (N, 2)."""
    pts = torch.as_tensor(points).detach().cpu().numpy()
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.scatter(pts[:, 0], pts[:, 1], s=s, color=color, alpha=0.6, linewidths=0)
    if lim:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_trajectories_2d(trajectory, n_paths: int = 50, ax=None, title: str | None = None, lim: float = 3.5):
    """Paths of 2-D samples through a sampler: `trajectory` is a list of (N, 2) states x_T … x_0."""
    states = torch.stack([torch.as_tensor(x).detach().cpu() for x in trajectory])  # (steps+1, N, 2)
    if states.dim() != 3 or states.shape[-1] != 2:
        raise ValueError(f"trajectory must be a list of (N, 2) tensors, got {tuple(states.shape)} stacked")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    paths = states[:, :n_paths].numpy()
    ax.plot(paths[:, :, 0], paths[:, :, 1], color="0.6", lw=0.6, alpha=0.7)
    ax.scatter(paths[0, :, 0], paths[0, :, 1], s=6, color="C3", label="start $x_T$", zorder=3)
    ax.scatter(paths[-1, :, 0], paths[-1, :, 1], s=6, color="C0", label="end $x_0$", zorder=3)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    return ax.figure


def animate_images(frames, labels=None, interval: int = 120, nrow: int | None = None):
    """Animation of image grids, one frame per state (e.g. x_t along a sampler's trajectory).

    In a notebook: ``from IPython.display import HTML; HTML(anim.to_jshtml())``.
    """
    from matplotlib import animation

    grids = [make_grid(f, nrow) for f in frames]
    fig, ax = plt.subplots(figsize=(3.5, 3.5 * grids[0].shape[0] / grids[0].shape[1]))
    ax.set_axis_off()
    im = ax.imshow(grids[0], cmap="gray", vmin=0, vmax=1)

    def update(i):
        im.set_data(grids[i])
        if labels is not None:
            ax.set_title(str(labels[i]))
        return (im,)

    anim = animation.FuncAnimation(fig, update, frames=len(grids), interval=interval, blit=False)
    plt.close(fig)  # the animation is shown through to_jshtml(), not as a static figure
    return anim


def loglog_error(results: dict, xlabel: str = "NFE", ylabel: str = "error", ax=None, title=None):
    """Log-log plot of error against cost for several methods: results = {name: (xs, errors)}."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.8))
    for name, (xs, errs) in results.items():
        ax.loglog(xs, errs, "o-", label=name, ms=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax.figure

"""The course's environment: the device, fast mode, and the course's own files seen from a notebook.

A notebook runs from notebooks/, solutions/, my-work/ or anywhere below the course root; the committed
figures (docs/figures/) and benchmark results (benchmarks/results/) are found from the current folder
upwards. On Colab, where only the package is installed, they are absent: the helpers say so instead of
failing, and the notebook carries on.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

ROOT_MARKER = "pyproject.toml"   # the course root holds it (and docs/, benchmarks/)


@lru_cache(maxsize=1)
def device():
    """The one device the course runs on: CUDA, then Apple's MPS, then the CPU.

    Set ``DDPM_COURSE_DEVICE`` (e.g. ``cpu``) to override the choice. Chosen once per process, so
    every notebook cell and helper agrees; nothing in the course hard-codes a device name.
    """
    import torch

    forced = os.environ.get("DDPM_COURSE_DEVICE", "").strip()
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def fast_mode() -> bool:
    """True when ``DDPM_COURSE_FAST`` is set to a true value (the tests set it).

    Fast mode shrinks training steps and sample counts; it never changes code paths.
    """
    value = os.environ.get("DDPM_COURSE_FAST", "0").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"DDPM_COURSE_FAST must be one of 0/1/true/false/yes/no/on/off, got {value!r}")


def course_file(*parts: str, start: str | Path | None = None) -> Path | None:
    """The course file ``parts`` (e.g. "docs", "figures", "02_training_loss.png", or one relative path),
    looked up from ``start`` (the current folder) upwards in course roots; None if absent."""
    here = Path(start) if start is not None else Path.cwd()
    for folder in (here, *here.parents):
        path = folder.joinpath(*parts)
        if (folder / ROOT_MARKER).is_file() and path.is_file():
            return path
    return None


def load_result(name: str) -> dict | None:
    """The committed benchmark result benchmarks/results/``name`` (a JSON file) found from the current folder
    upwards, or None, with a note, where it is absent (a pip install without the repository)."""
    import json

    path = course_file("benchmarks", "results", name)
    if path is None:
        print(f"(benchmarks/results/{name} is not available here; it ships with the course repository)")
        return None
    return json.loads(path.read_text())


def show_figure(name: str, width: int | None = None):
    """Display docs/figures/``name`` (a figure made by a full-mode run or a benchmark); a note if absent."""
    from IPython.display import Image, display

    path = course_file("docs", "figures", name)
    if path is None:
        print(f"(figure docs/figures/{name} is not available here; it ships with the course repository)")
        return None
    return display(Image(filename=str(path), width=width))


def save_figure(fig, name: str, folder: str | Path | None, dpi: int = 100) -> Path | None:
    """Save ``fig`` as ``folder/name`` when a folder is given (the notebooks' FIGURES parameter: the
    course regenerates docs/figures/ this way in full mode); nothing when it is None."""
    if folder is None:
        return None
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path

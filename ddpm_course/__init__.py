"""ddpm_course: the tested helper package behind the ddpm-course notebooks.

Everything a notebook derives lives here, one concept per module::

    schedule -> diffusion -> samplers / train -> metrics / viz -> notebooks

Names are loaded lazily (PEP 562), so ``import ddpm_course`` is instant and does not pull in
matplotlib or torchvision until a notebook actually needs them.
"""

from __future__ import annotations

import importlib

from .course import device as device  # dc.device(), dc.fast_mode()
from .course import fast_mode as fast_mode

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "NoiseSchedule": "schedule",
    "q_sample": "diffusion",
    "sample": "samplers",
    "ddim_invert": "samplers",
    "load_pretrained": "pretrained",
    "UNet": "unet",
}
_SUBMODULES = {
    "course", "schedule", "diffusion", "samplers", "toy", "unet", "train", "data", "pretrained",
    "metrics", "viz", "widgets", "checks", "authoring", "cli", "distill", "consistency",
}

__all__ = sorted([*_LAZY, *_SUBMODULES, "device", "fast_mode", "__version__"])


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"ddpm_course.{_LAZY[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"ddpm_course.{name}")
    raise AttributeError(f"module 'ddpm_course' has no attribute {name!r}")


def __dir__():
    return __all__

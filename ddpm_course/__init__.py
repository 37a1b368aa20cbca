"""ddpm_course: the tested helper package behind the ddpm-course notebooks.

Everything a notebook derives lives here, one concept per module::

    schedule -> diffusion -> samplers / train -> metrics / viz -> notebooks

Names are loaded lazily (PEP 562), so ``import ddpm_course`` is instant and does not pull in
matplotlib or torchvision until a notebook actually needs them.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache

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
    "schedule", "diffusion", "samplers", "toy", "unet", "train", "data", "pretrained",
    "metrics", "viz", "widgets", "checks", "authoring", "cli",
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

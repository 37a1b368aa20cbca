"""Shared test set-up. `make test` also sets these variables for the notebook kernels."""

import os
from pathlib import Path

import pytest

# Headless plotting and no Hugging Face network calls, also when pytest is run by hand.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return ROOT


@pytest.fixture(scope="module")
def s():
    """DDPM's linear schedule, T = 1000 (`NoiseSchedule.linear()`), one per test module."""
    import ddpm_course as dc

    return dc.NoiseSchedule.linear()


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (restored after it): they run thousands of tiny tensor ops,
    and on a busy machine more threads only add waiting. A module opts in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

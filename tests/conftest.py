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

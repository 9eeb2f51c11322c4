"""Shared test fixtures: where ../shared lives, and skips for what is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# TensorFlow's start-up chatter is noise in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the checkout; skip where a user's checkout has none."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent")
    return SHARED


def needs(program: str):
    """Skip marker for a test that runs one of RELION's programs."""
    return pytest.mark.skipif(shutil.which(program) is None, reason=f"{program} not installed")

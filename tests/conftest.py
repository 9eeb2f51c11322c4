"""Shared test fixtures: where ../shared lives, skips for what is absent, and the data
sets several test files use (made once per session)."""

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


# --- data sets several test files share: simulated once per session ---------------------------

@pytest.fixture(scope="session")
def refine_set(tmp_path_factory) -> Path:
    """240 simulated particles (box 48, 2.4 A, SNR 1), start poses ~4 deg off."""
    from gmmrefine.simulate.dataset import simulate_dataset

    out = tmp_path_factory.mktemp("refine_set")
    simulate_dataset(out, n=240, box=48, apix=2.4, snr=1.0, angle_rms_deg=4.0, crb_sample=0)
    return out


@pytest.fixture(scope="session")
def focus_set(tmp_path_factory) -> Path:
    """160 simulated particles (box 48, 2.4 A, SNR 1), start poses ~3 deg off."""
    from gmmrefine.simulate.dataset import simulate_dataset

    out = tmp_path_factory.mktemp("focus_set")
    simulate_dataset(out, n=160, box=48, apix=2.4, snr=1.0, angle_rms_deg=3.0, crb_sample=0)
    return out


@pytest.fixture(scope="session")
def sim_model():
    """The simulator's default protein, build_model(seed=0)."""
    from gmmrefine.simulate.model import build_model

    return build_model(seed=0)


@pytest.fixture
def locres_maps(tmp_path) -> Path:
    """half1.mrc and half2.mrc with less noise on the left (x < box/2), and mask.mrc."""
    from gmmrefine.fourier import masks
    from gmmrefine.io.mrc import write_map
    from helpers_locres import APIX, BOX, half_maps, left_right_noise

    h1, h2 = half_maps(left_right_noise())
    write_map(tmp_path / "half1.mrc", h1, APIX)
    write_map(tmp_path / "half2.mrc", h2, APIX)
    write_map(tmp_path / "mask.mrc", masks.soft_sphere(BOX, (0, 0, 0), 14, 3), APIX)
    return tmp_path

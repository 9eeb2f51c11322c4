"""Figures of maps: the local-resolution slices and the run comparison."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.fourier import masks
from gmmrefine.reconstruct import locres
from gmmrefine.report.slices import plot_local_resolution, plot_run_comparison
from helpers_locres import APIX, BOX, WINDOW_A, half_maps, left_right_noise, shared_signal


def test_local_resolution_figure_is_written(tmp_path):
    h1, h2 = half_maps(left_right_noise())
    res = locres.local_resolution(h1, h2, APIX, window_A=WINDOW_A, step_px=8)
    plot_local_resolution(tmp_path / "figure.png", 0.5 * (h1 + h2), res, APIX)
    image = _read_png(tmp_path / "figure.png")
    assert image.shape[0] > 300 and image.shape[1] > 900
    assert image[..., :3].std() > 0.1


def _read_png(path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)


def test_run_comparison_shows_bars_and_slices(tmp_path):
    initial = shared_signal()
    final = initial + 0.3 * shared_signal(seed=5)
    patch_masks = {f"patch {i}": masks.soft_sphere(BOX, (10 * np.cos(i), 10 * np.sin(i), 0), 6, 3) for i in range(3)}
    table = [{"patch": name, "before_A": 7.0 + i, "after_A": 5.0 + 0.5 * i} for i, name in enumerate(patch_masks)]
    path = tmp_path / "comparison.png"
    plot_run_comparison(path, table, initial, final, APIX, masks=patch_masks, title="run 1")
    image = _read_png(path)
    assert image.shape[0] >= 1000 and image.shape[1] >= 1100
    rgb = image[..., :3]
    assert rgb.std() > 0.1
    # The "after" bars' blue (#3366aa) covers a visible area; the grey slices fill the lower two thirds.
    after_blue = np.all(np.abs(rgb - np.array([0x33, 0x66, 0xAA]) / 255) < 0.02, axis=-1)
    assert after_blue[: image.shape[0] // 3].sum() > 2000
    lower = rgb[image.shape[0] // 3:]
    grey = (np.ptp(lower, axis=-1) < 0.01) & (lower.mean(axis=-1) > 0.05) & (lower.mean(axis=-1) < 0.95)
    assert grey.sum() > 0.2 * grey.size
    with pytest.raises(ValueError, match="after_A"):
        plot_run_comparison(tmp_path / "bad.png", [{"patch": "a", "before_A": 5.0}], initial, final, APIX)
    assert not (tmp_path / "bad.png").exists()

"""Local resolution: the windowed FSC against a direct Fourier sum and RELION, maps with
known noise."""

from __future__ import annotations

import itertools
import subprocess

import numpy as np
import pytest
from conftest import needs
from gmmrefine.fourier import masks
from gmmrefine.io.mrc import read_map
from gmmrefine.reconstruct import fsc, locres
from helpers_locres import APIX, BOX, STEP_PX, WINDOW_A, half_maps, left_right_noise
from scipy.interpolate import RegularGridInterpolator


def brute_force_fsc(map1: np.ndarray, map2: np.ndarray, n_freq: int) -> np.ndarray:
    """FSC on integer shells of the n_freq^3 frequencies m / n_freq, by a direct Fourier sum.

    F(m) = sum_x f(x) exp(-2 pi i m . x / n_freq) over every voxel of the
    full box (no FFT); exact shells of the full transform (no rfft symmetry).
    """
    box = map1.shape[0]
    m = np.arange(n_freq) - n_freq // 2
    dft = np.exp(-2j * np.pi * np.outer(m, np.arange(box)) / n_freq)

    def transform(volume):
        return np.einsum("az,by,cx,zyx->abc", dft, dft, dft, volume.astype(complex), optimize=True)

    f1, f2 = transform(map1), transform(map2)
    kz, ky, kx = np.meshgrid(m, m, m, indexing="ij")
    shells = np.rint(np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)).astype(int).ravel()
    keep = shells <= n_freq // 2
    sums = [np.bincount(shells[keep], weights=v.ravel()[keep], minlength=n_freq // 2 + 1)
            for v in ((f1 * f2.conj()).real, np.abs(f1) ** 2, np.abs(f2) ** 2)]
    return sums[0] / np.sqrt(sums[1] * sums[2])


@pytest.mark.parametrize("center_zyx", [(24, 24, 24), (3, 20, 45)])   # centre, and a window cut by the box edge
def test_cropped_windowed_fsc_equals_a_direct_fourier_sum_of_the_full_box(center_zyx):
    h1, h2 = half_maps(0.8)
    window = locres.window_geometry(BOX, APIX, 16.0)          # 8 px wide: support 12 px, crop 16 px
    assert window.crop_box == 16 < BOX
    cropped = locres.WindowedFSC(h1, h2, APIX, window).curves(center_zyx)[0]
    # The same window on the full box, placed as the masks module places spheres.
    offset_xyz = tuple(c - BOX // 2 for c in center_zyx[::-1])
    full_window = masks.soft_sphere(BOX, offset_xyz, window.radius_px, window.edge_px)
    direct = brute_force_fsc(h1 * full_window, h2 * full_window, window.crop_box)
    np.testing.assert_allclose(cropped, direct, atol=1e-6)


def test_crop_and_full_box_give_the_same_local_resolution_within_a_shell():
    h1, h2 = half_maps(0.8)
    cropped = locres.window_geometry(BOX, APIX, WINDOW_A)
    full = locres.LocalWindow(cropped.diameter_A, cropped.radius_px, cropped.edge_px, BOX)
    assert cropped.crop_box < BOX
    for center in [(24, 24, 24), (20, 28, 16), (30, 22, 26)]:
        res_crop = locres.WindowedFSC(h1, h2, APIX, cropped).resolution_A(center)
        res_full = locres.WindowedFSC(h1, h2, APIX, full).resolution_A(center)
        # One shell of the crop box, in spatial frequency.
        assert abs(1 / res_crop - 1 / res_full) < 1 / (cropped.crop_box * APIX), center
        # Uncorrected, the full-box path is fsc.py's masked FSC with the window as the mask.
        offset = tuple(c - BOX // 2 for c in center[::-1])
        direct = fsc.fsc_curve(h1, h2, masks.soft_sphere(BOX, offset, full.radius_px, full.edge_px))
        np.testing.assert_allclose(locres.WindowedFSC(h1, h2, APIX, full).curves(center)[0], direct, atol=1e-6)


def test_window_follows_relions_defaults():
    # relion_postprocess --locres: sampling 25 A, maskrad 12.5 A, edgwidth 25 A (half height at 25 A).
    window = locres.window_geometry(128, 1.0)
    assert (window.diameter_A, window.radius_px, window.edge_px) == (50.0, 12.5, 25.0)
    assert window.crop_box % 2 == 0 and window.crop_box >= 4 * window.half_height_radius_px
    assert set(np.unique(_prime_factors(window.crop_box))) <= {2, 3, 5}
    coarse = locres.window_geometry(64, 5.0)                  # 50 A would be 10 voxels only
    assert coarse.diameter_A == locres.MIN_WINDOW_PX * 5.0 and coarse.crop_box == 2 * locres.MIN_WINDOW_PX
    for n in range(2, 300):
        friendly = locres.fft_friendly_even(n)
        assert friendly >= n and friendly % 2 == 0 and set(_prime_factors(friendly)) <= {2, 3, 5}
        assert all(set(_prime_factors(m)) - {2, 3, 5} for m in range(n + (n % 2), friendly, 2))


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def test_interpolation_is_scipys_trilinear():
    rng = np.random.default_rng(3)
    grid = locres.sampling_grid(20, 6)
    values = rng.random((len(grid),) * 3)
    ours = locres.interpolate_grid(values, grid, 20)
    axis = np.clip(np.arange(20), grid[0], grid[-1])         # held constant beyond the end points
    points = np.array(list(itertools.product(axis, axis, axis)), float)
    expected = RegularGridInterpolator((grid,) * 3, values, method="linear")(points).reshape((20,) * 3)
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_local_resolution_is_finer_where_the_noise_is_lower():
    h1, h2 = half_maps(left_right_noise())
    res = locres.local_resolution(h1, h2, APIX, window_A=WINDOW_A, step_px=STEP_PX)
    region = locres.sampling_region(BOX, locres.window_geometry(BOX, APIX, WINDOW_A))
    x = np.arange(BOX)[None, None, :]
    left, right = region & (x < BOX // 2 - 4), region & (x >= BOX // 2 + 4)
    # Each side matches the global FSC of maps with that side's noise everywhere, within two crop shells.
    for side, sd in ((left, 0.3), (right, 1.5)):
        u1, u2 = half_maps(sd, seed=7)
        global_A = fsc.resolution_at(fsc.fsc_curve(u1, u2), BOX, APIX)
        assert abs(1 / np.median(res[side]) - 1 / global_A) < 2 / (24 * APIX), sd
    assert np.median(res[left]) < 0.9 * np.median(res[right])
    assert res.shape == (BOX,) * 3 and res.dtype == np.float32
    # Outside the sampled sphere: the coarsest measured value.
    assert np.all(res[~region] == res[region].max())


@pytest.mark.parametrize("noise_sd", [0.3, 1.5])
def test_uniform_noise_median_matches_the_global_fsc(noise_sd):
    h1, h2 = half_maps(noise_sd)
    window = locres.window_geometry(BOX, APIX, WINDOW_A)
    res = locres.local_resolution(h1, h2, APIX, window_A=WINDOW_A, step_px=STEP_PX)
    median_A = float(np.median(res[locres.sampling_region(BOX, window)]))
    global_A = fsc.resolution_at(fsc.fsc_curve(h1, h2), BOX, APIX)
    # Within 1.5 shells of the crop box (0.7 measured: small windows smear the falling signal spectrum up).
    assert abs(1 / median_A - 1 / global_A) < 1.5 / (window.crop_box * APIX)
    assert 2 * APIX < median_A < WINDOW_A


def test_mask_restricts_the_sampling_and_an_empty_one_is_refused():
    h1, h2 = half_maps(0.8)
    mask = masks.soft_sphere(BOX, (6, 0, 0), 8, 3)
    res = locres.local_resolution(h1, h2, APIX, mask=mask, window_A=WINDOW_A, step_px=STEP_PX)
    outside = mask < 0.5
    assert np.all(res[outside] == res[~outside].max())
    assert res[~outside].min() < res[~outside].max()
    tiny = masks.soft_sphere(BOX, (2, 2, 2), 0.5, 0)          # holds no point of a 16-px grid
    with pytest.raises(ValueError, match="no sampling point"):
        locres.local_resolution(h1, h2, APIX, mask=tiny, step_px=16)


def _relion_locres(locres_maps, window_A: float, step_px: int):
    subprocess.run(["relion_postprocess", "--locres", "--i", str(locres_maps / "half1.mrc"),
                    "--i2", str(locres_maps / "half2.mrc"), "--angpix", str(APIX),
                    "--locres_sampling", str(step_px * APIX), "--locres_maskrad", str(window_A / 4),
                    "--locres_edgwidth", str(window_A / 2), "--o", str(locres_maps / "relion")],
                   check=True, capture_output=True, cwd=locres_maps)
    return (read_map(locres_maps / "relion_locres.mrc")[0],
            (locres_maps / "relion_locres_fscs.star").read_text())


def _relion_masked_fsc(star_text: str, label_kk_ii_jj: tuple[int, int, int]) -> np.ndarray:
    block = star_text.split("data_fsc_{:05d}_{:05d}_{:05d}".format(*label_kk_ii_jj))[1].split("kk=")[0]
    rows = [line.split() for line in block.splitlines() if line.strip() and line.split()[0].isdigit()]
    return np.array([float(r[5]) for r in rows])              # _rlnFourierShellCorrelationMaskedMaps


@pytest.mark.slow
@needs("relion_postprocess")
def test_agrees_with_relion_postprocess_locres(locres_maps):
    window_A = 32.0
    relion_map, star = _relion_locres(locres_maps, window_A, STEP_PX)
    # One window's masked FSC, point for point. RELION labels a point (kk, ii, jj) but centres its
    # window at x = kk, y = ii, z = jj (raisedCosineMask's argument order).
    full = locres.window_geometry(BOX, APIX, window_A)
    full = locres.LocalWindow(full.diameter_A, round(window_A / 4 / APIX), round(window_A / 2 / APIX), BOX)
    h1, h2 = read_map(locres_maps / "half1.mrc")[0], read_map(locres_maps / "half2.mrc")[0]
    kk, ii, jj = -8, 4, -12
    ours = locres.WindowedFSC(h1, h2, APIX, full).curves((BOX // 2 + jj, BOX // 2 + ii, BOX // 2 + kk))[0]
    np.testing.assert_allclose(ours, _relion_masked_fsc(star, (kk, ii, jj)), atol=0.01)
    # The maps: medians inside the mask within 12% (RELION reads the last shell above 0.143 on the full
    # box, which is coarser by half a shell on average, and averages overlapping windows).
    ours_map = locres.local_resolution(h1, h2, APIX, window_A=window_A, step_px=STEP_PX,
                                       mask=read_map(locres_maps / "mask.mrc")[0])
    inside = read_map(locres_maps / "mask.mrc")[0] >= 0.5
    assert np.median(ours_map[inside]) == pytest.approx(np.median(relion_map[inside]), rel=0.12)
    x = np.arange(BOX)[None, None, :]
    left, right = inside & (x < BOX // 2 - 4), inside & (x >= BOX // 2 + 4)
    for volume in (relion_map, ours_map):
        assert np.median(volume[left]) < 0.92 * np.median(volume[right])
    assert np.corrcoef(relion_map[inside], ours_map[inside])[0, 1] > 0.7

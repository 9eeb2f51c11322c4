"""Local resolution by windowed gold-standard FSC (relion_postprocess --locres, blocres).

At points of a regular grid inside the particle, both half maps are
multiplied by one soft spherical window centred on the point, the FSC of the
windowed halves is corrected for the window's own correlation by phase
randomisation, and the resolution where it falls below 0.143 is the local
resolution there. The sampled values are interpolated to every voxel.

What follows RELION 3.1 (src/postprocessing.cpp, run_locres) and why:

- Window: a flat sphere of radius r0 with a raised-cosine edge of width
  2 r0, as RELION's defaults (--locres_sampling 25 A, so maskrad 12.5 A and
  edgwidth 25 A). ``window_A`` is the diameter where the window falls to
  one half (4 r0; RELION's default is 50 A), so the window reaches zero at
  0.75 ``window_A`` from its centre.
- Small-window bias: a window cuts through density, and its transform
  spreads the strong low-resolution correlation of the shared signal into
  higher shells, which inflates a windowed FSC. As RELION, both half maps
  are phase-randomised once beyond 25 A (--locres_randomize_at), windowed
  the same way, and FSC_true = (FSC_t - FSC_n) / (1 - FSC_n) from two shells
  past the randomisation shell (:func:`gmmrefine.reconstruct.fsc.correct_masked_fsc`).
  The correction cannot catch the same smearing from 25 A up to the
  crossing (those phases are not randomised), so with a falling signal
  spectrum a small window reads slightly finer than the global FSC of a
  uniform map: measured 0.7 crop shells for a 12-voxel window, 0.2 for a
  20-voxel one. The FSC of a window is also noisier than a global one (few
  Fourier voxels per shell); the 0.143 threshold is kept as RELION keeps it,
  and the map is better read as relative resolution across the particle
  than as an absolute value to the last tenth of an Angstrom.
- Speed: a windowed map is zero beyond the window, so its transform is
  exactly sampled by any box that holds the window. Each point is cropped to
  a sub-box of twice ``window_A`` (FFT-friendly, at most the full box),
  which gives the same FSC on shells ``box / crop`` times wider, read with
  :func:`gmmrefine.reconstruct.fsc.resolution_at` on the crop (interpolated crossing).
- Combination: RELION sums window-weighted 1/res over all windows; here the
  sampled values are interpolated trilinearly in 1/res (spatial frequency,
  as RELION averages) between grid points, which gives a continuous map
  at the price of one FFT set per point instead of a full-box pass.
- Clamp: no resolution coarser than the window itself is measurable in it;
  values are kept within [2 apix, window_A] (RELION clamps at 50 A, its
  default window).
- Outside the sampled region (mask < 0.5, or beyond the sampling sphere
  without a mask) the map holds the coarsest sampled value rather than 0, so
  its range is the measured one and no colour scale reads 0 as "finest".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..fourier.filters import randomise_phases_beyond
from ..fourier.masks import soft_sphere
from .fsc import correct_masked_fsc, fsc_curve, resolution_at

DEFAULT_WINDOW_A = 50.0      # RELION's default window (25 A sampling: 12.5 A flat + 25 A edge)
MIN_WINDOW_PX = 16           # below this a window holds too few Fourier voxels per shell
RANDOMISE_AT_A = 25.0        # relion_postprocess --locres_randomize_at
INSIDE_MASK = 0.5            # mask value from which a point or voxel counts as inside


@dataclass(frozen=True)
class LocalWindow:
    """Geometry of the soft spherical window, in voxels.

    Attributes
    ----------
    diameter_A : diameter at which the window falls to 0.5, in Angstrom.
    radius_px : radius of the flat part (value 1).
    edge_px : width of the raised-cosine edge (0 beyond radius + edge).
    crop_box : sub-box each point's FFT is computed in.
    """

    diameter_A: float
    radius_px: float
    edge_px: float
    crop_box: int

    @property
    def half_height_radius_px(self) -> float:
        """Radius where the window is 0.5."""
        return self.radius_px + self.edge_px / 2


def fft_friendly_even(n: float) -> int:
    """Smallest even integer >= ``n`` whose only prime factors are 2, 3 and 5."""
    m = max(2, int(math.ceil(n)))
    m += m % 2
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 2


def window_geometry(box: int, apix: float, window_A: float | None = None) -> LocalWindow:
    """The window for maps of ``box`` voxels of ``apix`` A: RELION's shape, ``window_A`` wide.

    The default is RELION's 50 A, widened to :data:`MIN_WINDOW_PX` voxels for
    coarse voxels. The crop box is twice the half-height diameter (the
    window's support is 1.5 times it), FFT-friendly, at most ``box``.
    """
    diameter_A = float(window_A) if window_A is not None else max(DEFAULT_WINDOW_A, MIN_WINDOW_PX * apix)
    if diameter_A <= 0:
        raise ValueError(f"window diameter {diameter_A} A; expected a positive value")
    half_px = diameter_A / 2 / apix
    crop = min(box, fft_friendly_even(4 * half_px))
    return LocalWindow(diameter_A, half_px / 2, half_px, crop)


def default_step_px(window: LocalWindow) -> int:
    """Grid step: half the window's half-height radius (RELION samples at the full radius).

    Neighbouring windows overlap well, so interpolation between points does
    not miss a feature a window can resolve; at box 128 with 1 A voxels that
    is 12 px, ~150 points, seconds of work.
    """
    return max(1, int(round(window.half_height_radius_px / 2)))


def sampling_region(box: int, window: LocalWindow, mask: np.ndarray | None = None) -> np.ndarray:
    """Voxels whose local resolution is measured: mask >= 0.5, or else a central sphere.

    Without a mask the sphere has radius box/2 minus the window's
    half-height radius, so every window stays mostly inside the box
    (RELION uses box/2 minus the flat radius).
    """
    if mask is not None:
        return np.asarray(mask) >= INSIDE_MASK
    radius = box / 2 - window.half_height_radius_px
    return soft_sphere(box, (0, 0, 0), radius, 0) > 0.5


def sampling_grid(box: int, step_px: int) -> np.ndarray:
    """Grid coordinates along one axis: every ``step_px`` voxels, through the centre box // 2."""
    centre = box // 2
    return np.arange(centre % step_px, box, step_px)


def crop_around(volume: np.ndarray, center_zyx: tuple[int, int, int], crop_box: int) -> np.ndarray:
    """Sub-box of ``crop_box`` voxels with ``center_zyx`` at its centre crop_box // 2.

    Voxels beyond the edge of ``volume`` are 0 (as the full box sees a window
    that leaves it: cut off, not wrapped around).
    """
    out = np.zeros((crop_box,) * 3, np.float32)
    dst, src = [], []
    for c, n in zip(center_zyx, volume.shape):
        start = int(c) - crop_box // 2
        lo, hi = max(start, 0), min(start + crop_box, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = volume[tuple(src)]
    return out


class WindowedFSC:
    """Corrected FSC of the half maps inside a window at any grid point.

    Holds the half maps and their phase-randomised copies (float32, four
    maps: the only memory that grows with the box).

    Parameters
    ----------
    half1, half2 : (B, B, B) arrays
        Unfiltered half maps, not modified.
    apix : float
        Voxel size in Angstrom.
    window : LocalWindow
    randomise_at_A : float
        Phases are randomised beyond this resolution (RELION's 25 A).
    seed : int
        Seed of the random phases.
    """

    def __init__(self, half1: np.ndarray, half2: np.ndarray, apix: float, window: LocalWindow, *,
                 randomise_at_A: float = RANDOMISE_AT_A, seed: int = 0):
        self.box = half1.shape[0]
        self.apix = float(apix)
        self.window = window
        self.maps = [np.asarray(half1, np.float32), np.asarray(half2, np.float32)]
        shell = int(self.box * apix / randomise_at_A)
        # A box too small to hold the randomisation shell has no high shells to correct.
        self.randomised = None
        if shell >= 1:
            rng = np.random.default_rng(seed)
            self.randomised = [randomise_phases_beyond(m, shell, rng).astype(np.float32) for m in self.maps]
        self.crop_shell = int(window.crop_box * apix / randomise_at_A)
        self._crop_window = None
        if window.crop_box < self.box:
            self._crop_window = soft_sphere(window.crop_box, (0, 0, 0), window.radius_px, window.edge_px)

    def _windowed_pair(self, maps: list[np.ndarray], center_zyx: tuple[int, int, int]):
        if self._crop_window is None:
            # The crop would be the whole box: window the full maps in place.
            offset = tuple(float(c - self.box // 2) for c in center_zyx[::-1])
            window = soft_sphere(self.box, offset, self.window.radius_px, self.window.edge_px)
            return maps[0], maps[1], window
        crop = self.window.crop_box
        return crop_around(maps[0], center_zyx, crop), crop_around(maps[1], center_zyx, crop), self._crop_window

    def curves(self, center_zyx: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(windowed FSC, windowed FSC of the randomised halves or None, corrected FSC) on the crop's shells."""
        a, b, window = self._windowed_pair(self.maps, center_zyx)
        masked = fsc_curve(a, b, window)
        if self.randomised is None:
            return masked, None, masked
        a, b, window = self._windowed_pair(self.randomised, center_zyx)
        randomised = fsc_curve(a, b, window)
        return masked, randomised, correct_masked_fsc(masked, randomised, self.crop_shell)

    def resolution_A(self, center_zyx: tuple[int, int, int], threshold: float = 0.143) -> float:
        """Local resolution (A) at a voxel, clamped to [2 apix, window diameter]."""
        corrected = self.curves(center_zyx)[2]
        crop = self.window.crop_box if self._crop_window is not None else self.box
        res = resolution_at(corrected, crop, self.apix, threshold)
        return float(np.clip(res, 2 * self.apix, max(self.window.diameter_A, 2 * self.apix)))


def _linear_weights(n_out: int, grid: np.ndarray) -> np.ndarray:
    """(n_out, len(grid)) matrix of 1D linear interpolation from ``grid`` to 0 .. n_out-1.

    Beyond the first and last grid points the end value is held.
    """
    x = np.clip(np.arange(n_out, dtype=float), grid[0], grid[-1])
    weights = np.zeros((n_out, len(grid)))
    if len(grid) == 1:
        weights[:, 0] = 1.0
        return weights
    i = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
    t = (x - grid[i]) / (grid[i + 1] - grid[i])
    rows = np.arange(n_out)
    weights[rows, i] = 1.0 - t
    weights[rows, i + 1] = t
    return weights


def interpolate_grid(values: np.ndarray, grid: np.ndarray, box: int) -> np.ndarray:
    """Trilinear interpolation of values on grid x grid x grid to every voxel of the box.

    Trilinear interpolation is separable: one 1D linear interpolation per
    axis, as three small matrix products, so no per-voxel coordinate arrays.
    """
    w = _linear_weights(box, np.asarray(grid, float))
    out = np.einsum("zk,kji->zji", w, values)
    out = np.einsum("yj,zji->zyi", w, out)
    return np.einsum("xi,zyi->zyx", w, out)


def _fill_unsampled(values: np.ndarray, sampled: np.ndarray) -> np.ndarray:
    """Give every unsampled grid point the value of the nearest sampled one."""
    from scipy import ndimage

    _, nearest = ndimage.distance_transform_edt(~sampled, return_indices=True)
    return values[tuple(nearest)]


def local_resolution(half1: np.ndarray, half2: np.ndarray, apix: float, *,
                     mask: np.ndarray | None = None, window_A: float | None = None,
                     step_px: int | None = None, threshold: float = 0.143,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Local-resolution map by windowed, phase-randomisation-corrected FSC.

    Parameters
    ----------
    half1, half2 : (B, B, B) arrays
        Unfiltered, unmasked half maps indexed [z, y, x]; not modified.
    apix : float
        Voxel size in Angstrom.
    mask : (B, B, B) array, optional
        Soft mask in [0, 1]: points and voxels with mask >= 0.5 are measured.
        Default: a central sphere of radius box/2 minus the window's
        half-height radius.
    window_A : float, optional
        Window diameter at half height, in Angstrom (default 50 A as RELION,
        at least 16 voxels).
    step_px : int, optional
        Grid step in voxels (default: a quarter of ``window_A``).
    threshold : float
        FSC threshold (0.143 as RELION).
    progress : callable, optional
        Called as ``progress(done, total)`` after each sampling point.

    Returns
    -------
    (B, B, B) float32 array of local resolution in Angstrom; voxels outside
    the sampled region hold the coarsest sampled value.

    Raises
    ------
    ValueError
        When no grid point lies inside the mask (use a smaller ``step_px``).
    """
    box = half1.shape[0]
    if half1.shape != half2.shape or (mask is not None and np.shape(mask) != half1.shape):
        raise ValueError(f"local resolution needs maps of one box; got {half1.shape}, {half2.shape}"
                         + (f", mask {np.shape(mask)}" if mask is not None else ""))
    window = window_geometry(box, apix, window_A)
    step = int(step_px) if step_px is not None else default_step_px(window)
    if step < 1:
        raise ValueError(f"sampling step {step} px; expected at least 1")
    region = sampling_region(box, window, mask)
    grid = sampling_grid(box, step)
    sampled = region[np.ix_(grid, grid, grid)]
    points = np.argwhere(sampled)
    if len(points) == 0:
        raise ValueError(f"no sampling point (every {step} px) lies inside the mask; "
                         "expected a larger mask or a smaller step")

    fsc = WindowedFSC(half1, half2, apix, window)
    inverse_res = np.zeros(sampled.shape)
    for n, (k, j, i) in enumerate(points, 1):
        inverse_res[k, j, i] = 1.0 / fsc.resolution_A((grid[k], grid[j], grid[i]), threshold)
        if progress is not None:
            progress(n, len(points))

    filled = _fill_unsampled(inverse_res, sampled)
    locres = 1.0 / interpolate_grid(filled, grid, box)
    coarsest = 1.0 / inverse_res[sampled].min()
    locres[~region] = coarsest
    return locres.astype(np.float32)

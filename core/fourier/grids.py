"""Grids, radii, centred FFTs and the soft edge: the Fourier primitives of gmmrefine, once each.

Arrays in Fourier space are centred: index B // 2 holds the zero frequency
(numpy's fftshift layout), and real-space arrays have their origin at B // 2,
the same centre RELION uses. Radial shells are in Fourier pixels; shell s of
a box B at pixel size p is resolution B * p / s. Filters of whole maps work
on the real-input (rfftn) layout instead, which halves memory; its radii come
from :func:`rfft_radius_px`, and rounded to shells they agree with the
centred ones.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

# --- axes and radii ------------------------------------------------------------------------


def centred_axis(box: int) -> np.ndarray:
    """Offsets -B//2 .. B - B//2 - 1 of the samples from the centre B // 2 along one axis.

    Voxels in real space and Fourier pixels in Fourier space: in the centred
    layout they are the same numbers.
    """
    return np.arange(box) - box // 2


def fft_axis(n: int) -> np.ndarray:
    """Fourier pixels along one axis in numpy's unshifted FFT order: 0, 1, .., -1.

    Exact integers, unlike ``np.fft.fftfreq(n) * n``, whose rounding put
    some voxels of radius exactly s on either side of a test ``r >= s``.
    """
    return np.fft.ifftshift(centred_axis(n))


def rfft_axis(n: int) -> np.ndarray:
    """Fourier pixels 0 .. n // 2 along the last axis of an rfftn of length ``n``."""
    return np.arange(n // 2 + 1)


def radius_from_axes(*axes: np.ndarray) -> np.ndarray:
    """Distance from the origin at every point of the grid spanned by 1D coordinate axes.

    Parameters
    ----------
    *axes : 1D arrays
        Coordinates along each array axis, in index order ([z, y, x] for a map).

    Returns
    -------
    float array of shape (len(axes[0]), len(axes[1]), ...).
    """
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    # x (the last axis) first: the order the soft masks with off-grid centres
    # were summed in, so their edges stay bit for bit what they were.
    return np.sqrt(sum(g * g for g in reversed(grids)))


def radius_grid(box: int, ndim: int) -> np.ndarray:
    """Distance from the centred origin, in pixels, on a 2D or 3D centred grid."""
    return radius_from_axes(*[centred_axis(box)] * ndim)


def rfft_radius_px(shape: tuple[int, ...]) -> np.ndarray:
    """|k| in Fourier pixels on the rfftn grid of a real array of ``shape``.

    Only cubic boxes are used in gmmrefine, so one pixel is 1 / (box * apix).
    """
    return radius_from_axes(*[fft_axis(n) for n in shape[:-1]], rfft_axis(shape[-1]))


def shell_index(box: int, ndim: int) -> np.ndarray:
    """Integer shell (rounded radius) of every Fourier pixel/voxel of the centred grid."""
    return np.rint(radius_grid(box, ndim)).astype(np.int64)


def rfft_shell_index(shape: tuple[int, ...]) -> np.ndarray:
    """Integer shell (rounded radius) of every element of the rfftn grid."""
    return np.rint(rfft_radius_px(shape)).astype(np.int64)


def pixel_grid_2d(box: int) -> tuple[np.ndarray, np.ndarray]:
    """(kx, ky) integer Fourier pixels of the centred 2D grid (indexing [y, x])."""
    k = centred_axis(box)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return kx, ky


def freq_grid_2d(box: int, apix: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(kx, ky) on the centred 2D grid, in 1/Angstrom (indexing [y, x])."""
    kx, ky = pixel_grid_2d(box)
    return kx / (box * apix), ky / (box * apix)


# --- the soft edge -------------------------------------------------------------------------


def cosine_edge(distance: np.ndarray, width: float) -> np.ndarray:
    """RELION's raised-cosine fall-off: 1 at distance <= 0, 0 at distance >= ``width``.

    0.5 + 0.5 cos(pi distance / width) in between; a hard step at 0 when
    ``width`` <= 0. Soft masks (distance in voxels beyond the hard region)
    and the low-pass filter (distance in Fourier shells beyond the pass
    band) share it.
    """
    distance = np.asarray(distance, float)
    if width <= 0:
        return (distance <= 0).astype(float)
    t = np.clip(distance / width, 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * t)


# --- centred FFTs --------------------------------------------------------------------------
# scipy.fft keeps single precision (float32 -> complex64) whatever numpy's
# version (numpy < 2 promotes to complex128, ~15x slower on particle stacks);
# float64 stays float64.


def fft2c(images: np.ndarray) -> np.ndarray:
    """Centred 2D FFT over the last two axes (origin at B // 2 in both spaces).

    Unnormalised, as numpy's; complex64 for float32 input, complex128 for float64.
    """
    axes = (-2, -1)
    return np.fft.fftshift(scipy.fft.fft2(np.fft.ifftshift(images, axes=axes), axes=axes),
                           axes=axes)


def ifft2c(spectra: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fft2c`; returns the real part, in the input's precision."""
    axes = (-2, -1)
    return np.fft.fftshift(scipy.fft.ifft2(np.fft.ifftshift(spectra, axes=axes), axes=axes),
                           axes=axes).real


def fftnc(volume: np.ndarray) -> np.ndarray:
    """Centred FFT over all axes (a 3D map), in the input's precision."""
    return np.fft.fftshift(scipy.fft.fftn(np.fft.ifftshift(volume)))


def ifftnc(spectrum: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fftnc`; returns the real part, in the input's precision."""
    return np.fft.fftshift(scipy.fft.ifftn(np.fft.ifftshift(spectrum))).real


# --- resampling ----------------------------------------------------------------------------


def fourier_crop_2d(spectra: np.ndarray, new_box: int) -> np.ndarray:
    """Keep the central new_box x new_box of centred spectra (Fourier cropping).

    Cropping in Fourier space lowers the sampling without aliasing; the pixel
    size becomes apix * box / new_box.
    """
    box = spectra.shape[-1]
    lo = box // 2 - new_box // 2
    return spectra[..., lo:lo + new_box, lo:lo + new_box]


def fourier_crop_3d(volume: np.ndarray, new_box: int) -> np.ndarray:
    """Resample a map to new_box^3 by keeping its central Fourier cube.

    The voxel size becomes apix * box / new_box. The zero frequency is kept,
    so the map's sum (its integrated density, in the voxel-integrated
    convention of gmmrefine.gmm) is unchanged.
    """
    box = volume.shape[-1]
    if new_box == box:
        return np.asarray(volume, np.float32).copy()
    lo = box // 2 - new_box // 2
    # Double precision whatever the input's: the cropped map is small, and the
    # GMM fit's target (thresholded and k-means-seeded) then carries no
    # single-precision FFT round-off.
    cube = fftnc(np.asarray(volume, np.float64))[lo:lo + new_box, lo:lo + new_box, lo:lo + new_box]
    return ifftnc(cube).astype(np.float32)

"""Fourier-space helpers in the one layout used inside gmmrefine.

Arrays in Fourier space are centred: index B // 2 holds the zero frequency
(numpy's fftshift layout), and real-space arrays have their origin at B // 2,
the same centre RELION uses. Radial shells are in Fourier pixels; shell s of
a box B at pixel size p is resolution B * p / s.
"""

from __future__ import annotations

import numpy as np


def fft2c(images: np.ndarray) -> np.ndarray:
    """Centred 2D FFT over the last two axes (origin at B // 2 in both spaces)."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=axes), axes=axes), axes=axes)


def ifft2c(spectra: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fft2c`; returns the real part."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(spectra, axes=axes), axes=axes), axes=axes).real


def fftnc(volume: np.ndarray) -> np.ndarray:
    """Centred 3D FFT."""
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(volume)))


def ifftnc(spectrum: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fftnc`; returns the real part."""
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(spectrum))).real


def frequencies(box: int) -> np.ndarray:
    """Centred Fourier-pixel coordinates -B//2 .. B - B//2 - 1 along one axis."""
    return np.arange(box) - box // 2


def freq_grid_2d(box: int, apix: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(kx, ky) on the centred 2D grid, in 1/Angstrom (indexing [y, x])."""
    k = frequencies(box) / (box * apix)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return kx, ky


def radius_grid(box: int, ndim: int) -> np.ndarray:
    """Distance from the centred origin, in Fourier pixels, on a 2D or 3D grid."""
    k = frequencies(box).astype(float)
    grids = np.meshgrid(*([k] * ndim), indexing="ij")
    return np.sqrt(sum(g * g for g in grids))


def shell_index(box: int, ndim: int) -> np.ndarray:
    """Integer shell (rounded radius) of every Fourier pixel/voxel."""
    return np.rint(radius_grid(box, ndim)).astype(np.int64)


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
    cube = fftnc(volume)[lo:lo + new_box, lo:lo + new_box, lo:lo + new_box]
    return ifftnc(cube).astype(np.float32)

"""The Gaussian mixture model (GMM) of a map, in physical units.

A GMM is N isotropic 3D Gaussians. Each has a centre (Angstrom, relative to
the box centre B // 2, the same origin maps and images use), an amplitude
equal to its integrated density (so the map it renders sums to the sum of the
amplitudes), and a width equal to its standard deviation in Angstrom. The
reference implementation squares its amplitudes and scales its widths by a
constant inside exp(); here the numbers mean what they say, so a GMM fitted
at one pixel size is valid at any other.

Rendering integrates each Gaussian over each voxel (or pixel) exactly, with
error functions, rather than sampling it at voxel centres: a voxel then holds
the density integrated over it, and the map's sum is the GMM's total mass
whatever the voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from ..errors import InputError


@dataclass(frozen=True)
class GMM:
    """N isotropic Gaussians.

    centres_A   (N, 3) float64, x, y, z in Angstrom relative to the box centre
    amplitudes  (N,)   float64, integrated density of each Gaussian
    widths_A    (N,)   float64, standard deviation in Angstrom (> 0)
    """

    centres_A: np.ndarray
    amplitudes: np.ndarray
    widths_A: np.ndarray

    def __post_init__(self) -> None:
        centres = np.array(self.centres_A, dtype=np.float64)
        amplitudes = np.array(self.amplitudes, dtype=np.float64)
        widths = np.array(self.widths_A, dtype=np.float64)
        check_gmm_arrays(centres, amplitudes, widths, where="GMM")
        for name, value in (("centres_A", centres), ("amplitudes", amplitudes),
                            ("widths_A", widths)):
            value.setflags(write=False)   # a value object: nobody edits it in place
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.amplitudes)


def check_gmm_arrays(centres_A: np.ndarray, amplitudes: np.ndarray, widths_A: np.ndarray,
                     where: str) -> None:
    """Raise InputError (one line naming ``where``) unless the arrays form a valid GMM."""
    n = len(amplitudes) if np.ndim(amplitudes) == 1 else -1
    if n < 1 or np.shape(centres_A) != (n, 3) or np.shape(widths_A) != (n,):
        raise InputError(
            f"{where}: centres {np.shape(centres_A)}, amplitudes {np.shape(amplitudes)}, "
            f"widths {np.shape(widths_A)}; expected (N, 3), (N,), (N,) with N >= 1")
    for name, value in (("centres_A", centres_A), ("amplitudes", amplitudes),
                        ("widths_A", widths_A)):
        bad = np.flatnonzero(~np.isfinite(np.reshape(value, (n, -1))).all(axis=1))
        if bad.size:
            raise InputError(f"{where}: {name} of Gaussian {bad[0]} is not finite; "
                             "expected finite numbers")
    bad = np.flatnonzero(np.asarray(widths_A) <= 0)
    if bad.size:
        raise InputError(f"{where}: width {widths_A[bad[0]]} A of Gaussian {bad[0]}; "
                         "expected a positive standard deviation in Angstrom")


def _integrated_profiles(centres_A: np.ndarray, widths_A: np.ndarray, box: int,
                         apix: float) -> np.ndarray:
    """(N, box) mass fraction of each 1D Gaussian inside each pixel of one axis.

    Pixel i spans [(i - B//2 - 1/2) apix, (i - B//2 + 1/2) apix].
    """
    edges_A = (np.arange(box + 1) - box // 2 - 0.5) * apix
    z = (edges_A[None, :] - centres_A[:, None]) / (np.sqrt(2.0) * widths_A[:, None])
    cdf = 0.5 * erf(z)
    return np.diff(cdf, axis=1)


def render_map(gmm: GMM, box: int, apix: float, chunk: int = 256) -> np.ndarray:
    """Voxel-integrated density of the GMM on a box^3 grid, float32, indexed [z, y, x].

    Voxel (z, y, x) holds the integral of the density over that voxel, whose
    centre sits at ((x, y, z) - B // 2) * apix Angstrom; so the map sums to
    sum(amplitudes) when every Gaussian lies well inside the box, and its
    projection along z (a sum over z) is :func:`render_projection` at the
    identity pose. Mass outside the box is dropped, not wrapped.

    Cost O(N B^3) through chunked matrix products (each Gaussian is separable).
    """
    if box < 1 or apix <= 0:
        raise InputError(f"render_map: box {box}, pixel size {apix} A; expected positive values")
    out = np.zeros((box, box * box))
    for lo in range(0, len(gmm), chunk):
        sl = slice(lo, lo + chunk)
        px = _integrated_profiles(gmm.centres_A[sl, 0], gmm.widths_A[sl], box, apix)
        py = _integrated_profiles(gmm.centres_A[sl, 1], gmm.widths_A[sl], box, apix)
        pz = _integrated_profiles(gmm.centres_A[sl, 2], gmm.widths_A[sl], box, apix)
        plane = (py[:, :, None] * px[:, None, :]).reshape(len(px), -1)
        out += (pz * gmm.amplitudes[sl, None]).T @ plane
    return out.reshape(box, box, box).astype(np.float32)


def render_projection(centres_2d_A: np.ndarray, amplitudes: np.ndarray, widths_A: np.ndarray,
                      box: int, apix: float) -> np.ndarray:
    """Pixel-integrated 2D image of Gaussians already projected, float64 (box, box) [y, x].

    centres_2d_A are image-plane positions (Angstrom from pixel B // 2), e.g.
    geometry.project_points(A, gmm.centres_A, origin_A)[0]: the projection of
    a 3D Gaussian along z is a 2D Gaussian of the same width and amplitude.
    Pixel values are densities integrated over each pixel, the normalisation
    the projection kernel's spectrum refers to (docs/kernel.md).
    """
    centres_2d_A = np.asarray(centres_2d_A, float)
    amplitudes = np.asarray(amplitudes, float)
    widths_A = np.asarray(widths_A, float)
    px = _integrated_profiles(centres_2d_A[:, 0], widths_A, box, apix)
    py = _integrated_profiles(centres_2d_A[:, 1], widths_A, box, apix)
    return (py * amplitudes[:, None]).T @ px


def projected_gmm_image(gmm: GMM, rotation: np.ndarray, origin_A: np.ndarray, box: int,
                        apix: float) -> np.ndarray:
    """Pixel-integrated projection of ``gmm`` at one pose (RELION matrix A, origin o, Angstrom).

    A Gaussian at c appears at (A c)_xy - o, the convention of gmmrefine.data.rotations.
    """
    rotated = np.asarray(gmm.centres_A) @ np.asarray(rotation, float).T
    centres_2d = rotated[:, :2] - np.asarray(origin_A, float)[None, :]
    return render_projection(centres_2d, gmm.amplitudes, gmm.widths_A, box, apix)

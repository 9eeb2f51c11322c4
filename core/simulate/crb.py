"""Cramer-Rao bound of pose accuracy for simulated particles (DESIGN.md, "the physical limit").

For one particle with clean CTF-modulated image I(theta) and white Gaussian
noise of sd sigma, the Fisher information of the pose parameters theta is

    F = J^T J / sigma^2,   J[p, k] = dI[p] / dtheta_k   (p over pixels),

and any unbiased estimator has error covariance >= F^-1. The pose
parameters are five:

- three small rotation angles (degrees) about the image-frame x, y and z
  axes, composed on the left of the true pose: A' = exp([delta]_x) A. The x
  and y angles tilt the particle out of the image plane, z turns it in plane;
- the two components of the origin offset o, in pixels.

J is taken by central finite differences of the exact renderer. From
C = F^-1 the bounds reported per particle are

- rotation bound (deg) = sqrt(C_xx + C_yy + C_zz): the rms length of the
  small rotation vector, i.e. the rms geodesic angle error at best;
- shift bound (px) = sqrt(C_ox,ox + C_oy,oy): the rms length of the 2D shift
  error at best.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.rotations import turn_matrix
from ..fourier.grids import fft2c, radius_grid
from .render import apply_ctf, project_atoms

N_POSE_PARAMS = 5


def finite_difference_fisher(image_of: Callable[[np.ndarray], np.ndarray], params: np.ndarray,
                             steps: np.ndarray, noise_sd: float) -> np.ndarray:
    """Fisher matrix J^T J / noise_sd^2 of an image model, J by central differences.

    Parameters
    ----------
    image_of : callable
        Maps a parameter stack (m, P) to images (m, ...); called once with all
        2P displaced parameter vectors.
    params : (P,) array
        Where the information is evaluated.
    steps : (P,) array
        Finite-difference step per parameter.
    noise_sd : float
        Standard deviation of the white Gaussian pixel noise.
    """
    params = np.asarray(params, float)
    steps = np.asarray(steps, float)
    displaced = np.concatenate([params + np.diag(steps), params - np.diag(steps)])
    images = np.asarray(image_of(displaced), float).reshape(2 * len(params), -1)
    jac = (images[:len(params)] - images[len(params):]) / (2.0 * steps[:, None])
    return jac @ jac.T / noise_sd ** 2


def pose_fisher(coords_A: np.ndarray, amplitude: np.ndarray, sigma_A: np.ndarray,
                rotation: np.ndarray, shift_A: np.ndarray, ctf: np.ndarray | None, box: int,
                apix: float, noise_sd: float, angle_step_deg: float = 0.01,
                shift_step_px: float = 0.01, lowpass_A: float | None = None) -> np.ndarray:
    """(5, 5) Fisher matrix of one particle's pose (parameters as in the module docstring).

    ``ctf`` is the particle's CTF on the centred grid (B, B), or None for an
    image without CTF. ``lowpass_A``: count only the Fourier pixels inside
    that resolution (white noise keeps the pixels independent), the
    information an alignment whose rings stop there can use.
    """
    rotation = np.asarray(rotation, float).reshape(3, 3)
    shift_A = np.asarray(shift_A, float).reshape(2)

    def image_of(theta: np.ndarray) -> np.ndarray:
        rot = turn_matrix(theta[:, :3]) @ rotation
        shifts = shift_A + theta[:, 3:] * apix
        images = project_atoms(coords_A, amplitude, sigma_A, rot, shifts, box, apix)
        images = images if ctf is None else apply_ctf(images, ctf)
        return images if lowpass_A is None else _band_limited(images, apix, lowpass_A)

    steps = np.array([angle_step_deg] * 3 + [shift_step_px] * 2)
    return finite_difference_fisher(image_of, np.zeros(N_POSE_PARAMS), steps, noise_sd)


def _band_limited(images: np.ndarray, apix: float, res_A: float) -> np.ndarray:
    """The images' orthonormal 2D spectra inside radius 1/res_A (Parseval keeps J^T J)."""
    box = images.shape[-1]
    spectra = fft2c(images) / box                  # 1 / sqrt(B^2): orthonormal
    inside = radius_grid(box, 2) <= box * apix / res_A
    kept = spectra[..., inside]
    return np.concatenate([kept.real, kept.imag], axis=-1)


def bounds_from_fisher(fisher: np.ndarray) -> tuple[float, float]:
    """(rotation bound in deg, shift bound in px) from a (5, 5) pose Fisher matrix."""
    cov = np.linalg.inv(fisher)
    return float(np.sqrt(np.trace(cov[:3, :3]))), float(np.sqrt(np.trace(cov[3:, 3:])))


def pose_bounds(coords_A: np.ndarray, amplitude: np.ndarray, sigma_A: np.ndarray,
                rotation: np.ndarray, shift_A: np.ndarray, ctf: np.ndarray | None, box: int,
                apix: float, noise_sd: float, lowpass_A: float | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle Cramer-Rao bounds for a stack of poses.

    rotation (n, 3, 3), shift_A (n, 2), ctf (n, B, B) or None. Returns the
    rotation bounds (deg) and shift bounds (px), each (n,). ``lowpass_A`` as
    in :func:`pose_fisher`.
    """
    rotation = np.asarray(rotation, float).reshape(-1, 3, 3)
    shift_A = np.asarray(shift_A, float).reshape(-1, 2)
    rot_deg = np.empty(len(rotation))
    shift_px = np.empty(len(rotation))
    for i in range(len(rotation)):
        fisher = pose_fisher(coords_A, amplitude, sigma_A, rotation[i], shift_A[i],
                             None if ctf is None else ctf[i], box, apix, noise_sd,
                             lowpass_A=lowpass_A)
        rot_deg[i], shift_px[i] = bounds_from_fisher(fisher)
    return rot_deg, shift_px


def summarize_bounds(rot_deg: np.ndarray, shift_px: np.ndarray) -> dict:
    """Median and 10/90 % quantiles of per-particle bounds, for truth.json and printing."""
    q = lambda a, p: float(np.percentile(a, p))  # noqa: E731
    return {
        "n_sampled": int(len(rot_deg)),
        "rotation_bound_deg_median": q(rot_deg, 50),
        "rotation_bound_deg_p10": q(rot_deg, 10),
        "rotation_bound_deg_p90": q(rot_deg, 90),
        "shift_bound_px_median": q(shift_px, 50),
        "shift_bound_px_p10": q(shift_px, 10),
        "shift_bound_px_p90": q(shift_px, 90),
    }

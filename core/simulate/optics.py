"""The simulator's side of RELION's observation model: images as RELION predicts them.

RELION (ObservationModel::predictObservation) forms an image of optics group
g at pose (A, o) as, at frequency k of the group's own grid,

    X(k) = CTF(M k) exp(+i phi_odd(M k)) exp(-2 pi i k . o) P(M k),

P the transform of the projection at A, M the group's magnification matrix,
the CTF with its even aberrations (gmmrefine.data.optics has every term).
Atoms are Gaussians, so P(M k) is exact here: each atom's projected position
p becomes M^T p (k . M^T p = M k . p) and its width's decay
exp(-2 pi^2 s^2 |M k|^2) is rendered isotropically with the smallest
eigenvalue l of M^T M, the rest, exp(-2 pi^2 s^2 (|M k|^2 - l |k|^2)),
applied in Fourier space per distinct width.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.ctf import particle_ctfs
from ..data.optics import has_magnification, has_odd, mag_matrix, odd_phase
from ..data.particles import OpticsGroup, ParticleSet
from ..fourier.grids import fft2c, freq_grid_2d, ifft2c
from .render import footprint_variance, project_atoms


def project_observed(coords_A: np.ndarray, amplitude: np.ndarray, sigma_A: np.ndarray,
                     rotation: np.ndarray, shift_A: np.ndarray, group: OpticsGroup) -> np.ndarray:
    """Pixel-integrated projections (n, B, B) on the group's grid, magnification included
    (before the CTF): the images' P(M k)."""
    if not has_magnification(group):
        return project_atoms(coords_A, amplitude, sigma_A, rotation, shift_A, group.box,
                             group.apix)
    mag = mag_matrix(group)
    lift = np.eye(3)
    lift[:2, :2] = mag
    # (lift^T A c)_xy = M^T (A c)_xy: the projected positions as this group records them.
    seen = np.einsum("ji,njk->nik", lift, np.asarray(rotation, float).reshape(-1, 3, 3))
    gram = mag.T @ mag
    smallest = float(np.linalg.eigvalsh(gram)[0])
    kx, ky = freq_grid_2d(group.box, group.apix)
    excess = (gram[0, 0] * kx * kx + 2 * gram[0, 1] * kx * ky + gram[1, 1] * ky * ky
              - smallest * (kx * kx + ky * ky))
    sigma_A = np.broadcast_to(np.asarray(sigma_A, float), (len(coords_A),))
    widths, which = np.unique(np.round(sigma_A, 9), return_inverse=True)
    total = 0.0
    for w, width in enumerate(widths):
        atoms = which.reshape(-1) == w
        iso = project_atoms(coords_A[atoms], amplitude[atoms], width * np.sqrt(smallest), seen,
                            shift_A, group.box, group.apix)
        total = total + fft2c(iso) * np.exp(-2.0 * np.pi ** 2 * width ** 2 * excess)
    return ifft2c(total).real


def observe(clean: np.ndarray, particles: ParticleSet, index: np.ndarray) -> np.ndarray:
    """Images (n, B, B) of particles ``index`` (one optics group) from their clean
    projections: the CTF with magnification and even aberrations, and the odd phase."""
    index = np.asarray(index)
    group = particles.optics[int(particles.optics_index[index[0]])]
    spectra = fft2c(clean) * particle_ctfs(particles, index, group.box, group.apix)
    if has_odd(group):
        kx, ky = freq_grid_2d(group.box, group.apix)
        spectra = spectra * np.exp(1j * odd_phase(group, kx, ky))
    return ifft2c(spectra).real


def stack_sizes(truth: ParticleSet) -> dict[int, tuple[int, int]]:
    """Each optics group's stack: (images, box)."""
    return {g: (int(np.sum(truth.optics_index == g)), group.box)
            for g, group in enumerate(truth.optics)}


def render_stacks(truth: ParticleSet, coords_A: np.ndarray, amplitude: np.ndarray,
                  sigma_A: np.ndarray, chunk: int, footprint_fraction: float, advance,
                  conformation: Callable[[int], np.ndarray] | None = None,
                  stacks: dict[int, np.ndarray] | None = None
                  ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Clean observed stacks (float32, one per optics group, rows by ``truth.image_index``)
    and each particle's footprint variance before the CTF.

    ``conformation(i)``: particle i's atom coordinates (a flexible set); None: ``coords_A``
    for all. ``advance(n)`` is told of each chunk rendered. ``stacks``: arrays of
    :func:`stack_sizes` to fill (memory-mapped files, say); None: new ones in memory.
    """
    if stacks is None:
        stacks = {g: np.empty((n, box, box), np.float32)
                  for g, (n, box) in stack_sizes(truth).items()}
    fp_var = np.empty(len(truth))
    for lo in range(0, len(truth), chunk):
        rows = np.arange(lo, min(len(truth), lo + chunk))
        for g in np.unique(truth.optics_index[rows]):
            index = rows[truth.optics_index[rows] == g]
            group = truth.optics[g]
            if conformation is None:
                images = project_observed(coords_A, amplitude, sigma_A, truth.rotation[index],
                                          truth.shift_A[index], group)
            else:
                images = np.concatenate([project_observed(
                    conformation(i), amplitude, sigma_A, truth.rotation[i:i + 1],
                    truth.shift_A[i:i + 1], group) for i in index])
            fp_var[index] = footprint_variance(images, footprint_fraction)
            stacks[g][truth.image_index[index]] = observe(images, truth, index)
        advance(len(rows))
    return stacks, fp_var


def add_noise(stacks: dict[int, np.ndarray], noise_sd: float, rng: np.random.Generator,
              chunk: int, scale: float = 1.0) -> float:
    """Add white Gaussian noise in place, chunk by chunk, then multiply by ``scale``; return
    the realised noise variance (before the scale; 0 without noise)."""
    total, count = 0.0, 0
    for stack in stacks.values():
        for lo in range(0, len(stack), chunk):
            part = stack[lo:lo + chunk]
            if noise_sd > 0:
                noise = rng.normal(scale=noise_sd, size=part.shape)
                part += noise.astype(np.float32)
                total += float(np.sum(noise * noise))
                count += noise.size
            part *= np.float32(scale)
    return total / count if count else 0.0

"""Particle sets with random poses and CTFs, blobs closed under a point group, their maps
and CTF-modulated projections, and running RELION's programs, for the symmetry tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from gmmrefine.data.ctf import particle_ctfs
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.data.rotations import random_rotations
from gmmrefine.data.symmetry_groups import symmetry_operators
from gmmrefine.fourier.grids import fft2c, ifft2c


def run_program(args: list[str], cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def random_particles(n: int, box: int, apix: float, rng: np.random.Generator,
                     image_path: str = "parts.mrcs") -> ParticleSet:
    """Random poses, shifts, astigmatic CTFs, alternating halves."""
    kw = empty_like_arrays(n)
    du = rng.uniform(8000, 25000, n)
    kw.update(image_path=np.array([image_path] * n, dtype=object), image_index=np.arange(n),
              rotation=random_rotations(n, rng), shift_A=rng.uniform(-4, 4, (n, 2)),
              defocus_u_A=du, defocus_v_A=du - rng.uniform(200, 2000, n),
              defocus_angle_deg=rng.uniform(0, 180, n),
              half_set=(1 + np.arange(n) % 2).astype(np.int8))
    return ParticleSet(optics=[OpticsGroup("opticsGroup1", apix, box, 300.0, 2.7, 0.1)], **kw)


def symmetric_blobs(sym: str, box: int, rng: np.random.Generator,
                    n_blobs: int = 5) -> np.ndarray:
    """Centres (px, from the box centre) of blobs closed under the group: V(R x) = V(x)."""
    base = rng.normal(scale=box / 12, size=(n_blobs, 3)) + np.array([box / 8, box / 16, 0.0])
    return np.concatenate([base @ r.T for r in symmetry_operators(sym)])


def volume_of_blobs(centres: np.ndarray, box: int, sigma_px: float = 2.0) -> np.ndarray:
    x = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    return sum(np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2)
                      / (2 * sigma_px ** 2)) for c in centres)


def images_of_blobs(centres: np.ndarray, ps: ParticleSet, sigma_px: float = 2.0) -> np.ndarray:
    """Analytic projections (blob at (A c)_xy - o), CTF-modulated."""
    box, apix = ps.output_grid()
    x = np.arange(box) - box // 2
    yy, xx = np.meshgrid(x, x, indexing="ij")
    images = np.zeros((len(ps), box, box))
    for c in centres:
        p = np.einsum("nij,j->ni", ps.rotation, c)[:, :2] - ps.shift_A / apix
        images += np.exp(-((xx[None] - p[:, 0, None, None]) ** 2
                           + (yy[None] - p[:, 1, None, None]) ** 2) / (2 * sigma_px ** 2))
    ctf = particle_ctfs(ps, np.arange(len(ps)), box, apix)
    return ifft2c(fft2c(images) * ctf).real

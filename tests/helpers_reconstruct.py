"""Three Gaussian blobs with analytic projections, and a STAR + stack of them on disk,
for the reconstruction tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gmmrefine.data.rotations import matrix_to_euler, random_rotations
from gmmrefine.io.mrc import write_stack

BOX = 32
SIGMA_PX = 2.0
CENTRES_PX = np.array([[5.0, -3.0, 2.0], [-6.0, 4.0, -1.0], [0.0, 0.0, 7.0]])
AMPLITUDES = np.array([1.0, 0.7, 0.5])


def blob_volume(box: int = BOX) -> np.ndarray:
    x = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    return sum(a * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2)
                          / (2 * SIGMA_PX ** 2)) for a, c in zip(AMPLITUDES, CENTRES_PX))


def blob_projections(rotation: np.ndarray, shift_px: np.ndarray | None = None,
                     box: int = BOX) -> np.ndarray:
    """Analytic line integrals of the blobs: blob j lands at (A c_j)_xy - o."""
    x = np.arange(box) - box // 2
    yy, xx = np.meshgrid(x, x, indexing="ij")
    shift_px = np.zeros((len(rotation), 2)) if shift_px is None else shift_px
    images = np.zeros((len(rotation), box, box))
    for a, c in zip(AMPLITUDES, CENTRES_PX):
        p = np.einsum("nij,j->ni", rotation, c)[:, :2] - shift_px
        images += a * np.sqrt(2 * np.pi) * SIGMA_PX * np.exp(
            -((xx[None] - p[:, 0, None, None]) ** 2 + (yy[None] - p[:, 1, None, None]) ** 2)
            / (2 * SIGMA_PX ** 2))
    return images


def relative_errors(volume: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    err = volume - truth
    return np.abs(err).max() / truth.max(), np.linalg.norm(err) / np.linalg.norm(truth)


def write_blob_dataset(tmp_path: Path, n: int, rng: np.random.Generator, apix: float = 2.0,
                       split: bool = True) -> Path:
    rotation = random_rotations(n, rng)
    shift_A = rng.uniform(-4, 4, (n, 2))
    images = blob_projections(rotation, shift_A / apix)
    images += rng.normal(scale=0.05 * images.std(), size=images.shape)
    write_stack(tmp_path / "parts.mrcs", images, apix)
    eul = matrix_to_euler(rotation)
    lines = ["", "data_optics", "", "loop_", "_rlnOpticsGroupName #1", "_rlnOpticsGroup #2",
             "_rlnVoltage #3", "_rlnSphericalAberration #4", "_rlnAmplitudeContrast #5",
             "_rlnImagePixelSize #6", "_rlnImageSize #7", "_rlnImageDimensionality #8",
             f"opticsGroup1 1 300.0 0.0 0.999 {apix} {BOX} 2", "", "data_particles", "", "loop_"]
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
            "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup"]
    cols += ["rlnRandomSubset"] if split else []
    lines += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    for i in range(n):
        # Cs 0, zero defocus, amplitude contrast ~1: a flat CTF, images stay plain projections.
        row = (f"{i + 1:06d}@parts.mrcs {eul[i, 0]:.6f} {eul[i, 1]:.6f} {eul[i, 2]:.6f} "
               f"{shift_A[i, 0]:.5f} {shift_A[i, 1]:.5f} 0.0 0.0 0.0 1")
        lines.append(row + (f" {1 + i % 2}" if split else ""))
    path = tmp_path / "parts.star"
    path.write_text("\n".join(lines) + "\n")
    return path

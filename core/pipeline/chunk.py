"""The unit of work: one chunk of one half's particles, aligned and back-projected.

(That half's aligner, a chunk of its particles) -> the chunk's refined
poses, its scores, and its share of the half's Fourier sums at the new
poses. Each chunk's images are read and transformed once and serve both the
alignment (Fourier-cropped to the target resolution) and the
reconstruction (full box, centred at the new shifts). A chunk reads nothing
but its own images and writes nothing: chunks never talk to each other and
sums add, so any executor can run them and add the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..align.refine_particles import ParticleAligner
from ..data.images import ParticleImages
from ..reconstruct.backproject import FourierSums, insert_slices


@dataclass(frozen=True)
class ChunkPoses:
    """A chunk's poses after alignment and its scores before and after (rows of the chunk)."""

    rotation: np.ndarray
    shift_A: np.ndarray
    score_start: np.ndarray
    score_end: np.ndarray


def refine_chunk(aligner: ParticleAligner | None, images: ParticleImages, index: np.ndarray,
                 sums: FourierSums, *,
                 prior_poses: tuple[np.ndarray, np.ndarray] | None = None,
                 progress=None, should_abort: Callable[[], bool] = lambda: False) -> ChunkPoses:
    """Align particles ``index`` of ``images`` (none with ``aligner`` None: the poses as they
    are), then add them to ``sums`` (in place) at their new poses.

    ``prior_poses`` (rotation, shift_A) of these particles centre the prior.
    """
    index = np.asarray(index, np.int64).reshape(-1)
    raw = images.raw_spectra(index)
    ps = images.particles
    if aligner is None:
        n = len(index)
        poses = ChunkPoses(ps.rotation[index], ps.shift_A[index], np.zeros(n), np.zeros(n))
    else:
        poses = ChunkPoses(*aligner.align(images, index, prior_poses=prior_poses, raw=raw,
                                          progress=progress, should_abort=should_abort))
    spectra, ctf, _ = images.spectra(index, raw=raw, shift_A=poses.shift_A)
    del raw
    insert_slices(spectra, ctf, poses.rotation, pad=sums.pad, sums=sums)
    if aligner is None and progress is not None:
        progress.update(len(index))
    return poses

"""The unit of work: one chunk of one half's particles, aligned and back-projected.

(That half's aligner, a chunk of its particles) -> the chunk's refined
poses, its scores, and its share of the half's Fourier sums at the new
poses. Each chunk's images are read and transformed once and serve both the
alignment (Fourier-cropped to the target resolution) and the
reconstruction (full box, centred at the new shifts). A chunk reads nothing
but its own images and writes nothing: chunks never talk to each other and
sums add, so any executor can run them and add the results
(gmmrefine.pipeline.executor). :class:`AlignerSpec` is what an executor
ships to build a half's aligner where its chunks run: the GMM (kilobytes)
and the settings, never a compiled aligner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..align.options import AlignOptions
from ..data.images import ParticleImages
from ..gmm.model import GMM
from ..reconstruct.backproject import FourierSums, insert_chunk

if TYPE_CHECKING:
    # TensorFlow comes with it: loaded where a chunk is aligned, not where one is only
    # reconstructed (a Dask worker of iteration 0, say).
    from ..align.refine_particles import ParticleAligner


@dataclass(frozen=True)
class ChunkPoses:
    """A chunk's poses after alignment and its scores before and after (rows of the chunk)."""

    rotation: np.ndarray
    shift_A: np.ndarray
    score_start: np.ndarray
    score_end: np.ndarray


@dataclass(frozen=True)
class AlignerSpec:
    """Everything a :class:`ParticleAligner` is built from: one half's GMM at one target
    resolution, the alignment settings, the pivot and, with ``--outside hold``, each
    Gaussian's share in the region that moves (the images bring their own grids)."""

    gmm: GMM
    res_A: float
    options: AlignOptions
    pivot_A: np.ndarray | None = None
    region_weight: np.ndarray | None = None

    def build(self) -> "ParticleAligner":
        """The aligner (its objective compiled here, where the chunks run)."""
        from ..align.refine_particles import ParticleAligner

        return ParticleAligner(self.gmm, self.res_A, self.options, self.pivot_A,
                               self.region_weight)


def refine_chunk(aligner: "ParticleAligner | None", images: ParticleImages, index: np.ndarray,
                 sums: FourierSums, *,
                 prior_poses: tuple[np.ndarray, np.ndarray] | None = None,
                 held_poses: tuple[np.ndarray, np.ndarray] | None = None,
                 progress=None, should_abort: Callable[[], bool] = lambda: False) -> ChunkPoses:
    """Align particles ``index`` of ``images`` (none with ``aligner`` None: the poses as they
    are), then add them to ``sums`` (in place) at their new poses.

    ``prior_poses`` (rotation, shift_A) of these particles centre the prior;
    ``held_poses`` hold the part of the model that does not move (default: the prior's).
    Particles on other image grids (merged optics groups) are read, aligned
    and inserted grid by grid.
    """
    index = np.asarray(index, np.int64).reshape(-1)
    ps = images.particles
    n = len(index)
    poses = ChunkPoses(ps.rotation[index].copy(), ps.shift_A[index].copy(), np.zeros(n),
                       np.zeros(n))
    for rows in images.by_image_grid(index):
        part = index[rows]
        raw = images.raw_spectra(part)
        if aligner is not None:
            prior = None if prior_poses is None else (prior_poses[0][rows], prior_poses[1][rows])
            held = None if held_poses is None else (held_poses[0][rows], held_poses[1][rows])
            result = aligner.align(images, part, prior_poses=prior, held_poses=held, raw=raw,
                                   progress=progress, should_abort=should_abort)
            for total, value in zip((poses.rotation, poses.shift_A, poses.score_start,
                                     poses.score_end), result):
                total[rows] = value
        slices = images.slices(part, raw=raw, shift_A=poses.shift_A[rows])
        del raw
        insert_chunk(slices, poses.rotation[rows], sums)
    if aligner is None and progress is not None:
        progress.update(n)
    return poses

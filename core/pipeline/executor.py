"""Where a half's chunks run: the seam between the iteration and whatever executes chunks.

An iteration hands an executor one half's work at a time: what its chunks
are aligned against (:class:`HalfWork`, an :class:`AlignerSpec` or none) and
which particles form them (:class:`ChunkPlan`); it gets back the half's
Fourier sums and every chunk's poses (:class:`HalfResult`). Two executors
keep that contract: :class:`InProcess`, the loop a run always had (the
default, and bit for bit what it computed), and the Dask executor
(gmmrefine.pipeline.dask_executor) that :func:`open_executor` starts only
when the options name a cluster, so a run without one never imports Dask.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np

from ..data.images import ImageReader, ParticleImages
from ..data.particles import ParticleSet
from ..errors import Aborted
from ..reconstruct.backproject import FourierSums
from .chunk import AlignerSpec, ChunkPoses, refine_chunk
from .options import RefineOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HalfWork:
    """One half's chunks of one iteration: what they are aligned against (None: they are
    only reconstructed at their poses), the output grid of their sums (box, pixel size:
    optics groups of other sizes are rescaled onto it), and a label for lines."""

    aligner: AlignerSpec | None
    box: int
    apix: float
    pad: int
    label: str


@dataclass(frozen=True)
class ChunkPlan:
    """Which particles of a run form a half's chunks, and the centres of their priors.

    particles      the run's set at the poses the chunks start from
    index          this half's particles (rows of ``particles``)
    chunk          particles per chunk
    prior_rotation, prior_shift_A
                   the prior's centre for every particle of the set (the input poses)
    held_rotation, held_shift_A
                   where ``--outside hold`` keeps the rest of every particle (None: the
                   aligner holds it at the prior's centre)
    """

    particles: ParticleSet
    index: np.ndarray
    chunk: int
    prior_rotation: np.ndarray
    prior_shift_A: np.ndarray
    held_rotation: np.ndarray | None = None
    held_shift_A: np.ndarray | None = None

    def chunks(self) -> Iterator[np.ndarray]:
        """The rows of each chunk, in order."""
        for lo in range(0, len(self.index), self.chunk):
            yield self.index[lo:lo + self.chunk]

    def prior(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The prior's centre (rotation, shift_A) for particles ``rows``."""
        return self.prior_rotation[rows], self.prior_shift_A[rows]

    def held(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Where the rest of particles ``rows`` is held (rotation, shift_A), or None."""
        if self.held_rotation is None:
            return None
        return self.held_rotation[rows], self.held_shift_A[rows]


@dataclass
class HalfResult:
    """A half's Fourier sums over all its chunks and each chunk's (rows, poses)."""

    sums: FourierSums
    poses: list[tuple[np.ndarray, ChunkPoses]]


class ChunkExecutor(Protocol):
    """Runs every chunk of a half and adds their sums; ``description`` says where."""

    description: str

    def run_half(self, work: HalfWork, plan: ChunkPlan, reader: ImageReader, progress,
                 should_abort: Callable[[], bool]) -> HalfResult: ...


def check_abort(should_abort: Callable[[], bool]) -> None:
    """Raise Aborted once ``should_abort()`` is true (RELION's abort button, say)."""
    if should_abort():
        raise Aborted("stopped on request")


class InProcess:
    """The chunks one after another in this process, into one set of sums."""

    description = "in this process"

    def run_half(self, work: HalfWork, plan: ChunkPlan, reader: ImageReader, progress,
                 should_abort: Callable[[], bool]) -> HalfResult:
        """Align (with an aligner) and back-project every chunk of ``plan`` in turn."""
        aligner = None if work.aligner is None else work.aligner.build()
        images = ParticleImages(plan.particles, reader, box=work.box, apix=work.apix)
        sums = FourierSums.zeros(work.box, work.pad)
        poses = []
        for rows in plan.chunks():
            # Between chunks as well as between batches: a reconstruction has no batches.
            check_abort(should_abort)
            result = refine_chunk(aligner, images, rows, sums, prior_poses=plan.prior(rows),
                                  held_poses=plan.held(rows),
                                  progress=progress, should_abort=should_abort)
            poses.append((rows, result))
        return HalfResult(sums, poses)


IN_PROCESS = InProcess()


@contextlib.contextmanager
def open_executor(options: RefineOptions) -> Iterator[ChunkExecutor]:
    """The executor the options ask for, for the length of a run.

    No ``cluster`` and no ``scheduler``: :data:`IN_PROCESS`, and Dask is not
    imported. Otherwise a Dask cluster is started (or joined) and closed
    again when the block ends (gmmrefine.pipeline.clusters).
    """
    if options.cluster is None and options.scheduler is None:
        yield IN_PROCESS
        return
    from .clusters import dask_client

    with dask_client(options) as (client, where):     # InputError here if Dask is missing
        from .dask_executor import DaskExecutor

        yield DaskExecutor(client, where)

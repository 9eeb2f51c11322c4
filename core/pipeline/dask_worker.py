"""What runs on a Dask worker: chunks added into the worker's own sums, handed back once.

A chunk arrives as a :class:`ChunkTask`: the rows of its particles with
their image references, CTF and poses (a lean :class:`ParticleSet`, no
pixels); the worker reads the images from shared storage through its own
StackReader, as RELION's MPI ranks do. Its half's aligner is built from the
:class:`HalfWork` (the GMM and the settings) once per worker and job, and
every chunk of that job is added into one set of sums held here, so a
worker returns one set of sums per half (:func:`take_sums`), not one per
chunk: a box-256 set is ~1.6 GB. The sums remember which chunks they hold,
so the client can tell which ones a lost worker took with it.

TensorFlow is imported with the first chunk that is aligned, not when a
worker starts: a worker that replaces a lost one joins in a second or two.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from distributed import WorkerPlugin, get_worker

from ..data.images import ImageReader, ParticleImages
from ..data.particles import ParticleSet
from ..io.stack import StackReader
from ..reconstruct.backproject import FourierSums

if TYPE_CHECKING:        # both import TensorFlow, which a worker loads with its first chunk
    from .chunk import ChunkPoses
    from .executor import HalfWork

PLUGIN = "gmmrefine-chunks"
PROGRESS_TOPIC = "gmmrefine-progress"
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class ChunkTask:
    """One chunk as it crosses the network: no pixels, only where they are.

    job           which half of which iteration (one set of sums per job and worker)
    chunk_id      its place in the half
    rows          its particles' rows in the run's set (named in errors)
    particles     those particles (image paths and indices, CTF, poses; no host tables)
    prior_rotation, prior_shift_A
                  the prior's centre for each
    held          (rotation, shift_A) where ``--outside hold`` keeps the rest of each, or
                  None (at the prior's centre: nothing more to ship)
    root          absolute directory the image paths resolve against
    source        the particle file, named in errors
    """

    job: str
    chunk_id: int
    rows: np.ndarray
    particles: ParticleSet
    prior_rotation: np.ndarray
    prior_shift_A: np.ndarray
    held: tuple[np.ndarray, np.ndarray] | None
    root: str
    source: str | None


@dataclass(frozen=True)
class ChunkDone:
    """A chunk's poses and which worker's sums hold its images."""

    chunk_id: int
    worker: str
    poses: "ChunkPoses"


@dataclass(frozen=True)
class WorkerSums:
    """One worker's sums of one job and the chunks in them."""

    chunk_ids: tuple[int, ...]
    sums: FourierSums


@dataclass
class _Half:
    """A job's state on one worker: its aligner, built on first use, and its sums."""

    work: "HalfWork"
    sums: FourierSums
    aligner: object = None
    chunk_ids: list[int] = field(default_factory=list)


class ChunkState(WorkerPlugin):
    """Per worker: each job's sums and aligner, and open stack readers.

    One chunk runs at a time on a worker whatever its thread count (each
    chunk already uses every core it has, through TensorFlow and numpy).
    """

    name = PLUGIN

    def setup(self, worker) -> None:
        self.lock = threading.Lock()
        self.halves: dict[str, _Half] = {}
        self.forgotten: set[str] = set()
        self.readers: dict[tuple[str, str | None], StackReader] = {}

    def teardown(self, worker) -> None:
        for reader in self.readers.values():
            reader.close()
        self.halves.clear()

    def half(self, job: str, work: "HalfWork") -> _Half:
        if job in self.forgotten:
            raise RuntimeError(f"{job} was called off")
        if job not in self.halves:
            aligner = None if work.aligner is None else work.aligner.build()
            self.halves[job] = _Half(work, FourierSums.zeros(work.box, work.pad), aligner)
        return self.halves[job]

    def reader(self, root: str, source: str | None) -> StackReader:
        key = (root, source)
        if key not in self.readers:
            self.readers[key] = StackReader(Path(root), source=None if source is None
                                            else Path(source))
        return self.readers[key]

    def take(self, job: str) -> WorkerSums | None:
        half = self.halves.pop(job, None)
        return None if half is None else WorkerSums(tuple(half.chunk_ids), half.sums)

    def forget(self, job: str) -> None:
        self.forgotten.add(job)
        self.halves.pop(job, None)


class _RowsOf:
    """A reader for a chunk's own particle set that names the run's rows in its errors."""

    def __init__(self, reader: ImageReader, rows: np.ndarray):
        self.reader, self.rows = reader, rows

    def read(self, paths, indices, *, rows, expected_box):
        return self.reader.read(paths, indices, rows=self.rows[np.asarray(rows)],
                                expected_box=expected_box)


class _ProgressRelay:
    """Particles done on this worker, sent to the client as events (at most one a second)."""

    def __init__(self, worker, job: str):
        self.worker, self.job = worker, job
        self.pending, self.last = 0, time.monotonic()

    def update(self, n: int) -> None:
        self.pending += int(n)
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.worker.log_event(PROGRESS_TOPIC, {"job": self.job, "n": self.pending})
        self.pending, self.last = 0, time.monotonic()


def keep(work: "HalfWork") -> "HalfWork":
    """``work`` itself: as a task's result it reaches each worker once and, lost with a
    worker, is made again (scattered data would not be)."""
    return work


def run_chunk(work: "HalfWork", task: ChunkTask) -> ChunkDone:
    """Align (with an aligner) and back-project one chunk into this worker's sums of its job."""
    from .chunk import refine_chunk

    worker = get_worker()
    state: ChunkState = worker.plugins[PLUGIN]
    with state.lock:
        half = state.half(task.job, work)
        reader = _RowsOf(state.reader(task.root, task.source), task.rows)
        images = ParticleImages(task.particles, reader, box=work.box, apix=work.apix)
        relay = _ProgressRelay(worker, task.job)
        try:
            poses = refine_chunk(half.aligner, images, np.arange(len(task.rows)), half.sums,
                                 prior_poses=(task.prior_rotation, task.prior_shift_A),
                                 held_poses=task.held,
                                 progress=relay)
        except BaseException:
            # The sums may hold part of this chunk: drop them, and the client runs every
            # chunk they held again.
            state.halves.pop(task.job, None)
            raise
        half.chunk_ids.append(task.chunk_id)
        relay.flush()
    return ChunkDone(task.chunk_id, worker.address, poses)


def take_sums(job: str) -> WorkerSums | None:
    """This worker's sums of ``job`` and the chunks in them (None: it holds none); they
    leave the worker."""
    state: ChunkState = get_worker().plugins[PLUGIN]
    with state.lock:
        return state.take(job)


def forget_job(job: str, dask_worker=None) -> None:
    """Drop ``job``'s sums and refuse its late chunks (run through Client.run)."""
    state: ChunkState | None = dask_worker.plugins.get(PLUGIN)
    if state is not None:
        state.forget(job)

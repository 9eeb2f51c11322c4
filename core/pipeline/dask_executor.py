"""A half's chunks on a Dask cluster: submitted, watched, and their sums gathered once per worker.

What crosses the network per half: the :class:`HalfWork` (the GMM and the
alignment settings, kilobytes) once to every worker; one
:class:`ChunkTask` per chunk (rows, image references, CTF and poses of its
particles, ~0.3 kB a particle, never pixels); back, each chunk's poses and
scores and, once per worker, that worker's sums of its chunks. Bytes are
counted as Dask's pickle serialiser sends them and logged per half
(:attr:`DaskExecutor.transfers`).

Faults: a task whose worker dies is run again elsewhere by Dask's scheduler,
and a task that raises is retried (``RETRIES``). The sums a lost worker held
are gone with it even for chunks that had finished, so the sums gathered
say which chunks they hold, and chunks none of them holds run again (no
chunk counts twice: sums that overlap others are set aside whole). The
result is that of an undisturbed run, to float rounding.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import pickle
import time
import uuid
from pathlib import Path
from typing import Callable

from distributed import wait

from ..data.images import ImageReader
from ..errors import Aborted
from ..reconstruct.backproject import FourierSums
from ..report.progress import format_duration
from . import dask_worker
from .dask_worker import ChunkDone, ChunkState, ChunkTask, WorkerSums
from .executor import ChunkPlan, HalfResult, HalfWork

log = logging.getLogger(__name__)

RETRIES = 2          # a chunk that raises is tried this many more times
MAX_ROUNDS = 4       # rounds of re-running chunks whose sums were lost with a worker
POLL_S = 0.5         # how often the client looks at progress and the abort request


def wire_bytes(obj: object) -> int:
    """Bytes ``obj`` takes as Dask's pickle serialiser sends it (protocol 5, arrays as
    out-of-band buffers: counted, not copied)."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return len(head) + sum(b.raw().nbytes for b in buffers)


def chunk_tasks(job: str, plan: ChunkPlan) -> list[ChunkTask]:
    """The half's chunks as tasks: each its particles' rows, references, CTF and poses."""
    ps = plan.particles
    # The host's own tables stay on the client: a worker needs none of their columns.
    lean = dataclasses.replace(ps, star_particles=None, star_optics=None, cs=None, meta={})
    root = str(Path(ps.root).resolve() if ps.root is not None else Path.cwd())
    source = None if ps.source is None else str(ps.source)
    tasks = []
    for chunk_id, rows in enumerate(plan.chunks()):
        tasks.append(ChunkTask(job, chunk_id, rows, lean.subset(rows), *plan.prior(rows),
                               plan.held(rows), root, source))
    return tasks


class DaskExecutor:
    """Runs a half's chunks on the workers of a Dask ``client``.

    Parameters
    ----------
    client
        A connected ``distributed.Client`` (gmmrefine.pipeline.clusters makes one).
    description
        Where the chunks run, for the run's log (the cluster and its dashboard).
    """

    def __init__(self, client, description: str = "on a Dask cluster"):
        self.client, self.description = client, description
        client.register_plugin(ChunkState(), name=dask_worker.PLUGIN)
        self.transfers: list[dict] = []
        self._events: collections.deque = collections.deque()
        client.subscribe_topic(dask_worker.PROGRESS_TOPIC, self._events.append)

    # --- the executor's one verb ------------------------------------------------------------
    def run_half(self, work: HalfWork, plan: ChunkPlan, reader: ImageReader, progress,
                 should_abort: Callable[[], bool]) -> HalfResult:
        """Every chunk of ``plan`` on the workers; their sums added here, once per worker.

        ``reader`` is not used: each worker opens the stacks itself.
        """
        t0, base = time.monotonic(), f"{work.label}-{uuid.uuid4().hex[:8]}"
        tasks = chunk_tasks(base, plan)
        # Out: the work (to the scheduler and each worker) and the chunks; back: the poses
        # and the sums.
        figures = {"label": work.label, "chunks": len(tasks), "particles": len(plan.index),
                   "bytes_work": 0, "bytes_chunks": 0,
                   "bytes_poses": 0, "bytes_sums": 0, "rounds": 0}
        # A task's result rather than scattered data: lost with a worker, it is made again.
        work_future = self.client.submit(dask_worker.keep, work, pure=False,
                                         key=f"gmmrefine-work-{base}")
        jobs: list[str] = []
        poses: dict[int, ChunkDone] = {}
        total = FourierSums.zeros(work.box, work.pad)
        covered: set[int] = set()
        try:
            todo = tasks
            while todo:
                if figures["rounds"] == MAX_ROUNDS:
                    raise RuntimeError(f"{work.label}: {len(todo)} chunks' sums were lost with "
                                       f"workers {MAX_ROUNDS} times; giving up")
                job = f"{base}-r{figures['rounds']}"
                jobs.append(job)
                figures["rounds"] += 1
                todo = [_for_job(t, job) for t in todo]
                figures["bytes_chunks"] += sum(wire_bytes(t) for t in todo)
                done = self._run_chunks(work_future, todo, progress, should_abort, figures)
                for chunk_id, result in done.items():
                    poses.setdefault(chunk_id, result)
                for part in self._gather_sums(job, done, should_abort, figures):
                    if covered.isdisjoint(part.chunk_ids):
                        _add_into(total, part.sums)
                        covered.update(part.chunk_ids)
                todo = [t for t in tasks if t.chunk_id not in covered]
                if todo:
                    log.warning(f"{work.label}: the sums of {len(todo)} chunks were lost with a "
                                "worker; running those chunks again")
        finally:
            for job in jobs:
                self.client.run(dask_worker.forget_job, job, on_error="ignore")
            del work_future
        n_workers = len({result.worker for result in poses.values()})
        figures["workers"] = n_workers
        figures["bytes_work"] = wire_bytes(work) * (n_workers + 1)     # scheduler + workers
        figures["seconds"] = time.monotonic() - t0
        figures["bytes_to_workers"] = figures["bytes_work"] + figures["bytes_chunks"]
        figures["bytes_from_workers"] = figures["bytes_poses"] + figures["bytes_sums"]
        self.transfers.append(figures)
        log.info(f"{work.label}: {len(tasks)} chunks on {n_workers} "
                 f"worker{'s' if n_workers > 1 else ''} in "
                 f"{format_duration(figures['seconds'])}; {_mb(figures['bytes_to_workers'])} "
                 f"to the workers, {_mb(figures['bytes_from_workers'])} back")
        by_rows = [(tasks[i].rows, poses[i].poses) for i in range(len(tasks))]
        return HalfResult(total, by_rows)

    # --- detail ----------------------------------------------------------------------------
    def _run_chunks(self, work_future, tasks: list[ChunkTask], progress,
                    should_abort: Callable[[], bool], figures: dict) -> dict[int, ChunkDone]:
        """Submit ``tasks``, wait for all while passing on progress; the poses by chunk."""
        futures = {self.client.submit(dask_worker.run_chunk, work_future, task, pure=False,
                                      retries=RETRIES, key=f"gmmrefine-{task.job}-{task.chunk_id}"):
                   task for task in tasks}
        pending, done = set(futures), {}
        try:
            while pending:
                self._check_abort(should_abort, pending)
                try:
                    finished, pending = wait(pending, timeout=POLL_S,
                                             return_when="FIRST_COMPLETED")
                except TimeoutError:
                    finished = set()
                for future in finished:
                    result = future.result()          # a chunk's error, after its retries
                    figures["bytes_poses"] += wire_bytes(result)
                    done[result.chunk_id] = result
                self._pass_progress(tasks[0].job, progress)
        except BaseException:
            self.client.cancel(list(pending))
            raise
        return done

    def _gather_sums(self, job: str, done: dict[int, ChunkDone],
                     should_abort: Callable[[], bool], figures: dict):
        """Each worker's sums of ``job``, in the order of the first chunk each ran; a worker
        lost since yields nothing (its chunks are then missing from what was gathered)."""
        first: dict[str, int] = {}
        for chunk_id in sorted(done):
            first.setdefault(done[chunk_id].worker, chunk_id)
        for address in sorted(first, key=first.get):
            part = self._take_from(address, job, should_abort)
            if part is not None:
                figures["bytes_sums"] += wire_bytes(part)
                yield part

    def _take_from(self, address: str, job: str,
                   should_abort: Callable[[], bool]) -> WorkerSums | None:
        future = self.client.submit(dask_worker.take_sums, job, workers=[address],
                                    allow_other_workers=False, pure=False,
                                    key=f"gmmrefine-sums-{job}-{uuid.uuid4().hex[:8]}")
        while True:
            self._check_abort(should_abort, {future})
            try:
                wait(future, timeout=POLL_S)
                return future.result()
            except TimeoutError:
                if address not in self.client.scheduler_info()["workers"]:
                    self.client.cancel([future])
                    return None

    def _check_abort(self, should_abort: Callable[[], bool], pending) -> None:
        if should_abort():
            self.client.cancel(list(pending))
            raise Aborted("stopped on request")

    def _pass_progress(self, job: str, progress) -> None:
        """Particles the workers reported for ``job`` since the last look, to ``progress``
        (a chunk run again is not counted twice)."""
        n = 0
        while self._events:
            _, message = self._events.popleft()
            if isinstance(message, dict) and message.get("job") == job:
                n += int(message.get("n", 0))
        if progress is not None:
            progress.update(min(n, max(0, progress.total - progress.done)))


def _for_job(task: ChunkTask, job: str) -> ChunkTask:
    return dataclasses.replace(task, job=job)


def _add_into(total: FourierSums, part: FourierSums) -> None:
    """``total`` += ``part`` in place (one set of sums in memory, not three)."""
    if (total.box, total.pad) != (part.box, part.pad):
        raise ValueError(f"sums of box {part.box} pad {part.pad} into box {total.box} "
                         f"pad {total.pad}")
    total.data += part.data
    total.weight += part.weight
    total.count += part.count


def _mb(n_bytes: int) -> str:
    """Bytes as '312 kB' or '22.1 MB' (decimal units, as network rates are quoted)."""
    return f"{n_bytes / 1e3:.0f} kB" if n_bytes < 1e6 else f"{n_bytes / 1e6:.1f} MB"

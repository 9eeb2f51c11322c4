"""Chunks on Dask (127.0.0.1 only): the same poses and maps as in this process, a worker lost
mid-half changes nothing, an abort stops the half, and a refinement run with --cluster local:2
matches an in-process one file for file."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("distributed")

from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402
from gmmrefine.errors import Aborted  # noqa: E402
from gmmrefine.io.mrc import read_map  # noqa: E402
from gmmrefine.io.particles import read_particles  # noqa: E402
from gmmrefine.io.stack import StackReader  # noqa: E402
from gmmrefine.pipeline import run as run_module  # noqa: E402
from gmmrefine.pipeline.clusters import dask_client  # noqa: E402
from gmmrefine.pipeline.dask_executor import DaskExecutor, wire_bytes  # noqa: E402
from gmmrefine.pipeline.executor import IN_PROCESS, ChunkPlan, HalfWork  # noqa: E402
from gmmrefine.pipeline.options import RefineOptions  # noqa: E402
from gmmrefine.report.progress import Progress  # noqa: E402
from gmmrefine.simulate.dataset import simulate_dataset  # noqa: E402

pytestmark = pytest.mark.slow

FILES = ("half1.mrc", "half2.mrc", "map.mrc", "iter_000/map.mrc")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=160, box=40, apix=2.8, snr=1.0, angle_rms_deg=4.0, crb_sample=0)
    return out


@pytest.fixture(scope="module")
def client():
    with dask_client(RefineOptions(cluster="local:2")) as (dask, _):
        yield dask


def _half_one(small_set, chunk: int):
    """Half 1 of the set as an executor sees it (reconstructed at its poses: alignment on
    workers is compared end to end below)."""
    ps, _ = read_particles(small_set / "particles.star").with_halves()
    index = np.flatnonzero(ps.half_set == 1)
    return HalfWork(None, 40, 2.8, 2, "test half"), ChunkPlan(ps, index, chunk, ps.rotation,
                                                          ps.shift_A)


def _in_process(small_set, work, plan):
    with StackReader(small_set) as reader:
        return IN_PROCESS.run_half(work, plan, reader, None, lambda: False)


def _assert_same(result, expected):
    np.testing.assert_allclose(result.sums.data, expected.sums.data, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(result.sums.weight, expected.sums.weight, rtol=1e-12, atol=1e-9)
    assert result.sums.count == expected.sums.count
    for (rows, poses), (rows0, poses0) in zip(result.poses, expected.poses):
        np.testing.assert_array_equal(rows, rows0)
        np.testing.assert_allclose(poses.rotation, poses0.rotation, atol=1e-9)
        np.testing.assert_allclose(poses.shift_A, poses0.shift_A, atol=1e-9)
        np.testing.assert_allclose(poses.score_end, poses0.score_end, atol=1e-9)


class _KillWorker(SchedulerPlugin):
    """On the scheduler: SIGKILL, once, the worker of the first task whose key starts with
    ``prefix`` and ends with ``suffix`` as it reaches ``state``, as a node lost mid-iteration
    goes (its sums with it)."""

    name = "test-kill-once"

    def __init__(self, prefix: str, state: str, suffix: str = ""):
        self.prefix, self.state, self.suffix, self.killed = prefix, state, suffix, []

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        name, task = str(key), self.scheduler.tasks.get(key)
        if (finish != self.state or self.killed or task is None
                or not (name.startswith(self.prefix) and name.endswith(self.suffix))):
            return
        worker = task.processing_on if finish == "processing" else next(iter(task.who_has), None)
        if worker is not None and worker.pid:
            self.killed.append(worker.address)
            os.kill(worker.pid, signal.SIGKILL)


def _run_with_a_kill(client, small_set, killer: _KillWorker):
    """Half 1 in chunks of 5 on the workers while ``killer`` strikes; the result, the rounds
    it took, and the in-process result."""
    work, plan = _half_one(small_set, chunk=5)
    expected = _in_process(small_set, work, plan)
    client.register_plugin(killer)
    try:
        executor = DaskExecutor(client)
        result = executor.run_half(work, plan, None, None, lambda: False)
        killed = client.cluster.scheduler.plugins[killer.name].killed
    finally:
        client.unregister_scheduler_plugin(killer.name)
        client.wait_for_workers(2, timeout=120)
    assert len(killed) == 1
    return result, executor.transfers[-1]["rounds"], expected


def test_chunks_on_two_workers_give_the_in_process_sums_and_poses(small_set, client):
    work, plan = _half_one(small_set, chunk=16)
    expected = _in_process(small_set, work, plan)
    executor = DaskExecutor(client)
    progress = Progress(len(plan.index), "test", interval_s=0.0)
    result = executor.run_half(work, plan, None, progress, lambda: False)
    _assert_same(result, expected)
    assert progress.done == len(plan.index)
    figures = executor.transfers[-1]
    assert figures["rounds"] == 1 and figures["chunks"] == 5
    # Out: the GMM and settings per worker, and the chunks' descriptors (no pixels); back:
    # each chunk's poses and one set of sums per worker that ran chunks.
    sums_bytes = wire_bytes(expected.sums)
    assert figures["bytes_to_workers"] < 2 * wire_bytes(work) + 5 * 16 * 1000
    assert sums_bytes <= figures["bytes_from_workers"] <= 2 * sums_bytes + 5 * 16 * 200


def test_a_worker_killed_while_chunks_run_changes_nothing(small_set, client):
    # Dask itself runs the chunks whose results died with the worker again elsewhere.
    result, _, expected = _run_with_a_kill(client, small_set,
                                           _KillWorker("gmmrefine-test half", "memory", "-6"))
    _assert_same(result, expected)


def test_a_worker_killed_while_its_sums_are_gathered_has_its_chunks_run_again(small_set,
                                                                              client):
    # Every chunk had finished: only the sums know which chunks the lost worker held.
    result, rounds, expected = _run_with_a_kill(client, small_set,
                                                _KillWorker("gmmrefine-sums-", "processing"))
    assert rounds == 2
    _assert_same(result, expected)


def test_an_abort_request_stops_the_half(small_set, client):
    work, plan = _half_one(small_set, chunk=5)
    with pytest.raises(Aborted):
        DaskExecutor(client).run_half(work, plan, None, None, lambda: True)


def test_a_refinement_on_local_workers_matches_the_in_process_one(small_set, tmp_path):
    common = dict(iterations=1, steps=2, chunk=30, n_gauss=300, res_A=9.0)
    runs = {}
    for name, extra in (("in_process", {}), ("local2", {"cluster": "local:2"})):
        lines: list[str] = []
        run_module.run_refinement(small_set / "particles.star", tmp_path / name,
                                  RefineOptions(**common, **extra), log=lines.append)
        runs[name] = lines
    assert any("Dask dashboard http://127.0.0.1:" in line for line in runs["local2"])
    assert any("chunks on 2 workers" in line for line in runs["local2"])
    log_file = (tmp_path / "local2" / "run.log").read_text()
    assert "particle chunks run on 2 local worker processes" in log_file
    one, two = (read_particles(tmp_path / n / "particles.star") for n in runs)
    np.testing.assert_allclose(two.rotation, one.rotation, atol=1e-6)
    np.testing.assert_allclose(two.shift_A, one.shift_A, atol=1e-5)
    for name in FILES:
        a, b = (read_map(tmp_path / n / name)[0] for n in runs)
        np.testing.assert_allclose(b, a, atol=1e-5 * np.abs(a).max())

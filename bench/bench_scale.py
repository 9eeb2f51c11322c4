"""One iteration's chunk work in this process, on 1 Dask worker and on 2, on this machine.

"One iteration" here is what the executor runs: both halves' particles
aligned against a 7,000-Gaussian GMM (target near Nyquist, default options)
and back-projected at their new poses, chunk by chunk; the GMM fits, which
run in the main process whatever the executor, are left out. Three ways:
  - in_process: gmmrefine.pipeline.executor.IN_PROCESS (what a run without
    --cluster does), TensorFlow on all cores;
  - local_1: --cluster local:1 --worker-cores <all cores>: the same work
    through Dask; the difference is Dask's cost (per chunk, below);
  - local_2: --cluster local:2: two worker processes sharing the cores.
For each: particles/s, the seconds the cluster took to start, bytes sent to
the workers and back per iteration (as Dask's pickle serialiser sends them),
and each worker's peak resident memory. The images are noise: the work per
particle does not depend on what they show.

    python bench/bench_scale.py [--n 1200 --box 96 --chunk 100]
Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_refine_throughput import (  # noqa: E402
    APIX,
    N_GAUSS,
    RES_OVER_NYQUIST,
    protein_like_gmm,
    write_particles_on_disk,
)
from gmmrefine.io.atomic import write_text_atomic  # noqa: E402
from gmmrefine.io.particles import read_particles  # noqa: E402
from gmmrefine.io.stack import StackReader  # noqa: E402
from gmmrefine.pipeline.chunk import AlignerSpec  # noqa: E402
from gmmrefine.pipeline.cluster_spec import ClusterSpec, available_cores  # noqa: E402
from gmmrefine.pipeline.executor import IN_PROCESS, ChunkPlan, HalfWork  # noqa: E402
from gmmrefine.pipeline.options import RefineOptions  # noqa: E402

HERE = Path(__file__).resolve().parent


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def iteration_work(star: Path, box: int, chunk: int, res_A: float):
    """Both halves' (HalfWork, ChunkPlan) of the set in ``star``, each half with its GMM."""
    ps, _ = read_particles(star, root=star.parent).with_halves()
    options = RefineOptions(chunk=chunk).alignment()
    halves = []
    for half in (1, 2):
        gmm = protein_like_gmm(np.random.default_rng(half), N_GAUSS, APIX)
        work = HalfWork(AlignerSpec(gmm, res_A, options), box, APIX, 2, f"bench half {half}")
        index = np.flatnonzero(ps.half_set == half)
        halves.append((work, ChunkPlan(ps, index, chunk, ps.rotation, ps.shift_A)))
    return ps, halves


def warm_up(half, cluster: str) -> tuple[HalfWork, ChunkPlan]:
    """A few particles per worker of ``half``, one chunk each: what loads TensorFlow."""
    work, plan = half
    n = ClusterSpec.parse(cluster).n_workers
    return work, ChunkPlan(plan.particles, plan.index[:4 * n], 4, plan.prior_rotation,
                           plan.prior_shift_A)


def run_in_process(star: Path, halves) -> dict:
    with StackReader(star.parent) as reader:
        work, plan = warm_up(halves[0], "local:1")
        IN_PROCESS.run_half(work, plan, reader, None, lambda: False)
    t0 = time.monotonic()
    with StackReader(star.parent) as reader:
        for work, plan in halves:
            IN_PROCESS.run_half(work, plan, reader, None, lambda: False)
    return {"seconds": time.monotonic() - t0, "peak_rss_mb": {"main": _peak_rss_mb()}}


def run_on_dask(halves, options: RefineOptions) -> dict:
    from gmmrefine.pipeline.clusters import dask_client
    from gmmrefine.pipeline.dask_executor import DaskExecutor

    t_start = time.monotonic()
    with dask_client(options) as (client, where):
        client.wait_for_workers(len(client.scheduler_info()["workers"]) or 1)
        started = time.monotonic() - t_start
        executor = DaskExecutor(client, where)
        # Each worker's first aligned chunk imports TensorFlow: once per worker and run, not
        # per chunk, so it is timed apart.
        t0 = time.monotonic()
        executor.run_half(*warm_up(halves[0], options.cluster), None, None, lambda: False)
        warm = time.monotonic() - t0
        executor.transfers.clear()
        t0 = time.monotonic()
        for work, plan in halves:
            executor.run_half(work, plan, None, None, lambda: False)
        seconds = time.monotonic() - t0
        peaks = client.run(_peak_rss_mb)
    transfers = executor.transfers
    return {"seconds": seconds, "cluster_start_s": started, "warm_up_s": warm,
            "bytes_to_workers": sum(t["bytes_to_workers"] for t in transfers),
            "bytes_from_workers": sum(t["bytes_from_workers"] for t in transfers),
            "chunks": sum(t["chunks"] for t in transfers), "halves": transfers,
            **{key: sum(t[key] for t in transfers)
               for key in ("bytes_work", "bytes_chunks", "bytes_poses", "bytes_sums")},
            "peak_rss_mb": {"main": _peak_rss_mb(),
                            **{f"worker {i}": mb for i, mb in enumerate(peaks.values())}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--box", type=int, default=96)
    parser.add_argument("--chunk", type=int, default=100)
    args = parser.parse_args()
    cores = available_cores()
    res_A = RES_OVER_NYQUIST * 2 * APIX
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        star = write_particles_on_disk(Path(tmp), args.n, args.box, np.random.default_rng(0))
        ps, halves = iteration_work(star, args.box, args.chunk, res_A)
        results = {"in_process": run_in_process(star, halves)}
        for name, options in (("local_1", RefineOptions(cluster="local:1", worker_cores=cores)),
                              ("local_2", RefineOptions(cluster="local:2"))):
            results[name] = run_on_dask(halves, options)
    for figures in results.values():
        figures["particles_per_s"] = args.n / figures["seconds"]
    base, one = results["in_process"], results["local_1"]
    per_particle_out = one["bytes_chunks"] / args.n
    report = {
        "benchmark": "scale", "machine": f"{platform.machine()}, {cores} cores",
        "particles": args.n, "box": args.box, "chunk": args.chunk, "n_gaussians": N_GAUSS,
        "target_resolution_A": res_A, "load_average_before": load_before,
        "results": results,
        # What Dask adds per chunk: same work, same cores, through one worker.
        "overhead_per_chunk_s": (one["seconds"] - base["seconds"]) / one["chunks"],
        "bytes_per_iteration": {name: r["bytes_to_workers"] + r["bytes_from_workers"]
                                for name, r in results.items() if "bytes_to_workers" in r},
        # The chunks' descriptors alone (the GMM is per worker, not per particle).
        "chunk_bytes_per_particle": per_particle_out,
        "pose_bytes_per_particle": one["bytes_poses"] / args.n,
        "gmm_bytes": one["halves"][0]["bytes_work"] / 2,
        # One worker's sums of one half (what dominates the bytes back), here and at box 256.
        "sums_bytes": {str(args.box): _sums_bytes(args.box), "256": _sums_bytes(256)},
        "load_average_after": os.getloadavg(),
    }
    out = HERE / "results" / "scale.json"
    out.parent.mkdir(exist_ok=True)
    write_text_atomic(out, json.dumps(report, indent=1) + "\n")
    for name, r in results.items():
        extra = ("" if "bytes_to_workers" not in r else
                 f", start {r['cluster_start_s']:.1f} s, {r['bytes_to_workers'] / 1e6:.2f} MB "
                 f"out, {r['bytes_from_workers'] / 1e6:.1f} MB back")
        print(f"{name}: {r['particles_per_s']:.1f} particles/s ({r['seconds']:.1f} s){extra}; "
              f"peak RSS MB {r['peak_rss_mb']}")
    print(f"overhead per chunk {report['overhead_per_chunk_s']:.3f} s; "
          f"{per_particle_out:.0f} bytes out per particle; results in {out}")


def _sums_bytes(box: int) -> int:
    """Bytes of one FourierSums (complex128 data + float64 weight on the padded grid)."""
    p = 2 * box
    return p * p * (p // 2 + 2) * (16 + 8)


if __name__ == "__main__":
    main()

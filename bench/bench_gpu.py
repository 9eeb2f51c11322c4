"""Particles/s and peak device memory of alignment and GMM fitting, on any device.

Boxes 128 and 256, GMMs of 7,000 and 15,000 Gaussians (a ~90 kDa particle's
volume, 1.3 A/px, targets near Nyquist), default RefineOptions (batch 16).
Each configuration runs in a process of its own, so its peak memory is its
own: on a GPU, TensorFlow's peak allocation on the device (reset before each
phase); on the CPU, the process's peak resident memory after each phase
(it only grows; the TensorFlow baseline is recorded first). Alignment is
refine_particles end to end from an .mrcs on disk (noise images: the work per
particle does not depend on what they show), after a one-batch warm-up. The
GMM fit is gmm_from_map on a map rendered from the GMM: its set-up (low-pass,
Fourier crop, threshold, k-means seeding, tracing the graph), then Adam steps
timed one by one (--fit-steps of them; a run takes 80, and the figure for 80
is extrapolated from the measured step rate).

    python bench/bench_gpu.py [--gpu auto|cpu|0] [--quick] [--batches 16 64]
Writes bench/results/gpu_<cpu|gpu>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APIX = 1.3
BOXES = (128, 256)
N_GAUSS = (7000, 15000)
RUN_FIT_STEPS = 80


class _StepClock:
    """What gmm.fit tells a progress object: when the steps start, and each step."""

    def __init__(self):
        self.started = self.first = self.last = None
        self.done = 0

    def start(self):
        self.started = time.perf_counter()

    def update(self, n=1):
        self.done += n
        self.last = time.perf_counter()
        if self.first is None:
            self.first = self.last


def _peak(kind_and_bytes) -> float:
    return round(kind_and_bytes[1] / 1e9, 3)


def _cpu_s() -> float:
    """CPU seconds this process has used: on a shared machine, wall-clock rates fall with
    the load, CPU time per particle much less."""
    return time.process_time()


def measure_one(box: int, n_gauss: int, particles: int, fit_steps: int, batch: int,
                gpu: str | None) -> dict:
    """One configuration, in this process: device, alignment rate and memory, fit times."""
    import numpy as np
    from bench_refine_throughput import protein_like_gmm, write_particles_on_disk
    from gmmrefine.align.refine_particles import refine_particles
    from gmmrefine.data.images import ParticleImages
    from gmmrefine.device import peak_memory_bytes, reset_peak_memory, select_device
    from gmmrefine.gmm.fit import gmm_from_map
    from gmmrefine.gmm.model import render_map
    from gmmrefine.io.particles import read_particles
    from gmmrefine.io.stack import StackReader
    from gmmrefine.pipeline.options import RefineOptions

    device = select_device(gpu)
    result = {"box": box, "n_gaussians": n_gauss, "batch": batch, "device": device,
              "baseline_peak_GB": _peak(peak_memory_bytes())}
    rng = np.random.default_rng(0)
    gmm = protein_like_gmm(rng, n_gauss, APIX)
    res_A = 1.05 * 2 * APIX
    options = RefineOptions(batch=batch)
    with tempfile.TemporaryDirectory() as tmp:
        star = write_particles_on_disk(Path(tmp), particles + batch, box, rng)
        ps = read_particles(star, root=star.parent)
        with StackReader(ps.root, source=star) as reader:
            warm = ParticleImages(ps.subset(np.arange(batch)), reader)
            refine_particles(gmm, warm, res_A, options.alignment())    # traces and compiles
            reset_peak_memory()
            images = ParticleImages(ps.subset(np.arange(batch, batch + particles)), reader)
            t0, cpu0 = time.perf_counter(), _cpu_s()
            refine_particles(gmm, images, res_A, options.alignment())
            seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    kind, _ = peak_memory_bytes()
    result.update(memory_kind=kind, align_particles=particles,
                  align_particles_per_s=round(particles / seconds, 2),
                  align_cpu_s_per_particle=round(cpu / particles, 3),
                  align_peak_GB=_peak(peak_memory_bytes()))

    volume = render_map(gmm, box, APIX)
    reset_peak_memory()
    clock = _StepClock()
    t0, cpu0 = time.perf_counter(), _cpu_s()
    fitted, report = gmm_from_map(volume, APIX, res_A, n=n_gauss, steps=fit_steps,
                                  progress=clock)
    total, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    setup_s = clock.started - t0
    # The first step traces and compiles the graph: the rate is that of the others.
    per_step = (clock.last - clock.first) / max(clock.done - 1, 1)
    result.update(fit_box=report.fit_box, fit_gaussians=len(fitted), fit_steps=fit_steps,
                  fit_setup_s=round(setup_s, 2), fit_step_s=round(per_step, 3),
                  fit_total_s=round(total, 2), fit_total_cpu_s=round(cpu, 2),
                  fit_s_for_80_steps=round(clock.first - t0 + (RUN_FIT_STEPS - 1) * per_step,
                                           1),
                  fit_peak_GB=_peak(peak_memory_bytes()))
    return result


def _spawn(args, box: int, n_gauss: int, particles: int, batch: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", str(box), str(n_gauss),
               "--particles", str(particles), "--fit-steps", str(args.fit_steps),
               "--batches", str(batch), "--gpu", args.gpu]
    run = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
    if run.returncode != 0:
        raise RuntimeError(f"box {box}, {n_gauss} Gaussians failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", default="auto", help="auto, cpu or an id (as --gpu)")
    parser.add_argument("--quick", action="store_true", help="fewer particles and fit steps")
    parser.add_argument("--fit-steps", type=int, default=None,
                        help="fit steps timed (default 80 on a GPU, 6 on the CPU, 3 quick)")
    parser.add_argument("--particles", type=int, default=None,
                        help="particles aligned per configuration (default by box)")
    parser.add_argument("--batches", type=int, nargs="+", default=[16],
                        help="batch sizes; more than one shows memory bounded by the batch")
    parser.add_argument("--one", type=int, nargs=2, metavar=("BOX", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    gpu = None if args.gpu == "auto" else args.gpu
    if args.one:
        print(json.dumps(measure_one(*args.one, args.particles, args.fit_steps, args.batches[0],
                                     gpu)))
        return

    from gmmrefine.device import compute_on_gpu, select_device

    select_device(gpu)
    on_gpu = compute_on_gpu()
    if args.fit_steps is None:
        args.fit_steps = 3 if args.quick else (RUN_FIT_STEPS if on_gpu else 6)
    started = time.perf_counter()
    result = {"benchmark": "gpu", "device_kind": "gpu" if on_gpu else "cpu", "apix": APIX,
              "target_resolution_A": round(1.05 * 2 * APIX, 3),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "load_average_before": [round(x, 2) for x in os.getloadavg()], "runs": []}
    for box in BOXES:
        default = {128: 16, 256: 8} if args.quick else {128: 32, 256: 16}
        particles = args.particles or default[box] * (16 if on_gpu else 1)
        for n_gauss in N_GAUSS:
            for batch in args.batches:
                run = _spawn(args, box, n_gauss, particles, batch)
                result["runs"].append(run)
                print(f"box {box}, {n_gauss} Gaussians, batch {batch} ({run['device']}):\n"
                      f"  align {run['align_particles_per_s']:.1f} particles/s "
                      f"({run['align_cpu_s_per_particle']:.2f} CPU s/particle), peak "
                      f"{run['align_peak_GB']:.2f} GB ({run['memory_kind']});\n"
                      f"  GMM fit (box {run['fit_box']}): set-up {run['fit_setup_s']:.1f} s, "
                      f"{run['fit_step_s']:.2f} s/step, ~{run['fit_s_for_80_steps']:.0f} s for "
                      f"{RUN_FIT_STEPS} steps, peak {run['fit_peak_GB']:.2f} GB", flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = args.out or HERE / "results" / f"gpu_{result['device_kind']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from gmmrefine.io.atomic import write_text_atomic

    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()

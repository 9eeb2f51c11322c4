"""Particles per second of gmmrefine's alignment step with a 7,000-Gaussian GMM.

Two figures per box (96 and 256, target resolution near each box's Nyquist,
default RefineOptions, whatever optimiser they select; batch 16):
  - "refine_particles": gmmrefine.refine_particles.refine_particles end to
    end, as a refinement iteration runs it: images read from an .mrcs on
    disk, FFT'd, CTF-weighted, gathered at the ring pixels, aligned, poses
    composed;
  - "align_kernel": only the batch optimiser refine_particles uses, over
    data already gathered (projection, score, derivatives, steps).
The images are noise: the work per particle does not depend on what they
show (a fixed number of steps, no early stop). One process, the machine's
cores as TensorFlow finds them; the load average is recorded with the rates.

    /work/venv/bin/python bench/bench_refine_throughput.py [--quick]
Writes bench/results/refine_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from gmmrefine.align.refine_particles import _aligner, alignment_grid, refine_particles
from gmmrefine.align.rings import gather_rings, ring_pixels_for_resolution
from gmmrefine.data.images import ParticleImages
from gmmrefine.data.rotations import matrix_to_euler, random_rotations
from gmmrefine.gmm.model import GMM
from gmmrefine.io.atomic import write_text_atomic
from gmmrefine.io.mrc import write_stack
from gmmrefine.io.particles import read_particles
from gmmrefine.io.stack import StackReader
from gmmrefine.pipeline.options import RefineOptions

HERE = Path(__file__).resolve().parent
N_GAUSS, APIX = 7000, 1.3
# Just coarser than Nyquist (2 apix): the finest target a refinement reaches.
RES_OVER_NYQUIST = 1.05


def protein_like_gmm(rng: np.random.Generator, n: int, apix: float) -> GMM:
    """n Gaussians filling a 30 x 24 x 20 A ellipsoid (a ~90 kDa particle), widths ~apix."""
    pts = rng.normal(size=(n, 3))
    pts *= (rng.uniform(size=(n, 1)) ** (1 / 3)) / np.linalg.norm(pts, axis=1, keepdims=True)
    return GMM(pts * [30.0, 24.0, 20.0], rng.uniform(0.5, 1.5, n),
               rng.uniform(0.5, 1.0, n) * apix)


def write_particles_on_disk(folder: Path, n: int, box: int, rng: np.random.Generator) -> Path:
    """A STAR file and .mrcs of n noise images with random poses and CTFs."""
    write_stack(folder / "noise.mrcs", rng.normal(size=(n, box, box)).astype(np.float32), APIX)
    euler = matrix_to_euler(random_rotations(n, rng))
    lines = ["data_optics", "loop_", "_rlnOpticsGroupName", "_rlnOpticsGroup", "_rlnVoltage",
             "_rlnSphericalAberration", "_rlnAmplitudeContrast", "_rlnImagePixelSize",
             "_rlnImageSize", "_rlnImageDimensionality", f"opticsGroup1 1 300 2.7 0.1 {APIX} {box} 2",
             "", "data_particles", "loop_"]
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
            "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup",
            "rlnRandomSubset"]
    lines += [f"_{c}" for c in cols]
    for i in range(n):
        du = rng.uniform(8000, 25000)
        lines.append(f"{i + 1}@noise.mrcs {euler[i, 0]:.4f} {euler[i, 1]:.4f} {euler[i, 2]:.4f} "
                     f"{rng.uniform(-3, 3):.3f} {rng.uniform(-3, 3):.3f} {du:.1f} {du - 300:.1f} "
                     f"{rng.uniform(0, 180):.2f} 1 {1 + i % 2}")
    star = folder / "noise.star"
    star.write_text("\n".join(lines) + "\n")
    return star


def rate_refine_particles(gmm: GMM, star: Path, res_A: float, options: RefineOptions) -> float:
    """Particles/s of refine_particles over the whole set (after a one-batch warm-up)."""
    ps = read_particles(star, root=star.parent)
    with StackReader(ps.root, source=star) as reader:
        warm = ParticleImages(ps.subset(np.arange(options.batch)), reader)
        refine_particles(gmm, warm, res_A, options.alignment())     # traces and compiles the objective
        images = ParticleImages(ps, reader)
        t0 = time.perf_counter()
        refine_particles(gmm, images, res_A, options.alignment())
        return len(ps) / (time.perf_counter() - t0)


def rate_align_kernel(gmm: GMM, box: int, res_A: float, options: RefineOptions, n: int,
                      rng: np.random.Generator) -> tuple[float, int, int]:
    """Particles/s of the batch optimiser alone; also the aligned box and ring pixel count."""
    crop, crop_apix = alignment_grid(box, APIX, res_A)
    pixels = ring_pixels_for_resolution(crop, crop_apix, max(res_A, 2 * crop_apix),
                                        options.low_cut_A)
    # The same optimiser and settings refine_particles picks for these options.
    align = _aligner(gmm, pixels, crop_apix, options.alignment(), shift_scale=1.0)
    spectra = rng.normal(size=(n, crop, crop)) + 1j * rng.normal(size=(n, crop, crop))
    data = gather_rings(spectra, pixels)
    # The CTF's values do not change the work; "frc" takes none.
    ctf = np.ones(data.shape, np.float32) if options.score == "cc" else None
    rotation = random_rotations(n, rng)
    origin = rng.uniform(-3, 3, (n, 2))
    b = options.batch

    def batch(lo: int):
        # The prior is centred on the start poses, as refine_particles centres it.
        sl = slice(lo, lo + b)
        return align(rotation[sl], origin[sl], data[sl], None if ctf is None else ctf[sl],
                     rotation[sl], origin[sl])

    batch(0)     # warm-up: traces and compiles
    t0 = time.perf_counter()
    for lo in range(0, n, b):
        batch(lo)
    return n / (time.perf_counter() - t0), crop, len(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer particles (a smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "refine_throughput.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gmm = protein_like_gmm(rng, N_GAUSS, APIX)
    options = RefineOptions()
    res_A = RES_OVER_NYQUIST * 2 * APIX
    counts = {96: 32 if args.quick else 256, 256: 16 if args.quick else 64}
    result = {"benchmark": "refine_throughput", "n_gaussians": N_GAUSS, "apix": APIX,
              "target_resolution_A": res_A, "options": options.to_dict(),
              "score": options.score, "tensorflow": tf.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                             "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
              "load_average_before": [round(x, 2) for x in os.getloadavg()], "boxes": {}}
    for box, n in counts.items():
        with tempfile.TemporaryDirectory() as tmp:
            star = write_particles_on_disk(Path(tmp), n, box, rng)
            end_to_end = rate_refine_particles(gmm, star, res_A, options)
        kernel, crop, n_pixels = rate_align_kernel(gmm, box, res_A, options, n, rng)
        result["boxes"][str(box)] = {
            "particles": n, "aligned_box": crop, "ring_pixels": n_pixels,
            "particles_per_s": {"refine_particles": round(end_to_end, 2),
                                "align_kernel": round(kernel, 2)}}
        print(f"box {box} (aligned {crop}, {n_pixels} ring pixels, {N_GAUSS} Gaussians, "
              f"score {options.score}): refine_particles {end_to_end:.1f} particles/s, "
              f"align kernel {kernel:.1f} particles/s")
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"load average {result['load_average_before']} -> {result['load_average_after']}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()

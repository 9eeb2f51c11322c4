"""Projection + FRC + pose gradient: brute force vs the reference formulation vs gmmrefine.

One run, one machine, measured interleaved (best of several repeats, so other
load on the machine hits all contenders alike):
  (a) the brute-force direct sum (gmmrefine.project.direct_spectrum),
  (b) the reference formulation (bench/reference_formulation.py),
  (c) gmmrefine's separable kernel (gmmrefine.project.separable_spectrum);
particles/s for value + pose gradient at N = 7,000 Gaussians, box 128 with a
64-pixel Fourier radius, batch 16; then "per particle refined": the
reference's 10 Adam steps (lr 1e-3 on Euler radians and box-fraction shifts)
against gmmrefine's kernel with the fewest Adam steps (in degrees and pixels)
that reach an equal or better mean final FRC from the same start; the
fraction of this machine's float32 matmul rate each kernel reaches; and
particles/s at boxes 96 and 256. Writes bench/results/kernel.json.

    /work/venv/bin/python bench/bench_kernel.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gmmrefine.align import kernel as project  # noqa: E402
from gmmrefine.align.rings import gather_rings, ring_pixels  # noqa: E402
from gmmrefine.data import rotations as geometry
from gmmrefine.fourier.grids import fft2c  # noqa: E402
from gmmrefine.gmm.model import GMM  # noqa: E402
from gmmrefine.io.atomic import write_text_atomic  # noqa: E402
from reference_formulation import Adam, ReferenceFormulation  # noqa: E402

N_GAUSS, BATCH, APIX, LOW_CUT_A = 7000, 16, 1.0, 25.0


def best_time(fn, repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_times_interleaved(fns: dict, repeats: int) -> dict:
    """Shortest wall time of each callable, the callables taking turns.

    Other jobs on the machine come and go; taking turns exposes every
    contender to the same load, so their ratio is fair even when the
    absolute numbers move.
    """
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


def protein_like_gmm(rng: np.random.Generator, n: int) -> GMM:
    """n Gaussians filling a 30 x 24 x 20 A (semi-axes) ellipsoid, widths 0.6-1.2 A."""
    pts = rng.normal(size=(n, 3))
    pts *= (rng.uniform(size=(n, 1)) ** (1 / 3)) / np.linalg.norm(pts, axis=1, keepdims=True)
    return GMM(pts * [30.0, 24.0, 20.0], rng.uniform(0.5, 1.5, n), rng.uniform(0.6, 1.2, n))


class Problem:
    """A batch of noisy particles of a GMM, their true poses and perturbed start poses."""

    def __init__(self, gmm: GMM, box: int, rng: np.random.Generator, snr: float = 0.1):
        self.gmm, self.box, self.radius = gmm, box, box // 2
        self.ring_lo = max(1, math.ceil(box * APIX / LOW_CUT_A))
        self.pixels = ring_pixels(box, self.ring_lo, self.radius)
        self.true_rot = Rotation.random(BATCH, random_state=rng).as_matrix()
        self.true_origin = rng.normal(scale=1.5, size=(BATCH, 2))
        self.start_rot = geometry.perturb_rotations(self.true_rot, 3.0, rng)
        self.start_origin = self.true_origin + rng.normal(scale=0.8 / np.sqrt(2), size=(BATCH, 2))
        self.ref = ReferenceFormulation(gmm.centres_A, gmm.amplitudes, gmm.widths_A, box, APIX,
                                        self.radius, self.ring_lo)
        clean = self._clean_square(self.ref)
        noise = fft2c(rng.normal(size=(BATCH, box, box)))
        sigma = np.sqrt(np.mean(np.abs(clean) ** 2) / snr / np.mean(np.abs(noise) ** 2))
        self.spectra = clean + sigma * noise           # centred (BATCH, box, box), Hermitian noise
        data = gather_rings(self.spectra, self.pixels)
        self.data_re = tf.constant(data.real, tf.float32)
        self.data_im = tf.constant(data.imag, tf.float32)
        square = self.ref.clipped_square(self.spectra)
        self.square_re = tf.constant(square.real, tf.float32)
        self.square_im = tf.constant(square.imag, tf.float32)

    def _clean_square(self, ref: ReferenceFormulation) -> np.ndarray:
        """Noise-free centred spectra at the true poses (the analytic transform)."""
        euler = geometry.matrix_to_euler(self.true_rot)
        out = np.zeros((BATCH, self.box, self.box), complex)
        c, r = self.box // 2, self.radius
        for i in range(BATCH):
            re, im = ref._image(tf.constant(np.radians(euler[i]), tf.float32),
                                tf.constant(self.true_origin[i] / (self.box * APIX), tf.float32))
            out[i, c - r:c + r, c - r:c + r] = (re.numpy() + 1j * im.numpy()).reshape(2 * r, 2 * r)
        return out

    def start_args(self, n: int = BATCH):
        return [tf.constant(x[:n], tf.float32) for x in (self.start_rot, self.start_origin)]

    def angle_error_deg(self, rot: np.ndarray) -> float:
        return float(np.median(geometry.angle_between_deg(rot, self.true_rot)))


def refine_reference(problem: Problem, steps: int):
    """A callable running the reference's recipe on the batch, and its result holder."""
    euler0 = np.radians(geometry.matrix_to_euler(problem.start_rot))
    shift0 = problem.start_origin / (problem.box * APIX)
    out = {}

    def run():
        out["result"] = problem.ref.refine(euler0, shift0, problem.square_re, problem.square_im,
                                           steps=steps, lr=1e-3)

    def summary(seconds: float) -> dict:
        euler, shift, frc0, frc1 = out["result"]
        rot = geometry.euler_to_matrix(*np.degrees(euler).T)
        return {"steps": steps, "lr_rad": 1e-3, "seconds_per_batch": seconds,
                "particles_per_s": BATCH / seconds, "frc_start": float(frc0.mean()),
                "frc_final": float(frc1.mean()),
                "median_angle_error_deg": problem.angle_error_deg(rot)}
    return run, summary


def refine_gmmrefine(problem: Problem, objective, steps: int, lr_deg: float, lr_px: float):
    """A callable running ``steps`` Adam steps (degrees, pixels) with gmmrefine's kernel."""
    rot, origin = problem.start_args()
    out = {}

    def run():
        dtheta, dshift = np.zeros((BATCH, 3), np.float32), np.zeros((BATCH, 2), np.float32)
        adam = Adam([lr_deg, lr_px])
        for _ in range(steps):
            frc, g_theta, g_shift = objective(rot, origin, problem.data_re, problem.data_im,
                                              dtheta, dshift)
            dtheta, dshift = adam.ascend([dtheta, dshift], [g_theta.numpy(), g_shift.numpy()])
        out["moves"] = dtheta, dshift

    def summary(seconds: float) -> dict:
        dtheta, dshift = out["moves"]
        zeros3, zeros2 = np.zeros((BATCH, 3), np.float32), np.zeros((BATCH, 2), np.float32)
        frc0 = objective(rot, origin, problem.data_re, problem.data_im, zeros3, zeros2)[0]
        frc1 = objective(rot, origin, problem.data_re, problem.data_im, dtheta, dshift)[0]
        refined, _ = project.apply_pose_moves(problem.start_rot, problem.start_origin, dtheta,
                                              dshift, APIX)
        return {"steps": steps, "lr_deg": lr_deg, "lr_px": lr_px, "seconds_per_batch": seconds,
                "particles_per_s": BATCH / seconds, "frc_start": float(frc0.numpy().mean()),
                "frc_final": float(frc1.numpy().mean()),
                "median_angle_error_deg": problem.angle_error_deg(refined)}
    return run, summary


def refinement_comparison(problem: Problem, repeats: int, lr_deg: float = 0.5,
                          lr_px: float = 0.25) -> dict:
    """Reference's 10 steps vs the fewest gmmrefine steps reaching its final FRC, timed in turns."""
    objective = project.make_pose_objective(problem.gmm, problem.pixels, APIX)
    ref_run, ref_summary = refine_reference(problem, 10)
    ref_run()
    target = ref_summary(np.nan)["frc_final"]
    for steps in range(1, 11):
        run, summary = refine_gmmrefine(problem, objective, steps, lr_deg, lr_px)
        run()
        if summary(np.nan)["frc_final"] >= target:
            break
    ten_run, ten_summary = refine_gmmrefine(problem, objective, 10, lr_deg, lr_px)
    seconds = best_times_interleaved({"reference": ref_run, "gmmrefine": run,
                                      "gmmrefine_10_steps": ten_run}, repeats)
    out = {"reference": ref_summary(seconds["reference"]),
           "gmmrefine": summary(seconds["gmmrefine"]),
           "gmmrefine_10_steps": ten_summary(seconds["gmmrefine_10_steps"])}
    reached = out["gmmrefine"]["frc_final"] >= target
    out["speedup_per_particle_refined"] = (seconds["reference"] / seconds["gmmrefine"]
                                           if reached else None)
    return out


def kernel_rates(problem: Problem, repeats: int, with_direct: bool) -> dict:
    """particles/s of value + pose gradient for (a), (b) both arithmetics, (c)."""
    gmm, pixels = problem.gmm, problem.pixels
    rot, origin = problem.start_args()
    zeros3, zeros2 = tf.zeros([BATCH, 3]), tf.zeros([BATCH, 2])
    ours = project.make_pose_objective(gmm, pixels, APIX, "separable")
    euler = tf.constant(np.radians(geometry.matrix_to_euler(problem.start_rot)), tf.float32)
    shift = tf.constant(problem.start_origin / (problem.box * APIX), tf.float32)
    complex_ref = ReferenceFormulation(gmm.centres_A, gmm.amplitudes, gmm.widths_A, problem.box,
                                       APIX, problem.radius, problem.ring_lo,
                                       real_arithmetic=False)
    runs = {
        "gmmrefine": lambda: ours(rot, origin, problem.data_re, problem.data_im, zeros3,
                                  zeros2)[0].numpy(),
        "reference_real": lambda: problem.ref.objective(euler, shift, problem.square_re,
                                                        problem.square_im)[0].numpy(),
        "reference_complex": lambda: complex_ref.objective(euler, shift, problem.square_re,
                                                           problem.square_im)[0].numpy(),
    }
    mat = tf.random.normal([2048, 2048])
    matmul = tf.function(lambda x: tf.matmul(x, x))
    runs["matmul_2048"] = lambda: matmul(mat).numpy()     # the machine's rate, same load
    seconds = best_times_interleaved(runs, repeats)
    gflops = 2 * 2048 ** 3 / seconds.pop("matmul_2048") / 1e9
    rates = {name: BATCH / t for name, t in seconds.items()}
    if with_direct:
        # one particle at a time: the direct sum holds N x M terms per particle in memory
        direct = project.make_pose_objective(gmm, pixels, APIX, "direct")
        one = [rot[:1], origin[:1], problem.data_re[:1], problem.data_im[:1], zeros3[:1],
               zeros2[:1]]
        rates["brute_force_direct"] = 1.0 / best_time(lambda: direct(*one)[0].numpy(), 2)
    n_freq = int(max(np.abs(problem.pixels.kx).max(), problem.pixels.ky.max())) + 1
    flops = {"gmmrefine": 3 * 2 * (2 * n_freq) ** 2 * N_GAUSS,      # forward + 2 for the gradient
             "reference": 3 * 4 * 2 * (2 * problem.radius) ** 2 * N_GAUSS}
    best_ref = max(rates["reference_real"], rates["reference_complex"])
    return {"particles_per_s": rates, "matmul_gflops": gflops,
            "speedup_per_evaluation": rates["gmmrefine"] / best_ref,
            "fraction_of_matmul_rate": {
                "gmmrefine": rates["gmmrefine"] * flops["gmmrefine"] / 1e9 / gflops,
                "reference": best_ref * flops["reference"] / 1e9 / gflops},
            "matmul_flop_per_particle": flops,
            "pixels_gmmrefine": len(problem.pixels), "pixels_reference": (2 * problem.radius) ** 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no box 256")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                             / "kernel.json"))
    args = parser.parse_args()
    repeats = 2 if args.quick else 4
    rng = np.random.default_rng(0)
    gmm = protein_like_gmm(rng, N_GAUSS)
    result = {"n_gaussians": N_GAUSS, "batch": BATCH, "apix": APIX, "low_cut_A": LOW_CUT_A,
              "tensorflow": tf.__version__}

    problem = Problem(gmm, 128, rng)
    rates = kernel_rates(problem, repeats, with_direct=True)
    result["box128_radius64"] = rates
    print(f"plain float32 matmul, same run: {rates['matmul_gflops']:.1f} GFLOP/s")
    print("box 128, radius 64, value + pose gradient, particles/s: "
          + ", ".join(f"{k} {v:.2f}" for k, v in rates["particles_per_s"].items()))
    print(f"  per evaluation: {rates['speedup_per_evaluation']:.2f}x the reference's best; "
          f"matmul-rate fraction: gmmrefine {rates['fraction_of_matmul_rate']['gmmrefine']:.2f}, "
          f"reference {rates['fraction_of_matmul_rate']['reference']:.2f}")

    refined = refinement_comparison(problem, repeats)
    result["refinement_box128"] = refined
    for name in ("reference", "gmmrefine", "gmmrefine_10_steps"):
        r = refined[name]
        print(f"refinement from 3 deg / 0.8 px, {name}: {r['steps']} Adam steps, FRC "
              f"{r['frc_start']:.4f} -> {r['frc_final']:.4f}, median error "
              f"{r['median_angle_error_deg']:.2f} deg, {r['particles_per_s']:.2f} particles/s")
    if refined["speedup_per_particle_refined"] is not None:
        print(f"  per particle refined at equal or better FRC: "
              f"{refined['speedup_per_particle_refined']:.2f}x the reference")

    for box in (96,) if args.quick else (96, 256):
        other = kernel_rates(Problem(gmm, box, rng), repeats, with_direct=False)
        result[f"box{box}_radius{box // 2}"] = other
        print(f"box {box}, radius {box // 2}, particles/s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in other["particles_per_s"].items())
              + f" ({other['speedup_per_evaluation']:.2f}x)")

    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

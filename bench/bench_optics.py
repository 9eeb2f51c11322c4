"""RELION's optics model, measured: gmmrefine's reconstructions against relion_reconstruct
--ctf on particles with beam tilt, odd and even Zernike terms and magnification (FSC at
0.5 and 0.9 Nyquist, the optics applied and ignored), merged 1.2 / 1.3 A groups, and a
refinement of such particles with the optics modelled and ignored.

Run: /work/venv-optics/bin/python bench/bench_optics.py [--n 2000] [--skip-refine]
Writes bench/results/optics.json. Data go to bench/.data (not committed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from gmmrefine.data.particles import OpticsGroup
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.io.mrc import read_map
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.io.stack import StackReader
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.pipeline.run import run_refinement
from gmmrefine.reconstruct.backproject import reconstruct_halves
from gmmrefine.reconstruct.fsc import fsc_curve, resolution_at
from gmmrefine.simulate.dataset import simulate_dataset

HERE = Path(__file__).resolve().parent
BOX, APIX = 96, 1.3
# Aberrations of a plausible size for a 300 kV scope after CtfRefine: ~1 mrad of beam tilt,
# trefoil and tetrafoil worth ~1 rad at 3 A, 1-2 % anisotropic magnification.
GROUPS = (
    OpticsGroup("g1", APIX, BOX, 300.0, 2.7, 0.1, beam_tilt_mrad=(1.0, -0.7),
                odd_zernike=(0.0, 0.0, 25.0, 0.0, 0.0, -18.0),
                even_zernike=(0.0, 0.0, 0.0, 0.0, 60.0, 0.0, 0.0, 0.0, -45.0),
                mag_matrix=((1.012, 0.004), (-0.006, 0.991))),
    OpticsGroup("g2", APIX, BOX, 300.0, 2.7, 0.1, beam_tilt_mrad=(-0.8, 1.1),
                odd_zernike=(0.0, 0.0, -20.0, 0.0, 0.0, 22.0),
                even_zernike=(0.0, 0.0, 0.0, 0.0, -40.0, 0.0, 0.0, 0.0, 50.0),
                mag_matrix=((0.993, -0.005), (0.003, 1.009))))
MERGED = (OpticsGroup("g1", 1.2, 100, 300.0, 2.7, 0.1), OpticsGroup("g2", 1.3, 92, 300.0, 2.7, 0.1))


def plain(group: OpticsGroup) -> OpticsGroup:
    return dataclasses.replace(group, beam_tilt_mrad=(0.0, 0.0), odd_zernike=(),
                               even_zernike=(), mag_matrix=((1.0, 0.0), (0.0, 1.0)))


def dataset(folder: Path, **settings) -> Path:
    if not (folder / "truth.json").is_file():
        simulate_dataset(folder, **settings)
    return folder


def relion(folder: Path, star: str, out: str, *args: str) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    if not (folder / out).is_file():
        subprocess.run(["relion_reconstruct", "--i", star, "--o", out, "--ctf", *args],
                       cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - t0, read_map(folder / out)[0]


def at(fsc: np.ndarray, fraction: float) -> float:
    return round(float(fsc[int(fraction * (len(fsc) - 1))]), 4)


def reconstruction_agreement(folder: Path) -> dict:
    """Half maps of ours (optics applied / ignored) against relion_reconstruct's."""
    ps = read_particles(folder / "truth.star")
    out = {}
    t0 = time.perf_counter()
    ours = reconstruct_halves(ps, StackReader(ps.root))
    out["gmmrefine_s"] = round(time.perf_counter() - t0, 1)
    ignored = reconstruct_halves(dataclasses.replace(ps, optics=[plain(g) for g in ps.optics]),
                                 StackReader(ps.root))
    t_relion = 0.0
    for h in (1, 2):
        elapsed, theirs = relion(folder, "truth.star", f"relion_half{h}.mrc", "--subset", str(h))
        t_relion += elapsed
        for name, maps in (("applied", ours), ("ignored", ignored)):
            fsc = fsc_curve(maps[h - 1], theirs)
            out[f"half{h}_optics_{name}"] = {"fsc_0.5_nyquist": at(fsc, 0.5),
                                             "fsc_0.9_nyquist": at(fsc, 0.9),
                                             "fsc_nyquist": at(fsc, 1.0)}
    out["relion_reconstruct_s"] = round(t_relion, 1)
    truth = read_map(folder / "truth_map.mrc")[0]
    box, apix = ps.output_grid()
    out["gold_standard_resolution_A"] = round(resolution_at(fsc_curve(*ours[:2]), box, apix), 2)
    out["truth_fsc_0.9_nyquist"] = {"applied": at(fsc_curve(truth, ours[2]), 0.9),
                                    "ignored": at(fsc_curve(truth, ignored[2]), 0.9)}
    return out


def merged_agreement(folder: Path) -> dict:
    ps = read_particles(folder / "truth.star")
    out = {}
    for name, grid, args in (("first_group_grid", {}, ()),
                             ("apix_1.3_box_92", {"box": 92, "apix": 1.3},
                              ("--angpix", "1.3", "--newbox", "92"))):
        _, theirs = relion(folder, "truth.star", f"relion_{name}.mrc", *args)
        _, _, ours = reconstruct_halves(ps, StackReader(ps.root), **grid)
        fsc = fsc_curve(ours, theirs)
        out[name] = {"fsc_0.5_nyquist": at(fsc, 0.5), "fsc_0.9_nyquist": at(fsc, 0.9)}
    return out


def refinement(folder: Path, iterations: int) -> dict:
    """The same particles refined with the optics modelled and with them stripped."""
    start = read_particles(folder / "particles.star")
    write_particles(dataclasses.replace(start, optics=[plain(g) for g in start.optics],
                                        star_optics=None), folder / "plain.star")
    truth = read_particles(folder / "truth.star")
    bound = json.loads((folder / "truth.json").read_text())["cramer_rao"]
    out = {"start_angle_error_deg_median": round(float(np.median(
        angle_between_deg(start.rotation, truth.rotation))), 3),
        "cramer_rao_rotation_bound_deg_median": round(bound["rotation_bound_deg_median"], 3)}
    for name, star in (("optics_modelled", "particles.star"), ("optics_ignored", "plain.star")):
        run = folder / f"run_{name}"
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        result = run_refinement(folder / star, run, RefineOptions(iterations=iterations),
                                log=lambda s: None)
        refined = read_particles(result.particles_star, root=folder)
        error = angle_between_deg(refined.rotation, truth.rotation)
        out[name] = {"start_resolution_A": round(result.start_resolution_A, 2),
                     "resolution_A": round(result.resolution_A, 2),
                     "angle_error_deg_median": round(float(np.median(error)), 3),
                     "angle_error_over_bound": round(float(np.median(error))
                                                     / bound["rotation_bound_deg_median"], 2),
                     "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--skip-refine", action="store_true")
    parser.add_argument("--data", type=Path, default=HERE / ".data")
    args = parser.parse_args()
    if shutil.which("relion_reconstruct") is None:
        sys.exit("bench_optics: needs relion_reconstruct on PATH")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    common = dict(box=BOX, apix=APIX, crb_sample=100, seed=7, optics_groups=GROUPS)
    result = {"benchmark": "optics", "particles": args.n, "box": BOX, "apix": APIX,
              "groups": [dataclasses.asdict(dataclasses.replace(g, mtf=None)) for g in GROUPS]}
    noise_free = dataset(args.data / f"optics_clean_{args.n}", n=args.n, snr=float("inf"),
                         **common)
    result["noise_free"] = reconstruction_agreement(noise_free)
    noisy = dataset(args.data / f"optics_snr{args.snr}_{args.n}", n=args.n, snr=args.snr,
                    angle_rms_deg=2.0, shift_rms_px=0.5, **common)
    result[f"snr_{args.snr}"] = reconstruction_agreement(noisy)
    merged = dataset(args.data / f"optics_merged_{args.n}", n=args.n, box=100, apix=1.2,
                     snr=float("inf"), crb_sample=0, seed=7, optics_groups=MERGED)
    result["merged_1.2_1.3"] = merged_agreement(merged)
    if not args.skip_refine:
        result["refinement"] = refinement(noisy, args.iterations)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    out = HERE / "results" / "optics.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Cramer-Rao bounds of a simulated set when the alignment sees only rings up to a resolution.

The simulator's bound counts every Fourier pixel up to Nyquist, as if the
reference were perfect. A refinement aligns against a reference it has only
to its current resolution, and gmmrefine's rings stop at the GMM's target
resolution; the information inside those rings bounds what it can reach.
Printed per resolution: the median rotation bound (deg, rms geodesic) and
shift bound (px) over a sample of particles at their true poses.

    /work/venv/bin/python bench/bench_bounds_by_resolution.py \
        bench/.data/refine_4000_96/sim [--res 4.5 5.6 6.6] [--sample 100] \
        [--out bench/results/bounds_by_resolution.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _steps import (
    SimulatedSet,  # bench/ is the script's own directory, first on sys.path
)
from gmmrefine.io.atomic import write_text_atomic
from gmmrefine.simulate.crb import pose_bounds
from gmmrefine.simulate.model import conformation_coords

HERE = Path(__file__).resolve().parent


def bounds_by_resolution(sim: Path, resolutions: list[float | None], sample: int) -> dict:
    """{label: {rotation_bound_deg_median, shift_bound_px_median}}; None: every pixel."""
    data = SimulatedSet(sim)
    box, apix, truth = data.cfg["box"], data.cfg["apix"], data.truth
    picks = data.sample(sample)
    out = {}
    for res in resolutions:
        rot, shift = [], []
        for i in picks:
            r, s = pose_bounds(conformation_coords(data.model, data.hinge_deg[i]), data.amplitude,
                               data.sigma, truth.rotation[i], truth.shift_A[i], data.ctf(i), box,
                               apix, data.noise_sd, lowpass_A=res)
            rot.append(r[0])
            shift.append(s[0])
        label = "nyquist" if res is None else f"{res:g}A"
        out[label] = {"rotation_bound_deg_median": float(np.median(rot)),
                      "shift_bound_px_median": float(np.median(shift))}
        print(f"rings to {label:>8}: {out[label]['rotation_bound_deg_median']:.2f} deg, "
              f"{out[label]['shift_bound_px_median']:.3f} px", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sim", type=Path, help="a simulated set's directory (gmmrefine simulate --out)")
    p.add_argument("--res", type=float, nargs="+", default=[4.5, 5.6, 6.6])
    p.add_argument("--sample", type=int, default=100)
    p.add_argument("--out", type=Path, default=HERE / "results" / "bounds_by_resolution.json")
    args = p.parse_args()
    if not (args.sim / "truth.json").is_file():
        sys.exit(f"bench_bounds_by_resolution: {args.sim}/truth.json not found; "
                 "expected a directory written by gmmrefine simulate")
    result = {"benchmark": "bounds_by_resolution", "sim": str(args.sim),
              "sample": args.sample,
              "bounds": bounds_by_resolution(args.sim, [None] + args.res, args.sample)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

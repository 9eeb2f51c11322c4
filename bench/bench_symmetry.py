"""Symmetric refinement against C1 on simulated symmetric assemblies (C3 and D2).

For each group: simulate a set (`gmmrefine simulate --sym G`), refine it with
`--sym G` and with `--sym C1` (same options otherwise), and reconstruct the
symmetry-expanded refined set with C1 next to the symmetric reconstruction
of the same poses (FSC between them). Reported: start and refined
gold-standard resolutions of both runs, median angle error to the truth of
both, the expansion check, wall times. Cached under bench/.data/sym_G_N/.

    /work/venv/bin/python bench/bench_symmetry.py [--groups C3 D2] [--n 600] [--iter 2]
        [--out bench/results/symmetry.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from _steps import run_step  # bench/ is the script's own directory, first on sys.path
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.io.atomic import write_text_atomic
from gmmrefine.io.mrc import read_map
from gmmrefine.io.particles import read_particles
from gmmrefine.reconstruct.fsc import fsc_curve

HERE = Path(__file__).resolve().parent
GMMREFINE = str(Path(sys.executable).parent / "gmmrefine")



def median_error_deg(star: Path, truth: Path, sym: str) -> float:
    """Median angle to the truth, up to the symmetry (the nearest symmetry mate counts)."""
    from gmmrefine.data.symmetry_groups import symmetry_operators

    refined, true = read_particles(star), read_particles(truth)
    mates = [angle_between_deg(refined.rotation, true.rotation @ r)
             for r in symmetry_operators(sym)]
    return float(np.median(np.min(mates, axis=0)))


def bench_group(sym: str, args) -> dict:
    case = (args.data / f"sym_{sym}_{args.n}").resolve()
    case.mkdir(parents=True, exist_ok=True)
    sim = case / "sim"
    walls = {"simulate": run_step(
        [GMMREFINE, "simulate", "--out", str(sim), "--n", str(args.n), "--box", str(args.box),
         "--apix", str(args.apix), "--snr", str(args.snr), "--sym", sym, "--crb-sample", "0"],
        case / "simulate.log", sim / "truth.json")}
    runs = {}
    for name, group in ((sym, sym), ("C1", "C1")):
        out = case / f"refine_{name}"
        walls[f"refine_{name}"] = run_step(
            [GMMREFINE, "refine", str(sim / "particles.star"), "--out", str(out), "--iter",
             str(args.iter), "--sym", group], case / f"refine_{name}.log", out / "particles.star")
        record = json.loads((out / "run.json").read_text())
        runs[name] = {"start_resolution_A": record["start_resolution_A"],
                      "resolution_A": record["resolution_A"],
                      "median_angle_error_deg": median_error_deg(out / "particles.star",
                                                                 sim / "truth.star", sym),
                      "start_median_angle_error_deg": median_error_deg(
                          sim / "particles.star", sim / "truth.star", sym)}
    # Expansion: the expanded refined set with C1 against the symmetric reconstruction.
    refined = case / f"refine_{sym}" / "particles.star"
    expanded = case / "expanded.star"
    run_step([GMMREFINE, "expand", str(refined), "--sym", sym, "--out", str(expanded),
              "--root", str(sim)], case / "expand.log", expanded)
    recon = {}
    for name, star, group in (("symmetric", refined, sym), ("expanded_c1", expanded, "C1")):
        out = case / f"reconstruct_{name}"
        run_step([GMMREFINE, "reconstruct", str(star), "--out", str(out), "--sym", group,
                  "--root", str(sim)], case / f"reconstruct_{name}.log", out / "map.mrc")
        recon[name] = read_map(out / "map.mrc")[0]
    fsc = fsc_curve(recon["symmetric"], recon["expanded_c1"])
    shells = int(0.8 * args.box // 2)
    return {"group": sym, "copies_per_particle": len(read_particles(expanded))
            // len(read_particles(refined)), "runs": runs,
            "expanded_vs_symmetric_min_fsc_to_0.8_nyquist": float(fsc[1:shells].min()),
            "symmetric_same_or_better_than_c1":
                runs[sym]["resolution_A"] <= runs["C1"]["resolution_A"],
            "wall_s": walls}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", nargs="+", default=["C3", "D2"])
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--box", type=int, default=96)
    p.add_argument("--apix", type=float, default=1.6)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--iter", type=int, default=2)
    p.add_argument("--data", type=Path, default=HERE / ".data")
    p.add_argument("--out", type=Path, default=HERE / "results" / "symmetry.json")
    args = p.parse_args()
    result = {"benchmark": "symmetry",
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average": os.getloadavg()},
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "groups": [bench_group(g, args) for g in args.groups]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

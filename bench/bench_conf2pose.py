"""Conformation to pose on the flexible simulated set, judged as bench_focus judges focused
refinement (beside it: same data, same steps, same figures).

  1. simulate (20 A tip travel by default) and the global refinement, as bench_focus;
  2. `gmmrefine hetero` from the global run (domain mask for the anchors);
  3. the conversion by both methods (kabsch, adam): median angle to the
     domain-ideal poses over the domain's Cramer-Rao bound;
  4. `gmmrefine conf2pose` (kabsch) with --focus-iter focused iterations:
     the same angle after them; truth-FSC 0.5 inside the domain for the global
     map, the map at the converted poses and the final map; gold-standard FSC
     inside the mask, global against final.

    /work/venv-hetero/bin/python bench/bench_conf2pose.py [--focus-iter 3] [--from start]

``--from start`` runs hetero on the simulator's start poses (2 deg / 0.6 px off)
instead of the global run's; the global run is then only the baseline, and
its figures are left out when it has not finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from _steps import run_step
from bench_focus import (
    domain_bounds,
    gold_standard_in_mask,
    truth_resolution,
    write_domain_ideal_poses,
)

HERE = Path(__file__).resolve().parent
GMMREFINE = str(Path(sys.executable).parent / "gmmrefine")


def median_angle(rotation: np.ndarray, ideal) -> float:
    from gmmrefine.data.rotations import angle_between_deg

    return float(np.median(angle_between_deg(rotation, ideal.rotation)))


def ideal_by_rows(ideal_star: Path, ps):
    """The domain-ideal poses in the rows of ``ps`` (matched by image index)."""
    from gmmrefine.io.particles import read_particles

    ideal = read_particles(ideal_star)
    order = np.argsort(ideal.image_index)
    return ideal.subset(order[np.searchsorted(ideal.image_index[order], ps.image_index)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--box", type=int, default=96)
    p.add_argument("--apix", type=float, default=1.3)
    p.add_argument("--snr", type=float, default=0.5)
    p.add_argument("--flex-amplitude-A", type=float, default=20.0)
    p.add_argument("--global-iter", type=int, default=3)
    p.add_argument("--focus-iter", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--from", dest="source", choices=("global", "start"), default="global")
    p.add_argument("--data", type=Path, default=HERE / ".data")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    case = (args.data / f"focus_{args.n}_{args.box}_snr{args.snr:g}_tip{args.flex_amplitude_A:g}"
            ).resolve()
    sim, glob = case / "sim", case / "global"
    if args.source == "global":
        hetero = case / f"hetero_global_e{args.epochs}"
        conf = case / f"conf2pose_f{args.focus_iter}"
        hetero_input = glob
    else:   # bench_hetero.py's run on the start poses
        hetero = case / f"hetero_start_z4_e{args.epochs}_anchors_res8"
        conf = case / f"conf2pose_start_f{args.focus_iter}"
        hetero_input = sim / "particles.star"
    case.mkdir(parents=True, exist_ok=True)
    walls = {"simulate": run_step(
        [GMMREFINE, "simulate", "--out", str(sim), "--n", str(args.n), "--box", str(args.box),
         "--apix", str(args.apix), "--snr", str(args.snr), "--flexible", "--flex-amplitude-A",
         str(args.flex_amplitude_A), "--angle-rms-deg", "2", "--shift-rms-px", "0.6",
         "--crb-sample", "100"], case / "simulate.log", sim / "truth.json")}
    if args.source == "global":
        walls["global"] = run_step(
            [GMMREFINE, "refine", str(sim / "particles.star"), "--out", str(glob), "--iter",
             str(args.global_iter)], case / "global.log",
            glob / f"iter_{args.global_iter:03d}" / "iteration.json")
    mask_file = sim / "domain_mask.mrc"
    walls["hetero"] = run_step(
        [GMMREFINE, "hetero", str(hetero_input), "--out", str(hetero), "--mask", str(mask_file),
         "--epochs", str(args.epochs), "--root", str(sim)], case / f"{hetero.name}.log",
        hetero / "series" / "reconstructed.cxc")
    walls["conf2pose"] = run_step(
        [GMMREFINE, "conf2pose", str(hetero), "--out", str(conf), "--mask", str(mask_file),
         "--focus-iter", str(args.focus_iter), "--root", str(sim)], case / f"{conf.name}.log",
        conf / "particles.star")

    from gmmrefine.io.mrc import read_map
    from gmmrefine.io.particles import read_particles
    from gmmrefine.pipeline.conf2pose_run import convert_particles
    from gmmrefine.pipeline.hetero_options import Conf2PoseOptions

    ideal_star = case / "domain_ideal.star"
    if not ideal_star.exists():
        write_domain_ideal_poses(sim, ideal_star)
    bound = domain_bounds(sim, sample=100)["domain_rotation_bound_deg_median"]
    has_global = (glob / "map.mrc").is_file()
    angles = {}
    for name, star in (("start", sim / "particles.star"), ("global", glob / "particles.star")):
        if star.is_file():
            ps = read_particles(star, root=sim)
            angles[name] = median_angle(ps.rotation, ideal_by_rows(ideal_star, ps))
    for method in ("kabsch", "adam"):
        converted, _ = convert_particles(hetero, Conf2PoseOptions(mask=str(mask_file),
                                                                  method=method,
                                                                  root=str(sim)))
        angles[f"converted_{method}"] = median_angle(
            converted.rotation, ideal_by_rows(ideal_star, converted))
    final = read_particles(conf / "particles.star", root=sim)
    angles["after_focused_iterations"] = median_angle(final.rotation,
                                                      ideal_by_rows(ideal_star, final))

    conformations = json.loads((sim / "truth.json").read_text())["flexible"][
        "conformation_maps_hinge_deg"]
    truth, apix = read_map(sim / min(conformations, key=lambda k: abs(conformations[k])))
    domain, _ = read_map(mask_file)
    maps = {"start": glob / "iter_000" / "map.mrc", "global": glob / "map.mrc",
            "converted_poses": conf / "iter_000" / "map.mrc", "conf2pose_final": conf / "map.mrc"}
    in_domain = {k: truth_resolution(read_map(v)[0], truth, domain, apix) for k, v in
                 maps.items() if v.is_file()}
    gold = {"conf2pose_final": gold_standard_in_mask(conf, domain, apix)}
    if has_global:
        gold["global"] = gold_standard_in_mask(glob, domain, apix)
    result = {
        "benchmark": "conf2pose",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "data": {"particles": args.n, "box": args.box, "apix": args.apix, "snr": args.snr,
                 "tip_travel_A": args.flex_amplitude_A,
                 # the cached global run's own count (with --from start it is not re-run)
                 "global_iterations": len(json.loads((glob / "run.json").read_text())[
                     "iterations"]) - 1 if has_global else None,
                 "focus_iterations": args.focus_iter, "hetero_epochs": args.epochs,
                 "hetero_from": args.source,
                 "domain_rotation_bound_deg_median": bound},
        "median_angle_to_domain_ideal_deg": angles,
        "median_angle_over_domain_bound": {k: v / bound for k, v in angles.items()},
        "truth_fsc05_in_domain_A": in_domain,
        "gold_standard_in_domain_A": gold,
        "wall_s_this_invocation": walls,
    }
    if has_global:
        result["targets"] = {
            "finer_than_global_by_20pct": bool(
                in_domain["conf2pose_final"] <= 0.8 * in_domain["global"]),
            "gold_standard_not_worse": bool(gold["conf2pose_final"] <= gold["global"] * 1.005)}
    from gmmrefine.io.atomic import write_text_atomic

    out = args.out or HERE / "results" / f"conf2pose_{args.source}_f{args.focus_iter}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

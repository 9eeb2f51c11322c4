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

Each map is judged twice against the truth: as it is (against the hinge-0
truth map) and in its own frame. Conversion puts the domain in the frame of
the neutral GMM, which need not be the hinge-0 frame: poses that all differ
from the domain-ideal ones by one rigid motion reconstruct a sharp domain
moved by it, which the fixed truth map counts as blur. The frame is measured
from the poses (the mean of A_ideal^T A over all particles and the least-
squares shift; bench_focus.truth_in_frame_of) and the truth rendered there.
Beside them, the physical limit: the map the domain-ideal poses give with
errors drawn from each particle's own Cramer-Rao covariance of the domain's
pose (bench_focus.resolution_at_bound_covariance).

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
    domain_centre_error_A,
    errors_by_hinge,
    gold_standard_in_mask,
    resolution_at_bound_covariance,
    truth_in_frame_of,
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
    p.add_argument("--outside", default=None,
                   help="conf2pose --outside (default: conf2pose's own default)")
    p.add_argument("--from", dest="source", choices=("global", "start"), default="global")
    p.add_argument("--data", type=Path, default=HERE / ".data")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    case = (args.data / f"focus_{args.n}_{args.box}_snr{args.snr:g}_tip{args.flex_amplitude_A:g}"
            ).resolve()
    sim, glob = case / "sim", case / "global"
    outside_tag = f"_{args.outside}" if args.outside else ""
    if args.source == "global":
        # named by the global run's iterations: a cached global run may be carried on
        hetero = case / f"hetero_global{args.global_iter}_e{args.epochs}"
        conf = case / f"conf2pose_global{args.global_iter}_f{args.focus_iter}{outside_tag}"
        hetero_input = glob
    else:   # bench_hetero.py's run on the start poses
        hetero = case / f"hetero_start_z4_e{args.epochs}_anchors_res8"
        conf = case / f"conf2pose_start_f{args.focus_iter}{outside_tag}"
        hetero_input = sim / "particles.star"
    case.mkdir(parents=True, exist_ok=True)
    walls = {"simulate": run_step(
        [GMMREFINE, "simulate", "--out", str(sim), "--n", str(args.n), "--box", str(args.box),
         "--apix", str(args.apix), "--snr", str(args.snr), "--flexible", "--flex-amplitude-A",
         str(args.flex_amplitude_A), "--angle-rms-deg", "2", "--shift-rms-px", "0.6",
         "--crb-sample", "100"], case / "simulate.log", sim / "truth.json")}
    # The baseline in both cases (cached; a run with fewer iterations is carried on).
    walls["global"] = run_step(
        [GMMREFINE, "refine", str(sim / "particles.star"), "--out", str(glob), "--iter",
         str(args.global_iter)], case / "global.log",
        glob / f"iter_{args.global_iter:03d}" / "iteration.json")
    mask_file = sim / "domain_mask.mrc"
    walls["hetero"] = run_step(
        [GMMREFINE, "hetero", str(hetero_input), "--out", str(hetero), "--mask", str(mask_file),
         "--epochs", str(args.epochs)], case / f"{hetero.name}.log",
        hetero / "series" / "reconstructed.cxc")
    walls["conf2pose"] = run_step(
        [GMMREFINE, "conf2pose", str(hetero), "--out", str(conf), "--mask", str(mask_file),
         "--focus-iter", str(args.focus_iter),
         *(["--outside", args.outside] if args.outside else [])], case / f"{conf.name}.log",
        conf / "particles.star")

    from gmmrefine.gmm.focus import mask_centroid_A
    from gmmrefine.io.mrc import read_map
    from gmmrefine.io.particles import read_particles
    from gmmrefine.pipeline.conf2pose_run import convert_particles
    from gmmrefine.pipeline.hetero_options import Conf2PoseOptions

    ideal_star = case / "domain_ideal.star"
    if not ideal_star.exists():
        write_domain_ideal_poses(sim, ideal_star)
    bound = domain_bounds(sim, sample=100)["domain_rotation_bound_deg_median"]
    conformations = json.loads((sim / "truth.json").read_text())["flexible"][
        "conformation_maps_hinge_deg"]
    truth, apix = read_map(sim / min(conformations, key=lambda k: abs(conformations[k])))
    domain, _ = read_map(mask_file)
    centre = mask_centroid_A(domain, apix)

    # Each stage: its poses and the map reconstructed at them.
    stages = {"start": (sim / "particles.star", glob / "iter_000" / "map.mrc"),
              "global": (glob / "particles.star", glob / "map.mrc"),
              "converted_kabsch": (conf / "converted.star", conf / "iter_000" / "map.mrc"),
              "conf2pose_final": (conf / "particles.star", conf / "map.mrc")}
    angles, centre_errors, as_is, own_frame, frames = {}, {}, {}, {}, {}
    for name, (star, map_file) in stages.items():
        ps = read_particles(star, root=sim)
        ideal = ideal_by_rows(ideal_star, ps)
        angles[name] = median_angle(ps.rotation, ideal)
        centre_errors[name] = float(np.median(domain_centre_error_A(ps.rotation, ps.shift_A,
                                                                    ideal, centre)))
        volume = read_map(map_file)[0]
        framed, angle, move = truth_in_frame_of(sim, ideal, ps)
        frames[name] = {"deg": angle, "A": move}
        as_is[name] = truth_resolution(volume, truth, domain, apix)
        own_frame[name] = truth_resolution(volume, framed, domain, apix)
    adam, _ = convert_particles(hetero, Conf2PoseOptions(mask=str(mask_file), method="adam",
                                                         root=str(sim)))
    angles["converted_adam"] = median_angle(adam.rotation, ideal_by_rows(ideal_star, adam))
    gold = {"conf2pose_final": gold_standard_in_mask(conf, domain, apix),
            "global": gold_standard_in_mask(glob, domain, apix)}
    limit = resolution_at_bound_covariance(sim, ideal_star, truth, domain, apix)
    by_hinge = errors_by_hinge(sim, ideal_star, {k: v[0] for k, v in stages.items()})
    record = json.loads((conf / "conf2pose.json").read_text())["options"]
    result = {
        "benchmark": "conf2pose",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "data": {"particles": args.n, "box": args.box, "apix": args.apix, "snr": args.snr,
                 "tip_travel_A": args.flex_amplitude_A,
                 "global_iterations": len(json.loads((glob / "run.json").read_text())[
                     "iterations"]) - 1,
                 "focus_iterations": args.focus_iter, "hetero_epochs": args.epochs,
                 "hetero_from": args.source, "conf2pose_options": record,
                 "domain_rotation_bound_deg_median": bound},
        "median_angle_to_domain_ideal_deg": angles,
        "median_angle_over_domain_bound": {k: v / bound for k, v in angles.items()},
        "median_domain_centre_error_A": centre_errors,
        "angle_to_domain_ideal_deg_by_hinge_turn": by_hinge,
        "truth_fsc05_in_domain_A": as_is,
        "frame_offset_from_domain_ideal": frames,
        "truth_fsc05_in_domain_own_frame_A": own_frame,
        "truth_fsc05_in_domain_at_k_x_bound_covariance": limit,
        "gold_standard_in_domain_A": gold,
        "wall_s_this_invocation": walls,
        "targets": {
            "finer_than_global_by_20pct": bool(as_is["conf2pose_final"]
                                               <= 0.8 * as_is["global"]),
            "finer_than_global_by_20pct_own_frame": bool(own_frame["conf2pose_final"]
                                                         <= 0.8 * own_frame["global"]),
            "gold_standard_not_worse": bool(gold["conf2pose_final"] <= gold["global"] * 1.005)},
    }
    from gmmrefine.io.atomic import write_text_atomic

    out = args.out or HERE / "results" / f"{conf.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

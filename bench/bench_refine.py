"""gmmrefine's gold-standard refinement against the truth, the Cramer-Rao bound
and RELION's own local refinement, side by side.

One simulated rigid set (the simulator's ~90 kDa model; default 4,000
particles, box 96, 1.3 A/px, SNR 0.05, start poses 3 deg / 0.8 px rms off):
  1. `gmmrefine refine` with default options: median angle / shift error to
     the true poses, start vs refined, also over the median Cramer-Rao bound;
     gold-standard resolution at the start, refined and true poses, and the
     issue's targets (angle <= 1 deg, shift <= 0.5 px, resolution within 15%
     of the true-pose one) as pass / fail, flagged when a target lies below
     the bound;
  2. relion_reconstruct of each pose set (start, gmmrefine, RELION, truth),
     halves by rlnRandomSubset, FSC by gmmrefine.fsc: one reconstructor judges
     every pose set, so the gain is real to RELION too;
  3. relion_refine_mpi --auto_refine with local searches (--sigma_ang) from the
     same start poses and the same half split, against the start-pose map
     low-passed to --ini-high: its resolution, errors and wall time.

Every step's output is cached under bench/.data/refine_N_BOX/ (not committed)
and reused on the next run; delete a step's folder to redo it. Heavy steps
run one at a time.

    /work/venv/bin/python bench/bench_refine.py [--n 4000 --box 96 --iter 5]
        [--no-relion-refine] [--out bench/results/refine.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import starfile
from gmmrefine.data.rotations import angle_between_deg, euler_to_matrix
from gmmrefine.fourier.filters import lowpass
from gmmrefine.io.atomic import write_text_atomic
from gmmrefine.io.mrc import read_map, write_map
from gmmrefine.reconstruct.fsc import fsc_curve, resolution_at

HERE = Path(__file__).resolve().parent
GMMREFINE = str(Path(sys.executable).parent / "gmmrefine")
TARGET_ANGLE_DEG, TARGET_SHIFT_PX, TARGET_RES_FRACTION = 1.0, 0.5, 0.15


# --- running the steps (each cached) -----------------------------------------------------
def run_timed(cmd: list[str], cwd: Path, log: Path) -> float:
    """Run ``cmd`` in ``cwd`` with its output in ``log``; wall seconds. Fails loudly."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"bench_refine: {' '.join(cmd)} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - t0


def cached_seconds(marker: Path, step) -> float:
    """Wall seconds of ``step()``, run only when ``marker`` (a JSON with wall_s) is absent."""
    if marker.is_file():
        return json.loads(marker.read_text())["wall_s"]
    seconds = step()
    write_text_atomic(marker, json.dumps({"wall_s": seconds}) + "\n")
    return seconds


def simulate(case: Path, args) -> Path:
    sim = case / "sim"
    if not (sim / "truth.json").is_file():
        case.mkdir(parents=True, exist_ok=True)
        run_timed([GMMREFINE, "simulate", "--out", str(sim), "--n", str(args.n), "--box",
                   str(args.box), "--apix", str(args.apix), "--snr", str(args.snr),
                   "--angle-rms-deg", str(args.angle_rms_deg), "--shift-rms-px",
                   str(args.shift_rms_px), "--seed", str(args.seed)], case, case / "simulate.log")
    return sim


def gmmrefine_refine(case: Path, sim: Path, iterations: int) -> tuple[Path, float]:
    out = case / "gmm"
    seconds = cached_seconds(case / "gmm_wall.json", lambda: run_timed(
        [GMMREFINE, "refine", str(sim / "particles.star"), "--out", str(out), "--iter",
         str(iterations)], case, case / "gmm.log"))
    return out / "particles.star", seconds


def relion_reconstruct_halves(star: Path, sim: Path, out: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Both half maps by relion_reconstruct --ctf --subset 1 / 2 (images resolve in ``sim``)."""
    out.mkdir(parents=True, exist_ok=True)

    def step() -> float:
        # relion_reconstruct 3.1 has no thread option: the two halves run side by side.
        t0 = time.perf_counter()
        jobs = [subprocess.Popen(["relion_reconstruct", "--i", str(star.resolve()), "--o",
                                  str((out / f"half{h}.mrc").resolve()), "--ctf", "--subset",
                                  str(h)], cwd=sim, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE) for h in (1, 2)]
        for job in jobs:
            if job.wait() != 0:
                sys.exit(f"bench_refine: relion_reconstruct of {star} failed: "
                         f"{job.stderr.read().decode()[-300:]}")
        return time.perf_counter() - t0

    seconds = cached_seconds(out / "wall.json", step)
    return read_map(out / "half1.mrc")[0], read_map(out / "half2.mrc")[0], seconds


def particle_diameter_A(sim: Path, box: int, apix: float) -> float:
    """RELION's mask diameter: the model's largest extent from the centre, plus 10 A, in the box."""
    from gmmrefine.simulate.pdb import read_pdb

    radius = float(np.linalg.norm(read_pdb(sim / "model.pdb").coords_A, axis=1).max())
    return min(2 * radius + 10.0, 0.95 * box * apix)


def relion_name(args) -> str:
    """The name of RELION's run (directory, row): one per start low-pass, so a run with
    RELION's reference filtered to the start resolution sits beside the 15 A one."""
    return "relion_refine" if args.ini_high == 15.0 else f"relion_refine_ini{args.ini_high:g}"


def relion_refine(case: Path, sim: Path, args) -> tuple[Path, float]:
    """relion_refine_mpi local auto-refine from the start poses; returns its run dir and time."""
    out = case / relion_name(args)
    out.mkdir(parents=True, exist_ok=True)
    # RELION's own reconstruction at the start poses: a reference on its greyscale.
    h1, h2, _ = relion_reconstruct_halves(sim / "particles.star", sim,
                                          case / "relion_reconstruct_start")
    write_map(out / "ref.mrc", lowpass(0.5 * (h1 + h2), args.apix, args.ini_high), args.apix)
    # rlnRandomSubset is in particles.star, and RELION keeps an existing split
    # with --split_random_halves: both programs refine the same two halves.
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "3", "relion_refine_mpi",
           "--auto_refine", "--split_random_halves", "--i", "particles.star",
           "--ref", str((out / "ref.mrc").resolve()), "--ini_high", str(args.ini_high),
           "--o", str((out / "run").resolve()), "--ctf", "--particle_diameter",
           f"{particle_diameter_A(sim, args.box, args.apix):.0f}", "--flatten_solvent",
           "--zero_mask", "--oversampling", "1", "--healpix_order", "4",
           "--auto_local_healpix_order", "4", "--offset_range", "3", "--offset_step", "1",
           "--sigma_ang", str(args.sigma_ang), "--pad", "2", "--j", "1", "--sym", "C1",
           "--dont_combine_weights_via_disc", "--pool", "30"]
    if args.relion_iter_max:
        cmd += ["--auto_iter_max", str(args.relion_iter_max)]
    marker = case / f"{relion_name(args)}_wall.json"
    if not marker.is_file():
        seconds, stopped = run_with_timeout(cmd, sim, case / f"{relion_name(args)}.log",
                                            60 * args.relion_timeout_min)
        write_text_atomic(marker, json.dumps({"wall_s": seconds, "stopped_at_timeout": stopped}))
    return out, json.loads(marker.read_text())["wall_s"]


def run_with_timeout(cmd: list[str], cwd: Path, log: Path, timeout_s: float
                     ) -> tuple[float, bool]:
    """Run ``cmd``; past ``timeout_s`` (0: never) stop its process group. (seconds, stopped)."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        job = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
        try:
            code = job.wait(timeout=timeout_s or None)
        except subprocess.TimeoutExpired:
            # mpirun's ranks share its session: stop them all, then judge the
            # last iteration RELION finished (relion_outputs).
            os.killpg(job.pid, signal.SIGTERM)
            job.wait()
            return time.perf_counter() - t0, True
    if code != 0:
        sys.exit(f"bench_refine: {' '.join(cmd)} failed (exit {code}); see {log}")
    return time.perf_counter() - t0, False


def gmmrefine_reconstruct(star: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    if not (out / "half2.mrc").is_file():
        run_timed([GMMREFINE, "reconstruct", str(star), "--out", str(out), "--root",
                   str(star.parent)], out.parent, out.parent / f"{out.name}.log")
    return read_map(out / "half1.mrc")[0], read_map(out / "half2.mrc")[0]


# --- figures -----------------------------------------------------------------------------
def read_poses(star: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Image name (index@basename) -> (RELION matrix A, origin in A), for matching by name."""
    table = starfile.read(star, always_dict=True)
    df = table.get("particles", next(t for t in table.values() if "rlnImageName" in t))
    names = [f"{int(s.split('@')[0])}@{Path(s.split('@')[1]).name}" for s in df["rlnImageName"]]
    a = euler_to_matrix(df["rlnAngleRot"].to_numpy(float), df["rlnAngleTilt"].to_numpy(float),
                        df["rlnAnglePsi"].to_numpy(float))
    o = df[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(float)
    return {n: (a[i], o[i]) for i, n in enumerate(names)}


def pose_errors(star: Path, truth: dict, apix: float) -> dict:
    """Median (and p90) angle / shift error of ``star``'s poses against ``truth``."""
    poses = read_poses(star)
    names = [n for n in truth if n in poses]
    if len(names) != len(truth):
        sys.exit(f"bench_refine: {star} holds {len(names)} of the {len(truth)} true particles")
    angle = angle_between_deg(np.array([poses[n][0] for n in names]),
                              np.array([truth[n][0] for n in names]))
    shift = np.linalg.norm(np.array([poses[n][1] for n in names])
                           - np.array([truth[n][1] for n in names]), axis=1) / apix
    return {"angle_error_deg_median": float(np.median(angle)),
            "angle_error_deg_p90": float(np.percentile(angle, 90)),
            "shift_error_px_median": float(np.median(shift)),
            "shift_error_px_p90": float(np.percentile(shift, 90))}


def errors_per_iteration(run_dir: Path, start_star: Path, truth: dict, apix: float) -> list[dict]:
    """Median errors to the truth after each gmmrefine iteration (iter_NNN/state.npz,
    in the order of the input STAR): shows whether the poses converge or drift."""
    names = list(read_poses(start_star))
    true_a = np.array([truth[n][0] for n in names])
    true_o = np.array([truth[n][1] for n in names])
    out = []
    for it_dir in sorted(run_dir.glob("iter_[0-9][0-9][0-9]")):
        poses = np.load(it_dir / "state.npz")
        angle = angle_between_deg(poses["rotation"], true_a)
        shift = np.linalg.norm(poses["shift_A"] - true_o, axis=1) / apix
        out.append({"iteration": int(it_dir.name[5:]),
                    "angle_error_deg_median": round(float(np.median(angle)), 3),
                    "shift_error_px_median": round(float(np.median(shift)), 3)})
    return out


def resolution(h1: np.ndarray, h2: np.ndarray, apix: float) -> float:
    return float(resolution_at(fsc_curve(h1, h2), h1.shape[0], apix, 0.143))


def relion_outputs(run: Path) -> dict[str, Path]:
    """RELION's final files, or its last iteration's when --auto_iter_max stopped it first."""
    final = {"data": run / "run_data.star", "model": run / "run_model.star",
             "half1": run / "run_half1_class001_unfil.mrc",
             "half2": run / "run_half2_class001_unfil.mrc"}
    if all(p.is_file() for p in final.values()):
        return final
    last = sorted(run.glob("run_it*_data.star"))[-1].name[:9]
    return {"data": run / f"{last}_data.star", "model": run / f"{last}_half1_model.star",
            "half1": run / f"{last}_half1_class001.mrc", "half2": run / f"{last}_half2_class001.mrc"}


def relion_figures(run: Path, apix: float) -> dict:
    """RELION's own final resolution and the FSC of its unfiltered half maps."""
    files = relion_outputs(run)
    model = starfile.read(files["model"], always_dict=True)["model_general"]
    h1, _ = read_map(files["half1"])
    h2, _ = read_map(files["half2"])
    iterations = sorted(run.glob("run_it*_optimiser.star"))
    return {"rlnCurrentResolution_A": float(model["rlnCurrentResolution"]),
            "resolution_half_maps_A": resolution(h1, h2, apix),
            "converged": files["data"].name == "run_data.star",
            "iterations": int(iterations[-1].name[6:9]) if iterations else None}


def targets(refined: dict, res_refined: float, res_truth: float, crb: dict) -> dict:
    """The issue's targets as pass / fail, each flagged when it lies below the bound."""
    angle_bound, shift_bound = crb["rotation_bound_deg_median"], crb["shift_bound_px_median"]
    return {
        "angle": {"target_deg": TARGET_ANGLE_DEG, "value": refined["angle_error_deg_median"],
                  "pass": refined["angle_error_deg_median"] <= TARGET_ANGLE_DEG,
                  "target_below_crb": TARGET_ANGLE_DEG < angle_bound, "crb_deg": angle_bound},
        "shift": {"target_px": TARGET_SHIFT_PX, "value": refined["shift_error_px_median"],
                  "pass": refined["shift_error_px_median"] <= TARGET_SHIFT_PX,
                  "target_below_crb": TARGET_SHIFT_PX < shift_bound, "crb_px": shift_bound},
        "resolution": {"target_A": (1 + TARGET_RES_FRACTION) * res_truth, "value": res_refined,
                       "pass": res_refined <= (1 + TARGET_RES_FRACTION) * res_truth}}


def print_report(result: dict) -> None:
    rows, crb = result["pose_sets"], result["cramer_rao"]
    print(f"\n{result['particles']} particles, box {result['box']}, {result['apix']} A/px, "
          f"SNR {result['snr']}; Cramer-Rao median: {crb['rotation_bound_deg_median']:.2f} deg "
          f"(per axis {crb['rotation_bound_per_axis_deg_median']:.2f}), "
          f"{crb['shift_bound_px_median']:.2f} px")
    head = (f"{'poses':<22}{'angle deg':>10}{'/CRB':>6}{'shift px':>10}{'/CRB':>6}"
            f"{'own FSC A':>11}{'relion_rec A':>13}{'wall s':>9}")
    print(head + "\n" + "-" * len(head))
    for name, r in rows.items():
        own = r.get("resolution_A")
        wall = r.get("wall_s")
        print(f"{name:<22}{r['angle_error_deg_median']:>10.2f}{r['angle_over_crb']:>6.2f}"
              f"{r['shift_error_px_median']:>10.2f}{r['shift_over_crb']:>6.2f}"
              f"{own if own is None else f'{own:.2f}':>11}"
              f"{r['resolution_relion_reconstruct_A']:>13.2f}"
              f"{'' if wall is None else f'{wall:.0f}':>9}")
    print("(own FSC: gmmrefine reconstruct for start / truth, each program's own half maps "
          "otherwise; relion_rec: relion_reconstruct halves of every pose set)")
    for relion in (r for name, r in rows.items() if name.startswith("relion_refine")):
        print(f"RELION: {relion['iterations']} iterations, "
              f"{'converged' if relion['converged'] else 'NOT converged (last iteration shown)'}, "
              f"rlnCurrentResolution {relion['rlnCurrentResolution_A']:.2f} A")
    for name, t in result["targets"].items():
        below = " (target lies below the Cramer-Rao bound)" if t.get("target_below_crb") else ""
        target = next(v for k, v in t.items() if k.startswith("target_") and k != "target_below_crb")
        print(f"target {name}: {t['value']:.2f} vs {target:.2f} -> "
              f"{'PASS' if t['pass'] else 'FAIL'}{below}")


# --- main --------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000)
    p.add_argument("--box", type=int, default=96)
    p.add_argument("--apix", type=float, default=1.3)
    p.add_argument("--snr", type=float, default=0.05)
    p.add_argument("--angle-rms-deg", type=float, default=3.0)
    p.add_argument("--shift-rms-px", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iter", type=int, default=5, help="gmmrefine iterations")
    p.add_argument("--ini-high", type=float, default=15.0, help="RELION's start low-pass, A")
    p.add_argument("--sigma-ang", type=float, default=2.0, help="RELION's local search sd, deg")
    p.add_argument("--relion-iter-max", type=int, default=0,
                   help="stop RELION's auto-refine at this iteration (0: at convergence)")
    p.add_argument("--relion-timeout-min", type=float, default=0,
                   help="stop RELION after this long and report its last iteration (0: never)")
    p.add_argument("--no-relion-refine", action="store_true")
    p.add_argument("--note", default="", help="free text kept in the JSON (e.g. machine load)")
    p.add_argument("--data", type=Path, default=HERE / ".data")
    p.add_argument("--out", type=Path, default=HERE / "results" / "refine.json")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    needed = ["relion_reconstruct"] + ([] if args.no_relion_refine else ["relion_refine_mpi", "mpirun"])
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        sys.exit(f"bench_refine: needs {', '.join(missing)} on PATH (or --no-relion-refine)")
    case = args.data / (f"refine_{args.n}_{args.box}" + (f"_seed{args.seed}" if args.seed else ""))
    sim = simulate(case, args)
    truth_json = json.loads((sim / "truth.json").read_text())
    crb = truth_json["cramer_rao"]
    truth = read_poses(sim / "truth.star")
    apix = args.apix

    stars = {"start": sim / "particles.star"}
    walls: dict[str, float] = {}
    own_res: dict[str, float] = {}
    extra: dict[str, dict] = {}
    for name, star in (("start", sim / "particles.star"), ("truth", sim / "truth.star")):
        own_res[name] = resolution(*gmmrefine_reconstruct(star, case / f"recon_{name}"), apix)
    stars["gmmrefine"], walls["gmmrefine"] = gmmrefine_refine(case, sim, args.iter)
    run_record = json.loads((case / "gmm" / "run.json").read_text())
    iterations = [s for s in run_record.get("iterations", []) if s.get("iteration", 0) >= 1]
    extra["gmmrefine"] = {"seconds_per_iteration": [round(s["seconds"], 1) for s in iterations],
                          "resolution_per_iteration_A": [round(s["resolution_A"], 2)
                                                         for s in iterations],
                          "errors_per_iteration": errors_per_iteration(
                              case / "gmm", sim / "particles.star", truth, apix)}
    h1, h2 = read_map(case / "gmm" / "half1.mrc")[0], read_map(case / "gmm" / "half2.mrc")[0]
    own_res["gmmrefine"] = resolution(h1, h2, apix)
    if not args.no_relion_refine:
        name = relion_name(args)
        run_dir, walls[name] = relion_refine(case, sim, args)
        stars[name] = relion_outputs(run_dir)["data"]
        extra[name] = relion_figures(run_dir, apix)
        extra[name]["stopped_at_timeout"] = json.loads(
            (case / f"{name}_wall.json").read_text()).get("stopped_at_timeout", False)
        own_res[name] = extra[name]["resolution_half_maps_A"]
    stars["truth"] = sim / "truth.star"

    rows = {}
    for name, star in stars.items():
        r1, r2, seconds = relion_reconstruct_halves(star, sim, case / f"relion_reconstruct_{name}")
        row = pose_errors(star, truth, apix)
        row["angle_over_crb"] = row["angle_error_deg_median"] / crb["rotation_bound_deg_median"]
        row["shift_over_crb"] = row["shift_error_px_median"] / crb["shift_bound_px_median"]
        row["resolution_A"] = own_res.get(name)
        row["resolution_relion_reconstruct_A"] = resolution(r1, r2, apix)
        row["wall_s"] = walls.get(name)
        row.update(extra.get(name, {}))
        rows[name] = row

    result = {
        "particles": args.n, "box": args.box, "apix": apix,
        "snr": args.snr, "start_rms": {"angle_deg": args.angle_rms_deg,
                                       "shift_px": args.shift_rms_px},
        "gmmrefine_iterations": args.iter, "gmmrefine_options": run_record.get("options"),
        "cramer_rao": crb,
        "snr_realised": truth_json.get("snr_realised"), "pose_sets": rows,
        "targets": targets(rows["gmmrefine"], own_res["gmmrefine"], own_res["truth"], crb),
        "relion_refine_options": None if args.no_relion_refine else {
            "ini_high_A": args.ini_high, "sigma_ang_deg": args.sigma_ang, "healpix_order": 4,
            "offset_range_px": 3, "offset_step_px": 1, "mpi_ranks": 3, "threads": 1,
            "auto_iter_max": args.relion_iter_max or None,
            "timeout_min": args.relion_timeout_min or None},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "note": args.note,
        "data": str(case.relative_to(HERE.parent)) if case.is_relative_to(HERE.parent) else str(case),
    }
    # One file, one entry per data set: a smaller run with RELION beside the full one.
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(args.out.read_text()).get("runs", {}) if args.out.is_file() else {}
    runs[case.name] = result
    write_text_atomic(args.out, json.dumps({"benchmark": "refine", "runs": runs}, indent=2) + "\n")
    print_report(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

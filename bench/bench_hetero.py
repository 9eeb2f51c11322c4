"""Heterogeneity per half set against the simulator's truth, side by side with cryoDRGN.

On the flexible simulated set (a domain turning about a hinge by a known
angle per particle; bench_focus's 20 A-tip set by default):
  1. `gmmrefine hetero` at the given poses (start: the simulator's
     particles.star, 2 deg / 0.6 px off; truth; or a global run's);
  2. per half: Spearman rank correlation between the first principal
     component of the latents and the true hinge turn, and between the turn of
     the decoded domain (weighted Kabsch of its Gaussians onto the neutral
     GMM's, signed along the turns' main axis) and the true turn;
  3. cryoDRGN (`cryodrgn train_vae`, 4.x, CPU PyTorch, in its own venv) on the
     same particles and poses (its own parse_pose_star / parse_ctf_star), the
     same correlation for its latents' PC1 on each half's particles;
  4. wall times of both on the same machine.

    /work/venv-hetero/bin/python bench/bench_hetero.py [--poses start|truth|global]
        [--cryodrgn /work/venv-cryodrgn/bin/cryodrgn] [--no-cryodrgn]

Steps are cached under bench/.data/focus_N_BOX_snrS_tipT/ (shared with
bench_focus.py); results in bench/results/hetero_*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from _steps import run_step  # bench/ is the script's own directory, first on sys.path
from scipy.stats import spearmanr

HERE = Path(__file__).resolve().parent
GMMREFINE = str(Path(sys.executable).parent / "gmmrefine")


def hinge_by_row(sim: Path, star: Path) -> np.ndarray:
    """True hinge turn (deg) of each row of ``star`` (matched by image index)."""
    from gmmrefine.io.particles import read_particles

    ps = read_particles(star, root=sim)
    return np.load(sim / "truth_conformation.npy")[ps.image_index], ps.half_set


def _csv_column(path: Path, name: str) -> int:
    """Index of column ``name`` in a CSV's header row."""
    return path.read_text().splitlines()[0].split(",").index(name)


def pc1(latent: np.ndarray) -> np.ndarray:
    centred = latent - latent.mean(axis=0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][0]


def rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b)[0])


def linear_readout_rho(latent: np.ndarray, hinge: np.ndarray, seed: int = 0) -> float:
    """Spearman of the true turn against its best linear read-out from the whole latent,
    2-fold cross-validated (each half of the rows predicted by a least-squares fit on the
    other): how much of the turn the latent holds, wherever in it, not only along PC1."""
    rows = np.random.default_rng(seed).permutation(len(hinge))
    folds = np.array_split(rows, 2)
    design = np.column_stack([latent, np.ones(len(hinge))])
    predicted = np.zeros(len(hinge))
    for test, train in ((folds[0], folds[1]), (folds[1], folds[0])):
        coef = np.linalg.lstsq(design[train], hinge[train], rcond=None)[0]
        predicted[test] = design[test] @ coef
    return rho(predicted, hinge)


def run_log_span_s(run_log: Path) -> float:
    """Seconds from the first to the last line of a run.log (the run's wall time, also when
    this invocation found it cached)."""
    from datetime import datetime

    lines = [ln for ln in run_log.read_text().splitlines() if ln[:4].isdigit()]
    stamp = [datetime.strptime(ln[:19], "%Y-%m-%d %H:%M:%S") for ln in (lines[0], lines[-1])]
    return (stamp[1] - stamp[0]).total_seconds()


def decoded_turns(hetero: Path, mask: np.ndarray, apix: float, halves: np.ndarray) -> np.ndarray:
    """Signed turn (deg) of each particle's decoded domain relative to its half's neutral GMM."""
    from gmmrefine.gmm.focus import mask_values_at
    from gmmrefine.hetero.conf2pose import kabsch
    from gmmrefine.hetero.networks import predict
    from gmmrefine.pipeline.hetero_run import load_half
    from scipy.spatial.transform import Rotation

    out = np.zeros(len(halves))
    for h in (1, 2):
        model = load_half(hetero, h)
        w = mask_values_at(mask, model.gmm.centres_A, apix)
        keep = w >= 0.05
        conf = predict(model.decoder, model.latent, 256)[:, keep].astype(float)
        rotation, _ = kabsch(conf, model.gmm.centres_A[keep], w[keep])
        rotvec = Rotation.from_matrix(rotation).as_rotvec(degrees=True)
        axis = np.linalg.svd(rotvec, full_matrices=False)[2][0]
        out[halves == h] = rotvec @ axis
    return out


def epoch_seconds(train_log: Path) -> list[float]:
    """Seconds of each cryoDRGN epoch, from its log's "Finished in H:MM:SS" lines (all runs,
    a run resumed from a checkpoint included)."""
    out = []
    for line in train_log.read_text().splitlines() if train_log.is_file() else []:
        if "=====> Epoch" in line and "Finished in" in line:
            h, m, s = line.rsplit("Finished in", 1)[1].strip().split(":")
            out.append(3600 * int(h) + 60 * int(m) + float(s))
    return out


def last_checkpoint(train: Path, prefix: str) -> tuple[int, Path | None]:
    """The highest epoch K with ``train/{prefix}.K.pkl`` (cryoDRGN 4.x counts epochs from 1)."""
    found = [(int(f.name.split(".")[1]), f) for f in train.glob(f"{prefix}.*.pkl")
             if f.name.split(".")[1].isdigit()]
    return max(found) if found else (0, None)


def run_cryodrgn(exe: str, sim: Path, star: Path, case: Path, args) -> dict:
    """cryoDRGN's train_vae on the same particles and poses: its latents and wall time.

    A stopped training resumes from its last checkpoint (train_vae --load); with
    ``--cryodrgn-cached`` nothing is trained and the last checkpoint's latents are read.
    """
    box, apix = args.cryodrgn_box or args.box, args.apix * args.box / (args.cryodrgn_box or args.box)
    work = case / f"cryodrgn_{args.poses}_z{args.latent}_e{args.cryodrgn_epochs}_D{box}{args.tag}"
    work.mkdir(parents=True, exist_ok=True)
    walls = {}
    images = str(star)
    if box != args.box:
        # cryoDRGN's own advice: train on Fourier-downsampled particles first.
        walls["downsample"] = run_step([exe, "downsample", str(sim / "particles.mrcs"), "-D",
                                        str(box), "-o", str(work / "particles.mrcs")],
                                       work / "downsample.log", work / "particles.mrcs")
        images = str(work / "particles.mrcs")
    walls["parse"] = run_step([exe, "parse_pose_star", str(star), "-o", str(work / "pose.pkl"),
                               "-D", str(box), "--Apix", str(apix)], work / "parse.log",
                              work / "pose.pkl")
    walls["parse"] += run_step([exe, "parse_ctf_star", str(star), "-o", str(work / "ctf.pkl"),
                                "-D", str(box), "--Apix", str(apix)], work / "parse.log",
                               work / "ctf.pkl")
    train = work / "train"
    done, weights = last_checkpoint(train, "weights")
    if not args.cryodrgn_cached and done < args.cryodrgn_epochs:
        resume = ["--load", str(weights)] if weights is not None else []
        walls["train_vae"] = run_step(
            [exe, "train_vae", images, "--datadir", str(sim), "--poses", str(work / "pose.pkl"),
             "--ctf", str(work / "ctf.pkl"), "--zdim", str(args.latent), "-n",
             str(args.cryodrgn_epochs), "-o", str(train), "--enc-dim", str(args.cryodrgn_dim),
             "--dec-dim", str(args.cryodrgn_dim), "--no-analysis", "--max-threads", "2",
             *resume], work / "train.log", train / f"z.{args.cryodrgn_epochs}.pkl")
    epochs, z_file = last_checkpoint(train, "z")
    if z_file is None:
        raise SystemExit(f"bench_hetero.py: no cryoDRGN latents in {train}")
    with open(z_file, "rb") as f:
        z = pickle.load(f)
    seconds = epoch_seconds(work / "train.log")
    by_epoch = {}
    for k in range(1, epochs + 1):
        if (train / f"z.{k}.pkl").is_file():
            with open(train / f"z.{k}.pkl", "rb") as f:
                by_epoch[k] = np.asarray(pickle.load(f))
    return {"latent": np.asarray(z), "latent_by_epoch": by_epoch, "wall_s": walls,
            "epochs_trained": epochs,
            "latents_file": z_file.name, "epoch_s": seconds,
            "training_s": float(sum(seconds[:epochs])), "settings": {
                "zdim": args.latent, "epochs_asked": args.cryodrgn_epochs, "box": box,
                "apix": apix, "enc_dim": args.cryodrgn_dim, "dec_dim": args.cryodrgn_dim,
                "layers": 3}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--box", type=int, default=96)
    p.add_argument("--apix", type=float, default=1.3)
    p.add_argument("--snr", type=float, default=0.5)
    p.add_argument("--flex-amplitude-A", type=float, default=20.0)
    p.add_argument("--poses", choices=("start", "truth", "global"), default="start")
    p.add_argument("--latent", type=int, default=4)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--encoder-input", choices=("anchors", "gaussians"), default="anchors")
    p.add_argument("--res", type=float, default=8.0)
    p.add_argument("--cryodrgn", default="/work/venv-cryodrgn/bin/cryodrgn")
    p.add_argument("--cryodrgn-epochs", type=int, default=20)
    p.add_argument("--cryodrgn-dim", type=int, default=256)
    p.add_argument("--cryodrgn-box", type=int, default=48,
                   help="box cryoDRGN trains on (Fourier-downsampled; 0: the particles' own)")
    p.add_argument("--no-cryodrgn", action="store_true")
    p.add_argument("--cryodrgn-cached", action="store_true",
                   help="train nothing: read the last cached cryoDRGN checkpoint's latents")
    p.add_argument("--tag", default="",
                   help="suffix of this invocation's run directories and JSON: fresh runs of "
                        "both programs (timings on one and the same machine state) beside "
                        "cached ones")
    p.add_argument("--data", type=Path, default=HERE / ".data")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    case = (args.data / f"focus_{args.n}_{args.box}_snr{args.snr:g}_tip{args.flex_amplitude_A:g}"
            ).resolve()
    sim = case / "sim"
    case.mkdir(parents=True, exist_ok=True)
    walls = {"simulate": run_step(
        [GMMREFINE, "simulate", "--out", str(sim), "--n", str(args.n), "--box", str(args.box),
         "--apix", str(args.apix), "--snr", str(args.snr), "--flexible", "--flex-amplitude-A",
         str(args.flex_amplitude_A), "--angle-rms-deg", "2", "--shift-rms-px", "0.6",
         "--crb-sample", "100"], case / "simulate.log", sim / "truth.json")}
    source = {"start": sim / "particles.star", "truth": sim / "truth.star",
              "global": case / "global"}[args.poses]
    star = source / "particles.star" if source.is_dir() else source
    label = (f"{args.poses}_z{args.latent}_e{args.epochs}_{args.encoder_input}_res{args.res:g}"
             f"{args.tag}")
    hetero = case / f"hetero_{label}"
    walls["gmmrefine_hetero"] = run_step(
        [GMMREFINE, "hetero", str(source), "--out", str(hetero), "--latent", str(args.latent),
         "--epochs", str(args.epochs), "--encoder-input", args.encoder_input, "--res",
         str(args.res), "--mask", str(sim / "domain_mask.mrc")],
        case / f"hetero_{label}.log", hetero / "series" / "reconstructed.cxc")

    from gmmrefine.io.mrc import read_map

    hinge, halves = hinge_by_row(sim, hetero / "particles.star")
    latent = np.load(hetero / "latent.npy")
    mask, apix = read_map(sim / "domain_mask.mrc")
    turns = decoded_turns(hetero, mask, apix, halves)
    record = json.loads((hetero / "hetero.json").read_text())
    ours = {"spearman_pc1_vs_hinge": {}, "spearman_decoded_turn_vs_hinge": {},
            "spearman_linear_readout_cv_vs_hinge": {},
            "training_s": {h: record["halves"][h]["seconds"] for h in ("1", "2")},
            "run_wall_s": run_log_span_s(hetero / "run.log")}
    # The run's own PC1 (latent.csv: principal axes of the decoded motion), and the plain
    # PCA of its latent numbers beside it (what cryoDRGN's latents get below).
    own_pc1 = np.loadtxt(hetero / "latent.csv", delimiter=",", skiprows=1,
                         usecols=_csv_column(hetero / "latent.csv", "pc1"))
    ours["spearman_latent_pca1_vs_hinge"] = {}
    for h in (1, 2):
        rows = halves == h
        ours["spearman_pc1_vs_hinge"][str(h)] = rho(own_pc1[rows], hinge[rows])
        ours["spearman_latent_pca1_vs_hinge"][str(h)] = rho(pc1(latent[rows]), hinge[rows])
        ours["spearman_decoded_turn_vs_hinge"][str(h)] = rho(turns[rows], hinge[rows])
        ours["spearman_linear_readout_cv_vs_hinge"][str(h)] = linear_readout_rho(latent[rows],
                                                                                 hinge[rows])
    result = {"benchmark": "hetero",
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "load_average": os.getloadavg()},
              "data": {"particles": args.n, "box": args.box, "apix": args.apix, "snr": args.snr,
                       "tip_travel_A": args.flex_amplitude_A, "poses": args.poses,
                       "hinge_range_deg": [float(hinge.min()), float(hinge.max())]},
              "gmmrefine": {**ours, "settings": {"latent": args.latent, "epochs": args.epochs,
                                                 "encoder_input": args.encoder_input,
                                                 "res_A": args.res}},
              "wall_s_this_invocation": walls}
    exe = shutil.which(args.cryodrgn) or (args.cryodrgn if Path(args.cryodrgn).is_file() else None)
    if not args.no_cryodrgn and exe:
        t0 = time.perf_counter()
        drgn = run_cryodrgn(exe, sim, star, case, args)
        z = drgn.pop("latent")
        by_epoch = drgn.pop("latent_by_epoch")
        # cryoDRGN reads the STAR's rows in order; its latents are row-aligned with ``star``.
        star_hinge, star_halves = hinge_by_row(sim, star)
        drgn["spearman_pc1_vs_hinge"] = {str(h): rho(pc1(z[star_halves == h]),
                                                     star_hinge[star_halves == h])
                                         for h in (1, 2)}
        drgn["spearman_linear_readout_cv_vs_hinge"] = {
            str(h): linear_readout_rho(z[star_halves == h], star_hinge[star_halves == h])
            for h in (1, 2)}
        # How informative the latent was along the way (time: the epochs' sum up to it).
        drgn["spearman_pc1_vs_hinge_by_epoch"] = {
            str(k): {str(h): rho(pc1(zk[star_halves == h]), star_hinge[star_halves == h])
                     for h in (1, 2)} for k, zk in by_epoch.items()}
        drgn["wall_s_this_invocation"] = time.perf_counter() - t0
        result["cryodrgn"] = drgn
    elif not args.no_cryodrgn:
        result["cryodrgn"] = f"skipped: {args.cryodrgn} not found"
    out = args.out or HERE / "results" / f"hetero_{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from gmmrefine.io.atomic import write_text_atomic

    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

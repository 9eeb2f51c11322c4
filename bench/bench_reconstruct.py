"""Time gmmrefine's reconstruction (both halves, from disk) against
relion_reconstruct (both halves) on 4,000 particles of box 96 made by
relion_project. Data are cached in bench/.data (not committed).

Run: /work/venv/bin/python bench/bench_reconstruct.py [--n 4000] [--box 96]
Writes bench/results/reconstruct.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from gmmrefine.data.rotations import matrix_to_euler, random_rotations
from gmmrefine.io.mrc import read_map, write_map
from gmmrefine.io.particles import read_particles
from gmmrefine.io.stack import StackReader
from gmmrefine.reconstruct.backproject import reconstruct_halves
from gmmrefine.reconstruct.fsc import fsc_curve, resolution_at

HERE = Path(__file__).resolve().parent
APIX = 1.5


def make_data(folder: Path, n: int, box: int, seed: int = 0) -> Path:
    """relion_project particles of a blobby map; returns proj.star (cached)."""
    star = folder / "proj.star"
    if star.is_file():
        return star
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    vol = np.zeros((box,) * 3)
    for c in rng.normal(scale=box / 9, size=(150, 3)):
        vol += np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) / (2 * 1.5 ** 2))
    write_map(folder / "map.mrc", vol, APIX)
    euler = matrix_to_euler(random_rotations(n, rng))
    du = rng.uniform(8000, 25000, n)
    dv = du - rng.uniform(0, 2000, n)
    lines = ["", "# version 30001", "", "data_optics", "", "loop_", "_rlnOpticsGroupName #1",
             "_rlnOpticsGroup #2", "_rlnVoltage #3", "_rlnSphericalAberration #4",
             "_rlnAmplitudeContrast #5", "_rlnImagePixelSize #6", "_rlnImageSize #7",
             "_rlnImageDimensionality #8", f"opticsGroup1 1 300.0 2.7 0.1 {APIX} {box} 2", "",
             "# version 30001", "", "data_particles", "", "loop_"]
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
            "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup",
            "rlnRandomSubset"]
    lines += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    shift = rng.uniform(-5, 5, (n, 2))
    for i in range(n):
        lines.append(f"{i + 1:06d}@none.mrcs {euler[i, 0]:.6f} {euler[i, 1]:.6f} {euler[i, 2]:.6f} "
                     f"{shift[i, 0]:.4f} {shift[i, 1]:.4f} {du[i]:.2f} {dv[i]:.2f} "
                     f"{rng.uniform(0, 180):.3f} 1 {1 + i % 2}")
    (folder / "in.star").write_text("\n".join(lines) + "\n")
    subprocess.run(["relion_project", "--i", "map.mrc", "--o", "proj", "--ang", "in.star", "--ctf",
                    "--add_noise", "--white_noise", "30"], cwd=folder, check=True,
                   capture_output=True)
    return star


def time_ours(star: Path) -> tuple[float, np.ndarray, np.ndarray]:
    t0 = time.perf_counter()
    ps = read_particles(star, root=star.parent)
    with StackReader(ps.root, source=star) as reader:
        half1, half2, _ = reconstruct_halves(ps, reader)
    return time.perf_counter() - t0, half1, half2


def time_relion(star: Path) -> tuple[float, np.ndarray, np.ndarray]:
    t0 = time.perf_counter()
    for h in (1, 2):
        subprocess.run(["relion_reconstruct", "--i", star.name, "--o", f"relion_half{h}.mrc",
                        "--ctf", "--subset", str(h)], cwd=star.parent, check=True,
                       capture_output=True)
    elapsed = time.perf_counter() - t0
    return (elapsed, read_map(star.parent / "relion_half1.mrc")[0],
            read_map(star.parent / "relion_half2.mrc")[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--box", type=int, default=96)
    parser.add_argument("--data", type=Path, default=HERE / ".data")
    args = parser.parse_args()
    if shutil.which("relion_project") is None or shutil.which("relion_reconstruct") is None:
        sys.exit("bench_reconstruct: needs relion_project and relion_reconstruct on PATH")
    star = make_data(args.data / f"reconstruct_{args.n}_{args.box}", args.n, args.box)
    # Same thread count for both: relion_reconstruct is single-threaded; so is
    # our numpy path (FFT and bincount), pinned here for BLAS too.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t_ours, o1, o2 = time_ours(star)
    t_relion, r1, r2 = time_relion(star)
    res_ours = resolution_at(fsc_curve(o1, o2), args.box, APIX)
    res_relion = resolution_at(fsc_curve(r1, r2), args.box, APIX)
    agreement = fsc_curve(o1 + o2, r1 + r2)
    result = {
        "benchmark": "reconstruct", "particles": args.n, "box": args.box, "apix": APIX,
        "gmmrefine_s": round(t_ours, 2), "relion_reconstruct_s": round(t_relion, 2),
        "ratio_gmmrefine_over_relion": round(t_ours / t_relion, 3),
        "resolution_gmmrefine_A": round(res_ours, 2), "resolution_relion_A": round(res_relion, 2),
        "fsc_gmmrefine_vs_relion_min_to_resolution": round(float(
            agreement[1:int(args.box * APIX / res_relion) + 1].min()), 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": 1,
    }
    out = HERE / "results" / "reconstruct.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"gmmrefine {t_ours:.1f} s, relion_reconstruct {t_relion:.1f} s, "
          f"ratio {t_ours / t_relion:.2f}; resolution {res_ours:.2f} vs {res_relion:.2f} A")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

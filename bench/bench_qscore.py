"""Time Q-scores (gmmrefine.reconstruct.qscore) on the simulator's ~6,400-atom model and a
~50,000-atom assembly of copies of it, in a map at 3 A.

The model is the simulator's (820 residues); the large one places 8 copies
on a 2 x 2 x 2 lattice, touching but not overlapping, so every copy's atoms
meet their neighbours as in a big complex. Each map is the copies' density
(B 20 A^2) low-passed to 3 A at 1 A/voxel.

Run: python bench/bench_qscore.py [--repeat 1]
Writes bench/results/qscore.json (wall and CPU seconds, atoms per second, the mean Q, the
load average, the process's peak memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
from gmmrefine.fourier.filters import lowpass
from gmmrefine.reconstruct.qscore import atom_qscores, expected_protein_qscore
from gmmrefine.simulate.model import build_model
from gmmrefine.simulate.render import atom_amplitude, atom_sigma_A, render_map

HERE = Path(__file__).resolve().parent
APIX, RES_A = 1.0, 3.0


def assembly(copies_per_axis: int):
    """Coordinates and elements of copies of the simulator's model on a cubic lattice."""
    model = build_model(seed=0)
    span = np.ptp(model.coords_A, axis=0) + 4.0        # 4 A between copies: van der Waals
    offsets = [np.array(i) * span for i in np.ndindex(*(copies_per_axis,) * 3)]
    offsets = np.array(offsets) - np.mean(offsets, axis=0)
    coords = np.concatenate([model.coords_A + o for o in offsets])
    return coords, np.tile(model.element, len(offsets))


def case(copies_per_axis: int, repeat: int) -> dict:
    coords, element = assembly(copies_per_axis)
    box = int(np.ceil((np.ptp(coords, axis=0).max() + 16) / APIX / 2) * 2)
    t0 = time.perf_counter()
    truth = render_map(coords, atom_amplitude(element), atom_sigma_A(element, 20.0), box, APIX)
    volume = lowpass(truth, APIX, RES_A)
    prepare = time.perf_counter() - t0
    seconds, cpu_seconds = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        q = atom_qscores(volume, APIX, coords)
        seconds.append(time.perf_counter() - t0)
        cpu_seconds.append(time.process_time() - c0)
    best = min(seconds)
    # CPU seconds too: on a shared machine the wall time says more about the others.
    result = {"atoms": len(coords), "box": box, "apix": APIX, "res_A": RES_A,
              "seconds": best, "all_seconds": seconds, "cpu_seconds": min(cpu_seconds),
              "atoms_per_s": len(coords) / best,
              "mean_q": float(np.nanmean(q)), "unscored_atoms": int(np.isnan(q).sum()),
              "expected_q_protein": expected_protein_qscore(RES_A),
              "map_seconds": prepare}
    print(f"{len(coords):6d} atoms, box {box}: Q-scores in {best:.1f} s "
          f"({result['cpu_seconds']:.1f} s CPU, {len(coords) / best:.0f} atoms/s); "
          f"mean Q {result['mean_q']:.3f} "
          f"(expected for a protein at {RES_A} A: {result['expected_q_protein']:.2f})",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    load = os.getloadavg()
    results = {"cases": [case(1, args.repeat), case(2, args.repeat)],
               "load_average_1_5_15": load, "load_average_after": os.getloadavg(),
               "cpus": os.cpu_count(), "machine": platform.platform(),
               "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    out = HERE / "results" / "qscore.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"load average {load[0]:.1f} on {os.cpu_count()} cores; wrote {out}")


if __name__ == "__main__":
    main()

"""Peak memory against the number of particles: simulate, reconstruct and refine sets of
small particles (box 64) and print each command's peak resident memory.

Each command runs in its own process and its peak RSS (ru_maxrss, from wait4) is
its own. Chunks (--chunk) and batches (--batch) bound the images, spectra and
sums in memory, so the peak should grow with the particle count only by the
per-particle arrays (poses, CTF, the particle table): a few hundred bytes a
particle. The refinement of the largest set runs one iteration with
``--steps 0`` (each particle scored, not moved: every array of the alignment is
made, only the optimiser's steps are skipped, and their memory is per batch);
the smallest also runs with the default steps, so the two can be compared.

    python bench/bench_memory.py [--sizes 20000 200000 --box 64 --apix 2.0]

Writes bench/results/memory.json. Data go to bench/.data/memory_* (not committed;
the 200,000-particle stack is 3.3 GB).
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

HERE = Path(__file__).resolve().parent
GMMREFINE = str(Path(sys.executable).parent / "gmmrefine")


def run_measured(command: list[str], log: Path) -> dict:
    """Run ``command``, its output to ``log``; its wall time and peak resident memory (MB)."""
    t0 = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {process.returncode}); see {log}")
    return {"seconds": round(time.monotonic() - t0, 1),
            "peak_rss_MB": round(usage.ru_maxrss / 1024.0, 1)}


def simulate(folder: Path, n: int, box: int, apix: float, snr: float) -> dict | None:
    """The set (once; reused when it exists)."""
    if (folder / "truth.json").exists():
        return None
    return run_measured([GMMREFINE, "simulate", "--out", str(folder), "--n", str(n),
                         "--box", str(box), "--apix", str(apix), "--snr", str(snr),
                         "--crb-sample", "0"], folder.parent / f"{folder.name}_simulate.log")


def measure(n: int, args) -> dict:
    data = args.data / f"memory_{n}_{args.box}"
    data.mkdir(parents=True, exist_ok=True)
    figures = {"particles": n, "stack_GB": round(n * args.box ** 2 * 4 / 1e9, 2)}
    simulated = simulate(data / "sim", n, args.box, args.apix, args.snr)
    if simulated is not None:
        figures["simulate"] = simulated
    star = str(data / "sim" / "particles.star")
    common = ["--chunk", str(args.chunk)]
    for name in ("reconstruct", "refine", "refine_default_steps"):
        shutil.rmtree(data / name, ignore_errors=True)
    figures["reconstruct"] = run_measured(
        [GMMREFINE, "reconstruct", star, "--out", str(data / "reconstruct"), *common],
        data / "reconstruct.log")
    refine = [GMMREFINE, "refine", star, "--iter", "1", "--batch", str(args.batch), *common]
    figures["refine_steps0"] = run_measured(
        [*refine, "--steps", "0", "--out", str(data / "refine")], data / "refine.log")
    if n <= args.full_steps_up_to:
        figures["refine_default_steps"] = run_measured(
            [*refine, "--out", str(data / "refine_default_steps")],
            data / "refine_default_steps.log")
    print(json.dumps(figures), flush=True)
    return figures


def per_particle_growth(results: list[dict], step: str) -> float | None:
    """Extra peak memory per extra particle (bytes) between the smallest and largest set."""
    small, large = results[0], results[-1]
    if step not in small or step not in large or large["particles"] == small["particles"]:
        return None
    extra_MB = large[step]["peak_rss_MB"] - small[step]["peak_rss_MB"]
    return round(extra_MB * 1024 * 1024 / (large["particles"] - small["particles"]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 200000])
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--apix", type=float, default=2.0)
    parser.add_argument("--snr", type=float, default=0.1)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--full-steps-up-to", type=int, default=20000,
                        help="sets up to this size are also refined with the default steps")
    parser.add_argument("--data", type=Path, default=HERE / ".data")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "memory.json")
    args = parser.parse_args()
    results = [measure(n, args) for n in sorted(args.sizes)]
    summary = {
        "benchmark": "memory",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "sets": results,
        "growth_bytes_per_particle": {step: per_particle_growth(results, step)
                                      for step in ("reconstruct", "refine_steps0")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": list(os.getloadavg())},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["growth_bytes_per_particle"]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

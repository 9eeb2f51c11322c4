"""Every reader against many mutated files: the suite's fuzz properties, at length.

The same targets, mutations and property as tests/test_fuzz_readers.py
(tests/fuzzing.py), but failures are counted instead of raised, so the run
goes on to the end and reports every distinct way a reader failed: an
exception other than InputError, a message that is not one clear line, a
warning, or output on stderr. Distinct = same kind, same innermost frame,
same exception type; the first example of each is kept (its mutation list
reproduces it: tests/fuzzing.py mutate()).

    /work/venv-io/bin/python bench/fuzz_readers.py [--examples 3000] [--targets star31 cs ...]
        [--seed 0] [--out bench/results/fuzz_readers.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))     # the shared fuzzing helpers

import hypothesis  # noqa: E402
import numpy as np  # noqa: E402
from fuzzing import MUTATIONS, TARGETS, run_mutated, seed_bytes  # noqa: E402
from gmmrefine.io.atomic import write_text_atomic  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402


def fuzz_target(name: str, examples: int, rng_seed: int) -> dict:
    """Run ``examples`` mutated files of target ``name``; counts and distinct failures."""
    seed = seed_bytes(name)
    counts: collections.Counter[str] = collections.Counter()
    failures: dict[str, dict] = {}

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)

        @hypothesis.seed(rng_seed)
        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(MUTATIONS)
        def run(mutations):
            outcome = run_mutated(name, seed, mutations, directory)
            counts[outcome.kind] += 1
            if outcome.failed:
                key = f"{outcome.kind} {outcome.where} {outcome.detail.split(':')[0]}"
                entry = failures.setdefault(key, {
                    "kind": outcome.kind, "where": outcome.where, "count": 0,
                    "detail": outcome.detail.replace(str(directory), "<dir>"),
                    "mutations": repr(mutations)})
                entry["count"] += 1

        start = time.perf_counter()
        run()
        seconds = time.perf_counter() - start
    return {"examples": sum(counts.values()), "outcomes": dict(counts),
            "failures": sorted(failures.values(), key=lambda f: -f["count"]),
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="mutated files per target")
    parser.add_argument("--targets", nargs="+", default=sorted(TARGETS), choices=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fuzz_readers.json")
    args = parser.parse_args()

    results = {}
    for name in args.targets:
        results[name] = fuzz_target(name, args.examples, args.seed)
        r = results[name]
        failed = sum(f["count"] for f in r["failures"])
        print(f"{name:7s} {r['examples']:6d} examples in {r['seconds']:6.1f} s: "
              f"{r['outcomes'].get('ok', 0)} read, {r['outcomes'].get('input_error', 0)} "
              f"InputError, {failed} failures ({len(r['failures'])} distinct)", flush=True)
        for f in r["failures"]:
            print(f"    {f['count']:5d} x {f['kind']} at {f['where']}: {f['detail'][:160]}")
    total = sum(r["examples"] for r in results.values())
    total_failed = sum(f["count"] for r in results.values() for f in r["failures"])
    print(f"total: {total} examples, {total_failed} failures")
    report = {"examples_per_target": args.examples, "seed": args.seed,
              "total_examples": total, "total_failures": total_failed,
              "python": platform.python_version(), "numpy": np.__version__,
              "hypothesis": hypothesis.__version__, "targets": results}
    write_text_atomic(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

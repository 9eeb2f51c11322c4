"""A refinement run's directory: its parameters, and each finished iteration.

DIR/run.json records the options, the input and every finished iteration's
figures; DIR/iter_NNN/ holds that iteration's maps, FSC, GMMs and poses.
An iteration counts as finished only once its iteration.json exists, which
is written last, so a run stopped at any point resumes from the last
finished iteration and never recomputes one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path, write_text_atomic
from .options import RefineOptions

# Options that may change between a run and its resumption: more iterations,
# and how work is batched, change no finished result.
_RESUMABLE = {"iterations", "batch", "chunk", "root"}


@dataclass(frozen=True)
class IterationState:
    """Poses of every particle (input order) after an iteration, and its figures."""

    rotation: np.ndarray
    shift_A: np.ndarray
    score_start: np.ndarray
    score_end: np.ndarray
    summary: dict


class RunDirectory:
    """Paths and persistence of one run; refuses to mix runs with different options."""

    def __init__(self, out_dir: Path, options: RefineOptions, particles: Path, n_particles: int):
        self.path = Path(out_dir)
        self.options = options
        # Resolved, so the same file named from another directory resumes the run.
        self.record = {"input": str(Path(particles).resolve()), "n_particles": int(n_particles),
                       "options": options.to_dict(), "iterations": []}
        self._check_compatible()

    def _check_compatible(self) -> None:
        check_resumable(self.path / "run.json", self.record["input"], self.options)

    def iteration_dir(self, it: int) -> Path:
        return self.path / f"iter_{it:03d}"

    def is_done(self, it: int) -> bool:
        return (self.iteration_dir(it) / "iteration.json").exists()

    def save_iteration(self, it: int, state: IterationState) -> None:
        """Poses first, the iteration.json marker last."""
        d = self.iteration_dir(it)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "poses.npz") as tmp:
            np.savez(tmp, rotation=state.rotation, shift_A=state.shift_A,
                     score_start=state.score_start, score_end=state.score_end)
        write_text_atomic(d / "iteration.json", json.dumps(state.summary, indent=2) + "\n")

    def load_iteration(self, it: int) -> IterationState:
        d = self.iteration_dir(it)
        with np.load(d / "poses.npz") as f:
            arrays = {k: f[k] for k in f.files}
        summary = json.loads((d / "iteration.json").read_text())
        return IterationState(summary=summary, **arrays)

    def write_record(self, summaries: list[dict], extra: dict | None = None) -> None:
        self.record["iterations"] = summaries
        self.record.update(extra or {})
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / "run.json", json.dumps(self.record, indent=2) + "\n")


def check_resumable(record_path: Path, input_path: str, options: RefineOptions,
                    keys: tuple[str, ...] | None = None) -> None:
    """Refuse, in one line, to resume the run recorded at ``record_path`` with other inputs.

    ``keys``: the options that must match (default: all but those in
    _RESUMABLE). Nothing to check when there is no record yet.
    """
    if not record_path.exists():
        return
    try:
        old = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        raise InputError(f"{record_path}: not readable JSON; expected a gmmrefine run record "
                         "(use a new --out directory)") from None
    if old.get("input") != input_path:
        raise InputError(f"{record_path}: this directory holds a run on {old.get('input')}; "
                         f"expected {input_path} (use a new --out directory)")
    # An option the run's version did not have yet ran at its default.
    defaults = RefineOptions().to_dict()
    current = options.to_dict()
    for key in keys if keys is not None else [k for k in current if k not in _RESUMABLE]:
        before = old.get("options", {}).get(key, defaults.get(key))
        if before != current[key]:
            raise InputError(
                f"{record_path}: the run here used {key}={before!r}, not {current[key]!r}; "
                "expected the same options to resume (or a new --out directory)")

"""The engine's entry point for a refinement: what the CLI and both host adapters call.

Adapters (RELION External job, CryoSPARC) and the CLI build a RefineOptions,
call :func:`run_refinement` and read a RefineResult; nothing else of the
engine's inside is theirs to touch.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

from ..report import log as report_log
from .executor import open_executor
from .options import RefineOptions, RefineResult
from .patch_run import run_patch_refinement
from .refinement import check_options, refine_single


def run_refinement(particles: Path, out_dir: Path, options: RefineOptions, *,
                   log: Callable[[str], None] | None = None,
                   should_abort: Callable[[], bool] = lambda: False) -> RefineResult:
    """Refine the poses of PARTICLES (STAR or .cs) into ``out_dir``; resumes a stopped run.

    Global refinement, or with ``options.patches`` a patch-by-patch run; the
    particle chunks run in this process, or with ``options.cluster`` /
    ``options.scheduler`` on a Dask cluster started (or joined) for the run.
    Every line the run logs goes to its run.log with times and, when given,
    to ``log`` too (hosts may instead attach their own handler through
    gmmrefine.report.log). Raises InputError (one line) on bad input before
    anything is written, and Aborted when ``should_abort()`` turns true
    (polled between batches).
    """
    check_options(options)
    with contextlib.nullcontext() if log is None else report_log.lines_to(log), \
            open_executor(options) as executor:
        if options.patches is not None:
            return run_patch_refinement(particles, out_dir, options, should_abort=should_abort,
                                        executor=executor)
        return refine_single(particles, out_dir, options, should_abort=should_abort,
                             executor=executor)


__all__ = ["run_refinement", "RefineOptions", "RefineResult"]

"""``gmmrefine-relion``: the executable a RELION External job runs.

RELION runs it from the project directory with ``--o JOBDIR/ --in_parts
P.star [--in_3dref M.mrc] [--in_mask K.mrc] --LABEL VALUE ... --j N``
(relion_external/params.py; RELION appends ``--pipeline_control JOBDIR/`` to a
command containing "relion_"). It refines into JOBDIR, prints progress to
stdout (RELION's run.out; standard error, run.err, carries errors only:
relion_external/streams.py), declares the refined particles, half maps, map
and logfile.pdf in RELION_OUTPUT_NODES.star and leaves exactly one exit
marker on every path out, because the pipeliner learns the outcome from
nothing else. Running it again on the same JOBDIR continues the refinement
where it stopped; an abort removes RELION_JOB_ABORT_NOW so that it can.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import Aborted, InputError
from ..pipeline.options import RefineResult
from ..report import log as report_log
from . import pipeline_files as pf
from .params import PROGRAM, JobCommand, help_text, job_dir_of, parse_command, split_arguments
from .streams import errors_only_on_stderr

log = logging.getLogger(__name__)


class _Terminated(Exception):
    """SIGTERM (a queue system's kill) turned into an exception, so the marker still gets written."""


@dataclass(frozen=True)
class Task:
    """What one kind of External job does; :func:`run_job` supplies the rest (markers,
    abort, the output nodes file, errors as one line in run.err).

    parse(pairs) -> a command with ``job_dir`` and ``threads``; check(command) refuses
    missing inputs before any compute; run(command) -> (output nodes, closing line).
    """

    program: str
    help: Callable[[], str]
    parse: Callable[[dict[str, str]], Any]
    check: Callable[[Any], None]
    run: Callable[[Any], tuple[list[pf.OutputNode], str]]


def main(argv: list[str] | None = None) -> int:
    """Run one refinement External job; return the exit status (0 success, 1 failure,
    2 aborted).

    Parameters
    ----------
    argv : the arguments RELION passed (default: ``sys.argv[1:]``); ``--help``
        prints the parameter table instead.
    """
    return run_job(argv, REFINE)


def run_job(argv: list[str] | None, task: Task) -> int:
    """Run one External job of ``task``; exactly one exit marker on every path out."""
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:    # a person asking; RELION never passes these
        print(task.help())
        return 0
    try:
        job_dir = job_dir_of(split_arguments(argv))
    except InputError as err:
        # No job directory: nowhere to put a marker, and nothing RELION would read.
        _fail_line(str(err), task.program)
        return 1
    job_dir.mkdir(parents=True, exist_ok=True)
    pf.clear_exit_markers(job_dir)
    # Every line of the job (the engine's and this adapter's) goes to stdout: run.out.
    with errors_only_on_stderr(), report_log.lines_to(_say):
        return _run(argv, job_dir, task)


def _run(argv: list[str], job_dir: Path, task: Task) -> int:
    """The job inside run_job's streams: run the task, declare its outputs, leave one exit
    marker."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        command = task.parse(split_arguments(argv))
        task.check(command)
        set_threads(command.threads)
        nodes, closing = task.run(command)
        pf.write_output_nodes(job_dir, nodes, pf.relion_version(job_dir))
    except Aborted:
        pf.clear_abort_request(job_dir)
        log.info(f"{task.program}: aborted on request ({pf.ABORT_NOW}, now removed); finished "
                 "work is kept and a re-run continues from it")
        pf.write_exit_marker(job_dir, pf.ABORTED)
        return 2
    except InputError as err:
        _fail_line(str(err), task.program)
        pf.write_exit_marker(job_dir, pf.FAILURE)
        return 1
    except BaseException as err:  # noqa: BLE001 - every way out must leave a marker
        traceback.print_exc(file=sys.stderr)
        _fail_line(f"{type(err).__name__}: {err}", task.program)
        pf.write_exit_marker(job_dir, pf.FAILURE)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    log.info(closing)
    pf.write_exit_marker(job_dir, pf.SUCCESS)
    return 0


def check_inputs(command: JobCommand) -> None:
    """Refuse missing input files before any compute (relion #250), one line each."""
    named = {"--in_parts": command.particles, "--in_3dref": command.options.reference,
             "--in_mask": command.options.mask, "--model": command.options.model}
    for label, path in named.items():
        if path is not None and not Path(path).is_file():
            raise InputError(f"{label} {path}: file not found (paths are relative "
                             f"to the project directory {Path.cwd()})")


def set_threads(threads: int) -> None:
    """Give TensorFlow and OpenMP the thread count RELION's ``--j`` asks for.

    The environment variables reach TensorFlow only if it is not imported
    yet, which is why this runs before the engine is imported.
    """
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1" if threads < 4 else "2"
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # already initialised: it keeps its threads, which is harmless


def relative(path: Path) -> str:
    """A path as RELION names outputs: relative to the project directory (the working one)."""
    path = Path(path)
    return os.path.relpath(path, Path.cwd()) if path.is_absolute() else str(path)


def output_nodes(result: RefineResult, job_dir: Path) -> list[pf.OutputNode]:
    """The outputs RELION should add to the pipeline, as project-relative paths."""
    nodes = [pf.OutputNode(relative(result.particles_star), "particles"),
             pf.OutputNode(relative(result.half1), "halfmap"),
             pf.OutputNode(relative(result.half2), "halfmap"),
             pf.OutputNode(relative(result.map), "map")]
    if result.logfile_pdf is not None:
        nodes.append(pf.OutputNode(relative(result.logfile_pdf), "logfile"))
    return nodes


def _refine(command: JobCommand) -> tuple[list[pf.OutputNode], str]:
    from ..pipeline.run import run_refinement  # after set_threads: it imports TensorFlow

    log.info(f"{PROGRAM}: refining {command.particles} into {command.job_dir} "
             f"with {command.threads} thread(s)")
    result = run_refinement(command.particles, command.job_dir, command.options,
                            should_abort=lambda: pf.abort_requested(command.job_dir))
    return output_nodes(result, command.job_dir), (
        f"{PROGRAM}: done; final resolution {result.resolution_A:.2f} A "
        f"(start {result.start_resolution_A:.2f} A)")


REFINE = Task(PROGRAM, help_text, parse_command, check_inputs, _refine)


def _say(line: str) -> None:
    print(line, flush=True)


def _fail_line(reason: str, program: str = PROGRAM) -> None:
    print(f"{program}: error: {reason}", file=sys.stderr, flush=True)


def _raise_terminated(signum, frame) -> None:
    raise _Terminated(f"stopped by signal {signum}")


if __name__ == "__main__":
    sys.exit(main())

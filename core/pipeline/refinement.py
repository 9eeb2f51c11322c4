"""The gold-standard refinement loop: iterations on in-memory state, recorded as they finish.

Iteration 0 reconstructs the half maps at the imported poses; each further
iteration (gmmrefine.pipeline.iteration) takes the previous one's poses,
maps and FSC straight from memory and returns its own. The run directory
records every finished iteration and is read only to resume a stopped run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.rotations import angle_between_deg
from ..device import select_device
from ..io.particles import write_particles
from ..io.stack import StackReader
from ..reconstruct.fsc import fsc_curve, masked_fsc_corrected, resolution_at
from ..reconstruct.symmetry import symmetrize_maps
from ..report import log as report_log
from ..report.plots import plot_fsc, plot_pose_changes
from . import iteration
from .executor import IN_PROCESS, ChunkExecutor
from .inputs import RunInputs, read_inputs
from .logfile import LOGFILE_PDF, write_refinement_logfile
from .options import RefineOptions, RefineResult, run_identity
from .ownership import claimed
from .run_directory import (
    FSC_PNG,
    LOG,
    POSE_CHANGES_PNG,
    IterationState,
    Maps,
    RunDirectory,
    write_maps,
)
from .run_figures import write_run_figures

log = logging.getLogger(__name__)


def check_options(options: RefineOptions) -> None:
    """Raise InputError (one line) for an option no run can use; before any file is written."""
    options.validate()


class _Refinement:
    """One run: its inputs (read and checked before anything is written), its directory,
    and the loop."""

    def __init__(self, inputs: RunInputs, run: RunDirectory, should_abort: Callable[[], bool],
                 executor: ChunkExecutor):
        self.inputs, self.run = inputs, run
        self.should_abort, self.executor = should_abort, executor

    def run_all(self) -> RefineResult:
        inputs, run = self.inputs, self.run
        opts, ps = inputs.options, inputs.particles
        states: list[IterationState] = []
        log.info(f"particle chunks run {self.executor.description}")
        with StackReader(ps.root, source=ps.source) as reader:
            state = self._start(reader)
            states.append(state)
            for it in range(1, opts.iterations + 1):
                res_A = (opts.res_A if it == 1 and opts.res_A is not None
                         else iteration.target_resolution(
                             iteration.reference_fsc(opts, state.maps), inputs.box,
                             inputs.apix, opts.align_fsc))
                state = self._iteration(it, state, res_A, reader)
                states.append(state)
                run.write_record([s.summary for s in states])
        iteration.check_abort(self.should_abort)
        return self._finish(states)

    def _start(self, reader: StackReader) -> IterationState:
        run = self.run
        if run.is_done(0):
            state = run.load_iteration(0)
        else:
            log.info("iteration 0: reconstructing the half maps at the imported poses")
            state = iteration.reconstruct_start(self.inputs, reader, self.should_abort,
                                                executor=self.executor)
            run.save_iteration(0, state, self.inputs.apix)
        log.info(f"start: {state.summary['resolution_A']:.2f} A (FSC 0.143)")
        return state

    def _iteration(self, it: int, previous: IterationState, res_A: float,
                   reader: StackReader) -> IterationState:
        run, inputs = self.run, self.inputs
        if run.is_done(it):
            state = run.load_iteration(it)
            log.info(f"iteration {it}: already done ({state.summary['resolution_A']:.2f} A)")
            return state
        state, gmms = iteration.refine_iteration(inputs, previous, it, res_A, reader,
                                                  self.should_abort, executor=self.executor)
        for half, gmm in gmms.items():
            run.save_gmm(it, half, gmm, inputs.box, inputs.apix)
        plot_pose_changes(run.iteration_dir(it) / POSE_CHANGES_PNG,
                          *self._changes(previous, state),
                          f"iteration {it}: change from the previous poses")
        run.save_iteration(it, state, inputs.apix)
        summary = state.summary
        masked = summary.get("masked_resolution_A")
        log.info(f"iteration {it}: {summary['resolution_A']:.2f} A (FSC 0.143)"
                 + ("" if masked is None else f", {masked:.2f} A within the mask")
                 + f", median change {summary['angle_change_deg']['median']:.2f} deg, "
                 f"{summary['shift_change_px']['median']:.2f} px")
        return state

    def _final_maps(self, last: Maps) -> Maps:
        """The maps the run delivers and their figures: the last iteration's, or, for a
        focused run expanded by symmetry, those maps with the symmetry re-imposed."""
        inputs = self.inputs
        if not inputs.expanded:
            return last
        log.info(f"re-imposing {inputs.options.sym} on the maps, weighted by the mask")
        half1, half2, full = symmetrize_maps([last.half1, last.half2, last.full],
                                             inputs.options.sym, weight=inputs.mask)
        masked = masked_fsc_corrected(half1, half2, inputs.mask, inputs.apix).corrected
        return Maps(half1, half2, full, fsc_curve(half1, half2), masked)

    def _finish(self, states: list[IterationState]) -> RefineResult:
        inputs, run = self.inputs, self.run
        box, apix, out = inputs.box, inputs.apix, run.path
        final_ps = inputs.particles.with_poses(states[-1].rotation, states[-1].shift_A)
        files = run.files
        write_particles(final_ps, files.particles_star)
        write_particles(final_ps, files.particles_cs)
        maps = self._final_maps(states[-1].maps)
        write_maps(out, maps, apix)
        curves = {"start": states[0].maps.fsc,
                  **{f"iteration {s.summary['iteration']}": s.maps.fsc for s in states[1:]}}
        if maps.fsc_masked is not None:
            curves["final, within the mask"] = maps.fsc_masked
        plot_fsc(out / FSC_PNG, curves, box, apix)
        plot_pose_changes(out / POSE_CHANGES_PNG, *self._changes(states[0], states[-1]),
                          "change from the input poses")
        summaries = [s.summary for s in states]
        resolutions = [s["resolution_A"] for s in summaries]
        final_res = resolution_at(maps.fsc, box, apix, 0.143)
        write_run_figures(out, apix, (states[0].maps.full, resolutions[0]), (maps.full, final_res),
                          None if inputs.atomic_model is None
                          else (inputs.atomic_model, inputs.model[0]))
        extra = {"start_resolution_A": resolutions[0], "resolution_A": final_res}
        if inputs.expanded:
            extra["expanded_c1_resolution_A"] = resolutions[-1]
            log.info(f"after re-imposing {inputs.options.sym}: {final_res:.2f} A "
                     f"(C1, expanded: {resolutions[-1]:.2f} A)")
        masked_start = masked_end = None
        if maps.fsc_masked is not None:
            masked_start = summaries[0]["masked_resolution_A"]
            masked_end = resolution_at(maps.fsc_masked, box, apix)
            extra.update(start_masked_resolution_A=masked_start, masked_resolution_A=masked_end)
            log.info(f"within the mask (corrected): {masked_start:.2f} A -> {masked_end:.2f} A")
        logfile = self._write_logfile(states, curves, final_res)
        run.write_record(summaries, extra)
        log.info(f"resolution {resolutions[0]:.2f} A -> {final_res:.2f} A; results in {out}")
        return RefineResult(out, files.particles_star, files.particles_cs, files.half1,
                            files.half2, files.map, files.fsc_csv, resolutions[0], final_res,
                            resolutions[1:], masked_start, masked_end, logfile,
                            {"FSC": out / FSC_PNG, "pose changes": out / POSE_CHANGES_PNG})

    def _write_logfile(self, states: list[IterationState], curves: dict, final_res: float
                       ) -> Path:
        """logfile.pdf: the iteration table, the FSC curves, the pose changes of every
        iteration and in total."""
        inputs = self.inputs
        changes = [(f"iteration {s.summary['iteration']}: change from the previous poses",
                    *self._changes(before, s)) for before, s in zip(states, states[1:])]
        changes.append(("change from the input poses", *self._changes(states[0], states[-1])))
        notes = [f"input {inputs.source}: {len(inputs.particles)} particles, box {inputs.box}, "
                 f"{inputs.apix:.4g} A/px, symmetry {inputs.options.sym}",
                 f"final resolution {final_res:.2f} A (FSC 0.143); maps, particles and the "
                 f"FSC table in {self.run.path}"]
        return write_refinement_logfile(self.run.path / LOGFILE_PDF,
                                        [s.summary for s in states], curves, changes,
                                        inputs.box, inputs.apix, notes)

    def _changes(self, before: IterationState, after: IterationState
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Each particle's angle change (deg) and shift change (px) from ``before``."""
        return (angle_between_deg(before.rotation, after.rotation),
                np.linalg.norm(after.shift_A - before.shift_A, axis=1) / self.inputs.apix)


def refine_single(particles: Path, out_dir: Path, options: RefineOptions, *,
                  should_abort: Callable[[], bool] = lambda: False,
                  executor: ChunkExecutor = IN_PROCESS) -> RefineResult:
    """One gold-standard run (no patches) of PARTICLES into ``out_dir``; resumes a stopped run.
    ``executor`` runs the particle chunks (gmmrefine.pipeline.executor).

    The run owns ``out_dir`` while it works (pipeline.ownership: a lock, and
    a record of its inputs and options written before anything else). Its
    log lines go to ``out_dir``/run.log with times, besides any handler the
    caller attached (gmmrefine.report.log).
    """
    out_dir = Path(out_dir)
    with report_log.held() as early:
        log.info(select_device(options.gpu))
        inputs = read_inputs(Path(particles), options)
        # Nothing is written before the inputs are checked; their lines join the log after.
        with claimed(out_dir, run_identity(particles, options)) as record, \
                report_log.to_file(out_dir / LOG) as file_log:
            early.replay(file_log)
            return refine_claimed(inputs, out_dir, record, should_abort, executor)


def refine_claimed(inputs: RunInputs, out_dir: Path, record: dict,
                   should_abort: Callable[[], bool] = lambda: False,
                   executor: ChunkExecutor = IN_PROCESS) -> RefineResult:
    """The refinement of ``inputs`` in a directory its caller has claimed (``record``: the
    claim's run.json content, which the run extends with every iteration)."""
    record["n_particles"] = len(inputs.particles)
    run = RunDirectory(Path(out_dir), record)
    return _Refinement(inputs, run, should_abort, executor).run_all()

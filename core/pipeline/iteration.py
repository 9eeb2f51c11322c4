"""One gold-standard iteration as a function of in-memory state.

(the run's inputs, the previous iteration's poses, maps and FSC) ->
(new poses, maps and FSC). Per half: a GMM from that half's map only, every
particle of that half aligned against it chunk by chunk, each chunk
back-projected at its new poses into that half's sums; then both halves'
maps and their FSC. The halves never see each other's particles, maps or
GMMs: the only place they meet is the FSC. Nothing here touches the run
directory; the caller records what it wants.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from ..data.images import ImageReader
from ..data.particles import ParticleSet
from ..data.rotations import angle_between_deg
from ..data.symmetry_groups import symmetry_operators
from ..gmm.fit import FIT_STEPS
from ..gmm.model import GMM
from ..reconstruct.backproject import FourierSums, finalize, symmetrize_sums
from ..reconstruct.fsc import fsc_curve, masked_fsc_corrected, resolution_at
from ..report.progress import Progress
from .chunk import AlignerSpec
from .executor import IN_PROCESS, ChunkExecutor, ChunkPlan, HalfWork, check_abort
from .inputs import RunInputs
from .options import RefineOptions
from .references import half_gmm, region_weight, wiener_weighted
from .run_directory import IterationState, Maps

HALVES = (1, 2)
PAD = 2              # RELION's padding of the 3D Fourier grid
PROGRESS_EVERY_S = 5.0

log = logging.getLogger(__name__)


def next_target_resolution(fsc: np.ndarray, box: int, apix: float) -> float:
    """The next iteration's target: 0.9 x the resolution where the FSC falls below 0.1.

    The reference implementation's rule: a little beyond what the halves
    agree on, so each iteration can gain, but never finer than Nyquist.
    """
    return max(0.9 * resolution_at(fsc, box, apix, 0.1), 2.0 * apix)


def target_resolution(fsc: np.ndarray, box: int, apix: float, align_fsc: float | None) -> float:
    """The next iteration's target: where the FSC falls below ``align_fsc``, or the
    reference implementation's rule (None); never finer than Nyquist."""
    if align_fsc is None:
        return next_target_resolution(fsc, box, apix)
    return max(resolution_at(fsc, box, apix, align_fsc), 2.0 * apix)


def reference_fsc(options: RefineOptions, maps: Maps) -> np.ndarray:
    """The FSC that weights the next references and sets the next target: within the mask
    with ``--reference-fsc masked`` in a focused run, else the whole box's.

    A focused region is often better ordered than the rest (its poses are the
    ones being refined): the whole box's FSC then under-weights its shells and
    stops its alignment short.
    """
    if options.reference_fsc == "masked" and maps.fsc_masked is not None:
        return maps.fsc_masked
    return maps.fsc


def _maps(inputs: RunInputs, sums: list[FourierSums]) -> Maps:
    """Both halves' maps from their sums, the full map from both, and their FSC."""
    half1, half2 = finalize(sums[0]), finalize(sums[1])
    full = finalize(sums[0] + sums[1])
    masked = (None if inputs.mask is None
              else masked_fsc_corrected(half1, half2, inputs.mask, inputs.apix).corrected)
    return Maps(half1, half2, full, fsc_curve(half1, half2), masked)


def map_figures(inputs: RunInputs, maps: Maps) -> dict:
    """The resolutions an iteration reports (FSC 0.143; within the mask when there is one)."""
    figures = {"resolution_A": resolution_at(maps.fsc, inputs.box, inputs.apix, 0.143)}
    if maps.fsc_masked is not None:
        figures["masked_resolution_A"] = resolution_at(maps.fsc_masked, inputs.box, inputs.apix)
    return figures


def reconstruct_start(inputs: RunInputs, reader: ImageReader,
                      should_abort: Callable[[], bool] = lambda: False, *,
                      executor: ChunkExecutor = IN_PROCESS) -> IterationState:
    """Iteration 0: the half maps at the imported poses, and their FSC."""
    ps = inputs.particles
    sums = []
    for half in HALVES:
        index = np.flatnonzero(ps.half_set == half)
        label = f"iteration 0, half {half}"
        progress = Progress(len(index), f"{label}: reconstruct", interval_s=PROGRESS_EVERY_S)
        work = HalfWork(None, inputs.box, inputs.apix, PAD, label)
        sums.append(_half_sums(inputs, executor, work, ps, index, reader, progress,
                               should_abort))
        progress.finish()
    check_abort(should_abort)
    maps = _maps(inputs, sums)
    n = len(ps)
    return IterationState(ps.rotation, ps.shift_A, np.zeros(n), np.zeros(n), maps,
                          {"iteration": 0, **map_figures(inputs, maps)})


def _half_sums(inputs: RunInputs, executor: ChunkExecutor, work: HalfWork, ps: ParticleSet,
               index: np.ndarray, reader: ImageReader, progress: Progress,
               should_abort: Callable[[], bool], poses_out: list | None = None) -> FourierSums:
    """One half's sums over its particles ``index`` of ``ps`` in chunks (aligned first when
    ``work`` has an aligner), wherever ``executor`` runs them; summed over the run's point
    group."""
    original = inputs.particles
    # The prior describes the input poses' accuracy, so it stays on them: centred
    # on the last iteration's poses it let them drift (2.38 -> 2.53 deg measured).
    held = inputs.held_poses
    plan = ChunkPlan(ps, index, inputs.options.chunk, original.rotation, original.shift_A,
                     *((None, None) if held is None else held))
    result = executor.run_half(work, plan, reader, progress, should_abort)
    if poses_out is not None:
        poses_out.extend(result.poses)
    return symmetrize_sums(result.sums, symmetry_operators(inputs.recon_sym))


def refine_iteration(inputs: RunInputs, previous: IterationState, it: int, res_A: float,
                     reader: ImageReader, should_abort: Callable[[], bool] = lambda: False, *,
                     executor: ChunkExecutor = IN_PROCESS
                     ) -> tuple[IterationState, dict[int, GMM]]:
    """Iteration ``it`` from the previous one's poses and maps: new poses, maps, FSC, figures,
    and the GMM each half was aligned against. ``executor`` runs the chunks."""
    opts, t0 = inputs.options, time.monotonic()
    ps = inputs.particles.with_poses(previous.rotation, previous.shift_A)
    rotation, shift = ps.rotation.copy(), ps.shift_A.copy()
    score0, score1 = np.zeros(len(ps)), np.zeros(len(ps))
    summary = {"iteration": it, "target_resolution_A": res_A, "halves": {}}
    sums, gmms = [], {}
    for half, source in zip(HALVES, _gmm_sources(inputs, previous, it)):
        index = np.flatnonzero(ps.half_set == half)
        check_abort(should_abort)
        fit_progress = Progress(FIT_STEPS, f"iteration {it}, half {half}: GMM fit",
                                unit="steps", interval_s=PROGRESS_EVERY_S)
        gmm, info = half_gmm(inputs, source, res_A, opts.seed * 1000 + it * 10 + half, half,
                             progress=fit_progress, should_abort=should_abort)
        log.info(f"iteration {it}, half {half}: GMM of {info['n_gauss']} Gaussians at "
                 f"{res_A:.2f} A (fit residual {info['fit_residual']:.3g})")
        label = f"iteration {it}, half {half}"
        work = HalfWork(AlignerSpec(gmm, res_A, opts.alignment(), inputs.pivot_A,
                                    region_weight(inputs, gmm)),
                        inputs.box, inputs.apix, PAD, label)
        progress = Progress(len(index), f"{label}: align", interval_s=PROGRESS_EVERY_S)
        chunks: list = []
        sums.append(_half_sums(inputs, executor, work, ps, index, reader, progress,
                               should_abort, chunks))
        rate = len(index) / max(progress.finish(), 1e-9)
        for part, poses in chunks:
            rotation[part], shift[part] = poses.rotation, poses.shift_A
            score0[part], score1[part] = poses.score_start, poses.score_end
        summary["halves"][str(half)] = {**info, "particles_per_s": rate}
        gmms[half] = gmm
    check_abort(should_abort)
    maps = _maps(inputs, sums)
    summary.update(map_figures(inputs, maps))
    summary.update(pose_change_figures(ps, rotation, shift, inputs.apix, score0, score1))
    summary["seconds"] = time.monotonic() - t0
    return IterationState(rotation, shift, score0, score1, maps, summary), gmms


def _gmm_sources(inputs: RunInputs, previous: IterationState, it: int):
    """The map each half's GMM is fitted to: the user's reference in the first iteration,
    else that half's previous map weighted by the previous FSC."""
    for half_map in previous.maps.halves:
        if it == 1 and inputs.reference is not None:
            yield inputs.reference
        else:
            yield wiener_weighted(half_map, reference_fsc(inputs.options, previous.maps))


def pose_change_figures(before: ParticleSet, rotation: np.ndarray, shift_A: np.ndarray,
                        apix: float, score0: np.ndarray, score1: np.ndarray) -> dict:
    """Mean, sd and median of the rotation and shift changes, and the mean scores."""
    angle = angle_between_deg(before.rotation, rotation)
    shift = np.linalg.norm(shift_A - before.shift_A, axis=1) / apix
    return {"angle_change_deg": _spread(angle), "shift_change_px": _spread(shift),
            "score_start_mean": float(score0.mean()), "score_end_mean": float(score1.mean())}


def _spread(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "sd": float(values.std()),
            "median": float(np.median(values))}

"""The gold-standard refinement loop.

Per iteration and per half: a GMM from that half's map only, every particle
of that half refined against it, then both halves reconstructed at the new
poses, the FSC measured, and the next iteration's target resolution taken
from it. The halves never see each other's particles, maps or GMMs: the
only place they meet is the FSC.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..align.refine_particles import refine_particles
from ..data.images import ParticleImages
from ..data.particles import ParticleSet
from ..data.rotations import angle_between_deg
from ..data.symmetry_groups import symmetry_order
from ..errors import Aborted, InputError
from ..fourier.filters import apply_shell_weights
from ..fourier.masks import auto_mask
from ..gmm.fit import gmm_from_map, gmm_from_model
from ..gmm.focus import OUTSIDE_MODES, fraction_inside, mask_centroid_A
from ..gmm.model import GMM
from ..io.atomic import write_text_atomic
from ..io.expand import expand_particles
from ..io.gmm_files import write_gmm, write_pdb
from ..io.mrc import read_map, read_mask, write_map
from ..io.particles import read_particles, require_poses, write_particles
from ..io.stack import StackReader
from ..io.tables import read_fsc_csv, write_fsc_csv
from ..reconstruct.backproject import reconstruct_halves
from ..reconstruct.fsc import fsc_curve, masked_fsc_corrected, resolution_at
from ..reconstruct.symmetry import symmetrize_maps
from ..report.plots import plot_fsc, plot_pose_changes
from ..report.progress import Progress
from .options import RefineOptions, RefineResult
from .run_directory import IterationState, RunDirectory

HALVES = (1, 2)


class _LogStream:
    """A file-like object that hands whole lines to ``log`` (progress lines included)."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                self.log(line)

    def flush(self) -> None:
        pass


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


def wiener_weighted(half_map: np.ndarray, fsc: np.ndarray) -> np.ndarray:
    """A half map with each shell scaled by its FSC: the Wiener estimate of the truth.

    A half map's shell SNR is FSC / (1 - FSC), so SNR / (1 + SNR) = FSC is
    the filter that minimises its expected squared error to the truth; the
    result's amplitudes are what a particle's signal should show at each
    ring (truth x sqrt(FSC) in expectation), so rings where the halves
    barely agree can be aligned against without their noise steering.
    Unweighted, a half map's noise at the resolution limit went into the
    GMM and each half's particles aligned to their own noise: the poses
    drifted from 2.7 to 3.7 degrees over five iterations at SNR 0.05.
    """
    return apply_shell_weights(half_map, np.clip(np.asarray(fsc, float), 0.0, 1.0))


def check_options(options: RefineOptions) -> None:
    """Raise InputError (one line) for an option no run can use; before any file is written."""
    options.validate()


def _model_coordinates(path: str, box: int, apix: float) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of a PDB in our frame (Angstrom from the box centre) and their weights.

    A PDB written by gmmrefine says where the box centre is; any other is
    taken in the map's frame (as fitted in ChimeraX to our MRC, origin at
    the map's corner), so the box centre is subtracted.
    """
    from ..simulate.pdb import _CENTRE_TAG, read_pdb
    from ..simulate.render import atom_amplitude

    model = read_pdb(path)
    coords = model.coords_A
    if _CENTRE_TAG not in Path(path).read_text():
        coords = coords - (box // 2) * apix
    return coords, atom_amplitude(model.element)


class _Refinement:
    """One run: the inputs, read and checked once, and the steps of the loop."""

    def __init__(self, particles: Path, out_dir: Path, options: RefineOptions,
                 log: Callable[[str], None], should_abort: Callable[[], bool]):
        check_options(options)
        self.options, self.log, self.should_abort = options, log, should_abort
        ps = read_particles(particles, root=options.root)
        require_poses(ps)
        ps, note = ps.with_halves()
        if note:
            log(note)
        # Focus on one region of a symmetric particle: each copy of the particle
        # aligns that region on its own, so the set is expanded and the maps are
        # C1 until symmetry is re-imposed on the results.
        self.expanded = options.mask is not None and symmetry_order(options.sym) > 1
        if self.expanded:
            ps = expand_particles(ps, options.sym)
            log(f"focused run with {options.sym}: particles expanded to {len(ps)} copies")
        self.recon_sym = "C1" if self.expanded else options.sym
        self.ps = ps
        self.box, self.apix = ps.common_box_apix()
        n1, n2 = ps.split_balance()
        log(f"{len(ps)} particles (half 1: {n1}, half 2: {n2}), box {self.box}, "
            f"{self.apix:.4g} A/px, symmetry {options.sym}")
        # Read everything that can fail before the first file is written.
        self.mask = None if options.mask is None else read_mask(options.mask, self.box, self.apix)
        # A focused alignment turns the region about its own centre: about the box centre,
        # a domain's turn is also a slide, which the shift prior holds back.
        self.pivot_A = None if self.mask is None else mask_centroid_A(self.mask, self.apix)
        self.reference = None
        if options.reference is not None:
            self.reference, ref_apix = read_map(options.reference)
            if self.reference.shape[0] != self.box or abs(ref_apix - self.apix) > 1e-3 * self.apix:
                raise InputError(f"{options.reference}: box {self.reference.shape[0]}, "
                                 f"{ref_apix:.4g} A/px; expected box {self.box} at {self.apix:.4g} "
                                 "A/px like the particles")
        self.model = (None if options.model is None
                      else _model_coordinates(options.model, self.box, self.apix))
        self.run = RunDirectory(out_dir, options, Path(particles), len(ps))
        self.stream = _LogStream(log)

    # --- steps -----------------------------------------------------------------------
    def _progress(self, total: int, label: str) -> Progress:
        return Progress(total, label, stream=self.stream, interval_s=5.0)

    def _reconstruct(self, ps: ParticleSet, reader: StackReader, it: int):
        progress = self._progress(len(ps), f"iteration {it}: reconstruct")
        maps = reconstruct_halves(ps, reader, progress=progress, sym=self.recon_sym)
        progress.finish()
        d = self.run.iteration_dir(it)
        for name, volume in zip(("half1.mrc", "half2.mrc", "map.mrc"), maps):
            write_map(d / name, volume, self.apix)
        fsc = fsc_curve(maps[0], maps[1])
        extra = {}
        summary = {"resolution_A": resolution_at(fsc, self.box, self.apix, 0.143)}
        if self.mask is not None:
            masked = masked_fsc_corrected(maps[0], maps[1], self.mask, self.apix)
            extra = {"fsc_masked_corrected": masked.corrected}
            summary["masked_resolution_A"] = resolution_at(masked.corrected, self.box, self.apix)
        write_fsc_csv(d / "fsc.csv", fsc, self.box, self.apix, extra=extra)
        return fsc, summary

    def _gmm(self, it: int, half: int, res_A: float) -> tuple[GMM, dict]:
        """This half's GMM at res_A, from this half's map (or the reference / model)."""
        opts = self.options
        seed = opts.seed * 1000 + it * 10 + half
        if it == 1 and self.reference is not None:
            source = self.reference
        else:
            source, _ = read_map(self.run.iteration_dir(it - 1) / f"half{half}.mrc")
            source = wiener_weighted(source, _read_fsc(self.run.iteration_dir(it - 1)))
        if self.model is not None:
            coords, weights = self.model
            gmm, residual = gmm_from_model(coords, weights, source, self.apix, res_A,
                                           np.random.default_rng(seed))
            info = {"n_gauss": len(gmm), "fit_residual": residual, "seeded_from": "model"}
        else:
            gmm, report = gmm_from_map(source, self.apix, res_A, n=opts.n_gauss, seed=seed,
                                       mask=_solvent_mask(source, self.apix))
            info = {"n_gauss": len(gmm), "fit_residual": report.residual_end,
                    "mean_nn_A": report.mean_nn_A, "seeded_from": "map"}
        if self.mask is not None:
            # Focus: the region keeps its detail; the rest is widened or faded (--outside).
            info["mass_in_mask"] = fraction_inside(gmm, self.mask, self.apix)
            info["pivot_A"] = [round(float(v), 3) for v in self.pivot_A]
            try:
                gmm = OUTSIDE_MODES[opts.outside](gmm, self.mask, self.apix)
            except ValueError as err:
                raise InputError(f"{opts.mask}: {err} of half {half}'s map; expected a mask "
                                 "over part of the particle") from None
        d = self.run.iteration_dir(it)
        write_gmm(gmm, d / f"gmm_half{half}.npz")
        write_pdb(gmm, d / f"gmm_half{half}.pdb", box=self.box, apix=self.apix)
        return gmm, info

    def _iteration(self, it: int, ps: ParticleSet, reader: StackReader, res_A: float
                   ) -> IterationState:
        opts, t0 = self.options, time.monotonic()
        rotation, shift = ps.rotation.copy(), ps.shift_A.copy()
        score0, score1 = np.zeros(len(ps)), np.zeros(len(ps))
        summary = {"iteration": it, "target_resolution_A": res_A, "halves": {}}
        self.run.iteration_dir(it).mkdir(parents=True, exist_ok=True)
        for half in HALVES:
            index = np.flatnonzero(ps.half_set == half)
            gmm, info = self._gmm(it, half, res_A)
            self.log(f"iteration {it}, half {half}: GMM of {info['n_gauss']} Gaussians at "
                     f"{res_A:.2f} A (fit residual {info['fit_residual']:.3g})")
            images = ParticleImages(ps.subset(index), reader)
            progress = self._progress(len(index), f"iteration {it}, half {half}: align")
            # The prior describes the input poses' accuracy, so it stays on them: centred
            # on the last iteration's poses it let them drift (2.38 -> 2.53 deg measured).
            centre = (self.ps.rotation[index], self.ps.shift_A[index])
            r, s, a, b = refine_particles(gmm, images, res_A, opts.alignment(), prior_poses=centre,
                                          pivot_A=self.pivot_A, progress=progress,
                                          should_abort=self.should_abort)
            rate = len(index) / max(progress.finish(), 1e-9)
            rotation[index], shift[index], score0[index], score1[index] = r, s, a, b
            summary["halves"][str(half)] = {**info, "particles_per_s": rate}
        moved = ps.with_poses(rotation, shift)
        fsc, figures = self._reconstruct(moved, reader, it)
        summary.update(figures)
        summary.update(self._pose_figures(ps, moved, it, score0, score1))
        summary["seconds"] = time.monotonic() - t0
        return IterationState(rotation, shift, score0, score1, summary)

    def _pose_figures(self, before: ParticleSet, after: ParticleSet, it: int,
                      score0: np.ndarray, score1: np.ndarray) -> dict:
        angle = angle_between_deg(before.rotation, after.rotation)
        shift = np.linalg.norm(after.shift_A - before.shift_A, axis=1) / self.apix
        plot_pose_changes(self.run.iteration_dir(it) / "pose_changes.png", angle, shift,
                          f"iteration {it}: change from the previous poses")
        return {"angle_change_deg": {"mean": float(angle.mean()), "sd": float(angle.std()),
                                     "median": float(np.median(angle))},
                "shift_change_px": {"mean": float(shift.mean()), "sd": float(shift.std()),
                                    "median": float(np.median(shift))},
                "score_start_mean": float(score0.mean()), "score_end_mean": float(score1.mean())}

    def _reimpose_symmetry(self, maps: list[np.ndarray], out: Path
                           ) -> tuple[list[np.ndarray], dict[str, float]]:
        """The focused region's density copied to every symmetry mate, the FSC of the result
        (written to out/fsc.csv), and its resolutions, unmasked and within the mask."""
        self.log(f"re-imposing {self.options.sym} on the maps, weighted by the mask")
        maps = symmetrize_maps(maps, self.options.sym, weight=self.mask)
        fsc = fsc_curve(maps[0], maps[1])
        masked = masked_fsc_corrected(maps[0], maps[1], self.mask, self.apix)
        write_fsc_csv(out / "fsc.csv", fsc, self.box, self.apix,
                      extra={"fsc_masked_corrected": masked.corrected})
        return maps, {"resolution_A": resolution_at(fsc, self.box, self.apix, 0.143),
                      "masked_resolution_A": resolution_at(masked.corrected, self.box, self.apix)}

    # --- the loop ----------------------------------------------------------------------
    def run_all(self) -> RefineResult:
        opts, run = self.options, self.run
        curves, summaries = {}, []
        with StackReader(self.ps.root, source=self.ps.source) as reader:
            if not run.is_done(0):
                self.log("iteration 0: reconstructing the half maps at the imported poses")
                _, figures = self._reconstruct(self.ps, reader, 0)
                n = len(self.ps)
                run.save_iteration(0, IterationState(self.ps.rotation, self.ps.shift_A,
                                                     np.zeros(n), np.zeros(n),
                                                     {"iteration": 0, **figures}))
            state = run.load_iteration(0)
            summaries.append(state.summary)
            curves["start"] = _read_fsc(run.iteration_dir(0))
            self.log(f"start: {state.summary['resolution_A']:.2f} A (FSC 0.143)")
            ps = self.ps
            for it in range(1, opts.iterations + 1):
                prev_fsc = curves[list(curves)[-1]]
                res_A = (opts.res_A if it == 1 and opts.res_A is not None
                         else target_resolution(prev_fsc, self.box, self.apix, opts.align_fsc))
                if run.is_done(it):
                    state = run.load_iteration(it)
                    self.log(f"iteration {it}: already done ({state.summary['resolution_A']:.2f} A)")
                else:
                    state = self._iteration(it, ps, reader, res_A)
                    run.save_iteration(it, state)
                    masked = state.summary.get("masked_resolution_A")
                    self.log(f"iteration {it}: {state.summary['resolution_A']:.2f} A (FSC 0.143)"
                             + ("" if masked is None else f", {masked:.2f} A within the mask")
                             + f", median change {state.summary['angle_change_deg']['median']:.2f} "
                             f"deg, {state.summary['shift_change_px']['median']:.2f} px")
                ps = ps.with_poses(state.rotation, state.shift_A)
                summaries.append(state.summary)
                curves[f"iteration {it}"] = _read_fsc(run.iteration_dir(it))
                run.write_record(summaries)
        return self._finish(ps, curves, summaries)

    def _finish(self, ps: ParticleSet, curves: dict, summaries: list[dict]) -> RefineResult:
        run, last = self.run, self.run.iteration_dir(len(summaries) - 1)
        out = run.path
        write_particles(ps, out / "particles.star")
        write_particles(ps, out / "particles.cs")
        maps = [read_map(last / name)[0] for name in ("half1.mrc", "half2.mrc", "map.mrc")]
        final = summaries[-1]
        if self.expanded:
            maps, final = self._reimpose_symmetry(maps, out)
        else:
            # The last iteration's table, masked columns included when there is a mask.
            write_text_atomic(out / "fsc.csv", (last / "fsc.csv").read_text())
        for name, volume in zip(("half1.mrc", "half2.mrc", "map.mrc"), maps):
            write_map(out / name, volume, self.apix)
        plot_fsc(out / "fsc.png", {**curves, **_masked_curve(out)}, self.box, self.apix)
        angle = angle_between_deg(self.ps.rotation, ps.rotation)
        shift = np.linalg.norm(ps.shift_A - self.ps.shift_A, axis=1) / self.apix
        plot_pose_changes(out / "pose_changes.png", angle, shift, "change from the input poses")
        resolutions = [s["resolution_A"] for s in summaries]
        # The start and the iterations are C1 reconstructions of the expanded set; the
        # final maps (re-imposed symmetry) have their own FSC, and that is what is reported.
        extra = {"start_resolution_A": resolutions[0], "resolution_A": final["resolution_A"]}
        if self.expanded:
            extra["expanded_c1_resolution_A"] = resolutions[-1]
            self.log(f"after re-imposing {self.options.sym}: {final['resolution_A']:.2f} A "
                     f"(C1, expanded: {resolutions[-1]:.2f} A)")
        if self.mask is not None:
            extra.update(start_masked_resolution_A=summaries[0]["masked_resolution_A"],
                         masked_resolution_A=final["masked_resolution_A"])
            self.log(f"within the mask (corrected): {extra['start_masked_resolution_A']:.2f} A -> "
                     f"{extra['masked_resolution_A']:.2f} A")
        run.write_record(summaries, extra)
        self.log(f"resolution {resolutions[0]:.2f} A -> {final['resolution_A']:.2f} A; "
                 f"results in {out}")
        return RefineResult(out, out / "particles.star", out / "particles.cs", out / "half1.mrc",
                            out / "half2.mrc", out / "map.mrc", out / "fsc.csv",
                            resolutions[0], final["resolution_A"], resolutions[1:])


def _solvent_mask(volume: np.ndarray, apix: float) -> np.ndarray | None:
    """Where the particle is (an automatic mask), so no Gaussian is spent on solvent noise.

    RELION flattens the solvent of its references for the same reason.
    Measured: without it a quarter of a GMM fitted to a half map at SNR 0.1
    sat on solvent noise, and on the 1,000-particle rigid set (SNR 0.05) the
    median error after two iterations was 2.55 deg against 2.42 deg with it.
    None (fit everywhere) for a map too noisy to find the particle in.
    """
    try:
        return auto_mask(volume, apix)
    except ValueError:
        return None


def _read_fsc(iteration_dir: Path, column: str = "fsc") -> np.ndarray:
    return read_fsc_csv(iteration_dir / "fsc.csv", column)


def _masked_curve(iteration_dir: Path) -> dict[str, np.ndarray]:
    """{label: masked corrected FSC} of an iteration when it has one, else {}."""
    try:
        return {"final, within the mask": _read_fsc(iteration_dir, "fsc_masked_corrected")}
    except KeyError:
        return {}


def run_refinement(particles: Path, out_dir: Path, options: RefineOptions, *,
                   log: Callable[[str], None] = print,
                   should_abort: Callable[[], bool] = lambda: False) -> RefineResult:
    """Refine the poses of PARTICLES (STAR or .cs) into ``out_dir``; resumes a stopped run.

    Raises InputError (one line) on bad input before anything is written, and
    Aborted when ``should_abort()`` turns true (polled between batches).
    """
    if options.patches is not None:
        from .patch_run import run_patch_refinement

        return run_patch_refinement(particles, out_dir, options, log=log,
                                    should_abort=should_abort)
    return _Refinement(Path(particles), Path(out_dir), options, log, should_abort).run_all()


__all__ = ["run_refinement", "RefineOptions", "RefineResult", "Aborted", "next_target_resolution"]

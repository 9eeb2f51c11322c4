"""Patch-by-patch refinement: global refinement, then one focused run per patch, then a composite.

DIR/global/         the global refinement (an ordinary run directory)
DIR/patch_NN/       patch NN's focused run from the global poses;
                    particles.star its own refined poses
DIR/patch_masks/    patch_NN.mrc, each patch's mask (a stage's input, kept
                    outside the stage's own directory)
DIR/half1.mrc, half2.mrc, map.mrc, fsc.csv, fsc.png
                    the composite halves (each from that half's patch maps
                    only), their FSC against the global run's
DIR/patches.csv     per patch: centre, radius, Gaussians, resolution within
                    its mask before (global poses) and after its focused run
DIR/comparison.png  that table as bars, and the start and final maps
DIR/slices.png      the start and composite maps' central slices (and with a
                    model, DIR/qscore.csv and qscore.png: its Q-scores in both)
DIR/run.json        options, patches and figures

Every step resumes: the global and patch runs are run directories of their
own, the patches follow deterministically from the global run's GMMs, and
the composite is cheap and always remade.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..fourier.filters import lowpass
from ..fourier.masks import auto_mask
from ..gmm.focus import mask_values_at
from ..gmm.patches import Patch, patch_mask, patches_from_centres
from ..io.atomic import write_text_atomic
from ..io.mrc import read_map, read_mask, write_map
from ..io.particles import read_particles
from ..reconstruct.fsc import fsc_curve
from ..report.plots import plot_fsc
from ..report.slices import plot_run_comparison
from .composite import FocusedRun, composite_of
from .executor import IN_PROCESS, ChunkExecutor
from .inputs import read_model
from .logfile import LOGFILE_PDF, write_patch_logfile
from .options import RESUMABLE, RefineOptions, RefineResult, run_identity
from .ownership import claimed
from .refinement import refine_single
from .run_directory import (
    FSC_PNG,
    RECORD,
    RunLayout,
    read_final_maps,
    run_files,
    write_maps,
)
from .run_figures import write_run_figures

log = logging.getLogger(__name__)

PATCHES_CSV = "patches.csv"
COMPARISON_PNG = "comparison.png"
GLOBAL_DIR = "global"
MASKS_DIR = "patch_masks"


def _patch_centres(global_run: RunLayout, iterations: int, region: np.ndarray | None,
                   apix: float) -> np.ndarray:
    """Centres of both halves' final GMMs inside ``region`` (mask >= 0.5).

    Without a region, the particle's own: an automatic mask of the global
    map, since a GMM fitted to a noisy map also places Gaussians on solvent
    noise (a quarter of them, measured on simulated data at SNR 0.1), and
    patches spread over those would be patches of nothing. Both halves'
    centres together, so the patches are the same for both halves and favour
    neither; at the resolution of a patch mask (a sphere several nanometres
    wide) this shares nothing the FSC could be fooled by.
    """
    centres = np.concatenate([global_run.load_gmm(iterations, h).centres_A for h in (1, 2)])
    if region is None:
        volume, _ = read_map(global_run.files.map)
        region = auto_mask(volume, apix)
    return centres[mask_values_at(region, centres, apix) >= 0.5]


def _write_table(path: Path, patches: list[Patch], before: list[float], after: list[float]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["patch", "centre_x_A", "centre_y_A", "centre_z_A", "radius_A", "n_gauss",
                     "resolution_before_A", "resolution_after_A"])
    for p, b, a in zip(patches, before, after):
        writer.writerow([p.index, *(f"{c:.2f}" for c in p.centre_A), f"{p.radius_A:.2f}",
                         p.n_gauss, f"{b:.3f}", f"{a:.3f}"])
    write_text_atomic(path, buffer.getvalue())


def _patch_rows(patches: list[Patch], before: list[float], after: list[float]
                ) -> list[dict[str, str]]:
    """logfile.pdf's table: one row per patch, as patches.csv has it."""
    return [{"patch": str(p.index), "centre (A)": ", ".join(f"{c:.1f}" for c in p.centre_A),
             "radius (A)": f"{p.radius_A:.1f}", "Gaussians": str(p.n_gauss),
             "before (A)": f"{b:.2f}", "after (A)": f"{a:.2f}"}
            for p, b, a in zip(patches, before, after)]


class _PatchRefinement:
    def __init__(self, particles: Path, out_dir: Path, options: RefineOptions,
                 should_abort: Callable[[], bool], executor: ChunkExecutor = IN_PROCESS):
        self.particles, self.out, self.options = particles, out_dir, options
        self.should_abort, self.executor = should_abort, executor
        ps = read_particles(particles, root=options.root)
        self.box, self.apix = ps.output_grid(options.box, options.apix)
        self.region = (None if options.mask is None
                       else read_mask(options.mask, self.box, self.apix))

    def _refine(self, particles: Path, out: Path, options: RefineOptions) -> RefineResult:
        return refine_single(particles, out, options, should_abort=self.should_abort,
                             executor=self.executor)

    def run(self) -> RefineResult:
        # The patch run owns the top directory; each stage owns its own below it.
        # More global iterations would change every patch's start: not resumable here.
        resumable = RESUMABLE - {"iterations"}
        with claimed(self.out, run_identity(self.particles, self.options, resumable)) as record:
            return self._run(record)

    def _run(self, record: dict) -> RefineResult:
        opts = self.options
        log.info(f"patch refinement: global refinement first ({opts.iterations} iterations)")
        # The mask, if any, chooses where patches go; the global run is not focused.
        glob = self._refine(self.particles, self.out / GLOBAL_DIR, _single_run(opts, mask=None))
        centres = _patch_centres(RunLayout(glob.out_dir), opts.iterations, self.region, self.apix)
        patches = patches_from_centres(centres, opts.patches, seed=opts.seed)
        masks = [patch_mask(p, self.box, self.apix) for p in patches]
        results = [self._patch(p, m, glob) for p, m in zip(patches, masks)]
        return self._composite(record, glob, patches, masks, results)

    def _patch(self, patch: Patch, mask: np.ndarray, glob: RefineResult) -> RefineResult:
        out = self.out / f"patch_{patch.index:02d}"
        # The mask is the stage's input, so it lives beside the stage's directory, not in it.
        mask_path = self.out / MASKS_DIR / f"patch_{patch.index:02d}.mrc"
        if not mask_path.exists():
            write_map(mask_path, mask, self.apix)
        log.info(f"patch {patch.index}/{self.options.patches}: {patch.n_gauss} Gaussians, centre "
                 f"({', '.join(f'{c:.1f}' for c in patch.centre_A)}) A, radius "
                 f"{patch.radius_A:.1f} A; {self.options.patch_iterations} focused iterations")
        # Each patch starts from the global poses and refines its own copy of them.
        # The global run's files name the stacks from the project directory (the
        # working directory, as RELION has it: gmmrefine.io.particles), so no root is
        # needed to find them.
        patch_opts = _single_run(self.options, mask=str(mask_path),
                                 iterations=self.options.patch_iterations, res_A=None,
                                 reference=None, root=None)
        return self._refine(glob.particles_star, out, patch_opts)

    def _composite(self, record: dict, glob: RefineResult, patches: list[Patch],
                   masks: list[np.ndarray], results: list[RefineResult]) -> RefineResult:
        fills = read_final_maps(glob.out_dir)
        before = [r.start_masked_resolution_A for r in results]
        after = [r.masked_resolution_A for r in results]
        focused = [FocusedRun(f"patch {p.index}", r.out_dir, read_final_maps(r.out_dir), m, b, a)
                   for p, r, m, b, a in zip(patches, results, masks, before, after)]
        # The composite is computed as `gmmrefine composite` computes it (pipeline.composite).
        composite = composite_of(focused, fills[:2], self.apix)
        maps, res = composite.maps, composite.resolution_A
        write_maps(self.out, maps, self.apix)
        global_fsc = fsc_curve(fills[0], fills[1])
        plot_fsc(self.out / FSC_PNG, {"global": global_fsc, "composite": maps.fsc,
                                      "composite, within the patches": maps.fsc_masked},
                 self.box, self.apix)
        _write_table(self.out / PATCHES_CSV, patches, before, after)
        logfile = write_patch_logfile(
            self.out / LOGFILE_PDF, _patch_rows(patches, before, after),
            {"global": global_fsc, "composite": maps.fsc,
             "composite, within the patches": maps.fsc_masked}, self.box, self.apix,
            [f"composite {res:.2f} A, global {glob.resolution_A:.2f} A (FSC 0.143); each "
             f"patch's own run, with its logfile.pdf, in {self.out}/patch_NN"])
        self._comparison(glob, patches, masks, before, after, lowpass(maps.full, self.apix, res))
        model = (None if self.options.model is None
                 else read_model(self.options.model, self.box, self.apix))
        write_run_figures(self.out, self.apix, (RunLayout(glob.out_dir).iteration_map(0),
                                                glob.start_resolution_A), (maps.full, res), model)
        record = {**record, "global_resolution_A": glob.resolution_A,
                  "composite_resolution_A": res,
                  "composite_masked_resolution_A": composite.masked_resolution_A,
                  "patches": [{**p.as_dict(), "resolution_before_A": b, "resolution_after_A": a}
                              for p, b, a in zip(patches, before, after)]}
        write_text_atomic(self.out / RECORD, json.dumps(record, indent=2) + "\n")
        for p, b, a in zip(patches, before, after):
            log.info(f"patch {p.index}: {b:.2f} A -> {a:.2f} A within its mask")
        log.info(f"composite: {res:.2f} A (global {glob.resolution_A:.2f} A); results in {self.out}")
        files = run_files(self.out)
        return RefineResult(self.out, glob.particles_star, glob.particles_cs, files.half1,
                            files.half2, files.map, files.fsc_csv, glob.start_resolution_A, res,
                            [*glob.resolutions_A, res], logfile_pdf=logfile,
                            figures={"FSC": self.out / FSC_PNG,
                                     "patches before and after": self.out / COMPARISON_PNG})

    def _comparison(self, glob: RefineResult, patches: list[Patch], masks: list[np.ndarray],
                    before: list[float], after: list[float], final: np.ndarray) -> None:
        # Each map filtered to its own resolution, so the slices show what it resolves.
        start = lowpass(RunLayout(glob.out_dir).iteration_map(0), self.apix,
                        glob.start_resolution_A)
        table = [{"patch": f"patch {p.index}", "before_A": b, "after_A": a}
                 for p, b, a in zip(patches, before, after)]
        plot_run_comparison(self.out / COMPARISON_PNG, table, start, final, self.apix,
                            masks=masks, title="patch-by-patch refinement")


def _single_run(options: RefineOptions, **changes) -> RefineOptions:
    """Options of one stage: no patch settings, so a stage's run directory does not
    depend on them (a global run resumes under any --patch-iter)."""
    plain = RefineOptions()
    return dataclasses.replace(options, patches=None, patch_iterations=plain.patch_iterations,
                               **changes)


def run_patch_refinement(particles: Path, out_dir: Path, options: RefineOptions, *,
                         should_abort: Callable[[], bool] = lambda: False,
                         executor: ChunkExecutor = IN_PROCESS) -> RefineResult:
    """Global refinement, ``options.patches`` focused patch runs, and their composite map.

    Returns a RefineResult whose maps and FSC are the composite's and whose
    particle files are the global run's (each patch's are in DIR/patch_NN/). ``executor``
    runs every stage's particle chunks.
    """
    return _PatchRefinement(Path(particles), Path(out_dir), options, should_abort,
                            executor).run()

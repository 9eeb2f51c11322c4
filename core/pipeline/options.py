"""Options of a refinement run and what a run returns: the engine's public contract.

Adapters (RELION External job, CryoSPARC) and the CLI build a RefineOptions,
call gmmrefine.refine.run_refinement and read a RefineResult; nothing else
of the engine's inside is theirs to touch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..align.options import AlignOptions


@dataclass(frozen=True)
class RefineOptions:
    """Every parameter of a refinement run (all land in DIR/run.json).

    iterations   gold-standard iterations (GMM -> poses -> reconstruction -> FSC)
    res_A        target resolution of the first iteration; None: from the FSC
                 of the maps reconstructed at the imported poses
    n_gauss      Gaussians per GMM; None: so their spacing suits the resolution
    model        PDB or mmCIF file to seed the GMMs (one Gaussian per non-H
                 atom; io/model.py says which atoms and in what frame)
    reference    map for the first iteration's GMMs instead of the half maps
                 (low-passed to res_A; both halves use it)
    mask         soft mask (MRC, values in [0, 1]) of the region to focus on:
                 Gaussians outside it are widened or faded (``outside``), the
                 pose moves turn about its centre, and the FSC
                 within it is reported with RELION's phase-randomisation correction
    outside      what a focused run does with Gaussians outside the mask:
                 "widen" (width / (0.25 + 0.75 M), amplitude kept: the rest of
                 the particle keeps its coarse shape) or "fade" (amplitude x
                 M, width kept: the region alone is aligned)
    low_cut_A    lowest resolution used by the FRC
    batch        particles aligned at once (bounds GPU memory)
    chunk        particles read from disk at once (bounds host memory)
    steps        optimiser steps per particle and iteration; None: 4 Gauss-Newton
                 steps for "cc", 10 Adam steps for "frc"
    step_deg, step_px  largest move of one step (rotation, degrees; shift,
                 pixels of the original images); None: 2 deg / 1 px for
                 Gauss-Newton, 0.5 deg / 0.25 px for Adam
    coarse_passes  alignment passes over coarser rings before the target's
                 (each at twice the next one's resolution, none coarser than
                 half of low_cut_A), so a pose far off comes within reach of
                 the fine rings; "cc" only
    prior_deg, prior_px  rms error expected of the input poses (rotation,
                 degrees; shift, pixels): a Gaussian prior around each
                 particle's pose for "cc"; None: no prior
    align_fsc    next target resolution: where the FSC falls below this;
                 None: 0.9 x where it falls below 0.1 (the reference
                 implementation's rule)
    score        "cc": correlation of the CTF-weighted particle with the
                 projection over all rings at once (near the likelihood
                 optimum under white noise); "frc": the paper's FRC of the
                 phase-flipped particle, every ring normalised and weighted alike
    sym          point group (RELION's names: C1, Cn, Dn, T, O, I): global
                 refinement reconstructs with it; focused and patch runs
                 expand the particles to C1 (one copy per operator) and
                 re-impose it on their maps by mask-weighted averaging
    patches      patch-by-patch refinement: after the global iterations, K
                 focused runs (k-means patches of the GMM) and their composite
                 map; None: global refinement only. With a mask, patches are
                 placed inside it and the global run is not focused.
    patch_iterations  focused iterations per patch
    root         directory image paths resolve against (default: as the host does)
    seed         random seed (k-means seeding, model randomisation)
    """

    iterations: int = 5
    res_A: float | None = None
    n_gauss: int | None = None
    model: str | None = None
    reference: str | None = None
    mask: str | None = None
    outside: str = "widen"
    low_cut_A: float = 25.0
    batch: int = 16
    chunk: int = 2000
    steps: int | None = None
    step_deg: float | None = None
    step_px: float | None = None
    score: str = "cc"
    coarse_passes: int = 0
    prior_deg: float | None = 3.0
    prior_px: float | None = 1.0
    align_fsc: float | None = None
    sym: str = "C1"
    patches: int | None = None
    patch_iterations: int = 3
    root: str | None = None
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def alignment(self) -> AlignOptions:
        """The part of these options the per-particle alignment reads."""
        return AlignOptions(**{f.name: getattr(self, f.name)
                               for f in dataclasses.fields(AlignOptions)})


@dataclass
class RefineResult:
    """Where a finished run put its outputs, and its resolutions."""

    out_dir: Path
    particles_star: Path
    particles_cs: Path
    half1: Path
    half2: Path
    map: Path
    fsc_csv: Path
    start_resolution_A: float
    resolution_A: float
    resolutions_A: list[float] = field(default_factory=list)   # one per finished iteration
    # With a mask: the corrected FSC's resolution within it, at the start and at the end.
    start_masked_resolution_A: float | None = None
    masked_resolution_A: float | None = None

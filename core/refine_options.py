"""Options of a refinement run and what a run returns: the engine's public contract.

Adapters (RELION External job, CryoSPARC) and the CLI build a RefineOptions,
call gmmrefine.refine.run_refinement and read a RefineResult; nothing else
of the engine's inside is theirs to touch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path


class Aborted(Exception):
    """The run was asked to stop (e.g. RELION's abort button); finished work is kept."""


@dataclass(frozen=True)
class RefineOptions:
    """Every parameter of a refinement run (all land in DIR/run.json).

    iterations   gold-standard iterations (GMM -> poses -> reconstruction -> FSC)
    res_A        target resolution of the first iteration; None: from the FSC
                 of the maps reconstructed at the imported poses
    n_gauss      Gaussians per GMM; None: so their spacing suits the resolution
    model        PDB file to seed the GMMs (one Gaussian per non-H atom)
    reference    map for the first iteration's GMMs instead of the half maps
                 (low-passed to res_A; both halves use it)
    mask         soft mask (MRC, values in [0, 1]): masked FSC reported with
                 RELION's phase-randomisation correction
    low_cut_A    lowest resolution used by the FRC
    batch        particles aligned at once (bounds GPU memory)
    chunk        particles read from disk at once (bounds host memory)
    steps        optimiser steps per particle and iteration; None: 4 Gauss-Newton
                 steps for "cc", 10 Adam steps for "frc"
    step_deg, step_px  largest move of one step (rotation, degrees; shift,
                 pixels of the original images); None: 2 deg / 1 px for
                 Gauss-Newton, 0.5 deg / 0.25 px for Adam
    prior_deg, prior_px  rms error expected of the input poses (rotation,
                 degrees; shift, pixels): a Gaussian prior around each
                 particle's pose for "cc"; None: no prior
    prior_centre "input": every iteration's prior sits on the imported poses
                 (what the prior describes); "previous": on the last
                 iteration's poses
    reference_filter  how a half map is weighted shell by shell before its
                 GMM is fitted: "wiener" (FSC, the estimate of the truth
                 given that half map), "cref" (sqrt(2 FSC / (1 + FSC)))
    align_fsc    next target resolution: where the FSC falls below this;
                 None: 0.9 x where it falls below 0.1 (the reference
                 implementation's rule)
    score        "cc": correlation of the CTF-weighted particle with the
                 projection over all rings at once (near the likelihood
                 optimum under white noise); "frc": the paper's FRC of the
                 phase-flipped particle, every ring normalised and weighted alike
    root         directory image paths resolve against (default: as the host does)
    seed         random seed (k-means seeding, model randomisation)
    """

    iterations: int = 5
    res_A: float | None = None
    n_gauss: int | None = None
    model: str | None = None
    reference: str | None = None
    mask: str | None = None
    low_cut_A: float = 25.0
    batch: int = 16
    chunk: int = 20000
    steps: int | None = None
    step_deg: float | None = None
    step_px: float | None = None
    score: str = "cc"
    prior_deg: float | None = 3.0
    prior_px: float | None = 1.0
    prior_centre: str = "input"
    reference_filter: str = "wiener"
    align_fsc: float | None = None
    root: str | None = None
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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

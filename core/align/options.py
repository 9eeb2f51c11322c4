"""Settings of the alignment, free of TensorFlow so front ends can read their defaults.

The optimisers' defaults are written here once: the option table
(gmmrefine.pipeline.options) quotes them in its help and the aligners fall
back to them when an option is left unset.
"""

from __future__ import annotations

from dataclasses import dataclass

SCORES = ("cc", "frc")


@dataclass(frozen=True)
class AlignSettings:
    """Adam on the FRC (the paper's optimiser): step count and full step lengths."""

    steps: int = 10
    step_deg: float = 0.5
    step_px: float = 0.25
    beta1: float = 0.9
    beta2: float = 0.999


@dataclass(frozen=True)
class GaussNewtonSettings:
    """Gauss-Newton on the correlation: iterations and the largest move one step may
    make (a trust region)."""

    iterations: int = 4
    max_step_deg: float = 2.0
    max_step_px: float = 1.0     # pixels of the original images
    damping: float = 1e-3        # Levenberg-Marquardt: relative to the diagonal


@dataclass(frozen=True)
class AlignOptions:
    """What aligning particles needs to know of a run's options (gmmrefine.pipeline.options
    declares them, with their defaults and units, for every front end).

    ``steps``, ``step_deg`` and ``step_px`` left None take the optimiser's own
    defaults (:class:`GaussNewtonSettings` for "cc", :class:`AlignSettings` for
    "frc"); the prior and coarse passes exist for "cc" only.
    """

    score: str
    low_cut_A: float
    batch: int
    chunk: int
    steps: int | None
    step_deg: float | None
    step_px: float | None
    coarse_passes: int
    prior_deg: float | None
    prior_px: float | None

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score {self.score!r}; expected one of {SCORES}")
        if self.score == "frc" and (self.coarse_passes or self.has_prior):
            raise ValueError("the frc score has neither a prior nor coarse passes")

    @property
    def has_prior(self) -> bool:
        return self.prior_deg is not None and self.prior_px is not None

"""Each half's reference for an iteration: a GMM from that half's map only.

The map is the previous iteration's half map, Wiener-weighted by the FSC
that came with it (in memory, at full precision), or the reference map the
user gave for the first iteration; the GMM is fitted inside an automatic
mask of that map, seeded from a model when there is one, and focused by the
run's mask.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError
from ..fourier.filters import apply_shell_weights
from ..fourier.masks import auto_mask
from ..gmm.fit import gmm_from_map, gmm_from_model
from ..gmm.focus import OUTSIDE_MODES, fraction_inside, mask_values_at
from ..gmm.model import GMM
from .inputs import RunInputs


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


def solvent_mask(volume: np.ndarray, apix: float) -> np.ndarray | None:
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


def half_gmm(inputs: RunInputs, source: np.ndarray, res_A: float, seed: int,
             half: int, *, progress=None, should_abort: Callable[[], bool] = lambda: False
             ) -> tuple[GMM, dict]:
    """This half's GMM at ``res_A`` fitted to ``source`` (its map, already weighted), focused
    by the run's mask; and what the fit did, for the record.

    ``progress`` (a gmmrefine.report.progress.Progress over the fit's steps) and
    ``should_abort`` go to the fit (gmmrefine.gmm.fit.fit_gmm)."""
    fit = {"progress": progress, "should_abort": should_abort}
    opts, apix = inputs.options, inputs.apix
    if inputs.model is not None:
        coords, weights = inputs.model
        gmm, residual = gmm_from_model(coords, weights, source, apix, res_A,
                                       np.random.default_rng(seed), **fit)
        info = {"n_gauss": len(gmm), "fit_residual": residual, "seeded_from": "model"}
    else:
        gmm, report = gmm_from_map(source, apix, res_A, n=opts.n_gauss, seed=seed,
                                   mask=solvent_mask(source, apix), **fit)
        info = {"n_gauss": len(gmm), "fit_residual": report.residual_end,
                "mean_nn_A": report.mean_nn_A, "seeded_from": "map"}
    if inputs.mask is None:
        return gmm, info
    # Focus: the region keeps its detail; the rest is widened, faded or held (--outside).
    info["mass_in_mask"] = fraction_inside(gmm, inputs.mask, apix)
    info["pivot_A"] = [round(float(v), 3) for v in inputs.pivot_A]
    try:
        return OUTSIDE_MODES[opts.outside](gmm, inputs.mask, apix), info
    except ValueError as err:
        raise InputError(f"{opts.mask}: {err} of half {half}'s map; expected a mask over part "
                         "of the particle") from None


def region_weight(inputs: RunInputs, gmm: GMM) -> np.ndarray | None:
    """Each Gaussian's share in the region that moves, for ``--outside hold`` (the mask at
    its centre; the aligner holds the rest at the particle's held pose); else None."""
    if inputs.mask is None or inputs.options.outside != "hold":
        return None
    return mask_values_at(inputs.mask, gmm.centres_A, inputs.apix)

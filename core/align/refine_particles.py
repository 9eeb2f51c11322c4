"""Refine the poses of one half's particles against that half's GMM.

Particles are read from disk in chunks (host memory bounded by the chunk
size) and aligned in batches (device memory bounded by the batch size). The
function sees one GMM and one set of particles: the caller hands it a half's
particles with the same half's GMM, and nothing here could mix them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.images import ParticleImages, crop_box_for_resolution
from ..errors import Aborted
from ..gmm.model import GMM
from .adam import align_batch
from .gauss_newton import gauss_newton_batch, make_spectrum_and_jacobian
from .kernel import apply_pose_moves, make_pose_objective
from .options import AlignOptions, AlignSettings, GaussNewtonSettings
from .rings import gather_rings, ring_pixels_for_resolution


def alignment_grid(box: int, apix: float, res_A: float) -> tuple[int, float]:
    """The Fourier-cropped box and its pixel size that reach res_A."""
    crop = crop_box_for_resolution(box, apix, res_A)
    return crop, apix * box / crop


def _aligner(gmm: GMM, pixels, apix: float, options: AlignOptions, shift_scale: float,
             step_scale: float = 1.0) -> Callable:
    """The batch optimiser for the score: Gauss-Newton for "cc", Adam for "frc".

    The correlation is a least-squares fit in disguise, where Gauss-Newton
    converges in 2-3 steps; the per-ring normalised FRC is not, so it keeps
    the paper's gradient ascent. ``step_scale`` widens the step limits (a
    coarse pass may stride further).
    """
    if options.score == "cc":
        plain = GaussNewtonSettings()
        settings = GaussNewtonSettings(
            iterations=plain.iterations if options.steps is None else options.steps,
            max_step_deg=step_scale * (options.step_deg or plain.max_step_deg),
            max_step_px=step_scale * (options.step_px or plain.max_step_px))
        jacobian = make_spectrum_and_jacobian(gmm, pixels, apix)
        prior = prior_sd(options, shift_scale)
        return lambda rot, org, data, ctf, centre_rot, centre_org, jump_to=None: (
            gauss_newton_batch(jacobian, rot, org, data, apix, settings, shift_scale, ctf=ctf,
                               prior_sd=prior, prior_rotation=centre_rot,
                               prior_origin_A=centre_org, jump_to=jump_to))
    plain = AlignSettings()
    settings = AlignSettings(steps=plain.steps if options.steps is None else options.steps,
                             step_deg=options.step_deg or plain.step_deg,
                             step_px=options.step_px or plain.step_px)
    objective = make_pose_objective(gmm, pixels, apix)
    # The paper's FRC path has no prior (AlignOptions refuses one), so no centre either.
    return lambda rot, org, data, ctf, *_, jump_to=None: align_batch(
        objective, rot, org, data, settings, shift_scale)


def coarse_resolutions(res_A: float, options: AlignOptions) -> list[float]:
    """Ring limits (A) of the coarse passes before the target's, coarsest first."""
    limits: list[float] = []
    for k in range(options.coarse_passes, 0, -1):
        limit = min(res_A * 2 ** k, options.low_cut_A / 2)
        if limit > res_A and (not limits or limit < limits[-1]):
            limits.append(limit)
    return limits


def prior_sd(options: AlignOptions, shift_scale: float) -> np.ndarray | None:
    """Per-move prior sd: rms angle spread over 3 axes, rms shift over 2 (grid pixels)."""
    if not options.has_prior:
        return None
    return np.array([options.prior_deg / np.sqrt(3.0)] * 3
                    + [options.prior_px * shift_scale / np.sqrt(2.0)] * 2)


def refine_particles(gmm: GMM, images: ParticleImages, res_A: float, options: AlignOptions, *,
                     prior_poses: tuple[np.ndarray, np.ndarray] | None = None,
                     pivot_A: np.ndarray | None = None,
                     progress=None, should_abort: Callable[[], bool] = lambda: False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """New poses of every particle of ``images`` (rotation (n,3,3), shift_A (n,2)),
    with each particle's score before and after.

    ``prior_poses`` (rotation, shift_A) centre the prior (default: the
    particles' current poses). ``pivot_A`` (x, y, z): the point the pose
    moves turn about (default the box centre); the shift prior then holds
    that point's image, not the box centre's.
    """
    ps = images.particles
    crop, crop_apix = alignment_grid(images.box, images.apix, res_A)
    pixels = ring_pixels_for_resolution(crop, crop_apix, max(res_A, 2 * crop_apix),
                                        options.low_cut_A)
    pivot = np.zeros(3) if pivot_A is None else np.asarray(pivot_A, float)
    if np.any(pivot):
        gmm = GMM(gmm.centres_A - pivot, gmm.amplitudes, gmm.widths_A)
    shift_scale = images.apix / crop_apix
    align = _aligner(gmm, pixels, crop_apix, options, shift_scale)
    # Coarse passes read the same cropped spectra, fewer rings of them.
    coarse = []
    for limit in coarse_resolutions(res_A, options):
        px = ring_pixels_for_resolution(crop, crop_apix, limit, options.low_cut_A)
        coarse.append((px, _aligner(gmm, px, crop_apix, options, shift_scale, step_scale=2.0)))
    n = len(ps)
    rotation = ps.rotation.copy()
    shift = origin_about_pivot(rotation, ps.shift_A, pivot)
    centre_rot, centre_shift = (rotation.copy(), shift.copy()) if prior_poses is None else (
        prior_poses[0], origin_about_pivot(prior_poses[0], prior_poses[1], pivot))
    score0, score1 = np.zeros(n), np.zeros(n)
    for lo in range(0, n, options.chunk):
        index = np.arange(lo, min(n, lo + options.chunk))
        # "cc" compares the particle with the CTF-modulated projection (the
        # likelihood's own comparison under white noise); "frc" flips
        # phases and ignores CTF amplitudes, as the paper does.
        spectra, ctf, _ = images.spectra(index, box_out=crop, center=False,
                                         phase_flip=options.score == "frc")
        data = gather_rings(spectra, pixels)
        ctf_rings = gather_rings(ctf, pixels).real if options.score == "cc" else None
        coarse_rings = [(gather_rings(spectra, px), gather_rings(ctf, px).real, aligner)
                        for px, aligner in coarse]
        del spectra, ctf
        for b in range(0, len(index), options.batch):
            if should_abort():
                raise Aborted("stopped on request")
            batch, rows = index[b:b + options.batch], slice(b, b + options.batch)
            jump = _coarse_search(coarse_rings, rows, rotation[batch], shift[batch],
                                  centre_rot[batch], centre_shift[batch], crop_apix)
            result = align(rotation[batch], shift[batch], data[rows],
                           None if ctf_rings is None else ctf_rings[rows],
                           centre_rot[batch], centre_shift[batch], jump_to=jump)
            rotation[batch], shift[batch] = apply_pose_moves(rotation[batch], shift[batch],
                                                        result.dtheta_deg, result.dshift_px,
                                                        crop_apix)
            score0[batch], score1[batch] = result.score_start, result.score_best
            if progress is not None:
                progress.update(len(batch))
    return rotation, origin_about_pivot(rotation, shift, -pivot), score0, score1


def _coarse_search(coarse_rings: list, rows: slice, rotation: np.ndarray, shift: np.ndarray,
                   centre_rot: np.ndarray, centre_shift: np.ndarray, apix: float
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """The batch's poses after the coarse passes, coarsest first; None without any."""
    if not coarse_rings:
        return None
    for data, ctf, aligner in coarse_rings:
        result = aligner(rotation, shift, data[rows], ctf[rows], centre_rot, centre_shift)
        rotation, shift = apply_pose_moves(rotation, shift, result.dtheta_deg, result.dshift_px,
                                           apix)
    return rotation, shift


def origin_about_pivot(rotation: np.ndarray, origin_A: np.ndarray, pivot_A: np.ndarray
                       ) -> np.ndarray:
    """The origin that, for a model moved by -pivot_A, puts every point where (rotation,
    origin_A) put it: image(x) = (A x)_xy - o = (A (x - p))_xy - (o - (A p)_xy)."""
    return np.asarray(origin_A, float) - np.einsum("nij,j->ni", rotation, pivot_A)[:, :2]

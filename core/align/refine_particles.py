"""Refine the poses of one half's particles against that half's GMM.

Particles are read from disk in chunks (host memory bounded by the chunk
size) and aligned in batches (device memory bounded by the batch size).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.images import ParticleImages, crop_box_for_resolution
from ..data.optics import has_magnification, mag_matrix
from ..errors import Aborted
from ..gmm.focus import split_region
from ..gmm.model import GMM
from .adam import align_batch
from .gauss_newton import gauss_newton_batch, make_spectrum_and_jacobian
from .kernel import apply_pose_moves, held_spectrum, make_pose_objective
from .options import AlignOptions, AlignSettings, GaussNewtonSettings
from .rings import gather_rings, ring_pixels_for_resolution


def alignment_grid(box: int, apix: float, res_A: float) -> tuple[int, float]:
    """The Fourier-cropped box and its pixel size that reach res_A."""
    crop = crop_box_for_resolution(box, apix, res_A)
    return crop, apix * box / crop


def _aligner(gmm: GMM, pixels, apix: float, options: AlignOptions, shift_scale: float,
             step_scale: float = 1.0, mag: np.ndarray | None = None,
             held: bool = False) -> Callable:
    """The batch optimiser for the score: Gauss-Newton for "cc", Adam for "frc".

    The correlation is a least-squares fit in disguise, where Gauss-Newton
    converges in 2-3 steps; the per-ring normalised FRC is not, so it keeps
    the paper's gradient ascent. ``step_scale`` widens the step limits (a
    coarse pass may stride further); ``mag`` is the images' magnification;
    ``held``: each call brings the spectrum of a part the pose does not move.
    """
    if options.score == "cc":
        plain = GaussNewtonSettings()
        settings = GaussNewtonSettings(
            iterations=plain.iterations if options.steps is None else options.steps,
            max_step_deg=step_scale * (options.step_deg or plain.max_step_deg),
            max_step_px=step_scale * (options.step_px or plain.max_step_px))
        jacobian = make_spectrum_and_jacobian(gmm, pixels, apix, mag)
        prior = prior_sd(options, shift_scale)
        return lambda rot, org, data, ctf, centre_rot, centre_org, jump_to=None, held=None: (
            gauss_newton_batch(jacobian, rot, org, data, apix, settings, shift_scale, ctf=ctf,
                               prior_sd=prior, prior_rotation=centre_rot,
                               prior_origin_A=centre_org, jump_to=jump_to, held=held))
    plain = AlignSettings()
    settings = AlignSettings(steps=plain.steps if options.steps is None else options.steps,
                             step_deg=options.step_deg or plain.step_deg,
                             step_px=options.step_px or plain.step_px)
    objective = make_pose_objective(gmm, pixels, apix, mag=mag, held=held)
    # The paper's FRC path has no prior (AlignOptions refuses one), so no centre either.
    return lambda rot, org, data, ctf, *_, jump_to=None, held=None: align_batch(
        objective, rot, org, data, settings, shift_scale, held=held)


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


class _GridAligner:
    """Alignment of the images of one grid and magnification: the Fourier-cropped box
    that reaches the target, its rings, the compiled optimisers and coarse passes.
    ``held``: the part of the model held at each particle's input pose (box-centred,
    RELION's convention), or None."""

    def __init__(self, gmm: GMM, box: int, apix: float, mag: np.ndarray | None, res_A: float,
                 options: AlignOptions, held: GMM | None = None):
        self.options, self.mag, self.held = options, mag, held
        self.crop, self.crop_apix = alignment_grid(box, apix, res_A)
        self.pixels = ring_pixels_for_resolution(self.crop, self.crop_apix,
                                                 max(res_A, 2 * self.crop_apix), options.low_cut_A)
        shift_scale = apix / self.crop_apix
        has_held = held is not None
        self._align = _aligner(gmm, self.pixels, self.crop_apix, options, shift_scale, mag=mag,
                               held=has_held)
        # Coarse passes read the same cropped spectra, fewer rings of them.
        self._coarse = []
        for limit in coarse_resolutions(res_A, options):
            px = ring_pixels_for_resolution(self.crop, self.crop_apix, limit, options.low_cut_A)
            self._coarse.append((px, _aligner(gmm, px, self.crop_apix, options, shift_scale,
                                              step_scale=2.0, mag=mag, held=has_held)))

    def _held(self, pixels, held_poses: tuple[np.ndarray, np.ndarray] | None
              ) -> np.ndarray | None:
        """The held part's spectra at ``pixels`` for these particles, or None."""
        if self.held is None:
            return None
        return held_spectrum(self.held, held_poses[0], held_poses[1], pixels, self.crop_apix,
                             self.mag, self.options.batch)

    def align(self, images: ParticleImages, index: np.ndarray, rotation: np.ndarray,
              shift: np.ndarray, centre_rot: np.ndarray, centre_shift: np.ndarray,
              raw: np.ndarray | None, progress, should_abort: Callable[[], bool],
              held_poses: tuple[np.ndarray, np.ndarray] | None = None):
        """Poses and scores of particles ``index`` from their start (origins about the pivot);
        ``held_poses`` (rotation, origin_A about the box centre) where the held part stays."""
        options = self.options
        # "cc" compares the particle with the CTF-modulated projection (the
        # likelihood's own comparison under white noise); "frc" flips
        # phases and ignores CTF amplitudes, as the paper does.
        spectra, ctf, _ = images.spectra(index, box_out=self.crop, center=False,
                                         phase_flip=options.score == "frc", raw=raw)
        premultiplied = images.premultiplied(index)
        if premultiplied.any():
            # Data already multiplied by the CTF hold CTF^2 times the projection.
            ctf[premultiplied] = ctf[premultiplied] ** 2
        data = gather_rings(spectra, self.pixels)
        ctf_rings = gather_rings(ctf, self.pixels).real if options.score == "cc" else None
        held = self._held(self.pixels, held_poses)
        coarse_rings = [(gather_rings(spectra, px), gather_rings(ctf, px).real, aligner,
                         self._held(px, held_poses)) for px, aligner in self._coarse]
        del spectra, ctf
        n = len(index)
        score0, score1 = np.zeros(n), np.zeros(n)
        for b in range(0, n, options.batch):
            if should_abort():
                raise Aborted("stopped on request")
            rows = slice(b, b + options.batch)
            jump = _coarse_search(coarse_rings, rows, rotation[rows], shift[rows],
                                  centre_rot[rows], centre_shift[rows], self.crop_apix)
            result = self._align(rotation[rows], shift[rows], data[rows],
                                 None if ctf_rings is None else ctf_rings[rows],
                                 centre_rot[rows], centre_shift[rows], jump_to=jump,
                                 held=None if held is None else held[rows])
            rotation[rows], shift[rows] = apply_pose_moves(rotation[rows], shift[rows],
                                                           result.dtheta_deg, result.dshift_px,
                                                           self.crop_apix)
            score0[rows], score1[rows] = result.score_start, result.score_best
            if progress is not None:
                progress.update(len(score0[rows]))
        return rotation, shift, score0, score1


class ParticleAligner:
    """Aligns particles of one half against that half's GMM at one target resolution.

    Built once per GMM and iteration; :meth:`align` then serves any number
    of chunks. Each image grid and magnification (merged optics groups) gets
    its own Fourier-cropped box, rings and compiled optimisers, made when its
    first particles arrive. It sees one GMM: the caller hands it a half's
    particles with the same half's GMM, and nothing here could mix them.

    Parameters
    ----------
    gmm
        This half's GMM (Angstrom from the box centre).
    res_A
        Target resolution: rings from ``options.low_cut_A`` to here, on the
        Fourier-cropped box that reaches it.
    options
        Score, optimiser settings, prior, coarse passes, batch size.
    pivot_A
        (x, y, z) the pose moves turn about (default the box centre); the
        shift prior then holds that point's image, not the box centre's.
    region_weight
        Per Gaussian, its share in the region that moves (``--outside hold``,
        gmm.focus.split_region): the rest of each Gaussian stays at the
        particle's held pose. None: the whole GMM moves.
    """

    def __init__(self, gmm: GMM, res_A: float, options: AlignOptions,
                 pivot_A: np.ndarray | None = None, region_weight: np.ndarray | None = None):
        self.options, self.res_A = options, res_A
        self.held = None
        if region_weight is not None:
            gmm, self.held = split_region(gmm, region_weight)
        self.pivot = np.zeros(3) if pivot_A is None else np.asarray(pivot_A, float)
        if np.any(self.pivot):
            gmm = GMM(gmm.centres_A - self.pivot, gmm.amplitudes, gmm.widths_A)
        self.gmm = gmm
        self._grids: dict = {}

    def _grid_aligner(self, group) -> _GridAligner:
        mag = mag_matrix(group) if has_magnification(group) else None
        key = (group.box, group.apix, None if mag is None else tuple(mag.ravel()))
        if key not in self._grids:
            self._grids[key] = _GridAligner(self.gmm, group.box, group.apix, mag, self.res_A,
                                            self.options, self.held)
        return self._grids[key]

    def align(self, images: ParticleImages, index: np.ndarray, *,
              prior_poses: tuple[np.ndarray, np.ndarray] | None = None,
              held_poses: tuple[np.ndarray, np.ndarray] | None = None,
              raw: np.ndarray | None = None, progress=None,
              should_abort: Callable[[], bool] = lambda: False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """New poses of particles ``index`` of ``images`` (rotation (n,3,3), shift_A (n,2)),
        starting from their current poses, with each one's score before and after.

        ``prior_poses`` (rotation, shift_A) of these particles centre the prior
        (default: their current poses); ``held_poses`` (rotation, shift_A) where the
        held part of the model stays (default: the prior's centre); ``raw``: their
        :meth:`ParticleImages.raw_spectra`, when the caller has read them already
        (all on one image grid then). Raises :class:`gmmrefine.errors.Aborted`
        between batches once ``should_abort()`` is true.
        """
        index = np.asarray(index, np.int64).reshape(-1)
        ps = images.particles
        prior_rot, prior_shift = ((ps.rotation[index], ps.shift_A[index]) if prior_poses is None
                                  else prior_poses)
        held_rot, held_shift = (prior_rot, prior_shift) if held_poses is None else held_poses
        rotation, shift = ps.rotation[index].copy(), ps.shift_A[index].copy()
        score0, score1 = np.zeros(len(index)), np.zeros(len(index))
        groups = ps.optics_index[index]
        parts: dict[int, tuple[_GridAligner, list]] = {}
        for g in np.unique(groups):
            aligner = self._grid_aligner(ps.optics[g])
            parts.setdefault(id(aligner), (aligner, []))[1].append(np.flatnonzero(groups == g))
        for aligner, members in parts.values():
            rows = np.sort(np.concatenate(members))
            part_raw = raw if raw is None or len(rows) == len(index) else raw[rows]
            mag = aligner.mag
            start = origin_about_pivot(rotation[rows], shift[rows], self.pivot, mag)
            centre = origin_about_pivot(prior_rot[rows], prior_shift[rows], self.pivot, mag)
            rot, moved, s0, s1 = aligner.align(images, index[rows], rotation[rows], start,
                                               np.array(prior_rot[rows]), centre, part_raw,
                                               progress, should_abort,
                                               (held_rot[rows], held_shift[rows]))
            rotation[rows], shift[rows] = rot, origin_about_pivot(rot, moved, -self.pivot, mag)
            score0[rows], score1[rows] = s0, s1
        return rotation, shift, score0, score1


def refine_particles(gmm: GMM, images: ParticleImages, res_A: float, options: AlignOptions, *,
                     prior_poses: tuple[np.ndarray, np.ndarray] | None = None,
                     pivot_A: np.ndarray | None = None,
                     progress=None, should_abort: Callable[[], bool] = lambda: False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """New poses of every particle of ``images`` (rotation (n,3,3), shift_A (n,2)),
    with each particle's score before and after.

    Particles are read in chunks of ``options.chunk`` (host memory) and aligned
    in batches of ``options.batch`` (device memory). ``prior_poses``
    (rotation, shift_A) of all the particles centre the prior (default:
    their current poses); ``pivot_A`` as for :class:`ParticleAligner`.
    """
    aligner = ParticleAligner(gmm, res_A, options, pivot_A)
    n = len(images)
    out = (np.zeros((n, 3, 3)), np.zeros((n, 2)), np.zeros(n), np.zeros(n))
    for lo in range(0, n, options.chunk):
        index = np.arange(lo, min(n, lo + options.chunk))
        prior = None if prior_poses is None else (prior_poses[0][index], prior_poses[1][index])
        result = aligner.align(images, index, prior_poses=prior, progress=progress,
                               should_abort=should_abort)
        for total, part in zip(out, result):
            total[index] = part
    return out


def _coarse_search(coarse_rings: list, rows: slice, rotation: np.ndarray, shift: np.ndarray,
                   centre_rot: np.ndarray, centre_shift: np.ndarray, apix: float
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """The batch's poses after the coarse passes, coarsest first; None without any."""
    if not coarse_rings:
        return None
    for data, ctf, aligner, held in coarse_rings:
        result = aligner(rotation, shift, data[rows], ctf[rows], centre_rot, centre_shift,
                         held=None if held is None else held[rows])
        rotation, shift = apply_pose_moves(rotation, shift, result.dtheta_deg, result.dshift_px,
                                           apix)
    return rotation, shift


def origin_about_pivot(rotation: np.ndarray, origin_A: np.ndarray, pivot_A: np.ndarray,
                       mag: np.ndarray | None = None) -> np.ndarray:
    """The origin that, for a model moved by -pivot_A, puts every point where (rotation,
    origin_A) put it: image(x) = M^T (A x)_xy - o = M^T (A (x - p))_xy - (o - M^T (A p)_xy),
    M the images' magnification (identity when None)."""
    turned = np.einsum("nij,j->ni", rotation, pivot_A)[:, :2]
    if mag is not None:
        turned = turned @ mag
    return np.asarray(origin_A, float) - turned

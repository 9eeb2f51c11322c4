"""Gauss-Newton pose refinement for the correlation score.

Maximising the correlation of the data D with the projection M(p) is the
same as minimising |D - alpha M(p)|^2 over the pose p and a scale alpha, a
least-squares problem: so Gauss-Newton applies, and local refinement, which
starts close, converges in a few steps where gradient ascent needs tens.

The Jacobian costs little: a pose move only moves the projected centres, so
every derivative spectrum is the GMM's spectrum with the amplitudes weighted
by a rotated coordinate. With v = A c (rotated centres), T_j the term of
Gaussian j and F_w = sum_j w_j T_j, at the current pose (k in Fourier pixels,
L the box length in Angstrom, rotations in radians, shifts in pixels of the
aligned grid, o' = o + apix d):

    dF/dtheta_x = (2 pi i / L) ky F_z        dF/dtheta_y = -(2 pi i / L) kx F_z
    dF/dtheta_z = (2 pi i / L)(kx F_y - ky F_x)
    dF/dd_x = (2 pi i apix / L) kx F_1       dF/dd_y = (2 pi i apix / L) ky F_1

so one separable product with four amplitude sets (1, v_x, v_y, v_z) gives
the spectrum and all five derivatives: four times a plain projection, no
backward pass.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.rotations import turn_rotvec_deg
from ..device import tf
from ..gmm.model import GMM
from .adam import AlignedBatch
from .kernel import (
    TWO_PI,
    _factor_pair,
    apply_pose_moves,
    gmm_tensors,
    magnified_gmm,
    n_frequencies,
    product_to_pixels,
)
from .options import GaussNewtonSettings
from .rings import RingPixels


def make_spectrum_and_jacobian(gmm: GMM, pixels: RingPixels, apix: float,
                               mag: np.ndarray | None = None) -> Callable:
    """A compiled ``f(rotation (n,3,3), origin_A (n,2)) -> (F (n,M), J (n,M,5))``, complex64.

    J's columns: d/dtheta_x, d/dtheta_y, d/dtheta_z (degrees, camera frame,
    A' = R(theta) A) and d/dd_x, d/dd_y (pixels of this grid). With a
    magnification M the centres land at M^T (A c)_xy - o
    (kernel.projected_centres_A), so the rotation columns take M k where the
    plain ones take k; the shift columns keep k (the origin is the image's).
    """
    centres, amplitudes, widths = gmm_tensors(magnified_gmm(gmm, mag))
    m = np.eye(2) if mag is None else np.asarray(mag, float)
    length_A = pixels.box * apix
    n_freq = n_frequencies(pixels)
    freq2 = np.tile(np.arange(n_freq, dtype=np.float32), 2)
    omega2 = tf.constant(TWO_PI / length_A * freq2, tf.float32)
    quarter2 = tf.constant(np.repeat(np.float32([0.0, np.pi / 2]), n_freq))
    decay2 = tf.exp(-2.0 * np.pi ** 2 * (widths[:, None] * freq2 / length_A) ** 2)
    kx = tf.constant(pixels.kx, tf.float32)
    ky = tf.constant(pixels.ky, tf.float32)
    mkx = tf.constant(m[0, 0] * pixels.kx + m[0, 1] * pixels.ky, tf.float32)
    mky = tf.constant(m[1, 0] * pixels.kx + m[1, 1] * pixels.ky, tf.float32)
    mag_t = None if mag is None else tf.constant(m, tf.float32)
    i2pi_L = tf.complex(0.0, TWO_PI / length_A)
    deg = np.float32(np.pi / 180.0)
    spec = [tf.TensorSpec([None, 3, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32)]

    def cplx(x):
        return tf.complex(x, 0.0)

    @tf.function(input_signature=spec)
    def spectrum_and_jacobian(rotation, origin_A):
        v = tf.einsum("nij,mj->nmi", rotation, centres)                      # (n, N, 3)
        p = v[..., :2] if mag_t is None else tf.einsum("nmi,ij->nmj", v[..., :2], mag_t)
        p = p - origin_A[:, None, :]
        u = _factor_pair(p[..., 1], omega2, quarter2, decay2)                  # (n, N, 2F)
        x = _factor_pair(p[..., 0], omega2, quarter2, decay2)
        weights = amplitudes[None, :, None] * tf.concat([tf.ones_like(v[..., :1]), v], axis=-1)
        big = tf.reshape(weights[..., :, None] * x[..., None, :],
                         [tf.shape(x)[0], tf.shape(x)[1], 4 * 2 * n_freq])
        prod = tf.matmul(u, big, transpose_a=True)                             # (n, 2F, 8F)
        f = []
        for w in range(4):
            re, im = product_to_pixels(prod[:, :, w * 2 * n_freq:(w + 1) * 2 * n_freq],
                                       pixels, n_freq)
            f.append(tf.complex(re, im))
        f1, fx, fy, fz = f
        jac = tf.stack([i2pi_L * cplx(mky * deg) * fz,
                        -i2pi_L * cplx(mkx * deg) * fz,
                        i2pi_L * cplx(deg * 1.0) * (cplx(mkx) * fy - cplx(mky) * fx),
                        i2pi_L * cplx(kx * apix) * f1,
                        i2pi_L * cplx(ky * apix) * f1], axis=-1)
        return f1, jac

    return spectrum_and_jacobian


def _correlation(model: np.ndarray, data: np.ndarray) -> np.ndarray:
    cross = np.sum((model.conj() * data).real, axis=-1)
    norm = np.sqrt(np.sum(np.abs(model) ** 2, axis=-1) * np.sum(np.abs(data) ** 2, axis=-1))
    return cross / np.maximum(norm, np.finfo(np.float32).tiny)


def _moves_from(rotation0: np.ndarray, origin0: np.ndarray, rotation: np.ndarray,
                origin: np.ndarray, apix: float) -> np.ndarray:
    """(n, 5) moves (rotation vector, degrees; shift, grid pixels) taking pose 0 to pose."""
    turn = rotation @ np.transpose(rotation0, (0, 2, 1))
    return np.concatenate([turn_rotvec_deg(turn),
                           (origin - origin0) / apix], axis=1)


def gauss_newton_batch(spectrum_and_jacobian: Callable, rotation: np.ndarray,
                       origin_A: np.ndarray, data: np.ndarray, apix: float,
                       settings: GaussNewtonSettings, shift_scale: float = 1.0,
                       ctf: np.ndarray | None = None,
                       prior_sd: np.ndarray | None = None,
                       prior_rotation: np.ndarray | None = None,
                       prior_origin_A: np.ndarray | None = None,
                       jump_to: tuple[np.ndarray, np.ndarray] | None = None,
                       held: np.ndarray | None = None) -> AlignedBatch:
    """Refine a batch by Gauss-Newton on |D - alpha C M(p)|^2 / v, plus a Gaussian prior.

    ``ctf`` (n, M) modulates the projection (None: data already weighted);
    ``prior_sd`` (5,) is the prior's sd of each move (degrees, grid pixels),
    None for none; it is centred on ``prior_rotation`` / ``prior_origin_A``
    (default: the start pose), so a loop can keep it on the input poses
    while the start moves. v, the noise power per Fourier pixel, is
    estimated from each particle's residual at the start, which the noise
    dominates. Each particle keeps the pose with the best
    posterior it visited, starting with its own; a better posterior means a
    smaller residual, so the correlation never ends below its start.
    Moves are re-based after every step (the pose is updated and the next
    Jacobian taken at zero move), so they compose exactly as apply_pose_moves does.
    ``jump_to`` (rotation, origin_A): after scoring the start, continue from
    these poses (a coarser search's result); the start stays a candidate,
    so the guarantee above still holds against it. ``held`` (n, M): the
    spectrum of the part of each particle the pose does not move
    (kernel.held_spectrum), added to the model before the CTF; the Jacobian,
    being the moving part's, is unchanged.
    """
    rotation0 = np.asarray(rotation, float)
    origin0 = np.asarray(origin_A, float)
    rot, org = rotation0.copy(), origin0.copy()
    centre_rot = rotation0 if prior_rotation is None else np.asarray(prior_rotation, float)
    centre_org = origin0 if prior_origin_A is None else np.asarray(prior_origin_A, float)
    best_rot, best_org = rot.copy(), org.copy()
    precision = np.zeros(5) if prior_sd is None else 1.0 / np.asarray(prior_sd, float) ** 2
    score_start = best_score = best_cost = noise = None
    limit = np.array([settings.max_step_deg] * 3 + [settings.max_step_px * shift_scale] * 2)
    visits = settings.iterations + 1 + (jump_to is not None)
    for it in range(visits):
        model, jac = spectrum_and_jacobian(tf.constant(rot, tf.float32), tf.constant(org, tf.float32))
        model, jac = model.numpy().astype(np.complex128), jac.numpy().astype(np.complex128)
        if held is not None:
            model = model + held
        if ctf is not None:
            model, jac = model * ctf, jac * ctf[..., None]
        power = np.sum(np.abs(model) ** 2, axis=-1)
        # A particle is never the negative of a projection: a pose that anti-correlates
        # fits no better than no projection at all, so it cannot win over the start.
        cross = np.maximum(np.sum((model.conj() * data).real, axis=-1), 0.0)
        alpha = cross / np.maximum(power, 1e-30)
        residual = data - alpha[:, None] * model
        if noise is None:
            noise = np.maximum(np.mean(np.abs(residual) ** 2, axis=-1), 1e-30)
        moved = _moves_from(centre_rot, centre_org, rot, org, apix)
        cost = np.sum(np.abs(residual) ** 2, axis=-1) / noise + 0.5 * moved ** 2 @ precision
        score = _correlation(model, data)
        if score_start is None:
            score_start, best_score, best_cost = score.copy(), score.copy(), cost.copy()
        better = cost < best_cost
        best_rot[better], best_org[better] = rot[better], org[better]
        best_score[better], best_cost[better] = score[better], cost[better]
        if it == visits - 1:
            break
        if it == 0 and jump_to is not None:
            rot, org = (np.array(v, float) for v in jump_to)
            continue
        j = alpha[:, None, None] * jac
        jtj = 2.0 * np.einsum("nmi,nmj->nij", j.conj(), j).real / noise[:, None, None]
        jtr = 2.0 * np.einsum("nmi,nm->ni", j.conj(), residual).real / noise[:, None]
        jtj = jtj + settings.damping * np.eye(5) * np.einsum("nii->ni", jtj)[:, :, None]
        hessian = jtj + np.diag(precision) + 1e-30 * np.eye(5)
        step = np.linalg.solve(hessian, (jtr - moved * precision)[..., None])[..., 0]
        # The trust region: one step never moves further than the limits.
        scale = np.min(np.minimum(1.0, limit / np.maximum(np.abs(step), 1e-12)), axis=1)
        step = step * scale[:, None]
        rot, org = apply_pose_moves(rot, org, step[:, :3], step[:, 3:], apix)
    moves = _moves_from(rotation0, origin0, best_rot, best_org, apix)
    return AlignedBatch(moves[:, :3], moves[:, 3:], score_start, best_score)

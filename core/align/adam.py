"""Local pose refinement of a batch of particles against one GMM.

Each particle's pose moves by a small rotation (a rotation vector in degrees,
applied in the camera frame: A' = R(dtheta) A, so its z component is the
in-plane angle) and a shift (pixels), found by gradient ascent on the FRC.
The steps are Adam's (per-parameter normalised gradients, so the options are
plain step lengths in degrees and pixels), with the step length annealed from
its full value to a tenth over the steps: early steps correct the 2-3 degree
errors an upstream refinement leaves, late ones settle. Every step's FRC is
scored and each particle keeps the best pose seen, starting with its own:
no particle ever ends worse than it started.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..device import tf
from .options import AlignSettings


@dataclass
class AlignedBatch:
    """A batch's result: the moves that gave each particle its best FRC."""

    dtheta_deg: np.ndarray   # (n, 3) rotation vector applied as R(dtheta) A
    dshift_px: np.ndarray    # (n, 2) added to the origin, pixels of the aligned grid
    score_start: np.ndarray  # (n,) the score at the start pose
    score_best: np.ndarray   # (n,) the score at the returned pose


def _schedule(steps: int) -> np.ndarray:
    """Step-length factors: cosine from 1 to 0.1."""
    if steps <= 1:
        return np.ones(max(steps, 0))
    t = np.arange(steps) / (steps - 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + np.cos(np.pi * t))


def align_batch(objective, rotation: np.ndarray, origin_A: np.ndarray, data: np.ndarray,
                settings: AlignSettings, shift_scale: float = 1.0,
                held: np.ndarray | None = None) -> AlignedBatch:
    """Refine one batch: ``objective`` from gmmrefine.align.kernel.make_pose_objective.

    rotation (n, 3, 3) start poses; origin_A (n, 2) start origins; data (n, M)
    complex spectra at the objective's ring pixels. ``shift_scale`` converts
    pixels of the original images into pixels of the aligned grid (the
    options speak of the images the user knows). ``held`` (n, M): the spectrum
    of the part of each particle the pose does not move, for an objective made
    with ``held=True``.
    """
    n = len(rotation)
    rot = tf.constant(rotation, tf.float32)
    org = tf.constant(origin_A, tf.float32)
    dre = tf.constant(data.real, tf.float32)
    dim = tf.constant(data.imag, tf.float32)
    extra = () if held is None else (tf.constant(held.real, tf.float32),
                                     tf.constant(held.imag, tf.float32))
    params = np.zeros((n, 5))
    m = np.zeros((n, 5))
    v = np.zeros((n, 5))
    lengths = np.array([settings.step_deg] * 3 + [settings.step_px * shift_scale] * 2)
    best = np.zeros((n, 5))
    score_start = best_score = None
    factors = _schedule(settings.steps)
    for t in range(settings.steps + 1):
        frc, g_theta, g_shift = objective(rot, org, dre, dim,
                                          tf.constant(params[:, :3], tf.float32),
                                          tf.constant(params[:, 3:], tf.float32), *extra)
        frc = frc.numpy().astype(float)
        if score_start is None:
            score_start, best_score = frc.copy(), frc.copy()
        better = frc > best_score
        best[better] = params[better]
        best_score = np.maximum(best_score, frc)
        if t == settings.steps:
            break
        g = np.concatenate([g_theta.numpy(), g_shift.numpy()], axis=1).astype(float)
        m = settings.beta1 * m + (1 - settings.beta1) * g
        v = settings.beta2 * v + (1 - settings.beta2) * g * g
        m_hat = m / (1 - settings.beta1 ** (t + 1))
        v_hat = v / (1 - settings.beta2 ** (t + 1))
        params = params + factors[t] * lengths * m_hat / (np.sqrt(v_hat) + 1e-12)
    return AlignedBatch(best[:, :3], best[:, 3:], score_start, best_score)

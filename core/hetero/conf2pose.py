"""A particle's conformation turned into a pose: the frame in which its region stands still.

A particle whose decoded GMM has the region's Gaussians at x_j (its
conformation) and the neutral GMM at y_j shows the region as the neutral
region would look at another pose. If (R, t) takes the conformation's
region onto the neutral one (y ~ R x + t), the region of the image at pose
(A, o) is the neutral region at

    A' = A R^T,    o' = o + (A R^T t)_xy

(gmmrefine.data.rotations: a point c appears at (A c)_xy - o). Two ways to
find (R, t), both weighted by the mask at the neutral centres:

- ``kabsch``: the closed-form best rigid fit of the region's 3D centres
  (weighted Kabsch, batched SVD; exact when the region moves rigidly);
- ``adam``: the reference implementation's route, Adam on the 2D RMSD
  between the neutral region projected at the new pose and the
  conformation's region projected at the original pose, from the original
  pose, turning about the region's centre.
"""

from __future__ import annotations

import numpy as np

from ..align.kernel import rotvec_deg_to_matrix
from ..data.rotations import turn_matrix
from ..device import tf
from ..gmm.model import GMM


def kabsch(source: np.ndarray, target: np.ndarray, weights: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rigid (R, t) per particle minimising sum_j w_j |R s_j + t - y_j|^2.

    source (n, M, 3) or (M, 3); target (n, M, 3) or (M, 3); weights (M,) >= 0.
    Returns R (n, 3, 3) proper rotations and t (n, 3).
    """
    s = np.asarray(source, float)
    y = np.asarray(target, float)
    s, y = np.broadcast_arrays(s if s.ndim == 3 else s[None], y if y.ndim == 3 else y[None])
    w = np.asarray(weights, float) / np.sum(weights)
    s_mean = np.einsum("m,nmi->ni", w, s)
    y_mean = np.einsum("m,nmi->ni", w, y)
    cov = np.einsum("m,nmi,nmj->nij", w, y - y_mean[:, None], s - s_mean[:, None])
    u, _, vt = np.linalg.svd(cov)
    # A reflection is never a motion of a protein: flip the smallest axis instead.
    sign = np.sign(np.linalg.det(u @ vt))
    d = np.ones((len(cov), 3))
    d[:, 2] = np.where(sign == 0, 1.0, sign)
    rotation = u @ (d[:, :, None] * vt)
    return rotation, y_mean - np.einsum("nij,nj->ni", rotation, s_mean)


def poses_from_turns(rotation: np.ndarray, origin_A: np.ndarray, turn: np.ndarray,
                     translation_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A', o') = (A R^T, o + (A R^T t)_xy): the pose at which the neutral region looks as the
    conformation's region does at (A, o), for (R, t) taking conformation onto neutral."""
    new = np.asarray(rotation, float) @ np.transpose(turn, (0, 2, 1))
    shift = np.einsum("nij,nj->ni", new, np.asarray(translation_A, float))[:, :2]
    return new, np.asarray(origin_A, float) + shift


def region_rmsd_2d_A(neutral: np.ndarray, conformation: np.ndarray, weights: np.ndarray,
                     rot_new: np.ndarray, org_new: np.ndarray, rot_old: np.ndarray,
                     org_old: np.ndarray) -> np.ndarray:
    """(n,) weighted 2D RMSD (A) between the neutral region at the new pose and the
    conformation's region at the old pose, the quantity ``adam`` minimises."""
    a = np.einsum("nij,mj->nmi", rot_new[:, :2], neutral) - org_new[:, None]
    b = np.einsum("nij,nmj->nmi", rot_old[:, :2], conformation) - org_old[:, None]
    w = np.asarray(weights, float) / np.sum(weights)
    return np.sqrt(np.einsum("m,nm->n", w, np.sum((a - b) ** 2, axis=-1)))


def adam_poses(neutral: np.ndarray, conformation: np.ndarray, weights: np.ndarray,
               rotation: np.ndarray, origin_A: np.ndarray, *, steps: int = 30,
               step_deg: float = 1.0, step_A: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """New poses by Adam on the 2D region RMSD (the reference implementation's conversion).

    neutral (M, 3) and conformation (n, M, 3) the region's centres; moves turn
    about the region's weighted centre. The step lengths (degrees, Angstrom)
    anneal by a cosine to a tenth of themselves over ``steps``.
    """
    w = np.asarray(weights, float) / np.sum(weights)
    pivot = w @ np.asarray(neutral, float)
    rot0 = np.asarray(rotation, float)
    # The image of the pivot stays put unless the shift moves it.
    base = np.einsum("nij,j->ni", rot0, pivot)[:, :2] - origin_A
    target = tf.constant(np.einsum("nij,nmj->nmi", rot0[:, :2], conformation)
                         - np.asarray(origin_A, float)[:, None], tf.float32)
    around = tf.constant(np.asarray(neutral, float) - pivot, tf.float32)
    w_t = tf.constant(w, tf.float32)
    rot_t, base_t = tf.constant(rot0, tf.float32), tf.constant(base, tf.float32)

    @tf.function
    def loss_and_grad(params):
        with tf.GradientTape() as tape:
            tape.watch(params)
            turned = rotvec_deg_to_matrix(params[:, :3]) @ rot_t
            image = (tf.einsum("nij,mj->nmi", turned[:, :2], around)
                     + (base_t + params[:, 3:])[:, None])
            per_particle = tf.einsum("m,nm->n", w_t, tf.reduce_sum((image - target) ** 2, -1))
            total = tf.reduce_sum(per_particle)
        return per_particle, tape.gradient(total, params)

    n = len(rot0)
    params = np.zeros((n, 5))
    m, v = np.zeros_like(params), np.zeros_like(params)
    lengths = np.array([step_deg] * 3 + [step_A] * 2)
    best, best_loss = params.copy(), None
    for t in range(steps + 1):
        loss, grad = (x.numpy().astype(float) for x in loss_and_grad(tf.constant(params,
                                                                                 tf.float32)))
        if best_loss is None:
            best_loss = loss.copy()
        better = loss < best_loss
        best[better], best_loss[better] = params[better], loss[better]
        if t == steps:
            break
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        m_hat, v_hat = m / (1 - 0.9 ** (t + 1)), v / (1 - 0.999 ** (t + 1))
        factor = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t / max(steps - 1, 1)))
        params = params - factor * lengths * m_hat / (np.sqrt(v_hat) + 1e-12)
    turned = turn_matrix(best[:, :3]) @ rot0
    origin = np.einsum("nij,j->ni", turned, pivot)[:, :2] - base - best[:, 3:]
    return turned, origin


def overlap_fit(moving: GMM, fixed: GMM, moving_weights: np.ndarray,
                fixed_weights: np.ndarray, blur_A: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Rigid (R, t) placing ``moving`` onto ``fixed`` by maximising their density overlap.

    Two GMMs of one region fitted to two half maps have no Gaussian in
    common, so there is no correspondence to fit: the overlap integral of the
    two mixtures, sum_ij a_i b_j N(R c_i + t - d_j; 0, s_i^2 + s_j^2 + 2 blur^2),
    is smooth in (R, t) and largest where the densities coincide (iterative
    closest points slid one half's region 4 degrees along its surface,
    measured on the 20 A-tip set). Weights (the mask at each centre) scale the
    amplitudes; ``blur_A`` widens the basin. Starts from the identity: the
    halves come from one consensus run's frame.
    """
    from scipy.optimize import minimize

    a = np.asarray(moving.amplitudes) * moving_weights
    b = np.asarray(fixed.amplitudes) * fixed_weights
    var = (np.asarray(moving.widths_A)[:, None] ** 2 + np.asarray(fixed.widths_A)[None] ** 2
           + 2 * blur_A ** 2)
    coeff = a[:, None] * b[None] / var ** 1.5
    centre = np.average(moving.centres_A, axis=0, weights=a)
    c = np.asarray(moving.centres_A) - centre
    d = np.asarray(fixed.centres_A)

    def negative_overlap(params):
        placed = c @ turn_matrix(params[:3])[0].T + centre + params[3:]
        d2 = np.sum((placed[:, None] - d[None]) ** 2, axis=-1)
        return -float(np.sum(coeff * np.exp(-0.5 * d2 / var)))

    best = minimize(negative_overlap, np.zeros(6), method="Powell",
                    options={"xtol": 1e-4, "ftol": 1e-10, "maxfev": 4000})
    rotation = turn_matrix(best.x[:3])[0]
    return rotation, centre + best.x[3:] - rotation @ centre

"""Anchor Gaussians: a few tens of points whose displacements drive every Gaussian of a GMM.

The decoder moves anchors, not Gaussians: a few tens of displacements are
far easier to learn from noisy particles than thousands, and neighbouring
Gaussians move together as a domain does. Anchors are placed by k-means over
the GMM's centres (the reference implementation: 32 anchors, half of them
over the whole particle and half inside the region when there is a mask).
Each Gaussian follows a fixed, normalised blend of the anchors near it, so a
translation of every anchor translates the whole GMM and a rigid turn of a
domain's anchors turns that domain's Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.spatial import cKDTree

from ..errors import InputError
from ..gmm.focus import mask_values_at
from ..gmm.model import GMM


@dataclass(frozen=True)
class Anchors:
    """Anchor positions and the weights that carry their displacements to the Gaussians.

    positions_A  (K, 3) Angstrom from the box centre
    weights      (N, K) each Gaussian's blend of the anchors (rows sum to 1)
    """

    positions_A: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.positions_A)


def _kmeans(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    k = min(k, len(points))
    if k == len(points):
        return points.copy()
    centroids, _ = kmeans2(points, k, iter=30, minit="++", seed=np.random.default_rng(seed))
    return centroids


def place_anchors(gmm: GMM, n_anchors: int, *, region: np.ndarray | None = None,
                  apix: float | None = None, seed: int = 0) -> np.ndarray:
    """(K, 3) anchor positions by k-means over the GMM's centres.

    With a region mask ([z, y, x], values in [0, 1]) half of the anchors are
    placed among the centres inside it (mask >= 0.5), so the region's motion
    is resolved more finely than the rest's.
    """
    if n_anchors < 1:
        raise InputError(f"--anchors {n_anchors}: expected an integer >= 1")
    centres = np.asarray(gmm.centres_A, float)
    if region is None:
        return _kmeans(centres, n_anchors, seed)
    inside = centres[mask_values_at(region, centres, apix) >= 0.5]
    if len(inside) == 0:
        raise InputError("the mask covers none of the GMM's Gaussians; expected a mask over "
                         "part of the particle")
    in_region = n_anchors // 2
    outside = _kmeans(centres, n_anchors - in_region, seed)
    return np.concatenate([outside, _kmeans(inside, in_region, seed + 1)]) if in_region else outside


def anchor_weights(centres_A: np.ndarray, positions_A: np.ndarray,
                   width_A: float | None = None) -> np.ndarray:
    """(N, K) normalised Gaussian blend: w_jk ~ exp(-|c_j - a_k|^2 / 2 width^2), rows sum to 1.

    ``width_A`` defaults to the median distance between neighbouring anchors,
    so each Gaussian follows the two or three anchors nearest it. The
    exponent is shifted by each row's nearest anchor before exp, so a
    Gaussian far from every anchor still gets finite weights.
    """
    positions_A = np.asarray(positions_A, float)
    if width_A is None:
        width_A = (float(np.median(cKDTree(positions_A).query(positions_A, k=2)[0][:, 1]))
                   if len(positions_A) > 1 else 10.0)
    d2 = np.sum((np.asarray(centres_A, float)[:, None, :] - positions_A[None]) ** 2, axis=-1)
    logits = -(d2 - d2.min(axis=1, keepdims=True)) / (2.0 * width_A ** 2)
    w = np.exp(logits)
    return w / w.sum(axis=1, keepdims=True)


def build_anchors(gmm: GMM, n_anchors: int, *, region: np.ndarray | None = None,
                  apix: float | None = None, seed: int = 0) -> Anchors:
    """Anchors for ``gmm`` (:func:`place_anchors`) with their weights (:func:`anchor_weights`)."""
    positions = place_anchors(gmm, n_anchors, region=region, apix=apix, seed=seed)
    return Anchors(positions, anchor_weights(gmm.centres_A, positions))

"""Patches of a particle and the composite map made from their refinements.

A patch is a cluster of GMM centres (k-means), its mask a soft sphere at the
cluster's centre reaching its farthest member, so neighbouring masks overlap
and the composite blends across their seams. The composite of per-patch maps
V_i with masks M_i is

    V = (sum_i M_i V_i + w0 V0) / (sum_i M_i + w0),   w0 = max(0, 1 - sum_i M_i)

where V0 (the global map) fills what no patch covers; with no fill map the
weight is sum_i M_i alone and uncovered voxels are 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans2

from ..errors import InputError
from ..fourier.masks import soft_sphere

# DESIGN.md: 5-pixel soft edge on every patch mask.
PATCH_EDGE_PX = 5.0


@dataclass(frozen=True)
class Patch:
    """One cluster of Gaussians: where it is and how far it reaches (Angstrom from the box centre)."""

    index: int
    centre_A: np.ndarray
    radius_A: float
    n_gauss: int

    def as_dict(self) -> dict:
        return {"patch": self.index, "centre_A": [float(c) for c in self.centre_A],
                "radius_A": float(self.radius_A), "n_gauss": int(self.n_gauss)}


def patches_from_centres(centres_A: np.ndarray, k: int, seed: int = 0) -> list[Patch]:
    """K patches by k-means of GMM centres, ordered by distance from the box centre.

    Parameters
    ----------
    centres_A : (N, 3) array
        Gaussian centres, Angstrom from the box centre.
    k : int
        Number of patches; 1 gives one patch holding every centre.
    seed : int
        k-means seeding, so the same run always gets the same patches.
    """
    centres_A = np.asarray(centres_A, float)
    if k < 1 or k > len(centres_A):
        raise InputError(f"patches: {k} patches for {len(centres_A)} Gaussians; expected "
                         f"1 <= K <= {len(centres_A)}")
    if k == 1:
        labels = np.zeros(len(centres_A), int)
    else:
        _, labels = kmeans2(centres_A, k, iter=20, minit="++", seed=np.random.default_rng(seed))
    clusters = [centres_A[labels == j] for j in np.unique(labels)]
    # Order by distance from the centre so patch 1 is the core whatever k-means' labels.
    clusters.sort(key=lambda c: float(np.linalg.norm(c.mean(axis=0))))
    patches = []
    for j, members in enumerate(clusters, start=1):
        centre = members.mean(axis=0)
        radius = float(np.linalg.norm(members - centre, axis=1).max())
        patches.append(Patch(j, centre, radius, len(members)))
    return patches


def patch_mask(patch: Patch, box: int, apix: float, edge_px: float = PATCH_EDGE_PX) -> np.ndarray:
    """Soft sphere [z, y, x]: 1 out to the patch's farthest centre, a cosine edge beyond."""
    return soft_sphere(box, tuple(patch.centre_A / apix), patch.radius_A / apix, edge_px)


def composite_map(maps: list[np.ndarray], masks: list[np.ndarray],
                  fill: np.ndarray | None = None) -> np.ndarray:
    """Mask-weighted blend of per-patch maps, uncovered voxels from ``fill`` (float32).

    Every map and mask has the same shape; masks are in [0, 1].
    """
    if len(maps) != len(masks) or not maps:
        raise ValueError(f"{len(maps)} maps and {len(masks)} masks; expected the same number >= 1")
    numerator = np.zeros(maps[0].shape, np.float64)
    weight = np.zeros(maps[0].shape, np.float64)
    for volume, mask in zip(maps, masks):
        numerator += np.asarray(mask, np.float64) * volume
        weight += mask
    if fill is not None:
        w0 = np.clip(1.0 - weight, 0.0, None)
        numerator += w0 * fill
        weight += w0
    out = np.divide(numerator, weight, out=np.zeros_like(numerator), where=weight > 1e-12)
    return out.astype(np.float32)

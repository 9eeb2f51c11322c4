"""Focused refinement: a mask narrows what the GMM lets the alignment see.

A Gaussian whose centre lies outside the region is widened,
s' = s / (0.25 + 0.75 M) with M the mask value at its centre, so its
transform fades beyond low resolution: the region keeps every detail and
drives the fine alignment, while the rest of the particle still contributes
its coarse shape (a Gaussian four times wider carries the same mass, so the
low-resolution match that keeps poses from wandering is unchanged).
Amplitudes stay as they are. The alternative, ``fade``, scales each
amplitude by M instead and keeps the widths. The third, ``hold``, keeps the
GMM whole and splits it in the aligner (:func:`split_region`): the region's
share moves with the pose, the rest stays where each particle's input pose
put it, so the model keeps the whole particle without pulling the region
back to the rest's pose.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .model import GMM

# Widening at M = 0 is 1 / WIDTH_FLOOR: four times.
WIDTH_FLOOR = 0.25


def mask_values_at(mask: np.ndarray, centres_A: np.ndarray, apix: float) -> np.ndarray:
    """Trilinear value of ``mask`` ([z, y, x], origin at voxel B // 2) at points (x, y, z) in A.

    Points outside the box read 0 (outside every region).
    """
    box = mask.shape[0]
    voxel = np.asarray(centres_A, float) / apix + box // 2
    coords = voxel[:, ::-1].T          # map_coordinates wants (z, y, x) rows
    values = ndimage.map_coordinates(np.asarray(mask, np.float64), coords, order=1,
                                     mode="constant", cval=0.0)
    return np.clip(values, 0.0, 1.0)


def width_factor(mask_value: np.ndarray) -> np.ndarray:
    """1 / (0.25 + 0.75 M): 1 inside the region (M = 1), 4 far outside (M = 0)."""
    m = np.clip(np.asarray(mask_value, float), 0.0, 1.0)
    return 1.0 / (WIDTH_FLOOR + (1.0 - WIDTH_FLOOR) * m)


def widen_outside_mask(gmm: GMM, mask: np.ndarray, apix: float) -> GMM:
    """The GMM with each Gaussian's width divided by 0.25 + 0.75 M(centre); amplitudes unchanged."""
    factor = width_factor(mask_values_at(mask, gmm.centres_A, apix))
    return GMM(gmm.centres_A, gmm.amplitudes, gmm.widths_A * factor)


def fade_outside_mask(gmm: GMM, mask: np.ndarray, apix: float) -> GMM:
    """The GMM with each Gaussian's amplitude times M(centre); widths unchanged.

    The alignment then sees the region alone: a widened rest still pulls a
    region that turned about a hinge back towards the consensus pose, by its
    low-resolution match (bench_focus measures how much).
    """
    return split_region(gmm, mask_values_at(mask, gmm.centres_A, apix))[0]


def keep_whole(gmm: GMM, mask: np.ndarray, apix: float) -> GMM:
    """The GMM unchanged: ``hold`` splits it where particles are aligned (:func:`split_region`,
    called here too so a mask over no Gaussian is refused before any alignment)."""
    split_region(gmm, mask_values_at(mask, gmm.centres_A, apix))
    return gmm


def split_region(gmm: GMM, region_weight: np.ndarray) -> tuple[GMM, GMM | None]:
    """(moving, held): each Gaussian's amplitude shared as M and 1 - M between the region,
    which the pose moves, and the rest, held at the particle's input pose. The two add up
    to ``gmm`` (Gaussians with a zero share dropped; held None when the mask covers all)."""
    m = np.clip(np.asarray(region_weight, float), 0.0, 1.0)
    inside, outside = m > 0, m < 1
    if not np.any(inside):
        raise ValueError("no Gaussian lies inside the mask")
    moving = GMM(gmm.centres_A[inside], gmm.amplitudes[inside] * m[inside],
                 gmm.widths_A[inside])
    if not np.any(outside):
        return moving, None
    held = GMM(gmm.centres_A[outside], gmm.amplitudes[outside] * (1.0 - m[outside]),
               gmm.widths_A[outside])
    return moving, held


OUTSIDE_MODES = {"widen": widen_outside_mask, "fade": fade_outside_mask, "hold": keep_whole}


def mask_centroid_A(mask: np.ndarray, apix: float) -> np.ndarray:
    """Mask-weighted centre (x, y, z) in Angstrom from voxel B // 2: the pivot of a focused
    alignment, so that turning the region does not also move it across the image."""
    weight = np.clip(np.asarray(mask, np.float64), 0.0, None)
    if weight.sum() <= 0:
        return np.zeros(3)
    zyx = np.array(ndimage.center_of_mass(weight)) - mask.shape[0] // 2
    return zyx[::-1] * apix


def fraction_inside(gmm: GMM, mask: np.ndarray, apix: float, level: float = 0.5) -> float:
    """Share of the GMM's mass whose centres sit where the mask is at least ``level``."""
    inside = mask_values_at(mask, gmm.centres_A, apix) >= level
    total = float(np.sum(np.abs(gmm.amplitudes)))
    return float(np.sum(np.abs(gmm.amplitudes[inside]))) / total if total > 0 else 0.0

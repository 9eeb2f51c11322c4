"""Soft masks for maps: spheres, automatic masks from a map, and mask files.

Mask arrays are indexed [z, y, x] like the maps mrcfile reads; coordinates
passed in are (x, y, z) voxels relative to the box centre B // 2, the map
origin RELION and gmmrefine share. Soft edges are RELION's raised cosine
(:func:`gmmrefine.fourier.grids.cosine_edge`) of the distance d beyond the hard region.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .filters import lowpass
from .grids import centred_axis, cosine_edge, radius_from_axes


def soft_sphere(box: int, center_px: tuple[float, float, float], radius_px: float,
                edge_px: float = 5) -> np.ndarray:
    """Spherical mask with a cosine soft edge.

    Parameters
    ----------
    box : int
        Box size B.
    center_px : (x, y, z)
        Sphere centre in voxels relative to the box centre B // 2 (so (0, 0, 0)
        is the centre voxel; a point at c Angstrom is c / apix).
    radius_px : float
        1 inside this radius.
    edge_px : float
        Width of the cosine edge; 0 beyond radius + edge.

    Returns
    -------
    (B, B, B) float32 array indexed [z, y, x].
    """
    k = centred_axis(box)
    cx, cy, cz = (float(c) for c in center_px)
    distance = radius_from_axes(k - cz, k - cy, k - cx)
    return cosine_edge(distance - radius_px, edge_px).astype(np.float32)


def largest_component(binary: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a binary volume."""
    labels, n = ndimage.label(binary, structure=np.ones((3, 3, 3), bool))
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def soften(binary: np.ndarray, extend_px: float = 0, edge_px: float = 0) -> np.ndarray:
    """Grow a binary mask by ``extend_px`` and add a cosine edge ``edge_px`` wide.

    As relion_mask_create: voxels closer than ``extend_px`` to the binary
    region become 1, then the value falls as a raised cosine of the distance
    to the extended region. Distances are exact Euclidean ones.
    """
    binary = np.asarray(binary, bool)
    if not binary.any():
        return np.zeros(binary.shape, np.float32)
    distance = ndimage.distance_transform_edt(~binary)
    return cosine_edge(distance - max(extend_px, 0.0), edge_px).astype(np.float32)


def auto_threshold(volume: np.ndarray) -> float:
    """A density threshold that separates a particle from its solvent.

    The larger of two levels: five robust standard deviations (MAD) above the
    median, which is the solvent in a map the particle does not fill; and 10%
    of the way from the median to the maximum, which stops a noise-free
    (simulated or heavily filtered) map from masking its own ringing.
    """
    values = np.asarray(volume, float).ravel()
    median = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - median)))
    return max(median + 5.0 * sigma, median + 0.1 * (float(values.max()) - median))


def auto_mask(volume: np.ndarray, apix: float, *, threshold: float | None = None,
              extend_px: float = 3, edge_px: float = 6, lowpass_A: float | None = 15) -> np.ndarray:
    """Soft mask around the density of a map (relion_mask_create-like).

    Low-pass the map, threshold it, keep the largest connected component
    (isolated noise specks and detached blobs go), extend by ``extend_px``
    and add a cosine edge of ``edge_px``.

    Parameters
    ----------
    volume : (B, B, B) array
        Map indexed [z, y, x]; not modified.
    apix : float
        Voxel size in Angstrom.
    threshold : float, optional
        Density threshold on the low-passed map; default :func:`auto_threshold`.
    extend_px, edge_px : float
        Binary extension and soft-edge width, in voxels.
    lowpass_A : float or None
        Low-pass resolution before thresholding (None: no filter).

    Returns
    -------
    (B, B, B) float32 array in [0, 1].

    Raises
    ------
    ValueError
        When no voxel reaches the threshold (e.g. a map of pure noise).
    """
    smooth = lowpass(volume, apix, lowpass_A) if lowpass_A else np.asarray(volume, np.float32)
    level = auto_threshold(smooth) if threshold is None else float(threshold)
    binary = smooth >= level
    if not binary.any():
        raise ValueError(f"no voxel reaches the mask threshold {level:.4g} "
                         f"(map maximum after low-pass {float(smooth.max()):.4g})")
    return soften(largest_component(binary), extend_px, edge_px)

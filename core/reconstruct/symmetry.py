"""Point-group symmetry of maps: re-imposing it by (mask-weighted) averaging.

Operators and their convention live in :mod:`gmmrefine.data.symmetry_groups`
(RELION's axes; a symmetry copy of a particle with pose A has pose A @ R; a
symmetric map satisfies V(R x) = V(x)). :func:`symmetrize_map` averages a map
over the group, optionally weighted by a mask (the "re-impose by
mask-weighted averaging" of the design: sum_g R_g(M) R_g(V) / sum_g R_g(M)).

Expanding particles to C1 is :mod:`gmmrefine.io.expand` (it edits the host
tables); symmetric reconstruction lives with the reconstructor
(``reconstruct_halves(..., sym=...)``).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from ..data.symmetry_groups import symmetry_operators
from ..errors import InputError
from ..fourier.grids import centred_axis

__all__ = ["symmetrize_map", "symmetrize_maps"]

# Planes of the output map rotated at a time: bounds the coordinate arrays
# (3 x 8 bytes per voxel) whatever the box.
_PLANES_PER_BATCH = 16


# --- maps ------------------------------------------------------------------------------------

def _rotated(volume: np.ndarray, r: np.ndarray, order: int) -> np.ndarray:
    """V(R^T x): ``volume`` turned by R about voxel B // 2 ([z, y, x] arrays).

    Voxels whose source lies outside the box take the nearest edge value, so
    a constant map stays constant.
    """
    box = volume.shape[0]
    centre = box // 2
    x = centred_axis(box).astype(float)
    out = np.empty(volume.shape, np.float64)
    # Spline coefficients once per map, not once per batch of planes.
    coeffs = volume if order <= 1 else _spline_coefficients(volume, order)
    for lo in range(0, box, _PLANES_PER_BATCH):
        z = x[lo:lo + _PLANES_PER_BATCH]
        zz, yy, xx = np.meshgrid(z, x, x, indexing="ij")
        xyz = np.stack([xx.ravel(), yy.ravel(), zz.ravel()])
        source = r.T @ xyz + centre              # (x, y, z) of V(R^T x)
        out[lo:lo + len(z)] = map_coordinates(
            coeffs, source[::-1], order=order, mode="nearest",
            prefilter=False).reshape(zz.shape)
    return out


def _spline_coefficients(volume: np.ndarray, order: int) -> np.ndarray:
    from scipy.ndimage import spline_filter
    return spline_filter(np.asarray(volume, np.float64), order=order, mode="nearest")


def symmetrize_map(volume: np.ndarray, sym: str, weight: np.ndarray | None = None, *,
                   order: int = 3) -> np.ndarray:
    """Average a map over the operators of ``sym`` about the box centre (B // 2).

    Parameters
    ----------
    volume
        (B, B, B) map, [z, y, x], the engine's convention.
    sym
        Point group name (:func:`symmetry_operators`).
    weight
        Optional (B, B, B) non-negative mask M: the result is then
        sum_g R_g(M) R_g(V) / sum_g R_g(M), each rotated copy counted where its
        own mask holds it (DESIGN.md, symmetry); where the rotated masks sum to
        ~0 the plain average is used. The mask is rotated trilinearly so its
        rotated copies stay non-negative and the result is a convex
        combination of the rotated maps.
    order
        Spline order for rotating the map (3: cubic; 1: trilinear).

    Returns
    -------
    np.ndarray
        float32 map of the same shape: (1/|G|) sum_g V(R_g^T x) without a weight.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"symmetrize_map: map of shape {volume.shape}; expected a cubic 3D map")
    if weight is not None and np.shape(weight) != volume.shape:
        raise InputError(f"symmetrize_map: mask of shape {np.shape(weight)}; expected the "
                         f"map's shape {volume.shape}")
    if weight is not None and np.min(weight) < 0:
        raise InputError(f"symmetrize_map: mask has negative values (min {np.min(weight):.3g}); "
                         "expected a mask in [0, 1]")
    return symmetrize_maps([volume], sym, weight, order=order)[0]


def symmetrize_maps(volumes: list[np.ndarray], sym: str, weight: np.ndarray | None = None, *,
                    order: int = 3) -> list[np.ndarray]:
    """:func:`symmetrize_map` of several maps of one box under one mask (checked by the caller),
    rotating the mask once per operator rather than once per map and operator."""
    ops = symmetry_operators(sym)
    shape = np.shape(volumes[0])
    totals = [np.zeros(shape) for _ in volumes]
    weighted = [np.zeros(shape) for _ in volumes]
    mask_sum = np.zeros(shape)
    for r in ops:
        turned_mask = None if weight is None else _rotated(np.asarray(weight, np.float64), r, 1)
        if turned_mask is not None:
            mask_sum += turned_mask
        for k, volume in enumerate(volumes):
            turned = _rotated(np.asarray(volume), r, order)
            totals[k] += turned
            if turned_mask is not None:
                weighted[k] += turned_mask * turned
    plains = [t / len(ops) for t in totals]
    if weight is None:
        return [p.astype(np.float32) for p in plains]
    covered = mask_sum > 1e-6 * max(float(mask_sum.max()), np.finfo(float).tiny)
    safe_sum = np.where(covered, mask_sum, 1.0)
    return [np.where(covered, w / safe_sum, p).astype(np.float32)
            for w, p in zip(weighted, plains)]

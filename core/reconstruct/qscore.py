"""Q-scores of atoms in a map (Pintilie et al., Nat Methods 17:328, 2020), vectorised.

Per atom, as MapQ (github.com/gregdp/mapq, ``QscoreG``) computes it:

- map values at the atom (counted ``POINTS_PER_SHELL`` times) and on shells of
  radius 0.1, 0.2, ..., 2.0 A around it, ``POINTS_PER_SHELL`` points per shell
  spread evenly over the sphere (:func:`sphere_points`, MapQ's spiral);
- a point is kept only when no atom lies within 0.9 R of it (R the shell's
  radius): points that belong to a neighbour's density are not this atom's.
  The atom itself sits at R, so it never counts; 0.9 is MapQ's margin for
  exactly that. When fewer than ``POINTS_PER_SHELL`` points are kept, the shell
  is laid again with 2 more points, up to ``TRIES`` times; a shell that never
  keeps enough adds no point (MapQ does the same);
- the atom's Q is the correlation about the mean (Pearson) between those map
  values and the reference Gaussian A exp(-R^2 / 2 sigma^2) + B at each
  point's radius, sigma = 0.6 A. MapQ sets A and B from the map's mean and sd
  (B = mean - 1 sd, A + B = mean + 10 sd, clipped to the map's range), but a
  correlation about the mean does not change when its reference is scaled by
  A > 0 or offset by B, so they are left out here: Q is the same number.

Map values are trilinear interpolations (as Chimera's ``interpolated_values``).
An atom whose 2 A sphere leaves the map gets NaN, as does one with no variation
to correlate (a flat map).

Coordinates are the engine's (x, y, z in Angstrom from voxel B // 2, maps
indexed [z, y, x]); io/model.py moves a model there.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

SIGMA_A = 0.6
SHELL_STEP_A = 0.1
MAX_RADIUS_A = 2.0
POINTS_PER_SHELL = 8
TRIES = 50
NEIGHBOUR_MARGIN = 0.9


def shell_radii_A() -> np.ndarray:
    """Radii of the shells around each atom: 0 (the atom itself), 0.1, ..., 2.0 A."""
    return SHELL_STEP_A * np.arange(round(MAX_RADIUS_A / SHELL_STEP_A) + 1)


def sphere_points(n: int) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere, MapQ's generalised spiral.

    Point k of n (k = 1..n) has cos(polar angle) h_k = -1 + 2 (k - 1) / (n - 1)
    and azimuth theta_k = theta_(k-1) + 3.6 / sqrt(n (1 - h_k^2)), the first
    and last at the poles (Saff & Kuijlaars, Math Intelligencer 19:5, 1997).
    """
    if n < 2:
        raise ValueError(f"{n} points; expected at least 2 (the spiral runs pole to pole)")
    h = -1.0 + 2.0 * np.arange(n) / (n - 1)
    step = np.zeros(n)
    step[1:-1] = 3.6 / np.sqrt(n * (1.0 - h[1:-1] ** 2))
    theta = np.cumsum(step) % (2 * np.pi)
    theta[-1] = 0.0
    sin_phi = np.sqrt(np.clip(1.0 - h ** 2, 0.0, None))
    return np.stack([sin_phi * np.cos(theta), sin_phi * np.sin(theta), h], axis=1)


def reference_profile(radius_A: np.ndarray, sigma_A: float = SIGMA_A) -> np.ndarray:
    """The reference Gaussian exp(-R^2 / 2 sigma^2) (A = 1, B = 0: Q does not depend on them)."""
    return np.exp(-0.5 * (np.asarray(radius_A, float) / sigma_A) ** 2)


class _Sums:
    """Per atom running sums of n, d, d^2, g, g^2, d g: the correlation without the points."""

    def __init__(self, n_atoms: int):
        self.values = np.zeros((6, n_atoms))

    def add(self, atoms: np.ndarray, d: np.ndarray, g: float, kept: np.ndarray) -> None:
        """Points (atoms x points) of map values ``d`` at reference value ``g``, where ``kept``."""
        w = kept.astype(float)
        d = np.where(kept, d, 0.0)
        n = w.sum(axis=1)
        self.values[:, atoms] += np.stack([n, d.sum(axis=1), (d * d).sum(axis=1), n * g,
                                           n * g * g, g * d.sum(axis=1)])

    def correlation(self) -> np.ndarray:
        n, sd, sdd, sg, sgg, sdg = self.values
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = sdg - sd * sg / n
            var_d = sdd - sd * sd / n
            var_g = sgg - sg * sg / n
            q = cov / np.sqrt(var_d * var_g)
        # Sums of many points leave rounding where the variance is truly zero.
        flat = (var_d <= 1e-12 * np.maximum(sdd, 1e-300)) | (var_g <= 1e-12 * sgg)
        return np.where(flat, np.nan, q)


def atom_qscores(volume: np.ndarray, apix: float, coords_A: np.ndarray, *,
                 sigma_A: float = SIGMA_A,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Q-score of every atom of a model in a map.

    Parameters
    ----------
    volume : (B, B, B) array
        The map, indexed [z, y, x].
    apix : float
        Voxel size in Angstrom.
    coords_A : (N, 3) array
        Atom positions (x, y, z) in the engine's frame (Angstrom from voxel
        B // 2). Every atom given shapes its neighbours' shells, so pass the
        whole model (no hydrogens, as MapQ).
    sigma_A : float
        Width of the reference Gaussian (0.6 A, Pintilie 2020; MapQ offers
        0.4 A for maps finer than ~1.5 A).
    progress : callable, optional
        Told the number of shells finished (``len(shell_radii_A())`` in all).

    Returns
    -------
    (N,) float64
        Q per atom in [-1, 1]; NaN for an atom whose 2 A sphere leaves the map
        or whose values do not vary.
    """
    volume = np.asarray(volume)
    coords = np.asarray(coords_A, float).reshape(-1, 3)
    # Q ignores an offset of the map; taking the mean out keeps the float64 sums exact.
    # float32 like the maps themselves: a 400^3 map stays 256 MB.
    volume = volume.astype(np.float32) - np.float32(np.mean(volume, dtype=np.float64))
    inside = _sphere_inside(coords, volume.shape, apix)
    atoms = np.flatnonzero(inside)
    sums = _Sums(len(coords))
    tree = cKDTree(coords)
    for radius in shell_radii_A():
        g = float(reference_profile(radius, sigma_A))
        if radius == 0:
            d = _values_at(volume, apix, coords[atoms])
            sums.add(atoms, np.repeat(d[:, None], POINTS_PER_SHELL, axis=1), g,
                     np.ones((len(atoms), POINTS_PER_SHELL), bool))
        else:
            _add_shell(sums, volume, apix, coords, atoms, tree, radius, g)
        if progress is not None:
            progress(1)
    q = sums.correlation()
    q[~inside] = np.nan
    return q


def _add_shell(sums: _Sums, volume: np.ndarray, apix: float, coords: np.ndarray,
               atoms: np.ndarray, tree: cKDTree, radius: float, g: float) -> None:
    """One shell of every atom: lay points, drop those near another atom, retry, sample."""
    centre, other = _close_pairs(tree, atoms, len(coords), (1 + NEIGHBOUR_MARGIN) * radius)
    delta = coords[centre] - coords[other]
    # Point c_i + R u lies within 0.9 R of atom j when |d|^2 + R^2 - (0.9 R)^2 + 2 R d.u < 0,
    # d = c_i - c_j: one matrix product per try over the pending atoms' pairs.
    base = np.einsum("pc,pc->p", delta, delta) + (1 - NEIGHBOUR_MARGIN ** 2) * radius ** 2
    delta *= 2 * radius
    pending = atoms
    for attempt in range(TRIES):
        if not len(pending):
            return
        directions = sphere_points(POINTS_PER_SHELL + 2 * attempt)
        kept = ~_blocked(pending, centre, _dot3(delta, directions) + base[:, None] < 0)
        done = kept.sum(axis=1) >= POINTS_PER_SHELL
        if done.any():
            points = coords[pending[done], None, :] + radius * directions[None]
            d = _values_at(volume, apix, points.reshape(-1, 3))
            sums.add(pending[done], d.reshape(int(done.sum()), -1), g, kept[done])
        # Only the pairs of atoms still pending are needed again.
        pending = pending[~done]
        still = np.isin(centre, pending, assume_unique=False)
        centre, base, delta = centre[still], base[still], delta[still]


def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, 3) x (n, 3) -> (P, n) dot products, written out: an inner size of 3 is too small
    for a matrix product to pay."""
    return a[:, 0:1] * b[:, 0] + a[:, 1:2] * b[:, 1] + a[:, 2:3] * b[:, 2]


def _close_pairs(tree: cKDTree, atoms: np.ndarray, n_atoms: int,
                 reach_A: float) -> tuple[np.ndarray, np.ndarray]:
    """(centre, other) index pairs closer than ``reach_A``, both ways, centres among
    ``atoms``, sorted by centre. Only such an ``other`` can come within 0.9 R of a point
    of the centre's shell R (reach 1.9 R)."""
    pairs = tree.query_pairs(reach_A, output_type="ndarray")
    centre = np.concatenate([pairs[:, 0], pairs[:, 1]])
    other = np.concatenate([pairs[:, 1], pairs[:, 0]])
    scored = np.zeros(n_atoms, bool)
    scored[atoms] = True
    keep = scored[centre]
    order = np.argsort(centre[keep], kind="stable")
    return centre[keep][order], other[keep][order]


def _blocked(pending: np.ndarray, centre: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(len(pending), n): a pending atom's point k is blocked when any of its pairs' ``near``
    rows is True there. ``pending`` and ``centre`` are sorted, every centre is pending."""
    blocked = np.zeros((len(pending), near.shape[1]), bool)
    if not len(centre):
        return blocked
    # Pairs are sorted by centre: one OR per run of a centre's pairs.
    starts = np.flatnonzero(np.r_[True, centre[1:] != centre[:-1]])
    blocked[np.searchsorted(pending, centre[starts])] = np.logical_or.reduceat(near, starts,
                                                                               axis=0)
    return blocked


def _values_at(volume: np.ndarray, apix: float, points_A: np.ndarray) -> np.ndarray:
    """Trilinear map values at engine-frame points (x, y, z in Angstrom)."""
    box = np.asarray(volume.shape)
    voxel = points_A[:, ::-1] / apix + box // 2       # (z, y, x) voxel coordinates
    return map_coordinates(volume, voxel.T, order=1, mode="nearest")


def _sphere_inside(coords: np.ndarray, shape: tuple[int, ...], apix: float) -> np.ndarray:
    """Atoms whose whole 2 A sphere lies within the map's grid (where values interpolate)."""
    box = np.asarray(shape)[::-1]                       # (x, y, z) sizes
    voxel = coords / apix + box // 2
    reach = MAX_RADIUS_A / apix
    return np.all((voxel - reach >= 0) & (voxel + reach <= box - 1), axis=1)


def residue_means(atom_values: np.ndarray, residue_of_atom: np.ndarray,
                  n_residues: int) -> np.ndarray:
    """Mean of the atoms' values per residue, NaN atoms left out (NaN for a residue with none)."""
    values = np.asarray(atom_values, float)
    valid = np.isfinite(values)
    index = np.asarray(residue_of_atom)[valid]
    total = np.bincount(index, weights=values[valid], minlength=n_residues)
    count = np.bincount(index, minlength=n_residues)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# Expected Q of a protein model against map resolution, per reference width (A):
# cubic coefficients (res^3, res^2, res, 1) of MapQ's ExpectedQScore, its authors' fit to
# EMDB maps and models. For sigma 0.6 it agrees within 0.015 with the linear fit of
# Pintilie et al. (2020), Q = -0.1775 res + 1.1192, from 2.5 to 4 A, and unlike the line it
# levels off at coarse resolutions instead of turning negative beyond 6.3 A.
_EXPECTED_Q_CUBIC = {
    0.6: (-0.0019064058, 0.0499875375, -0.4513945578, 1.5361860733),
    0.4: (-0.0016, 0.0434, -0.3956, 1.3366 + 0.024),
}


def expected_protein_qscore(res_A: float, sigma_A: float = SIGMA_A) -> float | None:
    """Q expected of a well-fitted protein model in a map at ``res_A`` (MapQ's fit).

    MapQ draws a band of +-0.1 around it as the usual spread. None for a
    reference width other than 0.6 or 0.4 A, for which there is no fit.
    """
    for width, coefficients in _EXPECTED_Q_CUBIC.items():
        if abs(sigma_A - width) < 1e-6:
            return float(min(1.0, np.polyval(coefficients, float(res_A))))
    return None

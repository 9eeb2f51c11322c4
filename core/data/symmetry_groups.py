"""Point-group rotation operators in RELION's orientations (Cn, Dn, T, O, I).

RELION (symmetries.cpp, ``SymList::fill_symmetry_class``) describes every
group by a few rotation axes ("rot_axis fold x y z") and closes the set under
multiplication. For each axis it stores R = rotation3DMatrix(360 k / fold,
axis)^T, the matrix that multiplies a particle's pose on the right:
relion_particle_symmetry_expand writes A' = A R for every operator R
(euler.cpp, ``Euler_apply_transf`` with L = identity). A map V is symmetric
under the group when V(R x) = V(x) for every R, x = (x, y, z) from the box
centre: then the particle with pose A R shows the same image as with pose A.

The axes below are RELION's; where RELION writes a rounded number for an
exact one (T, O, I2, I1) the exact value is used, so the closed group holds
to machine precision.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import InputError
from .rotations import axis_angle_matrix

_PHI = (1.0 + np.sqrt(5.0)) / 2.0
EXPECTED = "Cn or Dn (n >= 1, e.g. C1, C3, D7), T, O, I (= I2), I1, I2, I3 or I4"

# (fold, axis) generators per fixed group, in RELION's order.
_FIXED_GENERATORS: dict[str, list[tuple[int, tuple[float, float, float]]]] = {
    "T": [(3, (0.0, 0.0, 1.0)), (2, (0.0, np.sqrt(2.0 / 3.0), np.sqrt(1.0 / 3.0)))],
    "O": [(3, (1.0, 1.0, 1.0)), (4, (0.0, 0.0, 1.0))],
    "I1": [(2, (1.0, 0.0, 0.0)), (5, (_PHI, 0.0, -1.0)), (3, (_PHI ** 2, 1.0, 0.0))],
    "I2": [(2, (0.0, 0.0, 1.0)), (5, (1.0, 0.0, _PHI)), (3, (0.0, 1.0, _PHI ** 2))],
    "I3": [(2, (-0.5257311143, 0.0, 0.8506508070)), (5, (0.0, 0.0, 1.0)),
           (3, (-0.4911234778630044, 0.3568220764705179, 0.7946544753759428))],
    "I4": [(2, (0.5257311143, 0.0, 0.8506508070)),
           (5, (0.8944271932547096, 0.0, 0.4472135909903704)),
           (3, (0.4911234778630044, 0.3568220764705179, 0.7946544753759428))],
}
_FIXED_ORDER = {"T": 12, "O": 24, "I1": 60, "I2": 60, "I3": 60, "I4": 60}
# Two group elements differ by a rotation of at least 360/n degrees; anything
# closer than this is rounding.
_SAME_TOL = 1e-6


def _axis_rotation(axis: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Right-handed rotation by ``angle_deg`` about ``axis`` (any length)."""
    u = np.asarray(axis, float)
    return axis_angle_matrix(u / np.linalg.norm(u), angle_deg)[0]


def _generators(name: str) -> tuple[list[tuple[int, tuple]], int]:
    """RELION's rotation axes of group ``name`` (upper case) and the group's order."""
    match = re.fullmatch(r"([CD])(\d+)", name)
    if match:
        n = int(match.group(2))
        if n < 1:
            raise ValueError(name)
        if match.group(1) == "C":
            return [(n, (0.0, 0.0, 1.0))], n
        # Dn: n-fold about z (none for D1), two-fold about x.
        z_axis = [(n, (0.0, 0.0, 1.0))] if n > 1 else []
        return z_axis + [(2, (1.0, 0.0, 0.0))], 2 * n
    key = "I2" if name == "I" else name
    if key in _FIXED_GENERATORS:
        return _FIXED_GENERATORS[key], _FIXED_ORDER[key]
    raise ValueError(name)


def _is_new(matrix: np.ndarray, group: list[np.ndarray]) -> bool:
    return not np.any(np.max(np.abs(np.stack(group) - matrix), axis=(1, 2)) < _SAME_TOL)


def _close(elements: list[np.ndarray]) -> list[np.ndarray]:
    """Append products until the set is closed under multiplication (what
    RELION's ``compute_subgroup`` does). Multiplying every element by the
    starting ones is enough: they generate the group."""
    group = list(elements)
    i = 0
    while i < len(group):
        for g in elements:
            product = group[i] @ g
            if _is_new(product, group):
                group.append(product)
        i += 1
    return group


def _orthonormal(m: np.ndarray) -> np.ndarray:
    """The nearest rotation (polar decomposition), to shed rounding from products."""
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def symmetry_operators(sym: str) -> np.ndarray:
    """RELION's rotation operators of point group ``sym``, identity first.

    Parameters
    ----------
    sym
        Cn, Dn (n >= 1), T, O, I (RELION's default icosahedral orientation,
        I2) or I1..I4; case-insensitive, as RELION reads it.

    Returns
    -------
    np.ndarray
        (|G|, 3, 3) rotation matrices R in the order RELION lists them for
        its own generators (identity, powers of each axis, then products).
        A particle's symmetry copies have poses A @ R; a map symmetric
        under the group satisfies V(R x) = V(x).
    """
    name = str(sym).strip().upper()
    try:
        generators, order = _generators(name)
    except ValueError:
        raise InputError(f"symmetry {sym!r}: unknown point group; expected {EXPECTED}") from None
    group = [np.eye(3)]
    for fold, axis in generators:
        for k in range(1, fold):
            # RELION stores the transpose of the axis rotation (set_matrices(L, R.transpose())).
            r = _axis_rotation(axis, 360.0 * k / fold).T
            if _is_new(r, group):
                group.append(r)
    group = _close(group)
    if len(group) != order:     # a wrong axis table, never bad input
        raise RuntimeError(f"symmetry {name}: closure gave {len(group)} operators, "
                           f"expected {order}")
    return np.stack([_orthonormal(g) for g in group])


def symmetry_order(sym: str) -> int:
    """|G|, the number of operators of ``sym`` (validates the name)."""
    return len(symmetry_operators(sym))

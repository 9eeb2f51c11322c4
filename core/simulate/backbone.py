"""Ideal protein backbone from internal coordinates, for the simulated model.

Segments are built atom by atom with the natural extension reference frame
(NeRF) from Engh & Huber bond lengths and angles and a constant phi/psi, then
placed rigidly by their screw axis; loops follow an arc between segment ends.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

HELIX = (-57.8, -47.0)     # phi, psi (deg) of an ideal alpha helix
STRAND = (-120.0, 130.0)   # antiparallel beta strand


def place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond_A: float, angle_deg: float,
           torsion_deg: float) -> np.ndarray:
    """Atom d with |cd| = bond, angle bcd = angle and torsion abcd = torsion (NeRF)."""
    bc = c - b
    bc /= np.sqrt(bc @ bc)
    n = _cross(b - a, bc)
    n /= np.sqrt(n @ n)
    m = _cross(n, bc)
    ang, tor = np.radians(angle_deg), np.radians(torsion_deg)
    d2 = (-bond_A * np.cos(ang), bond_A * np.sin(ang) * np.cos(tor),
          bond_A * np.sin(ang) * np.sin(tor))
    return c + d2[0] * bc + d2[1] * m + d2[2] * n


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # np.cross's generality costs ~20 us a call; the model places ~13,000 atoms.
    return np.array([u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2],
                     u[0] * v[1] - u[1] * v[0]])


def _ideal_backbone(n_res: int, phi_psi: tuple[float, float]) -> np.ndarray:
    """(n_res, 4, 3) N, CA, C, O of a regular segment built from Engh & Huber geometry."""
    phi, psi = phi_psi
    atoms = [np.array([0.0, 1.458, 0.0]), np.zeros(3), np.array([1.525, 0.0, 0.0])]
    atoms[0] = place(np.array([1.0, 1.0, 0.0]), atoms[2], atoms[1], 1.458, 111.2, -60.0)
    out = np.zeros((n_res, 4, 3))
    n, ca, c = atoms[0], atoms[1], atoms[2]
    for i in range(n_res):
        nn = place(n, ca, c, 1.329, 116.2, psi)
        out[i, :3] = (n, ca, c)
        out[i, 3] = place(nn, ca, c, 1.231, 120.5, 180.0)
        n_ca = place(ca, c, nn, 1.458, 121.7, 180.0)
        n_c = place(c, nn, n_ca, 1.525, 111.2, phi)
        n, ca, c = nn, n_ca, n_c
    return out


def _screw_axis(backbone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis (point, unit direction) of a regular segment: the screw that maps residue i to i+1."""
    p, q = backbone[0, :3], backbone[1, :3]
    pc, qc = p.mean(0), q.mean(0)
    u, _, vt = np.linalg.svd((q - qc).T @ (p - pc))
    rot = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
    t = qc - rot @ pc
    axis = Rotation.from_matrix(rot).as_rotvec()
    axis /= np.linalg.norm(axis)
    if t @ axis < 0:
        axis = -axis
    t_perp = t - (t @ axis) * axis
    point = np.linalg.lstsq(np.eye(3) - rot, t_perp, rcond=None)[0]
    return point, axis


def segment_on_line(n_res: int, phi_psi: tuple[float, float], start: np.ndarray,
                     direction: np.ndarray, spin_deg: float) -> np.ndarray:
    """A regular segment whose axis starts at ``start`` and runs along ``direction``."""
    bb = _ideal_backbone(n_res, phi_psi)
    point, axis = _screw_axis(bb)
    flat = bb.reshape(-1, 3) - point
    flat -= (flat[1] @ axis) * axis          # first CA at axial height 0
    spin = Rotation.from_rotvec(np.radians(spin_deg) * axis)
    align = Rotation.align_vectors([direction], [axis])[0]
    return ((align * spin).apply(flat) + start).reshape(n_res, 4, 3)


def loop(a_end: np.ndarray, b_start: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Backbone (n, 4, 3) of a loop from residue a_end (4, 3) to b_start, bulging sideways.

    CAs sit evenly along an arc, at most 3.8 A apart; N, C and O are placed
    in each CA-CA step as a trans peptide puts them (C 1.42 A along and 0.55 A
    across from CA_i, N 2.38 A along and 0.45 A across the other way, O 1.23 A
    across from C), which is all 3-4 A density shows.
    """
    ca0, ca1 = a_end[1], b_start[1]
    gap = np.linalg.norm(ca1 - ca0)
    bulge = np.cross(ca1 - ca0, rng.normal(size=3))
    bulge *= 0.35 * gap / max(np.linalg.norm(bulge), 1e-9)
    normal = np.cross(ca1 - ca0, bulge)
    normal /= max(np.linalg.norm(normal), 1e-9)
    t = np.linspace(0, 1, 400)
    dense = ca0 + np.outer(t, ca1 - ca0) + np.outer(np.sin(np.pi * t), bulge)
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    n_res = max(1, int(np.ceil(along[-1] / 3.8)) - 1)
    targets = np.linspace(0, along[-1], n_res + 2)
    path = np.stack([np.interp(targets, along, dense[:, k]) for k in range(3)], axis=1)
    out = np.zeros((n_res, 4, 3))
    for i in range(n_res):
        back, ahead = path[i + 1] - path[i], path[i + 2] - path[i + 1]
        u_back = _unit(np.cross(back, normal))
        u_ahead = _unit(np.cross(ahead, normal))
        out[i, 0] = path[i] + (2.38 / 3.8) * back - 0.45 * u_back
        out[i, 1] = path[i + 1]
        out[i, 2] = path[i + 1] + (1.42 / 3.8) * ahead + 0.55 * u_ahead
        out[i, 3] = out[i, 2] + 1.231 * u_ahead
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-9)

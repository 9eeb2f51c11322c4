"""Rotations in the one convention used inside gmmrefine.

The canonical pose is RELION's rotation matrix A (3x3). A feature at 3D
position c (Angstrom, relative to the box centre) appears in the particle
image at (A c)_xy - o, o = (rlnOriginXAngst, rlnOriginYAngst): RELION forms
the image as I(x) = P(x + o), P the projection along z of V(A^T x) (checked
against relion_project; see docs/conventions.md). Euler angles and CryoSPARC
rotation vectors exist only at the edges, through the functions here.

Every conversion between Euler angles, rotation vectors and matrices lives
in this module and goes through scipy's Rotation: a "turn" is a rotation in
scipy's own convention (no RELION transpose), such as the refinement's moves
A' = R A in the camera frame. The one exception is the TensorFlow twin of
:func:`turn_matrix` in :mod:`gmmrefine.align.kernel`, which gradients must
flow through.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.transform import Rotation


def euler_to_matrix(rot_deg, tilt_deg, psi_deg) -> np.ndarray:
    """RELION ZYZ Euler angles (degrees) -> RELION matrices A, shape (N, 3, 3).

    RELION's A is the transpose of scipy's intrinsic "ZYZ" rotation.
    """
    angles = np.stack(np.broadcast_arrays(np.asarray(rot_deg, float),
                                          np.asarray(tilt_deg, float),
                                          np.asarray(psi_deg, float)), axis=-1)
    r = Rotation.from_euler("ZYZ", angles.reshape(-1, 3), degrees=True)
    return np.transpose(r.as_matrix(), (0, 2, 1))


def matrix_to_euler(a: np.ndarray) -> np.ndarray:
    """RELION matrices A (N, 3, 3) -> (N, 3) Euler angles rot, tilt, psi in degrees.

    Tilt is in [0, 180]; at tilt 0 or 180 (gimbal lock) scipy puts the whole
    in-plane angle into rot and sets psi to 0, which is an equally valid
    RELION triple, so its warning is silenced.
    """
    a = np.asarray(a, float).reshape(-1, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Rotation.from_matrix(np.transpose(a, (0, 2, 1))).as_euler("ZYZ", degrees=True)


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """CryoSPARC alignments3D/pose (axis-angle, radians) -> RELION matrices A.

    pyem and cryoDRGN agree: A = Rodrigues(pose)^T.
    """
    r = Rotation.from_rotvec(np.asarray(rotvec, float).reshape(-1, 3))
    return np.transpose(r.as_matrix(), (0, 2, 1))


def matrix_to_rotvec(a: np.ndarray) -> np.ndarray:
    """RELION matrices A -> CryoSPARC alignments3D/pose (axis-angle, radians)."""
    a = np.asarray(a, float).reshape(-1, 3, 3)
    return Rotation.from_matrix(np.transpose(a, (0, 2, 1))).as_rotvec()


def turn_matrix(rotvec_deg: np.ndarray) -> np.ndarray:
    """Rotation vectors in degrees (n, 3) -> matrices (n, 3, 3), scipy's convention.

    The refinement's pose moves (A' = R A) and the Cramer-Rao bound's
    rotation parameters are such turns.
    """
    rotvec = np.radians(np.asarray(rotvec_deg, float).reshape(-1, 3))
    return Rotation.from_rotvec(rotvec).as_matrix()


def turn_rotvec_deg(turn: np.ndarray) -> np.ndarray:
    """Inverse of :func:`turn_matrix`: matrices (n, 3, 3) -> rotation vectors in degrees (n, 3)."""
    return np.degrees(Rotation.from_matrix(np.asarray(turn, float).reshape(-1, 3, 3)).as_rotvec())


def axis_angle_matrix(axis: np.ndarray, angle_deg) -> np.ndarray:
    """Right-handed rotations (n, 3, 3) by ``angle_deg`` (scalar or (n,)) about a unit ``axis`` (3,)."""
    angle = np.radians(np.asarray(angle_deg, float)).reshape(-1, 1)
    return Rotation.from_rotvec(angle * np.asarray(axis, float).reshape(1, 3)).as_matrix()


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) between two stacks of rotation matrices.

    scipy's magnitude of the relative rotation goes through its quaternion
    (2 atan2(|v|, |w|)), so it keeps full precision at small angles, where
    arccos of the trace loses all of it below ~1e-6 degrees.
    """
    a = np.asarray(a, float).reshape(-1, 3, 3)
    b = np.asarray(b, float).reshape(-1, 3, 3)
    return np.degrees(Rotation.from_matrix(a @ np.transpose(b, (0, 2, 1))).magnitude())


def project_points(a: np.ndarray, points_A: np.ndarray, shift_A: np.ndarray) -> np.ndarray:
    """Image-plane positions (Angstrom from the image centre) of 3D points.

    a: (N, 3, 3) poses; points_A: (M, 3); shift_A: (N, 2). Returns (N, M, 2)
    holding (A c)_xy - o, the convention stated at the top of this module.
    """
    rotated = np.einsum("nij,mj->nmi", np.asarray(a, float), np.asarray(points_A, float))
    return rotated[..., :2] - np.asarray(shift_A, float)[:, None, :]


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly distributed rotation matrices (N, 3, 3)."""
    return Rotation.random(n, random_state=rng).as_matrix()


def perturb_rotations(a: np.ndarray, rms_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Compose each rotation with a random small rotation.

    The axis-angle vector is Gaussian with per-axis sd rms_deg / sqrt(3), so
    the rms angle of the perturbation is rms_deg.
    """
    a = np.asarray(a, float).reshape(-1, 3, 3)
    vec = rng.normal(scale=np.radians(rms_deg) / np.sqrt(3.0), size=(len(a), 3))
    return Rotation.from_rotvec(vec).as_matrix() @ a

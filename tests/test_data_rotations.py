"""Pose conventions against RELION's own Euler formula, written out by hand."""

import numpy as np
import pytest
from gmmrefine.data import rotations as geometry


def relion_euler_matrix(rot, tilt, psi):
    """RELION's Euler_angles2matrix (src/euler.cpp), transcribed term by term."""
    a, b, g = np.radians([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ])


@pytest.fixture
def angles():
    rng = np.random.default_rng(1)
    return np.column_stack([rng.uniform(-180, 180, 50), rng.uniform(0, 180, 50),
                            rng.uniform(-180, 180, 50)])


def test_euler_to_matrix_is_relions_matrix(angles):
    a = geometry.euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    expected = np.array([relion_euler_matrix(*row) for row in angles])
    np.testing.assert_allclose(a, expected, atol=1e-12)


def test_euler_round_trip_gives_the_same_rotation(angles):
    a = geometry.euler_to_matrix(*angles.T)
    back = geometry.matrix_to_euler(a)
    assert np.all((back[:, 1] >= 0) & (back[:, 1] <= 180))
    assert geometry.angle_between_deg(geometry.euler_to_matrix(*back.T), a).max() < 1e-9


def test_gimbal_lock_round_trip_keeps_the_rotation():
    a = geometry.euler_to_matrix([30.0, -50.0], [0.0, 180.0], [20.0, 10.0])
    back = geometry.matrix_to_euler(a)
    assert geometry.angle_between_deg(geometry.euler_to_matrix(*back.T), a).max() < 1e-6


def test_rotvec_matches_zyz_euler_as_pyem_states(angles):
    # realcs/README: from_euler("ZYZ", [rot, tilt, psi]) equals from_rotvec(pose).
    a = geometry.euler_to_matrix(*angles.T)
    pose = geometry.matrix_to_rotvec(a)
    assert geometry.angle_between_deg(geometry.rotvec_to_matrix(pose), a).max() < 1e-9


def test_angle_between_recovers_a_known_rotation():
    rng = np.random.default_rng(2)
    a = geometry.random_rotations(20, rng)
    axis = rng.normal(size=(20, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    from scipy.spatial.transform import Rotation
    turn = Rotation.from_rotvec(axis * np.radians(7.5)).as_matrix()
    np.testing.assert_allclose(geometry.angle_between_deg(turn @ a, a), 7.5, atol=1e-9)


def test_turns_round_trip_and_follow_the_right_hand_rule():
    rng = np.random.default_rng(4)
    vec = rng.normal(scale=40.0, size=(30, 3))
    np.testing.assert_allclose(geometry.turn_rotvec_deg(geometry.turn_matrix(vec)), vec, atol=1e-10)
    quarter = geometry.axis_angle_matrix([0.0, 0.0, 1.0], 90.0)
    np.testing.assert_allclose(quarter[0] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15)
    axis = vec[0] / np.linalg.norm(vec[0])
    np.testing.assert_allclose(geometry.axis_angle_matrix(axis, [25.0, -5.0]),
                               geometry.turn_matrix([axis * 25.0, axis * -5.0]), atol=1e-15)


def test_perturbation_has_the_requested_rms():
    rng = np.random.default_rng(3)
    a = geometry.random_rotations(20000, rng)
    b = geometry.perturb_rotations(a, 3.0, rng)
    rms = np.sqrt(np.mean(geometry.angle_between_deg(a, b) ** 2))
    assert rms == pytest.approx(3.0, rel=0.02)


def test_projected_point_follows_relion_image_formation():
    # A point on the x axis seen from rot=90 (A maps x to -y) lands at y = -r, minus the origin.
    a = geometry.euler_to_matrix([90.0], [0.0], [0.0])
    xy = geometry.project_points(a, np.array([[10.0, 0.0, 0.0]]), np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(xy[0, 0], [0.0 - 1.0, -10.0 - 2.0], atol=1e-12)

"""Conformation to pose: a known rigid turn of a region is recovered exactly (Kabsch) or
closely (Adam), and the new pose shows the neutral region where the turned one was."""

from __future__ import annotations

import numpy as np
from gmmrefine.data.rotations import angle_between_deg, project_points, random_rotations
from gmmrefine.gmm.model import GMM
from gmmrefine.hetero.conf2pose import (
    adam_poses,
    kabsch,
    overlap_fit,
    poses_from_turns,
    region_rmsd_2d_A,
)
from scipy.spatial.transform import Rotation

RNG = np.random.default_rng(11)


def _region(n: int = 60) -> np.ndarray:
    """A domain 30 A from the box centre."""
    return RNG.normal(scale=6.0, size=(n, 3)) + np.array([30.0, 5.0, -8.0])


def _hinge_turns(count: int, max_deg: float = 12.0):
    """Rigid turns about a hinge point, as the simulator's flexible domain moves."""
    axis = np.array([0.3, 0.9, 0.2]) / np.linalg.norm([0.3, 0.9, 0.2])
    angles = RNG.uniform(-max_deg, max_deg, count)
    turn = Rotation.from_rotvec(np.radians(angles)[:, None] * axis).as_matrix()
    hinge = np.array([15.0, 0.0, 0.0])
    return turn, hinge - np.einsum("nij,j->ni", turn, hinge)


def test_weighted_kabsch_matches_scipys_align_vectors():
    source = _region()
    weights = RNG.uniform(0.2, 1.0, len(source))
    target = source @ Rotation.random(random_state=1).as_matrix().T + RNG.normal(size=source.shape)
    rotation, _ = kabsch(source, target, weights)
    w = weights / weights.sum()
    expected, _ = Rotation.align_vectors(target - w @ target, source - w @ source, weights=weights)
    assert angle_between_deg(rotation, expected.as_matrix())[0] < 1e-6


def test_kabsch_recovers_known_turns_of_a_noise_free_region_exactly():
    neutral = _region()
    turn, move = _hinge_turns(20)
    conformation = np.einsum("nij,mj->nmi", turn, neutral) + move[:, None]
    rotation, translation = kabsch(conformation, neutral, np.ones(len(neutral)))
    # (R, t) takes the conformation back onto the neutral region: the inverse turn.
    inverse = np.transpose(turn, (0, 2, 1))
    assert angle_between_deg(rotation, inverse).max() < 1e-6
    np.testing.assert_allclose(translation, -np.einsum("nij,nj->ni", inverse, move), atol=1e-8)


def test_the_new_pose_shows_the_neutral_region_where_the_particle_shows_its_own():
    neutral = _region()
    turn, move = _hinge_turns(15)
    conformation = np.einsum("nij,mj->nmi", turn, neutral) + move[:, None]
    rotation = random_rotations(15, RNG)
    origin = RNG.normal(scale=3.0, size=(15, 2))
    r, t = kabsch(conformation, neutral, np.ones(len(neutral)))
    new_rot, new_org = poses_from_turns(rotation, origin, r, t)
    seen = np.stack([project_points(rotation[i:i + 1], conformation[i], origin[i:i + 1])[0]
                     for i in range(15)])
    shown = project_points(new_rot, neutral, new_org)
    np.testing.assert_allclose(shown, seen, atol=1e-8)
    # ... and the new pose is the true pose composed with the turn, as bench_focus's
    # domain-ideal poses are.
    assert angle_between_deg(new_rot, rotation @ turn).max() < 1e-6
    assert region_rmsd_2d_A(neutral, conformation, np.ones(len(neutral)), new_rot, new_org,
                            rotation, origin).max() < 1e-8


def test_adam_on_projected_centres_comes_close_to_the_exact_pose():
    neutral = _region()
    turn, move = _hinge_turns(30, max_deg=8.0)
    conformation = np.einsum("nij,mj->nmi", turn, neutral) + move[:, None]
    rotation = random_rotations(30, RNG)
    origin = RNG.normal(scale=3.0, size=(30, 2))
    weights = np.ones(len(neutral))
    new_rot, new_org = adam_poses(neutral, conformation, weights, rotation, origin, steps=60)
    rmsd = region_rmsd_2d_A(neutral, conformation, weights, new_rot, new_org, rotation, origin)
    start = region_rmsd_2d_A(neutral, conformation, weights, rotation, origin, rotation, origin)
    assert np.median(rmsd) < 0.1 * np.median(start)
    assert np.median(angle_between_deg(new_rot, rotation @ turn)) < 1.0


def test_overlap_fit_places_one_halfs_region_on_the_others():
    # Two fits of one region share no Gaussian: sample one lumpy density twice, move one.
    lumps = RNG.uniform(-12.0, 12.0, size=(8, 3))
    original = lumps[RNG.integers(0, 8, 400)] + RNG.normal(scale=1.0, size=(400, 3))
    fixed = GMM(original[:200], np.ones(200), np.full(200, 1.5))
    small = Rotation.from_rotvec([0.05, -0.08, 0.04]).as_matrix()       # 6 degrees
    shift = np.array([1.5, -1.0, 0.6])
    moving = GMM(original[200:] @ small.T + shift, np.ones(200), np.full(200, 1.5))
    rotation, translation = overlap_fit(moving, fixed, np.ones(200), np.ones(200))
    # Two samples of one density agree to about a degree (their sampling noise), not exactly.
    assert angle_between_deg(rotation @ small, np.eye(3))[0] < 2.0
    placed = moving.centres_A @ rotation.T + translation
    start = np.sqrt(np.mean(np.sum((moving.centres_A - original[200:]) ** 2, axis=1)))
    after = np.sqrt(np.mean(np.sum((placed - original[200:]) ** 2, axis=1)))
    assert after < 0.3 * start

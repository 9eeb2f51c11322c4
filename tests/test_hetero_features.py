"""The encoder's input: each particle's FRC gradient in the Gaussians' 3D centres, checked
against finite differences, summed into the anchors' moves, and tied to its own particle
whatever the row order."""

from __future__ import annotations

import numpy as np
from gmmrefine.align.kernel import direct_spectrum
from gmmrefine.align.rings import frc_mean, ring_pixels
from gmmrefine.data.rotations import project_points, random_rotations
from gmmrefine.device import tf
from gmmrefine.gmm.model import GMM
from gmmrefine.hetero.anchors import build_anchors
from gmmrefine.hetero.features import make_centre_gradient, particle_features

BOX, APIX = 32, 2.0
RNG = np.random.default_rng(5)
GMM_ = GMM(RNG.normal(scale=8.0, size=(40, 3)), RNG.uniform(0.5, 2.0, 40), np.full(40, 2.5))
PIXELS = ring_pixels(BOX, 2, 12)


def _particles(n: int):
    rotation = random_rotations(n, RNG)
    origin = RNG.normal(scale=2.0, size=(n, 2))
    moved = GMM_.centres_A + RNG.normal(scale=1.0, size=GMM_.centres_A.shape)
    p = project_points(rotation, moved, origin)
    re, im = direct_spectrum(tf.constant(p, tf.float32), tf.constant(GMM_.amplitudes, tf.float32),
                             tf.constant(GMM_.widths_A, tf.float32), PIXELS, APIX)
    data = re.numpy() + 1j * im.numpy()
    data += RNG.normal(scale=0.3 * np.abs(data).mean(), size=data.shape) * (1 + 1j)
    return rotation, origin, data


def _frc(centres: np.ndarray, rotation, origin, data) -> np.ndarray:
    p = project_points(rotation, centres, origin)
    re, im = direct_spectrum(tf.constant(p, tf.float32), tf.constant(GMM_.amplitudes, tf.float32),
                             tf.constant(GMM_.widths_A, tf.float32), PIXELS, APIX)
    return frc_mean(re, im, tf.constant(data.real, tf.float32),
                    tf.constant(data.imag, tf.float32), PIXELS).numpy().astype(float)


def test_centre_gradient_matches_finite_differences():
    rotation, origin, data = _particles(3)
    gradient = make_centre_gradient(GMM_, PIXELS, APIX)
    g = gradient(tf.constant(rotation, tf.float32), tf.constant(origin, tf.float32),
                 tf.constant(data.real, tf.float32), tf.constant(data.imag, tf.float32)).numpy()
    h = 5e-3     # float32 FRC: a step large enough to keep its digits
    for j, d in [(0, 0), (7, 1), (19, 2), (33, 0)]:
        up, down = GMM_.centres_A.copy(), GMM_.centres_A.copy()
        up[j, d] += h
        down[j, d] -= h
        numeric = (_frc(up, rotation, origin, data) - _frc(down, rotation, origin, data)) / (2 * h)
        np.testing.assert_allclose(g[:, j, d], numeric, rtol=3e-2, atol=2e-5)


def test_anchor_features_are_the_gradient_summed_through_the_weights():
    rotation, origin, data = _particles(5)
    gradient = make_centre_gradient(GMM_, PIXELS, APIX)
    anchors = build_anchors(GMM_, 6)
    full = particle_features(gradient, anchors, rotation, origin, data, "gaussians", batch=2)
    per_anchor = particle_features(gradient, anchors, rotation, origin, data, "anchors", batch=3)
    expected = np.einsum("jk,njd->nkd", anchors.weights, full.reshape(5, 40, 3)).reshape(5, -1)
    np.testing.assert_allclose(per_anchor, expected, rtol=1e-4, atol=1e-7)


def test_features_follow_their_particles_through_a_shuffle_of_the_rows():
    rotation, origin, data = _particles(9)
    gradient = make_centre_gradient(GMM_, PIXELS, APIX)
    anchors = build_anchors(GMM_, 6)
    order = RNG.permutation(9)
    plain = particle_features(gradient, anchors, rotation, origin, data, batch=4)
    shuffled = particle_features(gradient, anchors, rotation[order], origin[order], data[order],
                                 batch=4)
    np.testing.assert_allclose(shuffled, plain[order], rtol=1e-5, atol=1e-8)

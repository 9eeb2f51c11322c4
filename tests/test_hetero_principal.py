"""Principal axes of a half's latents measured by the motion they decode to."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from gmmrefine.gmm.model import GMM
from gmmrefine.pipeline.hetero_outputs import motion_metric, principal_axes


def _linear_half(rng, n=400):
    """A decoder x = x0 + z A: latent 0 moves 50 Gaussians far, latent 1 barely; the
    latents spread ten times wider along 1 than along 0."""
    base = rng.normal(scale=8.0, size=(50, 3))
    moves = np.stack([rng.normal(size=(50, 3)) * 2.0, rng.normal(size=(50, 3)) * 0.01])
    latent = rng.normal(size=(n, 2)) * [0.3, 3.0]
    amplitudes = rng.uniform(0.5, 2.0, 50)

    def decoder(z, training=False):
        return (base + np.einsum("nl,lgc->ngc", np.asarray(z, float), moves)).astype(np.float32)

    gmm = GMM(base, amplitudes, np.ones(50))
    return SimpleNamespace(latent=latent, decoder=decoder, gmm=gmm), moves


def test_motion_metric_is_the_decoders_weighted_jacobian_for_a_linear_decoder():
    rng = np.random.default_rng(0)
    model, moves = _linear_half(rng)
    weighted = (moves * np.sqrt(model.gmm.amplitudes)[None, :, None]).reshape(2, -1)
    np.testing.assert_allclose(motion_metric(model, batch=64), weighted @ weighted.T,
                               rtol=1e-4, atol=1e-8)


def test_the_first_axis_follows_the_motion_not_the_spread_of_the_latents():
    rng = np.random.default_rng(1)
    model, _ = _linear_half(rng)
    plain = principal_axes(model.latent)
    moving = principal_axes(model.latent, motion_metric(model))
    rho = lambda a, b: abs(np.corrcoef(a, b)[0, 1])  # noqa: E731
    assert rho(plain.scores(model.latent)[:, 0], model.latent[:, 1]) > 0.99
    assert rho(moving.scores(model.latent)[:, 0], model.latent[:, 0]) > 0.99
    # One unit of score k is a step of directions[k]; the plain PCA's two are one.
    np.testing.assert_allclose(np.sum(moving.axes * moving.directions, axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(plain.axes, plain.directions)
    scores = moving.scores(moving.point(0, 2.5)[None])[0]
    np.testing.assert_allclose(scores, [2.5, 0.0], atol=1e-9)
    flipped = moving.flipped(0)
    np.testing.assert_allclose(flipped.scores(model.latent)[:, 0],
                               -moving.scores(model.latent)[:, 0])

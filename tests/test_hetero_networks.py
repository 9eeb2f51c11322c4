"""The decoder's zero latent is the consensus GMM, anchors carry motions to the Gaussians,
and saved networks reload with plain Keras."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.gmm.model import GMM
from gmmrefine.hetero.anchors import anchor_weights, build_anchors
from gmmrefine.hetero.networks import build_decoder, build_encoder, keras, predict


def _gmm(n: int = 300, seed: int = 0) -> GMM:
    rng = np.random.default_rng(seed)
    return GMM(rng.normal(scale=12.0, size=(n, 3)), rng.uniform(0.5, 2.0, n),
               rng.uniform(1.5, 3.0, n))


def test_anchor_weights_are_a_partition_of_unity_so_a_translation_moves_everything():
    gmm = _gmm()
    anchors = build_anchors(gmm, 16, seed=3)
    assert anchors.weights.shape == (300, 16)
    np.testing.assert_allclose(anchors.weights.sum(axis=1), 1.0, atol=1e-12)
    move = np.array([1.5, -2.0, 0.7])
    moved = anchors.weights @ np.tile(move, (16, 1))
    np.testing.assert_allclose(moved, np.tile(move, (300, 1)), atol=1e-12)
    # Each Gaussian follows its nearest anchor most.
    nearest = np.argmin(np.linalg.norm(gmm.centres_A[:, None] - anchors.positions_A[None],
                                       axis=-1), axis=1)
    assert np.mean(np.argmax(anchors.weights, axis=1) == nearest) > 0.95


def test_anchors_gather_in_the_region_of_a_mask():
    gmm = _gmm(400)
    box, apix = 32, 2.0
    region = np.zeros((box,) * 3, np.float32)
    region[16:, :, :] = 1.0                     # z >= 0 A
    anchors = build_anchors(gmm, 20, region=region, apix=apix)
    inside_share = np.mean(anchors.positions_A[:, 2] > 0)
    assert np.mean(gmm.centres_A[:, 2] > 0) < 0.6 < inside_share


def test_decoder_at_the_zero_latent_is_the_consensus_gmm_exactly():
    gmm = _gmm()
    decoder = build_decoder(4, build_anchors(gmm, 16), gmm)
    # Train the hidden layers away from their start: zero must stay the consensus.
    for layer in decoder.layers:
        if layer.trainable and layer.weights:
            layer.set_weights([np.random.default_rng(1).normal(size=w.shape) for w in
                               layer.get_weights()])
    centres = predict(decoder, np.zeros((3, 4)), 2)
    np.testing.assert_allclose(centres, np.broadcast_to(gmm.centres_A, centres.shape),
                               atol=1e-4)
    moved = predict(decoder, np.ones((1, 4)), 1)[0]
    assert np.abs(moved - gmm.centres_A).max() > 0.1


def test_decoded_moves_are_the_anchor_blend(tmp_path):
    gmm = _gmm()
    anchors = build_anchors(gmm, 8)
    decoder = build_decoder(2, anchors, gmm)
    rng = np.random.default_rng(2)
    for layer in decoder.layers:
        if layer.trainable and layer.weights:
            layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
    z = rng.normal(size=(5, 2)).astype(np.float32)
    centres = predict(decoder, z, 5)
    moves = keras.Model(decoder.input, decoder.get_layer("anchor_displacement").output)(z)
    expected = gmm.centres_A + np.einsum("jk,nkd->njd", anchor_weights(
        gmm.centres_A, anchors.positions_A), np.asarray(moves).reshape(5, 8, 3) * 10.0)
    np.testing.assert_allclose(centres, expected, atol=1e-3)


@pytest.mark.parametrize("which", ["encoder", "decoder"])
def test_saved_networks_reload_with_plain_keras(tmp_path, which):
    gmm = _gmm(50)
    features = np.random.default_rng(0).normal(size=(40, 24)).astype(np.float32)
    net = (build_encoder(features, 3) if which == "encoder"
           else build_decoder(3, build_anchors(gmm, 8), gmm))
    inputs = features[:7] if which == "encoder" else np.random.default_rng(1).normal(size=(7, 3))
    path = tmp_path / f"{which}.keras"
    net.save(path)
    again = keras.models.load_model(path)         # no custom objects: built-in layers only
    np.testing.assert_allclose(predict(again, inputs, 4), predict(net, inputs, 4), atol=1e-6)

"""GMM from a map and from a model: fit quality against the map it came from."""

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.gmm.fit import estimate_n_gaussians, gmm_from_atoms, gmm_from_map
from gmmrefine.gmm.model import render_map
from gmmrefine.reconstruct.fsc import fsc_curve, resolution_at
from gmmrefine.simulate.model import build_model
from gmmrefine.simulate.render import atom_amplitude, atom_sigma_A
from gmmrefine.simulate.render import render_map as render_atoms


@pytest.fixture(scope="module")
def protein_map():
    model = build_model(seed=3, n_residues=300)
    box, apix = 48, 1.6
    volume = render_atoms(model.coords_A, atom_amplitude(model.element),
                          atom_sigma_A(model.element, 40.0), box, apix)
    return volume, apix


@pytest.mark.slow
def test_gmm_renders_the_map_to_its_resolution(protein_map):
    volume, apix = protein_map
    res_A = 5.0
    gmm, report = gmm_from_map(volume, apix, res_A, steps=150)
    fsc = fsc_curve(render_map(gmm, volume.shape[0], apix), volume)
    assert resolution_at(fsc, volume.shape[0], apix, 0.9) <= res_A
    assert report.residual_end < 0.05 * report.residual_start
    # The automatic N puts neighbours ~0.6 x res apart, so not 10x more or fewer.
    assert 0.3 * 0.6 * res_A < report.mean_nn_A < 1.5 * 0.6 * res_A


def test_more_resolution_needs_more_gaussians():
    assert estimate_n_gaussians(1e5, 3.0) > 3 * estimate_n_gaussians(1e5, 6.0)


def test_user_n_is_kept(protein_map):
    volume, apix = protein_map
    gmm, _ = gmm_from_map(volume, apix, 8.0, n=150, steps=10)
    assert len(gmm) == 150


def test_empty_map_is_refused():
    with pytest.raises(InputError, match="threshold"):
        gmm_from_map(np.zeros((32, 32, 32), np.float32), 2.0, 8.0, threshold=1.0)


def test_model_seeded_halves_differ_at_the_resolution_scale():
    rng = np.random.default_rng(0)
    coords = rng.normal(scale=10.0, size=(5000, 3))
    a = gmm_from_atoms(coords, np.ones(5000), 6.0, np.random.default_rng(1))
    b = gmm_from_atoms(coords, np.ones(5000), 6.0, np.random.default_rng(2))
    # Each coordinate is displaced with sd res / (pi sqrt 2): the halves differ by sqrt 2 x that.
    sd = np.std(a.centres_A - b.centres_A) / np.sqrt(2.0)
    assert sd == pytest.approx(6.0 / (np.pi * np.sqrt(2.0)), rel=0.05)


def test_the_fit_optimiser_takes_the_steps_keras_adam_takes():
    import tensorflow as tf
    from gmmrefine.gmm.fit import adam_update

    start = np.array([[1.0, -2.0, 0.5]], np.float32)
    weights = tf.constant([[1.0, 10.0, 0.1]])
    ours, theirs = (tf.constant(start),), tf.Variable(start)
    m = v = (tf.zeros_like(ours[0]),)
    keras_adam = tf.keras.optimizers.Adam(0.1)
    for t in range(1, 6):
        with tf.GradientTape() as tape:
            tape.watch(ours)
            loss = tf.reduce_sum((ours[0] - 3.0) ** 2 * weights)
        ours, m, v = adam_update(ours, tuple(tape.gradient(loss, ours)), m, v,
                                 tf.constant(float(t)), tf.constant(0.1))
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum((theirs - 3.0) ** 2 * weights)
        keras_adam.apply_gradients([(tape.gradient(loss, theirs), theirs)])
    assert not np.allclose(ours[0].numpy(), start)
    np.testing.assert_allclose(ours[0].numpy(), theirs.numpy(), rtol=1e-6, atol=1e-6)

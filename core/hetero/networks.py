"""The encoder and decoder networks (Keras 3), one pair per half set.

decoder: latent z -> every Gaussian's centre. Hidden layers without biases
and with activations that vanish at 0 give anchor displacements that are
exactly zero at z = 0; a frozen last layer spreads the anchors'
displacements to the Gaussians (gmmrefine.hetero.anchors) and adds the
consensus centres as its bias. So the zero latent *is* the half's consensus
GMM, by construction rather than by pre-training towards it (which the
reference implementation does, and which leaves it only close), and the
first training step starts every particle there.

encoder: per-particle features (gmmrefine.hetero.features) -> z, through a
standardising layer adapted to the half's features.

Both are plain Keras functional models of built-in layers, so a saved
``.keras`` file reloads with ``keras.models.load_model`` and nothing of ours.
"""

from __future__ import annotations

import keras  # noqa: E402  (after gmmrefine.device, which silences TensorFlow)
import numpy as np

from ..device import tf  # noqa: F401 - TensorFlow set up (quietly) before Keras loads it
from ..gmm.model import GMM
from .anchors import Anchors

# Anchor displacements leave the network in units of this many Angstrom, so
# Adam's steps (~learning rate per step on the weights) move domains by
# a useful fraction of an Angstrom rather than a thousandth.
DISPLACEMENT_SCALE_A = 10.0
HIDDEN_DECODER = (64, 64)
HIDDEN_ENCODER = (128, 64)


def build_decoder(latent_dim: int, anchors: Anchors, consensus: GMM,
                  hidden: tuple[int, ...] = HIDDEN_DECODER) -> keras.Model:
    """latent (n, L) -> centres_A (n, N, 3); decoder(0) = consensus.centres_A exactly."""
    n_gauss, n_anchor = len(consensus), len(anchors)
    z = keras.Input((latent_dim,), name="latent")
    h = z
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="gelu", use_bias=False, name=f"hidden_{i}")(h)
    moves = keras.layers.Dense(3 * n_anchor, use_bias=False, kernel_initializer="zeros",
                               name="anchor_displacement")(h)
    spread = keras.layers.Dense(3 * n_gauss, trainable=False, name="gaussian_centres")
    centres = keras.layers.Reshape((n_gauss, 3), name="centres_A")(spread(moves))
    model = keras.Model(z, centres, name="decoder")
    kernel = np.kron(anchors.weights.T, np.eye(3)) * DISPLACEMENT_SCALE_A
    spread.set_weights([kernel.astype(np.float32),
                        np.asarray(consensus.centres_A, np.float32).reshape(-1)])
    return model


def build_encoder(features: np.ndarray, latent_dim: int,
                  hidden: tuple[int, ...] = HIDDEN_ENCODER) -> keras.Model:
    """features (n, F) -> latent (n, L), its input standardised over ``features``."""
    x = keras.Input((features.shape[1],), name="features")
    norm = keras.layers.Normalization(name="standardise")
    norm.adapt(np.asarray(features, np.float32))
    h = norm(x)
    for i, units in enumerate(hidden):
        h = keras.layers.Dense(units, activation="gelu", name=f"hidden_{i}")(h)
    z = keras.layers.Dense(latent_dim, name="latent")(h)
    return keras.Model(x, z, name="encoder")


def predict(model: keras.Model, inputs: np.ndarray, batch: int) -> np.ndarray:
    """The model's outputs for ``inputs`` in batches (memory bounded by ``batch``), float32."""
    inputs = np.asarray(inputs, np.float32)
    parts = [np.asarray(model(inputs[lo:lo + batch], training=False))
             for lo in range(0, len(inputs), batch)]
    return np.concatenate(parts) if parts else np.zeros((0,), np.float32)

"""Training one half's encoder and decoder: each particle's decoded GMM, projected at its
pose (held fixed), should match the particle by the FRC the aligner uses.

Loss per batch: minus the mean FRC (the paper's ring-normalised FRC of the
phase-flipped particle over the alignment's rings) plus a small penalty on
|z|^2 that keeps the latent from drifting in scale. Batches bound device
memory; each epoch reports its loss through ``report``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..align.kernel import gmm_tensors, separable_spectrum
from ..align.rings import RingPixels, frc_mean
from ..device import tf
from ..errors import Aborted
from ..gmm.model import GMM
from .networks import keras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """How one half is trained."""

    epochs: int = 30
    batch: int = 64
    learning_rate: float = 1e-3
    latent_penalty: float = 1e-4
    seed: int = 0


@dataclass
class TrainHistory:
    """Per epoch: the mean loss and the mean FRC of the decoded GMMs."""

    loss: list[float] = field(default_factory=list)
    frc: list[float] = field(default_factory=list)


def make_train_step(encoder: keras.Model, decoder: keras.Model, gmm: GMM, pixels: RingPixels,
                    apix: float, settings: TrainSettings) -> Callable:
    """A compiled step ``(features, rotation, origin_A, data_re, data_im) -> (loss, frc)``
    that updates both networks once."""
    _, amplitudes, widths = gmm_tensors(gmm)
    optimizer = keras.optimizers.Adam(learning_rate=settings.learning_rate)
    variables = encoder.trainable_variables + decoder.trainable_variables
    optimizer.build(variables)
    penalty = float(settings.latent_penalty)

    @tf.function(reduce_retracing=True)
    def step(features, rotation, origin_A, data_re, data_im):
        with tf.GradientTape() as tape:
            z = encoder(features, training=True)
            centres = decoder(z, training=True)                                 # (n, N, 3)
            projected = (tf.einsum("nij,nmj->nmi", rotation[:, :2, :], centres)
                         - origin_A[:, None, :])
            re, im = separable_spectrum(projected, amplitudes, widths, pixels, apix,
                                        gmm_grads=False)
            frc = tf.reduce_mean(frc_mean(re, im, data_re, data_im, pixels))
            loss = -frc + penalty * tf.reduce_mean(tf.reduce_sum(z * z, axis=-1))
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss, frc

    return step


def train_half(encoder: keras.Model, decoder: keras.Model, gmm: GMM, features: np.ndarray,
               rotation: np.ndarray, origin_A: np.ndarray, data: np.ndarray,
               pixels: RingPixels, apix: float, settings: TrainSettings, *,
               report: Callable[[int, float, float], None] | None = None,
               should_abort: Callable[[], bool] = lambda: False) -> TrainHistory:
    """Train ``encoder`` and ``decoder`` in place on one half's particles.

    features (n, F) encoder inputs; rotation (n, 3, 3) and origin_A (n, 2)
    the particles' poses; data (n, M) their phase-flipped spectra at
    ``pixels`` (on the grid of pixel size ``apix``). ``report(epoch, loss,
    frc)`` is called after every epoch. Raises Aborted between batches once
    ``should_abort()`` is true.
    """
    step = make_train_step(encoder, decoder, gmm, pixels, apix, settings)
    rng = np.random.default_rng(settings.seed)
    n = len(features)
    tensors = [np.asarray(features, np.float32), np.asarray(rotation, np.float32),
               np.asarray(origin_A, np.float32), np.ascontiguousarray(data.real, np.float32),
               np.ascontiguousarray(data.imag, np.float32)]
    history = TrainHistory()
    for epoch in range(1, settings.epochs + 1):
        order = rng.permutation(n)
        losses, frcs, sizes = [], [], []
        for lo in range(0, n, settings.batch):
            if should_abort():
                raise Aborted("stopped on request")
            rows = order[lo:lo + settings.batch]
            loss, frc = step(*(tf.constant(t[rows]) for t in tensors))
            losses.append(float(loss))
            frcs.append(float(frc))
            sizes.append(len(rows))
        history.loss.append(float(np.average(losses, weights=sizes)))
        history.frc.append(float(np.average(frcs, weights=sizes)))
        if report is not None:
            report(epoch, history.loss[-1], history.frc[-1])
    return history

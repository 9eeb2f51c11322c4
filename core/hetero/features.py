"""What the encoder reads: each particle's FRC gradient with respect to the anchors' moves.

The reference implementation feeds its encoder the gradient of the FRC
with respect to the GMM's parameters, per particle, at the consensus GMM:
it lives in the molecule's frame whatever the particle's view, and points
where the particle would like the Gaussians to go. Here the gradient in the
Gaussians' centres (N x 3) is summed through the anchor weights into the
gradient in the anchors' displacements (K x 3, ``anchors``): the same
information at the resolution the decoder can use, a hundred numbers
instead of thousands, and averaged over each anchor's Gaussians, so less
noisy. ``gaussians`` keeps the full N x 3 gradient (bench/bench_hetero.py
measures both).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..align.kernel import gmm_tensors, separable_spectrum
from ..align.rings import RingPixels, frc_mean
from ..device import tf
from ..gmm.model import GMM
from .anchors import Anchors
from .settings import FEATURE_KINDS


def make_centre_gradient(gmm: GMM, pixels: RingPixels, apix: float) -> Callable:
    """A compiled ``f(rotation (n,3,3), origin_A (n,2), data_re, data_im) -> (n, N, 3)``:
    each particle's FRC gradient in the 3D centres of the Gaussians (molecule frame)."""
    centres, amplitudes, widths = gmm_tensors(gmm)
    spec = [tf.TensorSpec([None, 3, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32),
            tf.TensorSpec([None, len(pixels)], tf.float32),
            tf.TensorSpec([None, len(pixels)], tf.float32)]

    @tf.function(input_signature=spec)
    def gradient(rotation, origin_A, data_re, data_im):
        projected = tf.einsum("nij,mj->nmi", rotation[:, :2, :], centres) - origin_A[:, None, :]
        with tf.GradientTape() as tape:
            tape.watch(projected)
            re, im = separable_spectrum(projected, amplitudes, widths, pixels, apix,
                                        gmm_grads=False)
            frc = frc_mean(re, im, data_re, data_im, pixels)
        # Particles do not interact: the gradient of the summed FRC is each one's own.
        g2 = tape.gradient(frc, projected)                                   # (n, N, 2)
        return tf.einsum("nji,nik->njk", g2, rotation[:, :2, :])            # p = (A c)_xy - o

    return gradient


def particle_features(gradient: Callable, anchors: Anchors, rotation: np.ndarray,
                      origin_A: np.ndarray, data: np.ndarray, kind: str = "anchors",
                      batch: int = 64) -> np.ndarray:
    """(n, F) encoder inputs: F = 3 K (``anchors``) or 3 N (``gaussians``), float32.

    ``data`` (n, M) complex: the particles' phase-flipped spectra at the rings.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"feature kind {kind!r}; expected one of {FEATURE_KINDS}")
    weights = tf.constant(anchors.weights, tf.float32)
    out = []
    for lo in range(0, len(rotation), batch):
        rows = slice(lo, lo + batch)
        g3 = gradient(tf.constant(rotation[rows], tf.float32),
                      tf.constant(origin_A[rows], tf.float32),
                      tf.constant(data[rows].real, tf.float32),
                      tf.constant(data[rows].imag, tf.float32))
        if kind == "anchors":
            g3 = tf.einsum("jk,njd->nkd", weights, g3)
        out.append(tf.reshape(g3, [tf.shape(g3)[0], -1]).numpy())
    return np.concatenate(out).astype(np.float32)

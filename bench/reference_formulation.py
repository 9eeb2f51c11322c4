"""The reference implementation's formulation, rewritten from its description for the side-by-side.

What is kept from the reference (EMAN2's e2gmm, as DESIGN.md and issue 3
describe it): per particle, the Gaussians' transform factorised over kx and
ky into an (N x Fx) and an (N x Fy) complex matrix whose product is the full
clipped square of the image's transform, mapped over the batch with
tf.vectorized_map; the FRC by contracting that square with a dense one-hot
(pixels x rings) tensor; poses as Euler-angle offsets in radians plus shifts
as box fractions, refined by a fresh Adam (lr 1e-3, 10 steps) per batch.

What is changed so the numbers compare with gmmrefine's: amplitudes and
widths are physical (no squaring, no magic width constant), Euler angles are
RELION's ZYZ, and the complex product is done in whichever of complex64 or
four real matrix products is faster here (``real_arithmetic``), so the
comparison is with the formulation at its best, not with a slow op.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def euler_matrix_tf(angles_rad: tf.Tensor) -> tf.Tensor:
    """(n, 3) RELION rot, tilt, psi in radians -> (n, 3, 3) RELION matrices A."""
    a, b, g = tf.unstack(angles_rad, axis=-1)
    ca, sa, cb, sb, cg, sg = tf.cos(a), tf.sin(a), tf.cos(b), tf.sin(b), tf.cos(g), tf.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    rows = [tf.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
            tf.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
            tf.stack([sc, ss, cb], -1)]
    return tf.stack(rows, axis=-2)


class ReferenceFormulation:
    """Projection + FRC + pose gradient the reference's way, for one GMM and box.

    radius_px is the target ring (the clipped square is 2 radius_px wide);
    ring_lo the first ring of the FRC mean.
    """

    def __init__(self, centres_A, amplitudes, widths_A, box: int, apix: float,
                 radius_px: int, ring_lo: int, real_arithmetic: bool = True):
        self.centres = tf.constant(centres_A, tf.float32)
        self.amplitudes = tf.constant(amplitudes, tf.float32)
        self.widths = tf.constant(widths_A, tf.float32)
        self.box, self.apix, self.radius, self.ring_lo = box, apix, radius_px, ring_lo
        self.real_arithmetic = real_arithmetic
        freq = np.arange(-radius_px, radius_px)
        self.freq = tf.constant(freq / (box * apix), tf.float32)       # cycles / A
        ky, kx = np.meshgrid(freq, freq, indexing="ij")
        ring = np.rint(np.hypot(kx, ky)).astype(int).ravel()
        self.one_hot = tf.constant(np.eye(ring.max() + 1, dtype=np.float32)[ring])  # (P, rings)
        self.objective = tf.function(self._value_and_grad)

    def clipped_square(self, spectra_centred: np.ndarray) -> np.ndarray:
        """The data's (2R x 2R) centred square, flattened: (n, P) complex."""
        c, r = self.box // 2, self.radius
        return spectra_centred[:, c - r:c + r, c - r:c + r].reshape(len(spectra_centred), -1)

    def _image(self, euler_rad, shift_frac):
        """Full clipped square of one particle's transform, (P,) real and imaginary parts."""
        pose = euler_matrix_tf(euler_rad[None])[0]
        p = tf.einsum("ij,nj->ni", pose[:2], self.centres)
        p = p - shift_frac[None, :] * (self.box * self.apix)
        decay = tf.exp(-2.0 * np.pi ** 2 * (self.widths[:, None] * self.freq[None]) ** 2)
        phase_x = -2.0 * np.pi * p[:, 0:1] * self.freq[None]
        phase_y = -2.0 * np.pi * p[:, 1:2] * self.freq[None]
        xr, xi = self.amplitudes[:, None] * decay * tf.cos(phase_x), \
            self.amplitudes[:, None] * decay * tf.sin(phase_x)
        yr, yi = decay * tf.cos(phase_y), decay * tf.sin(phase_y)
        if self.real_arithmetic:
            re = tf.matmul(yr, xr, transpose_a=True) - tf.matmul(yi, xi, transpose_a=True)
            im = tf.matmul(yr, xi, transpose_a=True) + tf.matmul(yi, xr, transpose_a=True)
        else:
            img = tf.matmul(tf.complex(yr, yi), tf.complex(xr, xi), transpose_a=True)
            re, im = tf.math.real(img), tf.math.imag(img)
        return tf.reshape(re, [-1]), tf.reshape(im, [-1])

    def _frc(self, re, im, data_re, data_im):
        cross = (re * data_re + im * data_im) @ self.one_hot
        model = (re * re + im * im) @ self.one_hot
        data = (data_re * data_re + data_im * data_im) @ self.one_hot
        per_ring = cross / tf.sqrt(model * data + 1e-30)
        return tf.reduce_mean(per_ring[:, self.ring_lo:self.radius + 1], axis=-1)

    def _value_and_grad(self, euler_rad, shift_frac, data_re, data_im):
        with tf.GradientTape() as tape:
            tape.watch([euler_rad, shift_frac])
            re, im = tf.vectorized_map(lambda args: self._image(*args), (euler_rad, shift_frac))
            frc = self._frc(re, im, data_re, data_im)
        return (frc,) + tuple(tape.gradient(frc, [euler_rad, shift_frac]))

    def refine(self, euler_rad: np.ndarray, shift_frac: np.ndarray, data_re, data_im,
               steps: int = 10, lr: float = 1e-3):
        """The reference's recipe: a fresh Adam per batch, ``steps`` steps of ``lr``.

        Returns (euler_rad, shift_frac, frc at the start, frc at the end).
        """
        euler = np.asarray(euler_rad, np.float32)
        shift = np.asarray(shift_frac, np.float32)
        adam = Adam([lr, lr])
        frc0 = None
        for _ in range(steps):
            frc, g_e, g_s = self.objective(euler, shift, data_re, data_im)
            frc0 = frc.numpy() if frc0 is None else frc0
            euler, shift = adam.ascend([euler, shift], [g_e.numpy(), g_s.numpy()])
        frc, _, _ = self.objective(euler, shift, data_re, data_im)
        return euler, shift, frc0, frc.numpy()


class Adam:
    """Plain Adam (Kingma & Ba defaults) ascending a score, one learning rate per parameter."""

    def __init__(self, lrs, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lrs, self.beta1, self.beta2, self.eps = list(lrs), beta1, beta2, eps
        self.m = self.v = None
        self.t = 0

    def ascend(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(g) for g in grads]
            self.v = [np.zeros_like(g) for g in grads]
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            self.m[i] = self.beta1 * self.m[i] + (1 - self.beta1) * g
            self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * g * g
            m_hat = self.m[i] / (1 - self.beta1 ** self.t)
            v_hat = self.v[i] / (1 - self.beta2 ** self.t)
            out.append((p + self.lrs[i] * m_hat / (np.sqrt(v_hat) + self.eps)).astype(np.float32))
        return out

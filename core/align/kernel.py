"""Projection kernel: the analytic 2D Fourier transform of a projected GMM, in TensorFlow.

A 3D Gaussian (centre c, amplitude a, width s) seen at pose (A, o) projects
to a 2D Gaussian of the same amplitude and width at p = (A c)_xy - o
(gmmrefine.data.rotations' convention). Its transform, normalised as
gmmrefine.fourier.grids.fft2c normalises images, is

    F(k) = sum_j a_j exp(-2 pi^2 s_j^2 |k|^2) exp(-2 pi i k . p_j),

k in cycles per Angstrom on the box's grid (k = (kx, ky) / (B apix)), so
F(0) = sum of amplitudes = sum of the pixels of an image whose pixels hold
the density integrated over each pixel. That image's fft2c is F(k) times
sinc(kx apix) sinc(ky apix), plus aliases (docs/kernel.md).

Two evaluations of the same sum over the pixels of a frc.RingPixels:
- :func:`direct_spectrum`: one term per Gaussian and pixel. Simple, exact,
  O(N M) memory per particle: for tests and as the brute-force baseline.
- :func:`separable_spectrum`: the production path, exact as well (it is the
  same sum reordered, not an approximation). The Gaussian factorises,
  F(kx, ky) = sum_j X_j(kx) Y_j(ky), so one matrix product gives a whole
  block of pixels. Hermitian symmetry gives the half plane ky >= 0, and
  X_j(-kx) = conj(X_j(kx)) gives kx < 0 from the same four real products as
  kx >= 0: one real (2n x N) @ (N x 2n) product per particle, n = highest
  frequency + 1, a quarter of the full square's complex product.

Pose parameters per particle, composed with the start pose: ``dtheta_deg``, a
rotation vector in degrees applied in the camera frame (A' = R(dtheta) A;
its z component is the in-plane angle, x and y tilt about the image axes),
and ``dshift_px``, added to the origin in pixels (o' = o + apix dshift_px).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from ..data.rotations import turn_matrix
from ..device import tf
from ..gmm.model import GMM
from .rings import RingPixels, frc_mean

TWO_PI = 2.0 * np.pi


def rotvec_deg_to_matrix(rotvec_deg: tf.Tensor) -> tf.Tensor:
    """(n, 3) rotation vectors in degrees -> (n, 3, 3) matrices (Rodrigues), in TensorFlow.

    The TensorFlow twin of :func:`gmmrefine.data.rotations.turn_matrix`
    (scipy's Rotation.from_rotvec(radians).as_matrix(), checked against it
    in tests/test_align_kernel.py). It exists because the refinement
    differentiates the FRC with respect to the rotation vector, and scipy's
    numpy code is invisible to a GradientTape; everywhere else, use scipy.
    The series branch near zero keeps value and gradient finite at the
    identity, where every refinement starts.
    """
    v = rotvec_deg * (np.pi / 180.0)
    theta2 = tf.reduce_sum(v * v, axis=-1)
    small = theta2 < 1e-6
    safe2 = tf.where(small, tf.ones_like(theta2), theta2)
    safe = tf.sqrt(safe2)
    sin_term = tf.where(small, 1.0 - theta2 / 6.0, tf.sin(safe) / safe)
    cos_term = tf.where(small, 0.5 - theta2 / 24.0, (1.0 - tf.cos(safe)) / safe2)
    x, y, z = tf.unstack(v, axis=-1)
    zero = tf.zeros_like(x)
    k = tf.stack([tf.stack([zero, -z, y], -1), tf.stack([z, zero, -x], -1),
                  tf.stack([-y, x, zero], -1)], axis=-2)
    eye = tf.eye(3, dtype=v.dtype)
    return eye + sin_term[:, None, None] * k + cos_term[:, None, None] * (k @ k)


def apply_pose_moves(rotation: np.ndarray, origin_A: np.ndarray, dtheta_deg: np.ndarray,
                     dshift_px: np.ndarray, apix: float) -> tuple[np.ndarray, np.ndarray]:
    """The refined poses (A', o') in float64: A' = R(dtheta) A, o' = o + apix dshift.

    The same composition :func:`projected_centres_A` differentiates, for
    writing refined poses back (RELION's matrix and rlnOriginX/YAngst).
    """
    rotated = turn_matrix(dtheta_deg) @ np.asarray(rotation, float).reshape(-1, 3, 3)
    return rotated, np.asarray(origin_A, float) + apix * np.asarray(dshift_px, float)


def projected_centres_A(centres_A: tf.Tensor, rotation: tf.Tensor, origin_A: tf.Tensor,
                        dtheta_deg: tf.Tensor, dshift_px: tf.Tensor, apix: float,
                        mag: np.ndarray | None = None) -> tf.Tensor:
    """(n, N, 2) image positions (Angstrom from pixel B // 2) of the Gaussians' centres.

    centres_A (N, 3); rotation (n, 3, 3) start poses A; origin_A (n, 2) start
    origins o; dtheta_deg (n, 3) and dshift_px (n, 2) the refinement's moves;
    mag the optics group's magnification M (2, 2), or None.

    An image whose frequency k records the specimen's M k (RELION's
    magnification matrix) sees a point p of the projection plane at M^T p:
    k . (M^T p) = (M k) . p. The origin stays in the image's own frame.
    """
    pose = rotvec_deg_to_matrix(dtheta_deg) @ rotation
    rotated = tf.einsum("nij,mj->nmi", pose[:, :2, :], centres_A)
    if mag is not None:
        rotated = tf.einsum("nmi,ij->nmj", rotated, tf.constant(mag, rotated.dtype))
    return rotated - (origin_A + apix * dshift_px)[:, None, :]


def magnified_gmm(gmm: GMM, mag: np.ndarray | None) -> GMM:
    """The GMM whose isotropic widths best stand for its widths seen through M.

    A Gaussian of width s seen at M k decays as exp(-2 pi^2 s^2 |M k|^2); the
    separable projection needs an isotropic decay, so |M k|^2 is taken as
    m^2 |k|^2 with m^2 = trace(M^T M) / 2. The positions stay exact
    (:func:`projected_centres_A`); only the amplitude envelope is
    approximated: by exp(-+2 pi^2 s^2 |k|^2 (l_max - l_min) / 2) at worst,
    l the eigenvalues of M^T M (about 2 % at 3 A for a 1 % anisotropy and
    s = 1 A), which moves no pose.
    """
    if mag is None:
        return gmm
    m = float(np.sqrt(np.trace(mag.T @ mag) / 2.0))
    return GMM(gmm.centres_A, gmm.amplitudes, gmm.widths_A * m)


def _cycles(freq: tf.Tensor, position_over_box: tf.Tensor) -> tf.Tensor:
    """freq * position in cycles, reduced to [-1/2, 1/2] so float32 keeps its digits."""
    cycles = freq * position_over_box
    return cycles - tf.round(cycles)


def direct_spectrum(centres_2d_A: tf.Tensor, amplitudes: tf.Tensor, widths_A: tf.Tensor,
                    pixels: RingPixels, apix: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Brute-force F(k) at ``pixels``: (re, im), each (n, M). Memory O(n N M)."""
    length_A = pixels.box * apix
    kx = tf.constant(pixels.kx, centres_2d_A.dtype)
    ky = tf.constant(pixels.ky, centres_2d_A.dtype)
    k2 = (kx * kx + ky * ky) / length_A ** 2
    envelope = amplitudes[:, None] * tf.exp(-2.0 * np.pi ** 2 * widths_A[:, None] ** 2 * k2)
    frac = centres_2d_A / length_A                                              # (n, N, 2)
    phase = TWO_PI * (_cycles(kx, frac[..., 0:1]) + _cycles(ky, frac[..., 1:2]))  # (n, N, M)
    re = tf.reduce_sum(envelope * tf.cos(phase), axis=1)
    im = -tf.reduce_sum(envelope * tf.sin(phase), axis=1)
    return re, im


def _factor_pair(position_A: tf.Tensor, omega2: tf.Tensor, quarter2: tf.Tensor,
                 decay2: tf.Tensor) -> tf.Tensor:
    """(n, N, 2F) [Re | Im] of decay(f) exp(-2 pi i f u / L) for f = 0 .. F-1, in one pass.

    omega2 = 2 pi f / L over the doubled frequency axis; the imaginary half is
    -sin(phi) = cos(phi + pi/2), so one cosine (its second half offset by
    quarter2 = pi/2) writes the whole [Re | Im] block without a concatenation.
    The phase is not reduced modulo 2 pi first: it stays below pi B, where
    float32 puts about 1e-5 rad of error on it, within the kernel's 1e-4.
    """
    return decay2 * tf.cos(omega2 * position_A[..., None] + quarter2)


def _separable_product(length_A: float, n_freq: int, gmm_grads: bool = True) -> Callable:
    """The (n, 2F, 2F) real product [Yr Yi]^T [aXr aXi], with its gradient written out.

    X_j(f) = exp(-2 pi^2 s_j^2 f^2 / L^2) exp(-2 pi i f x_j / L) on the x axis
    and Y_j likewise on y. The hand-written gradient reuses the forward's
    factors, so the backward pass takes no sine, cosine or exponential: with
    dV the gradient reaching V = a [Xr Xi],
    dL/dx_j = (2 pi / L) sum_f f (dVr Vi - dVi Vr),
    dL/ds_j = -(4 pi^2 s_j / L^2) sum_f f^2 (dV . V + dU . U),
    dL/da_j = sum_f dV . [Xr Xi].
    With gmm_grads False (pose refinement) the last two are skipped and
    returned as zeros.
    """
    freq = np.arange(n_freq, dtype=np.float32)
    freq2 = np.concatenate([freq, freq])
    omega2 = (TWO_PI / length_A * freq2).astype(np.float32)
    quarter2 = np.repeat(np.float32([0.0, np.pi / 2]), n_freq)
    cross_weight = np.concatenate([freq, -freq]) * np.float32(TWO_PI / length_A)

    @tf.custom_gradient
    def product(centres_2d_A, amplitudes, widths_A):
        f2 = tf.constant(freq2)
        decay2 = tf.exp(-2.0 * np.pi ** 2 * (widths_A[:, None] * f2 / length_A) ** 2)  # (N, 2F)
        u = _factor_pair(centres_2d_A[..., 1], omega2, quarter2, decay2)
        x = _factor_pair(centres_2d_A[..., 0], omega2, quarter2, decay2)
        v = amplitudes[:, None] * x

        def grad(upstream):
            dv = tf.matmul(u, upstream)                          # (n, N, 2F)
            du = tf.matmul(v, upstream, transpose_b=True)
            # dVr Vi - dVi Vr as one product with V's halves swapped
            g_x = tf.linalg.matvec(dv * tf.roll(v, n_freq, axis=-1), cross_weight)
            g_y = tf.linalg.matvec(du * tf.roll(u, n_freq, axis=-1), cross_weight)
            g_centres = tf.stack([g_x, g_y], axis=-1)
            if not gmm_grads:
                return g_centres, tf.zeros_like(amplitudes), tf.zeros_like(widths_A)
            dv_x = dv * x
            g_amp = tf.reduce_sum(dv_x, axis=[0, 2])
            power = (amplitudes * tf.reduce_sum(tf.linalg.matvec(dv_x, f2 * f2), axis=0)
                     + tf.reduce_sum(tf.linalg.matvec(du * u, f2 * f2), axis=0))
            g_width = -4.0 * np.pi ** 2 * widths_A / length_A ** 2 * power
            return g_centres, g_amp, g_width

        return tf.matmul(u, v, transpose_a=True), grad

    return product


def _separable_gather_index(pixels: RingPixels, n_freq: int) -> np.ndarray:
    """Flat index of each pixel in the (2, n_freq, n_freq) table [kx sign, ky, |kx|]."""
    negative = (pixels.kx < 0).astype(np.int64)
    return negative * n_freq * n_freq + pixels.ky.astype(np.int64) * n_freq + np.abs(pixels.kx)


def separable_spectrum(centres_2d_A: tf.Tensor, amplitudes: tf.Tensor, widths_A: tf.Tensor,
                       pixels: RingPixels, apix: float,
                       gmm_grads: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """F(k) at ``pixels`` by the factorised product: (re, im), each (n, M).

    Same sum as :func:`direct_spectrum`. Memory O(n N n_freq); work
    O(n N n_freq^2) in one batched real matrix product (plus two for the
    gradient). ``gmm_grads=False`` skips the gradients in amplitudes and widths
    (they come back as zeros), which pose refinement does not need.
    """
    n_freq = n_frequencies(pixels)
    prod = _separable_product(pixels.box * apix, n_freq, gmm_grads)(centres_2d_A, amplitudes,
                                                                    widths_A)
    return product_to_pixels(prod, pixels, n_freq)


def n_frequencies(pixels: RingPixels) -> int:
    """Frequencies 0 .. F-1 per axis that the separable product must cover."""
    return int(max(np.abs(pixels.kx).max(), pixels.ky.max())) + 1


def product_to_pixels(prod: tf.Tensor, pixels: RingPixels, n_freq: int
                      ) -> tuple[tf.Tensor, tf.Tensor]:
    """(re, im) at ``pixels`` from the (n, 2F, 2F) product [Yr Yi]^T [aXr aXi].

    X(-kx) = conj(X(kx)) gives both signs of kx from the same four blocks.
    """
    a, c = prod[:, :n_freq, :n_freq], prod[:, :n_freq, n_freq:]      # Yr.Xr, Yr.Xi
    d, b = prod[:, n_freq:, :n_freq], prod[:, n_freq:, n_freq:]      # Yi.Xr, Yi.Xi
    batch = tf.shape(prod)[0]
    table_re = tf.reshape(tf.stack([a - b, a + b], axis=1), [batch, -1])
    table_im = tf.reshape(tf.stack([c + d, d - c], axis=1), [batch, -1])
    index = tf.constant(_separable_gather_index(pixels, n_freq))
    return tf.gather(table_re, index, axis=1), tf.gather(table_im, index, axis=1)


SPECTRUM_METHODS = {"direct": direct_spectrum, "separable": separable_spectrum}


def gmm_tensors(gmm: GMM) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The GMM's centres, amplitudes and widths as float32 tensors."""
    return (tf.constant(gmm.centres_A, tf.float32), tf.constant(gmm.amplitudes, tf.float32),
            tf.constant(gmm.widths_A, tf.float32))


def model_spectrum(centres_A: tf.Tensor, amplitudes: tf.Tensor, widths_A: tf.Tensor,
                   rotation: tf.Tensor, origin_A: tf.Tensor, dtheta_deg: tf.Tensor,
                   dshift_px: tf.Tensor, pixels: RingPixels, apix: float,
                   method: str = "separable") -> tuple[tf.Tensor, tf.Tensor]:
    """F(k) of the GMM at each particle's pose: (re, im), each (n, M).

    Differentiable in every argument that is a tensor (GMM parameters for map
    fitting and heterogeneity, pose moves for refinement).
    """
    centres_2d = projected_centres_A(centres_A, rotation, origin_A, dtheta_deg, dshift_px, apix)
    return SPECTRUM_METHODS[method](centres_2d, amplitudes, widths_A, pixels, apix)


def held_spectrum(gmm: GMM, rotation: np.ndarray, origin_A: np.ndarray, pixels: RingPixels,
                  apix: float, mag: np.ndarray | None = None, batch: int = 64) -> np.ndarray:
    """(n, M) complex64: F(k) at ``pixels`` of ``gmm`` held at poses (rotation, origin_A).

    The part of a particle that a focused alignment keeps where its input pose put it
    (``--outside hold``): a constant of each particle's model, computed once per chunk,
    ``batch`` particles at a time (device memory).
    """
    centres, amplitudes, widths = gmm_tensors(magnified_gmm(gmm, mag))
    out = np.zeros((len(rotation), len(pixels)), np.complex64)
    for lo in range(0, len(rotation), batch):
        rot = tf.constant(rotation[lo:lo + batch], tf.float32)
        org = tf.constant(origin_A[lo:lo + batch], tf.float32)
        zero = tf.zeros([rot.shape[0], 3], tf.float32)
        centres_2d = projected_centres_A(centres, rot, org, zero, zero[:, :2], apix, mag)
        re, im = separable_spectrum(centres_2d, amplitudes, widths, pixels, apix,
                                    gmm_grads=False)
        out[lo:lo + batch] = re.numpy() + 1j * im.numpy()
    return out


def make_pose_objective(gmm: GMM, pixels: RingPixels, apix: float,
                        method: str = "separable", mag: np.ndarray | None = None,
                        held: bool = False) -> Callable:
    """A compiled function giving each particle's FRC and its gradient in the 5 pose moves.

    The returned ``objective(rotation, origin_A, data_re, data_im, dtheta_deg,
    dshift_px)`` takes float32 tensors (n, 3, 3), (n, 2), (n, M), (n, M),
    (n, 3), (n, 2), the data being the phase-flipped particles' spectra at
    ``pixels`` (frc.gather_rings of fft2c), and returns (frc (n,),
    dfrc/ddtheta_deg (n, 3), dfrc/ddshift_px (n, 2)). Particles do not
    interact, so the gradient of the batch's summed FRC is each one's own.
    Memory is bounded by the batch size n. ``mag``: the optics group's
    magnification matrix (:func:`projected_centres_A`), or None. With
    ``held`` the objective takes two more (n, M) tensors, the real and
    imaginary parts of a spectrum the pose does not move
    (:func:`held_spectrum`), added to the model's.
    """
    centres, amplitudes, widths = gmm_tensors(magnified_gmm(gmm, mag))
    spectrum = (functools.partial(separable_spectrum, gmm_grads=False) if method == "separable"
                else SPECTRUM_METHODS[method])
    rings = tf.TensorSpec([None, len(pixels)], tf.float32)
    spec = [tf.TensorSpec([None, 3, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32),
            rings, rings, tf.TensorSpec([None, 3], tf.float32),
            tf.TensorSpec([None, 2], tf.float32)]

    def score(rotation, origin_A, data_re, data_im, dtheta_deg, dshift_px, held_re, held_im):
        with tf.GradientTape() as tape:
            tape.watch([dtheta_deg, dshift_px])
            centres_2d = projected_centres_A(centres, rotation, origin_A, dtheta_deg, dshift_px,
                                             apix, mag)
            re, im = spectrum(centres_2d, amplitudes, widths, pixels, apix)
            if held_re is not None:
                re, im = re + held_re, im + held_im
            frc = frc_mean(re, im, data_re, data_im, pixels)
        grad_theta, grad_shift = tape.gradient(frc, [dtheta_deg, dshift_px])
        return frc, grad_theta, grad_shift

    if held:
        return tf.function(score, input_signature=spec + [rings, rings])

    @tf.function(input_signature=spec)
    def objective(rotation, origin_A, data_re, data_im, dtheta_deg, dshift_px):
        return score(rotation, origin_A, data_re, data_im, dtheta_deg, dshift_px, None, None)

    return objective

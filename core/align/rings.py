"""Fourier ring correlation between GMM projections and particles, in TensorFlow.

Only the Fourier pixels the FRC uses are ever computed: those on rings from
the low cutoff (default 25 A) to the target resolution, and of those only one
half plane, because a real image's transform is Hermitian (F(-k) = F(k)*):
every ring sum over the full plane is twice the sum over the half plane, and
the factor cancels in the normalised FRC. The half plane is ky > 0, plus
ky = 0 with kx > 0; the DC pixel is never on a used ring.

Rings are rint(|k|) in Fourier pixels of the box (gmmrefine.fourier.grids'
convention), and ring sums are segment sums over pixel -> ring ids, O(pixels).
Pixels on the Nyquist lines (|kx| or |ky| = B/2) are left out: there the
DFT of the data is the sum of +k and -k, which no analytic model matches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..device import tf
from ..errors import InputError
from ..fourier.grids import centred_axis, radius_from_axes


@dataclass(frozen=True)
class RingPixels:
    """The half-plane Fourier pixels of rings ring_lo..ring_hi of a box, sorted by ring.

    kx, ky   (M,) int32 Fourier-pixel coordinates (ky >= 0)
    ring     (M,) int32 ring index minus ring_lo (0 .. n_rings - 1), non-decreasing
    """

    box: int
    ring_lo: int
    ring_hi: int
    kx: np.ndarray
    ky: np.ndarray
    ring: np.ndarray

    @property
    def n_rings(self) -> int:
        return self.ring_hi - self.ring_lo + 1

    def __len__(self) -> int:
        return len(self.kx)


def ring_pixels(box: int, ring_lo: int, ring_hi: int) -> RingPixels:
    """Half-plane pixels of a box whose rint(|k|) lies in [ring_lo, ring_hi] (ring_lo >= 1)."""
    if not (1 <= ring_lo <= ring_hi <= box // 2):
        raise InputError(f"FRC rings {ring_lo}..{ring_hi} for box {box}; "
                         f"expected 1 <= low ring <= high ring <= {box // 2}")
    k = centred_axis(box)[1 - box % 2:]                       # an even box's Nyquist left out
    ky, kx = np.meshgrid(k[k >= 0], k, indexing="ij")
    ky, kx = ky.ravel(), kx.ravel()
    half = (ky > 0) | (kx > 0)
    ring = np.rint(radius_from_axes(k[k >= 0], k)).astype(np.int64).ravel()
    keep = half & (ring >= ring_lo) & (ring <= ring_hi)
    order = np.argsort(ring[keep], kind="stable")
    return RingPixels(box, ring_lo, ring_hi, kx[keep][order].astype(np.int32),
                      ky[keep][order].astype(np.int32),
                      (ring[keep][order] - ring_lo).astype(np.int32))


def ring_pixels_for_resolution(box: int, apix: float, res_A: float,
                               low_cut_A: float = 25.0) -> RingPixels:
    """Rings from ``low_cut_A`` to the target resolution ``res_A`` (both Angstrom).

    Ring r has resolution box * apix / r; the target ring is capped at B/2.
    """
    if res_A <= 0 or low_cut_A <= res_A:
        raise InputError(f"FRC range {low_cut_A} .. {res_A} A; expected low cutoff > target > 0")
    lo = max(1, math.ceil(box * apix / low_cut_A - 1e-9))
    hi = min(box // 2, math.floor(box * apix / res_A + 1e-9))
    return ring_pixels(box, lo, hi)


def gather_rings(spectra_centred: np.ndarray, pixels: RingPixels) -> np.ndarray:
    """(n, M) complex values of centred spectra (gmmrefine.fourier.grids.fft2c) at ``pixels``."""
    spectra_centred = np.asarray(spectra_centred)
    if spectra_centred.shape[-2:] != (pixels.box, pixels.box):
        raise InputError(f"particle spectra of shape {spectra_centred.shape[-2:]}; "
                         f"expected ({pixels.box}, {pixels.box}) for these rings")
    c = pixels.box // 2
    return spectra_centred.reshape(-1, pixels.box, pixels.box)[:, c + pixels.ky, c + pixels.kx]


def frc_per_ring(model_re: tf.Tensor, model_im: tf.Tensor, data_re: tf.Tensor,
                 data_im: tf.Tensor, pixels: RingPixels) -> tf.Tensor:
    """(n, n_rings) FRC of each ring: sum Re(F D*) / sqrt(sum |F|^2 sum |D|^2).

    All inputs are (n, M) float32 over ``pixels``. An empty ring (all zero)
    gives 0, not NaN, so its gradient stays finite.
    """
    ring = tf.constant(pixels.ring)
    stacked = tf.stack([model_re * data_re + model_im * data_im,
                        model_re * model_re + model_im * model_im,
                        data_re * data_re + data_im * data_im], axis=-1)       # (n, M, 3)
    # unsorted_segment_sum rather than segment_sum: XLA compiles it, should a caller jit this
    sums = tf.math.unsorted_segment_sum(tf.transpose(stacked, [1, 0, 2]), ring,
                                        pixels.n_rings)                    # (rings, n, 3)
    cross, model_power, data_power = tf.unstack(tf.transpose(sums, [1, 0, 2]), axis=-1)
    tiny = tf.constant(np.finfo(np.float32).tiny, model_re.dtype)
    return cross * tf.math.rsqrt(model_power * data_power + tiny)


def frc_mean(model_re: tf.Tensor, model_im: tf.Tensor, data_re: tf.Tensor,
             data_im: tf.Tensor, pixels: RingPixels) -> tf.Tensor:
    """(n,) FRC averaged over the rings of ``pixels`` (the refinement's score)."""
    return tf.reduce_mean(frc_per_ring(model_re, model_im, data_re, data_im, pixels), axis=-1)

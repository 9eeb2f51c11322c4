"""FRC over half-plane ring pixels against a full-plane numpy FRC with a dense one-hot."""

import numpy as np
import pytest
import tensorflow as tf
from gmmrefine.align.rings import (
    frc_mean,
    frc_per_ring,
    gather_rings,
    ring_pixels,
    ring_pixels_for_resolution,
)
from gmmrefine.errors import InputError
from gmmrefine.fourier.grids import centred_axis, fft2c, shell_index


def full_plane_frc(image_a, image_b, ring_lo, ring_hi):
    """Textbook FRC of two real images over the whole plane (Nyquist lines left out)."""
    box = image_a.shape[-1]
    fa, fb = fft2c(image_a), fft2c(image_b)
    shells = shell_index(box, 2)
    inside = np.ones((box, box), bool)
    inside[0, :] = inside[:, 0] = False          # index 0 is frequency -B/2 (Nyquist)
    one_hot = (shells[..., None] == np.arange(ring_lo, ring_hi + 1)) & inside[..., None]
    cross = np.einsum("yx,yxr->r", (fa * fb.conj()).real, one_hot)
    power = np.einsum("yx,yxr->r", np.abs(fa) ** 2, one_hot) * np.einsum(
        "yx,yxr->r", np.abs(fb) ** 2, one_hot)
    return cross / np.sqrt(power)


def tf_frc_per_ring(image_a, image_b, pixels):
    a, b = gather_rings(fft2c(image_a), pixels), gather_rings(fft2c(image_b), pixels)
    args = [tf.constant(x, tf.float32) for x in (a.real, a.imag, b.real, b.imag)]
    return frc_per_ring(*args, pixels).numpy()[0], frc_mean(*args, pixels).numpy()[0]


@pytest.mark.parametrize("box", [32, 33])
def test_half_plane_holds_one_of_each_friedel_pair(box):
    pixels = ring_pixels(box, 1, box // 2)
    points = set(zip(pixels.kx.tolist(), pixels.ky.tolist()))
    assert len(points) == len(pixels)
    assert not any((-x, -y) in points for x, y in points)
    k = centred_axis(box)
    k = k[np.abs(k) < box / 2]                   # -B/2 of an even box has no Friedel mate
    ky, kx = np.meshgrid(k, k, indexing="ij")
    ring = np.rint(np.hypot(kx, ky))
    assert 2 * len(pixels) == np.count_nonzero((ring >= 1) & (ring <= box // 2))
    assert np.all(np.diff(pixels.ring) >= 0)
    np.testing.assert_array_equal(pixels.ring + 1, np.rint(np.hypot(pixels.kx, pixels.ky)))


def test_half_plane_frc_equals_full_plane_frc():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(32, 32))
    b = 0.5 * a + rng.normal(size=(32, 32))
    pixels = ring_pixels(32, 3, 16)
    per_ring, mean = tf_frc_per_ring(a, b, pixels)
    want = full_plane_frc(a, b, 3, 16)
    np.testing.assert_allclose(per_ring, want, atol=2e-6)
    assert mean == pytest.approx(want.mean(), abs=2e-6)


def test_frc_ignores_ring_wise_scaling_but_not_sign():
    """Rings are normalised one by one, so a CTF-like positive factor per ring leaves
    the FRC at 1 while a flipped sign gives -1."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(24, 24))
    pixels = ring_pixels(24, 1, 12)
    spec = gather_rings(fft2c(a), pixels)
    scale = rng.uniform(0.1, 3.0, pixels.n_rings)[pixels.ring]
    for factor, expected in ((scale, 1.0), (-scale, -1.0)):
        args = [tf.constant(x, tf.float32)
                for x in (spec.real, spec.imag, (factor * spec).real, (factor * spec).imag)]
        np.testing.assert_allclose(frc_per_ring(*args, pixels).numpy(), expected, atol=1e-6)


def test_empty_ring_gives_zero_and_finite_gradient():
    pixels = ring_pixels(16, 1, 8)
    data = tf.ones([1, len(pixels)])
    model = tf.Variable(tf.zeros([1, len(pixels)]))
    with tf.GradientTape() as tape:
        score = frc_mean(model, model, data, data, pixels)
    assert score.numpy()[0] == 0.0
    assert np.all(np.isfinite(tape.gradient(score, model).numpy()))


def test_rings_for_resolution_follow_box_times_apix_over_ring():
    pixels = ring_pixels_for_resolution(128, 1.0, 2.0, low_cut_A=25.0)
    assert (pixels.ring_lo, pixels.ring_hi) == (6, 64)    # 128/6 = 21.3 A; 128/64 = 2 A
    pixels = ring_pixels_for_resolution(100, 1.3, 4.5)
    assert (pixels.ring_lo, pixels.ring_hi) == (6, 28)    # 130/6 = 21.7 A; 130/28 = 4.6 A
    with pytest.raises(InputError, match="low cutoff"):
        ring_pixels_for_resolution(64, 1.0, 30.0)
    with pytest.raises(InputError, match="rings"):
        ring_pixels(64, 0, 10)


def test_gather_rings_rejects_the_wrong_box():
    with pytest.raises(InputError, match=r"expected \(32, 32\)"):
        gather_rings(np.zeros((2, 30, 30), complex), ring_pixels(32, 1, 10))

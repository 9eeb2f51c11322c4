"""Cramer-Rao bound: the finite-difference Fisher matrix against analytic ones, and its meaning."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.data.rotations import euler_to_matrix
from gmmrefine.simulate.crb import (
    bounds_from_fisher,
    finite_difference_fisher,
    pose_bounds,
    pose_fisher,
)
from gmmrefine.simulate.render import ctf_grid
from scipy.optimize import least_squares
from scipy.special import erf


def _blob(box: int, amp: float, s: float):
    """Point-sampled isotropic Gaussian blob with its centre (px, py) as parameters."""
    x = np.arange(box) - box // 2

    def image_of(params: np.ndarray) -> np.ndarray:
        params = np.atleast_2d(params)
        dx = x[None, None, :] - params[:, 0, None, None]
        dy = x[None, :, None] - params[:, 1, None, None]
        return amp * np.exp(-(dx ** 2 + dy ** 2) / (2 * s * s))

    return image_of, x


def test_blob_shift_information_matches_the_analytic_gradient():
    amp, s, noise_sd = 3.0, 2.2, 0.7
    image_of, x = _blob(32, amp, s)
    p = np.array([0.4, -1.3])
    fisher = finite_difference_fisher(image_of, p, np.array([1e-3, 1e-3]), noise_sd)
    img = image_of(p)[0]
    # dI/dp = I (x - p) / s^2 per axis.
    gx = img * (x[None, :] - p[0]) / s ** 2
    gy = img * (x[:, None] - p[1]) / s ** 2
    analytic = np.array([[np.sum(gx * gx), np.sum(gx * gy)],
                         [np.sum(gx * gy), np.sum(gy * gy)]]) / noise_sd ** 2
    np.testing.assert_allclose(fisher, analytic, rtol=1e-6, atol=1e-9 * analytic.max())
    # Continuum limit: sum (dI/dx)^2 = amp^2 pi / 2 per unit pixel area.
    assert analytic[0, 0] * noise_sd ** 2 == pytest.approx(amp ** 2 * np.pi / 2, rel=1e-6)


def test_bound_is_reached_by_least_squares_fits_of_noisy_blobs():
    # At high SNR the least-squares (maximum-likelihood) estimate is efficient:
    # its spread over noise realisations equals the Cramer-Rao bound.
    amp, s, noise_sd = 1.0, 2.0, 0.25
    image_of, _ = _blob(24, amp, s)
    truth = np.array([0.3, -0.2])
    fisher = finite_difference_fisher(image_of, truth, np.array([1e-3, 1e-3]), noise_sd)
    bound = np.sqrt(np.trace(np.linalg.inv(fisher)))
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(300):
        data = image_of(truth)[0] + rng.normal(scale=noise_sd, size=(24, 24))
        fit = least_squares(lambda q: (image_of(q)[0] - data).ravel(), truth + 0.1)
        errors.append(fit.x - truth)
    rms = np.sqrt(np.mean(np.sum(np.square(errors), axis=1)))
    assert rms == pytest.approx(bound, rel=0.1)


def _pixel_gaussian(edges: np.ndarray, centre: float, sigma: float):
    """Pixel integrals of a unit 1D Gaussian and their derivative w.r.t. the centre."""
    z = (edges - centre) / sigma
    values = np.diff(0.5 * erf(z / np.sqrt(2)))
    pdf = np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    return values, -np.diff(pdf) / sigma


def test_single_atom_pose_fisher_matches_the_chain_rule():
    box, apix, amp, sigma, noise_sd = 40, 1.2, 2.0, 1.4, 0.5
    c = np.array([6.0, -4.0, 3.0])
    a = euler_to_matrix(20.0, 75.0, -130.0)[0]
    origin = np.array([1.1, -0.7])
    fisher = pose_fisher(c[None], np.array([amp]), np.array([sigma]), a, origin, None, box, apix,
                         noise_sd)
    q = a @ c
    p = q[:2] - origin
    edges = (np.arange(box + 1) - box // 2 - 0.5) * apix
    gx, dgx = _pixel_gaussian(edges, p[0], sigma)
    gy, dgy = _pixel_gaussian(edges, p[1], sigma)
    d_image_dp = np.stack([amp * np.outer(gy, dgx), amp * np.outer(dgy, gx)]).reshape(2, -1)
    # Image position p = (R(delta) A c)_xy - o: dp/ddelta = (e_k x q)_xy (per radian), dp/do = -1.
    dp = np.zeros((2, 5))
    dp[:, 0] = [0.0, -q[2]]
    dp[:, 1] = [q[2], 0.0]
    dp[:, 2] = [-q[1], q[0]]
    dp[:, :3] *= np.pi / 180.0
    dp[:, 3:] = -np.eye(2) * apix
    jac = dp.T @ d_image_dp
    analytic = jac @ jac.T / noise_sd ** 2
    # Central differences err by O(step^2): ~1e-5 relative at 0.01 deg / 0.01 px steps.
    np.testing.assert_allclose(fisher, analytic, rtol=2e-4, atol=1e-8 * np.abs(analytic).max())


def test_bounds_from_fisher_are_root_traces_of_the_inverse_blocks():
    fisher = np.diag([4.0, 1.0, 0.25, 16.0, 100.0])
    rot, shift = bounds_from_fisher(fisher)
    assert rot == pytest.approx(np.sqrt(0.25 + 1.0 + 4.0))
    assert shift == pytest.approx(np.sqrt(1 / 16 + 1 / 100))


def test_pose_bounds_scale_with_noise_and_grow_with_fewer_atoms():
    rng = np.random.default_rng(1)
    coords = rng.normal(scale=8.0, size=(60, 3))
    amp, sigma = np.full(60, 2.5), np.full(60, 1.0)
    box, apix = 40, 1.5
    rot = euler_to_matrix(10.0, 50.0, 80.0)
    shift = np.zeros((1, 2))
    ctf = ctf_grid(box, apix, 15000.0, 14500.0, 30.0, 300.0, 2.7, 0.1)
    r1, s1 = pose_bounds(coords, amp, sigma, rot, shift, ctf, box, apix, 1.0)
    r2, s2 = pose_bounds(coords, amp, sigma, rot, shift, ctf, box, apix, 2.0)
    assert r2[0] == pytest.approx(2 * r1[0], rel=1e-6)
    assert s2[0] == pytest.approx(2 * s1[0], rel=1e-6)
    r_few, s_few = pose_bounds(coords[:30], amp[:30], sigma[:30], rot, shift, ctf, box, apix, 1.0)
    assert r_few[0] > r1[0] and s_few[0] > s1[0]


@pytest.mark.parametrize("res_A", [4.0, 8.0, 16.0])
def test_band_limited_shift_information_is_the_share_of_the_analytic_spectrum_inside_the_disc(
        res_A):
    # A pixel-integrated Gaussian of sd s has |transform|^2 ~ exp(-4 pi^2 s^2 k^2)
    # sinc^2(k_x) sinc^2(k_y), and its shift information per axis sums
    # (2 pi k_x)^2 |transform|^2 over the Fourier pixels:
    # band-limited, the same sum over the pixels inside |k| <= 1/res. Keeping every
    # pixel leaves the information as it is.
    s, apix, box = 2.5, 1.0, 64
    args = (np.zeros((1, 3)), np.array([5.0]), np.array([s]), np.eye(3), np.zeros(2), None,
            box, apix, 0.3)
    whole = pose_fisher(*args)
    np.testing.assert_allclose(pose_fisher(*args, lowpass_A=apix), whole, rtol=1e-9,
                               atol=1e-12 * whole.max())
    k = np.fft.fftfreq(box, d=apix)
    kx, ky = np.meshgrid(k, k, indexing="xy")
    density = (kx ** 2 * np.exp(-4 * np.pi ** 2 * s ** 2 * (kx ** 2 + ky ** 2))
               * np.sinc(kx * apix) ** 2 * np.sinc(ky * apix) ** 2)
    share = density[kx ** 2 + ky ** 2 <= res_A ** -2].sum() / density.sum()
    limited = pose_fisher(*args, lowpass_A=res_A)
    assert limited[3, 3] / whole[3, 3] == pytest.approx(share, rel=1e-3)
    assert limited[4, 4] / whole[4, 4] == pytest.approx(share, rel=1e-3)

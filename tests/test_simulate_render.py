"""The simulator's rendering: exact maps and projections of atoms, the footprint."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.data.rotations import euler_to_matrix
from gmmrefine.errors import InputError
from gmmrefine.simulate.render import (
    atom_amplitude,
    atom_sigma_A,
    footprint_variance,
    project_atoms,
    render_map,
)


def _centred_axis(box: int, apix: float) -> np.ndarray:
    return (np.arange(box) - box // 2) * apix


def test_single_atom_map_integrates_to_its_amplitude_at_its_centre():
    box, apix = 32, 1.1
    centre = np.array([[2.3, -1.7, 4.1]])
    volume = render_map(centre, np.array([2.5]), np.array([1.2]), box, apix)
    assert volume.sum() == pytest.approx(2.5, rel=1e-5)
    axis = _centred_axis(box, apix)
    w = volume.astype(float)
    centroid = [np.sum(w.sum(axis=(0, 1)) * axis), np.sum(w.sum(axis=(0, 2)) * axis),
                np.sum(w.sum(axis=(1, 2)) * axis)]  # x, y, z of an array [z, y, x]
    np.testing.assert_allclose(np.array(centroid) / w.sum(), centre[0], atol=1e-4)


def test_single_atom_projection_lands_at_A_c_minus_origin():
    box, apix = 48, 1.3
    c = np.array([5.0, -3.0, 7.0])
    a = euler_to_matrix(30.0, 60.0, -45.0)[0]
    origin = np.array([2.0, -4.5])
    image = project_atoms(c[None], np.array([1.7]), np.array([1.5]), a[None], origin[None],
                          box, apix)[0]
    expected = (a @ c)[:2] - origin
    axis = _centred_axis(box, apix)
    assert image.sum() == pytest.approx(1.7, rel=1e-9)
    centroid = [np.sum(image.sum(axis=0) * axis), np.sum(image.sum(axis=1) * axis)]
    np.testing.assert_allclose(np.array(centroid) / image.sum(), expected, atol=1e-6)


def test_identity_projection_is_the_map_summed_along_z(sim_model):
    inside = np.linalg.norm(sim_model.coords_A, axis=1) < 22.0
    coords = sim_model.coords_A[inside]
    amp = atom_amplitude(sim_model.element[inside])
    sigma = atom_sigma_A(sim_model.element[inside], 20.0)
    box, apix = 40, 1.5
    volume = render_map(coords, amp, sigma, box, apix)
    image = project_atoms(coords, amp, sigma, np.eye(3)[None], np.zeros((1, 2)), box, apix)[0]
    np.testing.assert_allclose(image, volume.sum(axis=0), atol=1e-4 * image.max())


def test_projection_matches_the_analytic_fourier_transform_of_the_gaussians(sim_model):
    rng = np.random.default_rng(3)
    coords = sim_model.coords_A[rng.choice(len(sim_model), 40, replace=False)] * 0.4
    amp = rng.uniform(1.0, 3.0, 40)
    sigma = np.full(40, 1.5)        # wide enough that aliasing is < 1e-8
    box, apix = 48, 1.2
    a = euler_to_matrix(110.0, 35.0, 250.0)[0]
    origin = np.array([1.3, -0.4])
    image = project_atoms(coords, amp, sigma, a[None], origin[None], box, apix)[0]
    x = _centred_axis(box, apix)
    p = (coords @ a.T)[:, :2] - origin
    for kx, ky in [(0.0, 0.0), (0.03, 0.0), (-0.05, 0.07), (0.11, -0.02), (0.071, 0.093)]:
        direct = np.sum(image * np.exp(-2j * np.pi * (kx * x[None, :] + ky * x[:, None])))
        # Pixel integration multiplies the transform by sinc(k apix) per axis.
        analytic = np.sum(amp * np.exp(-2 * np.pi ** 2 * sigma ** 2 * (kx ** 2 + ky ** 2))
                          * np.exp(-2j * np.pi * (kx * p[:, 0] + ky * p[:, 1]))) \
            * np.sinc(kx * apix) * np.sinc(ky * apix)
        assert abs(direct - analytic) < 1e-6 * amp.sum()


def test_unknown_elements_are_refused_clearly():
    with pytest.raises(InputError, match="Fe"):
        atom_amplitude(np.array(["C", "Fe"], dtype=object))


def test_footprint_variance_is_the_variance_above_the_threshold():
    image = np.zeros((8, 8))
    image[2:4, 2:4] = [[10.0, 6.0], [4.0, 0.4]]     # 0.4 < 5% of 10: outside
    assert footprint_variance(image[None], 0.05)[0] == pytest.approx(np.var([10.0, 6.0, 4.0]))

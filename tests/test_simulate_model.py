"""The simulator's protein: a 90 kDa two-part model, deterministic, a hinge, assemblies."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.simulate.model import (
    DOMAIN,
    assemble_copies,
    build_model,
    conformation_coords,
    hinge_range_deg,
    tip_radius_A,
)
from scipy.spatial.transform import Rotation


def test_model_is_a_90_kda_two_part_protein(sim_model):
    assert 6000 <= len(sim_model) <= 6600
    assert 85 <= sim_model.mass_kda <= 95
    assert 0.25 <= sim_model.domain_mass_fraction <= 0.30
    assert set(sim_model.element) == {"C", "N", "O", "S"}
    # Element shares of real proteins: roughly 63% C, 17% N, 19% O, <1% S.
    share = {e: np.mean(sim_model.element == e) for e in "CNOS"}
    assert 0.58 < share["C"] < 0.68 and 0.14 < share["N"] < 0.20 and 0.15 < share["O"] < 0.23
    assert 0 < share["S"] < 0.02
    # Consecutive CAs of the ideal helices are 3.8 A apart (trans peptides).
    ca = sim_model.coords_A[sim_model.atom_name == "CA"]
    step = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    assert np.median(step) == pytest.approx(3.8, abs=0.05)
    # The model fits the default box (96 px at 1.3 A: radius 62 A) with margin.
    assert np.linalg.norm(sim_model.coords_A, axis=1).max() < 55.0
    assert np.abs(sim_model.coords_A.mean(axis=0)).max() < 1e-9


def test_model_is_deterministic_from_its_seed(sim_model):
    again = build_model(seed=0)
    other = build_model(seed=1)
    np.testing.assert_array_equal(again.coords_A, sim_model.coords_A)
    assert list(again.res_name) == list(sim_model.res_name)
    assert list(other.res_name) != list(sim_model.res_name)


def test_hinge_moves_only_the_domain_and_the_tip_by_the_requested_travel(sim_model):
    span = hinge_range_deg(sim_model, 10.0)
    moved = conformation_coords(sim_model, span / 2) - conformation_coords(sim_model, -span / 2)
    travel = np.linalg.norm(moved, axis=1)
    assert np.all(travel[sim_model.domain != DOMAIN] == 0)
    # The tip travels an arc of 10 A; its chord is 2 r sin(span / 2).
    r = tip_radius_A(sim_model)
    assert travel.max() == pytest.approx(2 * r * np.sin(np.radians(span) / 2), rel=1e-9)
    assert travel.max() == pytest.approx(10.0, rel=0.01)


def test_assemble_copies_places_rotated_subunits(sim_model):
    c3 = Rotation.from_rotvec([[0, 0, a] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)]).as_matrix()
    trimer = assemble_copies(sim_model, c3)
    assert len(trimer) == 3 * len(sim_model)
    # Core and domain are chains A and B; each copy gets its own pair.
    assert sorted(set(trimer.chain)) == list("ABCDEF")
    np.testing.assert_allclose(trimer.coords_A[len(sim_model):2 * len(sim_model)],
                               sim_model.coords_A @ c3[1].T)

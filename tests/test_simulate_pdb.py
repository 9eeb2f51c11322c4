"""The simulator's PDB files: round trip, files without atoms."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.simulate.pdb import read_pdb, write_pdb


def test_pdb_round_trip_keeps_coordinates_domains_and_hinge(sim_model, tmp_path):
    path = tmp_path / "model.pdb"
    write_pdb(path, sim_model, box_centre_A=62.4)
    back = read_pdb(path)
    np.testing.assert_allclose(back.coords_A, sim_model.coords_A, atol=6e-4)
    np.testing.assert_array_equal(back.domain, sim_model.domain)
    assert list(back.element) == list(sim_model.element)
    assert list(back.atom_name) == list(sim_model.atom_name)
    np.testing.assert_allclose(back.hinge_point_A, sim_model.hinge_point_A, atol=1e-4)
    np.testing.assert_allclose(back.hinge_axis, sim_model.hinge_axis, atol=1e-4)
    # The written coordinates overlay a map whose origin is its first voxel.
    first = next(line for line in path.read_text().splitlines() if line.startswith("ATOM"))
    assert float(first[30:38]) == pytest.approx(sim_model.coords_A[0, 0] + 62.4, abs=6e-4)


def test_read_pdb_refuses_a_file_without_atoms(tmp_path):
    path = tmp_path / "empty.pdb"
    path.write_text("HEADER nothing\nEND\n")
    with pytest.raises(InputError, match="no ATOM"):
        read_pdb(path)

"""Point-group operators: the group axioms, RELION's axes, names refused."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.data.symmetry_groups import symmetry_operators
from gmmrefine.errors import InputError

ORDERS = {"C1": 1, "C2": 2, "C3": 3, "c7": 7, "D1": 2, "D2": 4, "D5": 10, "T": 12, "O": 24,
          "I": 60, "I1": 60, "I2": 60, "I3": 60, "I4": 60}


@pytest.mark.parametrize("sym", list(ORDERS))
def test_operators_form_the_group(sym):
    ops = symmetry_operators(sym)
    assert ops.shape == (ORDERS[sym], 3, 3)
    np.testing.assert_allclose(ops[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(ops), 1.0, atol=1e-9)
    np.testing.assert_allclose(ops @ np.transpose(ops, (0, 2, 1)),
                               np.broadcast_to(np.eye(3), ops.shape), atol=1e-9)
    flat = ops.reshape(len(ops), 9)
    # Every product and every inverse is in the set; no element twice.
    products = np.einsum("aij,bjk->abik", ops, ops).reshape(-1, 1, 9)
    assert np.abs(products - flat[None]).max(axis=2).min(axis=1).max() < 1e-6
    distinct = np.abs(flat[:, None] - flat[None]).max(axis=2) + np.eye(len(ops))
    assert distinct.min() > 0.1


def test_axes_are_relions():
    # Cn about z, Dn's two-fold along x; I (= I2) has a two-fold along z and a
    # five-fold along (1, 0, phi) (RELION's symmetries.cpp).
    z = np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(symmetry_operators("C5") @ z, np.tile(z, (5, 1)), atol=1e-12)
    assert any(np.allclose(r, np.diag([1.0, -1.0, -1.0])) for r in symmetry_operators("D3"))
    phi = (1 + np.sqrt(5)) / 2
    five = np.array([1.0, 0.0, phi]) / np.sqrt(1 + phi ** 2)
    ico = symmetry_operators("I")
    assert sum(np.allclose(r @ five, five, atol=1e-9) for r in ico) == 5
    assert sum(np.allclose(r @ z, z, atol=1e-9) for r in ico) == 2
    np.testing.assert_allclose(symmetry_operators("I"), symmetry_operators("I2"))


@pytest.mark.parametrize("bad", ["C0", "X3", "", "D", "I5", "C3H", "O2"])
def test_bad_names_are_refused_naming_the_value(bad):
    with pytest.raises(InputError, match=f"symmetry '{bad}'.*expected Cn or Dn"):
        symmetry_operators(bad)

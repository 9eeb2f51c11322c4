"""Map symmetrisation: symmetric maps kept, asymmetric ones made symmetric, mask weighting."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.data.symmetry_groups import symmetry_operators
from gmmrefine.errors import InputError
from gmmrefine.reconstruct.symmetry import symmetrize_map
from helpers_symmetry import symmetric_blobs, volume_of_blobs


@pytest.mark.parametrize("sym", ["C3", "D2", "O"])
def test_symmetrize_map_keeps_a_symmetric_map(sym):
    box = 40
    rng = np.random.default_rng(6)
    symmetric = volume_of_blobs(symmetric_blobs(sym, box, rng), box)
    out = symmetrize_map(symmetric, sym)
    assert np.abs(out - symmetric).max() < 0.01 * symmetric.max()
    # An asymmetric map is changed, into one that symmetrising keeps.
    lopsided = volume_of_blobs(symmetric_blobs("C1", box, rng), box)
    once = symmetrize_map(lopsided, sym)
    assert np.abs(once - lopsided).max() > 0.3 * lopsided.max()
    assert np.abs(symmetrize_map(once, sym) - once).max() < 0.01 * once.max()


def test_mask_weighted_symmetrisation():
    box, sym = 40, "C3"
    rng = np.random.default_rng(7)
    constant = np.full((box,) * 3, 2.5)
    weight = rng.uniform(0, 1, constant.shape) ** 4
    np.testing.assert_allclose(symmetrize_map(constant, sym, weight), 2.5, rtol=1e-5)
    np.testing.assert_allclose(symmetrize_map(constant, sym, np.zeros_like(constant)), 2.5,
                               rtol=1e-5)
    # A map right only inside a mask around one copy: the weighted average
    # takes each copy from where the mask holds it, the plain one does not.
    # One blob per copy, 10 px off the axis: the copies' masks do not overlap.
    centres = np.array([[10.0, 2.0, 3.0]]) @ np.transpose(symmetry_operators(sym), (0, 2, 1))
    centres = centres.reshape(-1, 3)
    truth = volume_of_blobs(centres, box)
    x = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    c = centres[0]
    dist = np.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2)
    mask = np.clip((7.0 - dist) / 2.0, 0.0, 1.0)
    damaged = mask * truth + (1.0 - mask) * 0.8       # a wrong plateau outside the mask
    weighted = symmetrize_map(damaged, sym, mask)
    plain = symmetrize_map(damaged, sym)
    near = truth > 0.2
    assert np.abs(weighted - truth)[near].max() < 0.03
    assert np.abs(plain - truth)[near].max() > 0.1
    with pytest.raises(InputError, match="mask of shape"):
        symmetrize_map(truth, sym, mask[:-1])

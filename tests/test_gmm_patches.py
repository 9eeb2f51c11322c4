"""Patches of a GMM and their composite map: clusters found, masks, blending."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.fourier.masks import soft_sphere
from gmmrefine.gmm.focus import mask_values_at
from gmmrefine.gmm.patches import composite_map, patch_mask, patches_from_centres


def test_a_constant_map_stays_constant_through_the_composite():
    box = 24
    masks = [soft_sphere(box, (-4, 0, 0), 5, 5), soft_sphere(box, (4, 2, 0), 4, 5)]
    maps = [np.full((box,) * 3, 3.5, np.float32) for _ in masks]
    out = composite_map(maps, masks, fill=np.full((box,) * 3, 3.5, np.float32))
    np.testing.assert_allclose(out, 3.5, rtol=1e-6)
    # Without a fill map the covered voxels still hold the constant.
    bare = composite_map(maps, masks)
    covered = np.sum(masks, axis=0) > 1e-6
    np.testing.assert_allclose(bare[covered], 3.5, rtol=1e-5)
    assert np.all(bare[~covered] == 0)


def test_composite_takes_each_patch_where_only_its_mask_reaches_and_blends_the_overlap():
    box = 24
    masks = [soft_sphere(box, (-5, 0, 0), 2, 4), soft_sphere(box, (5, 0, 0), 2, 4)]
    maps = [np.full((box,) * 3, 1.0, np.float32), np.full((box,) * 3, 2.0, np.float32)]
    fill = np.full((box,) * 3, 7.0, np.float32)
    out = composite_map(maps, masks, fill)
    c = box // 2
    assert out[c, c, c - 5] == pytest.approx(1.0)       # only patch 1
    assert out[c, c, c + 5] == pytest.approx(2.0)       # only patch 2
    # Halfway, both masks are 0.5 + 0.5 cos(3 pi / 4); the global map makes up the rest.
    m = 0.5 + 0.5 * np.cos(0.75 * np.pi)
    assert masks[0][c, c, c] == pytest.approx(m) == masks[1][c, c, c]
    assert out[c, c, c] == pytest.approx(m * 1 + m * 2 + (1 - 2 * m) * 7.0, rel=1e-5)
    assert out[0, 0, 0] == pytest.approx(7.0)           # nobody's: the global map


def test_patches_recover_separated_clusters_and_their_masks_reach_the_farthest_centre():
    rng = np.random.default_rng(1)
    centres_true = np.array([[-20, 0, 0], [20, 0, 0], [0, 25, 0]], float)
    points = np.concatenate([c + rng.normal(scale=3.0, size=(60, 3)) for c in centres_true])
    patches = patches_from_centres(points, 3, seed=0)
    assert sorted(p.n_gauss for p in patches) == [60, 60, 60]
    found = np.array([p.centre_A for p in patches])
    for c in centres_true:
        assert np.min(np.linalg.norm(found - c, axis=1)) < 1.5
    box, apix = 64, 1.5
    for p in patches:
        members = points[np.argmin(np.linalg.norm(points[:, None] - found[None], axis=2), axis=1)
                         == p.index - 1]
        assert p.radius_A == pytest.approx(np.linalg.norm(members - p.centre_A, axis=1).max())
        mask = patch_mask(p, box, apix)
        inside = mask_values_at(mask, members, apix)
        # Members a voxel diagonal inside the radius read exactly 1; the farthest sits on
        # the edge, where interpolation from the voxels beyond lowers it a little.
        deep = np.linalg.norm(members - p.centre_A, axis=1) < p.radius_A - np.sqrt(3) * apix
        assert deep.sum() > 20 and np.allclose(inside[deep], 1.0, atol=1e-6)
        assert inside.min() > 0.95
        beyond = p.centre_A + np.array([p.radius_A + 7 * apix, 0, 0])
        assert mask_values_at(mask, beyond[None], apix)[0] == 0.0    # past the 5-pixel edge (and the interpolation)
    with pytest.raises(InputError, match="patches"):
        patches_from_centres(points[:2], 3)
    one = patches_from_centres(points, 1)
    assert len(one) == 1 and one[0].n_gauss == len(points)

"""The GMM value object and its rendering: voxel-integrated maps, projections."""

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.gmm.model import GMM, projected_gmm_image, render_map
from scipy.spatial.transform import Rotation


def test_gmm_is_a_value_that_never_touches_its_inputs():
    centres = np.zeros((2, 3))
    g = GMM(centres, [1.0, 2.0], [1.0, 1.0])
    centres[0, 0] = 5.0
    assert g.centres_A[0, 0] == 0.0
    with pytest.raises(ValueError):
        g.amplitudes[0] = 3.0


@pytest.mark.parametrize("centres,amps,widths,match", [
    (np.zeros((2, 2)), [1, 1], [1, 1], "expected \\(N, 3\\)"),
    (np.zeros((2, 3)), [1, np.nan], [1, 1], "amplitudes of Gaussian 1 is not finite"),
    (np.zeros((2, 3)), [1, 1], [1, 0], "width 0.0 A of Gaussian 1"),
])
def test_invalid_gmm_is_one_clear_line(centres, amps, widths, match):
    with pytest.raises(InputError, match=match) as err:
        GMM(centres, amps, widths)
    assert "\n" not in str(err.value)


def test_map_holds_the_voxel_integrated_density():
    rng = np.random.default_rng(1)
    g = GMM(rng.normal(scale=3.0, size=(6, 3)), rng.uniform(0.5, 2.0, 6),
            rng.uniform(0.8, 2.0, 6))
    box, apix = 24, 1.25
    volume = render_map(g, box, apix)
    assert volume.dtype == np.float32 and volume.shape == (box,) * 3
    assert volume.sum(dtype=np.float64) == pytest.approx(g.amplitudes.sum(), rel=1e-5)
    # centre of mass: voxel index B//2 + c/apix, axes [z, y, x]
    grid = (np.arange(box) - box // 2) * apix
    com = [np.einsum("zyx,z->", volume, grid), np.einsum("zyx,y->", volume, grid),
           np.einsum("zyx,x->", volume, grid)]
    want = g.amplitudes @ g.centres_A / g.amplitudes.sum()
    np.testing.assert_allclose(np.array(com)[::-1] / volume.sum(), want, atol=1e-3)
    # one voxel against a midpoint rule on a 20x finer grid inside it
    z, y, x = box // 2 + 1, box // 2 - 2, box // 2
    sub = (np.arange(20) + 0.5) / 20 - 0.5
    pts = np.stack(np.meshgrid(sub, sub, sub, indexing="ij"), -1).reshape(-1, 3)
    pts = (pts + [x - box // 2, y - box // 2, z - box // 2]) * apix
    d2 = ((pts[:, None, :] - g.centres_A[None]) ** 2).sum(-1)
    density = (g.amplitudes / (2 * np.pi * g.widths_A ** 2) ** 1.5 *
               np.exp(-d2 / (2 * g.widths_A ** 2))).sum(1)
    assert volume[z, y, x] == pytest.approx(density.mean() * apix ** 3, rel=1e-3)


def test_map_projected_along_z_is_the_projection_at_the_identity_pose():
    rng = np.random.default_rng(2)
    g = GMM(rng.normal(scale=3.0, size=(8, 3)), rng.uniform(0.5, 2.0, 8),
            rng.uniform(0.8, 2.0, 8))
    volume = render_map(g, 20, 1.5)
    image = projected_gmm_image(g, np.eye(3), np.zeros(2), 20, 1.5)
    np.testing.assert_allclose(volume.sum(axis=0), image, atol=1e-6 * image.max())
    # rotating the GMM moves the projection: the pose is not ignored
    turned = projected_gmm_image(g, Rotation.from_euler("x", 90, degrees=True).as_matrix(),
                                 np.zeros(2), 20, 1.5)
    assert np.abs(turned - image).max() > 0.1 * image.max()

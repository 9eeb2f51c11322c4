"""k-means seeding of a GMM: the k-d tree Lloyd iterations give scipy's kmeans2 centres."""

from __future__ import annotations

import warnings

import numpy as np
from gmmrefine.gmm.fit import lloyd_kmeans
from scipy.cluster.vq import kmeans2


def test_the_same_centres_as_scipys_kmeans2():
    rng = np.random.default_rng(0)
    # Clumps and a sparse halo: some clusters end up empty and keep their seed.
    points = np.concatenate([rng.normal(size=(3000, 3)) * 2 + rng.normal(size=(1, 3)) * 30
                             for _ in range(5)] + [rng.uniform(-80, 80, (500, 3))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # kmeans2's empty-cluster warning
        expected, _ = kmeans2(points, 400, iter=10, minit="points",
                              seed=np.random.default_rng(7))
    got = lloyd_kmeans(points, 400, np.random.default_rng(7))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)

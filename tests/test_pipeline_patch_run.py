"""Patch-by-patch refinement end to end: every patch run and a composite of each half's maps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from gmmrefine.errors import InputError
from gmmrefine.io.mrc import read_map
from gmmrefine.io.particles import read_particles
from gmmrefine.pipeline import run as refine_module
from gmmrefine.pipeline.options import RefineOptions
from helpers_runs import resolution_of

# Every test here runs refinements end to end.
pytestmark = pytest.mark.slow


def test_patch_run_writes_every_patch_and_a_composite_of_each_halfs_own_maps(focus_set, tmp_path):
    out = tmp_path / "run"
    opts = RefineOptions(iterations=1, steps=1, res_A=8.0, n_gauss=400, patches=2,
                         patch_iterations=1)
    result = refine_module.run_refinement(focus_set / "particles.star", out, opts,
                                          log=lambda s: None)
    for name in ("global/particles.star", "patch_01/particles.star", "patch_02/particles.cs",
                 "patch_masks/patch_01.mrc", "patch_masks/patch_02.mrc", "half1.mrc",
                 "half2.mrc", "map.mrc", "fsc.csv", "fsc.png", "patches.csv", "comparison.png",
                 "slices.png", "run.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "patches.csv")
    assert list(table["patch"]) == [1, 2]
    # Each patch's resolution within its mask, before and after, recomputed from its maps.
    for k, before, after in zip(table["patch"], table["resolution_before_A"],
                                table["resolution_after_A"]):
        patch_dir = out / f"patch_{k:02d}"
        mask = read_map(out / "patch_masks" / f"patch_{k:02d}.mrc")[0]
        assert before == pytest.approx(resolution_of(patch_dir / "iter_000", mask), rel=1e-3)
        assert after == pytest.approx(resolution_of(patch_dir, mask), rel=1e-3)
    start = read_particles(focus_set / "particles.star")
    for k in (1, 2):
        patch = read_particles(out / f"patch_{k:02d}" / "particles.star")
        np.testing.assert_array_equal(patch.half_set, start.half_set)
        # The same stacks, named so that they are found from the project directory.
        assert patch.resolve_image_path(0).samefile(start.resolve_image_path(0))
    # Where only patch 1's mask reaches, each composite half is that half's patch-1 map.
    masks = [read_map(out / "patch_masks" / f"patch_{k:02d}.mrc")[0] for k in (1, 2)]
    only_first = (masks[0] == 1.0) & (masks[1] == 0.0)
    assert only_first.sum() > 10
    for half in ("half1.mrc", "half2.mrc"):
        composite = read_map(out / half)[0]
        own = read_map(out / "patch_01" / half)[0]
        np.testing.assert_allclose(composite[only_first], own[only_first], rtol=1e-4, atol=1e-6)
    # The composite's resolution is the FSC of the composite halves it wrote.
    recomputed = resolution_of(out)
    assert result.resolution_A == pytest.approx(recomputed, rel=1e-3)
    assert json.loads((out / "run.json").read_text())["composite_resolution_A"] == \
        pytest.approx(recomputed, rel=1e-3)

    # Run again: every run directory is finished, nothing is recomputed.
    stamp = (out / "patch_02" / "iter_001" / "iteration.json").stat().st_mtime_ns
    refine_module.run_refinement(focus_set / "particles.star", out, opts, log=lambda s: None)
    assert (out / "patch_02" / "iter_001" / "iteration.json").stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="patches"):
        refine_module.run_refinement(focus_set / "particles.star", out,
                                     dataclasses.replace(opts, patches=3), log=lambda s: None)
    # A bad option stops a patch run before its directory gets a file.
    with pytest.raises(InputError, match="--iter 0"):
        refine_module.run_refinement(focus_set / "particles.star", tmp_path / "bad",
                                     RefineOptions(iterations=0, patches=2), log=lambda s: None)
    assert not (tmp_path / "bad").exists()

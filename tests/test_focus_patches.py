"""Focused refinement (width mask) and patch-by-patch refinement with a composite map."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from gmmrefine.errors import InputError
from gmmrefine.fourier.masks import soft_sphere
from gmmrefine.gmm.focus import (
    fade_outside_mask,
    mask_values_at,
    widen_outside_mask,
    width_factor,
)
from gmmrefine.gmm.model import GMM
from gmmrefine.gmm.patches import composite_map, patch_mask, patches_from_centres
from gmmrefine.io.gmm_files import read_gmm
from gmmrefine.io.mrc import read_map, write_map
from gmmrefine.io.particles import read_particles
from gmmrefine.pipeline import run as refine_module
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.reconstruct.fsc import fsc_curve, resolution_at
from gmmrefine.simulate.dataset import simulate_dataset


def test_widths_outside_the_mask_follow_s_over_quarter_plus_three_quarters_m():
    box, apix = 16, 2.0
    mask = np.zeros((box, box, box), np.float32)
    # Voxel (x, y, z) = (10, 8, 8) holds 1, (4, 8, 8) holds 0.5, the rest 0.
    mask[8, 8, 10], mask[8, 8, 4] = 1.0, 0.5
    centres = np.array([[2, 0, 0], [-4, 0, 0], [0, 6, 0], [1, 0, 0]], float) * apix
    gmm = GMM(centres, [1.0, 2.0, 3.0, 4.0], [1.5, 1.5, 2.0, 1.0])
    out = widen_outside_mask(gmm, mask, apix)
    expected_m = np.array([1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(mask_values_at(mask, centres, apix), expected_m)
    np.testing.assert_allclose(out.widths_A, gmm.widths_A / (0.25 + 0.75 * expected_m))
    np.testing.assert_array_equal(out.amplitudes, gmm.amplitudes)
    np.testing.assert_array_equal(out.centres_A, gmm.centres_A)
    # Halfway between a voxel at 1 and one at 0 the trilinear mask reads 0.5.
    between = np.array([[1.5, 0, 0]]) * apix
    np.testing.assert_allclose(mask_values_at(mask, between, apix), [0.5])
    assert width_factor(np.array([0.0]))[0] == pytest.approx(4.0)


def test_fading_scales_amplitudes_by_the_mask_and_drops_what_lies_outside():
    box, apix = 16, 2.0
    mask = np.zeros((box, box, box), np.float32)
    mask[8, 8, 10], mask[8, 8, 4] = 1.0, 0.5
    centres = np.array([[2, 0, 0], [-4, 0, 0], [0, 6, 0]], float) * apix
    gmm = GMM(centres, [1.0, 2.0, 3.0], [1.5, 1.5, 2.0])
    out = fade_outside_mask(gmm, mask, apix)
    np.testing.assert_allclose(out.amplitudes, [1.0, 1.0])
    np.testing.assert_array_equal(out.widths_A, [1.5, 1.5])
    np.testing.assert_array_equal(out.centres_A, centres[:2])
    with pytest.raises(ValueError, match="inside the mask"):
        fade_outside_mask(gmm, np.zeros_like(mask), apix)


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


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=160, box=48, apix=2.4, snr=1.0, angle_rms_deg=3.0, crb_sample=0)
    return out


def test_focused_run_widens_the_gmm_outside_the_mask_and_reports_the_fsc_within_it(
        small_set, tmp_path):
    box, apix = 48, 2.4
    mask = soft_sphere(box, (4, 0, 0), 6, 3)
    write_map(tmp_path / "mask.mrc", mask, apix)
    star = small_set / "particles.star"
    opts = RefineOptions(iterations=1, steps=1, res_A=8.0)
    refine_module.run_refinement(star, tmp_path / "plain", opts, log=lambda s: None)
    refine_module.run_refinement(star, tmp_path / "focus",
                                 RefineOptions(iterations=1, steps=1, res_A=8.0,
                                               mask=str(tmp_path / "mask.mrc")),
                                 log=lambda s: None)
    plain = read_gmm(tmp_path / "plain" / "iter_001" / "gmm_half1.npz")
    focus = read_gmm(tmp_path / "focus" / "iter_001" / "gmm_half1.npz")
    # Same map, same seed: same fit; only the widths differ, by the mask formula.
    np.testing.assert_allclose(focus.centres_A, plain.centres_A)
    m = mask_values_at(mask, plain.centres_A, apix)
    np.testing.assert_allclose(focus.widths_A, plain.widths_A / (0.25 + 0.75 * m), rtol=1e-6)
    assert (m < 0.01).any() and (m > 0.99).any()
    fsc = pd.read_csv(tmp_path / "focus" / "fsc.csv")
    assert "fsc_masked_corrected" in fsc.columns
    record = json.loads((tmp_path / "focus" / "run.json").read_text())
    assert record["masked_resolution_A"] > 0 and record["start_masked_resolution_A"] > 0
    assert 0 < record["iterations"][1]["halves"]["1"]["mass_in_mask"] < 1
    refine_module.run_refinement(star, tmp_path / "fade",
                                 RefineOptions(iterations=1, steps=1, res_A=8.0, outside="fade",
                                               mask=str(tmp_path / "mask.mrc")),
                                 log=lambda s: None)
    fade = read_gmm(tmp_path / "fade" / "iter_001" / "gmm_half1.npz")
    np.testing.assert_allclose(fade.amplitudes, (plain.amplitudes * m)[m > 0], rtol=1e-6)


def test_patch_run_writes_every_patch_and_a_composite_of_each_halfs_own_maps(small_set, tmp_path):
    out = tmp_path / "run"
    opts = RefineOptions(iterations=1, steps=1, res_A=8.0, patches=2, patch_iterations=1)
    result = refine_module.run_refinement(small_set / "particles.star", out, opts,
                                          log=lambda s: None)
    for name in ("global/particles.star", "patch_01/particles.star", "patch_02/particles.cs",
                 "patch_01/mask.mrc", "patch_02/mask.mrc", "half1.mrc", "half2.mrc", "map.mrc",
                 "fsc.csv", "fsc.png", "patches.csv", "comparison.png", "run.json"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "patches.csv")
    assert list(table["patch"]) == [1, 2]
    assert (table["resolution_before_A"] > 0).all() and (table["resolution_after_A"] > 0).all()
    start = read_particles(small_set / "particles.star")
    for k in (1, 2):
        patch = read_particles(out / f"patch_{k:02d}" / "particles.star")
        np.testing.assert_array_equal(patch.half_set, start.half_set)
        # The same stacks, named so that they are found from the project directory.
        assert patch.resolve_image_path(0).samefile(start.resolve_image_path(0))
    # Where only patch 1's mask reaches, each composite half is that half's patch-1 map.
    masks = [read_map(out / f"patch_{k:02d}" / "mask.mrc")[0] for k in (1, 2)]
    only_first = (masks[0] == 1.0) & (masks[1] == 0.0)
    assert only_first.sum() > 10
    for half in ("half1.mrc", "half2.mrc"):
        composite = read_map(out / half)[0]
        own = read_map(out / "patch_01" / half)[0]
        np.testing.assert_allclose(composite[only_first], own[only_first], rtol=1e-4, atol=1e-6)
    assert result.resolution_A == pytest.approx(json.loads((out / "run.json").read_text())
                                                ["composite_resolution_A"])

    # Run again: every run directory is finished, nothing is recomputed.
    stamp = (out / "patch_02" / "iter_001" / "iteration.json").stat().st_mtime_ns
    refine_module.run_refinement(small_set / "particles.star", out, opts, log=lambda s: None)
    assert (out / "patch_02" / "iter_001" / "iteration.json").stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="patches"):
        refine_module.run_refinement(small_set / "particles.star", out,
                                     RefineOptions(iterations=1, steps=1, res_A=8.0, patches=3,
                                                   patch_iterations=1), log=lambda s: None)
    # A bad option stops a patch run before its directory gets a file.
    with pytest.raises(InputError, match="--iter 0"):
        refine_module.run_refinement(small_set / "particles.star", tmp_path / "bad",
                                     RefineOptions(iterations=0, patches=2), log=lambda s: None)
    assert not (tmp_path / "bad").exists()


@pytest.fixture(scope="module")
def c3_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("c3")
    simulate_dataset(out, n=120, box=40, apix=3.6, snr=1.0, angle_rms_deg=3.0, crb_sample=0,
                     sym="C3")
    return out


def test_symmetry_averages_the_global_map_and_a_focused_run_expands_then_reimposes_it(
        c3_set, tmp_path):
    from gmmrefine.reconstruct.symmetry import symmetrize_map

    star = c3_set / "particles.star"
    c1 = refine_module.run_refinement(star, tmp_path / "c1", RefineOptions(iterations=1, steps=1),
                                      log=lambda s: None)
    c3 = refine_module.run_refinement(star, tmp_path / "c3",
                                      RefineOptions(iterations=1, steps=1, sym="C3"),
                                      log=lambda s: None)
    # Three times the data per asymmetric unit: the symmetric run is at least as good.
    assert c3.resolution_A <= c1.resolution_A
    assert c3.start_resolution_A <= c1.start_resolution_A

    mask = soft_sphere(40, (6, 0, 0), 5, 3)
    write_map(tmp_path / "region.mrc", mask, 3.6)
    focus = refine_module.run_refinement(
        star, tmp_path / "focus", RefineOptions(iterations=1, steps=1, sym="C3",
                                                mask=str(tmp_path / "region.mrc")),
        log=lambda s: None)
    start = read_particles(star)
    expanded = read_particles(focus.particles_star)
    assert len(expanded) == 3 * len(start)
    np.testing.assert_array_equal(expanded.half_set, np.repeat(start.half_set, 3))
    final, _ = read_map(focus.map)
    again = symmetrize_map(final, "C3")
    assert np.corrcoef(final.ravel(), again.ravel())[0, 1] > 0.99
    # What is reported is the FSC of the maps written (symmetry re-imposed), not of
    # the expanded C1 reconstruction they were made from.
    h1, _ = read_map(focus.half1)
    h2, _ = read_map(focus.half2)
    assert focus.resolution_A == pytest.approx(resolution_at(fsc_curve(h1, h2), 40, 3.6, 0.143))
    record = json.loads((focus.out_dir / "run.json").read_text())
    assert record["resolution_A"] == focus.resolution_A
    assert record["expanded_c1_resolution_A"] == focus.resolutions_A[-1]
    with pytest.raises(InputError, match="C7x"):
        refine_module.run_refinement(star, tmp_path / "bad", RefineOptions(sym="C7x"),
                                     log=lambda s: None)


def test_a_run_from_before_an_option_existed_resumes_at_that_options_default(tmp_path):
    from gmmrefine.pipeline.run_directory import RunDirectory

    star = tmp_path / "p.star"
    star.write_text("")
    RunDirectory(tmp_path / "run", RefineOptions(), star, 10).write_record([])
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    del record["options"]["sym"], record["options"]["patches"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    RunDirectory(tmp_path / "run", RefineOptions(), star, 10)          # defaults: resumes
    with pytest.raises(InputError, match="sym='C1', not 'C3'"):
        RunDirectory(tmp_path / "run", RefineOptions(sym="C3"), star, 10)

"""Focused refinement end to end: the GMM widened outside the mask, the FSC within it,
and a symmetric run expanded for the focus and symmetrised again."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from gmmrefine.errors import InputError
from gmmrefine.fourier.masks import soft_sphere
from gmmrefine.gmm.focus import mask_values_at
from gmmrefine.io.gmm_files import read_gmm
from gmmrefine.io.mrc import read_map, write_map
from gmmrefine.io.particles import read_particles
from gmmrefine.pipeline import run as refine_module
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.reconstruct.fsc import fsc_curve, resolution_at
from gmmrefine.simulate.dataset import simulate_dataset
from helpers_runs import resolution_of

# Every test here runs refinements end to end.
pytestmark = pytest.mark.slow


def test_focused_run_widens_the_gmm_outside_the_mask_and_reports_the_fsc_within_it(
        focus_set, tmp_path):
    box, apix = 48, 2.4
    mask = soft_sphere(box, (4, 0, 0), 6, 3)
    write_map(tmp_path / "mask.mrc", mask, apix)
    star = focus_set / "particles.star"
    opts = RefineOptions(iterations=1, steps=1, res_A=8.0, n_gauss=400)
    refine_module.run_refinement(star, tmp_path / "plain", opts, log=lambda s: None)
    refine_module.run_refinement(star, tmp_path / "focus",
                                 RefineOptions(iterations=1, steps=1, res_A=8.0, n_gauss=400,
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
    # Within the mask, corrected for it, at the start and at the end: as recomputed from the
    # maps the run wrote.
    region = read_map(tmp_path / "mask.mrc")[0]
    assert record["start_masked_resolution_A"] == pytest.approx(
        resolution_of(tmp_path / "focus" / "iter_000", region), rel=1e-3)
    assert record["masked_resolution_A"] == pytest.approx(
        resolution_of(tmp_path / "focus", region), rel=1e-3)
    assert 0 < record["iterations"][1]["halves"]["1"]["mass_in_mask"] < 1
    refine_module.run_refinement(star, tmp_path / "fade",
                                 RefineOptions(iterations=1, steps=1, res_A=8.0, n_gauss=400,
                                               outside="fade",
                                               mask=str(tmp_path / "mask.mrc")),
                                 log=lambda s: None)
    fade = read_gmm(tmp_path / "fade" / "iter_001" / "gmm_half1.npz")
    np.testing.assert_allclose(fade.amplitudes, (plain.amplitudes * m)[m > 0], rtol=1e-6)


def test_held_run_keeps_the_whole_gmm_and_targets_the_fsc_within_the_mask(focus_set,
                                                                          tmp_path):
    from gmmrefine.pipeline.iteration import target_resolution
    from gmmrefine.reconstruct.fsc import masked_fsc_corrected

    box, apix = 48, 2.4
    mask = soft_sphere(box, (4, 0, 0), 6, 3)
    write_map(tmp_path / "mask.mrc", mask, apix)
    star = focus_set / "particles.star"
    base = dict(iterations=2, steps=1, res_A=8.0, n_gauss=400, mask=str(tmp_path / "mask.mrc"),
                reference_fsc="masked")
    refine_module.run_refinement(star, tmp_path / "widen", RefineOptions(**base),
                                 log=lambda s: None)
    refine_module.run_refinement(star, tmp_path / "hold", RefineOptions(**base, outside="hold"),
                                 log=lambda s: None)
    # hold aligns the region's share and holds the rest: the GMM itself stays whole.
    widened = read_gmm(tmp_path / "widen" / "iter_001" / "gmm_half1.npz")
    whole = read_gmm(tmp_path / "hold" / "iter_001" / "gmm_half1.npz")
    np.testing.assert_allclose(whole.centres_A, widened.centres_A)
    assert not np.allclose(whole.widths_A, widened.widths_A)
    # The second target follows the FSC within the mask of the first iteration's maps.
    h1, h2 = (read_map(tmp_path / "hold" / "iter_001" / f"half{h}.mrc")[0] for h in (1, 2))
    masked = masked_fsc_corrected(h1, h2, mask, apix).corrected
    record = json.loads((tmp_path / "hold" / "run.json").read_text())
    assert record["iterations"][2]["target_resolution_A"] == pytest.approx(
        target_resolution(masked, box, apix, None), rel=1e-3)
    assert record["iterations"][2]["target_resolution_A"] != pytest.approx(
        target_resolution(fsc_curve(h1, h2), box, apix, None), rel=1e-3)


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
    # The expanded C1 resolution is that of the last iteration's maps, before symmetrising.
    assert record["expanded_c1_resolution_A"] == pytest.approx(
        resolution_of(focus.out_dir / "iter_001"), rel=1e-3)
    with pytest.raises(InputError, match="C7x"):
        refine_module.run_refinement(star, tmp_path / "bad", RefineOptions(sym="C7x"),
                                     log=lambda s: None)


def test_reference_fsc_is_the_masked_one_only_when_asked_and_there_is_one():
    from gmmrefine.pipeline.iteration import reference_fsc
    from gmmrefine.pipeline.run_directory import Maps

    empty = np.zeros((2, 2, 2))
    whole, within = np.linspace(1, 0, 5), np.linspace(1, 0.5, 5)
    maps = Maps(empty, empty, empty, whole, within)
    assert reference_fsc(RefineOptions(), maps) is whole
    assert reference_fsc(RefineOptions(reference_fsc="masked"), maps) is within
    assert reference_fsc(RefineOptions(reference_fsc="masked"),
                         Maps(empty, empty, empty, whole)) is whole

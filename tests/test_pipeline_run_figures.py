"""What a finished run shows: slices of its start and final maps, and a model's Q-scores in both."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.fourier.grids import rfft_radius_px
from gmmrefine.io.model import map_centre_A
from gmmrefine.io.qscore_table import read_qscore_csv
from gmmrefine.pipeline import run_figures
from gmmrefine.pipeline.inputs import read_model
from gmmrefine.simulate.model import build_model
from gmmrefine.simulate.pdb import write_pdb
from gmmrefine.simulate.render import atom_amplitude, atom_sigma_A, render_map

BOX, APIX = 48, 1.0


@pytest.fixture(scope="module")
def maps_and_model(tmp_path_factory):
    """A 60-residue model, its map with little noise (final) and with much (start)."""
    out = tmp_path_factory.mktemp("figures")
    model = build_model(seed=4, n_residues=60)
    truth = render_map(model.coords_A, atom_amplitude(model.element),
                       atom_sigma_A(model.element, 20.0), BOX, APIX)
    rng = np.random.default_rng(2)
    final = truth + rng.normal(scale=0.2 * truth.std(), size=truth.shape)
    start = truth + rng.normal(scale=2.0 * truth.std(), size=truth.shape)
    write_pdb(out / "model.pdb", model, box_centre_A=map_centre_A(BOX, APIX))
    return start, final, read_model(str(out / "model.pdb"), BOX, APIX)


def _spy_slices(monkeypatch) -> dict:
    drawn = {}
    real = run_figures.plot_map_slices

    def spy(path, volumes, apix, **kwargs):
        drawn.update(volumes)
        real(path, volumes, apix, **kwargs)

    monkeypatch.setattr(run_figures, "plot_map_slices", spy)
    return drawn


def test_slices_show_each_map_low_passed_to_its_own_resolution(maps_and_model, tmp_path,
                                                               monkeypatch):
    start, final, _ = maps_and_model
    drawn = _spy_slices(monkeypatch)
    run_figures.write_run_figures(tmp_path, APIX, (start, 8.0), (final, 3.0))
    assert (tmp_path / "slices.png").stat().st_size > 20_000
    assert not (tmp_path / "qscore.csv").exists()
    radius = rfft_radius_px(start.shape)
    for (label, volume), res_A in zip(drawn.items(), (8.0, 3.0)):
        assert label.startswith(("start", "final")) and f"{res_A:.2f}" in label
        power = np.abs(np.fft.rfftn(volume)) ** 2
        cutoff = BOX * APIX / res_A
        # Nothing beyond the filter's cosine edge (one shell past the cutoff), and the
        # map itself kept well inside it.
        assert power[radius > cutoff + 1.01].sum() < 1e-8 * power.sum(), label
        source = start if label.startswith("start") else final
        inside = radius < cutoff - 1.01
        np.testing.assert_allclose(np.fft.rfftn(volume)[inside], np.fft.rfftn(source)[inside],
                                   rtol=1e-3, atol=1e-3 * np.abs(np.fft.rfftn(source)).max())


def test_a_model_is_scored_in_both_maps_and_the_better_map_scores_higher(maps_and_model,
                                                                        tmp_path, caplog):
    start, final, model = maps_and_model
    with caplog.at_level("INFO", logger="gmmrefine"):
        run_figures.write_run_figures(tmp_path, APIX, (start, 8.0), (final, 3.0), model)
    table = read_qscore_csv(tmp_path / "qscore.csv")
    assert list(table.columns[-2:]) == ["q_start", "q_final"]
    assert len(table) == len(set(zip(model[0].chain, model[0].res_seq)))
    assert table.q_final.mean() > table.q_start.mean() + 0.2
    assert (tmp_path / "qscore.png").is_file() and (tmp_path / "slices.png").is_file()
    line = next(r.message for r in caplog.records if r.message.startswith("Q-score of the model"))
    assert "start, 8.00 A: mean Q" in line and "final, 3.00 A: mean Q" in line

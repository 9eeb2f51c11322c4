"""The README's main command runs end to end on a small built-in example."""

import re

import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from helpers_runs import resolution_of


@pytest.mark.slow
def test_demo_simulates_refines_and_compares_with_the_truth(tmp_path, monkeypatch):
    import gmmrefine.report.plots as plots
    from gmmrefine.io.tables import read_fsc_csv

    drawn, real_plot = {}, plots.plot_fsc
    monkeypatch.setattr(plots, "plot_fsc", lambda path, curves, *args, **kwargs: (
        drawn.__setitem__(str(path), curves), real_plot(path, curves, *args, **kwargs)))
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--n", "300", "--box", "32",
                                      "--apix", "3.2", "--snr", "1.0", "--iter", "1"])
    assert result.exit_code == 0, result.output
    for name in ("half1.mrc", "half2.mrc", "map.mrc", "fsc.csv", "fsc.png", "particles.star",
                 "particles.cs", "run.json"):
        assert (out / "refine" / name).is_file(), name
    assert (out / "truth_reconstruction" / "map.mrc").is_file()
    start, refined, true = (float(x) for x in re.search(
        r"start ([0-9.]+) A, refined ([0-9.]+) A, true poses ([0-9.]+) A", result.output).groups())
    # True poses can only help: the map from them is at least as sharp as the start's.
    assert true <= start * 1.02
    # The refinement helps too, by at least a Fourier shell (measured: 11.1 A -> 9.1 A), and
    # the printed figures are the FSC of the half maps it wrote, start and end.
    assert 1 / refined - 1 / start > 1 / (32 * 3.2)
    assert start == pytest.approx(resolution_of(out / "refine" / "iter_000"), abs=0.006)
    assert refined == pytest.approx(resolution_of(out / "refine"), abs=0.006)
    assert "median error to the true poses" in result.output
    # Its own FSC plot carries the true poses' curve; its pose errors meet the bound.
    curves = drawn[str(out / "fsc.png")]
    assert list(curves) == ["start poses", "refined poses", "true poses"]
    assert (curves["true poses"] == read_fsc_csv(out / "truth_reconstruction" / "fsc.csv")).all()
    assert (out / "pose_errors.png").is_file() and (out / "refine" / "slices.png").is_file()

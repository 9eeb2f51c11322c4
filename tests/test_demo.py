"""The README's main command runs end to end on a small built-in example."""

import re

from click.testing import CliRunner

from gmmrefine.cli.main import cli


def test_demo_simulates_reconstructs_and_reports(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--n", "300", "--box", "32",
                                      "--apix", "3.2", "--snr", "1.0"])
    assert result.exit_code == 0, result.output
    for sub in ("start_reconstruction", "truth_reconstruction"):
        for name in ("half1.mrc", "half2.mrc", "map.mrc", "fsc.csv", "fsc.png"):
            assert (out / sub / name).is_file()
    start, truth = (float(x) for x in re.findall(r"FSC 0.143\): ([0-9.]+) A", result.output))
    # True poses can only help: the map from them is at least as sharp.
    assert truth <= start * 1.02

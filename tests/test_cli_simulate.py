"""`gmmrefine simulate`: says what it wrote, refuses bad settings."""

from __future__ import annotations

from click.testing import CliRunner
from gmmrefine.cli.main import cli


def test_cli_prints_what_it_wrote_and_refuses_bad_settings(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--out", str(tmp_path / "sim"), "--n", "6",
                                 "--box", "32", "--apix", "4", "--crb-sample", "2"])
    assert result.exit_code == 0, result.output
    assert "particles.star" in result.output and "Cramer-Rao" in result.output
    assert (tmp_path / "sim" / "truth.json").exists()
    bad = runner.invoke(cli, ["simulate", "--out", str(tmp_path / "bad"), "--box", "33"])
    assert bad.exit_code == 2
    assert "--box 33" in bad.output and "Traceback" not in bad.output

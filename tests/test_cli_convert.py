"""`gmmrefine convert`: bad files exit 2 with one line and no output; unknown suffixes and
overwriting the input refused."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from helpers_formats import CS_CASES, STAR_CASES, bad_particle_file, write_star31


@pytest.mark.parametrize("case", STAR_CASES + CS_CASES)
def test_cli_exits_2_with_one_line_and_no_output(tmp_path, case):
    path, expected = bad_particle_file(tmp_path, case)
    out = tmp_path / ("out.cs" if path.suffix == ".star" else "out.star")
    result = CliRunner().invoke(cli, ["convert", str(path), str(out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gmmrefine: error: ")
    assert "Traceback" not in result.output
    assert expected[0] in lines[0] and expected[1] in lines[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_cli_refuses_unknown_suffix_and_overwriting_the_input(tmp_path):
    write_star31(tmp_path / "in.star")
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "in.star"), str(tmp_path / "o.txt")])
    assert result.exit_code == 2 and "o.txt" in result.stderr and ".star" in result.stderr
    before = (tmp_path / "in.star").read_text()
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "in.star"),
                                      str(tmp_path / "in.star")])
    assert result.exit_code == 2 and "input" in result.stderr
    assert (tmp_path / "in.star").read_text() == before

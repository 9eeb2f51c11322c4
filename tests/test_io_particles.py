"""Bad particle files give one clear line naming the file and the place, never a traceback."""

from __future__ import annotations

import numpy as np
import numpy.lib.recfunctions as rfn
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.errors import InputError
from gmmrefine.io.particles import read_particles, write_particles
from helpers_formats import make_cs, save_cs_file, write_star31

GOOD_ROW = "000001@Extract/job007/mics/stack_0000.mrcs"


def _edit_star(tmp_path, old: str, new: str, count: int = 1):
    """The synthetic 3.1 STAR with one textual edit applied."""
    write_star31(tmp_path / "good.star")
    text = (tmp_path / "good.star").read_text()
    assert old in text
    (tmp_path / "bad.star").write_text(text.replace(old, new, count))
    return tmp_path / "bad.star"


def _drop_column(tmp_path, label: str):
    """The synthetic STAR without column ``label`` (header line and values)."""
    write_star31(tmp_path / "good.star")
    lines = (tmp_path / "good.star").read_text().splitlines()
    start = lines.index("data_particles")
    labels = [ln.split()[0] for ln in lines[start:] if ln.startswith("_")]
    k = labels.index("_" + label)
    out = []
    for i, line in enumerate(lines):
        fields = line.split()
        if i > start and line.startswith("_" + label + " "):
            continue
        if i > start and fields and not line.startswith(("_", "loop_", "#")):
            del fields[k]
            line = " ".join(fields)
        out.append(line)
    (tmp_path / "bad.star").write_text("\n".join(out) + "\n")
    return tmp_path / "bad.star"


def _bad_star(tmp_path, case: str):
    if case == "missing column":
        return _drop_column(tmp_path, "rlnDefocusU"), ["bad.star", "rlnDefocusU"]
    if case == "unknown optics group":
        path = _edit_star(tmp_path, " 0.000000 0.000000 1 ", " 0.000000 0.000000 7 ")
        return path, ["bad.star", "row 1", "rlnOpticsGroup", "7"]
    if case == "empty file":
        (tmp_path / "bad.star").write_text("")
        return tmp_path / "bad.star", ["bad.star", "empty"]
    if case == "NaN angle":
        write_star31(tmp_path / "good.star")
        lines = (tmp_path / "good.star").read_text().splitlines()
        row = [i for i, ln in enumerate(lines) if "@" in ln][2]
        fields = lines[row].split()
        fields[5] = "nan"                                   # rlnAngleTilt, third particle
        lines[row] = " ".join(fields)
        (tmp_path / "bad.star").write_text("\n".join(lines) + "\n")
        return tmp_path / "bad.star", ["bad.star", "row 3", "rlnAngleTilt"]
    if case == "malformed image name":
        path = _edit_star(tmp_path, GOOD_ROW, "x1@Extract/job007/mics/stack_0000.mrcs")
        return path, ["bad.star", "row 1", "rlnImageName", "x1@"]
    if case == "zero image index":
        path = _edit_star(tmp_path, GOOD_ROW, "0@Extract/job007/mics/stack_0000.mrcs")
        return path, ["bad.star", "row 1", "rlnImageName"]
    if case == "short row":
        write_star31(tmp_path / "good.star")
        lines = (tmp_path / "good.star").read_text().splitlines()
        row = [i for i, ln in enumerate(lines) if "@" in ln][1]
        lines[row] = " ".join(lines[row].split()[:-1])
        (tmp_path / "bad.star").write_text("\n".join(lines) + "\n")
        return tmp_path / "bad.star", ["bad.star", "row 2", "rlnAutopickFigureOfMerit"]
    if case == "bad random subset":
        path = _edit_star(tmp_path, " 0.000000 0.000000 1 1 ", " 0.000000 0.000000 1 3 ")
        return path, ["bad.star", "rlnRandomSubset", "expected 1 or 2"]
    raise AssertionError(case)


def _bad_cs(tmp_path, case: str):
    arr = make_cs(n=6)
    if case == "cs missing blob/path":
        arr = rfn.drop_fields(arr, "blob/path", usemask=False)
        where = ["bad.cs", "blob/path"]
    elif case == "cs NaN pose":
        arr["alignments3D/pose"][4] = np.nan
        where = ["bad.cs", "row 5", "alignments3D/pose"]
    elif case == "cs empty file":
        (tmp_path / "bad.cs").write_bytes(b"")
        return tmp_path / "bad.cs", ["bad.cs", "empty"]
    elif case == "cs not a table":
        save_cs_file(tmp_path / "bad.cs", np.zeros(3))
        return tmp_path / "bad.cs", ["bad.cs", "structured array"]
    else:
        raise AssertionError(case)
    return save_cs_file(tmp_path / "bad.cs", arr), where


STAR_CASES = ["missing column", "unknown optics group", "empty file", "NaN angle",
              "malformed image name", "zero image index", "bad random subset", "short row"]
CS_CASES = ["cs missing blob/path", "cs NaN pose", "cs empty file", "cs not a table"]


def _bad_file(tmp_path, case):
    return _bad_star(tmp_path, case) if case in STAR_CASES else _bad_cs(tmp_path, case)


@pytest.mark.parametrize("case", STAR_CASES + CS_CASES)
def test_reader_names_file_and_place(tmp_path, case):
    path, expected = _bad_file(tmp_path, case)
    with pytest.raises(InputError) as err:
        read_particles(path)
    message = str(err.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, (text, message)


@pytest.mark.parametrize("case", STAR_CASES + CS_CASES)
def test_cli_exits_2_with_one_line_and_no_output(tmp_path, case):
    path, expected = _bad_file(tmp_path, case)
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


def test_failed_write_leaves_no_file(tmp_path):
    write_star31(tmp_path / "in.star")
    ps = read_particles(tmp_path / "in.star")
    ps.shift_A = np.zeros((3, 2))            # wrong length: the writer fails midway
    with pytest.raises(ValueError):
        write_particles(ps, tmp_path / "out.cs")
    assert list(tmp_path.iterdir()) == [tmp_path / "in.star"]

"""Issue 16: inputs that used to end in a traceback, a misleading line or a stale answer.

Each test builds the bad file the user reported, reads it the way a command
does, and checks the one line that comes back (and that nothing else is
printed on the way).
"""

from __future__ import annotations

import linecache
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.errors import InputError
from gmmrefine.io.mrc import write_stack
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.io.stack import StackReader
from helpers_formats import make_cs, save_cs_file, write_star31


def _one_line_error(read, *args, **kwargs) -> str:
    """The InputError message ``read`` ends in, after checking no warning was issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(InputError) as err:
            read(*args, **kwargs)
    assert [str(w.message) for w in caught] == []
    message = str(err.value)
    assert "\n" not in message and message.isprintable()
    return message


def _star_text(tmp_path) -> str:
    write_star31(tmp_path / "good.star", n=6)
    return (tmp_path / "good.star").read_text()


# --- STAR: tracebacks from inside the parser ----------------------------------------------

def test_star_cut_right_after_a_data_line(tmp_path):
    text = _star_text(tmp_path)
    cut = text[:text.index("data_particles") + len("data_particles")] + "\n"
    (tmp_path / "bad.star").write_text(cut)
    message = _one_line_error(read_particles, tmp_path / "bad.star")
    line = cut.splitlines().index("data_particles") + 1
    assert message.startswith(f"{tmp_path / 'bad.star'}: line {line}: data_particles is empty")
    assert "cut short" in message


def test_star_with_an_empty_trailing_block(tmp_path):
    (tmp_path / "bad.star").write_text(_star_text(tmp_path) + "\ndata_extra\n\n")
    message = _one_line_error(read_particles, tmp_path / "bad.star")
    assert "data_extra is empty" in message


def test_star_empty_block_followed_by_another_is_not_merged_into_it(tmp_path):
    # starfile would file the particle table under "optics" here.
    text = _star_text(tmp_path)
    start, end = text.index("data_optics"), text.index("data_particles")
    (tmp_path / "bad.star").write_text(text[:start] + "data_optics\n\n" + text[end:])
    message = _one_line_error(read_particles, tmp_path / "bad.star")
    assert "data_optics is empty" in message and "data_particles" in message


def test_cli_gives_exit_2_and_one_line_where_it_gave_a_traceback(tmp_path):
    text = _star_text(tmp_path)
    (tmp_path / "bad.star").write_text(text + "\ndata_extra\n")
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "bad.star"),
                                      str(tmp_path / "out.cs")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "data_extra is empty" in result.stderr
    assert "Traceback" not in result.output


# --- STAR: misleading lines ---------------------------------------------------------------

@pytest.mark.parametrize("row", [1, 3])
def test_star_unquoted_space_in_an_image_name_names_the_row(tmp_path, row):
    text = _star_text(tmp_path)
    name = f"{row:06d}@Extract/job007/mics/stack_0000.mrcs"
    bad = text.replace(name, name.replace("job007", "job 007"), 1)
    (tmp_path / "bad.star").write_text(bad)
    message = _one_line_error(read_particles, tmp_path / "bad.star")
    line = next(i for i, ln in enumerate(bad.splitlines(), 1) if "job 007" in ln)
    assert f"row {row} of data_particles (line {line}): 20 values for 19 labels" in message
    assert "quote" in message
    assert "Length mismatch" not in message and "tokenizing" not in message


def test_star_quoted_name_with_a_space_is_read(tmp_path):
    text = _star_text(tmp_path)
    name = "000002@Extract/job007/mics/stack_0000.mrcs"
    (tmp_path / "ok.star").write_text(text.replace(name, f'"{name.replace("job007", "job 007")}"'))
    ps = read_particles(tmp_path / "ok.star")
    assert ps.image_path[1] == "Extract/job 007/mics/stack_0000.mrcs"


# --- STAR: stale parser state -------------------------------------------------------------

def test_star_fixed_after_a_failed_read_is_read_as_it_is_now(tmp_path):
    text = _star_text(tmp_path)
    path = tmp_path / "p.star"
    path.write_text(text[:text.index("data_particles") + len("data_particles")] + "\n")
    _one_line_error(read_particles, path)
    path.write_text(text)                            # the user fixes the file
    assert len(read_particles(path)) == 6


def test_star_changed_after_someone_cached_its_lines_is_read_as_it_is_now(tmp_path):
    # linecache is process-wide: a traceback or a debugger may have cached the file.
    text = _star_text(tmp_path)
    path = tmp_path / "p.star"
    path.write_text(text)
    assert linecache.getline(str(path), 1) is not None and len(linecache.getlines(str(path)))
    path.write_text(text.replace("000001@Extract", "000004@Extract", 1))
    assert read_particles(path).image_index[0] == 3


# --- .cs ----------------------------------------------------------------------------------

def _cs_bytes(tmp_path) -> bytes:
    return save_cs_file(tmp_path / "good.cs", make_cs(n=4)).read_bytes()


def test_cs_with_a_corrupted_numpy_header(tmp_path):
    data = bytearray(_cs_bytes(tmp_path))
    start = data.index(b"{")
    data[start + 1:start + 2] = b"("            # an unclosed bracket: tokenize.TokenError
    (tmp_path / "bad.cs").write_bytes(bytes(data))
    message = _one_line_error(read_particles, tmp_path / "bad.cs")
    assert message.startswith(f"{tmp_path / 'bad.cs'}: the .npy header is damaged")
    assert len(message) < len(str(tmp_path)) + 200          # not the whole header echoed back


def test_cs_with_a_non_utf8_byte_in_blob_path(tmp_path):
    arr = make_cs(n=4)
    arr["blob/path"][1] = b"J3/extract/\xff\xfe_particles.mrc"
    save_cs_file(tmp_path / "bad.cs", arr)
    message = _one_line_error(read_particles, tmp_path / "bad.cs")
    assert "row 2 field blob/path" in message and "UTF-8" in message


def test_random_bytes_as_cs_say_it_is_not_a_cs_file(tmp_path):
    (tmp_path / "bad.cs").write_bytes(np.random.default_rng(0).bytes(600))
    message = _one_line_error(read_particles, tmp_path / "bad.cs")
    assert "not a .cs file" in message
    assert "pickle" not in message


def test_truncated_cs_says_how_many_rows_fit(tmp_path):
    data = _cs_bytes(tmp_path)
    (tmp_path / "bad.cs").write_bytes(data[:-100])
    message = _one_line_error(read_particles, tmp_path / "bad.cs")
    assert "truncated: the header says 4 rows" in message


# --- MRC stacks ---------------------------------------------------------------------------

def test_truncated_stack_says_what_the_header_promises(tmp_path):
    write_stack(tmp_path / "good.mrcs", np.zeros((5, 16, 16), np.float32), 1.0)
    data = (tmp_path / "good.mrcs").read_bytes()
    (tmp_path / "bad.mrcs").write_bytes(data[:1024 + 3 * 16 * 16 * 4 + 100])
    message = _one_line_error(StackReader(tmp_path).read, ["bad.mrcs"], np.array([0]))
    assert (f"{tmp_path / 'bad.mrcs'}: truncated: the header says 5 images of 16 x 16 px "
            f"(mode 2), 6144 bytes with its header; the file holds 4196 bytes") in message
    assert "particle row 1" in message


# --- found by fuzzing (bench/fuzz_readers.py): conversions that crashed -------------------

@pytest.mark.parametrize("klass, kind", [("99999999999999999999", "S"),
                                         ("18446744073709551615", "u")])
def test_class_numbers_beyond_int64_are_carried_not_crashed_on(tmp_path, klass, kind):
    text = _star_text(tmp_path)
    row = next(ln for ln in text.splitlines() if ln.startswith(tuple("0123456789")) and "@" in ln)
    fields = row.split()
    fields[16] = klass                                   # rlnClassNumber
    (tmp_path / "p.star").write_text(text.replace(row, " ".join(fields)))
    ps = read_particles(tmp_path / "p.star")
    write_particles(ps, tmp_path / "p.cs")
    carried = np.load(tmp_path / "p.cs")["rln/rlnClassNumber"]
    assert carried.dtype.kind == kind and str(carried[0].item()).lstrip("b'").rstrip("'") == klass


def test_cs_column_beyond_its_float32_names_row_and_column(tmp_path):
    save_cs_file(tmp_path / "in.cs", make_cs(n=3))
    write_particles(read_particles(tmp_path / "in.cs"), tmp_path / "p.star")
    text = (tmp_path / "p.star").read_text()
    labels = [ln.split()[0][1:] for ln in text.splitlines() if ln.startswith("_")]
    column = labels.index("cs:blob/sign:f4")
    row = next(ln for ln in text.splitlines() if "@" in ln)
    fields = row.split()
    fields[column - (len(labels) - len(fields))] = "1e300"
    (tmp_path / "p.star").write_text(text.replace(row, " ".join(fields)))
    ps = read_particles(tmp_path / "p.star")
    message = _one_line_error(write_particles, ps, tmp_path / "out.cs")
    assert "row 1 column _cs:blob/sign:f4: '1e300'; expected a value of type float32" in message
    assert not (tmp_path / "out.cs").exists()


def test_cs_label_without_a_field_name_is_carried_as_a_star_column(tmp_path):
    save_cs_file(tmp_path / "in.cs", make_cs(n=3))
    write_particles(read_particles(tmp_path / "in.cs"), tmp_path / "p.star")
    text = (tmp_path / "p.star").read_text()
    (tmp_path / "p.star").write_text(text.replace("_cs:ctf/type:S9", "_cs::S9"))
    write_particles(read_particles(tmp_path / "p.star"), tmp_path / "out.cs")
    assert np.load(tmp_path / "out.cs")["rln/cs::S9"][0] == b"ctffind4"

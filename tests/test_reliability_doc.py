"""docs/reliability.md stays true: every row of its table is a real run of the reader.

Each row names a bad input; CASES builds that input here and says which
reader meets it; the message the reader gives, with the test's directory
cut out, must be the row's message word for word. A row without a case, or
a case without a row, fails too. `python tests/test_reliability_doc.py`
prints the table rows as the readers word them now (for updating the page).
"""

from __future__ import annotations

import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import mrcfile
import numpy as np
import numpy.lib.recfunctions as rfn
import pytest
from gmmrefine.errors import InputError
from gmmrefine.gmm.model import GMM
from gmmrefine.io.gmm_files import read_gmm, write_gmm
from gmmrefine.io.mrc import read_map, read_mask, write_map, write_stack
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.io.stack import StackReader
from helpers_formats import make_cs, save_cs_file, write_star30, write_star31

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


# --- STAR -------------------------------------------------------------------------------------

def _star(tmp: Path, edit: Callable[[str], str], n: int = 4) -> Path:
    write_star31(tmp / "p.star", n=n)
    path = tmp / "p.star"
    path.write_bytes(edit(path.read_text()).encode("utf-8", "surrogateescape"))
    return path


def _rows(text: str) -> list[str]:
    return [line for line in text.split("\n") if "@Extract" in line]


def _set_field(text: str, row: int, field: int, value: str) -> str:
    line = _rows(text)[row]
    fields = line.split()
    fields[field] = value
    return text.replace(line, " ".join(fields), 1)


def _cut_after(text: str, marker: str) -> str:
    return text[:text.index(marker) + len(marker)] + "\n"


STAR_CASES = {
    "STAR: empty file": lambda t: "",
    "STAR: cut right after a data_ line": lambda t: _cut_after(t, "data_particles"),
    "STAR: an empty block at the end": lambda t: t + "\ndata_extra\n\n",
    "STAR: an empty block before another": lambda t: t.replace(
        t[t.index("data_optics"):t.index("data_particles")], "data_optics\n\n"),
    "STAR: unquoted space in an image name (row 3)": lambda t: t.replace(
        "000003@Extract/job007", "000003@Extract/job 007", 1),
    "STAR: a row one value short": lambda t: t.replace(_rows(t)[1], _rows(t)[1].rsplit(" ", 1)[0]),
    "STAR: a quote that never closes": lambda t: t.replace("000002@", '"000002@', 1),
    "STAR: a '#' inside a value": lambda t: t.replace("stack_0000.mrcs", "stack#0000.mrcs", 1),
    "STAR: a byte that is not UTF-8": lambda t: t.replace("opticsGroup1", "optics\udcffGroup1"),
    "STAR: a NUL byte (binary data)": lambda t: t.replace("_rlnVoltage", "_rln\0Voltage"),
    "STAR: a carriage return inside a line": lambda t: t.replace(" 300.0 ", " 300.0\r", 1),
    "STAR: a label twice in one table": lambda t: t.replace("_rlnDefocusV #11",
                                                           "_rlnDefocusU #11"),
    "STAR: loop_ with no labels after it": lambda t: t.replace("loop_\n_rlnCoordinateX",
                                                              "loop_\n\n_rlnCoordinateX"),
    "STAR: a block twice": lambda t: t + t[t.index("data_optics"):t.index("# version", 10)],
    "STAR: 'loop_' misspelt": lambda t: t.replace("loop_\n_rlnCoordinateX",
                                                 "lop_\n_rlnCoordinateX"),
    "STAR: NaN angle": lambda t: _set_field(t, 2, 5, "nan"),
    "STAR: angle beyond float32": lambda t: _set_field(t, 0, 4, "1e300"),
    "STAR: optics group not a whole number": lambda t: _set_field(t, 0, 14, "1e300"),
    "STAR: optics group not in data_optics": lambda t: _set_field(t, 0, 14, "7"),
    "STAR: zero pixel size": lambda t: t.replace(" 1.0 64 2", " 0 64 2", 1),
    "STAR: negative box size": lambda t: t.replace(" 1.0 64 2", " 1.0 -64 2", 1),
    "STAR: image number beyond 2^31": lambda t: t.replace("000001@", "99999999999@", 1),
    "STAR: image name 'nan'": lambda t: _set_field(t, 0, 2, "nan"),
    "STAR: random subset 3": lambda t: _set_field(t, 0, 15, "3"),
    "STAR: no particle table": lambda t: t[:t.index("# version", 10)],
}


def _star30_magnification(tmp: Path) -> Path:
    write_star30(tmp / "p.star", n=4)
    text = (tmp / "p.star").read_text()
    (tmp / "p.star").write_text(text.replace(" 38168 5 ", " 1e-300 5 ", 1))
    return tmp / "p.star"


# --- .cs --------------------------------------------------------------------------------------

def _cs_bytes(tmp: Path, arr: np.ndarray | None = None) -> bytes:
    return save_cs_file(tmp / "p.cs", make_cs(n=4) if arr is None else arr).read_bytes()


def _cs_edit(edit: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        (tmp / "p.cs").write_bytes(edit(_cs_bytes(tmp)))
        return tmp / "p.cs"
    return build


def _cs_array(edit: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        return save_cs_file(tmp / "p.cs", edit(make_cs(n=4)))
    return build


def _set(arr: np.ndarray, name: str, row: int, value) -> np.ndarray:
    arr[name][row] = value
    return arr


def _cs_objects(tmp: Path) -> Path:
    arr = np.zeros(2, [("uid", "<u8"), ("blob/path", "O")])
    with open(tmp / "p.cs", "wb") as f:
        np.save(f, arr, allow_pickle=True)
    return tmp / "p.cs"


CS_CASES = {
    ".cs: random bytes": _cs_edit(lambda d: np.random.default_rng(0).bytes(600)),
    ".cs: a damaged NumPy header (unclosed bracket)": _cs_edit(
        lambda d: d.replace(b"{'descr': [", b"{'descr': ((", 1)),
    ".cs: a header key misspelt": _cs_edit(lambda d: d.replace(b"'shape'", b"'shapx'", 1)),
    ".cs: cut short": _cs_edit(lambda d: d[:-100]),
    ".cs: a non-UTF-8 byte in blob/path": _cs_array(
        lambda a: _set(a, "blob/path", 1, b"J3/extract/\xff\xfe_particles.mrc")),
    ".cs: Python objects (pickled)": _cs_objects,
    ".cs: blob/idx stored as floats": _cs_array(lambda a: rfn.drop_fields(
        rfn.append_fields(rfn.drop_fields(a, "blob/idx", usemask=False), "blob/idx",
                          [np.float32(0.5)] * 4, usemask=False), [], usemask=False)),
    ".cs: a NaN pose": _cs_array(lambda a: _set(a, "alignments3D/pose", 2, np.nan)),
    ".cs: alignments3D/split 2": _cs_array(lambda a: _set(a, "alignments3D/split", 0, 2)),
    ".cs: blob/path missing": _cs_array(lambda a: rfn.drop_fields(a, "blob/path",
                                                                  usemask=False)),
}


def _convert_to_star(tmp: Path) -> Path:
    arr = make_cs(n=4)
    arr["location/micrograph_path"][1] = b"mic\t0001.mrc"
    return save_cs_file(tmp / "p.cs", arr)


# --- MRC --------------------------------------------------------------------------------------

def _stack(tmp: Path, images: np.ndarray | None = None) -> Path:
    images = np.zeros((5, 16, 16), np.float32) if images is None else images
    write_stack(tmp / "s.mrcs", images, 1.0)
    return tmp / "s.mrcs"


def _header_word(path: Path, offset: int, value: int) -> Path:
    data = bytearray(path.read_bytes())
    data[offset:offset + 4] = np.int32(value).tobytes()
    path.write_bytes(bytes(data))
    return path


def _stack_truncated(tmp: Path) -> Path:
    path = _stack(tmp)
    path.write_bytes(path.read_bytes()[:1024 + 3 * 16 * 16 * 4 + 100])
    return path


def _stack_random(tmp: Path) -> Path:
    (tmp / "s.mrcs").write_bytes(np.random.default_rng(1).bytes(5000))
    return tmp / "s.mrcs"


def _stack_nan(tmp: Path) -> Path:
    images = np.zeros((5, 16, 16), np.float32)
    images[1, 2, 2] = np.nan
    with warnings.catch_warnings(), mrcfile.new(tmp / "s.mrcs") as mrc:
        warnings.simplefilter("ignore")          # mrcfile warns about the NaN it is given
        mrc.set_data(images)
    return tmp / "s.mrcs"


def _map(tmp: Path, data: np.ndarray | None = None, apix: float = 1.5) -> Path:
    data = np.zeros((8, 8, 8), np.float32) + 0.5 if data is None else data
    write_map(tmp / "m.mrc", data, apix)
    return tmp / "m.mrc"


def _map_truncated(tmp: Path) -> Path:
    path = _map(tmp)
    path.write_bytes(path.read_bytes()[:-10])
    return path


def _gmm(tmp: Path) -> Path:
    rng = np.random.default_rng(3)
    write_gmm(GMM(rng.normal(size=(4, 3)), rng.uniform(0.5, 1, 4), rng.uniform(1, 2, 4)),
              tmp / "g.npz")
    return tmp / "g.npz"


def _gmm_edit(edit: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        path = _gmm(tmp)
        path.write_bytes(edit(path.read_bytes()))
        return path
    return build


def _gmm_version(tmp: Path) -> Path:
    path = tmp / "g.npz"
    np.savez(path, format_version=2.0, centres_A=np.zeros((1, 3)), amplitudes=np.ones(1),
             widths_A=np.ones(1))
    return path


def _read_stack(path: Path) -> object:
    return StackReader(path.parent, source=path.parent / "p.star").read(
        [path.name, path.name], np.array([0, 1]))


def _read_and_convert(path: Path) -> object:
    ps = read_particles(path)
    write_particles(ps, path.with_name("out.star" if path.suffix == ".cs" else "out.cs"))
    return ps


# Bad input -> (builder, reader). The reader is what a command runs on that file.
CASES: dict[str, tuple[Callable[[Path], Path], Callable[[Path], object]]] = {
    **{name: ((lambda e: lambda tmp: _star(tmp, e))(edit), read_particles)
       for name, edit in STAR_CASES.items()},
    "STAR 3.0: pixel size from magnification 1e-300": (_star30_magnification, read_particles),
    **{name: (build, read_particles) for name, build in CS_CASES.items()},
    ".cs -> STAR: a tab in a text field": (_convert_to_star, _read_and_convert),
    "STAR -> .cs: an origin beyond float32 once in pixels": (
        lambda t: _star(t, lambda s: _set_field(s.replace(" 1.0 64 2", " 0.001 64 2", 1), 0, 7,
                                                "3e38")), _read_and_convert),
    "MRC stack: cut short": (_stack_truncated, _read_stack),
    "MRC stack: random bytes": (_stack_random, _read_stack),
    "MRC stack: complex values (mode 4)": (lambda t: _header_word(_stack(t), 12, 4), _read_stack),
    "MRC stack: nz 0 in the header": (lambda t: _header_word(_stack(t), 8, 0), _read_stack),
    "MRC stack: a stack of volumes (space group 401)": (
        lambda t: _header_word(_header_word(_stack(t), 88, 401), 36, 5), _read_stack),
    "MRC stack: an image with a NaN pixel": (_stack_nan, _read_stack),
    "MRC stack: an image past the end": (_stack, lambda p: StackReader(p.parent).read(
        [p.name], np.array([7]))),
    "MRC map: cut short": (_map_truncated, read_map),
    "MRC map: MX 0 in the header (no voxel size)": (lambda t: _header_word(_map(t), 28, 0),
                                                    read_map),
    "MRC map: not cubic": (lambda t: _map(t, np.zeros((8, 8, 6), np.float32)), read_map),
    "Mask: values above 1": (lambda t: _map(t, np.full((8, 8, 8), 2.0, np.float32)),
                             lambda p: read_mask(p, 8, 1.5)),
    "Mask: another voxel size": (lambda t: _map(t, apix=3.0), lambda p: read_mask(p, 8, 1.5)),
    "GMM: not a zip archive": (_gmm_edit(lambda d: b"not a zip at all"), read_gmm),
    "GMM: cut short": (_gmm_edit(lambda d: d[:len(d) // 2]), read_gmm),
    "GMM: an array changed inside the archive": (
        _gmm_edit(lambda d: d.replace(b"'descr'", b"'descx'", 1)), read_gmm),
    "GMM: format_version 2.0": (_gmm_version, read_gmm),
}


def message_for(case: str) -> str:
    """The one line the reader gives for ``case``, its directory cut out."""
    build, read = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        path = build(Path(tmp))
        try:
            read(path)
        except InputError as err:
            return str(err).replace(tmp + "/", "")
    raise AssertionError(f"{case}: read without an error")


def doc_rows() -> dict[str, str]:
    """Bad input -> message, from the table in docs/reliability.md."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 2 and cells[1].startswith("`") and cells[1].endswith("`"):
            rows[cells[0]] = cells[1][1:-1]
    return rows


def test_every_case_has_a_row_and_every_row_a_case():
    assert sorted(doc_rows()) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_row_is_what_the_reader_says(case):
    assert message_for(case) == doc_rows().get(case)


if __name__ == "__main__":
    for name in CASES:
        sys.stdout.write(f"| {name} | `{message_for(name).replace('|', chr(92) + '|')}` |\n")

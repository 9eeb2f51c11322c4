"""Mutated files and the property every reader keeps, for tests/test_fuzz_readers.py
and bench/fuzz_readers.py (the same properties, many more examples).

Each target starts from a small valid file it writes itself; a mutation list
(truncate, the empty file included; delete / duplicate / swap lines; flip /
insert / delete bytes; replace a token with garbage, NaN, huge numbers,
non-UTF-8 or STAR syntax; overwrite a 4-byte word with an interesting int or
float)
turns it into a bad one. Reading must end in a result or in exactly one
InputError whose message is one printable line naming the file, and never
print a warning or anything else on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import struct
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Callable

import gmmrefine
import numpy as np
from gmmrefine.errors import InputError
from gmmrefine.gmm.model import GMM
from gmmrefine.io.gmm_files import read_gmm, write_gmm
from gmmrefine.io.mrc import read_map, read_mask, write_map, write_stack
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.io.stack import StackReader
from helpers_formats import make_cs, save_cs_file, write_star30, write_star31
from hypothesis import strategies as st

# --- targets: a valid seed file and the reader it goes through ----------------------------

STACK_IMAGES, BOX = 3, 8


def _seed_stack(path: Path) -> None:
    images = np.random.default_rng(0).normal(size=(STACK_IMAGES, BOX, BOX)).astype(np.float32)
    write_stack(path, images, 1.5)


def _seed_map(path: Path) -> None:
    write_map(path, np.random.default_rng(1).normal(size=(BOX,) * 3).astype(np.float32), 1.5)


def _seed_mask(path: Path) -> None:
    write_map(path, np.random.default_rng(2).uniform(size=(BOX,) * 3).astype(np.float32), 1.5)


def _seed_gmm(path: Path) -> None:
    rng = np.random.default_rng(3)
    write_gmm(GMM(rng.normal(size=(4, 3)), rng.uniform(0.5, 1, 4), rng.uniform(1, 2, 4)), path)


def _seed_star_from_cs(path: Path) -> None:
    """A STAR converted from a .cs: its cs:<field> columns carry every .cs field."""
    cs = save_cs_file(path.with_suffix(".cs"), make_cs(n=3))
    write_particles(read_particles(cs), path)
    cs.unlink()


def _read_stack(path: Path) -> object:
    with StackReader(path.parent, source=path.with_suffix(".star")) as reader:
        return reader.read([path.name] * STACK_IMAGES, np.arange(STACK_IMAGES))


def _read_and_convert(path: Path) -> object:
    """What ``gmmrefine convert`` does with a particle file: read it, write the other format."""
    ps = read_particles(path)
    write_particles(ps, path.parent / ("out.cs" if path.suffix == ".star" else "out.star"))
    return ps


@dataclasses.dataclass(frozen=True)
class Target:
    """A file format: how its valid seed is written and how a command reads it."""

    file_name: str
    write_seed: Callable[[Path], None]
    read: Callable[[Path], object]


TARGETS = {
    "star31": Target("p.star", lambda p: write_star31(p, n=4), _read_and_convert),
    "star30": Target("p.star", lambda p: write_star30(p, n=4), _read_and_convert),
    "star_cs": Target("p.star", _seed_star_from_cs, _read_and_convert),
    "cs": Target("p.cs", lambda p: save_cs_file(p, make_cs(n=3)), _read_and_convert),
    "stack": Target("s.mrcs", _seed_stack, _read_stack),
    "map": Target("m.mrc", _seed_map, read_map),
    "mask": Target("k.mrc", _seed_mask, lambda p: read_mask(p, BOX, 1.5)),
    "gmm": Target("g.npz", _seed_gmm, read_gmm),
}


def seed_bytes(name: str) -> bytes:
    """The valid file of target ``name``, as bytes."""
    target = TARGETS[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / target.file_name
        target.write_seed(path)
        return path.read_bytes()


# --- mutations ------------------------------------------------------------------------------

# Tokens: runs of characters that make up STAR values, .npy header words and field names.
_TOKEN = re.compile(rb"[A-Za-z0-9_.+\-/<>|@]+")
_REPLACEMENTS = [
    b"", b"nan", b"NaN", b"inf", b"-inf", b"-1", b"0", b"1e309", b"-1e309", b"1e300",
    b"99999999999999999999", b"4294967296", b"2147483648", b"-9223372036854775809",
    b"\xff\xfe", b"\xc3", b"\x00", b"'", b'"', b"#", b"data_", b"loop_", b"_rlnImageName",
    b"a b", b"1@", b"@", b"0@x", b"\r", b"\t", b"(", b"{", b"'<f4'", b"|O", b"<U3", b"(3,)",
    b"(2, 2)", b"True", b"None", b"[", b"\\", b"garbage", b"1.5", b"3",
]
# Values for a whole field of a row (STAR) or an element of a structured array (.cs).
_VALUES = [
    b"", b"nan", b"inf", b"-inf", b"-1", b"0", b"1.5", b"2.5", b"1e300", b"-1e300", b"1e309",
    b"99999999999999999999", b"18446744073709551616", b"2147483648", b"-0", b"1e-320",
    b"x", b"1@", b"@x", b"0@x.mrcs", b"1e300@x.mrcs", b"99999999999999999999@x.mrcs", b'""',
    b"\xff", b"a#b", b"'a b'", b"<NA>",
]
_INTS = [0, 1, -1, 2, 3, 4, 6, 12, 101, 401, 1024, 65536, 2 ** 31 - 1, -2 ** 31]
_FLOATS = [0.0, -1.0, float("nan"), float("inf"), 1e30, -1e30, 1e-30]
# Words of an MRC header that size or place the data: nx ny nz mode, mx my mz,
# cella.x, ispg, nsymbt, map, machst.
_HEADER_OFFSETS = [0, 4, 8, 12, 28, 32, 36, 40, 88, 92, 208, 212]
_ARRAY_VALUES = [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e38, 2.0 ** 32 + 5, 7.0, 0.5]
_ARRAY_BYTES = [b"", b"\xff\xfe", b"\x00x", b">", b"a b", b"\xc3"]

# Positions are fractions of the current length. Hypothesis favours small
# integers (and 0.0 among floats); an odd multiplier mod 2**20 is a bijection
# that keeps 0 (truncate to nothing, the first line) and spreads the rest.
_position = st.integers(0, 2 ** 20 - 1).map(lambda k: (k * 0x9E3779B1 % 2 ** 20) / 2 ** 20)
_WORD = st.one_of(st.sampled_from(_INTS).map(lambda v: struct.pack("<i", v)),
                  st.sampled_from(_FLOATS).map(lambda v: struct.pack("<f", v)))
MUTATION = st.one_of(
    st.tuples(st.just("truncate"), _position),           # at 0: the empty file
    st.tuples(st.just("delete_line"), _position),
    st.tuples(st.just("duplicate_line"), _position),
    st.tuples(st.just("swap_lines"), _position, _position),
    st.tuples(st.just("flip"), _position, st.integers(1, 255)),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete_bytes"), _position, st.integers(1, 16)),
    st.tuples(st.just("token"), _position,
              st.one_of(st.sampled_from(_REPLACEMENTS), st.binary(max_size=6))),
    st.tuples(st.just("word"), _position, _WORD),
    st.tuples(st.just("header_word"), st.sampled_from(_HEADER_OFFSETS), _WORD),
    st.tuples(st.just("value"), _position, _position,
              st.one_of(st.sampled_from(_VALUES), st.sampled_from(_REPLACEMENTS))),
    st.tuples(st.just("row_value"), _position, _position, st.sampled_from(_VALUES)),
    st.tuples(st.just("array_value"), _position, _position, _position,
              st.one_of(st.sampled_from(_ARRAY_VALUES), st.sampled_from(_ARRAY_BYTES))),
)
MUTATIONS = st.lists(MUTATION, min_size=1, max_size=4)


def _at(f: float, n: int) -> int:
    return min(int(f * n), max(n - 1, 0))


def mutate(data: bytes, mutations: list[tuple]) -> bytes:
    """Apply ``mutations`` (positions are fractions of the current length) in order."""
    for op, *args in mutations:
        data = _MUTATORS[op](data, *args)
    return data


def _lines(data: bytes, edit: Callable[[list[bytes]], None]) -> bytes:
    lines = data.split(b"\n")
    edit(lines)
    return b"\n".join(lines)


def _swap(lines: list[bytes], i: int, j: int) -> None:
    lines[i], lines[j] = lines[j], lines[i]


def _token(data: bytes, f: float, new: bytes) -> bytes:
    tokens = list(_TOKEN.finditer(data))
    if not tokens:
        return data
    m = tokens[_at(f, len(tokens))]
    return data[:m.start()] + new + data[m.end():]


def _word(data: bytes, f: float, new: bytes) -> bytes:
    # Word-aligned, and within the first 1024 bytes half of the time: MRC and
    # .npy headers are where a changed word changes the most.
    span = min(len(data), 1024) if int(f * 1e6) % 2 else len(data)
    i = 4 * _at(f, max(span // 4, 1))
    return data[:i] + new + data[i + 4:] if i + 4 <= len(data) else data


def _header_word(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + 4:] if offset + 4 <= len(data) else data


def _value(data: bytes, f: float, g: float, new: bytes) -> bytes:
    """Replace one whitespace-separated field of one line (a STAR value or label)."""
    lines = data.split(b"\n")
    k = _at(f, len(lines))
    fields = lines[k].split()
    if fields:
        fields[_at(g, len(fields))] = new
        lines[k] = b" ".join(fields)
    return b"\n".join(lines)


def _row_value(data: bytes, f: float, g: float, new: bytes) -> bytes:
    """Replace one value of one table row (a line of three or more fields)."""
    lines = data.split(b"\n")
    rows = [k for k, line in enumerate(lines) if len(line.split()) >= 3]
    if not rows:
        return data
    k = rows[_at(f, len(rows))]
    fields = lines[k].split()
    fields[_at(g, len(fields))] = new
    lines[k] = b" ".join(fields)
    return b"\n".join(lines)


def _array_value(data: bytes, f: float, g: float, h: float, new) -> bytes:
    """Set one element of one field of a .npy structured array (a no-op on anything else)."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception:  # noqa: BLE001 - not a .npy (any more): leave it
        return data
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None or arr.ndim != 1 \
            or len(arr) == 0:
        return data
    name = arr.dtype.names[_at(f, len(arr.dtype.names))]
    column = arr[name].reshape(len(arr), -1)
    kind = column.dtype.kind
    if (kind == "S") != isinstance(new, bytes) or kind not in "Sfiu" or column.shape[1] == 0:
        return data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # casting nan / 1e38 into integer fields
        column[_at(g, len(arr)), _at(h, column.shape[1])] = \
            new if kind == "S" else np.array(new).astype(column.dtype)
    arr[name] = column.reshape(arr[name].shape)
    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


_MUTATORS: dict[str, Callable[..., bytes]] = {
    "truncate": lambda d, f: d[:int(f * len(d))],
    "delete_line": lambda d, f: _lines(d, lambda ls: ls.pop(_at(f, len(ls)))),
    "duplicate_line": lambda d, f: _lines(d, lambda ls: ls.insert(_at(f, len(ls)),
                                                                  ls[_at(f, len(ls))])),
    "swap_lines": lambda d, f, g: _lines(d, lambda ls: _swap(ls, _at(f, len(ls)),
                                                             _at(g, len(ls)))),
    "flip": lambda d, f, mask: d[:_at(f, len(d))] + bytes([d[_at(f, len(d))] ^ mask])
    + d[_at(f, len(d)) + 1:] if d else d,
    "insert": lambda d, f, new: d[:int(f * len(d))] + new + d[int(f * len(d)):],
    "delete_bytes": lambda d, f, k: d[:int(f * len(d))] + d[int(f * len(d)) + k:],
    "token": _token,
    "word": _word,
    "header_word": _header_word,
    "value": _value,
    "row_value": _row_value,
    "array_value": _array_value,
}


# --- the property -----------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    """How one read ended: "ok", "input_error", or a failure kind with its detail."""

    kind: str
    detail: str = ""
    where: str = ""          # file:line of the innermost frame, for an unexpected exception

    @property
    def failed(self) -> bool:
        return self.kind not in ("ok", "input_error")


def message_problem(message: str, path: Path) -> str | None:
    """Why an InputError message is not one clear line about ``path`` (None if it is)."""
    if not message.isprintable():
        return "not one printable line"
    if path.name not in message:
        return "does not name the file"
    if len(message.replace(str(path.parent), "")) > 320:
        return f"{len(message)} characters long"
    return None


_ENGINE = str(Path(gmmrefine.__file__).resolve().parent)


def _frames(tb) -> str:
    """The innermost frame, after the innermost one in gmmrefine's own code."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if f.filename.startswith(_ENGINE)]
    shown = ([ours[-1]] if ours and ours[-1] is not frames[-1] else []) + [frames[-1]]
    return " > ".join(f"{Path(f.filename).name}:{f.lineno}" for f in shown)


def read_outcome(read: Callable[[Path], object], path: Path) -> Outcome:
    """Read ``path`` and classify how it ended."""
    stderr = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
        warnings.simplefilter("always")
        try:
            read(path)
            outcome = Outcome("ok")
        except InputError as err:
            problem = message_problem(str(err), path)
            outcome = Outcome("bad_message", f"{problem}: {err}") if problem \
                else Outcome("input_error", str(err))
        except Exception as err:  # noqa: BLE001 - what the property looks for
            outcome = Outcome("exception", f"{type(err).__name__}: {err}"[:300],
                              _frames(err.__traceback__))
    if not outcome.failed and caught:
        w = caught[0]
        outcome = Outcome("warning", f"{w.category.__name__}: {w.message}"[:300],
                          f"{Path(w.filename).name}:{w.lineno}")
    elif not outcome.failed and stderr.getvalue():
        outcome = Outcome("stderr", stderr.getvalue()[:300])
    return outcome


def run_mutated(name: str, seed: bytes, mutations: list[tuple], directory: Path) -> Outcome:
    """Write the mutated seed of target ``name`` into ``directory`` and read it."""
    target = TARGETS[name]
    path = directory / target.file_name
    path.write_bytes(mutate(seed, mutations))
    return read_outcome(target.read, path)

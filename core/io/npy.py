"""NumPy ``.npy`` arrays and ``.npz`` archives, read without trusting their headers.

``np.load`` meets a damaged header with errors that say nothing about the
file (tokenize.TokenError, UnicodeDecodeError, a UserWarning about Python 2,
advice to load with ``allow_pickle``), and a header that declares more data
than the file holds is found out only after the array is allocated. Here the
header is parsed on its own, checked against the bytes that are actually
there, and object arrays are refused outright: a ``.cs`` or GMM file never
holds Python objects, and unpickling a file runs code from it.
"""

from __future__ import annotations

import ast
import io
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError, quoted

MAGIC = b"\x93NUMPY"
# version -> (struct format of the header length, header text encoding)
_HEADER_FORMATS = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
# What a damaged zip archive raises from the standard library.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               ValueError, NotImplementedError, RuntimeError, struct.error)


def read_npy_file(path: Path, kind: str) -> np.ndarray:
    """The array a ``.npy`` file (a ``.cs`` file is one) holds.

    Parameters
    ----------
    path : the file.
    kind : what the file should be, for messages (".cs file").

    Raises
    ------
    InputError
        Not a .npy file, a damaged header, an object array, or fewer data
        bytes than the header declares.
    """
    size = path.stat().st_size
    with open(path, "rb") as fp:
        shape, fortran, dtype = read_npy_header(fp, size, str(path), kind)
        count = int(np.prod(shape, dtype=object))
        array = np.fromfile(fp, dtype=dtype, count=count) if count else np.zeros(0, dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def read_npy_bytes(data: bytes, where: str, kind: str) -> np.ndarray:
    """Like :func:`read_npy_file` for a ``.npy`` held in memory (an ``.npz`` member)."""
    fp = io.BytesIO(data)
    shape, fortran, dtype = read_npy_header(fp, len(data), where, kind)
    count = int(np.prod(shape, dtype=object))
    array = np.frombuffer(data, dtype=dtype, count=count, offset=fp.tell()).copy() if count \
        else np.zeros(0, dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def read_npz(path: Path, kind: str) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of an ``.npz`` archive, by name without ".npy"."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [(info.filename, archive.read(info)) for info in archive.infolist()
                       if info.filename.endswith(".npy")]
    except _ZIP_ERRORS as err:
        raise InputError(f"{path}: not a readable {kind} (damaged zip archive: "
                         f"{quoted(_first_line(err), 80)})") from None
    return {name[:-4]: read_npy_bytes(data, f"{path}: array {quoted(name[:-4])}", kind)
            for name, data in members}


def read_npy_header(fp: BinaryIO, size: int, where: str, kind: str
                    ) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a ``.npy`` header; ``fp`` is left at the data.

    Checks that the data the header declares fits in ``size`` bytes.
    """
    if fp.read(len(MAGIC)) != MAGIC:
        raise InputError(f"{where}: not a {kind}: it does not start with NumPy's .npy "
                         "signature (\\x93NUMPY)")
    head = fp.read(2)
    version = tuple(head)
    if version not in _HEADER_FORMATS:
        raise InputError(f"{where}: the .npy header is damaged (format version "
                         f"{'.'.join(map(str, version)) or 'missing'}); expected 1.0, 2.0 or 3.0")
    length_format, encoding = _HEADER_FORMATS[version]
    raw_length = fp.read(struct.calcsize(length_format))
    length = struct.unpack(length_format, raw_length)[0] \
        if len(raw_length) == struct.calcsize(length_format) else size
    offset = len(MAGIC) + 2 + len(raw_length) + length
    if offset > size:
        raise InputError(f"{where}: truncated: the .npy header says it is {length} bytes long, "
                         f"the file holds {size} bytes in all")
    shape, fortran, dtype = _parse_header(fp.read(length), encoding, where)
    count = int(np.prod(shape, dtype=object))
    need, have = count * dtype.itemsize, size - offset
    if have < need:
        held = f"{shape[0]} rows of {dtype.itemsize} bytes" if len(shape) == 1 and dtype.names \
            else f"a {dtype} array of shape {shape}"
        raise InputError(f"{where}: truncated: the header says {held} ({need} bytes after its "
                         f"{offset}-byte header); the file holds {have} bytes there")
    return shape, fortran, dtype


def _parse_header(text: bytes, encoding: str, where: str
                  ) -> tuple[tuple[int, ...], bool, np.dtype]:
    def damaged(reason: str) -> InputError:
        return InputError(f"{where}: the .npy header is damaged ({reason}); expected "
                          "{'descr': ..., 'fortran_order': ..., 'shape': ...}")

    try:
        with warnings.catch_warnings():
            # A damaged string literal ("\(") warns before it fails or parses.
            warnings.simplefilter("ignore")
            header = ast.literal_eval(text.decode(encoding))
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as err:
        raise damaged(f"{type(err).__name__}: {quoted(_first_line(err), 60)}") from None
    if not isinstance(header, dict):
        raise damaged(f"a {type(header).__name__}, not a dictionary")
    if set(header) != {"descr", "fortran_order", "shape"}:
        raise damaged(f"keys {quoted(sorted(map(str, header)), 60)}")
    shape, fortran = header["shape"], header["fortran_order"]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise damaged(f"shape {quoted(shape)}")
    if not isinstance(fortran, bool):
        raise damaged(f"fortran_order {quoted(fortran)}")
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    # numpy parses some descriptions itself (a SyntaxError from its literal_eval).
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError,
            SyntaxError) as err:
        raise damaged(f"descr {quoted(header['descr'])}: {quoted(_first_line(err), 60)}") \
            from None
    if dtype.hasobject:
        raise InputError(f"{where}: holds Python objects (dtype {quoted(str(dtype))}); expected "
                         "numbers and fixed-width text only, never pickled data")
    if dtype.itemsize == 0 and np.prod(shape, dtype=object) > 0:
        raise damaged(f"elements of dtype {quoted(str(dtype))} have no bytes")
    return shape, fortran, dtype


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


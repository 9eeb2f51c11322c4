"""MRC headers, read and checked against the file before mrcfile opens its data.

gmmrefine opens MRC files permissively, so headers that RELION 5 or
CryoSPARC write with small deviations still open. Permissive mrcfile only
warns about what it cannot read (printed on stderr), and leaves ``data`` as
None ("Error opening memmap") for a file shorter than its header says;
non-permissive mrcfile allocates the declared data block before finding
the file short. Here the 1024-byte header is read with numpy, the data it
declares is checked against the file's size, and only then does mrcfile
open the file, with its remaining warnings (map ID, machine stamp, a file
longer than its data) kept off the terminal.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from ..errors import InputError

# Real-valued modes mrcfile reads: int8, int16, float32, uint16, float16.
REAL_MODES = (0, 1, 2, 6, 12)
_COMPLEX_MODES = (3, 4)
_MRCFILE_MODES = (*REAL_MODES, 4)       # the modes mrcfile has a dtype for


@dataclasses.dataclass(frozen=True)
class MrcHeader:
    """What an MRC header declares, as mrcfile will read it."""

    nx: int
    ny: int
    nz: int
    mode: int
    voxel_A: float | None           # cella.x / mx, None where mx is 0 or the cell not finite
    voxel_text: str                 # how the header gives it, for messages


def read_mrc_header(path: Path, what: str, where: str = "") -> MrcHeader:
    """The header of ``path``, or InputError unless the file holds the data it declares.

    Parameters
    ----------
    path : the MRC file.
    what : "image stack" or "map", for messages.
    where : appended to messages (e.g. " (particle row 3 of x.star)").
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: file is empty; expected an MRC {what}{where}")
    if size < HEADER_DTYPE.itemsize:
        raise InputError(f"{path}: {size} bytes; expected an MRC {what}, which starts with a "
                         f"{HEADER_DTYPE.itemsize}-byte header{where}")
    with open(path, "rb") as f:
        raw = f.read(HEADER_DTYPE.itemsize)
    header = _decode(raw)
    is_mrc = bytes(header.map)[:3] == b"MAP"
    mode = int(header.mode)
    if mode not in REAL_MODES:
        kind = "complex values" if mode in _COMPLEX_MODES else "an unknown mode"
        lead = "not an MRC file (no 'MAP ' label) or" if not is_mrc else "MRC"
        raise InputError(f"{path}: {lead} mode {mode} ({kind}); expected a real-valued MRC "
                         f"{what} (mode 0, 1, 2, 6 or 12){where}")
    dims = {"nx": int(header.nx), "ny": int(header.ny), "nz": int(header.nz)}
    if mrcfile.utils.spacegroup_is_volume_stack(header.ispg):
        dims["mz"] = int(header.mz)
    bad = [f"{k} {v}" for k, v in dims.items() if v < 1]
    if bad or int(header.nsymbt) < 0:
        bad += [f"nsymbt {int(header.nsymbt)}"] if int(header.nsymbt) < 0 else []
        raise InputError(f"{path}: header has {', '.join(bad)}; expected sizes >= 1 (and nsymbt "
                         f">= 0) for an MRC {what}{where}")
    # mrcfile's own rules for the data block's shape and type, so both agree.
    shape = tuple(int(n) for n in mrcfile.utils.data_shape_from_header(header))
    itemsize = mrcfile.utils.data_dtype_from_header(header).itemsize
    need = HEADER_DTYPE.itemsize + int(header.nsymbt) \
        + int(np.prod(shape, dtype=object)) * itemsize
    if size < need:
        held = f"{dims['nz']} images of {dims['nx']} x {dims['ny']} px" if what == "image stack" \
            else f"{dims['nx']} x {dims['ny']} x {dims['nz']} voxels"
        lead = "truncated" if is_mrc else "not an MRC file (no 'MAP ' label) or truncated"
        raise InputError(f"{path}: {lead}: the header says {held} (mode {mode}), {need} bytes "
                         f"with its header; the file holds {size} bytes{where}")
    mx, cell_x = int(header.mx), float(header.cella.x)
    voxel = cell_x / mx if mx > 0 and np.isfinite(cell_x) else None
    return MrcHeader(dims["nx"], dims["ny"], dims["nz"], mode, voxel,
                     f"cell {cell_x:g} A over MX {mx}")


def open_mrc(path: Path, what: str, where: str = "", mmap: bool = False):
    """Open an MRC file whose header :func:`read_mrc_header` accepts (read-only).

    Returns mrcfile's object (memory-mapped with ``mmap``; the caller closes
    it) and the header.
    """
    header = read_mrc_header(path, what, where)
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():
            # Deviations the header check above has judged harmless.
            warnings.simplefilter("ignore")
            mrc = opener(path, mode="r", permissive=True)
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable MRC {what} ({err}){where}") from None
    if mrc.data is None:
        mrc.close()
        raise InputError(f"{path}: no data block mrcfile can read; expected an MRC {what}{where}")
    return mrc, header


def _decode(raw: bytes) -> np.recarray:
    """The header record in the byte order mrcfile will choose (its permissive rules)."""
    stamp = raw[212:214]
    order = ">" if stamp == b"\x11\x11" else "<"
    header = np.frombuffer(raw, HEADER_DTYPE.newbyteorder(order)).reshape(()).view(np.recarray)
    if int(header.mode) not in _MRCFILE_MODES:
        # A machine stamp that contradicts the byte order: mrcfile tries the other one.
        other = ">" if order == "<" else "<"
        flipped = np.frombuffer(raw, HEADER_DTYPE.newbyteorder(other)).reshape(()) \
            .view(np.recarray)
        if int(flipped.mode) in _MRCFILE_MODES:
            return flipped
    return header

"""Particle images from MRC stacks, read in file order.

Each stack's header is read through mrcfile's memory map (permissive, so
headers that RELION 5 or CryoSPARC write with small deviations still open;
float16 mode 12 included, which RELION 3.1 itself cannot read), after
:mod:`.mrc_header` has checked that the file holds the images its header
declares. The pixels are then read with plain file reads, one per run of
consecutive frames, as RELION's fread does: pages touched through a memory map
stay in the process's resident memory until the map closes, so a run through
one 3 GB stack would hold 3 GB; read into buffers, memory stays at one
chunk's images whatever the stack's size. A bounded number of files stay
open, so a dataset spread over thousands of micrograph stacks never exhausts
file handles. A 2D ``.mrc`` holding one image counts as a stack of one.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from ..errors import InputError
from .mrc_header import open_mrc


@dataclass
class _Stack:
    """An open stack: its file, where its pixels start, their type and the frames' shape."""

    file: BinaryIO          # unbuffered: a read sees the file as it is now
    offset: int
    dtype: np.dtype
    n_frames: int
    shape: tuple[int, int]

    def read(self, frames: np.ndarray) -> np.ndarray:
        """Frames ``frames`` (increasing) as stored, one read per run of consecutive ones,
        straight into the array returned."""
        frame_bytes = self.dtype.itemsize * self.shape[0] * self.shape[1]
        out = np.empty((len(frames),) + self.shape, self.dtype)
        starts = np.flatnonzero(np.diff(frames, prepend=-2) != 1)
        for lo, hi in zip(starts, [*starts[1:], len(frames)]):
            self.file.seek(self.offset + int(frames[lo]) * frame_bytes)
            target = memoryview(out[lo:hi].reshape(-1).view(np.uint8))
            done = 0
            while done < len(target):
                got = self.file.readinto(target[done:])
                if not got:         # the file shrank after it was opened
                    raise InputError(f"{self.file.name}: truncated while reading image "
                                     f"{int(frames[lo]) + 1}; expected {self.n_frames} images "
                                     f"of {self.shape[1]}x{self.shape[0]} px")
                done += got
        return out

    def close(self) -> None:
        self.file.close()


class StackReader:
    """Read particle images by (stack path, 0-based index).

    Parameters
    ----------
    root
        Directory that relative stack paths resolve against (the RELION
        project directory, or the folder of a .cs file); None means the
        current working directory, as RELION itself does.
    source
        The particle file (STAR / .cs) the paths come from; named in errors.
    max_open
        How many stack files stay open at once (least recently used ones are
        closed first).
    """

    def __init__(self, root: Path | None = None, *, source: Path | None = None,
                 max_open: int = 64):
        self.root = None if root is None else Path(root)
        self.source = None if source is None else Path(source)
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[Path, _Stack] = OrderedDict()

    # --- public -------------------------------------------------------------------
    def resolve(self, path: str | os.PathLike) -> Path:
        """The file a stack path names: absolute as given, else under ``root``."""
        p = Path(path)
        return p if p.is_absolute() or self.root is None else self.root / p

    def read(self, paths: Sequence[str], indices: np.ndarray, *, rows: np.ndarray | None = None,
             expected_box: int | None = None) -> np.ndarray:
        """Images ``paths[i]``, frame ``indices[i]``, as a float32 array (n, B, B).

        Parameters
        ----------
        paths
            Stack path of each image, as the particle file names it.
        indices
            0-based frame index of each image within its stack.
        rows
            Row number (0-based) of each image in the particle file, used only
            to name the offending row in error messages; defaults to 0..n-1.
        expected_box
            Box size the optics table declares; a stack of another size is an
            InputError rather than a silent reshape downstream.

        Returns
        -------
        np.ndarray
            float32 images in the order asked for.
        """
        indices = np.asarray(indices, np.int64).reshape(-1)
        paths = np.asarray(paths, dtype=object).reshape(-1)
        if len(paths) != len(indices):
            raise ValueError(f"{len(paths)} paths but {len(indices)} indices")
        rows = np.arange(len(indices)) if rows is None else np.asarray(rows).reshape(-1)
        if len(indices) == 0:
            box = 0 if expected_box is None else int(expected_box)
            return np.zeros((0, box, box), np.float32)
        # One pass per file, frames in increasing order: a read per run of
        # consecutive frames instead of one seek per particle.
        unique_paths, which = np.unique(paths.astype(str), return_inverse=True)
        out: np.ndarray | None = None
        for f, name in enumerate(unique_paths):
            sel = np.flatnonzero(which == f)
            sel = sel[np.argsort(indices[sel], kind="stable")]
            block = self._read_frames(name, indices[sel], rows[sel], expected_box)
            if out is None:
                out = np.empty((len(indices),) + block.shape[1:], np.float32)
            elif block.shape[1:] != out.shape[1:]:
                raise InputError(
                    f"{self.resolve(name)}: images are {block.shape[2]}x{block.shape[1]} px but "
                    f"{self.resolve(unique_paths[0])} has {out.shape[2]}x{out.shape[1]}; "
                    "expected one box size for all stacks")
            out[sel] = block
        return out

    def close(self) -> None:
        """Close every open stack."""
        while self._open:
            _, stack = self._open.popitem(last=False)
            stack.close()

    def __enter__(self) -> "StackReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- detail -------------------------------------------------------------------
    def _where(self, row: int) -> str:
        src = f" of {self.source}" if self.source is not None else ""
        return f" (particle row {int(row) + 1}{src})"

    def _stack(self, name: str, row: int) -> _Stack:
        path = self.resolve(name)
        stack = self._open.get(path)
        if stack is not None:
            self._open.move_to_end(path)
            return stack
        if not path.is_file():
            raise InputError(f"{path}: particle stack not found{self._where(row)}; "
                             "expected an MRC stack at that path (relative paths resolve against "
                             f"{self.root if self.root is not None else 'the working directory'})")
        mrc, _ = open_mrc(path, "image stack", self._where(row), mmap=True)
        try:
            data = mrc.data
            if data.ndim not in (2, 3):
                raise InputError(f"{path}: a stack of {data.shape[0]} volume"
                                 f"{'s' * (data.shape[0] != 1)}; expected an MRC stack of 2D "
                                 f"images{self._where(row)}")
            frames = 1 if data.ndim == 2 else data.shape[0]
            stack = _Stack(open(path, "rb", buffering=0), int(data.offset), data.dtype, frames,
                           tuple(data.shape[-2:]))
        finally:
            mrc.close()
        self._open[path] = stack
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return stack

    def _read_frames(self, name: str, frames: np.ndarray, rows: np.ndarray,
                     expected_box: int | None) -> np.ndarray:
        path = self.resolve(name)
        stack = self._stack(name, int(np.min(rows)))
        n_frames, (ny, nx) = stack.n_frames, stack.shape
        if expected_box is not None and (ny != expected_box or nx != expected_box):
            raise InputError(f"{path}: images are {nx}x{ny} px but the optics table says box "
                             f"{expected_box}{self._where(rows[0])}; expected matching sizes")
        bad = np.flatnonzero((frames < 0) | (frames >= n_frames))
        if len(bad):
            i = bad[0]
            raise InputError(f"{path}: image index {frames[i] + 1} (1-based) is past the end of this "
                             f"stack of {n_frames} images{self._where(rows[i])}")
        # Each frame read once, however many particles share it (symmetry expansion).
        unique, inverse = np.unique(frames, return_inverse=True)
        block = stack.read(unique).astype(np.float32, copy=False)[inverse]
        finite = np.isfinite(block).all(axis=(1, 2))
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise InputError(f"{path}: image {frames[i] + 1} (1-based) contains NaN or inf pixels"
                             f"{self._where(rows[i])}; expected finite values")
        return block

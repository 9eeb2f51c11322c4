"""MRC maps through mrcfile: voxel size in the header, origin at the box centre."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import mrcfile
import numpy as np

from ..errors import InputError
from .atomic import atomic_path
from .mrc_header import open_mrc

# relion_postprocess accepts masks up to this far outside [0, 1].
MASK_RANGE_TOLERANCE = 1e-6


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a cubic 3D map; returns (float32 array indexed [z, y, x], voxel size in A)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: map file not found")
    mrc, header = open_mrc(path, "map")
    voxel = header.voxel_A
    with mrc:
        data = np.asarray(mrc.data, dtype=np.float32).copy()
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise InputError(f"{path}: map shape {data.shape}; expected a cubic 3D map")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: map contains NaN or inf values; expected finite densities")
    if voxel is None or not 0 < voxel < np.inf:
        raise InputError(f"{path}: no voxel size in the header ({header.voxel_text}); "
                         "expected a positive value in A")
    return data, float(voxel)


def read_half_maps(half1: str | os.PathLike, half2: str | os.PathLike
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """Two half maps and their voxel size; InputError unless boxes and voxel sizes agree."""
    map1, apix1 = read_map(half1)
    map2, apix2 = read_map(half2)
    if map1.shape != map2.shape:
        raise InputError(f"{half1}, {half2}: half maps have boxes {map1.shape[0]} and "
                         f"{map2.shape[0]}; expected the same box")
    if abs(apix1 - apix2) > 1e-3 * max(apix1, apix2):
        raise InputError(f"{half1}, {half2}: half maps have voxel sizes {apix1:.4f} and "
                         f"{apix2:.4f} A; expected the same voxel size")
    return map1, map2, apix1


def write_map(path: str | os.PathLike, data: np.ndarray, apix: float) -> None:
    """Write a 3D map as float32 MRC with the voxel size set, through a temporary file."""
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
            mrc.voxel_size = float(apix)
            mrc.update_header_stats()


def write_stack(path: str | os.PathLike, images: np.ndarray, apix: float) -> None:
    """Write an image stack (.mrcs, float32, mode 2) through a temporary file."""
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(images, dtype=np.float32))
            mrc.set_image_stack()
            mrc.voxel_size = float(apix)
            mrc.update_header_stats()


@contextlib.contextmanager
def new_stack(path: str | os.PathLike, n_images: int, box: int, apix: float
              ) -> Iterator[np.ndarray]:
    """A float32 stack of ``n_images`` images of ``box`` x ``box`` px, memory-mapped on disk
    under a temporary name, to be filled in the block; moved onto ``path`` when the block
    ends without an error.

    Nothing holds the stack in memory: a simulated set of 10^5 particles is
    written chunk by chunk, as a detector's would be.
    """
    with atomic_path(path) as tmp:
        mrc = mrcfile.new_mmap(tmp, shape=(int(n_images), int(box), int(box)), mrc_mode=2,
                               overwrite=True)
        try:
            mrc.set_image_stack()
            mrc.voxel_size = float(apix)
            yield mrc.data
            _set_header_stats(mrc, mrc.data)
        finally:
            mrc.close()


def _set_header_stats(mrc, data: np.ndarray, chunk: int = 1024) -> None:
    """The header's min, max, mean and rms, as mrcfile's update_header_stats sets them but
    a chunk of images at a time: its whole-array std would copy a 3 GB stack twice."""
    if data.size == 0:
        mrc.reset_header_stats()
        return
    low, high, total, total_sq = np.inf, -np.inf, 0.0, 0.0
    for start in range(0, len(data), chunk):
        part = np.asarray(data[start:start + chunk], dtype=np.float64)
        low, high = min(low, float(part.min())), max(high, float(part.max()))
        total += float(part.sum())
        total_sq += float(np.square(part).sum())
    mean = total / data.size
    header = mrc.header
    header.dmin, header.dmax, header.dmean = low, high, mean
    header.rms = np.sqrt(max(total_sq / data.size - mean * mean, 0.0))


def read_mask(path: str | os.PathLike, expected_box: int, apix: float) -> np.ndarray:
    """Read a mask map and check it fits the maps it will be applied to.

    Parameters
    ----------
    path : path-like
        MRC file.
    expected_box : int
        Box of the half maps.
    apix : float
        Voxel size of the half maps, in Angstrom; the mask's header must agree
        within 1%.

    Returns
    -------
    (B, B, B) float32 array clipped to [0, 1] (values may lie up to 1e-6
    outside, as relion_postprocess allows).

    Raises
    ------
    InputError
        One line naming the file when the box, voxel size or values are wrong.
    """
    mask, mask_apix = read_map(path)
    if mask.shape[0] != expected_box:
        raise InputError(f"{path}: mask box {mask.shape[0]}; expected {expected_box} like the half maps")
    if abs(mask_apix - apix) > 0.01 * apix:
        raise InputError(f"{path}: mask voxel size {mask_apix:.4f} A; expected {apix:.4f} A like the half maps")
    lo, hi = float(mask.min()), float(mask.max())
    if lo < -MASK_RANGE_TOLERANCE or hi > 1 + MASK_RANGE_TOLERANCE:
        raise InputError(f"{path}: mask values range from {lo:.4g} to {hi:.4g}; expected values in [0, 1]")
    if hi <= 0:
        raise InputError(f"{path}: mask is empty (all values 0); expected a region with values up to 1")
    return np.clip(mask, 0.0, 1.0)


def write_local_resolution(path_mrc: str | os.PathLike, locres: np.ndarray, apix: float) -> None:
    """Write a local-resolution map (Angstrom per voxel) as MRC with its voxel size."""
    write_map(path_mrc, locres, apix)

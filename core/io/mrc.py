"""MRC maps through mrcfile: voxel size in the header, origin at the box centre."""

from __future__ import annotations

import os
from pathlib import Path

import mrcfile
import numpy as np

from ..errors import InputError
from .atomic import atomic_path


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a cubic 3D map; returns (float32 array indexed [z, y, x], voxel size in A)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: map file not found")
    try:
        with mrcfile.open(path, permissive=True) as mrc:
            if mrc.data is None:
                raise InputError(f"{path}: not a readable MRC file (no data block)")
            data = np.asarray(mrc.data, dtype=np.float32).copy()
            apix = float(mrc.voxel_size.x)
    except ValueError as err:
        raise InputError(f"{path}: not a readable MRC file ({err})") from None
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise InputError(f"{path}: map shape {data.shape}; expected a cubic 3D map")
    if not np.all(np.isfinite(data)):
        raise InputError(f"{path}: map contains NaN or inf values; expected finite densities")
    if apix <= 0:
        raise InputError(f"{path}: voxel size {apix} in the header; expected a positive value in A")
    return data, apix


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

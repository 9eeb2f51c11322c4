"""Mask files: a valid mask read untouched, bad ones refused in one line."""

from __future__ import annotations

import io

import mrcfile
import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.fourier import masks
from gmmrefine.io.mrc import new_stack, read_mask, write_map


def test_read_mask_accepts_a_valid_mask_and_leaves_the_file_alone(tmp_path):
    m = masks.soft_sphere(24, (0, 0, 0), 6, 3)
    path = tmp_path / "mask.mrc"
    write_map(path, m, 1.5)
    raw = path.read_bytes()
    np.testing.assert_array_equal(read_mask(path, 24, 1.5), m)
    assert path.read_bytes() == raw


@pytest.mark.parametrize("data, apix, box, message", [
    (np.ones((20,) * 3), 1.5, 24, "box 20; expected 24"),
    (np.ones((24,) * 3), 3.0, 24, "voxel size 3.0000 A; expected 1.5000"),
    (np.full((24,) * 3, 1.2), 1.5, 24, "expected values in \\[0, 1\\]"),
    (np.full((24,) * 3, -0.1), 1.5, 24, "expected values in \\[0, 1\\]"),
    (np.zeros((24,) * 3), 1.5, 24, "empty"),
])
def test_read_mask_rejects_with_one_line_naming_the_file(tmp_path, data, apix, box, message):
    path = tmp_path / "bad_mask.mrc"
    write_map(path, data, apix)
    with pytest.raises(InputError, match=message) as err:
        read_mask(path, box, 1.5)
    text = str(err.value)
    assert str(path) in text and "\n" not in text


def test_read_mask_names_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="absent.mrc"):
        read_mask(tmp_path / "absent.mrc", 24, 1.5)


def test_a_stack_filled_on_disk_has_the_header_mrcfile_would_write(tmp_path):
    # The statistics are summed a chunk at a time (chunk 1024 here: three chunks).
    images = (np.random.default_rng(2).normal(size=(2500, 8, 8)) * 3 + 1).astype(np.float32)
    with new_stack(tmp_path / "s.mrcs", 2500, 8, 1.5) as stack:
        assert not (tmp_path / "s.mrcs").exists()         # under a temporary name until done
        stack[:] = images
    with mrcfile.new(tmp_path / "ref.mrcs") as mrc:
        mrc.set_data(images)
        mrc.update_header_stats()
    with mrcfile.open(tmp_path / "s.mrcs") as got, mrcfile.open(tmp_path / "ref.mrcs") as ref:
        np.testing.assert_array_equal(got.data, images)
        assert got.is_image_stack() and float(got.voxel_size.x) == pytest.approx(1.5)
        for name in ("dmin", "dmax", "dmean", "rms"):
            assert float(got.header[name]) == pytest.approx(float(ref.header[name]), rel=1e-6)
    assert mrcfile.validate(tmp_path / "s.mrcs", print_file=io.StringIO())

"""StackReader: reading order, float16, a bounded cache, errors."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.io.mrc import write_stack
from gmmrefine.io.stack import StackReader

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _stacks(tmp_path: Path, rng: np.random.Generator, box: int = 16):
    a = rng.normal(size=(5, box, box)).astype(np.float32)
    b = rng.normal(size=(3, box, box)).astype(np.float32)
    write_stack(tmp_path / "a.mrcs", a, 1.5)
    (tmp_path / "sub").mkdir()
    write_stack(tmp_path / "sub" / "b.mrcs", b, 1.5)
    return a, b


def test_read_returns_requested_order_across_files(tmp_path):
    a, b = _stacks(tmp_path, np.random.default_rng(0))
    paths = ["sub/b.mrcs", "a.mrcs", "a.mrcs", "sub/b.mrcs", "a.mrcs"]
    idx = np.array([2, 4, 0, 0, 4])
    with StackReader(tmp_path) as reader:
        got = reader.read(paths, idx)
    want = np.stack([b[2], a[4], a[0], b[0], a[4]])
    np.testing.assert_array_equal(got, want)


def test_float16_stack_and_single_2d_image(tmp_path):
    img = np.random.default_rng(1).normal(size=(4, 8, 8)).astype(np.float16)
    with mrcfile.new(tmp_path / "h.mrcs") as mrc:
        mrc.set_data(img)
        mrc.set_image_stack()
    with mrcfile.new(tmp_path / "one.mrc") as mrc:
        mrc.set_data(img[1].astype(np.float32))
    reader = StackReader(tmp_path)
    got = reader.read(["h.mrcs", "one.mrc"], np.array([3, 0]))
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[0], img[3].astype(np.float32))
    np.testing.assert_array_equal(got[1], img[1].astype(np.float32))
    with pytest.raises(InputError, match="past the end of this stack of 1 images"):
        reader.read(["one.mrc"], np.array([1]))     # a 2D file is a stack of one


def test_cache_stays_bounded(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(5):
        write_stack(tmp_path / f"s{i}.mrcs", rng.normal(size=(2, 4, 4)), 1.0)
    reader = StackReader(tmp_path, max_open=2)
    got = reader.read([f"s{i}.mrcs" for i in range(5)], np.ones(5, int))
    assert got.shape == (5, 4, 4) and len(reader._open) <= 2


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("case, words", [
    ("missing", ["nothere.mrcs", "not found", "row 2", "parts.star"]),
    ("past_end", ["a.mrcs", "index 6", "5 images", "row 2"]),
    ("box", ["a.mrcs", "16x16", "box 32"]),
    ("nan", ["bad.mrcs", "image 2", "NaN"]),
])
def test_errors_are_one_line_and_name_the_place(tmp_path, case, words):
    _stacks(tmp_path, np.random.default_rng(3))
    bad = np.zeros((3, 16, 16), np.float32)
    bad[1, 3, 3] = np.nan
    write_stack(tmp_path / "bad.mrcs", bad, 1.0)
    reader = StackReader(tmp_path, source=tmp_path / "parts.star")
    paths, idx, box = {"missing": (["a.mrcs", "nothere.mrcs"], [0, 0], None),
                       "past_end": (["a.mrcs", "a.mrcs"], [0, 5], None),
                       "box": (["a.mrcs"], [0], 32),
                       "nan": (["bad.mrcs"], [1], None)}[case]
    with pytest.raises(InputError) as err:
        reader.read(paths, np.array(idx), expected_box=box)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_reads_real_betagal_float16_stack():
    stacks = SHARED / "realdata" / "betagal" / "stacks"
    if not stacks.is_dir():
        pytest.skip("../shared/realdata is absent")
    name = sorted(p.name for p in stacks.glob("*.mrcs"))[0]
    reader = StackReader(stacks)
    with mrcfile.open(stacks / name, header_only=True, permissive=True) as mrc:
        n = int(mrc.header.nz)
    got = reader.read([name] * 3, np.array([0, n - 1, 1]), expected_box=64)
    assert got.shape == (3, 64, 64) and got.dtype == np.float32 and np.all(np.isfinite(got))
    # Each image is normalised to background mean 0, sd 1 (PROVENANCE.md).
    assert 0.3 < got.std() < 3.0


@pytest.mark.parametrize("dtype", [">i2", "<i2", "<f4", ">f4", "<u2", "i1"])
def test_frames_in_any_order_and_byte_order_read_as_mrcfile_reads_them(tmp_path, dtype):
    # Runs of consecutive frames are read in one piece; repeats, gaps and any order
    # must still give each particle its own frame, whatever the file's type.
    rng = np.random.default_rng(5)
    data = (rng.normal(size=(12, 6, 10)) * 20).astype(np.dtype(dtype))
    with mrcfile.new(tmp_path / "s.mrcs") as mrc:
        mrc.set_data(data)
        mrc.set_image_stack()
    frames = np.array([11, 3, 4, 5, 5, 0, 7, 6, 11, 1, 2, 3])
    with StackReader(tmp_path) as reader:
        got = reader.read(["s.mrcs"] * len(frames), frames)
    with mrcfile.open(tmp_path / "s.mrcs") as mrc:
        want = np.asarray(mrc.data[frames], np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_a_stack_cut_short_after_opening_is_one_line(tmp_path):
    write_stack(tmp_path / "s.mrcs", np.ones((6, 8, 8), np.float32), 1.0)
    with StackReader(tmp_path) as reader:
        reader.read(["s.mrcs"], np.array([0]))
        with open(tmp_path / "s.mrcs", "r+b") as f:       # another process truncates it
            f.truncate(1024 + 3 * 8 * 8 * 4)
        with pytest.raises(InputError, match=r"s\.mrcs: truncated while reading image 5"):
            reader.read(["s.mrcs"], np.array([4]))

"""`gmmrefine fsc` end to end on small maps it writes itself."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.fourier import masks
from gmmrefine.fourier.grids import fftnc, ifftnc, radius_grid
from gmmrefine.io.mrc import read_map, write_map
from gmmrefine.reconstruct import fsc

BOX, APIX = 32, 2.0


def half_maps(box: int = BOX, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two halves: a shared band-limited particle plus independent noise."""
    rng = np.random.default_rng(seed)
    envelope = np.exp(-(radius_grid(box, 3) / 6.0) ** 2)
    signal = ifftnc(fftnc(rng.standard_normal((box,) * 3)) * envelope) * 10
    signal *= masks.soft_sphere(box, (0, 0, 0), box / 4, 3)
    noisy = [signal + 0.2 * rng.standard_normal(signal.shape) for _ in range(2)]
    return noisy[0].astype(np.float32), noisy[1].astype(np.float32)


@pytest.fixture
def maps(tmp_path):
    h1, h2 = half_maps()
    write_map(tmp_path / "half1.mrc", h1, APIX)
    write_map(tmp_path / "half2.mrc", h2, APIX)
    write_map(tmp_path / "mask.mrc", masks.soft_sphere(BOX, (0, 0, 0), BOX / 4 + 2, 4), APIX)
    return tmp_path


def read_halves(directory) -> tuple[np.ndarray, np.ndarray]:
    return read_map(directory / "half1.mrc")[0], read_map(directory / "half2.mrc")[0]


def printed_A(output: str, label: str) -> float:
    return float(re.search(rf"^{label} \(FSC = 0.143\): ([0-9.]+) A$", output, re.M).group(1))


def test_fsc_without_mask_writes_csv_and_png(maps):
    out = maps / "result"
    run = CliRunner().invoke(cli, ["fsc", str(maps / "half1.mrc"), str(maps / "half2.mrc"), "--out", str(out)])
    assert run.exit_code == 0, run.output
    table = pd.read_csv(maps / "result.csv")
    assert list(table.columns) == ["shell", "resolution_A", "fsc"]
    assert len(table) == BOX // 2 + 1
    # Recomputed from the maps given, not read back from what the command wrote.
    curve = fsc.fsc_curve(*read_halves(maps))
    np.testing.assert_allclose(table["fsc"], curve, atol=1e-5)
    expected = fsc.resolution_at(curve, BOX, APIX)
    assert printed_A(run.stdout, "resolution") == pytest.approx(expected, abs=0.005)
    assert 2 * APIX < expected < BOX * APIX / 2             # a real crossing, not a default
    assert (maps / "result.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fsc_with_mask_reports_all_curves(maps):
    out_dir = maps / "fscdir"
    run = CliRunner().invoke(cli, ["fsc", str(maps / "half1.mrc"), str(maps / "half2.mrc"),
                                   "--mask", str(maps / "mask.mrc"), "--out-dir", str(out_dir)])
    assert run.exit_code == 0, run.output
    table = pd.read_csv(out_dir / "fsc.csv")
    assert list(table.columns) == ["shell", "resolution_A", "fsc", "fsc_unmasked", "fsc_masked",
                                   "fsc_randomised", "fsc_corrected"]
    np.testing.assert_array_equal(table["fsc"], table["fsc_corrected"])
    # Recomputed from the maps given, not read back from what the command wrote.
    h1, h2 = read_halves(maps)
    mask = read_map(maps / "mask.mrc")[0]
    result = fsc.masked_fsc_corrected(h1, h2, mask, APIX, seed=0)    # the command's default seed
    for label, column, curve in (("corrected resolution", "fsc_corrected", result.corrected),
                                 ("unmasked resolution", "fsc_unmasked", result.unmasked),
                                 ("masked resolution", "fsc_masked", result.masked)):
        np.testing.assert_allclose(table[column], curve, atol=1e-5, err_msg=column)
        expected = fsc.resolution_at(curve, BOX, APIX)
        assert printed_A(run.stdout, label) == pytest.approx(expected, abs=0.005), label
    shell = int(re.search(r"phase randomisation from: [0-9.]+ A \(shell (\d+)\)", run.stdout).group(1))
    assert table["fsc_unmasked"][shell] < 0.8 <= table["fsc_unmasked"][1:shell].min()
    assert (out_dir / "fsc.png").stat().st_size > 10_000


def test_mismatched_boxes_fail_with_one_line_and_write_nothing(maps):
    write_map(maps / "small.mrc", half_maps(box=24)[0], APIX)
    out_dir = maps / "never"
    run = CliRunner().invoke(cli, ["fsc", str(maps / "half1.mrc"), str(maps / "small.mrc"),
                                   "--out-dir", str(out_dir)])
    assert run.exit_code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "half1.mrc" in lines[0] and "small.mrc" in lines[0]
    assert "box" in lines[0]
    assert not out_dir.exists()


def test_mismatched_voxel_size_or_mask_box_fail_cleanly(maps):
    h1, _ = half_maps()
    write_map(maps / "coarse.mrc", h1, 2 * APIX)
    write_map(maps / "small_mask.mrc", np.ones((24,) * 3), APIX)
    runner = CliRunner()
    run = runner.invoke(cli, ["fsc", str(maps / "half1.mrc"), str(maps / "coarse.mrc"), "--out", str(maps / "a")])
    assert run.exit_code == 2 and "voxel size" in run.stderr and "coarse.mrc" in run.stderr
    run = runner.invoke(cli, ["fsc", str(maps / "half1.mrc"), str(maps / "half2.mrc"),
                              "--mask", str(maps / "small_mask.mrc"), "--out", str(maps / "b")])
    assert run.exit_code == 2 and "small_mask.mrc" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not list(maps.glob("a.*")) and not list(maps.glob("b.*"))


def test_identical_halves_with_a_mask_are_refused(maps):
    run = CliRunner().invoke(cli, ["fsc", str(maps / "half1.mrc"), str(maps / "half1.mrc"),
                                   "--mask", str(maps / "mask.mrc"), "--out", str(maps / "same")])
    assert run.exit_code == 2 and "never drops below 0.8" in run.stderr
    assert not list(maps.glob("same.*"))

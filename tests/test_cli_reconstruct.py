"""`gmmrefine reconstruct` end to end: maps and FSC written, --sym, errors leave nothing."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.errors import InputError
from gmmrefine.io.mrc import read_map, write_stack
from gmmrefine.io.particles import write_particles
from gmmrefine.reconstruct.symmetry import symmetrize_map
from helpers_reconstruct import blob_volume, relative_errors, write_blob_dataset
from helpers_symmetry import images_of_blobs, random_particles, symmetric_blobs


def test_cli_writes_maps_and_fsc(tmp_path):
    from gmmrefine.cli.main import cli

    star = write_blob_dataset(tmp_path, 300, np.random.default_rng(4), split=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reconstruct", str(star), "--out", str(out), "--chunk", "100"])
    assert result.exit_code == 0, result.output
    assert "alternating rows" in result.output and "0.143" in result.output
    for name in ("half1.mrc", "half2.mrc", "map.mrc", "fsc.csv", "fsc.png"):
        assert (out / name).is_file()
    full, apix = read_map(out / "map.mrc")
    assert apix == pytest.approx(2.0)
    assert relative_errors(full, blob_volume())[1] < 0.12
    res = float(result.output.split("(FSC 0.143):")[1].split("A")[0])
    # Blobs of sigma 2 px have little power past ~8 A; Nyquist is 4 A.
    assert 4.0 <= res < 10.0


def test_cli_errors_leave_no_output(tmp_path):
    from gmmrefine.cli.main import cli

    star = write_blob_dataset(tmp_path, 20, np.random.default_rng(5))
    text = star.read_text().replace("000020@parts.mrcs", "000021@parts.mrcs")
    star.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reconstruct", str(star), "--out", str(out)])
    assert result.exit_code == 2
    assert "past the end" in result.output and "row 20" in result.output
    assert not out.exists()


def test_cli_refuses_a_degenerate_split(tmp_path):
    from gmmrefine.cli.main import cli

    star = write_blob_dataset(tmp_path, 10, np.random.default_rng(6))
    lines = star.read_text().splitlines()
    star.write_text("\n".join(l[:-1] + "1" if "@parts.mrcs" in l else l for l in lines) + "\n")
    result = CliRunner().invoke(cli, ["reconstruct", str(star), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "10 particles in half 1 and 0 in half 2" in result.output
    assert not (tmp_path / "out").exists()


def test_reconstruct_command_takes_sym(tmp_path):
    from gmmrefine.cli.reconstruct import main

    box, apix, n = 24, 2.0, 60
    rng = np.random.default_rng(10)
    ps = random_particles(n, box, apix, rng)
    write_stack(tmp_path / "parts.mrcs", images_of_blobs(symmetric_blobs("D2", box, rng), ps),
                apix)
    write_particles(ps, tmp_path / "parts.star")
    result = CliRunner().invoke(main, [str(tmp_path / "parts.star"), "--out", str(tmp_path / "o"),
                                       "--sym", "D2", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "symmetry D2 (4 operators)" in result.output
    full, _ = read_map(tmp_path / "o" / "map.mrc")
    # Index 0 of an even box has no mirror partner about B // 2: compare the rest.
    diff = (symmetrize_map(full, "D2") - full)[1:, 1:, 1:]
    assert np.abs(diff).max() < 1e-4 * np.abs(full).max()
    bad = CliRunner().invoke(main, [str(tmp_path / "parts.star"), "--out", str(tmp_path / "b"),
                                    "--sym", "C-3"])
    assert isinstance(bad.exception, InputError) and not (tmp_path / "b").exists()

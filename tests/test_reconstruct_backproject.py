"""Direct Fourier inversion against analytic projections of Gaussian blobs,
chunk additivity, half separation and the `gmmrefine reconstruct` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.data.ctf import particle_ctfs
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.data.rotations import matrix_to_euler, random_rotations
from gmmrefine.fourier.grids import fft2c
from gmmrefine.io.mrc import read_map, write_stack
from gmmrefine.io.stack import StackReader
from gmmrefine.reconstruct.backproject import (
    FourierSums,
    finalize,
    insert_slices,
    reconstruct_halves,
)
from gmmrefine.report.progress import Progress

BOX = 32
SIGMA_PX = 2.0
CENTRES_PX = np.array([[5.0, -3.0, 2.0], [-6.0, 4.0, -1.0], [0.0, 0.0, 7.0]])
AMPLITUDES = np.array([1.0, 0.7, 0.5])


def blob_volume(box: int = BOX) -> np.ndarray:
    x = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    return sum(a * np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2)
                          / (2 * SIGMA_PX ** 2)) for a, c in zip(AMPLITUDES, CENTRES_PX))


def blob_projections(rotation: np.ndarray, shift_px: np.ndarray | None = None,
                     box: int = BOX) -> np.ndarray:
    """Analytic line integrals of the blobs: blob j lands at (A c_j)_xy - o."""
    x = np.arange(box) - box // 2
    yy, xx = np.meshgrid(x, x, indexing="ij")
    shift_px = np.zeros((len(rotation), 2)) if shift_px is None else shift_px
    images = np.zeros((len(rotation), box, box))
    for a, c in zip(AMPLITUDES, CENTRES_PX):
        p = np.einsum("nij,j->ni", rotation, c)[:, :2] - shift_px
        images += a * np.sqrt(2 * np.pi) * SIGMA_PX * np.exp(
            -((xx[None] - p[:, 0, None, None]) ** 2 + (yy[None] - p[:, 1, None, None]) ** 2)
            / (2 * SIGMA_PX ** 2))
    return images


def _errors(volume: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    err = volume - truth
    return np.abs(err).max() / truth.max(), np.linalg.norm(err) / np.linalg.norm(truth)


def test_noise_free_projections_reconstruct_the_volume_at_the_right_place():
    rng = np.random.default_rng(0)
    rotation = random_rotations(800, rng)
    volume = finalize(insert_slices(fft2c(blob_projections(rotation)), None, rotation))
    truth = blob_volume()
    max_err, rel_err = _errors(volume, truth)
    # Measured: 0.8% of the peak, 5% in L2 (mostly a low-frequency offset
    # left by trilinear gridding near the origin, as in RELION's non-iterative path).
    assert max_err < 0.02 and rel_err < 0.08
    for c in CENTRES_PX:  # each blob where it belongs (index [z, y, x])
        z, y, x = (c[::-1] + BOX // 2).astype(int)
        local = volume[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2]
        assert volume[z, y, x] == local.max()
    # A transposed pose (the classic convention slip) must not fit.
    wrong = finalize(insert_slices(fft2c(blob_projections(rotation)), None,
                                   np.transpose(rotation, (0, 2, 1))))
    assert _errors(wrong, truth)[1] > 0.5


def _ctf_set(n: int, rng: np.random.Generator, apix: float) -> ParticleSet:
    kw = empty_like_arrays(n)
    du = rng.uniform(8000, 25000, n)
    kw.update(defocus_u_A=du, defocus_v_A=du - rng.uniform(0, 2000, n),
              defocus_angle_deg=rng.uniform(0, 180, n))
    return ParticleSet(optics=[OpticsGroup("g", apix, BOX, 300.0, 2.7, 0.1)], **kw)


def test_ctf_modulated_projections_reconstruct_the_volume():
    rng = np.random.default_rng(1)
    n, apix = 1500, 2.0
    rotation = random_rotations(n, rng)
    ps = _ctf_set(n, rng, apix)
    ctf = particle_ctfs(ps, np.arange(n), BOX, apix)
    spectra = fft2c(blob_projections(rotation)) * ctf
    volume = finalize(insert_slices(spectra, ctf, rotation))
    max_err, rel_err = _errors(volume, blob_volume())
    assert max_err < 0.05 and rel_err < 0.12, (max_err, rel_err)
    # Without the CTF division the map is far off: the test can tell.
    uncorrected = finalize(insert_slices(spectra, None, rotation))
    assert _errors(uncorrected, blob_volume())[1] > 0.3


def test_sums_of_chunks_add_up_and_weights_scale():
    rng = np.random.default_rng(2)
    rotation = random_rotations(60, rng)
    spectra = fft2c(blob_projections(rotation))
    whole = insert_slices(spectra, None, rotation)
    parts = insert_slices(spectra[:25], None, rotation[:25]) + insert_slices(
        spectra[25:], None, rotation[25:])
    np.testing.assert_allclose(parts.data, whole.data, atol=1e-9)
    np.testing.assert_allclose(parts.weight, whole.weight, atol=1e-9)
    assert parts.count == 60
    doubled = insert_slices(spectra, None, rotation, weights=np.full(60, 2.0))
    np.testing.assert_allclose(doubled.weight, 2 * whole.weight, atol=1e-9)
    with pytest.raises(ValueError):
        whole + FourierSums.zeros(BOX + 2)


def _write_dataset(tmp_path: Path, n: int, rng: np.random.Generator, apix: float = 2.0,
                   split: bool = True) -> Path:
    rotation = random_rotations(n, rng)
    shift_A = rng.uniform(-4, 4, (n, 2))
    images = blob_projections(rotation, shift_A / apix)
    images += rng.normal(scale=0.05 * images.std(), size=images.shape)
    write_stack(tmp_path / "parts.mrcs", images, apix)
    eul = matrix_to_euler(rotation)
    lines = ["", "data_optics", "", "loop_", "_rlnOpticsGroupName #1", "_rlnOpticsGroup #2",
             "_rlnVoltage #3", "_rlnSphericalAberration #4", "_rlnAmplitudeContrast #5",
             "_rlnImagePixelSize #6", "_rlnImageSize #7", "_rlnImageDimensionality #8",
             f"opticsGroup1 1 300.0 0.0 0.999 {apix} {BOX} 2", "", "data_particles", "", "loop_"]
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
            "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup"]
    cols += ["rlnRandomSubset"] if split else []
    lines += [f"_{c} #{i + 1}" for i, c in enumerate(cols)]
    for i in range(n):
        # Cs 0, zero defocus, amplitude contrast ~1: a flat CTF, images stay plain projections.
        row = (f"{i + 1:06d}@parts.mrcs {eul[i, 0]:.6f} {eul[i, 1]:.6f} {eul[i, 2]:.6f} "
               f"{shift_A[i, 0]:.5f} {shift_A[i, 1]:.5f} 0.0 0.0 0.0 1")
        lines.append(row + (f" {1 + i % 2}" if split else ""))
    path = tmp_path / "parts.star"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reconstruct_halves_keeps_halves_apart(tmp_path):
    from gmmrefine.io.particles import read_particles

    star = _write_dataset(tmp_path, 400, np.random.default_rng(3))
    ps = read_particles(star)
    # Corrupt half 2's images' poses: half 1's map must not notice.
    bad = ps.with_poses(np.where((ps.half_set == 2)[:, None, None],
                                 random_rotations(len(ps), np.random.default_rng(9)), ps.rotation),
                        ps.shift_A)
    lines = []
    progress = Progress(len(ps), "test", stream=type("S", (), {"write": lambda s, t: lines.append(t),
                                                              "flush": lambda s: None})())
    good1, _, _ = reconstruct_halves(ps, StackReader(ps.root), chunk=70)
    bad1, bad2, _ = reconstruct_halves(bad, StackReader(ps.root), chunk=70, progress=progress)
    np.testing.assert_allclose(bad1, good1, atol=1e-5)
    truth = blob_volume()
    assert _errors(good1, truth)[1] < 0.12
    assert _errors(bad2, truth)[1] > 0.5
    assert progress.done == len(ps)


def test_cli_writes_maps_and_fsc(tmp_path):
    from gmmrefine.cli.main import cli

    star = _write_dataset(tmp_path, 300, np.random.default_rng(4), split=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reconstruct", str(star), "--out", str(out), "--chunk", "100"])
    assert result.exit_code == 0, result.output
    assert "alternating rows" in result.output and "0.143" in result.output
    for name in ("half1.mrc", "half2.mrc", "map.mrc", "fsc.csv", "fsc.png"):
        assert (out / name).is_file()
    full, apix = read_map(out / "map.mrc")
    assert apix == pytest.approx(2.0)
    assert _errors(full, blob_volume())[1] < 0.12
    res = float(result.output.split("(FSC 0.143):")[1].split("A")[0])
    # Blobs of sigma 2 px have little power past ~8 A; Nyquist is 4 A.
    assert 4.0 <= res < 10.0


def test_cli_errors_leave_no_output(tmp_path):
    from gmmrefine.cli.main import cli

    star = _write_dataset(tmp_path, 20, np.random.default_rng(5))
    text = star.read_text().replace("000020@parts.mrcs", "000021@parts.mrcs")
    star.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reconstruct", str(star), "--out", str(out)])
    assert result.exit_code == 2
    assert "past the end" in result.output and "row 20" in result.output
    assert not out.exists()


def test_cli_refuses_a_degenerate_split(tmp_path):
    from gmmrefine.cli.main import cli

    star = _write_dataset(tmp_path, 10, np.random.default_rng(6))
    lines = star.read_text().splitlines()
    star.write_text("\n".join(l[:-1] + "1" if "@parts.mrcs" in l else l for l in lines) + "\n")
    result = CliRunner().invoke(cli, ["reconstruct", str(star), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "10 particles in half 1 and 0 in half 2" in result.output
    assert not (tmp_path / "out").exists()

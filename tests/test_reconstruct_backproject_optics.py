"""Reconstruction through RELION's observation model, against relion_reconstruct --ctf on
the same STAR: optics groups carrying beam tilt, odd and even Zernike terms and a
magnification; merged groups of 1.2 and 1.3 A (boxes 100 and 92) on the first group's
grid and on one given with --apix / --box; and the insertion itself, without RELION."""

from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs
from gmmrefine.cli.main import cli
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.io.mrc import read_map
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.io.stack import StackReader
from gmmrefine.reconstruct.backproject import FourierSums, insert_slices, reconstruct_halves
from gmmrefine.reconstruct.fsc import fsc_curve
from gmmrefine.simulate.dataset import simulate_dataset

PLAIN = OpticsGroup("g1", 2.0, 64, 300.0, 2.7, 0.1)
ABERRATED = (
    dataclasses.replace(PLAIN, beam_tilt_mrad=(1.5, -1.0),
                        odd_zernike=(0.0, 0.0, 40.0, 0.0, 0.0, -30.0),
                        even_zernike=(0.0, 0.0, 0.0, 0.0, 150.0, 0.0, 0.0, 0.0, -100.0),
                        mag_matrix=((1.02, 0.008), (-0.01, 0.985))),
    # RELION 3.1 replaces Z_3^+-1 by the tilt's coma (4.0 adds them): no coma here.
    dataclasses.replace(PLAIN, name="g2", beam_tilt_mrad=(-1.0, 1.2),
                        odd_zernike=(0.0, 0.0, -30.0, 0.0, 0.0, 25.0),
                        even_zernike=(0.0, 0.0, 0.0, 0.0, -80.0, 0.0, 20.0),
                        mag_matrix=((0.99, -0.006), (0.004, 1.012))))
MERGED = (OpticsGroup("g1", 1.2, 100, 300.0, 2.7, 0.1), OpticsGroup("g2", 1.3, 92, 300.0, 2.7, 0.1))


def _relion(folder, *args) -> None:
    result = subprocess.run(["relion_reconstruct", "--i", "truth.star", "--ctf", *args],
                            cwd=folder, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]


def _at(fsc: np.ndarray, fraction: float) -> float:
    return float(fsc[int(fraction * (len(fsc) - 1))])


@pytest.mark.slow
@needs("relion_reconstruct")
def test_aberrated_half_maps_agree_with_relion_reconstruct(tmp_path):
    simulate_dataset(tmp_path, n=400, box=64, apix=2.0, snr=float("inf"), crb_sample=0, seed=3,
                     optics_groups=ABERRATED)
    for h in (1, 2):
        _relion(tmp_path, "--o", f"relion_half{h}.mrc", "--subset", str(h))
    ps = read_particles(tmp_path / "truth.star")
    ours = reconstruct_halves(ps, StackReader(ps.root))[:2]
    plain = dataclasses.replace(ps, optics=[PLAIN, dataclasses.replace(PLAIN, name="g2")])
    ignored = reconstruct_halves(plain, StackReader(ps.root))[:2]
    for h in (0, 1):
        relion = read_map(tmp_path / f"relion_half{h + 1}.mrc")[0]
        fsc, fsc_ignored = fsc_curve(ours[h], relion), fsc_curve(ignored[h], relion)
        print(f"half {h + 1}: FSC with RELION at 0.5 / 0.9 / 1.0 Nyquist "
              f"{_at(fsc, 0.5):.3f} / {_at(fsc, 0.9):.3f} / {fsc[-1]:.3f}; aberrations ignored "
              f"{_at(fsc_ignored, 0.5):.3f} / {_at(fsc_ignored, 0.9):.3f} / {fsc_ignored[-1]:.3f}")
        assert fsc[1:int(0.9 * 32) + 1].min() >= 0.985, fsc
        assert fsc[1:].min() >= 0.9, fsc
        assert _at(fsc_ignored, 0.9) < 0.6, fsc_ignored


@pytest.mark.slow
@needs("relion_reconstruct")
def test_merged_pixel_sizes_agree_with_relion_reconstruct(tmp_path):
    simulate_dataset(tmp_path, n=300, box=100, apix=1.2, snr=float("inf"), crb_sample=0, seed=3,
                     optics_groups=MERGED)
    _relion(tmp_path, "--o", "relion.mrc")
    _relion(tmp_path, "--o", "relion_13.mrc", "--angpix", "1.3", "--newbox", "92")
    runner = CliRunner()
    for out, extra in (("ours", []), ("ours_13", ["--apix", "1.3", "--box", "92"])):
        result = runner.invoke(cli, ["reconstruct", str(tmp_path / "truth.star"), "--out",
                                     str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        assert "box 92 at 1.3 A/px rescaled onto the maps' grid" in result.output or extra
    for ours, relion, box in (("ours", "relion.mrc", 100), ("ours_13", "relion_13.mrc", 92)):
        mine, apix = read_map(tmp_path / ours / "map.mrc")
        theirs, _ = read_map(tmp_path / relion)
        assert mine.shape == (box,) * 3 and apix == pytest.approx(1.2 if box == 100 else 1.3)
        fsc = fsc_curve(mine, theirs)
        print(f"{ours}: FSC with RELION at 0.5 / 0.9 Nyquist {_at(fsc, 0.5):.3f} / "
              f"{_at(fsc, 0.9):.3f}")
        assert fsc[1:int(0.9 * (box // 2)) + 1].min() >= 0.98, fsc
    # The second group read as if it had the first's pixel size no longer agrees.
    ps = read_particles(tmp_path / "truth.star")
    wrong = dataclasses.replace(ps, optics=[ps.optics[0],
                                            dataclasses.replace(ps.optics[1], apix=1.2)])
    _, _, full = reconstruct_halves(wrong, StackReader(ps.root))
    assert _at(fsc_curve(full, read_map(tmp_path / "relion.mrc")[0]), 0.9) < 0.9


def test_an_identity_frequency_map_inserts_exactly_as_none():
    rng = np.random.default_rng(0)
    spectra = rng.normal(size=(3, 16, 16)) + 1j * rng.normal(size=(3, 16, 16))
    ctf = rng.uniform(-1, 1, (3, 16, 16))
    rotation = np.stack([np.eye(3)] * 3)
    plain = insert_slices(spectra, ctf, rotation)
    mapped = insert_slices(spectra, ctf, rotation, frequency_map=np.eye(2))
    np.testing.assert_allclose(mapped.data, plain.data, atol=1e-12)
    np.testing.assert_allclose(mapped.weight, plain.weight, atol=1e-12)


def test_a_scaled_map_lands_samples_where_their_frequency_is():
    # A 20-pixel image whose grid is 0.8 of the sums' length: pixel k sits at 0.8 k. One
    # sample at image pixel (5, 0) must land (trilinearly) at 2 * 0.8 * 5 = 8 padded pixels.
    spectra = np.zeros((1, 20, 20), complex)
    spectra[0, 10, 15] = 1.0
    sums = insert_slices(spectra, None, np.eye(3)[None], sums=FourierSums.zeros(16, 2),
                         frequency_map=0.8 * np.eye(2))
    assert sums.box == 16
    assert np.flatnonzero(np.abs(sums.data[0, 0]) > 1e-12).tolist() == [8]
    # Samples beyond the sums' Nyquist sphere are dropped: at 1.55 k, image pixel (9, 0)
    # lands at 13.95 > 8, and only the samples within |1.55 k| <= 8 add their unit weight.
    spectra[0, 10, 15], spectra[0, 10, 19] = 0.0, 1.0
    sums = insert_slices(spectra, None, np.eye(3)[None], sums=FourierSums.zeros(16, 2),
                         frequency_map=1.55 * np.eye(2))
    assert np.abs(sums.data).max() == 0
    ky, kx = np.mgrid[-10:10, -10:10]
    inside = (1.55 ** 2 * (kx * kx + ky * ky) <= 64) & ((ky > 0) | ((ky == 0) & (kx >= 0)))
    assert sums.weight.sum() == pytest.approx(inside.sum())


def test_premultiplied_images_enter_as_they_are_with_ctf_squared_weights():
    rng = np.random.default_rng(2)
    spectra = rng.normal(size=(2, 12, 12)) + 0j
    ctf = rng.uniform(0.2, 1.0, (2, 12, 12))
    rotation = np.stack([np.eye(3)] * 2)
    as_is = insert_slices(spectra, ctf, rotation, premultiplied=np.array([True, True]))
    reference = insert_slices(spectra / ctf, ctf, rotation)
    np.testing.assert_allclose(as_is.data, reference.data, atol=1e-10)
    np.testing.assert_allclose(as_is.weight, reference.weight, atol=1e-10)


def test_an_odd_output_box_is_refused_before_anything_is_written(tmp_path):
    kw = empty_like_arrays(4)
    kw.update(image_path=np.array(["s.mrcs"] * 4, dtype=object), image_index=np.arange(4),
              defocus_u_A=np.full(4, 1e4), defocus_v_A=np.full(4, 1e4),
              half_set=np.array([1, 2, 1, 2], np.int8))
    write_particles(ParticleSet(optics=list(MERGED), **kw), tmp_path / "p.star")
    result = CliRunner().invoke(cli, ["reconstruct", str(tmp_path / "p.star"), "--out",
                                      str(tmp_path / "out"), "--box", "91"])
    assert result.exit_code == 2 and "--box" in result.output and "even" in result.output
    assert not (tmp_path / "out").exists()

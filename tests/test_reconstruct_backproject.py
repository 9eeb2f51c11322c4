"""Direct Fourier inversion against analytic projections of Gaussian blobs, chunk
additivity, half separation, and symmetric sums against the expanded set."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.data.ctf import particle_ctfs
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.data.rotations import random_rotations
from gmmrefine.data.symmetry_groups import symmetry_operators
from gmmrefine.fourier.grids import fft2c
from gmmrefine.io.expand import expand_particles
from gmmrefine.io.mrc import write_stack
from gmmrefine.io.particles import read_particles
from gmmrefine.io.stack import StackReader
from gmmrefine.reconstruct.backproject import (
    FourierSums,
    finalize,
    insert_slices,
    reconstruct_halves,
    symmetrize_sums,
)
from gmmrefine.reconstruct.fsc import fsc_curve
from gmmrefine.report.progress import Progress
from helpers_reconstruct import (
    BOX,
    CENTRES_PX,
    blob_projections,
    blob_volume,
    relative_errors,
    write_blob_dataset,
)
from helpers_symmetry import images_of_blobs, random_particles, symmetric_blobs


def test_noise_free_projections_reconstruct_the_volume_at_the_right_place():
    rng = np.random.default_rng(0)
    rotation = random_rotations(800, rng)
    volume = finalize(insert_slices(fft2c(blob_projections(rotation)), None, rotation))
    truth = blob_volume()
    max_err, rel_err = relative_errors(volume, truth)
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
    assert relative_errors(wrong, truth)[1] > 0.5


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
    max_err, rel_err = relative_errors(volume, blob_volume())
    assert max_err < 0.05 and rel_err < 0.12, (max_err, rel_err)
    # Without the CTF division the map is far off: the test can tell.
    uncorrected = finalize(insert_slices(spectra, None, rotation))
    assert relative_errors(uncorrected, blob_volume())[1] > 0.3


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


def test_reconstruct_halves_keeps_halves_apart(tmp_path):

    star = write_blob_dataset(tmp_path, 400, np.random.default_rng(3))
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
    assert relative_errors(good1, truth)[1] < 0.12
    assert relative_errors(bad2, truth)[1] > 0.5
    assert progress.done == len(ps)


def test_symmetrised_sums_equal_inserting_every_operator():
    # D2's operators map the grid onto itself: no interpolation, equal to rounding.
    rng = np.random.default_rng(8)
    box = 24
    rotation = random_rotations(50, rng)
    spectra = fft2c(rng.normal(size=(50, box, box)))
    ops = symmetry_operators("D2")
    sym = symmetrize_sums(insert_slices(spectra, None, rotation), ops)
    expanded = insert_slices(np.repeat(spectra, 4, axis=0), None,
                             np.einsum("nij,gjk->ngik", rotation, ops).reshape(-1, 3, 3))
    want = finalize(expanded)
    np.testing.assert_allclose(finalize(sym), want, atol=1e-5 * np.abs(want).max())
    assert sym.count == expanded.count


def test_symmetric_reconstruction_matches_the_expanded_set(tmp_path):
    box, apix, n, sym = 32, 2.0, 600, "C3"
    rng = np.random.default_rng(9)
    ps = random_particles(n, box, apix, rng)
    centres = symmetric_blobs(sym, box, rng)
    images = images_of_blobs(centres, ps)
    images += rng.normal(scale=0.1 * images.std(), size=images.shape)
    write_stack(tmp_path / "parts.mrcs", images, apix)
    ps.root = tmp_path
    with StackReader(tmp_path) as reader:
        maps_sym = reconstruct_halves(ps, reader, sym=sym)
        maps_c1 = reconstruct_halves(expand_particles(ps, sym), reader)
    shells = int(0.8 * box / 2)
    # Measured: >= 0.991 to 0.8 Nyquist (the grid is interpolated once more
    # than the expanded set's slices are, as in RELION's symmetrise).
    for ours, expanded in zip(maps_sym, maps_c1):
        assert fsc_curve(ours, expanded)[1:shells + 1].min() >= 0.99

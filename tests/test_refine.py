"""Pose refinement: one particle pulled back, halves kept apart, resume, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.align.adam import align_batch
from gmmrefine.align.gauss_newton import (
    GaussNewtonSettings,
    gauss_newton_batch,
    make_spectrum_and_jacobian,
)
from gmmrefine.align.kernel import apply_pose_moves, make_pose_objective
from gmmrefine.align.options import AlignSettings
from gmmrefine.align.refine_particles import ParticleAligner, origin_about_pivot, refine_particles
from gmmrefine.align.rings import gather_rings, ring_pixels_for_resolution
from gmmrefine.cli.main import cli
from gmmrefine.data.images import ParticleImages
from gmmrefine.data.rotations import (
    angle_between_deg,
    perturb_rotations,
    random_rotations,
)
from gmmrefine.errors import Aborted, InputError
from gmmrefine.fourier.grids import fft2c, fourier_crop_2d
from gmmrefine.gmm.fit import gmm_from_map
from gmmrefine.gmm.focus import mask_centroid_A
from gmmrefine.gmm.model import GMM, projected_gmm_image
from gmmrefine.io.mrc import read_map
from gmmrefine.io.particles import read_particles
from gmmrefine.io.stack import StackReader
from gmmrefine.pipeline import iteration as iteration_module
from gmmrefine.pipeline import references
from gmmrefine.pipeline import run as refine_module
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.simulate.dataset import simulate_dataset


def _blobs(rng, n=300):
    return GMM(rng.normal(scale=6.0, size=(n, 3)), rng.uniform(0.5, 1.5, n), rng.uniform(1.2, 2.0, n))


def _spectra(gmm, rotations, origins, box, apix, oversample=4):
    """Centred spectra of images rendered on a 4x finer grid and Fourier-cropped,
    so the pixel-integration blur of the data is negligible (the kernel has none)."""
    fine = np.array([projected_gmm_image(gmm, a, o, box * oversample, apix / oversample)
                     for a, o in zip(rotations, origins)])
    return fourier_crop_2d(fft2c(fine), box)


def _perturbed_case() -> dict:
    """Eight noise-free particles of known pose, and start poses ~2 deg / 0.5 px off."""
    rng = np.random.default_rng(0)
    gmm, box, apix = _blobs(rng), 48, 1.0
    truth = random_rotations(8, rng)
    origin = rng.normal(scale=1.5, size=(8, 2))
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    data = gather_rings(_spectra(gmm, truth, origin, box, apix), pixels)
    return dict(gmm=gmm, apix=apix, pixels=pixels, data=data, truth=truth, origin=origin,
                start=perturb_rotations(truth, 2.0, rng),
                start_origin=origin + rng.normal(scale=0.5, size=origin.shape))


def test_gauss_newton_pulls_particles_back_in_a_few_steps():
    case = _perturbed_case()
    gmm, apix, pixels, data = case["gmm"], case["apix"], case["pixels"], case["data"]
    truth, origin, start, start_origin = case["truth"], case["origin"], case["start"], case["start_origin"]
    jacobian = make_spectrum_and_jacobian(gmm, pixels, apix)
    result = gauss_newton_batch(jacobian, start, start_origin, data, apix,
                                GaussNewtonSettings(iterations=3))
    rotation, shift = apply_pose_moves(start, start_origin, result.dtheta_deg, result.dshift_px, apix)
    assert np.median(angle_between_deg(start, truth)) > 1.0
    assert angle_between_deg(rotation, truth).max() < 0.05
    assert np.abs(shift - origin).max() < 0.01


def test_prior_centre_away_from_the_start_pulls_the_poses_to_it():
    # A prior far tighter than the data's information puts the MAP pose on
    # the prior's centre: here the truth, ~2 deg / 0.5 px from the start.
    case = _perturbed_case()
    gmm, apix, pixels = case["gmm"], case["apix"], case["pixels"]
    truth, origin, start, start_origin = case["truth"], case["origin"], case["start"], case["start_origin"]
    rng = np.random.default_rng(3)
    data = case["data"] + rng.normal(scale=np.abs(case["data"]).std(), size=case["data"].shape)
    jacobian = make_spectrum_and_jacobian(gmm, pixels, apix)
    result = gauss_newton_batch(jacobian, start, start_origin, data, apix,
                                GaussNewtonSettings(iterations=4),
                                prior_sd=np.array([0.005] * 3 + [0.002] * 2),
                                prior_rotation=truth, prior_origin_A=origin)
    rotation, shift = apply_pose_moves(start, start_origin, result.dtheta_deg, result.dshift_px, apix)
    assert angle_between_deg(rotation, truth).max() < 0.05
    assert np.abs(shift - origin).max() < 0.02


def test_a_pivot_lets_a_turn_about_the_region_through_a_tight_shift_prior():
    # A region 12 A off the box centre turns 3 deg about its own centre: about the
    # box centre that is also a slide, which a tight shift prior forbids; about
    # the pivot it is a pure turn, and the prior (on the pivot's image) allows it.
    rng = np.random.default_rng(5)
    pivot = np.array([10.0, -4.0, 5.0])
    blobs = _blobs(rng, 200)
    gmm = GMM(blobs.centres_A + pivot, blobs.amplitudes, blobs.widths_A)
    box, apix, n = 64, 1.0, 6
    start, start_origin = random_rotations(n, rng), rng.normal(scale=1.0, size=(n, 2))
    turn = perturb_rotations(np.repeat(np.eye(3)[None], n, axis=0), 3.0, rng)
    truth = turn @ start
    origin = start_origin + np.einsum("nij,j->ni", truth - start, pivot)[:, :2]
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    data = gather_rings(_spectra(gmm, truth, origin, box, apix), pixels)
    settings, prior = GaussNewtonSettings(iterations=5), np.array([5.0] * 3 + [0.01] * 2)

    def refine(p):
        moved = GMM(gmm.centres_A - p, gmm.amplitudes, gmm.widths_A)
        o = origin_about_pivot(start, start_origin, p)
        result = gauss_newton_batch(make_spectrum_and_jacobian(moved, pixels, apix), start, o,
                                    data, apix, settings, prior_sd=prior,
                                    prior_rotation=start, prior_origin_A=o)
        r, s = apply_pose_moves(start, o, result.dtheta_deg, result.dshift_px, apix)
        return r, origin_about_pivot(r, s, -p)

    about_centre, _ = refine(np.zeros(3))
    about_pivot, shift = refine(pivot)
    assert angle_between_deg(about_pivot, truth).max() < 0.1
    assert np.median(angle_between_deg(about_centre, truth)) > 0.3
    assert np.abs(shift - origin).max() < 0.05


def test_the_mask_centroid_is_its_weighted_centre_in_angstrom():
    mask = np.zeros((16, 16, 16))
    mask[3, 10, 12] = 1.0      # z, y, x voxel: x = 4, y = 2, z = -5 from voxel 8
    mask[3, 10, 4] = 3.0       # x = -4
    np.testing.assert_allclose(mask_centroid_A(mask, 1.5), np.array([-2.0, 2.0, -5.0]) * 1.5)
    assert not np.any(mask_centroid_A(np.zeros((8, 8, 8)), 1.0))


def test_wiener_weighting_is_the_least_squares_estimate_of_the_truth():
    # Per shell, the scale w minimising |w H - T|^2 for a half map H = T + noise
    # is Re<H, T> / |H|^2, computed here from the truth; wiener_weighted
    # must scale each shell by it, knowing only the two halves' FSC.
    from gmmrefine.fourier.filters import apply_shell_weights
    from gmmrefine.fourier.grids import rfft_shell_index
    from gmmrefine.reconstruct.fsc import fsc_curve

    rng = np.random.default_rng(7)
    box = 48
    truth = apply_shell_weights(rng.normal(size=(box,) * 3),
                                np.exp(-np.arange(box // 2 + 1) / 6.0))
    noise_sd = truth.std() * 0.6
    half1, half2 = (truth + rng.normal(scale=noise_sd, size=truth.shape) for _ in range(2))
    fsc = fsc_curve(half1, half2)
    shells = rfft_shell_index(truth.shape)
    h, t = np.fft.rfftn(half1), np.fft.rfftn(truth)
    w = np.fft.rfftn(references.wiener_weighted(half1, fsc))
    for shell in range(3, box // 2 - 2):
        on = shells == shell
        least_squares = np.sum((h[on] * t[on].conj()).real) / np.sum(np.abs(h[on]) ** 2)
        applied = np.sum((w[on] * h[on].conj()).real) / np.sum(np.abs(h[on]) ** 2)
        assert abs(applied - least_squares) < 0.06, shell


def test_pose_jacobian_matches_finite_differences():
    rng = np.random.default_rng(5)
    gmm, box, apix = _blobs(rng, 100), 40, 1.2
    rotation, origin = random_rotations(4, rng), rng.normal(size=(4, 2))
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    jacobian = make_spectrum_and_jacobian(gmm, pixels, apix)
    _, jac = (x.numpy() for x in jacobian(rotation.astype(np.float32), origin.astype(np.float32)))
    eps = 0.02
    for a in range(5):
        move = np.zeros((4, 5))
        move[:, a] = eps
        plus = apply_pose_moves(rotation, origin, move[:, :3], move[:, 3:], apix)
        minus = apply_pose_moves(rotation, origin, -move[:, :3], -move[:, 3:], apix)
        f_plus, f_minus = (jacobian(r.astype(np.float32), o.astype(np.float32))[0].numpy()
                           for r, o in (plus, minus))
        numeric = (f_plus - f_minus) / (2 * eps)
        assert np.abs(numeric - jac[..., a]).max() < 1e-2 * np.abs(jac[..., a]).max(), a


def test_adam_pulls_particles_back_on_the_frc():
    case = _perturbed_case()
    gmm, apix, pixels, data = case["gmm"], case["apix"], case["pixels"], case["data"]
    truth, origin, start, start_origin = case["truth"], case["origin"], case["start"], case["start_origin"]
    objective = make_pose_objective(gmm, pixels, apix)
    result = align_batch(objective, start, start_origin, data,
                         AlignSettings(steps=100, step_deg=0.5, step_px=0.25))
    rotation, shift = apply_pose_moves(start, start_origin, result.dtheta_deg, result.dshift_px, apix)
    assert np.median(angle_between_deg(start, truth)) > 1.0
    assert angle_between_deg(rotation, truth).max() < 0.2
    assert np.abs(shift - origin).max() < 0.05
    assert np.all(result.score_best >= result.score_start)


def test_no_particle_ends_worse_than_it_started():
    rng = np.random.default_rng(1)
    gmm, box, apix = _blobs(rng), 32, 1.5
    truth = random_rotations(16, rng)
    clean = np.array([projected_gmm_image(gmm, a, np.zeros(2), box, apix) for a in truth])
    noisy = clean + rng.normal(scale=3 * clean.std(), size=clean.shape)
    pixels = ring_pixels_for_resolution(box, apix, 4.0, 25.0)
    objective = make_pose_objective(gmm, pixels, apix)
    # Steps far too large for the landscape: many moves make things worse.
    result = align_batch(objective, truth, np.zeros((16, 2)), gather_rings(fft2c(noisy), pixels),
                         AlignSettings(steps=4, step_deg=8.0, step_px=3.0))
    again = objective(*(np.asarray(x, np.float32) for x in (
        truth, np.zeros((16, 2)), gather_rings(fft2c(noisy), pixels).real,
        gather_rings(fft2c(noisy), pixels).imag, result.dtheta_deg, result.dshift_px)))[0].numpy()
    assert np.all(result.score_best >= result.score_start)
    np.testing.assert_allclose(again, result.score_best, atol=1e-5)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=240, box=48, apix=2.4, snr=1.0, angle_rms_deg=4.0, crb_sample=0)
    return out


def _spy(monkeypatch):
    """Record which half's map every GMM was fitted to and which halves' particles met it."""
    previous, made, built, met = {}, {}, {}, []
    real_iteration, real_wiener = iteration_module.refine_iteration, iteration_module.wiener_weighted
    real_gmm, real_init = iteration_module.half_gmm, ParticleAligner.__init__
    real_align = ParticleAligner.align

    def iteration_spy(inputs, prev, *args, **kwargs):
        previous["maps"] = prev.maps
        return real_iteration(inputs, prev, *args, **kwargs)

    def wiener_spy(half_map, fsc):
        out = real_wiener(half_map, fsc)
        made[id(out)] = 1 if half_map is previous["maps"].half1 else 2
        return out

    def gmm_spy(inputs, source, res_A, seed, half, **kwargs):
        gmm, info = real_gmm(inputs, source, res_A, seed, half, **kwargs)
        built[id(gmm)] = made[id(source)]
        return gmm, info

    def init_spy(self, gmm, *args, **kwargs):
        real_init(self, gmm, *args, **kwargs)
        self.spied_half = built[id(gmm)]

    def align_spy(self, images, index, **kwargs):
        met.append((self.spied_half, set(np.unique(images.particles.half_set[index]).tolist())))
        return real_align(self, images, index, **kwargs)

    monkeypatch.setattr(iteration_module, "refine_iteration", iteration_spy)
    monkeypatch.setattr(iteration_module, "wiener_weighted", wiener_spy)
    monkeypatch.setattr(iteration_module, "half_gmm", gmm_spy)
    monkeypatch.setattr(ParticleAligner, "__init__", init_spy)
    monkeypatch.setattr(ParticleAligner, "align", align_spy)
    return met


def test_halves_never_meet_the_other_halfs_gmm_and_resume_skips_finished_work(
        small_set, tmp_path, monkeypatch):
    met = _spy(monkeypatch)
    out = tmp_path / "run"
    options = RefineOptions(iterations=1, steps=2)
    result = refine_module.run_refinement(small_set / "particles.star", out, options, log=lambda s: None)
    assert met == [(1, {1}), (2, {2})]
    assert result.resolution_A > 0 and len(result.resolutions_A) == 1
    first = (out / "iter_001" / "iteration.json").stat().st_mtime_ns

    # Same options, one more iteration: iteration 1 is read back, only iteration 2 runs.
    met.clear()
    more = RefineOptions(iterations=2, steps=2)
    result = refine_module.run_refinement(small_set / "particles.star", out, more, log=lambda s: None)
    assert met == [(1, {1}), (2, {2})]
    assert (out / "iter_001" / "iteration.json").stat().st_mtime_ns == first
    record = json.loads((out / "run.json").read_text())
    assert [i["iteration"] for i in record["iterations"]] == [0, 1, 2]

    met.clear()
    refine_module.run_refinement(small_set / "particles.star", out, more, log=lambda s: None)
    assert met == []

    with pytest.raises(InputError, match="steps"):
        refine_module.run_refinement(small_set / "particles.star", out,
                                     RefineOptions(iterations=2, steps=3), log=lambda s: None)


def test_coarse_passes_bring_back_poses_beyond_the_fine_rings_reach(small_set):
    # Start ~10 deg off (median) against the truth's own GMM: fine rings alone
    # leave many particles outside their basin; two coarse passes first bring
    # them in, and the start pose stays a candidate, so none ends worse.
    truth = read_particles(small_set / "truth.star")
    volume, apix = read_map(small_set / "truth_map.mrc")
    gmm, _ = gmm_from_map(volume, apix, 6.0)
    start = perturb_rotations(truth.rotation, 12.0, np.random.default_rng(1))
    errors = {}
    with StackReader(small_set) as reader:
        images = ParticleImages(truth.with_poses(start, truth.shift_A), reader)
        for passes in (0, 2):
            options = RefineOptions(prior_deg=None, prior_px=None, coarse_passes=passes)
            rotation, _, before, after = refine_particles(gmm, images, 5.0, options.alignment())
            assert np.all(after >= before - 1e-6)
            errors[passes] = np.median(angle_between_deg(rotation, truth.rotation))
    assert np.median(angle_between_deg(start, truth.rotation)) > 8.0
    assert errors[2] < 2.5 and errors[0] > 1.5 * errors[2]


def test_abort_stops_between_batches_and_keeps_finished_iterations(small_set, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Aborted):
        refine_module.run_refinement(small_set / "particles.star", out,
                                     RefineOptions(iterations=1, steps=2), log=lambda s: None,
                                     # Stop once iteration 0 is recorded (it would stop
                                     # its reconstruction too: tests/test_pipeline_abort.py).
                                     should_abort=(out / "iter_000" / "iteration.json").exists)
    assert (out / "iter_000" / "iteration.json").exists()
    assert not (out / "iter_001" / "iteration.json").exists()
    assert not (out / "particles.star").exists()


def test_cli_refines_towards_the_truth_and_writes_both_host_formats(small_set, tmp_path):
    # A perfect reference for the first GMMs: with 120 particles per half the
    # half maps alone limit the poses more than the noise does.
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["refine", str(small_set / "particles.star"), "--out", str(out),
                                      "--iter", "1", "--res", "6",
                                      "--reference", str(small_set / "truth_map.mrc")])
    assert result.exit_code == 0, result.output
    truth = read_particles(small_set / "truth.star")
    start = read_particles(small_set / "particles.star")
    apix = start.common_box_apix()[1]
    for name in ("particles.star", "particles.cs"):
        refined = read_particles(out / name)
        before = np.median(angle_between_deg(start.rotation, truth.rotation))
        after = np.median(angle_between_deg(refined.rotation, truth.rotation))
        assert after < 0.6 * before, (name, before, after)
        shift_after = np.median(np.linalg.norm(refined.shift_A - truth.shift_A, axis=1)) / apix
        assert shift_after < 0.3, (name, shift_after)
        np.testing.assert_array_equal(refined.half_set, start.half_set)
    for name in ("half1.mrc", "half2.mrc", "map.mrc", "fsc.csv", "fsc.png", "pose_changes.png",
                 "run.json", "iter_001/gmm_half1.npz", "iter_001/gmm_half2.pdb"):
        assert (out / name).is_file(), name
    assert "Gold-standard resolution" in result.output


def test_bad_options_fail_before_anything_is_written(small_set, tmp_path):
    result = CliRunner().invoke(cli, ["refine", str(small_set / "particles.star"), "--out",
                                      str(tmp_path / "run"), "--iter", "0"])
    assert result.exit_code == 2
    assert "--iter 0: expected an integer >= 1" in result.output
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(cli, ["refine", str(small_set / "particles.star"), "--out",
                                      str(tmp_path / "run"), "--align-fsc", "1.5"])
    assert result.exit_code == 2
    assert "--align-fsc 1.5: expected a number > 0 and < 1, or auto" in result.output
    assert not (tmp_path / "run").exists()


def test_model_seeds_one_gaussian_per_atom_in_each_half(small_set, tmp_path):
    from gmmrefine.io.gmm_files import read_gmm
    from gmmrefine.simulate.pdb import read_pdb

    out = tmp_path / "run"
    refine_module.run_refinement(small_set / "particles.star", out,
                                 RefineOptions(iterations=1, steps=1, res_A=8.0,
                                               model=str(small_set / "model.pdb")),
                                 log=lambda s: None)
    atoms = read_pdb(small_set / "model.pdb").coords_A
    half1, half2 = (read_gmm(out / "iter_001" / f"gmm_half{h}.npz") for h in (1, 2))
    assert len(half1) == len(half2) == len(atoms)
    # Each half randomises the atoms on its own, at the resolution's scale.
    spread = np.std(half1.centres_A - half2.centres_A)
    assert 0.5 < spread < 8.0

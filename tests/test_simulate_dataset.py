"""The simulator: model, exact rendering, noise at the stated SNR, files with known truth."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.data.rotations import angle_between_deg, euler_to_matrix
from gmmrefine.errors import InputError
from gmmrefine.io.particles import read_particles
from gmmrefine.simulate.dataset import simulate_dataset
from gmmrefine.simulate.model import (
    DOMAIN,
    assemble_copies,
    build_model,
    conformation_coords,
    hinge_range_deg,
    tip_radius_A,
)
from gmmrefine.simulate.pdb import read_pdb, write_pdb
from gmmrefine.simulate.render import (
    atom_amplitude,
    atom_sigma_A,
    footprint_variance,
    project_atoms,
    render_map,
)
from scipy.spatial.transform import Rotation


@pytest.fixture(scope="module")
def model():
    return build_model(seed=0)


def _centred_axis(box: int, apix: float) -> np.ndarray:
    return (np.arange(box) - box // 2) * apix


# --- the model -----------------------------------------------------------------------------------

def test_model_is_a_90_kda_two_part_protein(model):
    assert 6000 <= len(model) <= 6600
    assert 85 <= model.mass_kda <= 95
    assert 0.25 <= model.domain_mass_fraction <= 0.30
    assert set(model.element) == {"C", "N", "O", "S"}
    # Element shares of real proteins: roughly 63% C, 17% N, 19% O, <1% S.
    share = {e: np.mean(model.element == e) for e in "CNOS"}
    assert 0.58 < share["C"] < 0.68 and 0.14 < share["N"] < 0.20 and 0.15 < share["O"] < 0.23
    assert 0 < share["S"] < 0.02
    # Consecutive CAs of the ideal helices are 3.8 A apart (trans peptides).
    ca = model.coords_A[model.atom_name == "CA"]
    step = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    assert np.median(step) == pytest.approx(3.8, abs=0.05)
    # The model fits the default box (96 px at 1.3 A: radius 62 A) with margin.
    assert np.linalg.norm(model.coords_A, axis=1).max() < 55.0
    assert np.abs(model.coords_A.mean(axis=0)).max() < 1e-9


def test_model_is_deterministic_from_its_seed(model):
    again = build_model(seed=0)
    other = build_model(seed=1)
    np.testing.assert_array_equal(again.coords_A, model.coords_A)
    assert list(again.res_name) == list(model.res_name)
    assert list(other.res_name) != list(model.res_name)


def test_hinge_moves_only_the_domain_and_the_tip_by_the_requested_travel(model):
    span = hinge_range_deg(model, 10.0)
    moved = conformation_coords(model, span / 2) - conformation_coords(model, -span / 2)
    travel = np.linalg.norm(moved, axis=1)
    assert np.all(travel[model.domain != DOMAIN] == 0)
    # The tip travels an arc of 10 A; its chord is 2 r sin(span / 2).
    r = tip_radius_A(model)
    assert travel.max() == pytest.approx(2 * r * np.sin(np.radians(span) / 2), rel=1e-9)
    assert travel.max() == pytest.approx(10.0, rel=0.01)


def test_assemble_copies_places_rotated_subunits(model):
    c3 = Rotation.from_rotvec([[0, 0, a] for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)]).as_matrix()
    trimer = assemble_copies(model, c3)
    assert len(trimer) == 3 * len(model)
    # Core and domain are chains A and B; each copy gets its own pair.
    assert sorted(set(trimer.chain)) == list("ABCDEF")
    np.testing.assert_allclose(trimer.coords_A[len(model):2 * len(model)],
                               model.coords_A @ c3[1].T)


def test_pdb_round_trip_keeps_coordinates_domains_and_hinge(model, tmp_path):
    path = tmp_path / "model.pdb"
    write_pdb(path, model, box_centre_A=62.4)
    back = read_pdb(path)
    np.testing.assert_allclose(back.coords_A, model.coords_A, atol=6e-4)
    np.testing.assert_array_equal(back.domain, model.domain)
    assert list(back.element) == list(model.element)
    assert list(back.atom_name) == list(model.atom_name)
    np.testing.assert_allclose(back.hinge_point_A, model.hinge_point_A, atol=1e-4)
    np.testing.assert_allclose(back.hinge_axis, model.hinge_axis, atol=1e-4)
    # The written coordinates overlay a map whose origin is its first voxel.
    first = next(line for line in path.read_text().splitlines() if line.startswith("ATOM"))
    assert float(first[30:38]) == pytest.approx(model.coords_A[0, 0] + 62.4, abs=6e-4)


def test_read_pdb_refuses_a_file_without_atoms(tmp_path):
    path = tmp_path / "empty.pdb"
    path.write_text("HEADER nothing\nEND\n")
    with pytest.raises(InputError, match="no ATOM"):
        read_pdb(path)


# --- rendering -----------------------------------------------------------------------------------

def test_single_atom_map_integrates_to_its_amplitude_at_its_centre():
    box, apix = 32, 1.1
    centre = np.array([[2.3, -1.7, 4.1]])
    volume = render_map(centre, np.array([2.5]), np.array([1.2]), box, apix)
    assert volume.sum() == pytest.approx(2.5, rel=1e-5)
    axis = _centred_axis(box, apix)
    w = volume.astype(float)
    centroid = [np.sum(w.sum(axis=(0, 1)) * axis), np.sum(w.sum(axis=(0, 2)) * axis),
                np.sum(w.sum(axis=(1, 2)) * axis)]  # x, y, z of an array [z, y, x]
    np.testing.assert_allclose(np.array(centroid) / w.sum(), centre[0], atol=1e-4)


def test_single_atom_projection_lands_at_A_c_minus_origin():
    box, apix = 48, 1.3
    c = np.array([5.0, -3.0, 7.0])
    a = euler_to_matrix(30.0, 60.0, -45.0)[0]
    origin = np.array([2.0, -4.5])
    image = project_atoms(c[None], np.array([1.7]), np.array([1.5]), a[None], origin[None],
                          box, apix)[0]
    expected = (a @ c)[:2] - origin
    axis = _centred_axis(box, apix)
    assert image.sum() == pytest.approx(1.7, rel=1e-9)
    centroid = [np.sum(image.sum(axis=0) * axis), np.sum(image.sum(axis=1) * axis)]
    np.testing.assert_allclose(np.array(centroid) / image.sum(), expected, atol=1e-6)


def test_identity_projection_is_the_map_summed_along_z(model):
    inside = np.linalg.norm(model.coords_A, axis=1) < 22.0
    coords = model.coords_A[inside]
    amp = atom_amplitude(model.element[inside])
    sigma = atom_sigma_A(model.element[inside], 20.0)
    box, apix = 40, 1.5
    volume = render_map(coords, amp, sigma, box, apix)
    image = project_atoms(coords, amp, sigma, np.eye(3)[None], np.zeros((1, 2)), box, apix)[0]
    np.testing.assert_allclose(image, volume.sum(axis=0), atol=1e-4 * image.max())


def test_projection_matches_the_analytic_fourier_transform_of_the_gaussians(model):
    rng = np.random.default_rng(3)
    coords = model.coords_A[rng.choice(len(model), 40, replace=False)] * 0.4
    amp = rng.uniform(1.0, 3.0, 40)
    sigma = np.full(40, 1.5)        # wide enough that aliasing is < 1e-8
    box, apix = 48, 1.2
    a = euler_to_matrix(110.0, 35.0, 250.0)[0]
    origin = np.array([1.3, -0.4])
    image = project_atoms(coords, amp, sigma, a[None], origin[None], box, apix)[0]
    x = _centred_axis(box, apix)
    p = (coords @ a.T)[:, :2] - origin
    for kx, ky in [(0.0, 0.0), (0.03, 0.0), (-0.05, 0.07), (0.11, -0.02), (0.071, 0.093)]:
        direct = np.sum(image * np.exp(-2j * np.pi * (kx * x[None, :] + ky * x[:, None])))
        # Pixel integration multiplies the transform by sinc(k apix) per axis.
        analytic = np.sum(amp * np.exp(-2 * np.pi ** 2 * sigma ** 2 * (kx ** 2 + ky ** 2))
                          * np.exp(-2j * np.pi * (kx * p[:, 0] + ky * p[:, 1]))) \
            * np.sinc(kx * apix) * np.sinc(ky * apix)
        assert abs(direct - analytic) < 1e-6 * amp.sum()


def test_unknown_elements_are_refused_clearly():
    with pytest.raises(InputError, match="Fe"):
        atom_amplitude(np.array(["C", "Fe"], dtype=object))


def test_footprint_variance_is_the_variance_above_the_threshold():
    image = np.zeros((8, 8))
    image[2:4, 2:4] = [[10.0, 6.0], [4.0, 0.4]]     # 0.4 < 5% of 10: outside
    assert footprint_variance(image[None], 0.05)[0] == pytest.approx(np.var([10.0, 6.0, 4.0]))


# --- the data set on disk ------------------------------------------------------------------------

def _snr_from_files(out) -> tuple[float, float]:
    """Realised SNR and on-disk noise sd, measured from what was written."""
    truth = json.loads((out / "truth.json").read_text())
    clean = json.loads((out.parent / "clean" / "truth.json").read_text())
    noisy = mrcfile.read(out / "particles.mrcs").astype(float) / truth["image_scale"]
    clean_ctf = mrcfile.read(out.parent / "clean" / "particles.mrcs").astype(float) \
        / clean["image_scale"]
    noise = noisy - clean_ctf
    # Re-render the pre-CTF images from the files (model.pdb, truth.star).
    atoms = read_pdb(out / "model.pdb")
    ps = read_particles(out / "truth.star")
    cfg = truth["config"]
    pre_ctf = project_atoms(atoms.coords_A, atom_amplitude(atoms.element),
                            atom_sigma_A(atoms.element, atoms.bfactor_A2), ps.rotation,
                            ps.shift_A, cfg["box"], cfg["apix"])
    signal_var = footprint_variance(pre_ctf, cfg["footprint_fraction"]).mean()
    return signal_var / noise.var(), float(np.std(noise * truth["image_scale"]))


def test_realised_snr_matches_the_request(tmp_path):
    settings = dict(n=40, box=64, apix=1.6, crb_sample=0, seed=5)
    simulate_dataset(tmp_path / "clean", snr=float("inf"), **settings)
    summary = simulate_dataset(tmp_path / "noisy", snr=0.08, **settings)
    snr, disk_sd = _snr_from_files(tmp_path / "noisy")
    assert snr == pytest.approx(0.08, rel=0.03)
    assert summary["snr_realised"] == pytest.approx(0.08, rel=0.03)
    assert disk_sd == pytest.approx(1.0, rel=0.01)


def test_start_poses_carry_the_requested_errors_and_files_read_back(tmp_path):
    n, apix = 400, 4.0
    summary = simulate_dataset(tmp_path, n=n, box=32, apix=apix, snr=0.1, angle_rms_deg=3.0,
                               shift_rms_px=0.8, crb_sample=0, seed=2)
    truth = read_particles(tmp_path / "truth.star")
    start = read_particles(tmp_path / "particles.star")
    start_cs = read_particles(tmp_path / "particles.cs")
    same = read_particles(tmp_path / "start.star")
    assert len(truth) == len(start) == len(start_cs) == n
    # rms over n samples of a 3-dof error: relative sd of the estimate ~ 1 / sqrt(6 n).
    angle = angle_between_deg(truth.rotation, start.rotation)
    assert np.sqrt(np.mean(angle ** 2)) == pytest.approx(3.0, rel=0.08)
    shift_px = np.linalg.norm(start.shift_A - truth.shift_A, axis=1) / apix
    assert np.sqrt(np.mean(shift_px ** 2)) == pytest.approx(0.8, rel=0.1)
    np.testing.assert_array_equal(truth.half_set, np.tile([1, 2], n // 2))
    np.testing.assert_array_equal(start_cs.half_set, truth.half_set)
    np.testing.assert_array_equal(start_cs.uid, truth.uid)
    assert np.max(angle_between_deg(start_cs.rotation, start.rotation)) < 1e-3
    np.testing.assert_allclose(start_cs.shift_A, start.shift_A, atol=1e-3 * apix)
    np.testing.assert_allclose(same.rotation, start.rotation)
    # True poses are uniform on SO(3): the mean of A is ~0 (E[A] = 0 for Haar measure).
    assert np.abs(truth.rotation.mean(axis=0)).max() < 0.12
    stack = mrcfile.read(tmp_path / "particles.mrcs")
    assert stack.shape == (n, 32, 32) and stack.dtype == np.float32
    assert summary["cramer_rao"] is None


def test_flexible_set_writes_conformations_mask_and_maps(tmp_path, model):
    box, apix = 64, 2.0
    summary = simulate_dataset(tmp_path, n=30, box=box, apix=apix, snr=0.1, flexible=True,
                               flex_amplitude_A=10.0, crb_sample=2)
    angles = np.load(tmp_path / "truth_conformation.npy")
    lo, hi = summary["flexible"]["hinge_angle_range_deg"]
    assert angles.shape == (30,) and lo <= angles.min() and angles.max() <= hi
    assert hi - lo == pytest.approx(hinge_range_deg(model, 10.0))
    amp, sigma = atom_amplitude(model.element), atom_sigma_A(model.element, model.bfactor_A2)
    mean_map = mrcfile.read(tmp_path / "truth_map.mrc")
    np.testing.assert_allclose(mean_map, render_map(conformation_coords(model, 0.0), amp, sigma,
                                                    box, apix), atol=1e-5 * mean_map.max())
    first = mrcfile.read(tmp_path / "truth_map_conf0.mrc")
    last = mrcfile.read(tmp_path / "truth_map_conf4.mrc")
    mask = mrcfile.read(tmp_path / "domain_mask.mrc")
    assert 0.0 <= mask.min() and mask.max() == pytest.approx(1.0)
    # Where the conformations differ, the mask is on; the core far from the domain is off.
    changed = np.abs(last - first) > 0.2 * np.abs(last - first).max()
    assert np.all(mask[changed] > 0.99)
    core_far = conformation_coords(model, 0.0)[model.domain != DOMAIN]
    core_far = core_far[core_far[:, 0] < core_far[:, 0].min() + 10]
    idx = np.rint(core_far / apix).astype(int) + box // 2
    inside = np.all((idx >= 0) & (idx < box), axis=1)
    assert np.all(mask[idx[inside, 2], idx[inside, 1], idx[inside, 0]] == 0)
    assert summary["cramer_rao"]["n_sampled"] == 2


def test_cli_prints_what_it_wrote_and_refuses_bad_settings(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--out", str(tmp_path / "sim"), "--n", "6",
                                 "--box", "32", "--apix", "4", "--crb-sample", "2"])
    assert result.exit_code == 0, result.output
    assert "particles.star" in result.output and "Cramer-Rao" in result.output
    assert (tmp_path / "sim" / "truth.json").exists()
    bad = runner.invoke(cli, ["simulate", "--out", str(tmp_path / "bad"), "--box", "33"])
    assert bad.exit_code == 2
    assert "--box 33" in bad.output and "Traceback" not in bad.output

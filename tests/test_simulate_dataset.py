"""The simulated data set on disk: noise at the stated SNR, start poses with the stated
errors, flexible and symmetric assemblies, files with known truth."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.data.symmetry_groups import symmetry_operators
from gmmrefine.errors import InputError
from gmmrefine.io.particles import read_particles
from gmmrefine.reconstruct.symmetry import symmetrize_map
from gmmrefine.simulate.dataset import simulate_dataset
from gmmrefine.simulate.model import DOMAIN, conformation_coords, hinge_range_deg
from gmmrefine.simulate.pdb import read_pdb
from gmmrefine.simulate.render import (
    atom_amplitude,
    atom_sigma_A,
    footprint_variance,
    project_atoms,
    render_map,
)
from scipy.spatial import cKDTree


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


@pytest.mark.slow
def test_realised_snr_matches_the_request(tmp_path):
    settings = dict(n=40, box=64, apix=1.6, crb_sample=0, seed=5)
    simulate_dataset(tmp_path / "clean", snr=float("inf"), **settings)
    summary = simulate_dataset(tmp_path / "noisy", snr=0.08, **settings)
    snr, disk_sd = _snr_from_files(tmp_path / "noisy")
    assert snr == pytest.approx(0.08, rel=0.03)
    assert summary["snr_realised"] == pytest.approx(0.08, rel=0.03)
    assert disk_sd == pytest.approx(1.0, rel=0.01)


@pytest.mark.slow
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


@pytest.mark.slow
def test_flexible_set_writes_conformations_mask_and_maps(tmp_path, sim_model):
    box, apix = 64, 2.0
    summary = simulate_dataset(tmp_path, n=30, box=box, apix=apix, snr=0.1, flexible=True,
                               flex_amplitude_A=10.0, crb_sample=2)
    angles = np.load(tmp_path / "truth_conformation.npy")
    lo, hi = summary["flexible"]["hinge_angle_range_deg"]
    assert angles.shape == (30,) and lo <= angles.min() and angles.max() <= hi
    assert hi - lo == pytest.approx(hinge_range_deg(sim_model, 10.0))
    amp = atom_amplitude(sim_model.element)
    sigma = atom_sigma_A(sim_model.element, sim_model.bfactor_A2)
    mean_map = mrcfile.read(tmp_path / "truth_map.mrc")
    np.testing.assert_allclose(mean_map, render_map(conformation_coords(sim_model, 0.0), amp,
                                                    sigma, box, apix),
                               atol=1e-5 * mean_map.max())
    first = mrcfile.read(tmp_path / "truth_map_conf0.mrc")
    last = mrcfile.read(tmp_path / "truth_map_conf4.mrc")
    mask = mrcfile.read(tmp_path / "domain_mask.mrc")
    assert 0.0 <= mask.min() and mask.max() == pytest.approx(1.0)
    # Where the conformations differ, the mask is on; the core far from the domain is off.
    changed = np.abs(last - first) > 0.2 * np.abs(last - first).max()
    assert np.all(mask[changed] > 0.99)
    core_far = conformation_coords(sim_model, 0.0)[sim_model.domain != DOMAIN]
    core_far = core_far[core_far[:, 0] < core_far[:, 0].min() + 10]
    idx = np.rint(core_far / apix).astype(int) + box // 2
    inside = np.all((idx >= 0) & (idx < box), axis=1)
    assert np.all(mask[idx[inside, 2], idx[inside, 1], idx[inside, 0]] == 0)
    assert summary["cramer_rao"]["n_sampled"] == 2


@pytest.mark.parametrize("sym", ["C3", "D2"])
def test_simulate_sym_makes_a_symmetric_assembly(tmp_path, sym):
    from gmmrefine.cli.simulate import main

    out = tmp_path / sym
    result = CliRunner().invoke(main, ["--out", str(out), "--n", "40", "--box", "32", "--apix", "4",
                                       "--crb-sample", "0", "--sym", sym])
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "truth.json").read_text())
    assert truth["config"]["sym"] == sym
    assert truth["model"]["copies"] == len(symmetry_operators(sym))
    assert 90 <= truth["model"]["mass_kda"] <= 150
    # The atoms are closed under every operator (RELION's sense: V(R x) = V(x)) ...
    atoms = read_pdb(out / "model.pdb").coords_A     # from the box centre
    tree = cKDTree(atoms)
    for r in symmetry_operators(sym):
        assert tree.query(atoms @ r.T)[0].max() < 0.01
    # ... copies touch without overlapping ...
    n_sub = len(atoms) // len(symmetry_operators(sym))
    gap = cKDTree(atoms[n_sub:]).query(atoms[:n_sub])[0].min()
    assert 3.0 < gap < 6.0
    # ... and the truth map is invariant under symmetrisation.
    volume = mrcfile.read(out / "truth_map.mrc")
    again = symmetrize_map(volume, sym)
    assert np.corrcoef(volume.ravel(), again.ravel())[0, 1] > 0.99


def test_simulate_refuses_bad_symmetry_settings(tmp_path):
    from gmmrefine.simulate.dataset import simulate_dataset

    with pytest.raises(InputError, match="--sym 'C3v'"):
        simulate_dataset(tmp_path, n=4, box=32, apix=4.0, sym="C3v")
    with pytest.raises(InputError, match="--flexible with --sym C3"):
        simulate_dataset(tmp_path, n=4, box=32, apix=4.0, sym="C3", flexible=True)
    with pytest.raises(InputError, match="assembly reaches"):
        simulate_dataset(tmp_path, n=4, box=32, apix=2.0, sym="C3", crb_sample=0)


@pytest.mark.slow
def test_truth_json_keeps_each_sampled_particles_bound(tmp_path):
    summary = simulate_dataset(tmp_path, n=12, box=32, apix=4.0, snr=0.5, crb_sample=5)
    per_particle = json.loads((tmp_path / "truth.json").read_text())["cramer_rao"]["per_particle"]
    rows = np.array(per_particle["row"])
    assert len(rows) == len(set(rows)) == 5 and rows.min() >= 0 and rows.max() < 12
    rotation, shift = (np.array(per_particle[k]) for k in ("rotation_bound_deg",
                                                           "shift_bound_px"))
    assert np.all(rotation > 0) and np.all(shift > 0)
    # The summary is made of these very numbers.
    crb = summary["cramer_rao"]
    assert crb["rotation_bound_deg_median"] == np.median(rotation)
    assert crb["shift_bound_px_p90"] == np.percentile(shift, 90)

"""A gold-standard refinement end to end: halves kept apart, resume, abort, the CLI,
bad options, GMMs seeded from a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.align.refine_particles import ParticleAligner
from gmmrefine.cli.main import cli
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.errors import Aborted, InputError
from gmmrefine.io.particles import read_particles
from gmmrefine.pipeline import iteration as iteration_module
from gmmrefine.pipeline import run as refine_module
from gmmrefine.pipeline.options import RefineOptions
from helpers_runs import resolution_of


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


@pytest.mark.slow
def test_halves_never_meet_the_other_halfs_gmm_and_resume_skips_finished_work(
        refine_set, tmp_path, monkeypatch):
    met = _spy(monkeypatch)
    out = tmp_path / "run"
    options = RefineOptions(iterations=1, steps=2, n_gauss=400)
    result = refine_module.run_refinement(refine_set / "particles.star", out, options,
                                          log=lambda s: None)
    assert met == [(1, {1}), (2, {2})]
    assert result.resolution_A == pytest.approx(resolution_of(out), rel=1e-3)
    assert len(result.resolutions_A) == 1
    first = (out / "iter_001" / "iteration.json").stat().st_mtime_ns

    # Same options, one more iteration: iteration 1 is read back, only iteration 2 runs.
    met.clear()
    more = RefineOptions(iterations=2, steps=2, n_gauss=400)
    result = refine_module.run_refinement(refine_set / "particles.star", out, more,
                                          log=lambda s: None)
    assert met == [(1, {1}), (2, {2})]
    assert (out / "iter_001" / "iteration.json").stat().st_mtime_ns == first
    record = json.loads((out / "run.json").read_text())
    assert [i["iteration"] for i in record["iterations"]] == [0, 1, 2]

    met.clear()
    refine_module.run_refinement(refine_set / "particles.star", out, more, log=lambda s: None)
    assert met == []

    with pytest.raises(InputError, match="steps"):
        refine_module.run_refinement(refine_set / "particles.star", out,
                                     RefineOptions(iterations=2, steps=3, n_gauss=400),
                                     log=lambda s: None)


@pytest.mark.slow
def test_abort_stops_between_batches_and_keeps_finished_iterations(refine_set, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Aborted):
        refine_module.run_refinement(refine_set / "particles.star", out,
                                     RefineOptions(iterations=1, steps=2), log=lambda s: None,
                                     # Stop once iteration 0 is recorded (it would stop
                                     # its reconstruction too: tests/test_pipeline_abort.py).
                                     should_abort=(out / "iter_000" / "iteration.json").exists)
    assert (out / "iter_000" / "iteration.json").exists()
    assert not (out / "iter_001" / "iteration.json").exists()
    assert not (out / "particles.star").exists()


@pytest.mark.slow
def test_cli_refines_towards_the_truth_and_writes_both_host_formats(refine_set, tmp_path):
    # A perfect reference for the first GMMs: with 120 particles per half the
    # half maps alone limit the poses more than the noise does.
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["refine", str(refine_set / "particles.star"), "--out",
                                      str(out), "--iter", "1", "--res", "6",
                                      "--reference", str(refine_set / "truth_map.mrc")])
    assert result.exit_code == 0, result.output
    truth = read_particles(refine_set / "truth.star")
    start = read_particles(refine_set / "particles.star")
    apix = start.output_grid()[1]
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


def test_bad_options_fail_before_anything_is_written(tmp_path):
    # The particles are never read (a file that is no STAR would fail differently).
    particles = tmp_path / "particles.star"
    particles.write_text("not a STAR file\n")
    result = CliRunner().invoke(cli, ["refine", str(particles), "--out",
                                      str(tmp_path / "run"), "--iter", "0"])
    assert result.exit_code == 2
    assert "--iter 0: expected an integer >= 1" in result.output
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(cli, ["refine", str(particles), "--out",
                                      str(tmp_path / "run"), "--align-fsc", "1.5"])
    assert result.exit_code == 2
    assert "--align-fsc 1.5: expected a number > 0 and < 1, or auto" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_model_seeds_one_gaussian_per_atom_in_each_half(refine_set, tmp_path):
    from gmmrefine.io.gmm_files import read_gmm
    from gmmrefine.simulate.pdb import read_pdb

    out = tmp_path / "run"
    refine_module.run_refinement(refine_set / "particles.star", out,
                                 RefineOptions(iterations=1, steps=1, res_A=8.0,
                                               model=str(refine_set / "model.pdb")),
                                 log=lambda s: None)
    atoms = read_pdb(refine_set / "model.pdb").coords_A
    half1, half2 = (read_gmm(out / "iter_001" / f"gmm_half{h}.npz") for h in (1, 2))
    assert len(half1) == len(half2) == len(atoms)
    # Each half randomises the atoms on its own, at the resolution's scale.
    spread = np.std(half1.centres_A - half2.centres_A)
    assert 0.5 < spread < 8.0
    # Every run shows its start and final maps; with a model, the model's Q-scores in both.
    from gmmrefine.io.qscore_table import read_qscore_csv

    assert (out / "slices.png").is_file() and (out / "qscore.png").is_file()
    table = read_qscore_csv(out / "qscore.csv")
    assert list(table.columns[-2:]) == ["q_start", "q_final"] and table.atoms.sum() == len(atoms)
    assert "Q-score of the model: start" in (out / "run.log").read_text()

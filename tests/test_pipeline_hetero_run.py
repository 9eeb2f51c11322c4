"""hetero -> conf2pose -> composite end to end on a tiny flexible simulated set, through the
CLI, the RELION External jobs and the CryoSPARC adapter; every output opened by the tool it
is meant for (mrcfile, starfile, cryosparc-tools' Dataset, Keras)."""

from __future__ import annotations

import contextlib
import os
import shutil

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from click.testing import CliRunner
from cryosparc.dataset import Dataset
from gmmrefine.cli.main import cli
from gmmrefine.relion_external import pipeline_files as pf
from gmmrefine.simulate.dataset import simulate_dataset

pytestmark = pytest.mark.slow

FAST = ["--epochs", "2", "--latent", "2", "--bins", "2", "--res", "9", "--anchors", "8",
        "--batch", "32"]


@pytest.fixture(scope="module")
def hetero_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hetero")
    sim = root / "sim"
    simulate_dataset(sim, n=60, box=40, apix=3.0, snr=2.0, angle_rms_deg=1.0, crb_sample=0,
                     flexible=True, flex_amplitude_A=15.0, n_conformation_maps=2)
    out = root / "hetero"
    # Run from the project above the stacks, as a host runs it: particles.star then names
    # them from there (sim/particles.mrcs), not from the input's own directory.
    with contextlib.chdir(root):
        result = CliRunner().invoke(cli, ["hetero", str(sim / "truth.star"), "--out", str(out),
                                          "--mask", str(sim / "domain_mask.mrc"), *FAST])
    assert result.exit_code == 0, result.output
    return sim, out


def test_latents_are_keyed_by_image_name_in_every_output(hetero_run):
    sim, out = hetero_run
    table = pd.read_csv(out / "latent.csv")
    # Keyed by the input's own image names; particles.star names the same images as a
    # host finds them from the project directory (here: sim/particles.mrcs).
    given = starfile.read(sim / "truth.star")["particles"]
    assert list(table.image_name) == list(given.rlnImageName)
    star = starfile.read(out / "particles.star")["particles"]
    def image(name: str) -> tuple[str, str]:
        index, stack = name.split("@")
        return index, stack.split("/")[-1]

    assert list(map(image, star.rlnImageName)) == list(map(image, given.rlnImageName))
    latent = np.load(out / "latent.npy")
    np.testing.assert_allclose(latent, table[["z0", "z1"]].to_numpy(), rtol=1e-5, atol=1e-6)
    cs = Dataset.load(out / "particles.cs")
    by_uid = dict(zip(table.uid.astype(np.uint64), table.pc1))
    values = [by_uid[np.uint64(u)] for u in cs["uid"]]
    np.testing.assert_allclose(cs["components_mode_0/value"], values, rtol=1e-5, atol=1e-6)
    assert set(np.asarray(cs["components_mode_1/component"])) == {1}
    # The halves are the input's, and each half has its own networks.
    truth = starfile.read(sim / "truth.star")["particles"]
    assert list(table.half) == list(truth.rlnRandomSubset)


def test_maps_plots_and_networks_open_in_their_tools(hetero_run):
    _, out = hetero_run
    import keras

    for name in ("decoded_half1_00.mrc", "decoded_half2_01.mrc", "reconstructed_00.mrc",
                 "reconstructed_01.mrc"):
        with mrcfile.open(out / "series" / name) as mrc:
            assert mrc.data.shape == (40, 40, 40) and np.isfinite(mrc.data).all()
            assert abs(float(mrc.voxel_size.x) - 3.0) < 1e-4
    cxc = (out / "series" / "reconstructed.cxc").read_text()
    assert "reconstructed_00.mrc reconstructed_01.mrc vseries true" in cxc
    assert (out / "pca_half1.png").read_bytes()[:4] == b"\x89PNG"
    decoder = keras.models.load_model(out / "half2" / "decoder.keras")
    from gmmrefine.io.gmm_files import read_gmm

    neutral = read_gmm(out / "half2" / "gmm.npz")
    np.testing.assert_allclose(np.asarray(decoder(np.zeros((1, 2), np.float32)))[0],
                               neutral.centres_A, atol=1e-3)


def test_conf2pose_and_composite_as_relion_external_jobs(hetero_run, tmp_path, monkeypatch,
                                                         capsys):
    from gmmrefine.relion_external.tasks import main_composite, main_conf2pose

    sim, out = hetero_run
    project = tmp_path / "project"
    (project / "External").mkdir(parents=True)
    shutil.copytree(out, project / "External" / "job001")
    shutil.copy(sim / "domain_mask.mrc", project / "mask.mrc")
    monkeypatch.chdir(project)
    code = main_conf2pose(["--o", "External/job002/", "--in_parts",
                           "External/job001/particles.star", "--in_mask", "mask.mrc",
                           "--focus-iter", "1", "--root", str(sim.parent), "--j", "1"])
    job = project / "External" / "job002"
    assert code == 0 and (job / pf.SUCCESS).exists()
    nodes = starfile.read(job / pf.OUTPUT_NODES)
    assert "External/job002/particles.star" in list(nodes["rlnPipeLineNodeName"])
    converted = starfile.read(job / "converted.star")["particles"]
    final = starfile.read(job / "particles.star")["particles"]
    assert list(converted.rlnImageName) == list(final.rlnImageName)
    code = main_composite(["--o", "External/job003/", "--runs", "External/job002/", "--j", "1"])
    assert code == 0 and (project / "External" / "job003" / pf.SUCCESS).exists()
    with mrcfile.open(project / "External" / "job003" / "map.mrc") as mrc:
        assert np.isfinite(mrc.data).all()
    assert (project / "External" / "job003" / "regions.csv").read_text().count("\n") == 2
    # The composite job owns its directory: a conf2pose into it is refused before any work.
    capsys.readouterr()
    code = main_conf2pose(["--o", "External/job003/", "--in_parts",
                           "External/job001/particles.star", "--in_mask", "mask.mrc",
                           "--root", str(sim.parent), "--j", "1"])
    assert code == 1 and (project / "External" / "job003" / pf.FAILURE).exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a gmmrefine composite run" in err[0], err


def test_conf2pose_finds_stacks_named_from_the_working_directory_and_resumes_elsewhere(
        hetero_run, tmp_path, monkeypatch):
    # The hetero run named its stacks from its working directory; conf2pose, run elsewhere,
    # must read them from there (not from where the hetero run's input found them), name
    # them in converted.star from its own working directory, read them back from there,
    # and resume from a third directory.
    sim, hetero = hetero_run
    out = tmp_path / "conf"
    args = ["conf2pose", str(hetero), "--out", str(out), "--mask",
            str(sim / "domain_mask.mrc"), "--focus-iter", "1"]
    monkeypatch.chdir(sim)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    names = starfile.read(out / "converted.star")["particles"].rlnImageName
    assert all(name.split("@")[1] == "particles.mrcs" for name in names)
    assert "outside the mask: hold" in (out / "run.log").read_text()
    monkeypatch.chdir(tmp_path)
    poses = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
    final = starfile.read(out / "particles.star")["particles"][poses]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(starfile.read(out / "particles.star")["particles"][poses],
                                  final)


def test_hetero_refuses_optics_groups_on_two_grids_with_one_line(tmp_path):
    sim = tmp_path / "sim"
    simulate_dataset(sim, n=8, box=24, apix=3.0, snr=2.0, crb_sample=0)
    tables = starfile.read(sim / "particles.star")
    optics = pd.concat([tables["optics"]] * 2, ignore_index=True)
    optics["rlnImagePixelSize"] = optics["rlnImagePixelSize"].astype(float)
    optics.loc[1, ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize"]] = \
        [2, "other", 2.5]
    tables["optics"] = optics
    tables["particles"].loc[::2, "rlnOpticsGroup"] = 2
    starfile.write(tables, tmp_path / "merged.star")
    result = CliRunner().invoke(cli, ["hetero", str(tmp_path / "merged.star"), "--out",
                                      str(tmp_path / "h"), "--root", str(sim)])
    assert result.exit_code == 2, result.output
    assert "merged.star: optics groups of 2 image grids" in result.stderr
    assert not (tmp_path / "h").exists()


def test_a_relion_hetero_job_refuses_a_missing_mask_with_one_line(tmp_path, monkeypatch,
                                                                  capsys):
    from gmmrefine.relion_external.tasks import main_conf2pose

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.star").write_text("data_\n")
    assert main_conf2pose(["--o", "External/job009/", "--in_parts", "p.star"]) == 1
    assert (tmp_path / "External" / "job009" / pf.FAILURE).exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--in_mask is missing" in err[0]


class _Job:
    """cryosparc-tools' ExternalJobController as far as the adapter uses it."""

    def __init__(self, directory):
        self.uid, self.directory, self.saved, self.outputs = "J20", directory, {}, []

    def connect(self, *args, **kwargs):
        pass

    def add_output(self, type, name, slots=(), passthrough=None):
        self.outputs.append((type, name, list(slots)))

    def alloc_output(self, name, alloc=0):
        if isinstance(alloc, Dataset):
            fields = [(f"components_mode_{k}/{key}", dtype) for k in range(2)
                      for key, dtype in (("value", "<f4"), ("component", "<u4"))]
            return Dataset({"uid": alloc["uid"]}).add_fields(fields)
        return Dataset.allocate(alloc, [("map/path", "O"), ("map/psize_A", "<f4"),
                                        ("map/shape", "<u4", (3,))])

    def save_output(self, name, dataset):
        self.saved[name] = dataset

    def upload(self, target, source, overwrite=False):
        shutil.copyfile(source, self.directory / target)

    def log(self, *args, **kwargs):
        pass

    @contextlib.contextmanager
    def run(self):
        yield self


def test_cryosparc_hetero_returns_components_by_uid_and_a_volume_series(hetero_run, tmp_path,
                                                                        monkeypatch):
    import importlib

    from gmmrefine.pipeline.hetero_options import HeteroOptions
    from gmmrefine.pipeline.hetero_outputs import HeteroResult
    from gmmrefine.plugin.hetero_job import run_cryosparc_hetero

    sim, out = hetero_run
    job = _Job(tmp_path)
    upstream = Dataset.load(sim / "particles.cs")
    shuffled = upstream.take(np.random.default_rng(3).permutation(len(upstream)))

    class Project:
        uid, dir = "P1", str(sim)

        def find_job(self, uid):
            return type("Source", (), {"load_output": lambda self, name: shuffled})()

        def create_external_job(self, workspace, title=""):
            return job

    series = [{"map": f"reconstructed_{k:02d}.mrc"} for k in range(2)]
    result = HeteroResult(out, out / "latent.npy", out / "latent.csv", out / "particles.star",
                          out / "particles.cs", {}, series, {})
    monkeypatch.setattr(importlib.import_module("gmmrefine.pipeline.hetero_run"), "run_hetero",
                        lambda *args, **kwargs: result)
    client = type("Client", (), {"find_project": lambda self, uid: Project()})()
    uid = run_cryosparc_hetero(client, "P1", "J1", "W1", options=HeteroOptions(latent_dim=2),
                               work_dir=tmp_path / "work", log=lambda line: None)
    assert uid == "J20"
    saved = job.saved["particles"]
    table = pd.read_csv(out / "latent.csv")
    by_uid = dict(zip(table.uid.astype(np.uint64), table.pc2))
    np.testing.assert_allclose(saved["components_mode_1/value"],
                               [by_uid[np.uint64(u)] for u in saved["uid"]], rtol=1e-5)
    assert ("particle", "particles", [{"prefix": "components_mode_0", "dtype": "components",
                                       "required": True},
                                      {"prefix": "components_mode_1", "dtype": "components",
                                       "required": True}]) in job.outputs
    assert list(job.saved["series"]["map/path"]) == ["J20/reconstructed_00.mrc",
                                                     "J20/reconstructed_01.mrc"]
    assert all(os.path.isfile(tmp_path / f"reconstructed_{k:02d}.mrc") for k in range(2))

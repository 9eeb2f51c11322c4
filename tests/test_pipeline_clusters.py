"""Cluster settings: the options' words, the YAML file as dask-jobqueue reads it, the SLURM and
PBS job scripts dask-jobqueue writes from them, RELION's --j, and Dask's log lines."""

from __future__ import annotations

import logging

import pytest
from gmmrefine.errors import InputError
from gmmrefine.pipeline.cluster_spec import ClusterSpec, available_cores
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.relion_external.params import parse_command, split_arguments

# --- the options (no Dask needed) -------------------------------------------------------------


@pytest.mark.parametrize("text, kind, workers", [("local:3", "local", 3), ("local", "local", None),
                                                  ("SLURM:16", "slurm", 16), ("pbs", "pbs", None)])
def test_cluster_words_parse(text, kind, workers):
    spec = ClusterSpec.parse(text)
    assert (spec.kind, spec.workers) == (kind, workers)
    assert spec.n_workers == (workers or (available_cores() if kind == "local" else 1))


BAD = [(dict(cluster="local:0"), "--cluster local:0: expected local, local:N"),
       (dict(cluster="sge:2"), "--cluster sge:2: expected local, local:N"),
       (dict(scheduler="node1"), "--scheduler node1: expected an address such as tcp://"),
       (dict(cluster="local:2", scheduler="tcp://n:8786"), "expected one of them"),
       (dict(cluster="local:2", queue="gpu"), "--queue gpu without a batch cluster"),
       (dict(cluster="local:2", worker_gpus=1), "--worker-gpus 1 without a batch cluster"),
       (dict(cluster="slurm", worker_memory="lots"), "--worker-memory lots: expected an amount"),
       (dict(cluster="pbs:2", walltime="3h"), "--walltime 3h: expected HH:MM:SS"),
       (dict(scheduler="tcp://n:8786", worker_cores=4), "--worker-cores 4 with --scheduler"),
       (dict(cluster_config="c.yaml"), "--cluster-config c.yaml without --cluster"),
       (dict(worker_cores=4), "--worker-cores 4 without --cluster")]


@pytest.mark.parametrize("values, message", BAD, ids=[str(v) for v, _ in BAD])
def test_a_setting_no_cluster_can_use_is_one_line(values, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")) as err:
        RefineOptions(**values)
    assert "\n" not in str(err.value)


def test_good_settings_pass():
    RefineOptions(cluster="slurm:8", queue="gpu", worker_cores=8, worker_memory="32GB",
                  worker_gpus=1, walltime="1-00:00:00", cluster_config="c.yaml")
    RefineOptions(scheduler="tcp://10.0.0.5:8786")


def test_relion_threads_are_local_workers_when_the_cluster_row_says_local():
    def options(*args):
        return parse_command(split_arguments(["--o", "J/", "--in_parts", "P.star", *args])).options

    assert options("--cluster", "local", "--j", "4").cluster == "local:4"
    assert options("--cluster", "local:2", "--j", "4").cluster == "local:2"
    assert options("--j", "4").cluster is None          # threads, as before


# --- with Dask -------------------------------------------------------------------------------

def _clusters():
    pytest.importorskip("dask_jobqueue")
    from gmmrefine.pipeline import clusters

    return clusters


def test_the_yaml_file_is_read_as_dotted_dask_settings(tmp_path):
    clusters = _clusters()
    path = tmp_path / "jobqueue.yaml"
    path.write_text("jobqueue:\n  slurm:\n    account: cryo\n    memory: 64GB\n"
                    "    job-extra-directives: ['--constraint=a100']\n")
    assert clusters.read_cluster_config(str(path)) == {
        "jobqueue.slurm.account": "cryo", "jobqueue.slurm.memory": "64GB",
        "jobqueue.slurm.job-extra-directives": ["--constraint=a100"]}
    path.write_text("jobqueue: [unclosed\n")
    with pytest.raises(InputError, match=r"jobqueue.yaml: cannot read this cluster-config file"):
        clusters.read_cluster_config(str(path))
    path.write_text("- a list\n")
    with pytest.raises(InputError, match="not a YAML mapping"):
        clusters.read_cluster_config(str(path))
    with pytest.raises(InputError, match="missing.yaml: cannot read"):
        clusters.read_cluster_config(str(tmp_path / "missing.yaml"))


def _job_script(kind: str, options: RefineOptions, settings: dict) -> str:
    """The batch script dask-jobqueue writes for one worker job (no job is submitted; its
    scheduler listens on 127.0.0.1 only)."""
    import dask
    from dask_jobqueue import PBSCluster, SLURMCluster

    clusters = _clusters()
    with dask.config.set(settings):
        kwargs = clusters.batch_job_settings(ClusterSpec.parse(options.cluster), options)
        cls = SLURMCluster if kind == "slurm" else PBSCluster
        with cls(**kwargs, scheduler_options={"host": "127.0.0.1",
                                              "dashboard_address": None}) as cluster:
            return cluster.job_script()


def test_slurm_job_script_asks_for_the_options_and_keeps_the_yaml(tmp_path):
    options = RefineOptions(cluster="slurm:4", queue="gpu", worker_cores=8, worker_memory="32GB",
                            worker_gpus=1, walltime="04:00:00")
    script = _job_script("slurm", options, {"jobqueue.slurm.account": "cryo",
                                            "jobqueue.slurm.job-extra-directives":
                                            ["--constraint=a100"]})
    for line in ("#SBATCH -p gpu", "#SBATCH -A cryo", "#SBATCH --cpus-per-task=8",
                 "#SBATCH -t 04:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --constraint=a100",
                 "export OMP_NUM_THREADS=8", "export TF_NUM_INTRAOP_THREADS=8"):
        assert line in script, (line, script)
    assert "--mem=30G" in script or "--mem=32G" in script, script
    # One Dask thread per worker: a chunk uses the job's cores through TensorFlow itself.
    assert "--nthreads 1" in script and "--nworkers" not in script


def test_slurm_defaults_and_yaml_values_fill_what_the_options_leave(tmp_path):
    script = _job_script("slurm", RefineOptions(cluster="slurm"),
                         {"jobqueue.slurm.cores": 6, "jobqueue.slurm.memory": "24GB"})
    assert "#SBATCH --cpus-per-task=6" in script and "export OMP_NUM_THREADS=6" in script
    # dask-jobqueue's own 30-minute default is shorter than an iteration of a large set.
    assert "#SBATCH -t 12:00:00" in script and "--gres" not in script
    script = _job_script("slurm", RefineOptions(cluster="slurm"), {
        "jobqueue.slurm.walltime": "02:00:00", "jobqueue.slurm.cores": None})
    assert "#SBATCH -t 02:00:00" in script and "#SBATCH --cpus-per-task=4" in script


def test_pbs_job_script_asks_for_cores_gpus_memory_and_walltime():
    options = RefineOptions(cluster="pbs:2", queue="gpuq", worker_cores=8, worker_memory="32GB",
                            worker_gpus=1, walltime="04:00:00")
    script = _job_script("pbs", options, {})
    for line in ("#PBS -q gpuq", "#PBS -l select=1:ncpus=8:ngpus=1:mem=32GB",
                 "#PBS -l walltime=04:00:00", "export OMP_NUM_THREADS=8"):
        assert line in script, (line, script)


def test_dask_warnings_join_the_run_log_not_standard_error(capsys):
    clusters = _clusters()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    ours = logging.getLogger("gmmrefine")
    ours.addHandler(handler)
    try:
        with clusters.dask_logs_to_ours():
            logging.getLogger("distributed.nanny").warning("Worker process 123 was killed")
            logging.getLogger("distributed.scheduler").info("Receive client connection")
    finally:
        ours.removeHandler(handler)
    assert seen == ["Dask: Worker process 123 was killed"]
    assert capsys.readouterr().err == ""

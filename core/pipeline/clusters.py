"""Starting (or joining) the Dask cluster a run's options name, for the length of the run.

``local:N``: N worker processes on this machine, listening on 127.0.0.1
only, one chunk at a time each, the machine's cores shared out between
them as TensorFlow and OpenMP threads. ``slurm:N`` / ``pbs:N``: N batch
jobs through dask-jobqueue, each one worker with the cores, memory, GPUs and
wall time the options (or the cluster-config YAML, as dask-jobqueue reads
it) ask for; the scheduler runs here, in the process that runs the
iterations. ``--scheduler ADDRESS``: a cluster someone already started.

Only imported when a run names a cluster (gmmrefine.pipeline.executor), so
Dask stays an optional extra (``pip install "gmmrefine[cluster]"``). Dask's
own log lines join the run's log (warnings and errors only) instead of
standard error, which hosts read as failure.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from .cluster_spec import ClusterSpec, available_cores
from .options import RefineOptions

log = logging.getLogger(__name__)

EXTRA = 'pip install "gmmrefine[cluster]" (dask, distributed, dask-jobqueue)'
# Worker jobs' sizes when neither the options nor Dask's configuration give one.
JOB_CORES, JOB_MEMORY, JOB_WALLTIME = 4, "16GB", "12:00:00"
# Worker processes' own log lines: errors only (their standard error is the host's).
WORKER_LOG_LEVEL = logging.ERROR


@contextlib.contextmanager
def dask_client(options: RefineOptions) -> Iterator[tuple[object, str]]:
    """A ``distributed.Client`` on the cluster ``options`` name, and words for where that is
    (with the dashboard's address); the cluster (when started here) and the client are
    closed when the block ends.

    Raises
    ------
    InputError
        Dask is not installed, or the cluster-config file is not a YAML mapping:
        one line, before anything is written.
    """
    try:
        import dask
        from distributed import Client
    except ImportError:
        raise InputError(f"--cluster/--scheduler need Dask: {EXTRA}") from None
    settings = read_cluster_config(options.cluster_config)
    with dask.config.set(settings), dask_logs_to_ours():
        if options.scheduler is not None:
            client = Client(options.scheduler)
            cluster, what = None, f"the Dask scheduler at {options.scheduler}"
        else:
            spec = ClusterSpec.parse(options.cluster)
            cluster, what = start_cluster(spec, options)
            client = Client(cluster, direct_to_workers=True)
        try:
            yield client, f"on {what}; Dask dashboard {client.dashboard_link}"
        finally:
            client.close()
            if cluster is not None:
                # TensorFlow's runtime keeps a worker process from exiting within the
                # nanny's grace period; the nanny then ends it, which is all a close needs.
                with _quiet("distributed.nanny"):
                    cluster.close()


def start_cluster(spec: ClusterSpec, options: RefineOptions) -> tuple[object, str]:
    """The cluster ``spec`` names, started, and words for it."""
    if spec.kind == "local":
        return _local_cluster(spec.n_workers, options)
    return _batch_cluster(spec, options)


def worker_threads_env(threads: int) -> dict[str, str]:
    """Environment that gives one worker's TensorFlow and OpenMP ``threads`` threads."""
    return {"OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1" if threads < 4 else "2",
            # Several workers may share a GPU: none may take all of its memory.
            "TF_FORCE_GPU_ALLOW_GROWTH": "true", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _local_cluster(n_workers: int, options: RefineOptions) -> tuple[object, str]:
    from distributed import LocalCluster

    threads = options.worker_cores or max(1, available_cores() // n_workers)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=_dashboard_address(),
                           memory_limit=options.worker_memory or "auto",
                           silence_logs=WORKER_LOG_LEVEL, env=worker_threads_env(threads))
    return cluster, (f"{n_workers} local worker processes of {threads} "
                     f"thread{'s' if threads > 1 else ''} each")


def _dashboard_address() -> str:
    """Dask's usual dashboard port on this machine, or any free one when it is taken (Dask
    would take one too, but with a warning on standard error)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8787))
        except OSError:
            return "127.0.0.1:0"
    return "127.0.0.1:8787"


def batch_job_settings(spec: ClusterSpec, options: RefineOptions) -> dict:
    """dask-jobqueue's keyword arguments for one worker per job of ``spec.kind``.

    Each job runs one worker with one Dask thread (a chunk already uses every
    core of its job through TensorFlow and numpy); the job asks the batch
    system for the options' cores, memory, GPUs and wall time, or for what
    Dask's configuration (the cluster-config file) says, or for
    :data:`JOB_CORES`, :data:`JOB_MEMORY`, :data:`JOB_WALLTIME`.
    """
    import dask

    def configured(key: str):
        return dask.config.get(f"jobqueue.{spec.kind}.{key}", None)

    cores = options.worker_cores or configured("cores") or JOB_CORES
    memory = options.worker_memory or configured("memory") or JOB_MEMORY
    settings = {"cores": 1, "processes": 1, "memory": memory,
                "walltime": options.walltime or _configured_walltime(spec.kind),
                "job_script_prologue": [*(configured("job-script-prologue") or []),
                                        *(f"export {k}={v}" for k, v in
                                          worker_threads_env(cores).items())],
                "worker_extra_args": [*(configured("worker-extra-args") or [])]}
    if options.queue is not None:
        settings["queue"] = options.queue
    if spec.kind == "slurm":
        settings["job_cpu"] = cores
        extra = list(configured("job-extra-directives") or [])
        if options.worker_gpus:
            extra.append(f"--gres=gpu:{options.worker_gpus}")
        settings["job_extra_directives"] = extra
    elif options.worker_cores or options.worker_gpus or not configured("resource-spec"):
        gpus = f":ngpus={options.worker_gpus}" if options.worker_gpus else ""
        settings["resource_spec"] = f"select=1:ncpus={cores}{gpus}:mem={memory}"
    return settings


def _configured_walltime(kind: str) -> str:
    """The cluster-config file's wall time; dask-jobqueue's own default (30 minutes) is
    shorter than one iteration of a large set, so it gives way to :data:`JOB_WALLTIME`."""
    import dask
    import dask_jobqueue  # noqa: F401 - registers its defaults with dask.config

    value = dask.config.get(f"jobqueue.{kind}.walltime", None)
    packaged = dask.config.get(f"jobqueue.{kind}.walltime", None,
                               config=dask.config.collect(paths=[_packaged_config()], env={}))
    return JOB_WALLTIME if value in (None, packaged) else value


def _packaged_config() -> str:
    import dask_jobqueue

    return str(Path(dask_jobqueue.__file__).parent / "jobqueue.yaml")


def _batch_cluster(spec: ClusterSpec, options: RefineOptions) -> tuple[object, str]:
    try:
        from dask_jobqueue import PBSCluster, SLURMCluster
    except ImportError:
        raise InputError(f"--cluster {options.cluster} needs dask-jobqueue: {EXTRA}") from None
    settings = batch_job_settings(spec, options)
    cluster = (SLURMCluster if spec.kind == "slurm" else PBSCluster)(**settings)
    cluster.scale(jobs=spec.n_workers)
    words = (f"{spec.n_workers} {spec.kind.upper()} worker jobs "
             f"({settings['memory']}, {settings['walltime']}"
             + (f", {options.worker_gpus} GPU" if options.worker_gpus else "") + ")")
    log.info(f"worker job script:\n{cluster.job_script()}")
    return cluster, words


def read_cluster_config(path: str | None) -> dict:
    """Dask settings from a YAML file as Dask reads its own (``jobqueue: slurm: queue: gpu``),
    flattened to dotted keys so they join Dask's configuration key by key.

    Raises InputError (one line) when the file cannot be read or is not a mapping.
    """
    if path is None:
        return {}
    import yaml

    try:
        tree = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot read this cluster-config file ({reason}); expected "
                         "a YAML file of Dask settings") from None
    if not isinstance(tree, dict):
        raise InputError(f"{path}: not a YAML mapping; expected Dask settings such as "
                         "'jobqueue: {slurm: {queue: gpu}}'")
    return _flatten(tree)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """For the block: logger ``name`` passes on errors only."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _ToOurLog(logging.Handler):
    """Dask's warnings and errors, as lines of the run's log."""

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, f"Dask: {record.getMessage()}")


@contextlib.contextmanager
def dask_logs_to_ours() -> Iterator[None]:
    """For the block: Dask's loggers in this process write to the run's log (warnings and
    errors) instead of standard error."""
    loggers = [logging.getLogger(name) for name in ("distributed", "dask_jobqueue")]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    handler = _ToOurLog(logging.WARNING)
    for lg in loggers:
        lg.handlers = [handler]
        lg.setLevel(logging.WARNING)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)

"""Where the chunks of a run go, as the options spell it; no Dask here.

``--cluster`` names the kind of Dask cluster a run starts (``local:N``
worker processes on this machine, ``slurm:N`` / ``pbs:N`` batch jobs through
dask-jobqueue) and ``--scheduler`` an existing one; neither means the chunks
run in this process, as they always did. This module only reads and checks
those words, so the option table can refuse a bad one before anything is
imported or written; gmmrefine.pipeline.clusters starts what they name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import InputError

KINDS = ("local", "slurm", "pbs")
CLUSTER_EXPECTS = ("local, local:N, slurm, slurm:N, pbs or pbs:N (N >= 1 worker processes; "
                   "local alone: one per core), or none")
SCHEDULER_EXPECTS = "an address such as tcp://HOST:PORT, or none"
MEMORY_EXPECTS = "an amount such as 16GB or 500MiB, or auto"
WALLTIME_EXPECTS = "HH:MM:SS, HH:MM or D-HH:MM:SS, or auto"

_CLUSTER = re.compile(r"^(local|slurm|pbs)(?::(\d+))?$")
_SCHEDULER = re.compile(r"^[a-z][a-z0-9+]*://[^\s/]+:\d+/?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([kmgtp]i?b|[kmgtp])?$", re.IGNORECASE)
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")


@dataclass(frozen=True)
class ClusterSpec:
    """A ``--cluster`` value read: its kind and how many workers it asks for.

    workers None: ``local`` alone (one worker per core of this machine) or
    ``slurm`` / ``pbs`` alone (one batch job).
    """

    kind: str
    workers: int | None = None

    @classmethod
    def parse(cls, text: str) -> "ClusterSpec":
        """The spec ``text`` stands for; ValueError unless it is one of :data:`CLUSTER_EXPECTS`."""
        match = _CLUSTER.match(str(text).strip().lower())
        if match is None or (match.group(2) is not None and int(match.group(2)) < 1):
            raise ValueError(f"--cluster {text}: expected {CLUSTER_EXPECTS}")
        count = match.group(2)
        return cls(match.group(1), None if count is None else int(count))

    @property
    def n_workers(self) -> int:
        """Workers to start: as asked, or one per available core (local) or one job."""
        if self.workers is not None:
            return self.workers
        return available_cores() if self.kind == "local" else 1

    def __str__(self) -> str:
        return self.kind if self.workers is None else f"{self.kind}:{self.workers}"


def available_cores() -> int:
    """Cores this process may run on (the affinity mask a batch system sets, not the node's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:         # not on Linux
        return max(1, os.cpu_count() or 1)


def valid_scheduler(text: str) -> bool:
    """Whether ``text`` looks like a Dask scheduler address (scheme://host:port)."""
    return bool(_SCHEDULER.match(str(text).strip()))


def valid_memory(text: str) -> bool:
    """Whether ``text`` is an amount of memory as Dask and dask-jobqueue read it."""
    return bool(_MEMORY.match(str(text).strip()))


def valid_walltime(text: str) -> bool:
    """Whether ``text`` is a wall-clock limit as SLURM and PBS read it."""
    return bool(_WALLTIME.match(str(text).strip()))


# Options of a batch system's worker jobs, and how each is spelt in an error line.
_JOB_OPTIONS = {"queue": "--queue", "walltime": "--walltime", "worker_gpus": "--worker-gpus"}


def check_execution(options) -> None:
    """Raise InputError (one line) for a cluster setting of ``options`` (a RefineOptions) that
    no cluster can use, or that the chosen cluster would silently ignore."""
    spec = None
    if options.cluster is not None:
        try:
            spec = ClusterSpec.parse(options.cluster)
        except ValueError as err:
            raise InputError(str(err)) from None
    checks = ((options.scheduler, valid_scheduler, "--scheduler", SCHEDULER_EXPECTS),
              (options.worker_memory, valid_memory, "--worker-memory", MEMORY_EXPECTS),
              (options.walltime, valid_walltime, "--walltime", WALLTIME_EXPECTS))
    for value, valid, flag, expects in checks:
        if value is not None and not valid(value):
            raise InputError(f"{flag} {value}: expected {expects}")
    if spec is not None and options.scheduler is not None:
        raise InputError(f"--cluster {options.cluster} with --scheduler {options.scheduler}: "
                         "expected one of them (a cluster to start, or one that runs)")
    batch = spec is not None and spec.kind in ("slurm", "pbs")
    for name, flag in _JOB_OPTIONS.items():
        value = getattr(options, name)
        if value not in (None, 0) and not batch:
            raise InputError(f"{flag} {value} without a batch cluster: expected --cluster "
                             "slurm or pbs (worker jobs are what it sets)")
    if options.scheduler is not None:
        for value, flag in ((options.worker_cores, "--worker-cores"),
                            (options.worker_memory, "--worker-memory")):
            if value is not None:
                raise InputError(f"{flag} {value} with --scheduler: expected auto (a running "
                                 "cluster's workers are sized already)")
    if spec is None and options.scheduler is None:
        for value, flag in ((options.worker_cores, "--worker-cores"),
                            (options.worker_memory, "--worker-memory"),
                            (options.cluster_config, "--cluster-config")):
            if value is not None:
                raise InputError(f"{flag} {value} without --cluster: expected a cluster to "
                                 "configure (the run's own process takes what it is given)")

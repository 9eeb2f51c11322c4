"""TensorFlow, imported once and quietly, and the device a run computes on.

TensorFlow's C++ runtime writes start-up lines to standard error (oneDNN,
CUDA driver probing, absl's "log messages before InitializeLog") that no
log level silences in current releases. Hosts read standard error as
"something went wrong" (RELION's run.err, a CryoSPARC job's log), so the
import and the first device probe run with file descriptor 2 pointed at
/dev/null; Python exceptions still surface as usual afterwards.

Every GPU gets memory growth before anything runs: TensorFlow's default
reserves nearly all the memory of every visible GPU for one process, which
on a shared node starves every other job. What a run then holds on the
device is bounded by its batch size (alignment) and its fit box (GMM fits).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import sys
from typing import Iterator

from .errors import InputError
from .gpu_request import GpuRequest, parse_gpu

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_silenced():
        import tensorflow

        # The first device probe is where CUDA's "failed call to cuInit" comes from.
        for gpu in tensorflow.config.list_physical_devices("GPU"):
            tensorflow.config.experimental.set_memory_growth(gpu, True)
    return tensorflow


tf = _import_tensorflow()

# The GPU chosen for this process (None: the CPU), once a choice was applied.
_chosen: list = []


def select_device(gpu: str | GpuRequest | None) -> str:
    """Make TensorFlow compute on the device ``gpu`` asks for; return one line saying which.

    Parameters
    ----------
    gpu : a ``--gpu`` value (None: the first GPU, else the CPU; "cpu"; ids as
        RELION's GUI writes them, "0", "0,1", "0:1") or a parsed request.
        The first id is used: one run computes on one device.

    Returns
    -------
    The line to log: the device and its memory, or why the CPU is used.

    Raises
    ------
    InputError
        An id TensorFlow does not see (one line listing the ones it does).
    """
    request = gpu if isinstance(gpu, GpuRequest) else parse_gpu(gpu)
    gpus = tf.config.list_physical_devices("GPU")
    notes = []
    if request.cpu_only or not gpus:
        wanted = None
        if not request.cpu_only and not request.automatic:
            notes.append(f"--gpu {_ids_text(request.ids)} asked for a GPU, but TensorFlow sees "
                         "none (no CUDA build or driver: pip install 'gmmrefine[gpu]' on a GPU "
                         "node); running on the CPU")
    else:
        ids = request.ids or (0,)
        missing = [i for i in ids if i >= len(gpus)]
        if missing:
            raise InputError(f"--gpu {_ids_text(request.ids)}: TensorFlow sees GPU "
                             f"{_ids_text(range(len(gpus)))} (numbered within "
                             f"CUDA_VISIBLE_DEVICES); expected ids among those")
        wanted = gpus[ids[0]]
        if len(set(ids)) > 1:
            notes.append(f"one run computes on one GPU: GPU {ids[0]} used, "
                         f"{_ids_text(sorted(set(ids) - {ids[0]}))} left free for other jobs")
    _apply(wanted, gpus, notes)
    return "; ".join([describe_device(), *notes])


def _apply(wanted, gpus: list, notes: list[str]) -> None:
    """Make ``wanted`` (a physical GPU, or None for the CPU) the only visible GPU."""
    if _chosen and _chosen[0] == wanted:
        return
    try:
        tf.config.set_visible_devices([] if wanted is None else [wanted], "GPU")
    except RuntimeError:
        # The runtime started already (an earlier run in this process): it keeps its devices.
        if gpus:
            notes.append("TensorFlow had started on another device in this process; "
                         "it stays there")
        return
    _chosen[:] = [wanted]


def compute_on_gpu() -> bool:
    """Whether TensorFlow's default device for this process is a GPU."""
    return bool(tf.config.get_visible_devices("GPU"))


def describe_device() -> str:
    """'GPU 0: NVIDIA A100-SXM4-40GB, 39.4 GB' or 'CPU: 2 cores, 7.7 GB RAM' (the device the
    run computes on)."""
    visible = tf.config.get_visible_devices("GPU")
    if not visible:
        return f"computing on the CPU: {os.cpu_count()} cores, {_host_memory_gb():.1f} GB RAM"
    gpu = visible[0]
    details = tf.config.experimental.get_device_details(gpu)
    name = details.get("device_name", gpu.name)
    physical = tf.config.list_physical_devices("GPU").index(gpu)
    memory = _gpu_memory_gb()
    text = f"computing on GPU {physical}: {name}"
    if "compute_capability" in details:
        text += " (compute capability {}.{})".format(*details["compute_capability"])
    return text + (f", {memory:.1f} GB for TensorFlow" if memory else "")


def _gpu_memory_gb() -> float | None:
    """Memory TensorFlow may use on its first GPU (after memory growth: what it could grow to)."""
    try:
        from tensorflow.python.client import device_lib  # the one place TF reports it

        for device in device_lib.list_local_devices():
            if device.device_type == "GPU":
                return device.memory_limit / 1e9
    except Exception:  # noqa: BLE001 - a missing figure must not stop a run
        return None
    return None


def _host_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        return float("nan")


def _ids_text(ids) -> str:
    return ",".join(str(i) for i in ids)


def reset_peak_memory() -> None:
    """Start a new peak-memory measurement on the GPU (a no-op on the CPU, whose peak RSS
    cannot be reset)."""
    if compute_on_gpu():
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory_bytes() -> tuple[str, int]:
    """('gpu', peak bytes TensorFlow allocated on the GPU since the last reset) or
    ('cpu_rss', the process's peak resident memory): what bounds a run on that device."""
    if compute_on_gpu():
        return "gpu", int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    # ru_maxrss is in kilobytes on Linux.
    return "cpu_rss", int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

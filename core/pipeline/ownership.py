"""A run owns its directory: a lock naming the holder, and the record of what the run is.

Before a command writes its first file into an output directory it claims
that directory:

- the directory must not hold any of the run's inputs (``--out .`` beside
  particles.star would overwrite them);
- it takes DIR/.gmmrefine.lock, which names the process, host, command and
  start time; a second run into the same directory is refused with one line
  naming the holder, and a lock left by a run that was killed (same host, no
  such process) is taken over with a line saying so;
- DIR/run.json records the command, its inputs (resolved paths and a SHA-256
  of their contents) and options, written before anything else, so a
  directory that holds another command's run, a run on other inputs, or a
  run with other options is refused, and a resumed run is the same run;
- temporary files left by an interrupted write (io.atomic's ``.NAME.tmpPID``)
  are removed, since the lock guarantees no live writer owns them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from ..io.atomic import write_text_atomic

LOCK = ".gmmrefine.lock"
RECORD = "run.json"
_HASH_BLOCK = 1 << 20

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunIdentity:
    """What makes a run this run: its command, its input files and its options.

    ``resumable``: options that may differ when the run is resumed (how work
    is batched or how many iterations to run change no finished result);
    ``defaults``: what an option a recorded run does not mention ran at (the
    run's version did not have it yet).
    """

    command: str
    inputs: dict[str, Path]
    options: dict
    resumable: frozenset[str] = field(default_factory=frozenset)
    defaults: dict = field(default_factory=dict)
    spelling: dict = field(default_factory=dict)    # option -> how users write it

    def record(self) -> dict:
        """run.json's first fields: command, input paths and contents, options."""
        paths = {name: str(Path(p).resolve()) for name, p in self.inputs.items()}
        return {"command": self.command, "input": paths.get("particles"),
                "inputs": paths, "input_sha256": {name: file_sha256(Path(p))
                                                  for name, p in self.inputs.items()},
                "options": self.options}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def claimed(out_dir: Path, identity: RunIdentity) -> Iterator[dict]:
    """Own ``out_dir`` for the block: refuse it if it is not ours to write, lock it, record or
    check the run, clear stale temporary files. Yields the run's record (run.json's content).

    Raises InputError (one line) before anything is written when the directory holds an
    input, another live run's lock, or another run's record.
    """
    out_dir = Path(out_dir)
    check_claim(out_dir, identity)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK
    _take_lock(lock, identity.command)
    try:
        record = _check_or_write_record(out_dir / RECORD, identity)
        _remove_stale_temporaries(out_dir)
        yield record
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def check_claim(out_dir: Path, identity: RunIdentity) -> None:
    """Raise InputError (one line) if ``out_dir`` could not be claimed for this run now;
    writes nothing, so a command can refuse before long work and claim after it."""
    out_dir = Path(out_dir)
    _refuse_inputs_inside(out_dir, identity)
    holder = _read_lock(out_dir / LOCK) if (out_dir / LOCK).exists() else None
    if holder is not None and not _is_stale(holder):
        raise _in_use(out_dir / LOCK, holder)
    if (out_dir / RECORD).exists():
        _check_record(out_dir / RECORD, identity)


def _in_use(lock: Path, holder: dict) -> InputError:
    return InputError(
        f"{lock.parent}: in use by gmmrefine {holder.get('command', '?')} (pid "
        f"{holder.get('pid', '?')} on {holder.get('host', '?')} since "
        f"{holder.get('started', '?')}); expected a directory no other run is "
        f"using (if that run is gone, delete {lock})")


def _refuse_inputs_inside(out_dir: Path, identity: RunIdentity) -> None:
    out = out_dir.resolve()
    for name, path in identity.inputs.items():
        resolved = Path(path).resolve()
        if out == resolved.parent or out in resolved.parents:
            raise InputError(f"{out_dir}: the output directory holds the input {name} {path}; "
                             "expected a directory of its own for the run's outputs "
                             "(choose another --out)")


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def _take_lock(lock: Path, command: str) -> None:
    text = json.dumps({**_holder(), "command": command}) + "\n"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(lock)
            if not _is_stale(holder):
                raise _in_use(lock, holder) from None
            log.info(f"{lock.parent}: taking over the lock of a run that is no longer running "
                     f"(pid {holder.get('pid', '?')}, started {holder.get('started', '?')})")
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return
    raise InputError(f"{lock.parent}: could not take {lock}; expected a directory no other "
                     "run is using")


def _read_lock(lock: Path) -> dict:
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_stale(holder: dict) -> bool:
    """A lock is stale when its process is gone: checkable only on the host that took it.

    A lock without a readable holder (a run killed while writing it) is stale too.
    """
    if not holder:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False


def _check_or_write_record(path: Path, identity: RunIdentity) -> dict:
    if not path.exists():
        # Written first: a run killed at any later point is recognised when resumed.
        record = {**identity.record(), "iterations": []}
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
        return record
    return _check_record(path, identity)


def _check_record(path: Path, identity: RunIdentity) -> dict:
    """The record at ``path`` if it is this run's; InputError (one line) if not."""
    wanted = identity.record()
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: not a readable gmmrefine run record; expected the record "
                         "of the run in this directory (use a new --out directory)") from None
    command = old.get("command", "refine")     # records from before commands were named
    if command != identity.command:
        raise InputError(f"{path.parent}: holds a gmmrefine {command} run; expected a "
                         f"directory of its own for gmmrefine {identity.command} (use a new "
                         "--out directory)")
    if old.get("input") != wanted["input"]:
        raise InputError(f"{path}: this directory holds a run on {old.get('input')}; "
                         f"expected {wanted['input']} (use a new --out directory)")
    old_hashes = old.get("input_sha256") or {}
    for name, digest in wanted["input_sha256"].items():
        if old_hashes.get(name, digest) != digest:
            raise InputError(f"{path}: the {name} {wanted['inputs'][name]} has changed since "
                             "this run started (its contents differ); expected the same inputs "
                             "to resume (or a new --out directory)")
    _check_options(path, old.get("options", {}), identity)
    return old


def _check_options(path: Path, old: dict, identity: RunIdentity) -> None:
    for key, value in identity.options.items():
        if key in identity.resumable:
            continue
        # An option the run's version did not have yet ran at its default.
        before = old.get(key, identity.defaults.get(key))
        if before != value:
            name = identity.spelling.get(key, key)
            raise InputError(f"{path}: the run here used {name} {_shown(before)}, not "
                             f"{_shown(value)}; expected the same options to resume (or a new "
                             "--out directory)")


def _shown(value) -> str:
    return "none" if value is None else str(value)


def _remove_stale_temporaries(out_dir: Path) -> None:
    """io.atomic writes ``.NAME.tmpPID[.suffix]`` and renames it; a killed writer leaves it."""
    for tmp in out_dir.rglob(".*.tmp*"):
        if tmp.is_file() and tmp.name != LOCK:
            tmp.unlink()
            log.info(f"removed {tmp}, left by an interrupted write")

"""The mask and reference map of a run, taken from other CryoSPARC jobs' outputs.

``--mask-from J12`` or ``--reference-from J15.volume`` names a job and
optionally its output; without an output name, the job's first output of the
kind wanted (a "mask" output for the mask, a "volume" output for the
reference). The map is read where the output's ``<slot>/path`` points, under
the project directory as this machine mounts it, like the particle stacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .compat import job_outputs

# Per kind: the flag, the output type looked for, the slots whose path is the map (first found).
KINDS = {
    "mask": ("--mask-from", "mask", ("mask", "mask_refine", "mask_fsc", "map")),
    "reference": ("--reference-from", "volume", ("map", "map_sharp")),
}


def split_job_output(spec: str, flag: str) -> tuple[str, str | None]:
    """"J12" -> ("J12", None); "J12.volume" -> ("J12", "volume")."""
    job_uid, _, output = spec.strip().partition(".")
    if not job_uid.startswith("J") or not job_uid[1:].isdigit():
        raise InputError(f"{flag} {spec}: expected a job uid with an optional output name, "
                         "e.g. J12 or J12.volume")
    return job_uid, output or None


def volume_from_job(project: Any, directory: Path, spec: str, kind: str) -> Path:
    """The local path of the map that ``spec`` (JOB[.OUTPUT]) names, for ``kind`` "mask" or
    "reference".

    Raises
    ------
    InputError
        One line: no such output, no output of the kind, no map slot in it, or a map
        file not found under ``directory``.
    """
    flag, wanted_type, slots = KINDS[kind]
    job_uid, output = split_job_output(spec, flag)
    job = project.find_job(job_uid)
    outputs = job_outputs(job)
    listed = ", ".join(f"{name} ({kind_})" for name, kind_ in outputs.items()) or "none"
    if output is None:
        output = next((name for name, kind_ in outputs.items() if kind_ == wanted_type), None)
        if output is None:
            raise InputError(f"{flag} {spec}: {job_uid} has no {wanted_type} output (its "
                             f"outputs: {listed}); expected JOB.OUTPUT naming one")
    elif output not in outputs:
        raise InputError(f"{flag} {spec}: {job_uid} has no output {output!r} (its outputs: "
                         f"{listed})")
    dataset = job.load_output(output)
    fields = set(dataset.fields())
    slot = next((s for s in slots if f"{s}/path" in fields), None)
    if slot is None:
        raise InputError(f"{flag} {spec}: output {output} has no map path (fields "
                         f"{', '.join(sorted(fields))}); expected one of "
                         f"{', '.join(s + '/path' for s in slots)}")
    relative = str(np.asarray(dataset[f"{slot}/path"])[0]).lstrip(">")
    path = Path(directory) / relative
    if not path.is_file():
        raise InputError(f"{flag} {spec}: {slot}/path '{relative}' not found under the project "
                         f"directory {directory}; expected the map readable from this machine "
                         "(--project-dir where it is mounted)")
    return path

"""The command line RELION's External job builds, translated into RefineOptions.

RELION (3.1, 4.0, 5.0) runs ``EXE --o JOBDIR/ [--in_parts F] [--in_3dref F]
[--in_mask F] [--in_movies F] [--in_mics F] [--in_coords F] --LABEL VALUE ...
--j N``; the labels are whatever the user typed in the GUI's parameter rows.
Every RefineOptions field is reachable through one label in
:data:`PARAMETERS` (or an input node in :data:`INPUT_NODES`), so an option
the engine gains needs one table row here, not new code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..pipeline.options import RefineOptions

PROGRAM = "gmmrefine-relion"


_EXPECTS = {int: "an integer", float: "a number", str: "a non-empty value"}


@dataclass(frozen=True)
class Parameter:
    """One GUI parameter row: the RefineOptions field it sets and its value's type.

    ``optional`` fields accept ``auto`` (or ``none``): leave it to the engine.
    """

    field: str
    kind: type
    help: str
    optional: bool = False

    @property
    def expects(self) -> str:
        return _EXPECTS[self.kind] + (" or 'auto'" if self.optional else "")

    def parse(self, text: str) -> object:
        """The value for RefineOptions; ValueError when ``text`` is not one."""
        if self.optional and text.strip().lower() in ("auto", "none"):
            return None
        if self.kind is str and not text:
            raise ValueError(text)
        return self.kind(text)


# Label (as typed in the GUI, without "--") -> RefineOptions field.
PARAMETERS: dict[str, Parameter] = {
    "iter": Parameter("iterations", int, "gold-standard iterations (about 5 converge)"),
    "res": Parameter("res_A", float,
                     "target resolution of the first iteration, A; auto: from the "
                     "FSC of the maps at the imported poses", optional=True),
    "n_gauss": Parameter("n_gauss", int,
                         "Gaussians per GMM; auto: spacing suited to the resolution", optional=True),
    "model": Parameter("model", str,
                       "PDB or mmCIF file seeding the GMMs (one Gaussian per "
                       "non-H atom)", optional=True),
    "outside": Parameter("outside", str, "Gaussians outside the mask: widen (coarse shape "
                         "kept, default) or fade (amplitude x mask value: the region alone)"),
    "low_cut": Parameter("low_cut_A", float, "lowest resolution the FRC uses, A"),
    "batch": Parameter("batch", int, "particles aligned at once (bounds memory)"),
    "chunk": Parameter("chunk", int, "particles read from disk at once (bounds memory)"),
    "steps": Parameter("steps", int, "optimiser steps per particle and iteration; auto: 4 "
                       "Gauss-Newton steps (score cc), 10 Adam steps (score frc)", optional=True),
    "step_deg": Parameter("step_deg", float, "largest rotation step, degrees; auto: 2 (cc), "
                          "0.5 (frc)", optional=True),
    "step_px": Parameter("step_px", float, "largest shift step, pixels; auto: 1 (cc), 0.25 (frc)",
                         optional=True),
    "coarse_passes": Parameter("coarse_passes", int, "alignment passes over coarser rings "
                               "before the target's, for poses far off"),
    "score": Parameter("score", str,
                       "cc: CTF-weighted correlation over all rings (default); frc: the "
                       "paper's ring-normalised FRC"),
    "prior_deg": Parameter("prior_deg", float, "rms rotation error expected of the input poses, "
                           "degrees (a Gaussian prior, score cc); none: no prior", optional=True),
    "prior_px": Parameter("prior_px", float, "rms shift error expected of the input poses, "
                          "pixels; none: no prior", optional=True),
    "align_fsc": Parameter("align_fsc", float, "next target resolution where the FSC falls "
                           "below this; auto: 0.9 x where it falls below 0.1", optional=True),
    "sym": Parameter("sym", str, "point group, RELION's names (C1, Cn, Dn, T, O, I); focused "
                     "and patch runs expand to C1 and re-impose it"),
    "patches": Parameter("patches", int, "patch-by-patch: K focused patch runs after the global "
                         "iterations, and a composite map; none: global only", optional=True),
    "patch_iter": Parameter("patch_iterations", int, "focused iterations per patch"),
    "root": Parameter("root", str,
                      "directory image paths resolve against (default: the project)", optional=True),
    "seed": Parameter("seed", int, "random seed (k-means seeding, model randomisation)"),
}

# RELION's input-node arguments that carry a RefineOptions field.
INPUT_NODES: dict[str, str] = {"in_3dref": "reference", "in_mask": "mask"}

# Input nodes RELION may pass that refinement has no use for.
UNUSED_NODES = ("in_movies", "in_mics", "in_coords")


@dataclass(frozen=True)
class JobCommand:
    """What one External job invocation asks for."""

    job_dir: Path
    particles: Path
    options: RefineOptions
    threads: int


def known_labels() -> list[str]:
    """Every ``--label`` gmmrefine-relion accepts, for error messages and docs."""
    return ["o", "in_parts", *INPUT_NODES, "j", *PARAMETERS]


def split_arguments(argv: list[str]) -> dict[str, str]:
    """``--label value`` pairs, in order; a label without a value maps to ''.

    RELION passes a GUI row whose value is empty as a bare ``--label``.
    """
    pairs: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            raise InputError(f"argument {token!r} is not a --label; "
                             "expected --label value pairs as RELION passes them")
        label = token[2:]
        has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
        value = argv[i + 1] if has_value else ""
        if label in pairs:
            raise InputError(f"--{label} is given twice; expected each label once")
        pairs[label] = value
        i += 2 if has_value else 1
    return pairs


def job_dir_of(pairs: dict[str, str]) -> Path:
    """The job directory (``--o``), which every exit marker goes into."""
    if not pairs.get("o"):
        raise InputError("--o is missing; expected --o JOBDIR/ (RELION passes it)")
    return Path(pairs["o"])


def parse_command(pairs: dict[str, str]) -> JobCommand:
    """Translate RELION's ``--label value`` pairs into a :class:`JobCommand`.

    Raises
    ------
    InputError
        One line naming the label: an unknown one (listing the known ones), a
        value that does not parse, an input node this job does not use, or
        missing particles.
    """
    job_dir = job_dir_of(pairs)
    unknown = [label for label in pairs if label not in known_labels()]
    for label in unknown:
        if label in UNUSED_NODES:
            raise InputError(f"--{label} {pairs[label]}: refinement does not use this "
                             "input node; expected only Input particles (and optionally a 3D "
                             "reference and a mask)")
        raise InputError(f"unknown parameter --{label}; known labels: "
                         + ", ".join(PARAMETERS))
    if not pairs.get("in_parts"):
        raise InputError("no input particles (--in_parts); expected the "
                         "'Input particles' node set to a particles STAR file")
    values: dict[str, object] = {}
    for label, field_name in INPUT_NODES.items():
        if pairs.get(label):
            values[field_name] = pairs[label]
    for label, parameter in PARAMETERS.items():
        if label in pairs:
            values[parameter.field] = _parse_value(label, pairs[label], parameter)
    threads = _parse_value("j", pairs.get("j", "1"), Parameter("", int, ""))
    if threads < 1:
        raise InputError(f"--j {threads}; expected at least 1 thread")
    return JobCommand(job_dir=job_dir, particles=Path(pairs["in_parts"]),
                      options=RefineOptions(**values), threads=threads)


def _parse_value(label: str, text: str, parameter: Parameter) -> object:
    try:
        return parameter.parse(text)
    except ValueError:
        raise InputError(f"--{label} {text!r}: expected {parameter.expects}") from None


def unmapped_fields() -> list[str]:
    """RefineOptions fields no label reaches (a test keeps this empty)."""
    mapped = {p.field for p in PARAMETERS.values()} | set(INPUT_NODES.values())
    return [f.name for f in dataclasses.fields(RefineOptions) if f.name not in mapped]

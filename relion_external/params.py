"""The command line RELION's External job builds, translated into RefineOptions.

RELION (3.1, 4.0, 5.0) runs ``EXE --o JOBDIR/ [--in_parts F] [--in_3dref F]
[--in_mask F] [--in_movies F] [--in_mics F] [--in_coords F] --LABEL VALUE ...
--j N``; the labels are whatever the user typed in the GUI's parameter rows.
The labels are made from the engine's option table
(gmmrefine.pipeline.options): a label is the option's public spelling, the
``gmmrefine refine`` flag without ``--``, with the same default and checks;
the reference map and the mask come as RELION's input nodes instead.
"""

from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..pipeline.options import Option, RefineOptions, option_fields

PROGRAM = "gmmrefine-relion"

# RELION's input-node arguments that carry a RefineOptions field (its GUI's
# "Input 3D reference" and "Input 3D mask" rows), in place of a parameter label.
INPUT_NODES: dict[str, str] = {"in_3dref": "reference", "in_mask": "mask"}

# Input nodes RELION may pass that refinement has no use for.
UNUSED_NODES = ("in_movies", "in_mics", "in_coords")


@dataclass(frozen=True)
class Parameter:
    """One GUI parameter row: the RefineOptions field its label sets, how, and its default."""

    field: str
    option: Option
    default: object

    @property
    def label(self) -> str:
        return self.option.flag


def _parameters() -> dict[str, Parameter]:
    return {option.flag: Parameter(name, option, default)
            for name, option, default in option_fields() if name not in INPUT_NODES.values()}


# Label (as typed in the GUI, without "--") -> its parameter.
PARAMETERS: dict[str, Parameter] = _parameters()

# The arguments RELION adds itself, spelt its way (underscores and all).
# --pipeline_control JOBDIR/ is appended to any command line containing
# "relion_" (3.1.3 src/pipeline_jobs.cpp), e.g. `python -m gmmrefine.relion_external`;
# it names the job directory, which --o gives already.
RELION_ARGUMENTS = ("o", "in_parts", *INPUT_NODES, "j", "pipeline_control")


def table_label(label: str) -> str:
    """The option-table spelling of a GUI label.

    Jobs set up before the three front ends shared one spelling used
    underscores (``low_cut``, ``n_gauss``, ``patch_iter``); RELION passes a
    row's label as typed, so ``_`` is read as ``-`` to keep those jobs running.
    """
    return label.replace("_", "-")


@dataclass(frozen=True)
class JobCommand:
    """What one External job invocation asks for."""

    job_dir: Path
    particles: Path
    options: RefineOptions
    threads: int


def known_labels() -> list[str]:
    """Every ``--label`` gmmrefine-relion accepts, for error messages and docs."""
    return [*RELION_ARGUMENTS, *PARAMETERS]


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
        value that does not parse or is out of range (the option table's
        message), an input node this job does not use, or missing particles.
    """
    job_dir = job_dir_of(pairs)
    values = _parameter_values(pairs)
    if not pairs.get("in_parts"):
        raise InputError("no input particles (--in_parts); expected the "
                         "'Input particles' node set to a particles STAR file")
    for label, field_name in INPUT_NODES.items():
        if pairs.get(label):
            values[field_name] = pairs[label]
    threads = _threads(pairs.get("j", "1"))
    return JobCommand(job_dir=job_dir, particles=Path(pairs["in_parts"]),
                      options=workers_from_threads(RefineOptions(**values), threads),
                      threads=threads)


def workers_from_threads(options: RefineOptions, threads: int) -> RefineOptions:
    """The ``cluster`` row set to ``local`` alone means one local worker process per thread
    of RELION's "Number of threads" (``--j``); any other value is kept as it is.

    RELION's External job has no MPI field (its GUI offers threads only), and
    no MPI is involved here: workers are Dask processes.
    """
    if options.cluster is not None and options.cluster.strip().lower() == "local":
        return dataclasses.replace(options, cluster=f"local:{threads}")
    return options


def _parameter_values(pairs: dict[str, str]) -> dict[str, object]:
    """RefineOptions values of the parameter rows, by field name."""
    values: dict[str, object] = {}
    given: dict[str, str] = {}       # table label -> label as RELION passed it
    for label, text in pairs.items():
        if label in RELION_ARGUMENTS:
            continue
        if label in UNUSED_NODES:
            raise InputError(f"--{label} {text}: refinement does not use this input node; "
                             "expected only Input particles (and optionally a 3D reference "
                             "and a mask)")
        key = table_label(label)
        if key not in PARAMETERS:
            raise InputError(_unknown(label, key))
        if key in given:
            raise InputError(f"--{given[key]} and --{label} set the same parameter; "
                             "expected each label once")
        given[key] = label
        parameter = PARAMETERS[key]
        values[parameter.field] = parameter.option.parse(text)
    return values


def _unknown(label: str, key: str) -> str:
    nodes = {field_name: node for node, field_name in INPUT_NODES.items()}
    if key in nodes:
        return (f"--{label} is not a parameter here; expected the {key} as the job's input "
                f"node (--{nodes[key]})")
    return f"unknown parameter --{label}; known labels: " + ", ".join(PARAMETERS)


def _threads(text: str) -> int:
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise InputError(f"--j {text}: expected an integer >= 1 (threads)")
    return threads


# --- what the parameters are, for people -------------------------------------------------

USAGE = (f"Usage: {PROGRAM} --o JOBDIR/ --in_parts P.star [--in_3dref M.mrc] "
         "[--in_mask K.mrc] [--LABEL VALUE ...] [--j N] [--pipeline_control JOBDIR/]")


def help_text(width: int = 100) -> str:
    """What ``gmmrefine-relion --help`` prints: the usage and the parameter table."""
    intro = ("The executable a RELION External job runs (docs/relion.md). Parameters are the "
             "job's Params rows: label (no --), value; a row left out keeps its default. "
             "Labels written with _ instead of - work too.")
    rows = [(p.label, p.option.default_text(p.default), p.option.unit,
             p.option.description(unit=False)) for p in PARAMETERS.values()]
    widths = [max(len(row[i]) for row in [("label", "default", "unit", "")] + rows)
              for i in range(3)]
    indent = sum(widths) + 3 * 2
    lines = [USAGE, "", *textwrap.wrap(intro, width), ""]
    for row in [("label", "default", "unit", "what it does")] + rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  "
        wrapped = textwrap.wrap(row[3], max(width - indent, 30)) or [""]
        lines.append(head + wrapped[0])
        lines.extend(" " * indent + more for more in wrapped[1:])
    return "\n".join(lines)


def markdown_table() -> str:
    """docs/relion.md's parameter table (a test keeps the page equal to this)."""
    lines = ["| label | default | unit | what it does |", "| --- | --- | --- | --- |"]
    for p in PARAMETERS.values():
        cells = [f"`{p.label}`", p.option.default_text(p.default), p.option.unit,
                 p.option.description(unit=False)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)

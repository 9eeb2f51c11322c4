"""The heterogeneity jobs as RELION External jobs: one executable per task.

    gmmrefine-relion-hetero     --in_parts P.star [--in_mask M.mrc]   (latent per particle)
    gmmrefine-relion-conf2pose  --in_parts External/jobH/particles.star --in_mask M.mrc
    gmmrefine-relion-composite  --runs "External/jobA/ External/jobB/ ..."

One executable per task, so each job's Params rows are that task's own
(made from its option table in gmmrefine.pipeline.hetero_options, the
labels being the CLI flags without ``--``) and ``--help`` lists them; the
exit markers, abort file and output nodes are handled as for refinement
(gmmrefine.relion_external.job.run_job).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..pipeline.hetero_options import CompositeOptions, Conf2PoseOptions, HeteroOptions
from ..pipeline.options import option_fields
from . import pipeline_files as pf
from .job import Task, output_nodes, relative, run_job
from .params import Parameter, _threads, job_dir_of, table_label


@dataclass(frozen=True)
class TaskCommand:
    """One invocation of a task: its job directory, input nodes, options and threads."""

    job_dir: Path
    inputs: dict[str, str]
    options: object
    threads: int


@dataclass(frozen=True)
class TaskSpec:
    """A task's parameters: its option table, the input nodes it takes (node -> the option
    field it sets, or "" for the node itself), and labels of its own (label -> help)."""

    program: str
    table: type
    nodes: dict[str, str]
    required: tuple[str, ...]
    own_labels: dict[str, str]
    about: str

    def parameters(self) -> dict[str, Parameter]:
        set_by_node = set(self.nodes.values())
        return {option.flag: Parameter(name, option, default)
                for name, option, default in option_fields(self.table)
                if name not in set_by_node}


def parse_task(spec: TaskSpec, pairs: dict[str, str]) -> TaskCommand:
    """RELION's ``--label value`` pairs as a :class:`TaskCommand` (InputError: one line)."""
    job_dir = job_dir_of(pairs)
    parameters = spec.parameters()
    values, inputs = {}, {}
    for label, text in pairs.items():
        if label in ("o", "j", "pipeline_control"):
            continue
        if label in spec.nodes or label in spec.own_labels:
            inputs[label] = text
            continue
        if label.startswith("in_"):
            raise InputError(f"--{label} {text}: {spec.program} does not use this input node; "
                             f"expected {', '.join('--' + n for n in spec.nodes) or 'none'}")
        key = table_label(label)
        if key not in parameters:
            raise InputError(f"unknown parameter --{label}; known labels: "
                             + ", ".join([*parameters, *spec.own_labels]))
        values[parameters[key].field] = parameters[key].option.parse(text)
    for label in spec.required:
        if not inputs.get(label):
            raise InputError(f"--{label} is missing; expected {spec.nodes.get(label) or label} "
                             f"({spec.about})")
    for label, field_name in spec.nodes.items():
        if field_name and inputs.get(label):
            values[field_name] = inputs[label]
    return TaskCommand(job_dir, inputs, spec.table(**values), _threads(pairs.get("j", "1")))


def check_files(command: TaskCommand, names: tuple[str, ...]) -> None:
    """Refuse missing input files before any compute (relion #250)."""
    for label in names:
        path = command.inputs.get(label)
        if path and not Path(path).exists():
            raise InputError(f"--{label} {path}: not found (paths are relative to the project "
                             f"directory {Path.cwd()})")


def task_help(spec: TaskSpec) -> str:
    lines = [f"Usage: {spec.program} --o JOBDIR/ " + " ".join(
        f"--{n} ..." for n in [*spec.nodes, *spec.own_labels]) + " [--LABEL VALUE ...] [--j N]",
        "", *textwrap.wrap(spec.about, 100), ""]
    for label, text in spec.own_labels.items():
        lines.append(f"{label}  {text}")
    for p in spec.parameters().values():
        lines.append(f"{p.label}  {p.option.default_text(p.default)}  {p.option.unit}  "
                     f"{p.option.description(unit=False)}")
    return "\n".join(lines)


# --- the three tasks -----------------------------------------------------------------------

HETERO = TaskSpec(
    "gmmrefine-relion-hetero", HeteroOptions, {"in_parts": "", "in_mask": "mask"},
    ("in_parts",), {},
    "Per half set, an encoder and a GMM decoder trained on the input particles at their "
    "poses; latents beside the particles (latent.csv, latent.npy), maps along the first "
    "principal axis (series/).")
CONF2POSE = TaskSpec(
    "gmmrefine-relion-conf2pose", Conf2PoseOptions,
    {"in_parts": "", "in_mask": "mask"}, ("in_parts", "in_mask"), {},
    "Input particles: the particles.star of a gmmrefine-relion-hetero job (its job "
    "directory holds the networks). Each particle's conformation becomes a pose for the "
    "mask's region, then focused iterations.")
COMPOSITE = TaskSpec(
    "gmmrefine-relion-composite", CompositeOptions, {}, ("runs",),
    {"runs": "job directories of focused runs, separated by spaces or commas"},
    "The mask-weighted composite of focused runs (patch runs, conf2pose jobs, focused "
    "refinements), per half, with its FSC and per-region table.")


def _run_hetero(command: TaskCommand) -> tuple[list[pf.OutputNode], str]:
    from ..pipeline.hetero_run import run_hetero

    result = run_hetero(Path(command.inputs["in_parts"]), command.job_dir, command.options,
                        should_abort=lambda: pf.abort_requested(command.job_dir))
    nodes = [pf.OutputNode(relative(result.particles_star), "particles")]
    nodes += [pf.OutputNode(relative(result.out_dir / "series" / r["map"]), "map")
              for r in result.reconstructed_series]
    return nodes, f"{HETERO.program}: done; latents in {relative(result.latent_csv)}"


def _run_conf2pose(command: TaskCommand) -> tuple[list[pf.OutputNode], str]:
    from ..pipeline.conf2pose_run import run_conf2pose

    hetero_dir = Path(command.inputs["in_parts"]).parent
    result = run_conf2pose(hetero_dir, command.job_dir, command.options,
                           should_abort=lambda: pf.abort_requested(command.job_dir))
    # A focused refinement's outputs, declared as a refinement job declares them.
    return output_nodes(result, command.job_dir), (f"{CONF2POSE.program}: done; within the mask "
                   f"{result.start_masked_resolution_A:.2f} A -> "
                   f"{result.masked_resolution_A:.2f} A")


def _run_composite(command: TaskCommand) -> tuple[list[pf.OutputNode], str]:
    from ..pipeline.composite import run_composite
    from ..pipeline.run_directory import run_files

    runs = [Path(r) for r in command.inputs["runs"].replace(",", " ").split()]
    result = run_composite(runs, command.job_dir, command.options)
    files = run_files(command.job_dir)
    nodes = [pf.OutputNode(relative(files.half1), "halfmap"),
             pf.OutputNode(relative(files.half2), "halfmap"),
             pf.OutputNode(relative(files.map), "map")]
    return nodes, f"{COMPOSITE.program}: done; composite {result.resolution_A:.2f} A"


def _task(spec: TaskSpec, run, files: tuple[str, ...]) -> Task:
    def check(command: TaskCommand) -> None:
        check_files(command, files)
        for label, path in (("mask", getattr(command.options, "mask", None)),):
            if path and not Path(path).is_file():
                raise InputError(f"--in_{label} {path}: file not found")

    return Task(spec.program, lambda: task_help(spec), lambda pairs: parse_task(spec, pairs),
                check, run)


TASKS = {"hetero": _task(HETERO, _run_hetero, ("in_parts",)),
         "conf2pose": _task(CONF2POSE, _run_conf2pose, ("in_parts",)),
         "composite": _task(COMPOSITE, _run_composite, ())}


def main_hetero(argv: list[str] | None = None) -> int:
    """``gmmrefine-relion-hetero``."""
    return run_job(argv, TASKS["hetero"])


def main_conf2pose(argv: list[str] | None = None) -> int:
    """``gmmrefine-relion-conf2pose``."""
    return run_job(argv, TASKS["conf2pose"])


def main_composite(argv: list[str] | None = None) -> int:
    """``gmmrefine-relion-composite``."""
    return run_job(argv, TASKS["composite"])


__all__ = ["main_hetero", "main_conf2pose", "main_composite", "TASKS"]

"""The files through which an External job talks to RELION's pipeliner.

RELION learns a job's outcome only from marker files in the job directory
(with none, the pipeliner waits for ever), learns its outputs from
RELION_OUTPUT_NODES.star, and asks it to stop by creating
RELION_JOB_ABORT_NOW (checked against RELION 3.1.3; 4.0 / 5.0 read from
their source, src/pipeliner.cpp and src/pipeline_jobs.h).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..io.atomic import write_text_atomic

SUCCESS = "RELION_JOB_EXIT_SUCCESS"
FAILURE = "RELION_JOB_EXIT_FAILURE"
ABORTED = "RELION_JOB_EXIT_ABORTED"
ABORT_NOW = "RELION_JOB_ABORT_NOW"
EXIT_MARKERS = (SUCCESS, FAILURE, ABORTED)
OUTPUT_NODES = "RELION_OUTPUT_NODES.star"

# Node types per kind of output: RELION 3.1's integers (src/pipeline_jobs.h:
# NODE_PART_DATA 3, NODE_3DREF 6, NODE_HALFMAP 10, NODE_PDF_LOGFILE 13), 4.0's
# labels (LABEL_LOGFILE_CPIPE "LogFile.pdf.relion" in 4.0 and 5.0), and 5.0's,
# which renamed particles (5.0 converts old labels only in pipelines older
# than its own, so a 5.0 job must declare the new one itself).
NODE_INT = {"particles": 3, "map": 6, "halfmap": 10, "logfile": 13}
NODE_LABEL_40 = {"particles": "ParticlesData.star.relion", "map": "DensityMap.mrc",
                 "halfmap": "DensityMap.mrc.halfmap", "logfile": "LogFile.pdf.relion"}
NODE_LABEL_50 = {**NODE_LABEL_40, "particles": "ParticleGroupMetadata.star.relion"}


@dataclass(frozen=True)
class OutputNode:
    """One declared output: a project-relative path and its kind (a NODE_INT key)."""

    path: str
    kind: str


def clear_exit_markers(job_dir: Path) -> None:
    """Remove exit markers a previous run left, so RELION sees this run's outcome.

    RELION_JOB_ABORT_NOW is left alone: the pipeliner removes it before
    starting a job, so one present now is a fresh request to stop.
    """
    for name in EXIT_MARKERS:
        (job_dir / name).unlink(missing_ok=True)


def write_exit_marker(job_dir: Path, marker: str) -> None:
    """Create one exit marker (and the job directory, if the run never got that far)."""
    if marker not in EXIT_MARKERS:
        raise ValueError(f"not an exit marker: {marker}")
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / marker).touch()


def abort_requested(job_dir: Path) -> bool:
    """True once RELION's abort button (or a user) has created RELION_JOB_ABORT_NOW."""
    return (job_dir / ABORT_NOW).exists()


def clear_abort_request(job_dir: Path) -> None:
    """Remove RELION_JOB_ABORT_NOW once the job has stopped for it, as RELION's External job
    documentation asks: left behind, it stops the next run started by hand at once (only
    the pipeliner removes it before a run)."""
    (job_dir / ABORT_NOW).unlink(missing_ok=True)


def relion_version(job_dir: Path) -> int:
    """RELION's major version (3, 4 or 5) from the job.star the pipeliner wrote.

    3.1 writes ``_rlnJobType 99``; 4.x and 5.x ``_rlnJobTypeLabel
    relion.external`` and tell themselves apart by the metadata version in the
    ``# version`` line (30001 up to 4.x, 50001 from 5.0). Without a job.star
    (a run outside the pipeliner) 3 is assumed: its file is the one every
    version reads.
    """
    path = job_dir / "job.star"
    if not path.is_file():
        return 3
    text = path.read_text(errors="replace")
    if not re.search(r"^\s*_rlnJobTypeLabel\b", text, flags=re.MULTILINE):
        return 3
    versions = [int(v) for v in re.findall(r"^#\s*version\s+(\d+)", text, flags=re.MULTILINE)]
    return 5 if versions and max(versions) >= 50000 else 4


def output_nodes_text(nodes: list[OutputNode], version: int) -> str:
    """RELION_OUTPUT_NODES.star declaring ``nodes`` in both columns.

    3.1 reads the integer column (and warns that it ignores the label one);
    4.0 and 5.0 read the label column.
    """
    labels = NODE_LABEL_50 if version >= 5 else NODE_LABEL_40
    width = max(len(node.path) for node in nodes) + 2
    rows = "".join(f"{node.path:<{width}}{NODE_INT[node.kind]:>3}  {labels[node.kind]}\n"
                   for node in nodes)
    return ("\n# version 30001\n\ndata_output_nodes\n\nloop_\n"
            "_rlnPipeLineNodeName #1\n_rlnPipeLineNodeType #2\n"
            "_rlnPipeLineNodeTypeLabel #3\n" + rows + "\n")


def write_output_nodes(job_dir: Path, nodes: list[OutputNode], version: int) -> Path:
    """Write JOBDIR/RELION_OUTPUT_NODES.star (atomically) and return its path."""
    path = job_dir / OUTPUT_NODES
    write_text_atomic(path, output_nodes_text(nodes, version))
    return path

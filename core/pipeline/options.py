"""Options of a refinement run and what a run returns: the engine's public contract.

Every option is declared once, here: a :class:`RefineOptions` field whose
metadata holds an :class:`Option` (its one public spelling, type, unit, valid
values, the word that stands for None, its help). The ``gmmrefine refine``
and ``gmmrefine cryosparc`` commands and the RELION External job are made
from that table, and a RefineOptions checks itself when it is built, so all
three spell, default and refuse an option alike. Adapters build a
RefineOptions, call gmmrefine.pipeline.refinement.run_refinement and read a
RefineResult; nothing else of the engine's inside is theirs to touch.

No TensorFlow here (nor below: align.options is TF-free on purpose), so the
front ends can print their help without loading it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from ..align.options import SCORES, AlignOptions, AlignSettings, GaussNewtonSettings
from ..data.symmetry_groups import EXPECTED as POINT_GROUPS
from ..data.symmetry_groups import symmetry_operators
from ..errors import InputError
from ..gmm.focus import OUTSIDE_MODES
from ..gpu_request import CPU_WORD, parse_gpu
from . import cluster_spec
from .ownership import RunIdentity

# kind -> (what a value is, in an error line; its name in command-line help)
_KINDS = {int: ("an integer", "INT"), float: ("a number", "FLOAT"),
          str: ("a non-empty value", "TEXT")}
_UNIT_WORDS = {"A": "A", "deg": "degrees", "px": "pixels of the original images"}


@dataclass(frozen=True)
class Option:
    """How one RefineOptions field is spelt, typed, bounded and explained.

    Attributes
    ----------
    flag : the one public spelling: ``--flag`` on both command lines, the
        parameter label ``flag`` in RELION's GUI.
    kind : int, float or str.
    help : what the option does (no unit, no default: those are rendered).
    unit : "A", "deg", "px" or "".
    at_least, above, below : bounds of a number: value >= at_least, > above, < below.
    choices : the words a str option may take.
    none : the word that means None: "auto" (the engine decides) or "none"
        (off, or not given); "" when None is not a valid value.
    none_means : what that word does, for the help.
    metavar : the value's name in command-line help (default from ``kind``).
    """

    flag: str
    kind: type
    help: str
    unit: str = ""
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()
    none: str = ""
    none_means: str = ""
    metavar: str = ""

    # --- reading and checking values ------------------------------------------------
    def parse(self, text: object) -> object:
        """The value ``text`` (as typed on a command line or in RELION's GUI) stands for.

        Raises
        ------
        InputError
            One line naming ``--flag`` and what was expected.
        """
        if not isinstance(text, str):
            return text          # already a value (click passes defaults through here)
        word = text.strip()
        if self.none and word.lower() == self.none:
            return None
        try:
            value = word if self.kind is str else self.kind(word)
        except ValueError:
            raise self.error(text) from None
        if not self._valid(value):
            raise self.error(text)        # as typed: "-2", not the parsed -2.0
        return value

    def check(self, value: object) -> None:
        """Raise InputError (one line) unless ``value`` is valid for this option."""
        if value is None and self.none:
            return
        if not self._valid(value):
            raise self.error(value)

    def _valid(self, value: object) -> bool:
        if self.kind is str:
            if not isinstance(value, str) or not value.strip():
                return False
            return not self.choices or value in self.choices
        if isinstance(value, bool) or not isinstance(
                value, numbers.Integral if self.kind is int else numbers.Real):
            return False
        # Written so that NaN fails every bound.
        return (math.isfinite(value)
                and (self.at_least is None or value >= self.at_least)
                and (self.above is None or value > self.above)
                and (self.below is None or value < self.below))

    def error(self, value: object) -> InputError:
        """The one-line error every front end gives for a bad ``value``."""
        shown = value if value != "" else "''"
        return InputError(f"--{self.flag} {shown}: expected {self.expects}")

    @property
    def expects(self) -> str:
        """What a valid value looks like, e.g. "a number > 0 (A), or auto"."""
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        else:
            bounds = [f"{sign} {_number(bound)}" for sign, bound in
                      ((">=", self.at_least), (">", self.above), ("<", self.below))
                      if bound is not None]
            text = " ".join([_KINDS[self.kind][0], " and ".join(bounds)]).strip()
            text += f" ({self.unit})" if self.unit else ""
        return text + (f", or {self.none}" if self.none else "")

    # --- describing it ---------------------------------------------------------------
    @property
    def value_name(self) -> str:
        """The value's name in command-line help: INT, FLOAT, FILE, widen|fade ..."""
        return self.metavar or ("|".join(self.choices) if self.choices else _KINDS[self.kind][1])

    def description(self, unit: bool = True) -> str:
        """The help text: what it does, its unit (unless ``unit`` is False: a table with
        a unit column) and what the None word means."""
        text = self.help
        if unit and self.unit:
            text += f", {_UNIT_WORDS[self.unit]}"
        if self.none and self.none_means:
            text += f"; {self.none}: {self.none_means}"
        return text

    def command_line_help(self, default: object) -> str:
        """The help of ``--flag`` on a command line: description and default."""
        return f"{self.description()}  [default: {self.default_text(default)}]"

    def default_text(self, default: object) -> str:
        """``default`` as a user would type it (None as the None word)."""
        if default is None:
            return self.none
        return _number(default) if isinstance(default, float) else str(default)


def _number(value: float) -> str:
    return f"{value:g}"


def _option(default: object, flag: str, kind: type, help: str, **spec) -> object:
    """A RefineOptions field with its default and its :class:`Option` record."""
    return field(default=default, metadata={"option": Option(flag, kind, help, **spec)})


_GN, _ADAM = GaussNewtonSettings(), AlignSettings()


@dataclass(frozen=True)
class RefineOptions:
    """Every parameter of a refinement run (all land in DIR/run.json).

    Each field's metadata["option"] is its :class:`Option`: public spelling,
    unit, valid values and help (:func:`option_fields` lists them). Building
    one checks every value (:meth:`validate`), so a bad option is refused with
    one line before any file is written, whichever front end built it.
    """

    iterations: int = _option(
        5, "iter", int, "gold-standard iterations (GMM -> poses -> reconstruction -> FSC); "
        "about 5 converge", at_least=1)
    res_A: float | None = _option(
        None, "res", float, "target resolution of the first iteration", unit="A", above=0,
        none="auto", none_means="from the FSC of the maps at the imported poses")
    n_gauss: int | None = _option(
        None, "n-gauss", int, "Gaussians per GMM", at_least=1,
        none="auto", none_means="spacing suited to the resolution")
    model: str | None = _option(
        None, "model", str, "PDB or mmCIF model seeding the GMMs (one Gaussian per non-H "
        "atom; it must overlay a map of these particles, MRC origin 0)",
        none="none", none_means="GMMs seeded from the half maps", metavar="FILE")
    reference: str | None = _option(
        None, "reference", str, "map for the first iteration's GMMs instead of the half maps "
        "(low-passed to the target; both halves use it)",
        none="none", none_means="the half maps", metavar="FILE")
    mask: str | None = _option(
        None, "mask", str, "soft mask (values in [0, 1]) of the region to focus on: Gaussians "
        "outside it widened or faded (outside), poses turned about its centre, the FSC within "
        "it reported; with patches, where the patches go",
        none="none", none_means="no focus", metavar="FILE")
    outside: str = _option(
        "widen", "outside", str, "what a focused run does with Gaussians outside the mask: "
        "widen (width / (0.25 + 0.75 M): the coarse shape kept), fade (amplitude x M: the "
        "region aligned alone) or hold (the rest kept at each particle's input pose while "
        "the region moves)", choices=tuple(OUTSIDE_MODES))
    reference_fsc: str = _option(
        "unmasked", "reference-fsc", str, "which gold-standard FSC of a focused run weights "
        "each iteration's references and sets the next target: masked (within the mask, "
        "corrected by phase randomisation, as RELION's --solvent_correct_fsc) or unmasked "
        "(the whole box)", choices=("masked", "unmasked"))
    low_cut_A: float = _option(
        25.0, "low-cut", float, "lowest resolution the alignment uses", unit="A", above=0)
    batch: int = _option(
        16, "batch", int, "particles aligned at once (bounds GPU memory)", at_least=1)
    chunk: int = _option(
        2000, "chunk", int, "particles read and aligned at once: one chunk's full-size "
        "spectra are held in memory (bounds host memory)", at_least=1)
    gpu: str | None = _option(
        None, "gpu", str, "GPU to compute on, as RELION's 'Which GPUs to use' field writes ids "
        f"(0, 0,1 or 0:1: the first is used, one GPU per run; numbered within "
        f"CUDA_VISIBLE_DEVICES), or {CPU_WORD}", none="auto",
        none_means="the first GPU TensorFlow sees, else the CPU", metavar="IDS")
    steps: int | None = _option(
        None, "steps", int, "optimiser steps per particle and iteration", at_least=0,
        none="auto", none_means=f"{_GN.iterations} Gauss-Newton steps (score cc), "
        f"{_ADAM.steps} Adam steps (score frc)")
    step_deg: float | None = _option(
        None, "step-deg", float, "largest rotation of one optimiser step", unit="deg", above=0,
        none="auto", none_means=f"{_GN.max_step_deg:g} (score cc), {_ADAM.step_deg:g} (score frc)")
    step_px: float | None = _option(
        None, "step-px", float, "largest shift of one optimiser step", unit="px", above=0,
        none="auto", none_means=f"{_GN.max_step_px:g} (score cc), {_ADAM.step_px:g} (score frc)")
    score: str = _option(
        "cc", "score", str, "cc: correlation of the CTF-weighted particle with the projection "
        "over all rings, by Gauss-Newton; frc: the paper's ring-normalised FRC of the "
        "phase-flipped particle, by Adam (no prior, no coarse passes)", choices=SCORES)
    coarse_passes: int = _option(
        0, "coarse-passes", int, "alignment passes over coarser rings before the target's (each "
        "at twice the next one's resolution, none coarser than half of low-cut), so a pose far "
        "off comes within reach of the fine rings; score cc only", at_least=0)
    prior_deg: float | None = _option(
        3.0, "prior-deg", float, "rms rotation error expected of the input poses (the width of "
        "a Gaussian prior around each, score cc)", unit="deg", above=0,
        none="none", none_means="no prior (pure likelihood)")
    prior_px: float | None = _option(
        1.0, "prior-px", float, "rms shift error expected of the input poses (score cc)",
        unit="px", above=0, none="none", none_means="no prior (as prior-deg none)")
    align_fsc: float | None = _option(
        None, "align-fsc", float, "next target resolution: where the FSC falls below this",
        above=0, below=1, none="auto",
        none_means="0.9 x where it falls below 0.1 (the reference implementation's rule)")
    sym: str = _option(
        "C1", "sym", str, "point group, RELION's names (C1, Cn, Dn, T, O, I): global runs "
        "reconstruct with it; focused and patch runs expand the particles to C1 and re-impose "
        "it on their maps", metavar="GROUP")
    patches: int | None = _option(
        None, "patches", int, "patch-by-patch refinement: after the global iterations, K "
        "focused runs on k-means patches of the GMM and their composite map (8 is usual)",
        at_least=1, none="none", none_means="global refinement only")
    patch_iterations: int = _option(
        3, "patch-iter", int, "focused iterations per patch", at_least=1)
    apix: float | None = _option(
        None, "apix", float, "pixel size of the maps: optics groups of other pixel or box sizes "
        "are rescaled onto the maps' grid in Fourier space, as relion_reconstruct does",
        unit="A", above=0, none="auto", none_means="the first optics group's")
    box: int | None = _option(
        None, "box", int, "box of the maps, pixels (even)", at_least=2,
        none="auto", none_means="the first optics group's")
    root: str | None = _option(
        None, "root", str, "directory image paths resolve against", none="none",
        none_means="as the host does (RELION: the project directory)", metavar="DIR")
    seed: int = _option(
        0, "seed", int, "random seed (k-means seeding, model randomisation)", at_least=0)
    # --- where the chunks run (docs/scale.md); none of these changes a result ---------------
    cluster: str | None = _option(
        None, "cluster", str, "run the particle chunks on a Dask cluster: local:N worker "
        "processes on this machine (local alone: one per core), slurm:N or pbs:N batch jobs "
        "through dask-jobqueue; workers read the stacks from shared storage",
        none="none", none_means="in this process", metavar="KIND[:N]")
    scheduler: str | None = _option(
        None, "scheduler", str, "address of a running Dask scheduler to send the chunks to, "
        "e.g. tcp://node1:8786 (its workers must see the stacks at the same paths)",
        none="none", none_means="no existing cluster", metavar="ADDRESS")
    queue: str | None = _option(
        None, "queue", str, "batch queue (SLURM partition) of the worker jobs (slurm, pbs)",
        none="auto", none_means="the cluster-config file's, else the batch system's default",
        metavar="NAME")
    worker_cores: int | None = _option(
        None, "worker-cores", int, "CPU cores per worker: its TensorFlow and OpenMP threads, "
        "and what a worker job asks for", at_least=1, none="auto",
        none_means="local: this machine's cores shared out; slurm, pbs: the cluster-config "
        "file's, else 4")
    worker_memory: str | None = _option(
        None, "worker-memory", str, "memory per worker, e.g. 16GB: a chunk's spectra and one "
        "half's Fourier sums (12 x (2 box)^3 bytes) must fit", none="auto",
        none_means="local: this machine's memory shared out; slurm, pbs: the cluster-config "
        "file's, else 16GB", metavar="AMOUNT")
    worker_gpus: int = _option(
        0, "worker-gpus", int, "GPUs per worker job (slurm, pbs; a worker uses one)", at_least=0)
    walltime: str | None = _option(
        None, "walltime", str, "wall-clock limit of each worker job (slurm, pbs)", none="auto",
        none_means="the cluster-config file's, else 12:00:00", metavar="HH:MM:SS")
    cluster_config: str | None = _option(
        None, "cluster-config", str, "YAML file of Dask settings as dask-jobqueue reads them "
        "(jobqueue: slurm: interface, account, job-extra-directives ...); the options above "
        "override it", none="none", none_means="Dask's own configuration files",
        metavar="FILE")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError (one line naming the option as users spell it) for a value no
        run can use. Every front end and the engine rely on this one check."""
        check_fields(self)
        parse_gpu(self.gpu)
        if self.score == "frc" and self.coarse_passes:
            raise InputError(f"--coarse-passes {self.coarse_passes} with --score frc: "
                             "expected 0 (coarse passes exist for score cc only)")
        # AlignOptions.has_prior's rule; not through alignment(), which refuses this pair
        # with a ValueError of its own.
        if self.score == "frc" and self.prior_deg is not None and self.prior_px is not None:
            raise InputError("--score frc with a prior: expected --prior-deg none (the paper's "
                             "FRC score has no prior), or --score cc")
        try:
            symmetry_operators(self.sym)
        except InputError:
            raise InputError(f"--sym {self.sym}: expected {POINT_GROUPS}") from None
        cluster_spec.check_execution(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def alignment(self) -> AlignOptions:
        """The part of these options the per-particle alignment reads."""
        return AlignOptions(**{f.name: getattr(self, f.name)
                               for f in dataclasses.fields(AlignOptions)})


# Options that may change between a run and its resumption: more iterations,
# how work is batched, and where it runs change no finished result.
RESUMABLE = frozenset({"iterations", "batch", "chunk", "root", "gpu", "cluster", "scheduler", "queue",
                       "worker_cores", "worker_memory", "worker_gpus", "walltime",
                       "cluster_config"})
INPUT_FILE_OPTIONS = ("mask", "reference", "model")


def run_identity(particles: Path, options: "RefineOptions",
                 resumable: frozenset[str] = RESUMABLE) -> RunIdentity:
    """What makes a refinement run this run (pipeline.ownership): its particle file, the
    other files its options name, and its options."""
    files = {"particles": Path(particles)}
    files.update({name: Path(getattr(options, name)) for name in INPUT_FILE_OPTIONS
                  if getattr(options, name) is not None})
    return table_identity("refine", files, options, resumable)


def table_identity(command: str, inputs: dict[str, Path], options: object,
                   resumable: frozenset[str] = frozenset()) -> RunIdentity:
    """The identity of a run of ``command`` whose options are a declared table (RefineOptions,
    or another command's: pipeline.hetero_options); errors name options as users spell them."""
    fields = option_fields(type(options))
    return RunIdentity(command, inputs, options.to_dict(), resumable,
                       defaults={name: default for name, _, default in fields},
                       spelling={name: option.flag for name, option, _ in fields})


def check_fields(options: object) -> None:
    """Raise InputError (one line) for the first field of an option table whose value its
    :class:`Option` refuses."""
    for name, option, _ in option_fields(type(options)):
        option.check(getattr(options, name))


def option_fields(options_class: type | None = None) -> list[tuple[str, Option, object]]:
    """Every RefineOptions field as (field name, its :class:`Option`, its default), in order.

    The front ends make their flags, labels and help from this list. Another
    command's options declared the same way (fields made by ``_option``, e.g.
    pipeline.qscore.QscoreOptions, pipeline.hetero_options' tables) are listed by passing
    their class.
    """
    return [(f.name, f.metadata["option"], f.default)
            for f in dataclasses.fields(options_class or RefineOptions)]


@dataclass
class RefineResult:
    """Where a finished run put its outputs, and its resolutions."""

    out_dir: Path
    particles_star: Path
    particles_cs: Path
    half1: Path
    half2: Path
    map: Path
    fsc_csv: Path
    start_resolution_A: float
    resolution_A: float
    resolutions_A: list[float] = field(default_factory=list)   # one per finished iteration
    # With a mask: the corrected FSC's resolution within it, at the start and at the end.
    start_masked_resolution_A: float | None = None
    masked_resolution_A: float | None = None
    # The run's figures in one PDF (RELION shows it), and each figure as a PNG by title.
    logfile_pdf: Path | None = None
    figures: dict[str, Path] = field(default_factory=dict)

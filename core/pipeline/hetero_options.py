"""Options of ``hetero``, ``conf2pose`` and ``composite``: each declared once, as RefineOptions'.

Each table is a frozen dataclass whose fields carry an
:class:`gmmrefine.pipeline.options.Option`; the CLI commands, the RELION
External jobs and the CryoSPARC commands are made from them
(:func:`gmmrefine.pipeline.options.option_fields`), and building one checks
every value with the same one-line errors. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..gmm.focus import OUTSIDE_MODES
from ..hetero.settings import CONVERSIONS, FEATURE_KINDS
from .options import _option, check_fields


@dataclass(frozen=True)
class HeteroOptions:
    """Every parameter of a heterogeneity run (all land in DIR/hetero.json)."""

    latent_dim: int = _option(
        4, "latent", int, "dimensions of each particle's latent point", at_least=1)
    mask: str | None = _option(
        None, "mask", str, "soft mask of a region to resolve finely: half of the anchors are "
        "placed inside it", none="none", none_means="anchors over the whole particle",
        metavar="FILE")
    res_A: float = _option(
        8.0, "res", float, "finest resolution the networks are trained to (FRC rings from "
        "low-cut to here)", unit="A", above=0)
    low_cut_A: float = _option(
        25.0, "low-cut", float, "lowest resolution of the FRC", unit="A", above=0)
    n_gauss: int | None = _option(
        None, "n-gauss", int, "Gaussians of each half's consensus GMM", at_least=1,
        none="auto", none_means="spacing suited to the resolution")
    anchors: int = _option(
        32, "anchors", int, "anchor Gaussians whose displacements drive the whole GMM "
        "(k-means over its centres)", at_least=1)
    encoder_input: str = _option(
        "anchors", "encoder-input", str, "what the encoder reads: each particle's FRC gradient "
        "in the anchors' displacements (anchors) or in every Gaussian's centre (gaussians)",
        choices=FEATURE_KINDS)
    epochs: int = _option(
        30, "epochs", int, "training passes over each half's particles", at_least=1)
    batch: int = _option(
        64, "batch", int, "particles per training step (bounds GPU memory)", at_least=1)
    bins: int = _option(
        5, "bins", int, "maps along the first principal axis of the latent space", at_least=2)
    chunk: int = _option(
        2000, "chunk", int, "particles read at once (bounds host memory while reading)",
        at_least=1)
    root: str | None = _option(
        None, "root", str, "directory image paths resolve against", none="none",
        none_means="as the host does (RELION: the project directory)", metavar="DIR")
    seed: int = _option(0, "seed", int, "random seed (GMM, anchors, training)", at_least=0)

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Conf2PoseOptions:
    """Every parameter of a conformation-to-pose run (all land in DIR/conf2pose.json)."""

    mask: str = _option(
        None, "mask", str, "soft mask of the region whose conformation becomes a pose "
        "(required)", metavar="FILE")
    method: str = _option(
        "kabsch", "method", str, "kabsch: closed-form best rigid fit of the region's 3D "
        "centres; adam: the reference implementation's 2D RMSD of projected centres",
        choices=CONVERSIONS)
    focus_iterations: int = _option(
        3, "focus-iter", int, "focused iterations with the mask from the converted poses",
        at_least=1)
    outside: str = _option(
        "hold", "outside", str, "what the focused iterations do with Gaussians outside the "
        "mask: hold (the rest kept at each particle's pose before the conversion while the "
        "region moves), widen or fade (as refine --outside)", choices=tuple(OUTSIDE_MODES))
    batch: int = _option(
        256, "batch", int, "particles decoded at once (bounds memory)", at_least=1)
    root: str | None = _option(
        None, "root", str, "directory image paths resolve against", none="none",
        none_means="as the heterogeneity run found them", metavar="DIR")
    seed: int = _option(0, "seed", int, "random seed of the focused iterations", at_least=0)

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CompositeOptions:
    """Parameters of a composite of focused runs."""

    fill: str | None = _option(
        None, "fill", str, "run directory whose half maps fill what no mask covers",
        none="none", none_means="a patch run's global run if one is given, else the mean of "
        "the runs' maps", metavar="DIR")

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

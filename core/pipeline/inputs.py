"""Everything a refinement reads before it writes its first file, read and checked once.

Bad input of any kind (particles, a degenerate split, a mask of another
box, a reference of another pixel size, a model that cannot be read) stops
here with one line, so a run never leaves partial output behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.optics import describe_aberrations
from ..data.particles import ParticleSet
from ..data.symmetry_groups import symmetry_order
from ..errors import InputError
from ..gmm.focus import mask_centroid_A
from ..io.expand import expand_particles
from ..io.model import AtomicModel, model_to_engine_frame, read_atomic_model
from ..io.mrc import read_map, read_mask
from ..io.particles import read_particles, require_poses
from .options import RefineOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInputs:
    """A run's inputs in the engine's convention.

    particles    the set refined: halves assigned, expanded to C1 when a
                 focused run has symmetry (one copy per operator)
    recon_sym    the point group the loop reconstructs with ("C1" when expanded)
    mask         soft focus mask [z, y, x] in [0, 1], or None
    pivot_A      the mask's weighted centre (x, y, z): focused pose moves turn
                 about it, or None
    reference    map for the first iteration's GMMs, or None
    model        (coordinates in the engine's frame, per-atom weights), or None
    atomic_model the model as read (residues, atoms), for reports such as its Q-scores
    held_poses   (rotation, shift_A) per particle where ``--outside hold`` keeps the rest
                 of the particle, or None: at the input poses
    """

    source: Path
    particles: ParticleSet
    box: int
    apix: float
    options: RefineOptions
    expanded: bool
    recon_sym: str
    mask: np.ndarray | None
    pivot_A: np.ndarray | None
    reference: np.ndarray | None
    model: tuple[np.ndarray, np.ndarray] | None
    atomic_model: AtomicModel | None = None
    held_poses: tuple[np.ndarray, np.ndarray] | None = None


def read_inputs(particles: Path, options: RefineOptions) -> RunInputs:
    """Read and check a run's particles, mask, reference and model (InputError: one line)."""
    particles = Path(particles)
    ps = read_particles(particles, root=options.root)
    require_poses(ps)
    ps, note = ps.with_halves()
    if note:
        log.info(note)
    # Focus on one region of a symmetric particle: each copy of the particle
    # aligns that region on its own, so the set is expanded and the maps are
    # C1 until symmetry is re-imposed on the results.
    expanded = options.mask is not None and symmetry_order(options.sym) > 1
    if expanded:
        ps = expand_particles(ps, options.sym)
        log.info(f"focused run with {options.sym}: particles expanded to {len(ps)} copies")
    box, apix = ps.output_grid(options.box, options.apix)
    n1, n2 = ps.split_balance()
    log.info(f"{len(ps)} particles (half 1: {n1}, half 2: {n2}), maps of box {box}, "
             f"{apix:.4g} A/px, symmetry {options.sym}")
    report_optics(ps, box, apix)
    mask = None if options.mask is None else read_mask(options.mask, box, apix)
    # A focused alignment turns the region about its own centre: about the box centre,
    # a domain's turn is also a slide, which the shift prior holds back.
    pivot = None if mask is None else mask_centroid_A(mask, apix)
    atoms, coords = (None, None) if options.model is None else read_model(options.model, box,
                                                                           apix)
    return RunInputs(particles, ps, box, apix, options, expanded,
                     "C1" if expanded else options.sym, mask, pivot,
                     _read_reference(options.reference, box, apix),
                     None if atoms is None else (coords, atoms.weight), atoms)


def _read_reference(path: str | None, box: int, apix: float) -> np.ndarray | None:
    if path is None:
        return None
    reference, ref_apix = read_map(path)
    if reference.shape[0] != box or abs(ref_apix - apix) > 1e-3 * apix:
        raise InputError(f"{path}: box {reference.shape[0]}, {ref_apix:.4g} A/px; expected box "
                         f"{box} at {apix:.4g} A/px like the particles")
    return reference


def read_model(path: str, box: int, apix: float, *, box_name: str = "the particles' box",
               overlays: str = "a map of these particles") -> tuple[AtomicModel, np.ndarray]:
    """A PDB or mmCIF model as read, and its heavy atoms' coordinates in the engine's frame.

    The model is taken to overlay ``overlays`` (MRC origin 0, as
    fitted in ChimeraX); io/model.py holds that rule and what is read. A model
    mostly outside the box was fitted in another frame: it would seed nothing,
    and score nothing.
    """
    model = read_atomic_model(path)
    coords = model_to_engine_frame(model.coords_A, box, apix)
    outside = int(np.sum(np.abs(coords).max(axis=1) > box * apix / 2))
    if outside > len(coords) / 2:
        raise InputError(f"{path}: {outside} of {len(coords)} atoms lie outside "
                         f"{box_name} ({box} px at {apix:.4g} A/px); expected a model that "
                         f"overlays {overlays} (MRC origin 0)")
    return model, coords


def report_optics(ps: ParticleSet, box: int, apix: float) -> None:
    """Log each optics group that is rescaled onto the output grid or carries aberrations,
    and warn of every non-zero aberration that is not applied (never silently)."""
    for g in ps.groups_present():
        group = ps.optics[g]
        notes = [describe_aberrations(group)]
        if (group.box, group.apix) != (box, apix):
            notes.insert(0, f"box {group.box} at {group.apix:.4g} A/px rescaled onto the maps' "
                            "grid")
        text = ", ".join(n for n in notes if n)
        if text:
            log.info(f"optics group {group.name}: {text}")
        if group.mtf_name and group.mtf is None:
            log.info(f"optics group {group.name}: MTF {group.mtf_name} is shared by every "
                     "group, so it stays in the maps (RELION corrects only differing MTFs)")
        for name, value in group.unmodelled:
            log.warning(f"optics group {group.name}: {name} = {list(value)} is not applied "
                        "(no exact RELION counterpart; docs/conventions.md, Optics); carried "
                        "to the output unchanged")

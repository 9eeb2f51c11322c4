"""``gmmrefine conf2pose``: each particle's conformation turned into a pose for a region,
then focused iterations with the region's mask from those poses.

DIR/converted.star, converted.cs   the converted poses (RELION's convention), every input
                                   column carried; the focused run starts from them
DIR/conf2pose.json                 options, per half: the region's Gaussians, RMSD, frame
DIR/ ... (iter_000 = the map at the converted poses, particles.star / .cs,
          half1.mrc, half2.mrc, map.mrc, fsc.csv: an ordinary focused run directory)

Per half, the half's own decoder and neutral (zero-latent) GMM convert that
half's particles (gmmrefine.hetero.conf2pose). The two neutral GMMs come
from two half maps of one consensus run, so they share its frame up to the
noise of two fits: half 2's region is placed onto half 1's once (their density
overlap), and half 2's poses are composed with that, so the converted
poses of both halves reconstruct the region in the same frame.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.particles import ParticleSet
from ..errors import InputError
from ..gmm.focus import mask_values_at
from ..gmm.model import GMM
from ..hetero.conf2pose import (
    adam_poses,
    kabsch,
    overlap_fit,
    poses_from_turns,
    region_rmsd_2d_A,
)
from ..hetero.networks import predict
from ..io.atomic import write_text_atomic
from ..io.mrc import read_mask
from ..io.particles import read_particles, write_particles
from ..report import log as report_log
from .hetero_options import Conf2PoseOptions
from .hetero_run import HALVES, LATENT, HalfModel, load_half
from .inputs import read_inputs
from .options import RefineOptions, RefineResult, table_identity
from .ownership import check_claim, claimed
from .refinement import refine_claimed
from .run_directory import LOG, PARTICLES_STAR

log = logging.getLogger(__name__)

RECORD = "conf2pose.json"
CONVERTED_STAR, CONVERTED_CS = "converted.star", "converted.cs"
REGION_LEVEL = 0.05       # Gaussians with a smaller mask value carry no weight


def region_weights(model: HalfModel, mask: np.ndarray, apix: float) -> np.ndarray:
    """Mask value at each neutral Gaussian's centre (the weights of the fit)."""
    return mask_values_at(mask, model.gmm.centres_A, apix)


def convert_half(model: HalfModel, rotation: np.ndarray, origin_A: np.ndarray,
                 weights: np.ndarray, method: str, batch: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New poses of one half's particles and the region's 2D RMSD (A) at them.

    The latents are decoded ``batch`` at a time; only the region's Gaussians are kept.
    """
    keep = np.flatnonzero(weights >= REGION_LEVEL)
    w = weights[keep]
    neutral = model.gmm.centres_A[keep]
    new_rot, new_org, rmsd = (np.zeros_like(rotation), np.zeros_like(origin_A),
                              np.zeros(len(rotation)))
    for lo in range(0, len(rotation), batch):
        rows = slice(lo, lo + batch)
        conformation = predict(model.decoder, model.latent[rows], batch)[:, keep].astype(float)
        if method == "kabsch":
            turn, move = kabsch(conformation, neutral, w)
            new_rot[rows], new_org[rows] = poses_from_turns(rotation[rows], origin_A[rows],
                                                            turn, move)
        else:
            new_rot[rows], new_org[rows] = adam_poses(neutral, conformation, w, rotation[rows],
                                                      origin_A[rows])
        rmsd[rows] = region_rmsd_2d_A(neutral, conformation, w, new_rot[rows], new_org[rows],
                                      rotation[rows], origin_A[rows])
    return new_rot, new_org, rmsd


def half_frame(models: dict, weights: dict) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) placing half 2's neutral region onto half 1's (their density overlap)."""
    keep = {h: weights[h] >= REGION_LEVEL for h in HALVES}
    region = {h: GMM(models[h].gmm.centres_A[keep[h]], models[h].gmm.amplitudes[keep[h]],
                     models[h].gmm.widths_A[keep[h]]) for h in HALVES}
    return overlap_fit(region[2], region[1], weights[2][keep[2]], weights[1][keep[1]])


def convert_particles(hetero_dir: Path, options: Conf2PoseOptions):
    """The heterogeneity run's particles with converted poses, and what the conversion did."""
    from .hetero_run import read_hetero_record

    record = read_hetero_record(hetero_dir)
    ps = read_particles(hetero_dir / PARTICLES_STAR, root=options.root or record["root"])
    ps, _ = ps.with_halves()
    box, apix = ps.output_grid()
    mask = read_mask(options.mask, box, apix)
    models = {h: load_half(hetero_dir, h) for h in HALVES}
    if any(m is None for m in models.values()):
        raise InputError(f"{hetero_dir}: a half's networks are missing; expected a finished "
                         "gmmrefine hetero run")
    weights = {h: region_weights(models[h], mask, apix) for h in HALVES}
    for h in HALVES:
        if np.sum(weights[h] >= 0.5) < 3:
            raise InputError(f"{options.mask}: covers {int(np.sum(weights[h] >= 0.5))} of half "
                             f"{h}'s Gaussians; expected a region of at least 3")
    frame_rot, frame_move = half_frame(models, weights)
    rotation, origin = ps.rotation.copy(), ps.shift_A.copy()
    summary = {"half2_to_half1_deg": float(np.degrees(np.arccos(np.clip(
        (np.trace(frame_rot) - 1) / 2, -1, 1)))), "half2_to_half1_A": frame_move.tolist()}
    for h in HALVES:
        rows = np.flatnonzero(ps.half_set == h)
        new_rot, new_org, rmsd = convert_half(models[h], ps.rotation[rows], ps.shift_A[rows],
                                              weights[h], options.method, options.batch)
        if h == 2:
            # Into half 1's frame: the region y2 in half 2's neutral frame is at R y2 + t in half 1's.
            turn = np.broadcast_to(frame_rot, (len(rows), 3, 3))
            new_rot, new_org = poses_from_turns(new_rot, new_org, turn,
                                                np.broadcast_to(frame_move, (len(rows), 3)))
        rotation[rows], origin[rows] = new_rot, new_org
        summary[f"half{h}"] = {"region_gaussians": int(np.sum(weights[h] >= REGION_LEVEL)),
                               "rmsd_2d_A_median": float(np.median(rmsd))}
        log.info(f"half {h}: {len(rows)} particles converted ({options.method}), region "
                 f"RMSD at the new poses {np.median(rmsd):.2f} A (median)")
    return ps.with_poses(rotation, origin), summary


def run_conf2pose(hetero_dir: Path, out_dir: Path, options: Conf2PoseOptions, *,
                  should_abort: Callable[[], bool] = lambda: False) -> RefineResult:
    """Convert HETERO_DIR's particles into poses for the mask's region, then refine them with
    ``options.focus_iterations`` focused iterations into ``out_dir``; resumes a stopped run.

    The run owns ``out_dir`` as a refinement does (pipeline.ownership), its
    inputs being the heterogeneity run's particles and latents and the mask;
    the converted poses it writes there are the focused iterations' start.
    """
    hetero_dir, out = Path(hetero_dir), Path(out_dir)
    if options.mask is None:
        raise InputError("conf2pose: no --mask; expected the region whose conformation "
                         "becomes a pose")
    # Absolute, so the record names the mask wherever it is read from (composite does).
    options = dataclasses.replace(options, mask=str(Path(options.mask).resolve()))
    inputs = {"particles": hetero_dir / PARTICLES_STAR, "latents": hetero_dir / LATENT,
              "mask": Path(options.mask)}
    for name, path in inputs.items():
        if not path.is_file():
            raise InputError(f"{path}: {name} not found; expected a finished gmmrefine hetero "
                             "run directory and a mask file")
    identity = table_identity("conf2pose", inputs, options, frozenset({"batch", "root"}))
    converted = out / CONVERTED_STAR
    with report_log.held() as early:
        if not converted.is_file():
            check_claim(out, identity)      # before the conversion's work, not only after
            ps, summary = convert_particles(hetero_dir, options)
        with claimed(out, identity) as record, report_log.to_file(out / LOG) as file_log:
            early.replay(file_log)
            if not converted.is_file():
                # converted.star last: it marks the conversion finished for a resume.
                write_particles(ps, out / CONVERTED_CS)
                # "root": where converted.star's image paths resolve from (they are
                # written relative to the working directory); "hetero_root": the same
                # for the heterogeneity run's particles.star.
                write_text_atomic(out / RECORD, json.dumps(
                    {"input": str(hetero_dir.resolve()), "options": options.to_dict(),
                     "root": str(Path.cwd()), "hetero_root": str(ps.root), **summary},
                    indent=2) + "\n")
                write_particles(ps, converted)
            conversion = json.loads((out / RECORD).read_text())
            focus = dataclasses.replace(RefineOptions(), mask=str(Path(options.mask).resolve()),
                                        iterations=options.focus_iterations,
                                        outside=options.outside, root=conversion["root"],
                                        seed=options.seed,
                                        # the region is sharper than the box (measured in
                                        # docs/hetero.md): weight and target by its FSC
                                        reference_fsc="masked")
            log.info(f"focused refinement from the converted poses: "
                     f"{options.focus_iterations} iterations, outside the mask: "
                     f"{options.outside}, references weighted by the FSC within the mask")
            inputs = read_inputs(converted, focus)
            before = read_particles(hetero_dir / PARTICLES_STAR,
                                    root=conversion.get("hetero_root", conversion["root"]))
            inputs = dataclasses.replace(inputs, held_poses=poses_by_image(before,
                                                                           inputs.particles))
            return refine_claimed(inputs, out, record, should_abort)


def poses_by_image(source: ParticleSet, target: ParticleSet) -> tuple[np.ndarray, np.ndarray]:
    """``source``'s poses (rotation, shift_A) in the rows of ``target``, matched by image
    (stack file and index): where a focused run from converted poses holds the rest of each
    particle, the pose it had before the conversion."""
    def keys(ps: ParticleSet) -> list[tuple[str, int]]:
        # The two files may name one stack differently (relative to other directories).
        first = {p: i for i, p in reversed(list(enumerate(ps.image_path)))}
        files = {p: str(ps.resolve_image_path(i).resolve()) for p, i in first.items()}
        return [(files[p], int(i)) for p, i in zip(ps.image_path, ps.image_index)]

    where = {key: row for row, key in enumerate(keys(source))}
    try:
        rows = np.array([where[key] for key in keys(target)], np.int64)
    except KeyError as err:
        raise InputError(f"{target.source}: image {err.args[0][1]}@{err.args[0][0]} is not in "
                         f"{source.source}; expected the heterogeneity run's particles") from None
    return source.rotation[rows], source.shift_A[rows]

"""``gmmrefine hetero``: per half set, an encoder and a decoder trained on that half's particles.

DIR/hetero.json            input, options, per half: GMM size, anchors, losses, timings
DIR/run.log                every line of the run, with times
DIR/half{1,2}/             that half's networks and what they were built on:
    encoder.keras, decoder.keras   (plain Keras: keras.models.load_model reads them)
    gmm.npz, anchors.npz, latent.npy (the half's particles, in their input order)
DIR/latent.npy, latent.csv, particles.star, particles.cs, pca_half{1,2}.png,
DIR/series/ ...            (gmmrefine.pipeline.hetero_outputs)

The halves never see each other's particles, maps or networks: each half's
GMM comes from that half's consensus map, its networks from its particles.
A stopped run resumes: a half whose files are complete is not trained again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..align.refine_particles import alignment_grid
from ..align.rings import RingPixels, gather_rings, ring_pixels_for_resolution
from ..data.images import ParticleImages
from ..data.particles import ParticleSet
from ..errors import InputError
from ..gmm.fit import gmm_from_map
from ..gmm.model import GMM
from ..hetero.anchors import Anchors, build_anchors
from ..hetero.features import make_centre_gradient, particle_features
from ..hetero.networks import build_decoder, build_encoder, keras, predict
from ..hetero.train import TrainSettings, train_half
from ..io.atomic import atomic_path, write_text_atomic
from ..io.gmm_files import read_gmm, write_gmm
from ..io.mrc import read_map, read_mask
from ..io.particles import read_particles, require_poses
from ..io.stack import StackReader
from ..io.tables import read_fsc_csv
from ..reconstruct.backproject import reconstruct_halves
from ..reconstruct.fsc import fsc_curve
from ..report import log as report_log
from ..report.progress import Progress
from .hetero_options import HeteroOptions
from .options import table_identity
from .ownership import claimed
from .references import solvent_mask, wiener_weighted
from .run_directory import LOG, run_files

log = logging.getLogger(__name__)

RECORD = "hetero.json"
HALVES = (1, 2)
ENCODER, DECODER, GMM_FILE, ANCHORS, LATENT = (
    "encoder.keras", "decoder.keras", "gmm.npz", "anchors.npz", "latent.npy")


@dataclass(frozen=True)
class HeteroInputs:
    """What a heterogeneity run reads: the particles (halves assigned) and, from a
    refinement's run directory, its half maps and FSC (None: reconstructed here)."""

    source: Path
    particles_file: Path
    particles: ParticleSet
    box: int
    apix: float
    half_maps: tuple[np.ndarray, np.ndarray] | None
    fsc: np.ndarray | None
    mask: np.ndarray | None


def read_hetero_inputs(source: Path, options: HeteroOptions) -> HeteroInputs:
    """Particles from a STAR / .cs, or a run directory's particles, half maps and FSC."""
    source = Path(source)
    maps = fsc = None
    if source.is_dir():
        files = run_files(source)
        missing = [p for p in (files.particles_star, files.half1, files.half2, files.fsc_csv)
                   if not p.is_file()]
        if missing:
            raise InputError(f"{source}: {missing[0].name} is missing; expected a finished "
                             "gmmrefine run directory (or a particle file)")
        particles_file = files.particles_star
        maps = (read_map(files.half1)[0], read_map(files.half2)[0])
        fsc = read_fsc_csv(files.fsc_csv)
    else:
        particles_file = source
    ps = read_particles(particles_file, root=options.root)
    require_poses(ps)
    ps, note = ps.with_halves()
    if note:
        log.info(note)
    box, apix = ps.output_grid()
    grids = sorted({(ps.optics[g].box, ps.optics[g].apix) for g in ps.groups_present()})
    if len(grids) > 1:
        # The encoder's features are rings of one cropped grid for every particle.
        raise InputError(f"{particles_file}: optics groups of {len(grids)} image grids "
                         f"(box, A/px: {', '.join(f'{b} at {a:.4g}' for b, a in grids)}); "
                         "expected one box and pixel size for heterogeneity analysis (refine "
                         "and reconstruct take merged sets)")
    if maps is not None and maps[0].shape[0] != box:
        raise InputError(f"{source}: half maps of box {maps[0].shape[0]}; expected {box} like "
                         "the particles")
    mask = None if options.mask is None else read_mask(options.mask, box, apix)
    return HeteroInputs(source, particles_file, ps, box, apix, maps, fsc, mask)


@dataclass
class HalfModel:
    """One half's trained networks and what they decode around."""

    encoder: keras.Model
    decoder: keras.Model
    gmm: GMM
    anchors: Anchors
    latent: np.ndarray          # (n_half, L), the half's particles in input order
    summary: dict


def half_dir(out: Path, half: int) -> Path:
    return Path(out) / f"half{half}"


def load_half(out: Path, half: int) -> HalfModel | None:
    """A finished half's files, or None when any is missing."""
    d = half_dir(out, half)
    names = (ENCODER, DECODER, GMM_FILE, ANCHORS, LATENT, "summary.json")
    if not all((d / name).is_file() for name in names):
        return None
    with np.load(d / ANCHORS) as f:
        anchors = Anchors(f["positions_A"], f["weights"])
    return HalfModel(keras.models.load_model(d / ENCODER), keras.models.load_model(d / DECODER),
                     read_gmm(d / GMM_FILE), anchors, np.load(d / LATENT),
                     json.loads((d / "summary.json").read_text()))


def _save_half(out: Path, half: int, model: HalfModel) -> None:
    d = half_dir(out, half)
    d.mkdir(parents=True, exist_ok=True)
    for name, net in ((ENCODER, model.encoder), (DECODER, model.decoder)):
        with atomic_path(d / name) as tmp:
            net.save(tmp)
    write_gmm(model.gmm, d / GMM_FILE)
    with atomic_path(d / ANCHORS) as tmp:
        np.savez(tmp, positions_A=model.anchors.positions_A, weights=model.anchors.weights)
    with atomic_path(d / LATENT) as tmp:
        np.save(tmp, model.latent)
    # Written last: the half counts as done once it exists.
    write_text_atomic(d / "summary.json", json.dumps(model.summary, indent=2) + "\n")


def consensus_gmm(half_map: np.ndarray, fsc: np.ndarray, apix: float, options: HeteroOptions,
                  half: int) -> GMM:
    """The half's consensus GMM at the training resolution, built as ``refine`` builds its
    references (FSC-weighted half map, fitted inside an automatic solvent mask)."""
    source = wiener_weighted(half_map, fsc)
    gmm, _ = gmm_from_map(source, apix, options.res_A, n=options.n_gauss,
                          seed=options.seed * 10 + half, mask=solvent_mask(source, apix))
    return gmm


def ring_data(images: ParticleImages, index: np.ndarray, crop: int, pixels: RingPixels,
              chunk: int, label: str) -> np.ndarray:
    """(n, M) complex64: the particles' phase-flipped, cropped spectra at the FRC's rings."""
    data = np.zeros((len(index), len(pixels)), np.complex64)
    progress = Progress(len(index), label, interval_s=5.0)
    for lo in range(0, len(index), chunk):
        part = index[lo:lo + chunk]
        spectra, _, _ = images.spectra(part, box_out=crop, center=False, phase_flip=True)
        data[lo:lo + len(part)] = gather_rings(spectra, pixels)
        progress.update(len(part))
    progress.finish()
    return data


def train_one_half(inputs: HeteroInputs, reader, half_map: np.ndarray, fsc: np.ndarray,
                   half: int, options: HeteroOptions,
                   should_abort: Callable[[], bool]) -> HalfModel:
    """Consensus GMM, anchors, features, networks and latents of one half."""
    ps, t0 = inputs.particles, time.monotonic()
    index = np.flatnonzero(ps.half_set == half)
    gmm = consensus_gmm(half_map, fsc, inputs.apix, options, half)
    anchors = build_anchors(gmm, options.anchors, region=inputs.mask, apix=inputs.apix,
                            seed=options.seed * 10 + half)
    log.info(f"half {half}: {len(index)} particles, consensus GMM of {len(gmm)} Gaussians at "
             f"{options.res_A:g} A, {len(anchors)} anchors")
    crop, crop_apix = alignment_grid(inputs.box, inputs.apix, options.res_A)
    pixels = ring_pixels_for_resolution(crop, crop_apix, max(options.res_A, 2 * crop_apix),
                                        options.low_cut_A)
    data = ring_data(ParticleImages(ps, reader), index, crop, pixels, options.chunk,
                     f"half {half}: read particles")
    rotation, origin = ps.rotation[index], ps.shift_A[index]
    gradient = make_centre_gradient(gmm, pixels, crop_apix)
    features = particle_features(gradient, anchors, rotation, origin, data,
                                 options.encoder_input, batch=options.batch)
    encoder = build_encoder(features, options.latent_dim)
    decoder = build_decoder(options.latent_dim, anchors, gmm)
    settings = TrainSettings(epochs=options.epochs, batch=options.batch,
                             seed=options.seed * 10 + half)
    started = time.monotonic()

    def report(epoch: int, loss: float, frc: float) -> None:
        elapsed = time.monotonic() - started
        left = elapsed / epoch * (options.epochs - epoch)
        log.info(f"half {half}: epoch {epoch}/{options.epochs}, loss {loss:.5f}, mean FRC "
                 f"{frc:.5f}, {elapsed:.0f}s, about {left:.0f}s left")

    history = train_half(encoder, decoder, gmm, features, rotation, origin, data, pixels,
                         crop_apix, settings, report=report, should_abort=should_abort)
    latent = predict(encoder, features, options.batch)
    summary = {"particles": int(len(index)), "n_gauss": len(gmm), "anchors": len(anchors),
               "features": int(features.shape[1]), "crop_box": crop, "rings": pixels.n_rings,
               "loss": history.loss, "frc": history.frc, "seconds": time.monotonic() - t0}
    return HalfModel(encoder, decoder, gmm, anchors, latent, summary)


def read_hetero_record(hetero_dir: Path) -> dict:
    """A heterogeneity run's hetero.json (InputError: one line, when there is none)."""
    path = Path(hetero_dir) / RECORD
    if not path.is_file():
        raise InputError(f"{hetero_dir}: no {RECORD}; expected a gmmrefine hetero run directory")
    return json.loads(path.read_text())


def run_hetero(source: Path, out_dir: Path, options: HeteroOptions, *,
               should_abort: Callable[[], bool] = lambda: False):
    """Train both halves' networks on PARTICLES_OR_RUN into ``out_dir`` and write every output.

    Returns the :class:`gmmrefine.pipeline.hetero_outputs.HeteroResult`.
    Raises InputError (one line) before anything is written on bad input.
    """
    from .hetero_outputs import write_outputs

    out = Path(out_dir)
    with report_log.held() as early:
        inputs = read_hetero_inputs(Path(source), options)
        # "root": where DIR/particles.star's image paths resolve from, the working
        # directory they are written relative to (io.particles.write_particles).
        record = {"input": str(inputs.particles_file.resolve()), "options": options.to_dict(),
                  "root": str(Path.cwd())}
        files = {"particles": inputs.particles_file}
        if options.mask is not None:
            files["mask"] = Path(options.mask)
        # The run owns its directory as a refinement does (pipeline.ownership).
        identity = table_identity("hetero", files, options, frozenset({"chunk", "root"}))
        with claimed(out, identity), report_log.to_file(out / LOG) as file_log:
            early.replay(file_log)
            write_text_atomic(out / RECORD, json.dumps(record, indent=2) + "\n")
            ps = inputs.particles
            with StackReader(ps.root, source=ps.source) as reader:
                maps, fsc = inputs.half_maps, inputs.fsc
                if maps is None:
                    log.info("no run directory given: half maps at the particles' poses")
                    progress = Progress(len(ps), "consensus half maps: reconstruct",
                                        interval_s=5.0)
                    half1, half2, _ = reconstruct_halves(ps, reader, progress=progress)
                    progress.finish()
                    maps, fsc = (half1, half2), fsc_curve(half1, half2)
                models = {}
                for half, half_map in zip(HALVES, maps):
                    model = load_half(out, half)
                    if model is None:
                        model = train_one_half(inputs, reader, half_map, fsc, half, options,
                                               should_abort)
                        _save_half(out, half, model)
                    else:
                        log.info(f"half {half}: already trained")
                    models[half] = model
                return write_outputs(out, inputs, models, options, reader, record)

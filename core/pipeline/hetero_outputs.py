"""What a heterogeneity run hands its users: latents keyed by image name, principal axes,
and maps along the first axis.

DIR/latent.npy             (n, L) float32 latents, rows in the input's order
DIR/latent.csv             image name, uid, half, latent, principal components per row
DIR/particles.star         the input's particles, standard columns, poses unchanged
DIR/particles.cs           the same with the principal components as CryoSPARC's 3D
                           variability fields components_mode_K/value (and /component)
DIR/pca_half{1,2}.png      PC1 against PC2, and PC1's histogram, per half
DIR/series/decoded_half{h}_KK.mrc     each half's decoder along its PC1 (GMM rendered)
DIR/series/reconstructed_KK.mrc       particles binned along PC1 (both halves' bin K),
                                      reconstructed at their poses: the honest map
DIR/series/*.cxc           ChimeraX: open a series as a volume series and play it

Each half's latent space is its own; PC1 of half 2 is turned to point the
way half 1's does (the decoded motions along the two axes correlate
positively), so bin K of both halves holds the same end of the motion.

The principal axes are those of the motion the latents decode to, not of
the latent numbers: a latent space's scale is the network's choice, and a
direction that spreads the latents widely may move little density. Each
latent step is measured by the amplitude-weighted displacement of the
Gaussians it decodes to (the decoder's least-squares linear fit over the
half's latents), and the PCA is taken in that metric.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gmm.model import GMM, render_map
from ..hetero.networks import predict
from ..io.atomic import atomic_path, write_text_atomic
from ..io.cs import particles_to_cs_array, save_cs, structured_array
from ..io.mrc import write_map
from ..io.particles import write_particles
from ..reconstruct.backproject import reconstruct_halves
from ..reconstruct.fsc import fsc_curve, resolution_at
from ..report.latent_plots import plot_latent_pca
from ..report.progress import Progress
from .run_directory import PARTICLES_CS, PARTICLES_STAR

log = logging.getLogger(__name__)

SERIES = "series"
LATENT_NPY, LATENT_CSV = "latent.npy", "latent.csv"


@dataclass(frozen=True)
class Principal:
    """Principal axes of one half's latents.

    mean (L,); axes (L, L) rows: score k of a latent z is (z - mean) . axes[k];
    directions (L, L) rows: the latent step of one unit of score k
    (axes[k] . directions[k] = 1); explained (L,): each axis's share of the
    variance. In a plain PCA axes and directions are the same orthonormal rows.
    """

    mean: np.ndarray
    axes: np.ndarray
    explained: np.ndarray
    directions: np.ndarray

    def scores(self, latent: np.ndarray) -> np.ndarray:
        return (np.asarray(latent, float) - self.mean) @ self.axes.T

    def point(self, k: int, score: float) -> np.ndarray:
        """The latent point at ``score`` along axis k (the others at their mean)."""
        return self.mean + score * self.directions[k]

    def flipped(self, k: int) -> "Principal":
        """The same axes with axis k's sign turned."""
        axes, directions = self.axes.copy(), self.directions.copy()
        axes[k], directions[k] = -axes[k], -directions[k]
        return Principal(self.mean, axes, self.explained, directions)


@dataclass
class HeteroResult:
    """Where a finished heterogeneity run put its outputs."""

    out_dir: Path
    latent_npy: Path
    latent_csv: Path
    particles_star: Path
    particles_cs: Path
    decoded_series: dict
    reconstructed_series: list
    record: dict


def principal_axes(latent: np.ndarray, metric: np.ndarray | None = None) -> Principal:
    """PCA of latents (n, L) by SVD, components ordered by variance, the squared length of a
    latent step dz being dz^T metric dz (None: the plain Euclidean PCA).

    With metric = C C^T (Cholesky), y = C^T dz has Euclidean lengths; the PCA
    of y gives rows e_k, so score k = dz . (C e_k) and one unit of it is the
    latent step C^-T e_k.
    """
    latent = np.asarray(latent, float)
    mean = latent.mean(axis=0)
    dim = latent.shape[1]
    if metric is None:
        chol = np.eye(dim)
    else:
        metric = np.asarray(metric, float)
        # A direction that moves nothing still needs a length: a whisker of the plain one.
        ridge = 1e-9 * max(float(np.trace(metric)) / dim, 1e-30)
        chol = np.linalg.cholesky(metric + ridge * np.eye(dim))
    _, s, vt = np.linalg.svd((latent - mean) @ chol, full_matrices=False)
    var = s ** 2
    return Principal(mean, vt @ chol.T, var / max(var.sum(), 1e-30), vt @ np.linalg.inv(chol))


def motion_metric(model, batch: int = 256) -> np.ndarray:
    """(L, L) J J^T, J (L, 3N) the least-squares linear map from a half's latent deviations
    to the amplitude-weighted displacements (sqrt(a) dx) of the Gaussians they decode to.

    Decoded ``batch`` latents at a time: only J's sums are kept (memory L x 3N).
    """
    latent = np.asarray(model.latent, float)
    deviation = latent - latent.mean(axis=0)
    weight = np.sqrt(np.abs(model.gmm.amplitudes))[None, :, None]
    cross = np.zeros((latent.shape[1], 3 * len(model.gmm)))
    for lo in range(0, len(latent), batch):
        centres = predict(model.decoder, latent[lo:lo + batch], batch).astype(float)
        # The latents' deviations sum to zero, so the displacements need no centring.
        cross += deviation[lo:lo + batch].T @ (centres * weight).reshape(len(centres), -1)
    gram = deviation.T @ deviation
    ridge = 1e-9 * max(float(np.trace(gram)) / len(gram), 1e-30)
    jac = np.linalg.solve(gram + ridge * np.eye(len(gram)), cross)
    return jac @ jac.T


def image_names(ps) -> list[str]:
    """RELION's image name of every particle (``000001@stack.mrcs``): the key of the latents."""
    return [f"{i + 1:06d}@{p}" for i, p in zip(ps.image_index, ps.image_path)]


def decoded_gmm(model, latent_point: np.ndarray) -> GMM:
    """The GMM a half's decoder gives at one latent point."""
    centres = predict(model.decoder, np.asarray(latent_point, np.float32)[None], 1)[0]
    return GMM(centres, model.gmm.amplitudes, model.gmm.widths_A)


def _axis_motion(model, principal: Principal, box: int, apix: float) -> np.ndarray:
    """The decoded map at +1 sd along PC1 minus that at -1 sd."""
    sd = float(np.sqrt(np.mean(principal.scores(model.latent)[:, 0] ** 2))) or 1.0
    ends = [render_map(decoded_gmm(model, principal.point(0, s * sd)), box, apix)
            for s in (1.0, -1.0)]
    return ends[0] - ends[1]


def orient_halves(models: dict, principals: dict, box: int, apix: float) -> dict:
    """Half 2's principal axes with PC1's sign turned to move as half 1's PC1 moves."""
    motion = {h: _axis_motion(models[h], principals[h], box, apix) for h in (1, 2)}
    if float(np.sum(motion[1] * motion[2])) < 0:
        principals = {**principals, 2: principals[2].flipped(0)}
    return principals


def write_latents(out: Path, ps, latent: np.ndarray, scores: np.ndarray) -> tuple[Path, Path]:
    """latent.npy and latent.csv (keyed by image name and uid)."""
    with atomic_path(out / LATENT_NPY) as tmp:
        np.save(tmp, latent.astype(np.float32))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    dims = latent.shape[1]
    writer.writerow(["image_name", "uid", "half"] + [f"z{k}" for k in range(dims)]
                    + [f"pc{k + 1}" for k in range(scores.shape[1])])
    for name, uid, half, z, pc in zip(image_names(ps), ps.uid, ps.half_set, latent, scores):
        writer.writerow([name, int(uid), int(half)] + [f"{v:.6g}" for v in z]
                        + [f"{v:.6g}" for v in pc])
    write_text_atomic(out / LATENT_CSV, buffer.getvalue())
    return out / LATENT_NPY, out / LATENT_CSV


def write_particle_files(out: Path, ps, scores: np.ndarray) -> tuple[Path, Path]:
    """particles.star as the input (standard columns) and particles.cs with the principal
    components as CryoSPARC's 3D variability fields."""
    write_particles(ps, out / PARTICLES_STAR)
    arr = particles_to_cs_array(ps)
    columns = {name: arr[name] for name in arr.dtype.names
               if not name.startswith("components_mode_")}
    for k in range(scores.shape[1]):
        columns[f"components_mode_{k}/component"] = np.full(len(ps), k, "<u4")
        columns[f"components_mode_{k}/value"] = scores[:, k].astype("<f4")
    save_cs(out / PARTICLES_CS, structured_array(columns))
    return out / PARTICLES_STAR, out / PARTICLES_CS


def chimerax_series(path: Path, maps: list[str]) -> None:
    """A ChimeraX command file opening ``maps`` (relative to it) as one volume series, playing."""
    text = ("# gmmrefine hetero: maps along the first principal axis of the latent space\n"
            f"open {' '.join(maps)} vseries true\n"
            "vseries play #1 loop true direction oscillate\n")
    write_text_atomic(path, text)


def bins_along(scores: np.ndarray, bins: int) -> np.ndarray:
    """Bin (0 .. bins-1) of each particle by quantiles of ``scores`` (equal counts)."""
    edges = np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, scores, side="right")


def write_series(out: Path, inputs, models: dict, principals: dict, pc1: np.ndarray,
                 bins: int, reader) -> tuple[dict, list]:
    """Decoded maps per half and reconstructed maps per bin along PC1, and their .cxc files."""
    ps, box, apix = inputs.particles, inputs.box, inputs.apix
    series = out / SERIES
    series.mkdir(parents=True, exist_ok=True)
    which = np.zeros(len(ps), int)
    for h in (1, 2):
        rows = np.flatnonzero(ps.half_set == h)
        which[rows] = bins_along(pc1[rows], bins)
    decoded = {}
    for h in (1, 2):
        rows = np.flatnonzero(ps.half_set == h)
        names = []
        for k in range(bins):
            score = float(np.median(pc1[rows][which[rows] == k]))
            point = principals[h].point(0, score)
            names.append(f"decoded_half{h}_{k:02d}.mrc")
            write_map(series / names[-1], render_map(decoded_gmm(models[h], point), box, apix),
                      apix)
        chimerax_series(series / f"decoded_half{h}.cxc", names)
        decoded[h] = names
    reconstructed = []
    for k in range(bins):
        subset = ps.subset(which == k)
        half1, half2, full = reconstruct_halves(subset, reader, progress=Progress(
            len(subset), f"bin {k + 1}/{bins} along PC1: reconstruct", interval_s=5.0))
        name = f"reconstructed_{k:02d}.mrc"
        write_map(series / name, full, apix)
        res = resolution_at(fsc_curve(half1, half2), box, apix)
        reconstructed.append({"map": name, "particles": len(subset), "resolution_A": res})
        log.info(f"bin {k + 1}/{bins} along PC1: {len(subset)} particles, {res:.2f} A")
    chimerax_series(series / "reconstructed.cxc", [r["map"] for r in reconstructed])
    return decoded, reconstructed


def write_outputs(out: Path, inputs, models: dict, options, reader, record: dict) -> HeteroResult:
    """Every output of a heterogeneity run from both halves' trained models."""
    ps = inputs.particles
    latent = np.zeros((len(ps), options.latent_dim), np.float32)
    scores = np.zeros((len(ps), options.latent_dim))
    principals = {h: principal_axes(models[h].latent, motion_metric(models[h])) for h in (1, 2)}
    principals = orient_halves(models, principals, inputs.box, inputs.apix)
    for h in (1, 2):
        rows = np.flatnonzero(ps.half_set == h)
        latent[rows] = models[h].latent
        scores[rows] = principals[h].scores(models[h].latent)
        plot_latent_pca(out / f"pca_half{h}.png", scores[rows], principals[h].explained,
                        f"half {h}: {len(rows)} particles")
    latent_npy, latent_csv = write_latents(out, ps, latent, scores)
    star, cs = write_particle_files(out, ps, scores)
    decoded, reconstructed = write_series(out, inputs, models, principals, scores[:, 0],
                                          options.bins, reader)
    record = {**record, "halves": {str(h): {**models[h].summary,
                                            "explained_variance": principals[h].explained.tolist(),
                                            "pc_axes": principals[h].axes.tolist(),
                                            "pc_directions": principals[h].directions.tolist(),
                                            "latent_mean": principals[h].mean.tolist()}
                                   for h in (1, 2)},
              "bins_along_pc1": reconstructed}
    write_text_atomic(out / "hetero.json", json.dumps(record, indent=2) + "\n")
    log.info(f"latents of {len(ps)} particles in {latent_csv}; maps along PC1 in {out / SERIES}")
    return HeteroResult(out, latent_npy, latent_csv, star, cs, decoded, reconstructed, record)

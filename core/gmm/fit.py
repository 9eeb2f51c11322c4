"""A GMM from a map: seed by k-means, then fit every parameter in TensorFlow.

The fit compares the GMM with the map in Fourier space inside the target
resolution only, so the noise a half map carries beyond its resolution is
never fitted. Each Gaussian is rendered on a small window of voxels around
its centre (a Gaussian keeps 99% of its peak within 3 widths), so one step costs
O(N w^3 + B^3 log B), not O(N B^3): fits of 10^4-10^5 Gaussians stay cheap,
on a GPU as on two CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
from scipy.spatial import cKDTree

from ..device import tf
from ..errors import Aborted, InputError
from ..fourier.filters import lowpass
from ..fourier.grids import fft_axis, fourier_crop_3d, radius_from_axes
from ..fourier.masks import auto_threshold
from .model import GMM

# Adam steps of a fit: on a 90 kDa map at 4.9 A, 200 steps gave the same FSC to
# the map (0.9 at 4.76 A, 0.5 at 3.81 A) in 2.5x the time.
FIT_STEPS = 80


@dataclass(frozen=True)
class FitReport:
    """What a fit did: sizes, sampling and the relative Fourier residual."""

    n_gaussians: int
    fit_box: int
    fit_apix: float
    threshold: float
    mean_nn_A: float
    residual_start: float
    residual_end: float


def fit_sampling(box: int, apix: float, res_A: float) -> tuple[int, float]:
    """Box and voxel size on which to fit at res_A: three voxels per resolution element.

    Three rather than two (Nyquist) so that Gaussians as narrow as res/4 are
    still sampled by a few voxels each.
    """
    fit_box = min(box, 2 * math.ceil(box * apix * 3.0 / res_A / 2.0))
    return fit_box, apix * box / fit_box


def nn_spacing_for_resolution(res_A: float) -> float:
    """Target mean nearest-neighbour distance of the Gaussians at res_A.

    0.6 x the resolution, never below 1.5 A (atoms are ~1.5 A apart). The
    reference implementation packs them at about half the resolution; 0.6
    still renders the map to FSC >= 0.9 at the target resolution
    (tests/test_gmm_fit.py) with 40% fewer Gaussians, and every
    alignment step costs in proportion to their number.
    """
    return max(0.6 * res_A, 1.5)


def estimate_n_gaussians(occupied_volume_A3: float, res_A: float) -> int:
    """N such that k-means centres filling the volume sit ~res/2 apart.

    k-means centres in a volume pack like a body-centred lattice, whose
    nearest-neighbour distance is 1.09 (V / N)^(1/3).
    """
    spacing = nn_spacing_for_resolution(res_A)
    return max(1, int(round(occupied_volume_A3 * (1.09 / spacing) ** 3)))


def seed_centres(volume: np.ndarray, apix: float, threshold: float, n: int | None, res_A: float,
                 rng: np.random.Generator, mask: np.ndarray | None = None,
                 max_points: int = 200_000) -> np.ndarray:
    """k-means centres (Angstrom from the box centre) of the voxels above ``threshold``."""
    inside = volume > threshold
    if mask is not None:
        inside &= mask > 0.5
    zyx = np.argwhere(inside)
    if len(zyx) == 0:
        raise InputError(f"no voxel above the density threshold {threshold:.4g}; "
                         "expected a map with density (lower --threshold)")
    if n is None:
        n = estimate_n_gaussians(len(zyx) * apix ** 3, res_A)
    n = min(n, len(zyx))
    points = (zyx[:, ::-1] - volume.shape[0] // 2) * apix
    if len(points) > max_points:
        points = points[rng.choice(len(points), max_points, replace=False)]
    return lloyd_kmeans(points.astype(float), n, rng)


def lloyd_kmeans(points: np.ndarray, n: int, rng: np.random.Generator,
                 iterations: int = 10) -> np.ndarray:
    """k-means centres of ``points`` (m, 3): ``n`` random points, then Lloyd iterations.

    scipy's ``kmeans2(points, n, iter=10, minit="points", seed=rng)``, step for
    step and with the same centres, but each point finds its nearest centre
    through a k-d tree instead of a comparison with every centre: 25x faster
    at 15,000 centres, where kmeans2 took ~16 s per iteration on two busy cores
    and a fit sat silent for minutes. Random-point initialisation: k-means++
    seeding is O(N) Python steps; ten Lloyd iterations spread the centres anyway.
    """
    centres = points[rng.choice(len(points), size=n, replace=False)].copy()
    for _ in range(iterations):
        _, label = cKDTree(centres).query(points)
        counts = np.bincount(label, minlength=n)
        sums = np.stack([np.bincount(label, weights=points[:, axis], minlength=n)
                         for axis in range(points.shape[1])], axis=1)
        # An empty cluster keeps its centre, which is still a voxel of density.
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


def _window_offsets(half: int) -> np.ndarray:
    r = np.arange(-half, half + 1)
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)


class _Windows(NamedTuple):
    """The voxels each Gaussian is rendered on: a window around its starting voxel."""

    positions_A: tf.Tensor   # (N, W, 3) float32, voxel positions from voxel B // 2
    flat_index: tf.Tensor    # (N, W) int64, index of each voxel in the flattened box
    valid: tf.Tensor         # (N, W) float32, 1 where the voxel lies inside the box


class _Fit(NamedTuple):
    """What stays fixed during one fit."""

    sphere: tf.Tensor        # (B, B, B) float32, 1 inside the target resolution
    target_ft: tf.Tensor     # (B, B, B) complex64
    target_power: tf.Tensor  # () power of the target inside the sphere
    apix: tf.Tensor
    amp_scale: tf.Tensor
    low_log: tf.Tensor       # bounds of log(width)
    high_log: tf.Tensor
    learning_rate: tf.Tensor


def _windows(box: int, apix: float, anchors_A: np.ndarray, half: int) -> _Windows:
    anchor_vox = np.rint(anchors_A / apix).astype(np.int64) + box // 2        # (N, 3) x, y, z
    vox = anchor_vox[:, None, :] + _window_offsets(half)[None]               # (N, W, 3)
    valid = np.all((vox >= 0) & (vox < box), axis=-1)
    vox = np.clip(vox, 0, box - 1)
    return _Windows(tf.constant(((vox - box // 2) * apix).astype(np.float32)),
                    tf.constant((vox[..., 2] * box + vox[..., 1]) * box + vox[..., 0]),
                    tf.constant(valid.astype(np.float32)))


def _render(windows: _Windows, box: tf.Tensor, apix: tf.Tensor, centres_A: tf.Tensor,
            amplitudes: tf.Tensor, widths_A: tf.Tensor) -> tf.Tensor:
    # Sampling at voxel centres with s^2 + apix^2 / 12 approximates the
    # voxel-integrated density of gmm.render_map to well under 1%.
    s2 = widths_A ** 2 + apix ** 2 / 12.0
    d2 = tf.reduce_sum((windows.positions_A - centres_A[:, None, :]) ** 2, axis=-1)
    norm = amplitudes * apix ** 3 / (2.0 * np.pi * s2) ** 1.5
    values = norm[:, None] * tf.exp(-0.5 * d2 / s2[:, None]) * windows.valid
    flat = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]),
                                        tf.reshape(windows.flat_index, [-1]), box ** 3)
    return tf.reshape(flat, tf.stack([box, box, box]))


def _residual(params: tuple, windows: _Windows, fit: _Fit) -> tf.Tensor:
    """|M - T|^2 / |T|^2 inside the sphere; params (centres in voxels, log widths, amplitudes
    over amp_scale), scaled to order one so one learning rate serves all three."""
    centre_vox, log_width, amp_rel = params
    box = tf.shape(fit.sphere, out_type=tf.int64)[0]
    model = _render(windows, box, fit.apix, centre_vox * fit.apix, amp_rel * fit.amp_scale,
                    tf.exp(tf.clip_by_value(log_width, fit.low_log, fit.high_log)))
    diff = tf.signal.fft3d(tf.complex(model, 0.0)) - fit.target_ft
    return tf.reduce_sum(fit.sphere * tf.abs(diff) ** 2) / fit.target_power


def adam_update(params: tuple, grads: tuple, m: tuple, v: tuple, t: tf.Tensor,
                learning_rate: tf.Tensor, beta1: float = 0.9, beta2: float = 0.999,
                epsilon: float = 1e-7) -> tuple[tuple, tuple, tuple]:
    """One Adam step (Kingma & Ba; Keras's defaults) at step number t >= 1, in plain tf ops:
    the new (params, m, v)."""
    rate = learning_rate * tf.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t)
    m = tuple(beta1 * mi + (1.0 - beta1) * g for mi, g in zip(m, grads))
    v = tuple(beta2 * vi + (1.0 - beta2) * tf.square(g) for vi, g in zip(v, grads))
    params = tuple(p - rate * mi / (tf.sqrt(vi) + epsilon) for p, mi, vi in zip(params, m, v))
    return params, m, v


# One traced graph for every fit: the shapes vary, so they are left open. A
# tf.function made per fit kept its captured windows (~0.18 GB at 15,000
# Gaussians) alive after the fit, and a patch run of 54 fits ran out of memory.
_SCALAR = tf.TensorSpec([], tf.float32)
_PARAMS = (tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None], tf.float32),
           tf.TensorSpec([None], tf.float32))
_WINDOWS = _Windows(tf.TensorSpec([None, None, 3], tf.float32),
                    tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None], tf.float32))
_FIT = _Fit(tf.TensorSpec([None, None, None], tf.float32),
            tf.TensorSpec([None, None, None], tf.complex64), *[_SCALAR] * 6)


@tf.function(input_signature=[_PARAMS, _WINDOWS, _FIT])
def _residual_graph(params, windows, fit):
    return _residual(params, windows, fit)


@tf.function(input_signature=[_PARAMS, _PARAMS, _PARAMS, _SCALAR, _WINDOWS, _FIT])
def _fit_step(params, m, v, t, windows, fit):
    """One Adam step on the residual: (loss before the step, params, m, v)."""
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = _residual(params, windows, fit)
    grads = tape.gradient(loss, params)
    params, m, v = adam_update(params, grads, m, v, t, fit.learning_rate)
    return loss, params, m, v


def _resolution_sphere(box: int, apix: float, res_A: float) -> np.ndarray:
    """1 within resolution res_A (radius box * apix / res_A Fourier pixels), else 0, on the
    unshifted grid tf.signal.fft3d uses."""
    radius_px = radius_from_axes(*[fft_axis(box)] * 3)
    return (radius_px <= box * apix / res_A).astype(np.float32)


def fit_gmm(target: np.ndarray, apix: float, init: GMM, res_A: float, *,
            steps: int = FIT_STEPS, learning_rate: float = 0.02, progress=None,
            should_abort: Callable[[], bool] = lambda: False) -> tuple[GMM, float, float]:
    """Fit centres, amplitudes and widths of ``init`` to ``target`` up to res_A.

    ``target`` is already on the fitting grid. Returns the fitted GMM and the
    relative Fourier residual |M - T|^2 / |T|^2 before and after.

    ``progress``: any object with ``start()`` and ``update(n)``
    (gmmrefine.report.progress.Progress), told when the steps start and of every
    step, since a large fit runs for minutes. Raises
    :class:`gmmrefine.errors.Aborted` between steps once ``should_abort()`` is true.
    """
    box = target.shape[0]
    widths0 = np.asarray(init.widths_A, float)
    max_width = max(2.0 * widths0.max(), res_A / 2.0)
    half = int(math.ceil(3.0 * max_width / apix))
    windows = _windows(box, apix, np.asarray(init.centres_A), half)
    sphere = tf.constant(_resolution_sphere(box, apix, res_A))
    # fft3d of a complex cast: TensorFlow registers no gradient for rfft3d.
    target_ft = tf.signal.fft3d(tf.complex(tf.constant(target, tf.float32), 0.0))
    amp_scale = float(np.mean(np.abs(init.amplitudes))) or 1.0
    low_log, high_log = float(np.log(0.25 * apix)), float(np.log(max_width))
    scalar = lambda x: tf.constant(x, tf.float32)  # noqa: E731
    fit = _Fit(sphere, target_ft, tf.reduce_sum(sphere * tf.abs(target_ft) ** 2), scalar(apix),
               scalar(amp_scale), scalar(low_log), scalar(high_log), scalar(learning_rate))
    params = (tf.constant(np.asarray(init.centres_A, np.float32) / apix),
              tf.constant(np.log(widths0).astype(np.float32)),
              tf.constant((np.asarray(init.amplitudes) / amp_scale).astype(np.float32)))
    m = v = tuple(tf.zeros_like(p) for p in params)
    start = float(_residual_graph(params, windows, fit))
    if progress is not None:
        progress.start()
    for t in range(1, steps + 1):
        if should_abort():
            raise Aborted("stopped on request")
        _, params, m, v = _fit_step(params, m, v, scalar(t), windows, fit)
        if progress is not None:
            progress.update(1)
    end = float(_residual_graph(params, windows, fit))
    centre_vox, log_width, amp_rel = (p.numpy().astype(float) for p in params)
    fitted = GMM(centre_vox * apix, amp_rel * amp_scale,
                 np.exp(np.clip(log_width, low_log, high_log)))
    return fitted, start, end


def gmm_from_map(volume: np.ndarray, apix: float, res_A: float, *, n: int | None = None,
                 threshold: float | None = None, mask: np.ndarray | None = None,
                 steps: int = FIT_STEPS, seed: int = 0, progress=None,
                 should_abort: Callable[[], bool] = lambda: False) -> tuple[GMM, FitReport]:
    """Build a GMM from a (half) map at resolution res_A.

    Seeds N centres by k-means on the voxels above ``threshold`` (default:
    masks.auto_threshold of the low-passed map) within ``mask``, starts every
    Gaussian with the same amplitude and width, then fits all parameters
    (``progress`` and ``should_abort`` as for :func:`fit_gmm`).
    """
    box = volume.shape[0]
    fit_box, fit_apix = fit_sampling(box, apix, res_A)
    target = fourier_crop_3d(lowpass(volume, apix, res_A), fit_box)
    fit_mask = None if mask is None else fourier_crop_3d(mask, fit_box)
    if threshold is None:
        threshold = auto_threshold(target)
    else:
        threshold = threshold * (apix / fit_apix) ** 3   # voxel-integrated: mass per voxel scales
    rng = np.random.default_rng(seed)
    centres = seed_centres(target, fit_apix, threshold, n, res_A, rng, fit_mask)
    mass = float(target[target > threshold].sum())
    spacing = nn_spacing_for_resolution(res_A)
    init = GMM(centres, np.full(len(centres), mass / len(centres)),
               np.full(len(centres), max(spacing / 2.0, fit_apix / 2.0)))
    gmm, start, end = fit_gmm(target, fit_apix, init, res_A, steps=steps, progress=progress,
                              should_abort=should_abort)
    nn = cKDTree(gmm.centres_A).query(gmm.centres_A, k=2)[0][:, 1] if len(gmm) > 1 else np.zeros(1)
    return gmm, FitReport(len(gmm), fit_box, fit_apix, float(threshold), float(nn.mean()), start, end)


def gmm_from_atoms(coords_A: np.ndarray, weights: np.ndarray, res_A: float,
                   rng: np.random.Generator) -> GMM:
    """One Gaussian per non-H atom, positions randomised at res_A (per half).

    The displacement sd res / (pi sqrt 2) damps the two halves' shared signal
    by exp(-1) in amplitude at 1/res, so the halves' models agree below the
    resolution they were measured at and not beyond it.
    """
    sd = res_A / (np.pi * np.sqrt(2.0))
    centres = np.asarray(coords_A, float) + rng.normal(scale=sd, size=np.shape(coords_A))
    return GMM(centres, np.asarray(weights, float), np.full(len(centres), max(res_A / 4.0, 1.0)))


def gmm_from_model(coords_A: np.ndarray, weights: np.ndarray, volume: np.ndarray, apix: float,
                   res_A: float, rng: np.random.Generator, *, steps: int = FIT_STEPS,
                   progress=None, should_abort: Callable[[], bool] = lambda: False
                   ) -> tuple[GMM, float]:
    """One Gaussian per atom, randomised at res_A, then fitted to ``volume`` up to res_A.

    The atoms' weights are per element; they are scaled to the map's units
    (its integrated density) before the fit. Returns the GMM and the fit's
    relative Fourier residual (``progress`` and ``should_abort`` as for :func:`fit_gmm`).
    """
    init = gmm_from_atoms(coords_A, weights, res_A, rng)
    fit_box, fit_apix = fit_sampling(volume.shape[0], apix, res_A)
    target = fourier_crop_3d(lowpass(volume, apix, res_A), fit_box)
    scale = float(target.sum()) / float(np.sum(init.amplitudes))
    init = GMM(init.centres_A, init.amplitudes * scale, init.widths_A)
    gmm, _, residual = fit_gmm(target, fit_apix, init, res_A, steps=steps, progress=progress,
                               should_abort=should_abort)
    return gmm, residual

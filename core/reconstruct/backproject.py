"""Reconstruction by direct Fourier inversion with CTF correction.

Central-slice geometry in our convention: a particle with pose A is the
projection along z of V(A^T x), so its 2D transform at frequency (kx, ky)
is the 3D transform of V at A^T (kx, ky, 0) (substitute u = A^T r in the
projection integral; (k, 0) . A u = A^T (k, 0) . u).

The scheme is RELION's (backprojector.cpp, the non-iterative path):
every 2D Fourier sample inside the Nyquist circle is spread trilinearly onto a
3D grid oversampled ``pad`` times; the grid accumulates sum(CTF * F) and
sum(CTF^2); the map is their ratio, with the weight floored at 1/1000 of its
shell average so CTF zeros do not blow up; the trilinear kernel's transform,
sinc^2 per axis, is divided out in real space (gridding correction), after
the corners outside the inscribed sphere are softly set to their mean
(RELION's softMaskOutsideMap; they hold only noise). relion_reconstruct's
default iterative (Pipe-Menon) weighting was tried: on noise-free analytic
projections it converges to the same map as this plain division, and on noisy
relion_project data this path matches relion_reconstruct's maps (FSC >= 0.98
to the gold-standard resolution; tests/test_reconstruct_vs_relion.py).

Friedel symmetry halves work and memory: only half of each 2D plane is
inserted, every sample is mirrored into the x >= 0 half of the 3D grid
(conjugating it), and the grid is stored in numpy's rfftn layout.

:func:`insert_slices` is a plain function of one chunk's arrays and returns
sums that add, so chunks can be handed to any executor and summed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from ..data.images import ImageReader, ParticleImages, Slices
from ..data.particles import ParticleSet
from ..data.symmetry_groups import symmetry_operators
from ..fourier.grids import (
    centred_axis,
    cosine_edge,
    fft_axis,
    pixel_grid_2d,
    radius_from_axes,
    radius_grid,
)

# Samples per internal batch: bounds the temporary index arrays (~8 corners
# x 8 bytes each) to a few hundred MB whatever the chunk size.
_SAMPLES_PER_BATCH = 1_000_000


@dataclass
class FourierSums:
    """Accumulated 3D Fourier sums of one set of particles.

    data    (P, P, P//2 + 2) complex128: sum of CTF * F, [z, y, x], z and y in
            numpy's FFT order, x = 0 .. P//2 + 1 (one plane beyond Nyquist
            catches the trilinear spill and is dropped at the end)
    weight  same shape, float64: sum of CTF^2
    box     image box B; P = pad * B
    pad     oversampling of the 3D grid
    count   number of particles inserted
    """

    data: np.ndarray
    weight: np.ndarray
    box: int
    pad: int
    count: int = 0

    @classmethod
    def zeros(cls, box: int, pad: int = 2) -> "FourierSums":
        """Empty sums for images of ``box`` on a ``pad``-times oversampled grid."""
        p = pad * box
        shape = (p, p, p // 2 + 2)
        return cls(np.zeros(shape, np.complex128), np.zeros(shape, np.float64), box, pad, 0)

    def __add__(self, other: "FourierSums") -> "FourierSums":
        if (self.box, self.pad) != (other.box, other.pad):
            raise ValueError(f"cannot add sums of box {self.box} pad {self.pad} and "
                             f"box {other.box} pad {other.pad}")
        return FourierSums(self.data + other.data, self.weight + other.weight,
                           self.box, self.pad, self.count + other.count)


def _half_plane_samples(box: int, radius_px: float | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices and (kx, ky) of one Friedel half of a 2D grid's disc.

    Half = ky > 0, or ky == 0 and kx >= 0: every pair {k, -k} once. The disc
    is the grid's Nyquist circle, or ``radius_px`` where images are mapped
    onto another grid (samples beyond it can never land inside the sums).
    """
    kx, ky = pixel_grid_2d(box)
    half = (ky > 0) | ((ky == 0) & (kx >= 0))
    inside = radius_grid(box, 2) <= (box // 2 if radius_px is None else radius_px)
    flat = np.flatnonzero(half & inside)
    return flat, kx.ravel()[flat].astype(float), ky.ravel()[flat].astype(float)


def _spread_trilinear(sums: FourierSums, coords: np.ndarray, values: np.ndarray,
                      weights: np.ndarray) -> None:
    """Add values (complex) and weights at 3D grid coordinates, trilinearly.

    coords (m, 3) as (x, y, z) in padded Fourier pixels, x >= 0. All eight
    corners go through one bincount per quantity: bincount's cost is
    dominated by allocating and adding its full-grid output, so fewer, longer
    calls are much faster than one per corner.
    """
    p = sums.pad * sums.box
    nx = sums.data.shape[2]
    size = sums.data.size
    base = np.floor(coords)
    frac = coords - base
    base = base.astype(np.int64)
    # Per axis: the two neighbouring grid lines and their linear weights.
    ix = np.stack([base[:, 0], base[:, 0] + 1])
    iy = np.mod(np.stack([base[:, 1], base[:, 1] + 1]), p) * nx
    iz = np.mod(np.stack([base[:, 2], base[:, 2] + 1]), p) * (p * nx)
    wx = np.stack([1.0 - frac[:, 0], frac[:, 0]])
    wy = np.stack([1.0 - frac[:, 1], frac[:, 1]])
    wz = np.stack([1.0 - frac[:, 2], frac[:, 2]])
    idx = (iz[:, None, None] + iy[None, :, None] + ix[None, None, :]).ravel()
    w = (wz[:, None, None] * wy[None, :, None] * wx[None, None, :]).reshape(8, -1)
    data = sums.data.reshape(-1)
    data.real += np.bincount(idx, (w * values.real).ravel(), minlength=size)
    data.imag += np.bincount(idx, (w * values.imag).ravel(), minlength=size)
    sums.weight.reshape(-1)[:] += np.bincount(idx, (w * weights).ravel(), minlength=size)


def insert_slices(spectra: np.ndarray, ctf: np.ndarray | None, rotation: np.ndarray,
                  weights: np.ndarray | None = None, *, pad: int = 2,
                  sums: FourierSums | None = None, frequency_map: np.ndarray | None = None,
                  premultiplied: np.ndarray | None = None) -> FourierSums:
    """Insert centred 2D spectra as central slices of a padded 3D transform.

    Parameters
    ----------
    spectra
        (n, B, B) centred spectra (origin at B // 2) of centred particle images.
    ctf
        (n, B, B) CTF of each image on the same grid (use |CTF| for
        phase-flipped images); None for no CTF.
    rotation
        (n, 3, 3) RELION matrices A.
    weights
        Optional per-particle weights (n,).
    pad
        Oversampling of the 3D grid (RELION's padding factor, 2 by default).
    sums
        Sums to add into (in place); new ones of box B when None.
    frequency_map
        (n, 2, 2) or (2, 2): image Fourier pixel k lands at F k of the sums'
        grid (magnification, other pixel or box sizes:
        gmmrefine.data.images.ParticleImages.frequency_maps); samples beyond
        the sums' Nyquist sphere are dropped, as RELION's backprojector does.
        None: the identity, and B must be the sums' box.
    premultiplied
        (n,) bool: images already multiplied by their CTF enter as they are,
        with weight CTF^2 (RELION's rlnCtfDataAreCtfPremultiplied).

    Returns
    -------
    FourierSums
        sum(w CTF F) and sum(w CTF^2); sums of chunks add with ``+``.
    """
    spectra = np.asarray(spectra)
    n, box = spectra.shape[0], spectra.shape[-1]
    rotation = np.asarray(rotation, float).reshape(n, 3, 3)
    if sums is None:
        sums = FourierSums.zeros(box, pad)
    elif sums.pad != pad or (frequency_map is None and sums.box != box):
        raise ValueError(f"sums are for box {sums.box} pad {sums.pad}, images box {box} pad {pad}")
    limit = sums.box // 2
    if frequency_map is None:
        flat, kx, ky = _half_plane_samples(box)
        rows = rotation[:, :2, :]
    else:
        fmap = np.broadcast_to(np.asarray(frequency_map, float), (n, 2, 2))
        # |F k| >= smallest singular value x |k|: no sample beyond this reaches the sphere.
        reach = limit / max(np.linalg.svd(fmap, compute_uv=False).min(), 1e-12)
        flat, kx, ky = _half_plane_samples(box, reach)
        # A^T (F k, 0) = kx (F^T A)[0] + ky (F^T A)[1]: F folds into the rows used.
        rows = np.einsum("nji,njk->nik", fmap, rotation[:, :2, :])
    per_image = len(flat)
    batch = max(1, _SAMPLES_PER_BATCH // per_image)
    w_particle = np.ones(n) if weights is None else np.asarray(weights, float).reshape(n)
    as_is = None if premultiplied is None else np.asarray(premultiplied, bool).reshape(n)
    for start in range(0, n, batch):
        sl = slice(start, min(n, start + batch))
        f = spectra[sl].reshape(-1, box * box)[:, flat]
        c = (np.ones(f.shape, np.float32) if ctf is None
             else np.asarray(ctf[sl]).reshape(-1, box * box)[:, flat])
        a = rows[sl]
        # A^T (kx, ky, 0) = kx * (row 0 of A) + ky * (row 1 of A), scaled to the padded grid.
        xyz = pad * (kx[None, :, None] * a[:, None, 0, :] + ky[None, :, None] * a[:, None, 1, :])
        wp = w_particle[sl, None]
        values = wp * (c if premultiplied is None else np.where(as_is[sl, None], 1.0, c)) * f
        wts = wp * c * c
        if frequency_map is not None:
            outside = np.sum(xyz * xyz, axis=-1) > (pad * limit) ** 2
            values, wts = np.where(outside, 0.0, values), np.where(outside, 0.0, wts)
            xyz[outside] = 0.0
        mirror = xyz[..., 0] < 0
        xyz *= np.where(mirror, -1.0, 1.0)[..., None]
        values = np.where(mirror, np.conj(values), values)
        _spread_trilinear(sums, xyz.reshape(-1, 3), values.ravel(), wts.ravel())
    sums.count += n
    return sums


def _symmetrise_x0_plane(array: np.ndarray, conjugate: bool) -> np.ndarray:
    """Add each x = 0 voxel's Friedel mate (-z, -y), which a mirrored sample
    just across x = 0 spreads onto."""
    p = array.shape[0]
    neg = (-np.arange(p)) % p
    plane = array[:, :, 0]
    mate = plane[neg][:, neg]
    array = array.copy()
    array[:, :, 0] = plane + (np.conj(mate) if conjugate else mate)
    return array


def symmetrize_sums(sums: FourierSums, operators: np.ndarray) -> FourierSums:
    """Sums over the group: S(q) = sum_g S(R_g q), by trilinear interpolation.

    RELION's BackProjector::symmetrise: once per half, after all particles
    are in, instead of inserting every slice |G| times. A slice of pose A
    lands at A^T k; its copy of pose A R_g lands at R_g^T A^T k, so the
    copies' grid at q is the original's at R_g q. The x = 0 plane is made
    complete (its Friedel mates added) before rotating and halved after, so
    that :func:`finalize`, which adds the mates again, sees what it expects.

    Parameters
    ----------
    sums
        One half's accumulated sums (not modified).
    operators
        (|G|, 3, 3) rotation matrices of the group, identity included.

    Returns
    -------
    FourierSums
        New sums, equal (up to interpolation) to inserting every particle
        once per operator.
    """
    operators = np.asarray(operators, float).reshape(-1, 3, 3)
    if len(operators) == 1:
        return sums
    p = sums.pad * sums.box
    nx = sums.data.shape[2]
    data = _symmetrise_x0_plane(sums.data, True)
    weight = _symmetrise_x0_plane(sums.weight, False)
    radius = _rfft_radius(p, nx)
    inside = np.flatnonzero(radius <= sums.pad * (sums.box // 2))
    k = fft_axis(p).astype(float)
    iz, iy, ix = np.unravel_index(inside, data.shape)
    zyx = np.stack([k[iz], k[iy], ix.astype(float)])
    out_d = np.zeros(data.size, np.complex128)
    out_w = np.zeros(data.size)
    batch = _SAMPLES_PER_BATCH
    # Three real interpolations are faster than a complex and a real one.
    planes = (np.ascontiguousarray(data.real), np.ascontiguousarray(data.imag), weight)
    for r in operators:
        if np.allclose(r, np.eye(3)):
            out_d[inside] += data.reshape(-1)[inside]
            out_w[inside] += weight.reshape(-1)[inside]
            continue
        # R acts on (x, y, z); the arrays are [z, y, x]: reverse both ends.
        r_zyx = r[::-1, ::-1]
        for lo in range(0, zyx.shape[1], batch):
            pos = r_zyx @ zyx[:, lo:lo + batch]
            # Points with x < 0 are read from their Friedel mate (conjugated).
            mirror = pos[2] < 0
            pos[:, mirror] *= -1.0
            # grid-wrap: z and y are periodic in FFT order; x never leaves
            # 0 .. P/2 + 1 inside the Nyquist sphere, so its wrap is never used.
            re, im, w = (map_coordinates(a, pos, order=1, mode="grid-wrap", prefilter=False)
                         for a in planes)
            out_d[inside[lo:lo + batch]] += re + 1j * np.where(mirror, -im, im)
            out_w[inside[lo:lo + batch]] += w
    out_d = out_d.reshape(data.shape)
    out_w = out_w.reshape(data.shape)
    out_d[:, :, 0] *= 0.5
    out_w[:, :, 0] *= 0.5
    return FourierSums(out_d, out_w, sums.box, sums.pad, sums.count * len(operators))


def _shell_floor(weight: np.ndarray, radius: np.ndarray, r_max: int) -> np.ndarray:
    """RELION's guard: 1/1000 of the shell-averaged weight, per voxel."""
    shell = np.minimum(np.rint(radius).astype(np.int64), r_max)
    inside = radius <= r_max
    total = np.bincount(shell[inside], weight[inside], minlength=r_max + 1)
    count = np.bincount(shell[inside], minlength=r_max + 1)
    avg = total / np.maximum(count, 1)
    # Beyond the last shell the last shell's floor applies, as in RELION.
    return 1e-3 * avg[shell]


def _rfft_radius(p: int, nx: int) -> np.ndarray:
    """|k| on the padded rfftn-layout grid of the sums, x = 0 .. nx - 1 (which may
    include the extra plane beyond Nyquist, so not :func:`rfft_radius_px`)."""
    return radius_from_axes(fft_axis(p), fft_axis(p), np.arange(nx))


def soft_mask_outside(volume: np.ndarray, radius_px: float | None = None,
                      edge_px: float = 3.0) -> np.ndarray:
    """Replace the corners beyond a sphere by their mean, with a raised-cosine
    edge, as RELION's softMaskOutsideMap does after every reconstruction:
    the corners hold only noise and gridding-correction ringing."""
    box = volume.shape[0]
    radius_px = box / 2.0 if radius_px is None else float(radius_px)
    inside = cosine_edge(radius_grid(box, 3) - radius_px, edge_px)
    outside = 1.0 - inside
    if not np.any(outside > 0):
        return volume
    background = np.sum(outside * volume) / np.sum(outside)
    return inside * volume + outside * background


def gridding_correction(box: int, padded_box: int) -> np.ndarray:
    """sinc^2 per axis: the real-space footprint of trilinear spreading
    on a grid of ``padded_box`` Fourier pixels, on the central ``box``^3."""
    x = centred_axis(box) / padded_box
    s = np.sinc(x) ** 2
    return s[:, None, None] * s[None, :, None] * s[None, None, :]


def finalize(sums: FourierSums, box: int | None = None) -> np.ndarray:
    """The real-space map (box^3, float32, origin at box // 2) from Fourier sums.

    Parameters
    ----------
    sums
        Accumulated sums (of one half, or of both for the full map).
    box
        Output box; must equal the images' box (default).
    """
    box = sums.box if box is None else int(box)
    if box != sums.box:
        raise ValueError(f"sums hold box {sums.box}, asked for {box}")
    p = sums.pad * box
    nx = p // 2 + 1
    data = _symmetrise_x0_plane(sums.data, True)[..., :nx]
    weight = _symmetrise_x0_plane(sums.weight, False)[..., :nx]
    radius = _rfft_radius(p, nx)
    r_max = sums.pad * (box // 2)
    floor = _shell_floor(weight, radius, r_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        spectrum = np.where(weight > 0, data / np.maximum(weight, floor), 0.0)
    spectrum[radius > r_max] = 0.0
    volume = np.fft.fftshift(np.fft.irfftn(spectrum, s=(p, p, p), axes=(0, 1, 2)))
    lo = p // 2 - box // 2
    volume = volume[lo:lo + box, lo:lo + box, lo:lo + box]
    volume = soft_mask_outside(volume)
    return (volume / gridding_correction(box, p)).astype(np.float32)


def _half_sums(images: ParticleImages, index: np.ndarray, chunk: int, pad: int,
               progress) -> FourierSums:
    sums = FourierSums.zeros(images.box, pad)
    rotation = images.particles.rotation
    for start in range(0, len(index), chunk):
        part = index[start:start + chunk]
        for rows in images.by_image_grid(part):
            insert_chunk(images.slices(part[rows]), rotation[part[rows]], sums)
        if progress is not None:
            progress.update(len(part))
    return sums


def insert_chunk(slices: Slices, rotation: np.ndarray, sums: FourierSums) -> FourierSums:
    """Insert one chunk's :class:`gmmrefine.data.images.Slices` at poses ``rotation`` (in place)."""
    return insert_slices(slices.spectra, slices.ctf, rotation, pad=sums.pad, sums=sums,
                         frequency_map=slices.frequency_map,
                         premultiplied=slices.premultiplied if slices.premultiplied.any()
                         else None)


def reconstruct_halves(ps: ParticleSet, reader: ImageReader, *, chunk: int = 2000, pad: int = 2,
                       progress=None, sym: str = "C1", box: int | None = None,
                       apix: float | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half maps and full map at the set's poses, CTF-corrected.

    Halves never mix: each half's sums come from its own particles only, and
    the full map is finalised from the two halves' sums added.

    Parameters
    ----------
    ps
        Particles with poses and a split (``half_set`` 1 / 2).
    reader
        Stack reader for the images.
    chunk
        Particles read and inserted at a time (bounds memory).
    pad
        Oversampling of the 3D grid.
    progress
        Optional reporter with ``update(n)`` (:class:`gmmrefine.report.progress.Progress`),
        advanced per chunk.
    sym
        Point group (RELION's names and axes, :mod:`gmmrefine.data.symmetry_groups`):
        each half's sums are summed over the group before the maps are
        formed (:func:`symmetrize_sums`); "C1" leaves them as they are.
    box, apix
        The maps' grid (default the first optics group's); images of other
        pixel or box sizes are rescaled onto it (:meth:`ParticleImages.slices`).

    Returns
    -------
    (half1, half2, full), float32 maps of the output box.
    """
    ps.require_halves()
    operators = symmetry_operators(sym)     # a bad name fails before any image is read
    images = ParticleImages(ps, reader, chunk=chunk, box=box, apix=apix)
    sums = [symmetrize_sums(_half_sums(images, np.flatnonzero(ps.half_set == h), chunk, pad,
                                       progress), operators)
            for h in (1, 2)]
    return finalize(sums[0]), finalize(sums[1]), finalize(sums[0] + sums[1])

"""Particle images as the engine asks for them: spectra of images i..j,
centred, optionally phase-flipped and Fourier-cropped, with their CTFs and
the rest of RELION's observation model applied (gmmrefine.data.optics).

Nothing here knows a file format: a :class:`ParticleImages` pairs the
particle table with a stack reader, and every consumer (reconstruction,
alignment, refinement) asks it for chunks of spectra. Chunks bound memory by
their size, never by the dataset's.

Optics groups may differ in pixel and box size (merged data sets): each
image stays on its own grid, and :meth:`ParticleImages.slices` says where
each of its Fourier pixels lands on the one output grid, as
relion_reconstruct rescales them (RELION's applyScaleDifference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

import numpy as np

from ..fourier.grids import centred_axis, fft2c, fourier_crop_2d, freq_grid_2d
from .ctf import particle_ctfs
from .ctf import phase_flip as apply_phase_flip
from .optics import has_odd, mag_matrix, mtf_values, odd_phase
from .particles import ParticleSet

DEFAULT_CHUNK = 2000


class ImageReader(Protocol):
    """Where images come from: :class:`gmmrefine.io.stack.StackReader` is one.

    The data layer names no file format; any object that can hand back the
    images at (stack path, index) pairs will do.
    """

    def read(self, paths: Sequence[str], indices: np.ndarray, *, rows: np.ndarray,
             expected_box: int) -> np.ndarray: ...


def crop_box_for_resolution(box: int, apix: float, res_A: float) -> int:
    """Smallest even box whose Nyquist reaches ``res_A`` (never above ``box``).

    box' = ceil(box * apix * 2 / res_A), rounded up to even, as EMAN2's e2gmm
    crops particles before refining against a map of that resolution.
    """
    if res_A <= 0 or apix <= 0:
        raise ValueError(f"resolution {res_A} A and pixel size {apix} A must be positive")
    b = math.ceil(box * apix * 2.0 / res_A - 1e-9)
    b += b % 2
    return int(min(max(b, 2), box))


def centering_ramp(box: int, apix: float, shift_A: np.ndarray) -> np.ndarray:
    """Phase factor (n, box, box) turning the spectrum of I(x) into that of
    I(x - shift_A), built from two 1D exponentials per particle (separable:
    n * 2 * box complex exps instead of n * box^2)."""
    shift_A = np.asarray(shift_A, float).reshape(-1, 2)
    k = centred_axis(box) / (box * apix)
    ramp_x = np.exp(-2j * np.pi * k[None, :] * shift_A[:, 0, None])
    ramp_y = np.exp(-2j * np.pi * k[None, :] * shift_A[:, 1, None])
    return (ramp_y[:, :, None] * ramp_x[:, None, :]).astype(np.complex64)


@dataclass(frozen=True)
class Slices:
    """What reconstruction needs of a chunk of particles on one image grid.

    spectra          (n, b, b) complex64 centred spectra, demodulated, on the images' grid,
                     scaled to the output grid's convention (pixel values of the images
                     resampled onto it: (box_out / b)^2)
    ctf              (n, b, b) float32, each particle's CTF (aberrations included)
    frequency_map    (n, 2, 2) image-grid Fourier pixel -> output-grid Fourier pixel
                     (the magnification times the ratio of the grids' lengths), or None
                     when every particle is on the output grid without magnification
    premultiplied    (n,) bool: images already multiplied by their CTF
    """

    spectra: np.ndarray
    ctf: np.ndarray
    frequency_map: np.ndarray | None
    premultiplied: np.ndarray


class ParticleImages:
    """Spectra and CTFs of a particle set's images, by index, in chunks.

    Parameters
    ----------
    particles
        The particle table; its optics groups may differ in box and pixel size.
    reader
        Where the images come from (resolves the paths in ``particles``).
    chunk
        Default number of particles read at a time by :meth:`chunks`.
    box, apix
        The output grid (maps, reconstruction); default the first optics group's.
    """

    def __init__(self, particles: ParticleSet, reader: ImageReader, *, chunk: int = DEFAULT_CHUNK,
                 box: int | None = None, apix: float | None = None):
        self.particles = particles
        self.reader = reader
        self.chunk = max(1, int(chunk))
        self.box, self.apix = particles.output_grid(box, apix)
        self._grid_arrays: dict = {}
        self._mtf_groups = _groups_with_own_mtf(particles)

    def __len__(self) -> int:
        return len(self.particles)

    # --- which grid each particle is on ---------------------------------------------
    def image_grid(self, index: np.ndarray) -> tuple[int, float]:
        """The one (box, pixel size) of the images of particles ``index``."""
        groups = {int(g) for g in np.unique(self.particles.optics_index[index])}
        grids = {(self.particles.optics[g].box, self.particles.optics[g].apix) for g in groups}
        if len(grids) != 1:
            raise ValueError(f"particles on {len(grids)} image grids {sorted(grids)}; "
                             "split them with by_image_grid first")
        return grids.pop()

    def by_image_grid(self, index: np.ndarray) -> list[np.ndarray]:
        """Positions in ``index`` of the particles on each image grid (one array per grid)."""
        index = np.asarray(index, np.int64).reshape(-1)
        optics = self.particles.optics
        keys = np.array([(optics[g].box, optics[g].apix) for g in range(len(optics))])
        _, grid_of_group = np.unique(keys, axis=0, return_inverse=True)
        grid = grid_of_group.reshape(-1)[self.particles.optics_index[index]]
        return [np.flatnonzero(grid == k) for k in np.unique(grid)]

    # --- reading -------------------------------------------------------------------------
    def images(self, index: np.ndarray) -> np.ndarray:
        """Raw images (n, B, B) float32 of particles ``index`` (one image grid), as stored."""
        index = np.asarray(index, np.int64).reshape(-1)
        ps = self.particles
        box, _ = self.image_grid(index)
        return self.reader.read(ps.image_path[index], ps.image_index[index], rows=index,
                                expected_box=box)

    def raw_spectra(self, index: np.ndarray) -> np.ndarray:
        """Centred spectra (n, B, B) complex64 of the stored images, nothing applied: one read
        and one FFT that :meth:`spectra` can serve several ways (``raw=``)."""
        return fft2c(self.images(np.asarray(index, np.int64).reshape(-1)))

    # --- the observation model -----------------------------------------------------------
    def spectra(self, index: np.ndarray, *, box_out: int | None = None, center: bool = True,
                phase_flip: bool = False, shift_A: np.ndarray | None = None,
                raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Centred spectra of particles ``index`` (one image grid) with their CTFs.

        The odd aberrations are demodulated (RELION's demodulatePhase) and,
        where optics groups have MTFs of their own, each is divided by its MTF
        and multiplied by their mean (RELION's divideByMtf); the CTF carries
        the magnification and the even aberrations.

        Parameters
        ----------
        index
            Particle indices into the set, all on one image grid.
        box_out
            Fourier-crop to this (even) box; None keeps the stored box.
        center
            Undo the origin offset: RELION's image is I(x) = P(x + o), so the
            particle is brought to the box centre as I(x - o), a phase ramp.
        phase_flip
            Multiply by sign(CTF) (the CTF returned stays signed); images
            already multiplied by their CTF are left as they are.
        shift_A
            (n, 2) origins to centre by instead of the set's own (a pose just refined).
        raw
            :meth:`raw_spectra` of the same ``index``, already computed.

        Returns
        -------
        spectra : (n, b, b) complex64
            Centred spectra (origin at b // 2), scaled so that their inverse
            transform is the Fourier-cropped image with the stored pixel values.
        ctf : (n, b, b) float32
            Each particle's CTF on the same grid.
        apix_out : float
            Pixel size of that grid, apix * box / b.
        """
        index = np.asarray(index, np.int64).reshape(-1)
        box, apix = self.image_grid(index)
        b = box if box_out is None else int(box_out)
        if b > box or b < 2:
            raise ValueError(f"box_out {b} must lie in 2..{box}")
        apix_out = apix * box / b
        raw = self.raw_spectra(index) if raw is None else raw
        spectra = fourier_crop_2d(raw, b)
        if b != box:
            # An unnormalised FFT of fewer pixels: rescale so the cropped
            # spectrum is that of the downsampled image, pixel values kept.
            spectra = spectra * (b / box) ** 2
        if center:
            origin = self.particles.shift_A[index] if shift_A is None else shift_A
            spectra = spectra * centering_ramp(b, apix_out, origin)
        spectra = self._correct_optics(spectra, index, b, apix_out)
        ctf = particle_ctfs(self.particles, index, b, apix_out)
        if phase_flip:
            premultiplied = self.premultiplied(index)[:, None, None]
            # Images already multiplied by their CTF carry its sign already.
            spectra = apply_phase_flip(spectra, np.where(premultiplied, 1.0, ctf)
                                       if premultiplied.any() else ctf)
        return spectra.astype(np.complex64, copy=False), ctf.astype(np.float32, copy=False), apix_out

    def premultiplied(self, index: np.ndarray) -> np.ndarray:
        """(n,) bool: whether each particle's image is already multiplied by its CTF."""
        flags = np.array([g.ctf_premultiplied for g in self.particles.optics], bool)
        return flags[self.particles.optics_index[np.asarray(index, np.int64).reshape(-1)]]

    def _correct_optics(self, spectra: np.ndarray, index: np.ndarray, b: int,
                        apix: float) -> np.ndarray:
        """Demodulate the odd aberrations and even out the MTFs, group by group."""
        groups = self.particles.optics_index[index]
        present = np.unique(groups)
        copied = False
        for g in present:
            factor = self._group_factor(int(g), b, apix)
            if factor is None:
                continue
            if len(present) == 1:
                return spectra * factor
            if not copied:      # ``spectra`` may still be the caller's raw spectra
                spectra, copied = np.array(spectra, np.complex64), True
            spectra[groups == g] *= factor
        return spectra

    def _group_factor(self, g: int, b: int, apix: float) -> np.ndarray | None:
        """exp(-i phi_odd) times the MTF ratio of group ``g`` on a (b, apix) grid; None: 1."""
        key = (g, b, round(apix, 9))
        if key not in self._grid_arrays:
            group = self.particles.optics[g]
            kx, ky = freq_grid_2d(b, apix)
            factor = None
            if has_odd(group):
                factor = np.exp(-1j * odd_phase(group, kx, ky))
            if g in self._mtf_groups:
                k = np.hypot(kx, ky)
                mean = np.mean([mtf_values(o.mtf, k) for o in self.particles.optics], axis=0)
                ratio = mean / mtf_values(group.mtf, k)
                factor = ratio if factor is None else factor * ratio
            self._grid_arrays[key] = None if factor is None else factor.astype(np.complex64)
        return self._grid_arrays[key]

    # --- onto the output grid ---------------------------------------------------------------
    def frequency_maps(self, index: np.ndarray) -> np.ndarray | None:
        """(n, 2, 2) maps from each image's Fourier pixels to the output grid's, or None.

        RELION's reconstruction puts image pixel k of a group at
        (B_out apix_out) / (B apix) M k of the output grid
        (applyScaleDifference and applyAnisoMag of its ObservationModel).
        """
        index = np.asarray(index, np.int64).reshape(-1)
        maps = np.stack([self._frequency_map(g) for g in range(len(self.particles.optics))])
        if all(np.array_equal(maps[g], np.eye(2)) for g in np.unique(self.particles.optics_index[
                index])):
            return None
        return maps[self.particles.optics_index[index]]

    def _frequency_map(self, g: int) -> np.ndarray:
        group = self.particles.optics[g]
        length_ratio = (self.box * self.apix) / (group.box * group.apix)
        if abs(length_ratio - 1.0) < 1e-9:
            length_ratio = 1.0
        return length_ratio * mag_matrix(group)

    def slices(self, index: np.ndarray, *, shift_A: np.ndarray | None = None,
               raw: np.ndarray | None = None) -> Slices:
        """Particles ``index`` (one image grid) ready to insert into output-grid sums.

        ``shift_A`` and ``raw`` as for :meth:`spectra`.
        """
        index = np.asarray(index, np.int64).reshape(-1)
        spectra, ctf, _ = self.spectra(index, shift_A=shift_A, raw=raw)
        box, _ = self.image_grid(index)
        if box != self.box:
            # RELION's FFT divides by the pixel count, so an image of another box enters
            # with (B_out / B)^2 relative to one of the output box, as resampling it would.
            spectra = spectra * np.float32((self.box / box) ** 2)
        return Slices(spectra, ctf, self.frequency_maps(index), self.premultiplied(index))

    def chunks(self, index: np.ndarray | None = None, *, chunk: int | None = None,
               **spectra_options) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
        """Yield (index, spectra, ctf, apix_out) for consecutive chunks of ``index``,
        each on one image grid.

        ``spectra_options`` are those of :meth:`spectra`.
        """
        index = np.arange(len(self)) if index is None else np.asarray(index, np.int64).reshape(-1)
        step = self.chunk if chunk is None else max(1, int(chunk))
        for start in range(0, len(index), step):
            part = index[start:start + step]
            for rows in self.by_image_grid(part):
                yield (part[rows], *self.spectra(part[rows], **spectra_options))


def _groups_with_own_mtf(particles: ParticleSet) -> set[int]:
    """Groups whose MTF differs from another group's (RELION corrects only then)."""
    names = {g.mtf_name for g in particles.optics}
    if len(names) < 2:
        return set()
    return {g for g, group in enumerate(particles.optics) if group.mtf is not None}

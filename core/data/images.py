"""Particle images as the engine asks for them: spectra of images i..j,
centred, optionally phase-flipped and Fourier-cropped, with their CTFs.

Nothing here knows a file format: a :class:`ParticleImages` pairs the
particle table with a stack reader, and every consumer (reconstruction,
alignment, refinement) asks it for chunks of spectra. Chunks bound memory by
their size, never by the dataset's.
"""

from __future__ import annotations

import math
from typing import Iterator, Protocol, Sequence

import numpy as np

from ..fourier.grids import centred_axis, fft2c, fourier_crop_2d
from .ctf import particle_ctfs
from .ctf import phase_flip as apply_phase_flip
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


class ParticleImages:
    """Spectra and CTFs of a particle set's images, by index, in chunks.

    Parameters
    ----------
    particles
        The particle table; its optics groups must share one box and pixel size.
    reader
        Where the images come from (resolves the paths in ``particles``).
    chunk
        Default number of particles read at a time by :meth:`chunks`.
    """

    def __init__(self, particles: ParticleSet, reader: ImageReader, *, chunk: int = DEFAULT_CHUNK):
        self.particles = particles
        self.reader = reader
        self.chunk = max(1, int(chunk))
        self.box, self.apix = particles.common_box_apix()

    def __len__(self) -> int:
        return len(self.particles)

    def images(self, index: np.ndarray) -> np.ndarray:
        """Raw images (n, B, B) float32 of particles ``index``, as stored."""
        index = np.asarray(index, np.int64).reshape(-1)
        ps = self.particles
        return self.reader.read(ps.image_path[index], ps.image_index[index], rows=index,
                                expected_box=self.box)

    def raw_spectra(self, index: np.ndarray) -> np.ndarray:
        """Centred spectra (n, B, B) complex64 of the stored images, nothing applied: one read
        and one FFT that :meth:`spectra` can serve several ways (``raw=``)."""
        return fft2c(self.images(np.asarray(index, np.int64).reshape(-1)))

    def spectra(self, index: np.ndarray, *, box_out: int | None = None, center: bool = True,
                phase_flip: bool = False, shift_A: np.ndarray | None = None,
                raw: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Centred spectra of particles ``index`` with their CTFs.

        Parameters
        ----------
        index
            Particle indices into the set.
        box_out
            Fourier-crop to this (even) box; None keeps the stored box.
        center
            Undo the origin offset: RELION's image is I(x) = P(x + o), so the
            particle is brought to the box centre as I(x - o), a phase ramp.
        phase_flip
            Multiply by sign(CTF) (the CTF returned stays signed).
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
        b = self.box if box_out is None else int(box_out)
        if b > self.box or b < 2:
            raise ValueError(f"box_out {b} must lie in 2..{self.box}")
        apix_out = self.apix * self.box / b
        raw = self.raw_spectra(index) if raw is None else raw
        spectra = fourier_crop_2d(raw, b)
        if b != self.box:
            # An unnormalised FFT of fewer pixels: rescale so the cropped
            # spectrum is that of the downsampled image, pixel values kept.
            spectra = spectra * (b / self.box) ** 2
        if center:
            origin = self.particles.shift_A[index] if shift_A is None else shift_A
            spectra = spectra * centering_ramp(b, apix_out, origin)
        ctf = particle_ctfs(self.particles, index, b, apix_out)
        if phase_flip:
            spectra = apply_phase_flip(spectra, ctf)
        return spectra.astype(np.complex64, copy=False), ctf.astype(np.float32, copy=False), apix_out

    def chunks(self, index: np.ndarray | None = None, *, chunk: int | None = None,
               **spectra_options) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
        """Yield (index, spectra, ctf, apix_out) for consecutive chunks of ``index``.

        ``spectra_options`` are those of :meth:`spectra`.
        """
        index = np.arange(len(self)) if index is None else np.asarray(index, np.int64).reshape(-1)
        step = self.chunk if chunk is None else max(1, int(chunk))
        for start in range(0, len(index), step):
            part = index[start:start + step]
            yield (part, *self.spectra(part, **spectra_options))

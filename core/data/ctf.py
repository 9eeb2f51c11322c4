"""The contrast transfer function exactly as RELION defines it, and phase flipping.

RELION (ctf.h): gamma = K1 deltaf u^2 + K2 u^4 - K5 - K3 with
K1 = pi lambda, K2 = pi/2 Cs lambda^3, K3 = atan(Q0 / sqrt(1 - Q0^2)),
K5 = phase shift, deltaf = -(dU + dV)/2 - (dU - dV)/2 cos(2 (theta - angle)),
theta the azimuth of the frequency, and CTF = -scale sin(gamma) exp(-B u^2 / 4).
Underfocus is a positive defocus; the CTF is positive near the origin.
"""

from __future__ import annotations

import numpy as np

from ..fourier.grids import freq_grid_2d
from .optics import electron_wavelength_A, even_phase, has_even, has_magnification, magnified


def ctf_gamma(kx, ky, defocus_u_A, defocus_v_A, defocus_angle_deg, voltage_kv, cs_mm,
              amp_contrast, phase_shift_deg=0.0) -> np.ndarray:
    """RELION's phase aberration gamma at frequencies (kx, ky) in 1/Angstrom.

    Parameters broadcast against the frequency arrays, so per-particle values
    shaped (N, 1, 1) against (B, B) grids give (N, B, B).
    """
    lam = electron_wavelength_A(voltage_kv)
    cs_A = np.asarray(cs_mm, float) * 1e7
    q0 = np.asarray(amp_contrast, float)
    u2 = kx * kx + ky * ky
    theta = np.arctan2(ky, kx)
    du = np.asarray(defocus_u_A, float)
    dv = np.asarray(defocus_v_A, float)
    azimuth = np.radians(defocus_angle_deg)
    deltaf = -0.5 * (du + dv) - 0.5 * (du - dv) * np.cos(2.0 * (theta - azimuth))
    k1 = np.pi * lam
    k2 = 0.5 * np.pi * cs_A * lam ** 3
    k3 = np.arctan(q0 / np.sqrt(1.0 - q0 * q0))
    k5 = np.radians(phase_shift_deg)
    return k1 * deltaf * u2 + k2 * u2 * u2 - k5 - k3


def ctf_value(kx, ky, defocus_u_A, defocus_v_A, defocus_angle_deg, voltage_kv, cs_mm,
              amp_contrast, phase_shift_deg=0.0, bfactor_A2=0.0, scale=1.0,
              gamma_offset=0.0) -> np.ndarray:
    """RELION's CTF at frequencies (kx, ky) in 1/Angstrom.

    ``gamma_offset`` (radians) is added to gamma: the even aberrations
    (gmmrefine.data.optics.even_phase), as RELION's CTF::getCTF adds them.
    """
    gamma = ctf_gamma(kx, ky, defocus_u_A, defocus_v_A, defocus_angle_deg, voltage_kv, cs_mm,
                      amp_contrast, phase_shift_deg)
    if not np.isscalar(gamma_offset) or gamma_offset != 0.0:
        gamma = gamma + gamma_offset
    u2 = kx * kx + ky * ky
    return -np.asarray(scale, float) * np.sin(gamma) * np.exp(-np.asarray(bfactor_A2, float) * u2 / 4.0)


def particle_ctfs(particles, index, box: int, apix: float) -> np.ndarray:
    """CTFs (n, box, box) on the centred grid for particles[index] of a ParticleSet.

    ``box`` and ``apix`` are those of the grid wanted (e.g. after Fourier
    cropping), not necessarily of the stored images. Each particle's optics
    group brings its magnification (the CTF is evaluated at M k, damping
    included) and its even aberrations (added to gamma), as RELION's
    CTF::getFftwImage applies them.
    """
    index = np.asarray(index)
    kx, ky = freq_grid_2d(box, apix)
    groups = particles.optics_index[index]
    out = np.empty((len(index), box, box))
    per = lambda a: np.asarray(a, float)[:, None, None]  # noqa: E731 - shape for broadcasting
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        sel = index[rows]
        group = particles.optics[g]
        gx, gy = magnified(group, kx, ky) if has_magnification(group) else (kx, ky)
        offset = even_phase(group, kx, ky)[None] if has_even(group) else 0.0
        values = ctf_value(
            gx[None], gy[None],
            per(particles.defocus_u_A[sel]), per(particles.defocus_v_A[sel]),
            per(particles.defocus_angle_deg[sel]), group.voltage_kv, group.cs_mm,
            group.amp_contrast, per(particles.phase_shift_deg[sel]),
            per(particles.bfactor_A2[sel]), per(particles.ctf_scale[sel]), gamma_offset=offset)
        if len(rows) == len(index):
            return values
        out[rows] = values
    return out


def phase_flip(spectra: np.ndarray, ctf: np.ndarray) -> np.ndarray:
    """Multiply centred spectra by the sign of the CTF (zeros stay zero)."""
    return spectra * np.sign(ctf)

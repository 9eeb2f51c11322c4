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


def electron_wavelength_A(voltage_kv: float | np.ndarray) -> np.ndarray:
    """Relativistic electron wavelength in Angstrom (RELION's formula)."""
    v = np.asarray(voltage_kv, float) * 1e3
    return 12.2643247 / np.sqrt(v * (1.0 + v * 0.978466e-6))


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
              amp_contrast, phase_shift_deg=0.0, bfactor_A2=0.0, scale=1.0) -> np.ndarray:
    """RELION's CTF at frequencies (kx, ky) in 1/Angstrom."""
    gamma = ctf_gamma(kx, ky, defocus_u_A, defocus_v_A, defocus_angle_deg, voltage_kv, cs_mm,
                      amp_contrast, phase_shift_deg)
    u2 = kx * kx + ky * ky
    return -np.asarray(scale, float) * np.sin(gamma) * np.exp(-np.asarray(bfactor_A2, float) * u2 / 4.0)


def particle_ctfs(particles, index, box: int, apix: float) -> np.ndarray:
    """CTFs (n, box, box) on the centred grid for particles[index] of a ParticleSet.

    ``box`` and ``apix`` are those of the grid wanted (e.g. after Fourier
    cropping), not necessarily of the stored images.
    """
    index = np.asarray(index)
    kx, ky = freq_grid_2d(box, apix)
    g = particles.optics
    oi = particles.optics_index[index]
    per = lambda a: np.asarray(a, float)[:, None, None]  # noqa: E731 - shape for broadcasting
    return ctf_value(
        kx[None], ky[None],
        per(particles.defocus_u_A[index]), per(particles.defocus_v_A[index]),
        per(particles.defocus_angle_deg[index]),
        per([g[i].voltage_kv for i in oi]), per([g[i].cs_mm for i in oi]),
        per([g[i].amp_contrast for i in oi]),
        per(particles.phase_shift_deg[index]), per(particles.bfactor_A2[index]),
        per(particles.ctf_scale[index]),
    )


def phase_flip(spectra: np.ndarray, ctf: np.ndarray) -> np.ndarray:
    """Multiply centred spectra by the sign of the CTF (zeros stay zero)."""
    return spectra * np.sign(ctf)

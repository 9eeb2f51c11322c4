"""RELION 3.1's observation model: what an optics group does to a particle's spectrum.

Per optics group (gmmrefine.data.particles.OpticsGroup), on frequencies k
(1/Angstrom) of the particle image's own grid, as RELION's ObservationModel
and CTF apply them (src/jaz/obs_model.cpp, src/ctf.h):

- **Magnification** M (rlnMagMat00..11): the image at frequency k holds the
  specimen's frequency M k. The CTF, both aberrations and the projection are
  all evaluated at M k (:func:`magnified`).
- **Odd aberrations** (rlnOddZernike, with rlnBeamTiltX/Y folded in as coma):
  a phase phi_odd(M k) = sum_i c_i Z_i(M k); the image carries exp(+i phi_odd)
  and is demodulated by exp(-i phi_odd) (:func:`odd_phase`).
- **Even aberrations** (rlnEvenZernike): a phase added to the CTF's gamma,
  CTF = -sin(gamma(M k) + phi_even(M k)) (:func:`even_phase`).
- **MTF** (rlnMtfFileName): RELION's reconstruction divides each group by
  its own MTF and multiplies by the mean of all groups' MTFs, only when the
  groups' MTF files differ (:func:`mtf_values`).

Zernike polynomials are RELION's (src/jaz/math/Zernike.cpp): unnormalised,
Z_n^m(x, y) = R_n^|m|(rho) cos(m phi) for m >= 0 and R_n^|m|(rho) sin(|m| phi)
for m < 0, evaluated at the frequency itself (rho in 1/A, no unit disc), with
RELION's orders: odd Z_1^-1, Z_1^1, Z_3^-3, Z_3^-1, Z_3^1, Z_3^3, Z_5^-5, ...
and even Z_0^0, Z_2^-2, Z_2^0, Z_2^2, Z_4^-4, ... (docs/conventions.md).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

IDENTITY_2D = ((1.0, 0.0), (0.0, 1.0))


def electron_wavelength_A(voltage_kv: float | np.ndarray) -> np.ndarray:
    """Relativistic electron wavelength in Angstrom (RELION's formula)."""
    v = np.asarray(voltage_kv, float) * 1e3
    return 12.2643247 / np.sqrt(v * (1.0 + v * 0.978466e-6))


# --- Zernike polynomials, RELION's order and normalisation ------------------------------

def odd_index_to_mn(i: int) -> tuple[int, int]:
    """(m, n) of the i-th odd Zernike term: Z_1^-1, Z_1^1, Z_3^-3, Z_3^-1, ..."""
    k = int((math.sqrt(1 + 4 * i) - 1.0) / 2.0)
    n = 2 * k + 1
    return 2 * (i - k * k - k) - n, n


def even_index_to_mn(i: int) -> tuple[int, int]:
    """(m, n) of the i-th even Zernike term: Z_0^0, Z_2^-2, Z_2^0, Z_2^2, Z_4^-4, ..."""
    k = int(math.sqrt(i))
    return 2 * (i - k * k - k), 2 * k


@lru_cache(maxsize=None)
def _radial_coefficients(m: int, n: int) -> tuple[tuple[float, int], ...]:
    """(coefficient, power of rho) of R_n^m: the standard finite sum."""
    return tuple(((-1) ** k * math.factorial(n - k)
                  / (math.factorial(k) * math.factorial((n + m) // 2 - k)
                     * math.factorial((n - m) // 2 - k)), n - 2 * k)
                 for k in range((n - m) // 2 + 1))


def zernike(m: int, n: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """RELION's Z_n^m at Cartesian (x, y), unnormalised (Zernike::Z_cart)."""
    if abs(m) > n or (n - abs(m)) % 2:
        raise ValueError(f"Zernike term m={m}, n={n}: expected |m| <= n, n - |m| even")
    rho = np.hypot(x, y)
    radial = sum(c * rho ** p for c, p in _radial_coefficients(abs(m), n))
    phi = np.arctan2(y, x)       # 0 at the origin, as RELION sets it
    return radial * (np.cos(m * phi) if m >= 0 else np.sin(-m * phi))


def zernike_sum(coefficients, index_to_mn, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """sum_i c_i Z_i(x, y) over the non-zero coefficients, in RELION's order."""
    total = np.zeros(np.broadcast(x, y).shape)
    for i, c in enumerate(coefficients):
        if c != 0.0:
            total = total + c * zernike(*index_to_mn(i), x, y)
    return total


# --- one optics group's aberrations ------------------------------------------------------

def beam_tilt_as_odd_zernike(tilt_mrad, cs_mm: float, voltage_kv: float) -> np.ndarray:
    """Beam tilt (x, y, mrad) as the first five odd coefficients (RELION's TiltHelper).

    The axial coma of a tilt t is phi = -2 pi Cs lambda^2 |k|^2 (t . k), which
    RELION writes as c Z_3^1 + 2c Z_1^1 = 3c |k|^2 kx (and likewise in y).
    """
    lam = float(electron_wavelength_A(voltage_kv))
    scale = cs_mm * 20000.0 * lam * lam * math.pi     # Cs (mm -> A) x tilt (mrad -> rad) x 2 pi
    z3x, z3y = (-scale * float(t) / 3.0 for t in tilt_mrad)
    return np.array([2.0 * z3y, 2.0 * z3x, 0.0, z3y, z3x])


def odd_coefficients(group) -> np.ndarray:
    """The group's odd Zernike coefficients with its beam tilt folded in.

    The tilt's coma is added to any rlnOddZernike coma already there, as
    RELION 4 and 5 do; RELION 3.1 replaced Z_3^+-1 instead (only matters for a
    file with both, which RELION 3.1's own CtfRefine never writes).
    """
    coeffs = np.asarray(group.odd_zernike, float)
    if not any(group.beam_tilt_mrad):
        return coeffs
    tilt = beam_tilt_as_odd_zernike(group.beam_tilt_mrad, group.cs_mm, group.voltage_kv)
    out = np.zeros(max(len(coeffs), len(tilt)))
    out[:len(coeffs)] += coeffs
    out[:len(tilt)] += tilt
    return out


def mag_matrix(group) -> np.ndarray:
    """The group's 2x2 magnification matrix M (identity when none is given)."""
    return np.asarray(group.mag_matrix, float).reshape(2, 2)


def has_magnification(group) -> bool:
    return not np.allclose(mag_matrix(group), np.eye(2), rtol=0, atol=1e-12)


def has_odd(group) -> bool:
    return bool(np.any(odd_coefficients(group) != 0))


def has_even(group) -> bool:
    return bool(np.any(np.asarray(group.even_zernike, float) != 0))


def magnified(group, kx: np.ndarray, ky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """M k: the specimen frequency that image frequency (kx, ky) records."""
    m = mag_matrix(group)
    return m[0, 0] * kx + m[0, 1] * ky, m[1, 0] * kx + m[1, 1] * ky


def odd_phase(group, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """phi_odd(M k) in radians at image frequencies (kx, ky) (1/A); the image carries
    exp(+i phi_odd) (ObservationModel::getPhaseCorrection)."""
    mx, my = magnified(group, kx, ky)
    return zernike_sum(odd_coefficients(group), odd_index_to_mn, mx, my)


def even_phase(group, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """phi_even(M k) in radians, added to the CTF's gamma (ObservationModel::getGammaOffset)."""
    mx, my = magnified(group, kx, ky)
    return zernike_sum(group.even_zernike, even_index_to_mn, mx, my)


def mtf_values(curve: np.ndarray, k_abs: np.ndarray) -> np.ndarray:
    """An MTF curve (m, 2) [frequency 1/A, value] at |k| (1/A), interpolated as RELION does.

    RELION (ObservationModel::getMtfImage) finds the entry by assuming even
    spacing, step (last - first) / m, then interpolates linearly between that
    entry and the next; below the second entry and beyond the last but one it
    takes the end values.
    """
    freq, value = np.asarray(curve, float).T
    step = (freq[-1] - freq[0]) / len(freq)
    i0 = np.floor(np.asarray(k_abs, float) / step).astype(np.int64)
    inner = np.clip(i0, 0, len(freq) - 2)
    x0, x1 = freq[inner], freq[inner + 1]
    y0, y1 = value[inner], value[inner + 1]
    out = y0 + (y1 - y0) * (k_abs - x0) / (x1 - x0)
    out = np.where(i0 <= 0, value[0], out)
    return np.where(i0 >= len(freq) - 1, value[-1], out)


def describe_aberrations(group) -> str:
    """One line of what a group carries beyond the plain CTF ("" when nothing)."""
    parts = []
    if any(group.beam_tilt_mrad):
        parts.append("beam tilt ({:.3g}, {:.3g}) mrad".format(*group.beam_tilt_mrad))
    if np.any(np.asarray(group.odd_zernike) != 0):
        parts.append(f"{len(group.odd_zernike)} odd Zernike terms")
    if has_even(group):
        parts.append(f"{len(group.even_zernike)} even Zernike terms")
    if has_magnification(group):
        parts.append("magnification matrix " + np.array2string(
            mag_matrix(group).ravel(), precision=4, separator=" "))
    if group.mtf is not None:
        parts.append(f"MTF {group.mtf_name}")
    if group.ctf_premultiplied:
        parts.append("CTF-premultiplied images")
    return ", ".join(parts)

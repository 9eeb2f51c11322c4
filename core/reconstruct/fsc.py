"""Gold-standard Fourier shell correlation, with RELION's mask correction.

Shells are the rounded radius in Fourier pixels, 0 .. box // 2, as in
:mod:`gmmrefine.fourier.grids` and RELION's getFSC; voxels beyond box // 2 (the
corners of the cube) are left out. Shell s is resolution box * apix / s.

The masked-FSC correction is relion_postprocess's (Chen et al. 2013,
Ultramicroscopy 135:24), checked against RELION 3.1 src/postprocessing.cpp:
the phases of both unmasked half maps are randomised from the first shell
s > 0 where the unmasked FSC drops below 0.8, the randomised maps are masked
and correlated (FSC_n), and from shell s + 2 on (RELION moves it two shells
up because of artefacts at the randomisation edge)
FSC_true = (FSC_t - FSC_n) / (1 - FSC_n); below, FSC_true = FSC_t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..errors import InputError
from ..fourier.filters import randomise_phases_beyond
from ..fourier.grids import rfft_shell_index

RANDOMISE_AT_FSC = 0.8   # relion_postprocess --randomize_at_fsc default
CORRECTION_OFFSET_SHELLS = 2


def _rfft_multiplicity(shape: tuple[int, ...]) -> np.ndarray:
    """How often each rfftn column stands for itself in the full transform.

    Columns 0 and (even boxes) B/2 appear once; every other column also
    stands for its complex-conjugate partner at -kx, so it counts twice. With
    these weights sums over the half transform equal sums over the full one.
    """
    n = shape[-1]
    weights = np.full(n // 2 + 1, 2.0)
    weights[0] = 1.0
    if n % 2 == 0:
        weights[-1] = 1.0
    return weights


def _spectrum(volume: np.ndarray) -> np.ndarray:
    # scipy keeps float32 maps in single precision: half the memory of numpy's
    # float64 transform, which matters for boxes of several hundred voxels.
    volume = np.asarray(volume)
    if volume.dtype != np.float32:
        volume = volume.astype(np.float64)
    return scipy.fft.rfftn(volume)


def _shell_sums(map1: np.ndarray, map2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-shell sums of Re(F1 F2*), |F1|^2 and |F2|^2 (full transform)."""
    box = map1.shape[-1]
    n_shells = box // 2 + 1
    f1, f2 = _spectrum(map1), _spectrum(map2)
    # Voxels beyond box // 2 go to one overflow bin that is dropped at the end.
    shells = np.minimum(rfft_shell_index(map1.shape), n_shells).ravel()
    weight = np.broadcast_to(_rfft_multiplicity(map1.shape), f1.shape).ravel()

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(shells, weights=weight * values.ravel(), minlength=n_shells + 1)[:n_shells]

    cross = total((f1 * np.conj(f2)).real)
    power1 = total(f1.real ** 2 + f1.imag ** 2)
    power2 = total(f2.real ** 2 + f2.imag ** 2)
    return cross, power1, power2


def _check_same_box(map1: np.ndarray, map2: np.ndarray, mask: np.ndarray | None) -> None:
    shapes = [np.shape(map1), np.shape(map2)] + ([np.shape(mask)] if mask is not None else [])
    if len(set(shapes)) != 1 or len(shapes[0]) != 3 or len(set(shapes[0])) != 1:
        raise ValueError(f"FSC needs cubic 3D maps of one shape; got {shapes}")


def fsc_curve(map1: np.ndarray, map2: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Fourier shell correlation of two maps per integer shell 0 .. box // 2.

    Parameters
    ----------
    map1, map2 : (B, B, B) arrays
        Half maps, indexed [z, y, x].
    mask : (B, B, B) array, optional
        Multiplied into both maps first (the plain masked FSC, uncorrected).

    Returns
    -------
    (B // 2 + 1,) float array. A shell where either map has no power gets 0.
    """
    _check_same_box(map1, map2, mask)
    if mask is not None:
        map1 = np.asarray(map1) * mask
        map2 = np.asarray(map2) * mask
    cross, power1, power2 = _shell_sums(map1, map2)
    denom = np.sqrt(power1 * power2)
    return np.where(denom > 0, cross / np.where(denom > 0, denom, 1.0), 0.0)


def crossing_shell(fsc: np.ndarray, threshold: float = 0.143) -> float | None:
    """Fractional shell where ``fsc`` first falls below ``threshold``, from shell 1 on.

    Linear interpolation between the last shell at or above the threshold and
    the first one below it. Shell 0 (the mean) counts as 1, since zero-mean
    maps make it undefined. Returns None when the curve never falls below.
    """
    fsc = np.asarray(fsc, float).copy()
    fsc[0] = 1.0
    below = np.nonzero(fsc[1:] < threshold)[0]
    if below.size == 0:
        return None
    i = int(below[0]) + 1
    hi, lo = fsc[i - 1], fsc[i]
    return (i - 1) + (hi - threshold) / (hi - lo)


def resolution_at(fsc: np.ndarray, box: int, apix: float, threshold: float = 0.143) -> float:
    """Resolution (A) where the FSC first falls below ``threshold``, counting from shell 1.

    Interpolates linearly in shell between the two shells around the
    crossing. A curve that never falls below gives Nyquist, 2 * apix; one
    that is already below at shell 1 gives a resolution coarser than the box.
    """
    shell = crossing_shell(fsc, threshold)
    if shell is None:
        return 2.0 * apix
    return box * apix / shell


@dataclass(frozen=True)
class MaskedFSC:
    """FSC curves of relion_postprocess's mask correction (all per shell 0 .. box // 2).

    Attributes
    ----------
    unmasked, masked : FSC of the half maps without / with the mask.
    phase_randomised_masked : FSC_n, the masked FSC of the phase-randomised halves.
    corrected : FSC_true.
    randomisation_shell : first shell whose phases were randomised.
    """

    unmasked: np.ndarray
    masked: np.ndarray
    phase_randomised_masked: np.ndarray
    corrected: np.ndarray
    randomisation_shell: int


def randomisation_shell_from_fsc(fsc_unmasked: np.ndarray, at_fsc: float = RANDOMISE_AT_FSC) -> int | None:
    """First shell > 0 where the unmasked FSC is below ``at_fsc`` (RELION's rule), or None."""
    below = np.nonzero(np.asarray(fsc_unmasked)[1:] < at_fsc)[0]
    return int(below[0]) + 1 if below.size else None


def correct_masked_fsc(masked: np.ndarray, randomised_masked: np.ndarray,
                       randomisation_shell: int) -> np.ndarray:
    """FSC_true = (FSC_t - FSC_n) / (1 - FSC_n) from shell ``randomisation_shell + 2`` on."""
    masked = np.asarray(masked, float).copy()
    fsc_n = np.asarray(randomised_masked, float).copy()
    # RELION: "Sometimes FSC at origin becomes -1!"
    masked[0] = masked[0] if masked[0] > 0 else 1.0
    fsc_n[0] = fsc_n[0] if fsc_n[0] > 0 else 1.0
    corrected = masked.copy()
    start = randomisation_shell + CORRECTION_OFFSET_SHELLS
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = (masked[start:] - fsc_n[start:]) / (1.0 - fsc_n[start:])
    # FSC_n == 1 would mean the mask alone explains everything: no true signal left.
    corrected[start:] = np.where(np.isfinite(tail), tail, 0.0)
    return corrected


def masked_fsc_corrected(map1: np.ndarray, map2: np.ndarray, mask: np.ndarray, apix: float, *,
                         seed: int = 0, randomise_at_fsc: float = RANDOMISE_AT_FSC,
                         randomise_at_A: float | None = None) -> MaskedFSC:
    """Masked FSC corrected for the mask's own correlation by phase randomisation.

    Parameters
    ----------
    map1, map2 : (B, B, B) arrays
        Unmasked, unfiltered half maps.
    mask : (B, B, B) array
        Soft mask in [0, 1].
    apix : float
        Voxel size in Angstrom (used with ``randomise_at_A``).
    seed : int
        Seed of the random phases (both halves get independent ones).
    randomise_at_fsc : float
        Randomise from the first shell where the unmasked FSC is below this
        (RELION's --randomize_at_fsc, 0.8).
    randomise_at_A : float, optional
        Randomise from this resolution instead (RELION's --randomize_at_A;
        shell = int(box * apix / randomise_at_A)).

    Returns
    -------
    MaskedFSC

    Raises
    ------
    InputError
        When the unmasked FSC never falls below ``randomise_at_fsc``: the
        halves are not independent (RELION stops there too).
    """
    _check_same_box(map1, map2, mask)
    box = np.shape(map1)[-1]
    unmasked = fsc_curve(map1, map2)
    masked = fsc_curve(map1, map2, mask)
    if randomise_at_A is not None:
        shell = int(box * apix / randomise_at_A)
    else:
        shell = randomisation_shell_from_fsc(unmasked, randomise_at_fsc)
    if shell is None or shell < 1:
        raise InputError(f"half maps: the unmasked FSC never drops below {randomise_at_fsc}; "
                         "expected independently refined half maps")
    rng = np.random.default_rng(seed)
    random1 = randomise_phases_beyond(map1, shell, rng)
    random2 = randomise_phases_beyond(map2, shell, rng)
    randomised = fsc_curve(random1, random2, mask)
    corrected = correct_masked_fsc(masked, randomised, shell)
    return MaskedFSC(unmasked, masked, randomised, corrected, shell)

"""ParticleSet: the engine's only particle table.

Every reader fills one and every writer reads one. Canonical fields hold what
the engine uses, in the one convention (docs/conventions.md); the host file's
own table rides along untouched (``star_particles`` / ``star_optics`` for
RELION, ``cs`` for CryoSPARC) so a file written back keeps every column the
user had, whether or not gmmrefine understands it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError


@dataclass
class OpticsGroup:
    """Acquisition parameters shared by a group of particles.

    Beyond the plain CTF, RELION 3.1's optics (gmmrefine.data.optics applies
    them): beam tilt in mrad (rlnBeamTiltX/Y), odd and even Zernike
    coefficients in radians (rlnOddZernike / rlnEvenZernike, RELION's order),
    the magnification matrix (rlnMagMat00..11, rows), the MTF as (m, 2)
    [frequency 1/A, value] with its file's name, and whether the images are
    already multiplied by their CTF (rlnCtfDataAreCtfPremultiplied).
    ``unmodelled`` names the host's non-zero aberration fields that have no
    exact counterpart here (CryoSPARC's trefoil, tetrafoil, shift), so that
    whoever applies the optics can say they were not applied.
    """

    name: str
    apix: float            # image pixel size, Angstrom
    box: int               # image size, pixels
    voltage_kv: float
    cs_mm: float
    amp_contrast: float
    beam_tilt_mrad: tuple[float, float] = (0.0, 0.0)
    odd_zernike: tuple[float, ...] = ()
    even_zernike: tuple[float, ...] = ()
    mag_matrix: tuple[tuple[float, float], tuple[float, float]] = ((1.0, 0.0), (0.0, 1.0))
    mtf_name: str = ""
    mtf: np.ndarray | None = field(default=None, repr=False)
    ctf_premultiplied: bool = False
    unmodelled: tuple[tuple[str, tuple[float, ...]], ...] = ()   # (field, value) not applied


# Per-particle arrays, all of length N; ``subset`` slices exactly these.
_PER_PARTICLE = (
    "image_path", "image_index", "optics_index",
    "defocus_u_A", "defocus_v_A", "defocus_angle_deg", "phase_shift_deg",
    "bfactor_A2", "ctf_scale", "rotation", "shift_A", "half_set", "uid",
)


@dataclass
class ParticleSet:
    """N particles: image references, CTF, pose and half set.

    image_path     (N,) str   stack file as the host names it (no ``>``, no ``@``)
    image_index    (N,) int64 0-based index into that stack
    optics_index   (N,) int64 index into ``optics``
    defocus_u_A, defocus_v_A, defocus_angle_deg, phase_shift_deg, bfactor_A2,
    ctf_scale      (N,) float64, RELION's meaning
    rotation       (N, 3, 3)  RELION's matrix A (identity where no pose is known)
    shift_A        (N, 2)     rlnOriginXAngst, rlnOriginYAngst
    half_set       (N,) int8  1 or 2; 0 where the host had no split
    uid            (N,) uint64 CryoSPARC uid, carried through every conversion
    """

    image_path: np.ndarray
    image_index: np.ndarray
    optics_index: np.ndarray
    optics: list[OpticsGroup]
    defocus_u_A: np.ndarray
    defocus_v_A: np.ndarray
    defocus_angle_deg: np.ndarray
    phase_shift_deg: np.ndarray
    bfactor_A2: np.ndarray
    ctf_scale: np.ndarray
    rotation: np.ndarray
    shift_A: np.ndarray
    half_set: np.ndarray
    uid: np.ndarray
    has_pose: bool = True
    source: Path | None = None          # the file this set was read from
    root: Path | None = None            # directory image paths resolve against
    star_particles: object | None = None   # pandas.DataFrame of the input's particle rows
    star_optics: object | None = None      # pandas.DataFrame of the input's optics table
    cs: np.ndarray | None = None           # the input's .cs structured array, row-aligned
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_index)

    # --- derived per-particle views -------------------------------------------------
    @property
    def apix(self) -> np.ndarray:
        """Pixel size (Angstrom) of each particle's image."""
        return np.array([g.apix for g in self.optics], float)[self.optics_index]

    @property
    def box(self) -> np.ndarray:
        """Box size (pixels) of each particle's image."""
        return np.array([g.box for g in self.optics], np.int64)[self.optics_index]

    def groups_present(self) -> list[int]:
        """Indices of the optics groups that have particles in this set, in table order."""
        return [int(g) for g in np.unique(self.optics_index)]

    def output_grid(self, box: int | None = None, apix: float | None = None) -> tuple[int, float]:
        """The (box, pixel size) maps of this set are made on.

        The first optics group's (in table order, among those with particles)
        unless ``box`` / ``apix`` are given, as relion_reconstruct takes its
        defaults from the first group; groups of other pixel or box sizes are
        rescaled onto it in Fourier space (docs/conventions.md, "Optics").
        """
        first = self.optics[self.groups_present()[0]]
        for g in self.groups_present():
            group = self.optics[g]
            if group.box <= 0 or group.apix <= 0:
                raise InputError(
                    f"{self.source}: optics group {group.name}: box {group.box} px, pixel size "
                    f"{group.apix} A; expected positive values (rlnImageSize / "
                    "rlnImagePixelSize in the optics table, or blob/shape / blob/psize_A)")
        if (box is not None and (box <= 0 or box % 2)) or (apix is not None and apix <= 0):
            raise InputError(f"maps of box {box} px (--box) at {apix} A/px (--apix); expected "
                             "an even box and a positive pixel size")
        return (first.box if box is None else int(box)), (first.apix if apix is None
                                                           else float(apix))

    # --- selection and replacement ----------------------------------------------------
    def subset(self, index) -> "ParticleSet":
        """The particles at ``index`` (int array or boolean mask), passthrough included."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        kw = {name: getattr(self, name)[index] for name in _PER_PARTICLE}
        if self.star_particles is not None:
            kw["star_particles"] = self.star_particles.iloc[index].reset_index(drop=True)
        if self.cs is not None:
            kw["cs"] = self.cs[index]
        return dataclasses.replace(self, **kw)

    def with_poses(self, rotation: np.ndarray, shift_A: np.ndarray) -> "ParticleSet":
        """A copy with new poses; every other field is shared."""
        rotation = np.asarray(rotation, float).reshape(len(self), 3, 3)
        shift_A = np.asarray(shift_A, float).reshape(len(self), 2)
        return dataclasses.replace(self, rotation=rotation, shift_A=shift_A, has_pose=True)

    def resolve_image_path(self, i: int) -> Path:
        """Absolute path of particle i's stack, resolved the way the host does."""
        p = Path(self.image_path[i])
        return p if p.is_absolute() or self.root is None else self.root / p

    # --- checks -------------------------------------------------------------------------
    def split_balance(self) -> tuple[int, int]:
        """Number of particles in half 1 and half 2."""
        return int(np.sum(self.half_set == 1)), int(np.sum(self.half_set == 2))

    def with_halves(self) -> tuple["ParticleSet", str | None]:
        """This set with a usable half split, and a note when one had to be made.

        A set with no split at all is split deterministically (alternating
        rows, so reruns agree and both halves sample every micrograph alike);
        a partial or degenerate split is refused.
        """
        halves = np.asarray(self.half_set)
        if np.all(halves == 0):
            split = (1 + np.arange(len(self)) % 2).astype(np.int8)
            note = (f"{self.source} has no half-set split: particles were split into halves by "
                    "alternating rows (odd rows half 1, even rows half 2)")
            return dataclasses.replace(self, half_set=split), note
        unsplit = int(np.sum((halves != 1) & (halves != 2)))
        if unsplit:
            raise InputError(
                f"{self.source}: {unsplit} particles have no half set (rlnRandomSubset / "
                "alignments3D/split) while the others do; expected every particle in half 1 or 2")
        self.require_halves()
        return self, None

    def require_halves(self) -> None:
        """Refuse a missing or degenerate split (RELION segfaults on one; pyem #44)."""
        n1, n2 = self.split_balance()
        if n1 == 0 or n2 == 0:
            raise InputError(
                f"{self.source}: half-set split has {n1} particles in half 1 and {n2} in half 2; "
                "expected both halves populated (rlnRandomSubset 1/2 or alignments3D/split 0/1)")


def empty_like_arrays(n: int) -> dict:
    """Default per-particle arrays for a reader that fills the rest."""
    return dict(
        image_path=np.array([""] * n, dtype=object),
        image_index=np.zeros(n, np.int64),
        optics_index=np.zeros(n, np.int64),
        defocus_u_A=np.zeros(n), defocus_v_A=np.zeros(n), defocus_angle_deg=np.zeros(n),
        phase_shift_deg=np.zeros(n), bfactor_A2=np.zeros(n), ctf_scale=np.ones(n),
        rotation=np.tile(np.eye(3), (n, 1, 1)), shift_A=np.zeros((n, 2)),
        half_set=np.zeros(n, np.int8), uid=np.zeros(n, np.uint64),
    )

"""A protein-like atomic model built in code, with a rigid core and a hinged domain.

Nothing is downloaded: the model is assembled from ideal secondary structure
(alpha helices and beta strands built from backbone internal coordinates,
side chains from per-residue templates), packed into a compact globular
core and a smaller domain that touches it. The domain can rotate about a
hinge (a point and an axis), which is what a flexible data set varies per
particle. Everything is deterministic from the seed.

Coordinates are in Angstrom relative to the box centre (voxel B // 2), the
engine's one convention.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..data.rotations import axis_angle_matrix
from .backbone import HELIX, STRAND, loop, place, segment_on_line
from .residues import RESIDUE_FREQUENCY, SIDE_CHAINS

CORE, DOMAIN = 0, 1
_CHAIN_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass
class Model:
    """Atoms of a model and the hinge its domain turns about.

    element      (N,) str    "C", "N", "O" or "S" (non-hydrogen atoms only)
    coords_A     (N, 3)      x, y, z in Angstrom relative to the box centre
    domain       (N,) int8   0 for the rigid core, 1 for the hinged domain
    atom_name    (N,) str    PDB atom name ("CA", "CB", ...)
    res_name     (N,) str    three-letter residue name
    res_seq      (N,) int    residue number
    chain        (N,) str    chain id (one per copy in an assembly)
    bfactor_A2   (N,) float  atomic displacement factor
    hinge_point_A (3,)       a point on the hinge axis
    hinge_axis    (3,)       unit vector of the hinge axis
    """

    element: np.ndarray
    coords_A: np.ndarray
    domain: np.ndarray
    atom_name: np.ndarray
    res_name: np.ndarray
    res_seq: np.ndarray
    chain: np.ndarray
    bfactor_A2: np.ndarray
    hinge_point_A: np.ndarray
    hinge_axis: np.ndarray

    def __len__(self) -> int:
        return len(self.element)

    @property
    def domain_mass_fraction(self) -> float:
        """Fraction of the non-H mass that sits in the hinged domain."""
        mass = atomic_mass_da(self.element)
        return float(mass[self.domain == DOMAIN].sum() / mass.sum())

    @property
    def mass_kda(self) -> float:
        """Mass in kDa, hydrogens included approximately (one H per heavy atom)."""
        return float((atomic_mass_da(self.element) + 1.008).sum() / 1e3)

    def with_coords(self, coords_A: np.ndarray) -> "Model":
        """A copy with new coordinates; every other field is shared."""
        return dataclasses.replace(self, coords_A=np.asarray(coords_A, float))


def atomic_mass_da(element: np.ndarray) -> np.ndarray:
    """Atomic mass (Dalton) of each element symbol."""
    table = {"C": 12.011, "N": 14.007, "O": 15.999, "S": 32.06}
    return np.array([table[e] for e in element], float)


# --- conformations -------------------------------------------------------------------------

def conformation_coords(model: Model, hinge_angle_deg: float) -> np.ndarray:
    """Atom coordinates with the domain turned by ``hinge_angle_deg`` about the hinge."""
    turn = axis_angle_matrix(model.hinge_axis, hinge_angle_deg)[0]
    coords = model.coords_A.copy()
    moving = model.domain == DOMAIN
    coords[moving] = (coords[moving] - model.hinge_point_A) @ turn.T + model.hinge_point_A
    return coords


def tip_radius_A(model: Model) -> float:
    """Distance from the hinge axis of the domain atom farthest from it (the tip)."""
    rel = model.coords_A[model.domain == DOMAIN] - model.hinge_point_A
    along = rel @ model.hinge_axis
    return float(np.max(np.linalg.norm(rel - along[:, None] * model.hinge_axis, axis=1)))


def hinge_range_deg(model: Model, tip_travel_A: float) -> float:
    """Full hinge-angle range over which the domain tip travels ``tip_travel_A`` (arc length)."""
    return float(np.degrees(tip_travel_A / tip_radius_A(model)))


# --- assemblies ------------------------------------------------------------------------------

def assemble_copies(subunit: Model, operators: np.ndarray) -> Model:
    """Copies of ``subunit``, copy k rotated about the box centre by ``operators[k]``.

    This is where point-group assemblies (C3, D2, ...) are made: pass the
    group's rotation matrices (the identity included). Chain ids are renamed
    so copies never share one (copy k of chain j gets id k * n_chains + j of
    A-Z, a-z, 0-9, the one-character ids PDB files allow; beyond 62 chains,
    as in an icosahedral assembly, ids repeat); the hinge stays that of the
    first copy.
    """
    operators = np.asarray(operators, float).reshape(-1, 3, 3)
    coords = np.concatenate([subunit.coords_A @ op.T for op in operators])
    names = sorted(set(subunit.chain))
    index = np.array([names.index(c) for c in subunit.chain])
    chains = np.concatenate([[_CHAIN_IDS[(k * len(names) + j) % len(_CHAIN_IDS)] for j in index]
                             for k in range(len(operators))])
    tile = lambda a: np.concatenate([a] * len(operators))  # noqa: E731
    return Model(element=tile(subunit.element), coords_A=coords, domain=tile(subunit.domain),
                 atom_name=tile(subunit.atom_name), res_name=tile(subunit.res_name),
                 res_seq=tile(subunit.res_seq), chain=chains.astype(object),
                 bfactor_A2=tile(subunit.bfactor_A2), hinge_point_A=subunit.hinge_point_A.copy(),
                 hinge_axis=subunit.hinge_axis.copy())


def symmetric_assembly(subunit: Model, operators: np.ndarray, gap_A: float = 4.0) -> Model:
    """A point-group assembly of ``subunit`` whose copies touch without overlapping.

    The subunit is moved off every symmetry axis, along the direction whose
    symmetry images lie farthest from it, then slid in towards the centre
    until the closest atoms of different copies are ``gap_A`` apart (van der
    Waals contact), and copied by :func:`assemble_copies`. The assembly
    satisfies V(R x) = V(x) for every operator R: it is symmetric in the
    sense of :mod:`gmmrefine.data.symmetry_groups` (RELION's).
    """
    operators = np.asarray(operators, float).reshape(-1, 3, 3)
    if len(operators) == 1:
        return subunit
    coords = subunit.coords_A - subunit.coords_A.mean(axis=0)
    direction = _off_axis_direction(operators)
    spread = np.min(np.linalg.norm(operators[1:] @ direction - direction, axis=1))
    radius = np.linalg.norm(coords, axis=1).max()
    # Far enough out that copies cannot meet: their centres are 2 radius + gap apart.
    t = (2.0 * radius + gap_A) / spread

    def closest_other_copy_A(shift: float) -> float:
        placed = coords + shift * direction
        others = np.concatenate([placed @ op.T for op in operators[1:]])
        return float(cKDTree(others).query(placed, k=1)[0].min())

    while t > 1.0 and closest_other_copy_A(t - 1.0) >= gap_A:
        t -= 1.0
    offset = t * direction - subunit.coords_A.mean(axis=0)
    placed = dataclasses.replace(subunit, coords_A=subunit.coords_A + offset,
                                 hinge_point_A=subunit.hinge_point_A + offset)
    return assemble_copies(placed, operators)


def _off_axis_direction(operators: np.ndarray, n_candidates: int = 2000) -> np.ndarray:
    """The unit vector whose images under the non-identity operators are farthest from it
    (among a Fibonacci-sphere set of candidates: deterministic)."""
    i = np.arange(n_candidates) + 0.5
    z = 1.0 - 2.0 * i / n_candidates
    phi = np.pi * (1.0 + np.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    candidates = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    images = np.einsum("gij,nj->gni", operators[1:], candidates)
    distance = np.linalg.norm(images - candidates[None], axis=2).min(axis=0)
    return candidates[int(np.argmax(distance))]


# --- the default model -------------------------------------------------------------------------

def build_model(seed: int = 0, n_residues: int = 820, domain_fraction: float = 0.28,
                bfactor_A2: float = 20.0) -> Model:
    """A ~90 kDa (default) two-part protein-like model, deterministic from ``seed``.

    The core is a bundle of antiparallel alpha helices whose axes sit on a
    hexagonal lattice (10 A apart, the packing of real helix bundles) inside
    a sphere; the domain is a four-stranded antiparallel beta sheet covered
    by a layer of helices, packed against one side of the core. Loops join
    consecutive segments. The hinge passes through the contact point of the
    two parts, perpendicular to the line joining their centres.

    Parameters
    ----------
    seed : int
        Seeds residue types, side-chain rotamers and helix phases.
    n_residues : int
        Approximate total number of residues (820 gives ~90 kDa).
    domain_fraction : float
        Approximate fraction of residues in the hinged domain.
    bfactor_A2 : float
        B-factor given to every atom.
    """
    rng = np.random.default_rng(seed)
    n_domain = int(round(n_residues * domain_fraction))
    core = _helix_bundle(n_residues - n_domain, rng)
    domain = _sheet_domain(n_domain, rng)
    core_centre = core.coords().mean(axis=0)
    dom_centre = domain.coords().mean(axis=0)
    core.translate(-core_centre)
    domain.translate(-dom_centre)
    # Put the domain beside the core along +x, at the separation where the
    # closest atoms are ~4 A apart (van der Waals contact, no overlap).
    direction = np.array([1.0, 0.0, 0.0])
    sep = _contact_separation(core.coords(), domain.coords(), direction)
    domain.translate(sep * direction)
    chain = _Chain.join(core, domain)
    model = chain.to_model(bfactor_A2, seed)
    # The hinge: a point on the contact face, axis along y (perpendicular to
    # the core-domain line), so turning moves the domain tip sideways.
    core_x_max = np.max(core.coords()[:, 0])
    hinge_point = np.array([core_x_max, 0.0, 0.0])
    centre = model.coords_A.mean(axis=0)
    model.coords_A = model.coords_A - centre
    model.hinge_point_A = hinge_point - centre
    model.hinge_axis = np.array([0.0, 1.0, 0.0])
    return model


def _contact_separation(a: np.ndarray, b: np.ndarray, direction: np.ndarray,
                        gap_A: float = 4.0) -> float:
    tree = cKDTree(a)
    sep = float(np.max(a @ direction) - np.min(b @ direction))
    # Slide b back towards a until the closest atoms are gap_A apart.
    for _ in range(200):
        d, _ = tree.query(b + (sep - 1.0) * direction, k=1)
        if d.min() < gap_A:
            break
        sep -= 1.0
    return sep


# --- a growing polypeptide ---------------------------------------------------------------------

class _Chain:
    """Backbone residues in order, each tagged with its part (core or domain)."""

    def __init__(self) -> None:
        self.backbone: list[np.ndarray] = []   # (4, 3) per residue
        self.part: list[int] = []

    def add(self, bb: np.ndarray, part: int, rng: np.random.Generator) -> None:
        if self.backbone and self.part[-1] == part:
            for res in loop(self.backbone[-1], bb[0], rng):
                self.backbone.append(res)
                self.part.append(part)
        for res in bb:
            self.backbone.append(res)
            self.part.append(part)

    def coords(self) -> np.ndarray:
        return np.array(self.backbone).reshape(-1, 3)

    def translate(self, v: np.ndarray) -> None:
        self.backbone = [b + v for b in self.backbone]

    @staticmethod
    def join(a: "_Chain", b: "_Chain") -> "_Chain":
        out = _Chain()
        out.backbone = a.backbone + b.backbone
        out.part = a.part + b.part
        return out

    def to_model(self, bfactor_A2: float, seed: int = 0) -> Model:
        rng = np.random.default_rng(seed + 7)
        bb = np.array(self.backbone)
        names = list(RESIDUE_FREQUENCY)
        p = np.array([RESIDUE_FREQUENCY[k] for k in names])
        residues = rng.choice(names, size=len(bb), p=p / p.sum())
        tree = cKDTree(bb.reshape(-1, 3))
        side = np.full((12 * len(bb), 3), np.inf)   # side-chain atoms placed so far
        n_side = 0
        rows = []
        for i, (res, name) in enumerate(zip(bb, residues)):
            for atom_name, elem, xyz in _residue_atoms(res, name, tree, side[:n_side], rng):
                rows.append((elem, xyz, self.part[i], atom_name, name, i + 1))
                if atom_name not in ("N", "CA", "C", "O"):
                    side[n_side] = xyz
                    n_side += 1
        part = np.array([r[2] for r in rows], np.int8)
        return Model(
            element=np.array([r[0] for r in rows], dtype=object),
            coords_A=np.array([r[1] for r in rows]),
            domain=part,
            atom_name=np.array([r[3] for r in rows], dtype=object),
            res_name=np.array([r[4] for r in rows], dtype=object),
            res_seq=np.array([r[5] for r in rows], np.int64),
            # Core and domain are two chains (two subunits of one complex).
            chain=np.where(part == DOMAIN, "B", "A").astype(object),
            bfactor_A2=np.full(len(rows), float(bfactor_A2)),
            hinge_point_A=np.zeros(3), hinge_axis=np.array([0.0, 1.0, 0.0]))


def _residue_atoms(bb: np.ndarray, name: str, tree: cKDTree, side: np.ndarray,
                   rng: np.random.Generator):
    """(atom name, element, xyz) of one residue: backbone, CB and a side chain from its template."""
    n, ca, c, o = bb
    yield "N", "N", n
    yield "CA", "C", ca
    yield "C", "C", c
    yield "O", "O", o
    if name == "GLY":
        return
    cb = place(c, n, ca, 1.53, 110.5, 122.5)
    yield "CB", "C", cb
    template = SIDE_CHAINS[name]
    if not template:
        return
    # Try a few rotamers; keep the one that stays farthest from the backbone
    # and the side chains already placed, so side chains pack rather than clash.
    near = side[np.sum((side - ca) ** 2, axis=1) < 15.0 ** 2]
    best, best_score = None, -1.0
    for _ in range(6):
        chi = rng.choice([-60.0, 180.0, 60.0, 90.0, -90.0], size=4, p=[0.45, 0.3, 0.15, 0.05, 0.05])
        placed = {"N": n, "CA": ca, "CB": cb}
        parents = {"CA": "N", "CB": "CA"}
        atoms = []
        for atom_name, elem, parent, chi_index, offset, angle in template:
            grand = parents[parent]
            great = parents[grand]
            tor = (chi[chi_index] if chi_index >= 0 else 0.0) + offset
            bond = {"C": 1.52, "N": 1.46, "O": 1.43, "S": 1.81}[elem]
            xyz = place(placed[great], placed[grand], placed[parent], bond, angle, tor)
            placed[atom_name] = xyz
            parents[atom_name] = parent
            atoms.append((atom_name, elem, xyz))
        xyz = np.array([a[2] for a in atoms])
        d, _ = tree.query(xyz, k=1)
        score = d.min()
        if len(near):
            score = min(score, np.sqrt(np.min(np.sum((xyz[:, None] - near[None]) ** 2, axis=2))))
        if score > best_score:
            best, best_score = atoms, score
    yield from best


# --- the two parts ---------------------------------------------------------------------------

def _helix_bundle(n_target: int, rng: np.random.Generator) -> _Chain:
    """Antiparallel helices on a hexagonal lattice inside a sphere holding ~n_target residues."""
    # ~130 A^3 per residue in a packed protein; the loops add ~10%.
    radius = (0.9 * n_target * 130.0 * 3.0 / (4.0 * np.pi)) ** (1.0 / 3.0)
    for _ in range(30):
        lattice = _hex_lattice(radius, spacing_A=10.0)
        lengths = [2.0 * np.sqrt(max(radius ** 2 - (p @ p), 0.0)) for p in lattice]
        n_res = sum(int(L / 1.5) for L in lengths if L / 1.5 >= 7)
        if n_res * 1.12 >= n_target:
            break
        radius += 0.5
    chain = _Chain()
    up = True
    for p, L in zip(lattice, lengths):
        n_res = int(L / 1.5)
        if n_res < 7:
            continue
        z0 = -L / 2 if up else L / 2
        direction = np.array([0.0, 0.0, 1.0 if up else -1.0])
        bb = segment_on_line(n_res, HELIX, np.array([p[0], p[1], z0]), direction,
                              rng.uniform(0, 360))
        chain.add(bb, CORE, rng)
        up = not up
        if len(chain.backbone) >= n_target:
            break
    return chain


def _hex_lattice(radius: float, spacing_A: float) -> list[np.ndarray]:
    """Hexagonal lattice points within ``radius``, ordered as a serpentine (neighbours adjacent)."""
    rows = []
    n = int(np.ceil(radius / spacing_A)) + 1
    for j in range(-n, n + 1):
        y = j * spacing_A * np.sqrt(3) / 2
        xs = [(i + 0.5 * (j % 2)) * spacing_A for i in range(-n, n + 1)]
        row = [np.array([x, y]) for x in xs if x * x + y * y < (radius - 3.0) ** 2]
        if row:
            rows.append(row if len(rows) % 2 == 0 else row[::-1])
    return [p for row in rows for p in row]


def _sheet_domain(n_target: int, rng: np.random.Generator) -> _Chain:
    """A four-stranded antiparallel sheet with a layer of helices packed on one face."""
    chain = _Chain()
    strand_len = 8
    for k in range(4):
        up = k % 2 == 0
        x0 = -strand_len * 3.3 / 2 if up else strand_len * 3.3 / 2
        direction = np.array([1.0 if up else -1.0, 0.0, 0.0])
        bb = segment_on_line(strand_len, STRAND, np.array([x0, k * 4.8 - 7.2, 0.0]),
                              direction, 0.0)
        chain.add(bb, DOMAIN, rng)
    # Helices over the sheet (10 A above it), then a second layer, until the target.
    layer_z, y_slots = 10.0, [-10.0, 0.0, 10.0]
    up = True
    while len(chain.backbone) < n_target:
        for y in y_slots:
            remaining = n_target - len(chain.backbone)
            if remaining < 8:
                break
            n_res = int(min(18, remaining - 4))
            L = n_res * 1.5
            x0 = -L / 2 if up else L / 2
            direction = np.array([1.0 if up else -1.0, 0.0, 0.0])
            bb = segment_on_line(n_res, HELIX, np.array([x0, y, layer_z]), direction,
                                  rng.uniform(0, 360))
            chain.add(bb, DOMAIN, rng)
            up = not up
        else:
            layer_z += 10.0
            y_slots = [-5.0, 5.0] if len(y_slots) == 3 else [-10.0, 0.0, 10.0]
            continue
        break
    return chain

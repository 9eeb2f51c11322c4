"""A simulated particle data set on disk, with its truth (``gmmrefine simulate``).

What is written to ``out_dir`` (docs/simulator.md has the definitions):

- particles.mrcs   noisy CTF-modulated projections, float32, noise sd 1 on disk
- particles.star   RELION 3.1, START poses (truth perturbed as an upstream
                   refinement leaves it); start.star is the same file
- particles.cs     the same start poses as a CryoSPARC .cs
- truth.star       the true poses
- truth_map.mrc    the true density (flexible: at the mean conformation)
- model.pdb        the atomic model, overlaying truth_map.mrc (with ``sym``:
                   the point-group assembly, RELION's axes, about the box centre)
- truth.json       every parameter, the SNR, the noise sd, the Cramer-Rao bounds
                   (summary, and per sampled particle by row of particles.star)
- flexible sets also: truth_conformation.npy (hinge angle per particle, deg),
  domain_mask.mrc and truth_map_conf<k>.mrc at a few hinge angles.

With several optics groups (``optics_groups``) each group has its own stack,
particles_group<k>.mrcs, at its own pixel and box size and with its own
aberrations (RELION's forward model: gmmrefine.simulate.optics), and no
particles.cs is written when a group has Zernike terms (a .cs has no field
for them).

Memory: the clean stacks are held once as float32 (n x B x B); complex
spectra exist only per chunk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..data.ctf import particle_ctfs
from ..data.particles import OpticsGroup, ParticleSet
from ..data.rotations import perturb_rotations, random_rotations
from ..data.symmetry_groups import EXPECTED as SYMMETRY_NAMES
from ..data.symmetry_groups import symmetry_operators
from ..errors import InputError
from ..fourier.grids import centred_axis, cosine_edge
from ..io.atomic import atomic_path, write_text_atomic
from ..io.model import map_centre_A
from ..io.mrc import new_stack, write_map
from .crb import pose_bounds, summarize_bounds
from .model import (
    DOMAIN,
    Model,
    build_model,
    conformation_coords,
    hinge_range_deg,
    symmetric_assembly,
)
from .optics import add_noise, render_stacks, stack_sizes
from .pdb import write_pdb
from .render import atom_amplitude, atom_sigma_A, render_map

# Independent random streams, so changing one setting (say n) leaves the
# other draws of a given particle index reproducible.
_POSE, _CTF, _NOISE, _START, _FLEX, _CRB, _UID = range(1, 8)


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of a simulated data set (all land in truth.json)."""

    n: int = 4000
    box: int = 96
    apix: float = 1.3
    snr: float = 0.05
    angle_rms_deg: float = 3.0
    shift_rms_px: float = 0.8
    flexible: bool = False
    flex_amplitude_A: float = 10.0
    seed: int = 0
    bfactor_A2: float = 20.0
    true_shift_sd_px: float = 2.0
    defocus_min_A: float = 8000.0
    defocus_max_A: float = 25000.0
    astigmatism_max_A: float = 1000.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amp_contrast: float = 0.1
    footprint_fraction: float = 0.05
    crb_sample: int = 200
    chunk: int = 256
    n_conformation_maps: int = 5
    sym: str = "C1"
    # RELION optics groups the particles are spread over (by pairs of rows, so both
    # halves see every group), with their own pixel and box sizes and aberrations;
    # empty: one plain group of box and apix above. The maps are made at box and apix.
    optics_groups: tuple[OpticsGroup, ...] = ()

    def check(self) -> None:
        """Refuse settings that cannot make a data set, one clear line each."""
        bad = [(self.n < 2, f"--n {self.n}; expected at least 2 (one particle per half)"),
               (self.box < 16 or self.box % 2, f"--box {self.box}; expected an even size >= 16"),
               (self.apix <= 0, f"--apix {self.apix}; expected a positive pixel size"),
               (not self.snr > 0, f"--snr {self.snr}; expected > 0 (inf: no noise)"),
               (self.angle_rms_deg < 0, f"--angle-rms-deg {self.angle_rms_deg}; expected >= 0"),
               (self.shift_rms_px < 0, f"--shift-rms-px {self.shift_rms_px}; expected >= 0"),
               (self.flex_amplitude_A < 0,
                f"--flex-amplitude-A {self.flex_amplitude_A}; expected >= 0"),
               (self.crb_sample < 0, f"--crb-sample {self.crb_sample}; expected >= 0"),
               (self.chunk < 1, f"chunk {self.chunk}; expected >= 1")]
        for is_bad, message in bad:
            if is_bad:
                raise InputError(f"simulate: {message}")
        for group in self.optics_groups:
            if group.box < 16 or group.box % 2 or group.apix <= 0:
                raise InputError(f"simulate: optics group {group.name}: box {group.box}, "
                                 f"{group.apix} A/px; expected an even box >= 16 and apix > 0")
        try:
            symmetry_operators(self.sym)
        except InputError:
            raise InputError(f"simulate: --sym {self.sym!r}; expected {SYMMETRY_NAMES}") from None
        if self.flexible and self.sym.strip().upper() != "C1":
            # One hinge per assembly would move every copy's domain about the first copy's hinge.
            raise InputError(f"simulate: --flexible with --sym {self.sym}; expected one of them")


def simulate_dataset(out_dir: str | os.PathLike, *, progress=None, **settings) -> dict:
    """Simulate a data set with known truth into ``out_dir``; return the truth summary.

    Parameters
    ----------
    out_dir : path
        Created if needed; files listed in the module docstring are written
        there (each through a temporary name).
    progress : gmmrefine.progress.Progress, optional
        Told of rendered particles (``update``) and of the bound (``log``).
    **settings
        Any field of :class:`SimulationConfig` (n, box, apix, snr,
        angle_rms_deg, shift_rms_px, flexible, flex_amplitude_A, seed, ...).

    Returns
    -------
    dict
        The content of truth.json.
    """
    cfg = SimulationConfig(**settings)
    cfg.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = progress.log if progress is not None else (lambda message: None)
    advance = progress.update if progress is not None else (lambda count: None)
    t0 = time.monotonic()

    model = _build_model(cfg)
    amplitude = atom_amplitude(model.element)
    sigma = atom_sigma_A(model.element, model.bfactor_A2)
    truth = _true_particles(cfg)
    hinge_deg = _hinge_angles(cfg, model)

    conformation = (lambda i: conformation_coords(model, hinge_deg[i])) if cfg.flexible else None
    with contextlib.ExitStack() as files:
        # The stacks are filled on disk, never whole in memory (10^5 particles and more).
        stacks = {g: files.enter_context(new_stack(out / _stack_name(cfg, g), n, box,
                                                   truth.optics[g].apix))
                  for g, (n, box) in stack_sizes(truth).items()}
        _, fp_var = render_stacks(truth, model.coords_A, amplitude, sigma, cfg.chunk,
                                  cfg.footprint_fraction, advance, conformation, stacks)
        # One noise sd for the whole set, as on a detector (SNR definition: docs/simulator.md).
        noise_sd = float(np.sqrt(fp_var.mean() / cfg.snr)) if np.isfinite(cfg.snr) else 0.0
        # Unit noise sd on disk, like RELION's normalised particles.
        image_scale = 1.0 / noise_sd if noise_sd > 0 else 1.0 / float(np.sqrt(fp_var.mean()))
        realised_noise_var = add_noise(stacks, noise_sd, _rng(cfg, _NOISE), cfg.chunk,
                                       image_scale)
        del stacks
    t_render = time.monotonic() - t0

    start = _start_poses(cfg, truth)
    _write_particle_files(out, cfg, truth, start)
    maps = _write_maps(out, cfg, model, amplitude, sigma, hinge_deg)
    write_pdb(out / "model.pdb", model, box_centre_A=map_centre_A(cfg.box, cfg.apix))

    crb = _crb(cfg, model, amplitude, sigma, truth, hinge_deg, noise_sd, log)
    summary = {
        "config": dataclasses.asdict(cfg),
        "model": {"n_atoms": len(model), "mass_kda": model.mass_kda,
                  "domain_mass_fraction": model.domain_mass_fraction,
                  "hinge_point_A": model.hinge_point_A.tolist(),
                  "hinge_axis": model.hinge_axis.tolist(), **_symmetry_summary(cfg, model)},
        "snr_requested": cfg.snr,
        "snr_realised": float(fp_var.mean() / realised_noise_var) if noise_sd > 0 else None,
        "footprint_variance_mean": float(fp_var.mean()),
        "noise_sd": noise_sd,
        "image_scale": image_scale,
        "cramer_rao": crb,
        "render_seconds": t_render,
        "total_seconds": time.monotonic() - t0,
        "files": _written_files(cfg),
        **maps,
    }
    write_text_atomic(out / "truth.json", json.dumps(_jsonable(summary), indent=2) + "\n")
    return summary


# --- the model -----------------------------------------------------------------------------------

# Residues of a whole symmetric assembly (the C1 model has 820, ~90 kDa):
# each subunit gets its share, at least _MIN_SUBUNIT_RESIDUES, so C2..D3
# assemblies weigh ~100 kDa; T, O and I with their many copies weigh more.
_ASSEMBLY_RESIDUES = 900
_MIN_SUBUNIT_RESIDUES = 20


def _subunit_residues(cfg: SimulationConfig) -> int:
    order = len(symmetry_operators(cfg.sym))
    return max(_MIN_SUBUNIT_RESIDUES, round(_ASSEMBLY_RESIDUES / order))


def _build_model(cfg: SimulationConfig) -> Model:
    """The default model (C1), or a point-group assembly of smaller subunits."""
    operators = symmetry_operators(cfg.sym)
    if len(operators) == 1:
        return build_model(cfg.seed, bfactor_A2=cfg.bfactor_A2)
    subunit = build_model(cfg.seed, n_residues=_subunit_residues(cfg), bfactor_A2=cfg.bfactor_A2)
    model = symmetric_assembly(subunit, operators)
    reach_A = float(np.linalg.norm(model.coords_A, axis=1).max())
    half_box_A = cfg.box // 2 * cfg.apix
    if reach_A > half_box_A:
        raise InputError(
            f"simulate: the {cfg.sym} assembly reaches {reach_A:.0f} A from the centre, beyond "
            f"the box's {half_box_A:.0f} A; expected --box x --apix >= {2 * reach_A:.0f} A")
    return model


def _symmetry_summary(cfg: SimulationConfig, model: Model) -> dict:
    order = len(symmetry_operators(cfg.sym))
    if order == 1:
        return {}
    return {"sym": cfg.sym, "copies": order, "subunit_residues": _subunit_residues(cfg),
            "subunit_atoms": len(model) // order,
            "radius_A": float(np.linalg.norm(model.coords_A, axis=1).max())}


# --- particles -----------------------------------------------------------------------------------

def _rng(cfg: SimulationConfig, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream])


def _groups(cfg: SimulationConfig) -> tuple[OpticsGroup, ...]:
    """The optics groups of the set: the configured ones, or one plain group."""
    return cfg.optics_groups or (OpticsGroup(
        name="opticsGroup1", apix=cfg.apix, box=cfg.box, voltage_kv=cfg.voltage_kv,
        cs_mm=cfg.cs_mm, amp_contrast=cfg.amp_contrast),)


def _stack_name(cfg: SimulationConfig, group: int) -> str:
    return "particles.mrcs" if not cfg.optics_groups else f"particles_group{group + 1}.mrcs"


def _true_particles(cfg: SimulationConfig) -> ParticleSet:
    """True poses, shifts and CTFs; half sets alternate 1, 2, 1, ... by row, optics groups
    by pairs of rows."""
    n = cfg.n
    pose_rng, ctf_rng = _rng(cfg, _POSE), _rng(cfg, _CTF)
    rotation = random_rotations(n, pose_rng)
    shift_A = pose_rng.normal(scale=cfg.true_shift_sd_px * cfg.apix, size=(n, 2))
    defocus_u = ctf_rng.uniform(cfg.defocus_min_A, cfg.defocus_max_A, n)
    defocus_v = defocus_u - ctf_rng.uniform(0.0, cfg.astigmatism_max_A, n)
    defocus_angle = ctf_rng.uniform(0.0, 180.0, n)
    uid = _rng(cfg, _UID).integers(1, 2 ** 63, size=n, dtype=np.uint64)
    groups = _groups(cfg)
    optics_index = (np.arange(n) // 2) % len(groups)
    image_index = np.zeros(n, np.int64)
    for g in range(len(groups)):
        members = optics_index == g
        image_index[members] = np.arange(members.sum())
    return ParticleSet(
        image_path=np.array([_stack_name(cfg, g) for g in optics_index], dtype=object),
        image_index=image_index, optics_index=optics_index.astype(np.int64),
        optics=list(groups), defocus_u_A=defocus_u, defocus_v_A=defocus_v,
        defocus_angle_deg=defocus_angle, phase_shift_deg=np.zeros(n), bfactor_A2=np.zeros(n),
        ctf_scale=np.ones(n), rotation=rotation, shift_A=shift_A,
        half_set=np.where(np.arange(n) % 2 == 0, 1, 2).astype(np.int8), uid=uid)


def _start_poses(cfg: SimulationConfig, truth: ParticleSet) -> ParticleSet:
    """Truth perturbed: rms rotation angle_rms_deg, rms 2D shift length shift_rms_px."""
    rng = _rng(cfg, _START)
    rotation = perturb_rotations(truth.rotation, cfg.angle_rms_deg, rng)
    shift_A = truth.shift_A + rng.normal(scale=cfg.shift_rms_px / np.sqrt(2.0) * cfg.apix,
                                         size=truth.shift_A.shape)
    return truth.with_poses(rotation, shift_A)


def _hinge_angles(cfg: SimulationConfig, model: Model) -> np.ndarray:
    """Per-particle hinge angle (deg): uniform over the range that moves the tip flex_amplitude_A."""
    if not cfg.flexible:
        return np.zeros(cfg.n)
    half_range = hinge_range_deg(model, cfg.flex_amplitude_A) / 2.0
    return _rng(cfg, _FLEX).uniform(-half_range, half_range, cfg.n)


# --- files ---------------------------------------------------------------------------------------

def _write_particle_files(out: Path, cfg: SimulationConfig, truth: ParticleSet,
                          start: ParticleSet) -> None:
    from ..io.particles import write_particles

    for ps in (truth, start):
        ps.root = out
    # The set is a project of its own: its files name the stacks from ``out``.
    names = ["particles.star", "start.star"] + (["particles.cs"] if _cs_can_hold(cfg) else [])
    for name in names:
        write_particles(start, out / name, project_dir=out)
    write_particles(truth, out / "truth.star", project_dir=out)


def _cs_can_hold(cfg: SimulationConfig) -> bool:
    """Whether a .cs can describe the optics: it has no field for Zernike terms."""
    return not any(g.odd_zernike or g.even_zernike for g in cfg.optics_groups)


def _write_maps(out: Path, cfg: SimulationConfig, model: Model, amplitude: np.ndarray,
                sigma: np.ndarray, hinge_deg: np.ndarray) -> dict:
    """truth_map.mrc, and for flexible sets the conformation maps, mask and per-particle angles."""
    write_map(out / "truth_map.mrc", render_map(model.coords_A, amplitude, sigma, cfg.box,
                                                cfg.apix), cfg.apix)
    if not cfg.flexible:
        return {}
    half_range = hinge_range_deg(model, cfg.flex_amplitude_A) / 2.0
    with atomic_path(out / "truth_conformation.npy") as tmp:
        np.save(tmp, hinge_deg)
    angles = np.linspace(-half_range, half_range, cfg.n_conformation_maps)
    conf_maps = {}
    for k, angle in enumerate(angles):
        name = f"truth_map_conf{k}.mrc"
        write_map(out / name, render_map(conformation_coords(model, angle), amplitude, sigma,
                                         cfg.box, cfg.apix), cfg.apix)
        conf_maps[name] = float(angle)
    write_map(out / "domain_mask.mrc", domain_mask(model, half_range, cfg.box, cfg.apix),
              cfg.apix)
    return {"flexible": {"hinge_angle_range_deg": [-half_range, half_range],
                         "tip_travel_A": cfg.flex_amplitude_A,
                         "mean_conformation_hinge_deg": 0.0,
                         "conformation_maps_hinge_deg": conf_maps,
                         "per_particle": "truth_conformation.npy (hinge angle, deg, by row)"}}


def domain_mask(model: Model, half_range_deg: float, box: int, apix: float,
                radius_A: float = 3.0, soft_edge_A: float = 6.0, n_angles: int = 9) -> np.ndarray:
    """Soft mask [z, y, x] of the hinged domain over its whole range of motion.

    1 within ``radius_A`` of any domain atom at any of ``n_angles`` hinge
    angles spanning +-half_range_deg; a raised-cosine fall-off to 0 over the
    next ``soft_edge_A``.
    """
    moving = model.domain == DOMAIN
    points = np.concatenate([conformation_coords(model, a)[moving]
                             for a in np.linspace(-half_range_deg, half_range_deg, n_angles)])
    axis = centred_axis(box) * apix
    zz, yy, xx = np.meshgrid(axis, axis, axis, indexing="ij")
    voxels = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    dist, _ = cKDTree(points).query(voxels, k=1, distance_upper_bound=radius_A + soft_edge_A)
    # Beyond the query's upper bound the distance is inf, which the edge takes to 0.
    mask = cosine_edge(dist - radius_A, soft_edge_A)
    return mask.reshape(box, box, box).astype(np.float32)


def _crb(cfg, model, amplitude, sigma, truth, hinge_deg, noise_sd, log) -> dict | None:
    """Cramer-Rao bounds for a random sample of particles (crb.py defines them)."""
    if cfg.crb_sample == 0 or noise_sd == 0:
        return None
    # The first optics group's particles, on its grid; the odd phase changes no bound (it is
    # unitary, like the noise), a magnification is left out (a ~1 % change of scale).
    first = np.flatnonzero(truth.optics_index == 0)
    sample = np.sort(_rng(cfg, _CRB).choice(first, size=min(cfg.crb_sample, len(first)),
                                            replace=False))
    group = truth.optics[0]
    ctfs = particle_ctfs(truth, sample, group.box, group.apix)
    rot, shift = np.empty(len(sample)), np.empty(len(sample))
    for j, i in enumerate(sample):
        rot[j], shift[j] = (b[0] for b in pose_bounds(
            conformation_coords(model, hinge_deg[i]), amplitude, sigma, truth.rotation[i],
            truth.shift_A[i], ctfs[j:j + 1], group.box, group.apix, noise_sd))
    summary = summarize_bounds(rot, shift)
    # Per-axis rms = the 3D bound / sqrt(3), for comparison with figures quoted per axis.
    summary["rotation_bound_per_axis_deg_median"] = summary["rotation_bound_deg_median"] / np.sqrt(3)
    # Each sampled particle's own bound, so a refinement's errors can be set against it.
    summary["per_particle"] = {"row": sample.tolist(), "rotation_bound_deg": rot.tolist(),
                               "shift_bound_px": shift.tolist()}
    log(f"simulate: Cramer-Rao bound over {len(sample)} particles: median "
        f"{summary['rotation_bound_deg_median']:.2f} deg, {summary['shift_bound_px_median']:.2f} px")
    return summary


def _written_files(cfg: SimulationConfig) -> list[str]:
    names = [_stack_name(cfg, g) for g in range(len(_groups(cfg)))]
    names += ["particles.star", "start.star"] + (["particles.cs"] if _cs_can_hold(cfg) else [])
    names += ["truth.star", "truth_map.mrc", "model.pdb", "truth.json"]
    if cfg.flexible:
        names += ["truth_conformation.npy", "domain_mask.mrc"] + [
            f"truth_map_conf{k}.mrc" for k in range(cfg.n_conformation_maps)]
    return names


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else str(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value

"""Small host-format files the format tests write for themselves, good and bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.lib.recfunctions as rfn
from scipy.spatial.transform import Rotation

SHARED = Path(__file__).resolve().parents[2] / "shared"
REALCS = SHARED / "realcs"


def random_euler_deg(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) RELION rot, tilt, psi in degrees, away from gimbal lock."""
    return np.stack([rng.uniform(-180, 180, n), rng.uniform(5, 175, n),
                     rng.uniform(-180, 180, n)], axis=1)


def write_star31(path: Path, n: int = 12, seed: int = 0, extra_rows: str = "") -> dict:
    """A RELION 3.1 STAR: two optics groups (1.0 A box 64, 1.5 A box 48) and
    passthrough columns that starfile would mangle (micrograph "0001", group "1").

    Returns the values written, for the tests to compare against.
    """
    rng = np.random.default_rng(seed)
    euler = random_euler_deg(n, rng)
    origin = rng.uniform(-8, 8, (n, 2))
    defocus = rng.uniform(8000, 30000, (n, 2))
    angle = rng.uniform(-180, 180, n)
    group = np.where(np.arange(n) < n // 2, 1, 2)
    half = rng.integers(1, 3, n)
    klass = rng.integers(1, 4, n)
    coord = rng.uniform(0, 4000, (n, 2))
    lines = ["", "# version 30001", "", "data_optics", "", "loop_",
             "_rlnOpticsGroupName #1", "_rlnOpticsGroup #2", "_rlnMicrographOriginalPixelSize #3",
             "_rlnVoltage #4", "_rlnSphericalAberration #5", "_rlnAmplitudeContrast #6",
             "_rlnImagePixelSize #7", "_rlnImageSize #8", "_rlnImageDimensionality #9",
             "opticsGroup1 1 0.5 300.0 2.7 0.1 1.0 64 2",
             "1 2 0.75 200.0 2.0 0.07 1.5 48 2",
             "", "# version 30001", "", "data_particles", "", "loop_"]
    labels = ["rlnCoordinateX", "rlnCoordinateY", "rlnImageName", "rlnMicrographName",
              "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst",
              "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift", "rlnCtfBfactor",
              "rlnOpticsGroup", "rlnRandomSubset", "rlnClassNumber", "rlnGroupName",
              "rlnAutopickFigureOfMerit"]
    lines += [f"_{label} #{i + 1}" for i, label in enumerate(labels)]
    names, mics, groups_text = [], [], []
    for i in range(n):
        names.append(f"{i % 5 + 1:06d}@Extract/job007/mics/stack_{i // 5:04d}.mrcs")
        mics.append(f"{i // 5 + 1:04d}")
        groups_text.append(str(i % 3 + 1))
        lines.append(" ".join([
            f"{coord[i, 0]:.6f}", f"{coord[i, 1]:.6f}", names[-1], mics[-1],
            *(f"{v:.6f}" for v in euler[i]), *(f"{v:.6f}" for v in origin[i]),
            f"{defocus[i, 0]:.6f}", f"{defocus[i, 1]:.6f}", f"{angle[i]:.6f}", "0.000000",
            "0.000000", str(group[i]), str(half[i]), str(klass[i]), groups_text[-1],
            f"{rng.uniform():.6f}"]))
    path.write_text("\n".join(lines) + "\n" + extra_rows)
    return dict(euler=euler, origin=origin, defocus=defocus, angle=angle, group=group, half=half,
                klass=klass, names=names, mics=mics, group_names=groups_text,
                apix=np.where(group == 1, 1.0, 1.5), coord=coord)


def write_star30(path: Path, n: int = 8, seed: int = 1) -> dict:
    """A RELION 3.0 single-table STAR: origins in pixels, pixel size = 1e4 Det / Mag."""
    rng = np.random.default_rng(seed)
    euler = random_euler_deg(n, rng)
    origin_px = rng.uniform(-5, 5, (n, 2))
    defocus = rng.uniform(8000, 30000, (n, 2))
    labels = ["rlnImageName", "rlnMicrographName", "rlnAngleRot", "rlnAngleTilt",
              "rlnAnglePsi", "rlnOriginX", "rlnOriginY", "rlnDefocusU", "rlnDefocusV",
              "rlnDefocusAngle", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
              "rlnMagnification", "rlnDetectorPixelSize", "rlnRandomSubset", "rlnGroupNumber"]
    lines = ["", "data_", "", "loop_"] + [f"_{label} #{i + 1}" for i, label in enumerate(labels)]
    for i in range(n):
        lines.append(" ".join([
            f"{i + 1}@particles.mrcs", f"mic{i // 4:03d}.mrc", *(f"{v:.6f}" for v in euler[i]),
            *(f"{v:.6f}" for v in origin_px[i]), f"{defocus[i, 0]:.6f}", f"{defocus[i, 1]:.6f}",
            "12.5", "300", "2.7", "0.1", "38168", "5", str(i % 2 + 1), str(i // 4 + 1)]))
    path.write_text("\n".join(lines) + "\n")
    return dict(euler=euler, origin_px=origin_px, defocus=defocus, apix=1e4 * 5 / 38168)


def make_cs(n: int = 10, seed: int = 2, align_psize: float = 2.0, blob_psize: float = 1.0,
            many_fields: int = 0) -> np.ndarray:
    """A CryoSPARC-like refinement .cs array, its alignment on a 2x coarser grid
    (the pyem PR #125 case), with fields gmmrefine must carry untouched."""
    rng = np.random.default_rng(seed)
    dtype = [("uid", "<u8"), ("blob/path", "S40"), ("blob/idx", "<u4"),
             ("blob/shape", "<u4", (2,)), ("blob/psize_A", "<f4"), ("blob/sign", "<f4"),
             ("blob/import_sig", "<u8"), ("ctf/type", "S9"), ("ctf/exp_group_id", "<u4"),
             ("ctf/accel_kv", "<f4"), ("ctf/cs_mm", "<f4"), ("ctf/amp_contrast", "<f4"),
             ("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4"), ("ctf/df_angle_rad", "<f4"),
             ("ctf/phase_shift_rad", "<f4"), ("ctf/scale", "<f4"), ("ctf/anisomag", "<f4", (2, 2)),
             ("alignments3D/split", "<u4"), ("alignments3D/shift", "<f4", (2,)),
             ("alignments3D/pose", "<f4", (3,)), ("alignments3D/psize_A", "<f4"),
             ("alignments3D/error", "<f4"), ("alignments3D/class", "<u4"),
             ("location/micrograph_path", "S20"), ("location/center_x_frac", "<f4"),
             ("location/center_y_frac", "<f4"), ("location/micrograph_shape", "<u4", (2,))]
    dtype += [(f"alignments_class_{k}/class_posterior", "<f4") for k in range(many_fields)]
    arr = np.zeros(n, dtype)
    arr["uid"] = rng.integers(1, 2 ** 63, n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    arr["blob/path"] = [f">J3/extract/{i // 4:03d}_particles.mrc".encode() for i in range(n)]
    arr["blob/idx"] = np.arange(n) % 4
    arr["blob/shape"] = 64
    arr["blob/psize_A"] = blob_psize
    arr["blob/sign"] = -1
    arr["blob/import_sig"] = rng.integers(0, 2 ** 63, n, dtype=np.uint64)
    arr["ctf/type"] = b"ctffind4"
    arr["ctf/exp_group_id"] = np.arange(n) % 2
    arr["ctf/accel_kv"] = 300
    arr["ctf/cs_mm"] = 2.7
    arr["ctf/amp_contrast"] = 0.1
    arr["ctf/df1_A"] = rng.uniform(10000, 20000, n)
    arr["ctf/df2_A"] = arr["ctf/df1_A"] - rng.uniform(0, 500, n)
    arr["ctf/df_angle_rad"] = rng.uniform(-np.pi, np.pi, n)
    arr["ctf/scale"] = 1
    # Per exposure group, as CryoSPARC's global CTF refinement writes it (minus the identity).
    arr["ctf/anisomag"] = rng.normal(scale=0.01, size=(2, 2, 2))[arr["ctf/exp_group_id"]]
    arr["alignments3D/split"] = np.arange(n) % 2
    arr["alignments3D/shift"] = rng.uniform(-4, 4, (n, 2))
    arr["alignments3D/pose"] = Rotation.random(n, random_state=seed).as_rotvec()
    arr["alignments3D/psize_A"] = align_psize
    arr["alignments3D/error"] = rng.uniform(size=n)
    arr["alignments3D/class"] = np.arange(n) % 3
    arr["location/micrograph_path"] = [f"mic_{i // 4:04d}.mrc".encode() for i in range(n)]
    arr["location/center_x_frac"] = rng.uniform(size=n)
    arr["location/center_y_frac"] = rng.uniform(size=n)
    arr["location/micrograph_shape"] = (4096, 4096)
    for k in range(many_fields):
        arr[f"alignments_class_{k}/class_posterior"] = k
    return arr


def save_cs_file(path: Path, arr: np.ndarray) -> Path:
    with open(path, "wb") as f:
        np.save(f, arr)
    return path


# --- bad files: each case and the words its one-line error must contain ----------------------

GOOD_ROW = "000001@Extract/job007/mics/stack_0000.mrcs"


def _edit_star(tmp_path, old: str, new: str, count: int = 1):
    """The synthetic 3.1 STAR with one textual edit applied."""
    write_star31(tmp_path / "good.star")
    text = (tmp_path / "good.star").read_text()
    assert old in text
    (tmp_path / "bad.star").write_text(text.replace(old, new, count))
    return tmp_path / "bad.star"


def _drop_column(tmp_path, label: str):
    """The synthetic STAR without column ``label`` (header line and values)."""
    write_star31(tmp_path / "good.star")
    lines = (tmp_path / "good.star").read_text().splitlines()
    start = lines.index("data_particles")
    labels = [ln.split()[0] for ln in lines[start:] if ln.startswith("_")]
    k = labels.index("_" + label)
    out = []
    for i, line in enumerate(lines):
        fields = line.split()
        if i > start and line.startswith("_" + label + " "):
            continue
        if i > start and fields and not line.startswith(("_", "loop_", "#")):
            del fields[k]
            line = " ".join(fields)
        out.append(line)
    (tmp_path / "bad.star").write_text("\n".join(out) + "\n")
    return tmp_path / "bad.star"


def _bad_star(tmp_path, case: str):
    if case == "missing column":
        return _drop_column(tmp_path, "rlnDefocusU"), ["bad.star", "rlnDefocusU"]
    if case == "unknown optics group":
        path = _edit_star(tmp_path, " 0.000000 0.000000 1 ", " 0.000000 0.000000 7 ")
        return path, ["bad.star", "row 1", "rlnOpticsGroup", "7"]
    if case == "empty file":
        (tmp_path / "bad.star").write_text("")
        return tmp_path / "bad.star", ["bad.star", "empty"]
    if case == "NaN angle":
        write_star31(tmp_path / "good.star")
        lines = (tmp_path / "good.star").read_text().splitlines()
        row = [i for i, ln in enumerate(lines) if "@" in ln][2]
        fields = lines[row].split()
        fields[5] = "nan"                                   # rlnAngleTilt, third particle
        lines[row] = " ".join(fields)
        (tmp_path / "bad.star").write_text("\n".join(lines) + "\n")
        return tmp_path / "bad.star", ["bad.star", "row 3", "rlnAngleTilt"]
    if case == "malformed image name":
        path = _edit_star(tmp_path, GOOD_ROW, "x1@Extract/job007/mics/stack_0000.mrcs")
        return path, ["bad.star", "row 1", "rlnImageName", "x1@"]
    if case == "zero image index":
        path = _edit_star(tmp_path, GOOD_ROW, "0@Extract/job007/mics/stack_0000.mrcs")
        return path, ["bad.star", "row 1", "rlnImageName"]
    if case == "short row":
        write_star31(tmp_path / "good.star")
        lines = (tmp_path / "good.star").read_text().splitlines()
        row = [i for i, ln in enumerate(lines) if "@" in ln][1]
        lines[row] = " ".join(lines[row].split()[:-1])
        (tmp_path / "bad.star").write_text("\n".join(lines) + "\n")
        return tmp_path / "bad.star", ["bad.star", "row 2", "rlnAutopickFigureOfMerit"]
    if case == "bad random subset":
        path = _edit_star(tmp_path, " 0.000000 0.000000 1 1 ", " 0.000000 0.000000 1 3 ")
        return path, ["bad.star", "rlnRandomSubset", "expected 1 or 2"]
    raise AssertionError(case)


def _bad_cs(tmp_path, case: str):
    arr = make_cs(n=6)
    if case == "cs missing blob/path":
        arr = rfn.drop_fields(arr, "blob/path", usemask=False)
        where = ["bad.cs", "blob/path"]
    elif case == "cs NaN pose":
        arr["alignments3D/pose"][4] = np.nan
        where = ["bad.cs", "row 5", "alignments3D/pose"]
    elif case == "cs empty file":
        (tmp_path / "bad.cs").write_bytes(b"")
        return tmp_path / "bad.cs", ["bad.cs", "empty"]
    elif case == "cs not a table":
        save_cs_file(tmp_path / "bad.cs", np.zeros(3))
        return tmp_path / "bad.cs", ["bad.cs", "structured array"]
    else:
        raise AssertionError(case)
    return save_cs_file(tmp_path / "bad.cs", arr), where


STAR_CASES = ["missing column", "unknown optics group", "empty file", "NaN angle",
              "malformed image name", "zero image index", "bad random subset", "short row"]
CS_CASES = ["cs missing blob/path", "cs NaN pose", "cs empty file", "cs not a table"]


def bad_particle_file(tmp_path, case):
    """A bad particle file of the named case and the words its error must contain."""
    return _bad_star(tmp_path, case) if case in STAR_CASES else _bad_cs(tmp_path, case)

"""A job's main .cs with its passthrough .cs, joined by uid, as CryoSPARC exports them.

Built from a real CryoSPARC refinement (../shared/realcs, 2,019 particles): its fields are
split the way CryoSPARC splits a job's output (what the job produced in the main file,
what it passed through in the other, in another row order and with other particles
besides), and the joined set must read as the whole file does and convert as pyem did.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.errors import InputError
from gmmrefine.io import star as star_io
from gmmrefine.io.cs_passthrough import merge_by_uid
from gmmrefine.io.particles import read_particles
from helpers_formats import REALCS

pytestmark = pytest.mark.skipif(not REALCS.is_dir(), reason="../shared/realcs is absent")
P12 = REALCS / "cryosparc_P12_J24_001_particles"


def _fields(arr: np.ndarray, names: list[str]) -> np.ndarray:
    out = np.zeros(len(arr), np.dtype([(n, arr.dtype.fields[n][0]) for n in names]))
    for name in names:
        out[name] = arr[name]
    return out


def _save(path, arr) -> None:
    with open(path, "wb") as handle:
        np.save(handle, arr)


@pytest.fixture
def exported(tmp_path):
    """J24/ as CryoSPARC writes it: J24_005_particles.cs (uid, blob, alignments3D) and
    J24_passthrough_particles.cs (uid, ctf), shuffled and with 50 more particles."""
    whole = np.load(P12.with_suffix(".cs"))
    names = whole.dtype.names
    main = _fields(whole, [n for n in names if n == "uid" or n.split("/")[0] in
                           ("blob", "alignments3D")])
    through = _fields(whole, ["uid", *[n for n in names if n.startswith("ctf/")]])
    rng = np.random.default_rng(1)
    extra = through[:50].copy()
    extra["uid"] = rng.integers(1, 2**63, 50, dtype=np.uint64)
    through = np.concatenate([through, extra])[rng.permutation(len(through) + 50)]
    job = tmp_path / "J24"
    job.mkdir()
    _save(job / "J24_005_particles.cs", main)
    _save(job / "J24_passthrough_particles.cs", through)
    # Another class's passthrough beside it: none of its uids are this file's.
    other = extra.copy()
    other["uid"] += np.uint64(1)
    _save(job / "J24_passthrough_particles_class_1.cs", other)
    return job / "J24_005_particles.cs", whole


def test_joined_by_uid_it_reads_as_the_whole_file(exported):
    main_path, whole = exported
    joined = read_particles(main_path)
    reference = read_particles(P12.with_suffix(".cs"))
    assert angle_between_deg(joined.rotation, reference.rotation).max() == 0
    np.testing.assert_array_equal(joined.shift_A, reference.shift_A)
    for name in ("defocus_u_A", "defocus_v_A", "defocus_angle_deg", "phase_shift_deg",
                 "half_set", "uid", "image_index"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(reference, name), name)
    assert set(joined.cs.dtype.names) == set(whole.dtype.names)


def test_the_joined_pair_converts_as_pyem_converted_the_whole(exported, tmp_path):
    main_path, _ = exported
    result = CliRunner().invoke(cli, ["convert", str(main_path), str(tmp_path / "out.star")])
    assert result.exit_code == 0, result.output
    ours = star_io.read_star_tables(tmp_path / "out.star")["particles"]
    pyem = star_io.read_star_tables(P12.with_suffix(".pyem.star"))["particles"]
    np.testing.assert_allclose(ours["rlnDefocusU"], pyem["rlnDefocusU"], rtol=1e-6)
    np.testing.assert_allclose(ours["rlnDefocusAngle"], pyem["rlnDefocusAngle"], atol=1e-4)
    np.testing.assert_allclose(ours["rlnAngleRot"].to_numpy() % 360,
                               pyem["rlnAngleRot"].to_numpy() % 360, atol=1e-3)
    assert list(ours["rlnImageName"]) == list(pyem["rlnImageName"])


def test_two_passthroughs_holding_the_particles_are_refused(exported):
    main_path, _ = exported
    twin = main_path.parent / "J24_passthrough_particles.cs"
    (main_path.parent / "J24_passthrough_particles_copy.cs").write_bytes(twin.read_bytes())
    with pytest.raises(InputError, match="passthrough files .* all hold its particles"):
        read_particles(main_path)


def test_a_passthrough_file_given_alone_is_read_as_it_is(exported):
    main_path, _ = exported
    with pytest.raises(InputError, match="blob/path is missing"):
        read_particles(main_path.parent / "J24_passthrough_particles.cs")


def test_merge_names_a_missing_uid_and_repeated_uids(tmp_path):
    main = np.zeros(3, [("uid", "<u8"), ("a", "<f4")])
    main["uid"] = [5, 6, 7]
    other = np.zeros(2, [("uid", "<u8"), ("b", "<f4", (2,))])
    other["uid"] = [7, 5]
    with pytest.raises(InputError, match=r"main.cs: row 2 uid 6 is not in other.cs"):
        merge_by_uid(main, other, tmp_path / "main.cs", tmp_path / "other.cs")
    other = np.zeros(4, other.dtype)
    other["uid"] = [7, 5, 6, 6]
    with pytest.raises(InputError, match="uid repeats"):
        merge_by_uid(main, other, tmp_path / "main.cs", tmp_path / "other.cs")
    other = np.zeros(3, other.dtype)
    other["uid"], other["b"] = [7, 5, 6], [[7, 70], [5, 50], [6, 60]]
    merged = merge_by_uid(main, other, tmp_path / "main.cs", tmp_path / "other.cs")
    np.testing.assert_array_equal(merged["b"], [[5, 50], [6, 60], [7, 70]])

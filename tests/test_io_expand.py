"""Symmetry expansion of particle sets: against relion_particle_symmetry_expand, through
`gmmrefine expand` to STAR and .cs, and twice over."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.data.symmetry_groups import symmetry_operators
from gmmrefine.errors import InputError
from gmmrefine.io.expand import COPY_FIELD, SOURCE_UID_FIELD, expand_particles
from gmmrefine.io.particles import read_particles, write_particles
from helpers_symmetry import random_particles, run_program


@pytest.mark.skipif(shutil.which("relion_particle_symmetry_expand") is None,
                    reason="relion_particle_symmetry_expand not installed")
def test_expansion_matches_relion_particle_symmetry_expand(tmp_path):
    ps = random_particles(4, 32, 2.0, np.random.default_rng(3), image_path="none.mrcs")
    write_particles(ps, tmp_path / "in.star")
    ps = read_particles(tmp_path / "in.star")
    for sym in ("C3", "D2", "T", "O", "I"):
        run_program(["relion_particle_symmetry_expand", "--i", "in.star", "--o",
                     f"relion_{sym}.star", "--sym", sym], tmp_path)
        relion = read_particles(tmp_path / f"relion_{sym}.star")
        ours = expand_particles(ps, sym)
        order = len(symmetry_operators(sym))
        assert len(relion) == len(ours) == order * len(ps)
        for i in range(len(ps)):
            a = ours.rotation[i * order:(i + 1) * order]
            b = relion.rotation[i * order:(i + 1) * order]
            angle = angle_between_deg(np.repeat(a, order, axis=0),
                                      np.tile(b, (order, 1, 1))).reshape(order, order)
            # The same set of poses per particle (RELION's order differs for T, O, I).
            assert angle.min(axis=1).max() < 0.01 and angle.min(axis=0).max() < 0.01, sym


def _star_with_extras(tmp_path: Path, n: int) -> Path:
    """A STAR file whose particles carry a column gmmrefine does not know."""
    ps = random_particles(n, 32, 2.0, np.random.default_rng(4))
    ps.star_particles = pd.DataFrame({"rlnMyScore": 0.5 + np.arange(n)})
    write_particles(ps, tmp_path / "in.star")
    return tmp_path / "in.star"


def test_expand_writes_one_copy_per_operator_keeping_halves_and_columns(tmp_path):
    from gmmrefine.cli.expand import main

    path = _star_with_extras(tmp_path, 6)
    before = path.read_bytes()
    result = CliRunner().invoke(main, [str(path), "--sym", "D2", "--out", str(tmp_path / "x.star")])
    assert result.exit_code == 0, result.output
    assert path.read_bytes() == before
    ps = read_particles(path)
    out = read_particles(tmp_path / "x.star")
    ops = symmetry_operators("D2")
    assert len(out) == 4 * len(ps)
    source = np.repeat(np.arange(len(ps)), 4)
    np.testing.assert_array_equal(out.half_set, ps.half_set[source])
    np.testing.assert_array_equal(out.image_index, ps.image_index[source])
    np.testing.assert_allclose(out.shift_A, ps.shift_A[source], atol=1e-6)
    np.testing.assert_allclose(out.defocus_u_A, ps.defocus_u_A[source])
    np.testing.assert_array_equal(out.star_particles["rlnMyScore"].to_numpy(float),
                                  ps.star_particles["rlnMyScore"].to_numpy(float)[source])
    copy = out.star_particles[f"cs:{COPY_FIELD}:u4"].astype(int).to_numpy()
    np.testing.assert_array_equal(copy, np.tile(np.arange(4), len(ps)))
    want = np.einsum("nij,njk->nik", ps.rotation[source], ops[copy])
    assert angle_between_deg(out.rotation, want).max() < 1e-4

    # To .cs: CryoSPARC's fields, new unique uids, the source uid kept.
    cs_in = tmp_path / "in.cs"
    write_particles(ps, cs_in)
    result = CliRunner().invoke(main, [str(cs_in), "--sym", "C3", "--out", str(tmp_path / "x.cs")])
    assert result.exit_code == 0, result.output
    src = read_particles(cs_in)
    cs = read_particles(tmp_path / "x.cs")
    assert len(cs) == 3 * len(src) and len(np.unique(cs.uid)) == len(cs)
    np.testing.assert_array_equal(cs.cs[SOURCE_UID_FIELD], np.repeat(src.uid, 3))
    np.testing.assert_array_equal(cs.cs[COPY_FIELD], np.tile(np.arange(3), len(src)))
    np.testing.assert_array_equal(cs.half_set, np.repeat(src.half_set, 3))
    np.testing.assert_array_equal(cs.cs["rln/rlnMyScore"], np.repeat(src.cs["rln/rlnMyScore"], 3))

    bad = CliRunner().invoke(main, [str(path), "--sym", "C3x", "--out", str(tmp_path / "y.star")])
    assert isinstance(bad.exception, InputError) and not (tmp_path / "y.star").exists()


def test_expanding_an_expanded_set_keeps_counting():
    ps = random_particles(3, 32, 2.0, np.random.default_rng(5))
    ps.uid = np.arange(1, 4, dtype=np.uint64)
    twice = expand_particles(expand_particles(ps, "C2"), "C3")
    assert len(twice) == 18
    copy = twice.star_particles[f"cs:{COPY_FIELD}:u4"].to_numpy()
    np.testing.assert_array_equal(copy, np.tile(np.arange(6), 3))
    np.testing.assert_array_equal(twice.star_particles[f"cs:{SOURCE_UID_FIELD}:u8"].to_numpy(),
                                  np.repeat(ps.uid, 6))

"""Optics beyond the plain CTF through both host formats: RELION's optics columns and
CryoSPARC's aberration fields read into OpticsGroup, carried and written back, the ones
without a RELION counterpart reported; MTF files read where the groups' differ."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.errors import InputError
from gmmrefine.io import cs as cs_io
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.io.star import read_star_tables
from gmmrefine.pipeline.inputs import report_optics

ABERRATED = OpticsGroup("g1", 1.2, 100, 300.0, 2.7, 0.1, beam_tilt_mrad=(0.31, -0.42),
                        odd_zernike=(0.0, 0.0, 12.5, 0.0, 0.0, -3.25),
                        even_zernike=(0.0, 0.0, 0.0, 0.0, 41.0, 0.0, -7.5),
                        mag_matrix=((1.012, 0.004), (-0.003, 0.991)))
PLAIN = OpticsGroup("g2", 1.3, 92, 300.0, 2.7, 0.1)

OPTICS_31 = """
data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnVoltage #3
_rlnSphericalAberration #4
_rlnAmplitudeContrast #5
_rlnImagePixelSize #6
_rlnImageSize #7
_rlnImageDimensionality #8
_rlnBeamTiltX #9
_rlnBeamTiltY #10
_rlnOddZernike #11
_rlnEvenZernike #12
_rlnMagMat00 #13
_rlnMagMat01 #14
_rlnMagMat10 #15
_rlnMagMat11 #16
_rlnMtfFileName #17
_rlnMicrographOriginalPixelSize #18
opticsGroup1 1 300 2.7 0.1 1.2 100 2 0.3 -0.2 [0,0,5.5,0,0,-1] [0,0,0,0,20] 1.01 0 0 0.99 mtf_a.star 0.6
opticsGroup2 2 300 2.7 0.1 1.3 92 2 0 0 [] [] 1 0 0 1 {mtf_b} 0.65

data_particles

loop_
_rlnImageName #1
_rlnAngleRot #2
_rlnAngleTilt #3
_rlnAnglePsi #4
_rlnOriginXAngst #5
_rlnOriginYAngst #6
_rlnDefocusU #7
_rlnDefocusV #8
_rlnDefocusAngle #9
_rlnOpticsGroup #10
_rlnRandomSubset #11
000001@a.mrcs 10 20 30 0 0 10000 9000 5 1 1
000001@b.mrcs 40 50 60 0 0 12000 11000 5 2 2
"""

MTF = """
data_

loop_
_rlnResolutionInversePixel #1
_rlnMtfValue #2
0.0 1.0
0.125 {a}
0.25 {b}
0.375 {c}
0.5 0.2
"""


def _star(tmp_path, mtf_b="mtf_a.star"):
    (tmp_path / "mtf_a.star").write_text(MTF.format(a=0.9, b=0.7, c=0.5))
    (tmp_path / "mtf_b.star").write_text(MTF.format(a=0.8, b=0.6, c=0.4))
    path = tmp_path / "p.star"
    path.write_text(OPTICS_31.format(mtf_b=mtf_b))
    return path


def _set(groups, n=4) -> ParticleSet:
    kw = empty_like_arrays(n)
    kw.update(optics_index=np.arange(n) % len(groups), image_index=np.arange(n),
              image_path=np.array(["s.mrcs"] * n, dtype=object), defocus_u_A=np.full(n, 1e4),
              defocus_v_A=np.full(n, 9e3), half_set=(1 + np.arange(n) % 2).astype(np.int8))
    return ParticleSet(optics=list(groups), **kw)


def _same_optics(a: OpticsGroup, b: OpticsGroup) -> None:
    for attr in ("beam_tilt_mrad", "odd_zernike", "even_zernike", "mag_matrix"):
        np.testing.assert_allclose(np.asarray(getattr(a, attr), float),
                                   np.asarray(getattr(b, attr), float), rtol=1e-6, atol=1e-9,
                                   err_msg=attr)


def test_relion_optics_columns_are_read(tmp_path):
    ps = read_particles(_star(tmp_path), root=tmp_path)
    g1, g2 = ps.optics
    assert g1.beam_tilt_mrad == (0.3, -0.2)
    assert g1.odd_zernike == (0.0, 0.0, 5.5, 0.0, 0.0, -1.0)
    assert g1.even_zernike == (0.0, 0.0, 0.0, 0.0, 20.0)
    assert g1.mag_matrix == ((1.01, 0.0), (0.0, 0.99))
    assert g2.odd_zernike == () and g2.mag_matrix == ((1.0, 0.0), (0.0, 1.0))
    # One MTF file for every group: RELION's reconstruction ignores it, so it is not read.
    assert g1.mtf is None and g2.mtf is None


def test_different_mtfs_are_read_in_inverse_angstrom(tmp_path):
    ps = read_particles(_star(tmp_path, mtf_b="mtf_b.star"), root=tmp_path)
    g1, g2 = ps.optics
    # rlnResolutionInversePixel over rlnMicrographOriginalPixelSize, as RELION converts it.
    np.testing.assert_allclose(g1.mtf[:, 0], np.array([0, 0.125, 0.25, 0.375, 0.5]) / 0.6)
    np.testing.assert_allclose(g2.mtf[:, 1], [1.0, 0.8, 0.6, 0.4, 0.2])
    (tmp_path / "mtf_b.star").unlink()
    with pytest.raises(InputError, match="mtf_b.star"):
        read_particles(tmp_path / "p.star", root=tmp_path)


def test_a_bad_zernike_vector_names_file_row_and_column(tmp_path):
    path = _star(tmp_path)
    path.write_text(path.read_text().replace("[0,0,5.5,0,0,-1]", "[0,0,five]"))
    with pytest.raises(InputError, match=r"p.star: data_optics row 1 column _rlnOddZernike"):
        read_particles(path, root=tmp_path)


def test_star_written_from_memory_carries_every_aberration(tmp_path):
    write_particles(_set([ABERRATED, PLAIN]), tmp_path / "out.star")
    optics = read_star_tables(tmp_path / "out.star")["optics"]
    assert optics["rlnOddZernike"].iloc[0] == "[0,0,12.5,0,0,-3.25]"
    assert optics["rlnOddZernike"].iloc[1] == "[]"
    back = read_particles(tmp_path / "out.star", root=tmp_path)
    _same_optics(back.optics[0], ABERRATED)
    _same_optics(back.optics[1], PLAIN)


def test_star_to_cs_and_back_keeps_the_optics(tmp_path):
    write_particles(_set([ABERRATED, PLAIN]), tmp_path / "a.star")
    star = read_particles(tmp_path / "a.star", root=tmp_path)
    write_particles(star, tmp_path / "a.cs")
    arr = cs_io.load_cs(tmp_path / "a.cs")
    # The exact mappings in CryoSPARC's own fields ...
    np.testing.assert_allclose(arr["ctf/tilt_A"][0], 2.7e7 * np.sin(np.array([0.31e-3, -0.42e-3])),
                               rtol=1e-5)
    np.testing.assert_allclose(arr["ctf/anisomag"][0], [0.012, 0.004, -0.003, -0.009], atol=1e-6)
    np.testing.assert_array_equal(arr["ctf/anisomag"][1], 0)
    # ... and the Zernike terms, which CryoSPARC has no field for, carried and read back.
    back = read_particles(tmp_path / "a.cs", root=tmp_path)
    _same_optics(back.optics[0], ABERRATED)
    _same_optics(back.optics[1], PLAIN)


def test_cryosparc_fields_map_and_the_rest_is_reported(tmp_path, caplog):
    ps = _set([PLAIN], n=4)
    write_particles(ps, tmp_path / "p.cs")
    arr = cs_io.load_cs(tmp_path / "p.cs")
    arr["ctf/tilt_A"] = [25.0, -12.0]
    arr["ctf/anisomag"] = [0.01, 0.002, -0.001, -0.008]
    arr["ctf/trefoil_A"] = [0.0, 3.5]
    cs_io.save_cs(tmp_path / "p.cs", arr)
    group, = read_particles(tmp_path / "p.cs", root=tmp_path).optics
    # pyem's reading of tilt_A: Cs sin(tilt), Cs in A.
    np.testing.assert_allclose(group.beam_tilt_mrad,
                               np.arcsin(np.float32([25.0, -12.0]) / 2.7e7) * 1e3, rtol=1e-6)
    np.testing.assert_allclose(group.mag_matrix, [[1.01, 0.002], [-0.001, 0.992]], atol=1e-7)
    assert group.unmodelled == (("ctf/trefoil_A", (0.0, 3.5)),)
    ps = read_particles(tmp_path / "p.cs", root=tmp_path)
    with caplog.at_level(logging.INFO, logger="gmmrefine"):
        report_optics(ps, 92, 1.3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ctf/trefoil_A = [0.0, 3.5] is not applied" in warnings[0]
    assert any("beam tilt" in r.getMessage() for r in caplog.records)


def test_relion_30_beam_tilt_per_particle_makes_optics_groups(tmp_path):
    path = tmp_path / "old.star"
    path.write_text("""
data_

loop_
_rlnImageName #1
_rlnDefocusU #2
_rlnDefocusV #3
_rlnVoltage #4
_rlnSphericalAberration #5
_rlnAmplitudeContrast #6
_rlnPixelSize #7
_rlnBeamTiltX #8
_rlnBeamTiltY #9
1@a.mrcs 10000 9000 300 2.7 0.1 1.5 0.2 0.1
2@a.mrcs 10000 9000 300 2.7 0.1 1.5 0.2 0.1
3@a.mrcs 10000 9000 300 2.7 0.1 1.5 -0.4 0.0
""")
    ps = read_particles(path, root=tmp_path)
    assert sorted(g.beam_tilt_mrad for g in ps.optics) == [(-0.4, 0.0), (0.2, 0.1)]
    assert ps.optics[ps.optics_index[0]].beam_tilt_mrad == (0.2, 0.1)
    assert ps.optics_index[0] == ps.optics_index[1] != ps.optics_index[2]


def test_unchanged_optics_tables_survive_a_round_trip_untouched(tmp_path):
    ps = read_particles(_star(tmp_path), root=tmp_path)
    write_particles(ps, tmp_path / "again.star")
    before = read_star_tables(tmp_path / "p.star")["optics"]
    after = read_star_tables(tmp_path / "again.star")["optics"]
    for label in ("rlnOddZernike", "rlnEvenZernike", "rlnMtfFileName"):
        assert after[label].tolist() == before[label].tolist()
    for label in ("rlnBeamTiltX", "rlnMagMat00", "rlnMagMat11", "rlnMicrographOriginalPixelSize"):
        np.testing.assert_allclose(after[label].astype(float), before[label].astype(float))
    assert dataclasses.replace(read_particles(tmp_path / "again.star", root=tmp_path).optics[0],
                               mtf=None) == dataclasses.replace(ps.optics[0], mtf=None)

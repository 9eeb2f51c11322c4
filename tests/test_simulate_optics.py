"""The simulator's aberrations against RELION's own programs: even Zernike terms in the
CTF against relion_project, and the whole forward model (beam tilt, odd and even terms,
magnification, a second pixel size) against relion_reconstruct, which inverts it."""

from __future__ import annotations

import dataclasses
import subprocess

import mrcfile
import numpy as np
import pytest
from conftest import needs
from gmmrefine.data.particles import OpticsGroup
from gmmrefine.io.mrc import read_map
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.reconstruct.fsc import fsc_curve
from gmmrefine.simulate.dataset import simulate_dataset

pytestmark = [pytest.mark.relion, pytest.mark.slow]

PLAIN = OpticsGroup("g1", 2.0, 64, 300.0, 2.7, 0.1)
ABERRATED = dataclasses.replace(PLAIN, beam_tilt_mrad=(1.5, -1.0),
                                odd_zernike=(0.0, 0.0, 40.0, 0.0, 0.0, -30.0),
                                even_zernike=(0.0, 0.0, 0.0, 0.0, 150.0, 0.0, 0.0, 0.0, -100.0),
                                mag_matrix=((1.02, 0.008), (-0.01, 0.985)))
SECOND = OpticsGroup("g2", 2.2, 58, 300.0, 2.7, 0.1, beam_tilt_mrad=(-1.0, 1.2),
                     odd_zernike=(0.0, 0.0, -30.0, 0.0, 0.0, 25.0),
                     mag_matrix=((0.99, -0.006), (0.004, 1.012)))


def _strip(group: OpticsGroup) -> OpticsGroup:
    return dataclasses.replace(group, beam_tilt_mrad=(0.0, 0.0), odd_zernike=(),
                               even_zernike=(), mag_matrix=((1.0, 0.0), (0.0, 1.0)))


@needs("relion_project")
def test_even_aberrations_in_the_ctf_match_relion_project(tmp_path):
    # relion_project applies the CTF with rlnEvenZernike (not the odd terms, not the
    # magnification's geometry), so this checks the even terms' order, sign and scale.
    group = dataclasses.replace(PLAIN, even_zernike=(0.0, 0.0, 0.0, 0.0, 300.0, 0.0, 60.0))
    simulate_dataset(tmp_path, n=6, box=64, apix=2.0, snr=float("inf"), crb_sample=0, seed=4,
                     optics_groups=(group,))
    subprocess.run(["relion_project", "--i", "truth_map.mrc", "--o", "proj", "--ang",
                    "truth.star", "--ctf"], cwd=tmp_path, check=True, capture_output=True)
    relion = mrcfile.read(tmp_path / "proj.mrcs").astype(float)
    ours = mrcfile.read(tmp_path / "particles_group1.mrcs").astype(float)
    truth = read_particles(tmp_path / "truth.star")
    write_particles(dataclasses.replace(truth, optics=[_strip(group)], star_optics=None),
                    tmp_path / "plain.star")
    subprocess.run(["relion_project", "--i", "truth_map.mrc", "--o", "plain", "--ang",
                    "plain.star", "--ctf"], cwd=tmp_path, check=True, capture_output=True)
    plain = mrcfile.read(tmp_path / "plain.mrcs").astype(float)
    corr = [np.corrcoef(relion[i].ravel(), ours[i].ravel())[0, 1] for i in range(6)]
    against_plain = [np.corrcoef(plain[i].ravel(), ours[i].ravel())[0, 1] for i in range(6)]
    assert min(corr) >= 0.98, corr
    assert max(against_plain) < min(corr) - 0.05, (corr, against_plain)


@needs("relion_reconstruct")
def test_relion_reconstruct_inverts_the_simulated_optics(tmp_path):
    # Noise-free particles in two groups of other pixel sizes, every aberration on: RELION,
    # told of the optics, recovers the truth as well as from a plain set; told nothing, not.
    rows = {}
    for name, groups in (("plain", (PLAIN,)), ("aberrated", (ABERRATED, SECOND))):
        out = tmp_path / name
        simulate_dataset(out, n=300, box=64, apix=2.0, snr=float("inf"), crb_sample=0, seed=3,
                         optics_groups=groups)
        truth = read_particles(out / "truth.star")
        write_particles(dataclasses.replace(truth, optics=[_strip(g) for g in truth.optics],
                                            star_optics=None), out / "stripped.star")
        for star in ("truth", "stripped"):
            subprocess.run(["relion_reconstruct", "--i", f"{star}.star", "--o", f"{star}.mrc",
                            "--ctf"], cwd=out, check=True, capture_output=True)
            fsc = fsc_curve(read_map(out / "truth_map.mrc")[0], read_map(out / f"{star}.mrc")[0])
            rows[name, star] = fsc[int(0.9 * 32)]
    print({k: round(float(v), 3) for k, v in rows.items()})
    assert rows["aberrated", "truth"] > rows["plain", "truth"] - 0.02, rows
    assert rows["aberrated", "stripped"] < rows["aberrated", "truth"] - 0.2, rows

"""Running one cached benchmark step: shared by the bench scripts that chain gmmrefine commands."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def run_step(cmd: list[str], log: Path, done: Path) -> float:
    """Run ``cmd`` (output appended to ``log``) unless ``done`` exists; wall seconds (0 when cached).

    A failing step stops the benchmark with one line naming the command and its log.
    """
    if done.exists():
        return 0.0
    t0 = time.perf_counter()
    with open(log, "a") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"{Path(sys.argv[0]).name}: {' '.join(cmd)} failed (exit {code}); see {log}")
    return time.perf_counter() - t0


class SimulatedSet:
    """What the Cramer-Rao bound of a simulated set needs, read back from its directory:
    the atoms and their densities, the true poses, the noise and each particle's CTF."""

    def __init__(self, sim: Path):
        import json

        import numpy as np
        from gmmrefine.io.particles import read_particles
        from gmmrefine.simulate.pdb import read_pdb
        from gmmrefine.simulate.render import atom_amplitude, atom_sigma_A

        self.info = json.loads((sim / "truth.json").read_text())
        self.cfg = self.info["config"]
        self.noise_sd = self.info["noise_sd"]
        self.model = read_pdb(sim / "model.pdb")
        self.amplitude = atom_amplitude(self.model.element)
        self.sigma = atom_sigma_A(self.model.element, self.model.bfactor_A2)
        self.truth = read_particles(sim / "truth.star")
        hinge = sim / "truth_conformation.npy"
        self.hinge_deg = np.load(hinge) if hinge.is_file() else np.zeros(len(self.truth))

    def ctf(self, i: int):
        from gmmrefine.simulate.render import ctf_grid

        t, c = self.truth, self.cfg
        return ctf_grid(c["box"], c["apix"], t.defocus_u_A[i:i + 1], t.defocus_v_A[i:i + 1],
                        t.defocus_angle_deg[i:i + 1], c["voltage_kv"], c["cs_mm"],
                        c["amp_contrast"])

    def sample(self, n: int):
        import numpy as np

        return np.random.default_rng(0).choice(len(self.truth), size=min(n, len(self.truth)),
                                               replace=False)

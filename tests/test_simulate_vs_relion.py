"""Our clean images against relion_project of our truth map at our truth poses.

This pins the pose, shift and CTF conventions of the simulator to RELION's:
a wrong sign or transpose anywhere drops the correlation far below 0.98.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
from gmmrefine.simulate.dataset import simulate_dataset

pytestmark = [pytest.mark.relion,
              pytest.mark.skipif(shutil.which("relion_project") is None,
                                 reason="relion_project not installed")]


def test_clean_images_match_relion_project_with_ctf(tmp_path):
    n, box, apix = 6, 64, 1.5
    simulate_dataset(tmp_path, n=n, box=box, apix=apix, snr=float("inf"), crb_sample=0, seed=4)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["noise_sd"] == 0
    subprocess.run(["relion_project", "--i", "truth_map.mrc", "--o", "proj", "--ang", "truth.star",
                    "--ctf", "--angpix", str(apix)], cwd=tmp_path, check=True,
                   capture_output=True)
    relion = mrcfile.read(tmp_path / "proj.mrcs").astype(float)
    ours = mrcfile.read(tmp_path / "particles.mrcs").astype(float)
    assert relion.shape == ours.shape == (n, box, box)
    for i in range(n):
        assert np.corrcoef(relion[i].ravel(), ours[i].ravel())[0, 1] >= 0.98
    # Displaced by 3 px, the same image correlates clearly worse: the threshold discriminates.
    flipped = np.roll(ours[0], (3, 3), axis=(0, 1))
    assert np.corrcoef(relion[0].ravel(), flipped.ravel())[0, 1] < 0.9

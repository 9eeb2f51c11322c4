"""FSC, mask correction and low-pass filter against RELION's own programs (skipped without RELION)."""

from __future__ import annotations

import re
import shutil
import subprocess

import mrcfile
import numpy as np
import pytest
import starfile
from conftest import needs
from gmmrefine.fourier import filters, masks
from gmmrefine.io.mrc import write_map
from gmmrefine.reconstruct import fsc
from helpers_fourier import blob_map


@pytest.fixture(scope="module", params=["soft", "binary"])
def relion_run(request, tmp_path_factory):
    """Half maps + a soft or a tight binary mask, and relion_postprocess's verdict on them."""
    if shutil.which("relion_postprocess") is None:
        pytest.skip("relion_postprocess not installed")
    tmp = tmp_path_factory.mktemp("postprocess")
    rng = np.random.default_rng(0)
    box, apix, sigma = 64, 1.5, 0.02
    signal = blob_map(box, 1500, 18, 1.0, rng)
    half1 = (signal + sigma * rng.standard_normal(signal.shape)).astype(np.float32)
    half2 = (signal + sigma * rng.standard_normal(signal.shape)).astype(np.float32)
    if request.param == "soft":
        mask = masks.auto_mask(signal, apix)
    else:
        smooth = filters.lowpass(signal, apix, 10.0)
        mask = (smooth > 0.3 * smooth.max()).astype(np.float32)
    for name, data in (("half1", half1), ("half2", half2), ("mask", mask)):
        write_map(tmp / f"{name}.mrc", data, apix)
    (tmp / "PostProcess").mkdir()
    run = subprocess.run(
        ["relion_postprocess", "--i", "half1.mrc", "--i2", "half2.mrc", "--mask", "mask.mrc",
         "--angpix", str(apix), "--o", "PostProcess/postprocess"],
        cwd=tmp, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    tables = starfile.read(tmp / "PostProcess" / "postprocess.star", always_dict=True)
    final = float(re.search(r"FINAL RESOLUTION:\s+([0-9.]+)", run.stdout).group(1))
    ours = fsc.masked_fsc_corrected(half1, half2, mask, apix)
    return {"box": box, "apix": apix, "tables": tables, "final_A": final, "ours": ours}


@needs("relion_postprocess")
def test_unmasked_and_masked_fsc_match_relion(relion_run):
    table = relion_run["tables"]["fsc"]
    ours = relion_run["ours"]
    final_shell = int(round(relion_run["box"] * relion_run["apix"] / relion_run["final_A"]))
    assert final_shell >= 20                               # the comparison covers most of the curve
    np.testing.assert_array_equal(table["rlnSpectralIndex"], np.arange(len(ours.unmasked)))
    upto = slice(1, final_shell + 1)
    for column, curve in (("rlnFourierShellCorrelationUnmaskedMaps", ours.unmasked),
                          ("rlnFourierShellCorrelationMaskedMaps", ours.masked)):
        assert np.max(np.abs(table[column].to_numpy()[upto] - curve[upto])) <= 0.02, column


@needs("relion_postprocess")
def test_randomisation_and_corrected_resolution_match_relion(relion_run):
    box, apix = relion_run["box"], relion_run["apix"]
    general, table = relion_run["tables"]["general"], relion_run["tables"]["fsc"]
    ours = relion_run["ours"]
    assert box * apix / ours.randomisation_shell == pytest.approx(float(general["rlnRandomiseFrom"]), rel=1e-4)
    # RELION reports the last shell above 0.143 (no interpolation); ours interpolates.
    assert fsc.resolution_at(ours.corrected, box, apix) == pytest.approx(relion_run["final_A"], rel=0.05)
    relion_corrected = table["rlnFourierShellCorrelationCorrected"].to_numpy()
    assert fsc.resolution_at(ours.corrected, box, apix) == pytest.approx(
        fsc.resolution_at(relion_corrected, box, apix), rel=0.03)
    # Random phases differ, so the phase-randomised curves agree only statistically.
    randomised = table["rlnCorrectedFourierShellCorrelationPhaseRandomizedMaskedMaps"].to_numpy()
    assert np.max(np.abs(randomised - ours.phase_randomised_masked)[1:]) < 0.1


@needs("relion_image_handler")
def test_lowpass_matches_relion_image_handler(tmp_path):
    rng = np.random.default_rng(1)
    box, apix, res_A = 32, 1.5, 6.0                        # cutoff on an integer shell, as RELION rounds it
    vol = rng.standard_normal((box,) * 3).astype(np.float32)
    write_map(tmp_path / "in.mrc", vol, apix)
    subprocess.run(["relion_image_handler", "--i", "in.mrc", "--o", "out.mrc", "--lowpass", str(res_A),
                    "--angpix", str(apix)], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    with mrcfile.open(tmp_path / "out.mrc") as mrc:
        relion = np.asarray(mrc.data, float)
    np.testing.assert_allclose(filters.lowpass(vol, apix, res_A), relion, atol=1e-4 * vol.std())

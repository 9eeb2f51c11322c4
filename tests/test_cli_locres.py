"""`gmmrefine locres` end to end: map, figure and percentiles; bad input writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.cli.locres import main
from gmmrefine.errors import InputError
from gmmrefine.fourier import masks
from gmmrefine.io.mrc import read_map, write_map
from gmmrefine.reconstruct import locres
from helpers_locres import APIX, BOX, STEP_PX, WINDOW_A, shared_signal


def test_cli_writes_map_and_figure_and_prints_percentiles(locres_maps):
    out = locres_maps / "locres"
    run = CliRunner().invoke(main, [str(locres_maps / "half1.mrc"), str(locres_maps / "half2.mrc"),
                                    "--out", str(out), "--mask", str(locres_maps / "mask.mrc"),
                                    "--window-A", str(WINDOW_A), "--step-px", str(STEP_PX)])
    assert run.exit_code == 0, run.output
    res, apix = read_map(out / "locres.mrc")
    assert res.shape == (BOX,) * 3 and apix == pytest.approx(APIX)
    # The map written is the local resolution of the maps given, recomputed here.
    halves = [read_map(locres_maps / f"half{h}.mrc")[0] for h in (1, 2)]
    mask = read_map(locres_maps / "mask.mrc")[0]
    np.testing.assert_allclose(res, locres.local_resolution(*halves, APIX, mask=mask,
                                                            window_A=WINDOW_A, step_px=STEP_PX),
                               rtol=1e-5)
    inside = masks.soft_sphere(BOX, (0, 0, 0), 14, 3) >= 0.5
    printed = float(run.output.split("median ")[1].split(" A")[0])
    assert printed == pytest.approx(np.median(res[inside]), abs=0.006)
    assert (out / "locres.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "locres.png").stat().st_size > 20_000


@pytest.mark.parametrize("case", ["mask box", "half box", "missing"])
def test_cli_bad_input_is_one_line_and_writes_nothing(locres_maps, case):
    args = [str(locres_maps / "half1.mrc"), str(locres_maps / "half2.mrc")]
    if case == "mask box":
        write_map(locres_maps / "small.mrc", masks.soft_sphere(32, (0, 0, 0), 8, 3), APIX)
        args += ["--mask", str(locres_maps / "small.mrc")]
    elif case == "half box":
        write_map(locres_maps / "small.mrc", shared_signal(32), APIX)
        args[1] = str(locres_maps / "small.mrc")
    else:
        args[1] = str(locres_maps / "absent.mrc")
    out = locres_maps / "never"
    run = CliRunner().invoke(main, args + ["--out", str(out)])
    assert isinstance(run.exception, InputError), run.output
    message = str(run.exception)
    assert "\n" not in message and ("small.mrc" in message or "absent.mrc" in message)
    assert not out.exists()

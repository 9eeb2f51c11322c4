"""FSC tables: the CSV written and read back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from gmmrefine.io.tables import write_fsc_csv


def test_write_fsc_csv_round_trip(tmp_path):
    box, apix = 32, 2.0
    main = np.linspace(1, -0.1, 17)
    extra = {"fsc_masked": np.linspace(1, 0.2, 17)}
    path = tmp_path / "out" / "fsc.csv"
    write_fsc_csv(path, main, box, apix, extra)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["shell", "resolution_A", "fsc", "fsc_masked"]
    assert [int(r["shell"]) for r in rows] == list(range(17))
    assert rows[0]["resolution_A"] == "inf"
    np.testing.assert_allclose([float(r["resolution_A"]) for r in rows[1:]], box * apix / np.arange(1, 17), rtol=1e-4)
    np.testing.assert_allclose([float(r["fsc"]) for r in rows], main, atol=1e-6)
    np.testing.assert_allclose([float(r["fsc_masked"]) for r in rows], extra["fsc_masked"], atol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["fsc.csv"]   # no temporary left behind
    with pytest.raises(ValueError):
        write_fsc_csv(path, main, box, apix, {"short": main[:5]})

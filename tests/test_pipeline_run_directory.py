"""The run directory's record: a run resumes only under the options it was made with, and a
finished iteration reads back exactly as it was saved."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.pipeline.options import RefineOptions, run_identity
from gmmrefine.pipeline.ownership import claimed
from gmmrefine.pipeline.run_directory import IterationState, Maps, RunDirectory


def test_a_run_from_before_an_option_existed_resumes_at_that_options_default(tmp_path):
    star = tmp_path / "p.star"
    star.write_text("")
    out = tmp_path / "run"
    with claimed(out, run_identity(star, RefineOptions())):
        pass
    record = json.loads((out / "run.json").read_text())
    del record["options"]["sym"], record["options"]["patches"]
    (out / "run.json").write_text(json.dumps(record))
    with claimed(out, run_identity(star, RefineOptions())):          # defaults: resumes
        pass
    with pytest.raises(InputError, match="used sym C1, not C3"):
        with claimed(out, run_identity(star, RefineOptions(sym="C3"))):
            pass


def test_a_saved_iteration_loads_back_bit_exact(tmp_path):
    rng = np.random.default_rng(3)
    n, box = 7, 8
    maps = Maps(*(rng.normal(size=(box,) * 3).astype(np.float32) for _ in range(3)),
                fsc=rng.uniform(size=box // 2 + 1), fsc_masked=rng.uniform(size=box // 2 + 1))
    state = IterationState(rng.normal(size=(n, 3, 3)), rng.normal(size=(n, 2)),
                           rng.normal(size=n), rng.normal(size=n), maps,
                           {"iteration": 1, "resolution_A": 9.5})
    run = RunDirectory(tmp_path / "run", {})
    assert not run.is_done(1)
    run.save_iteration(1, state, apix=1.7)
    assert run.is_done(1)
    back = run.load_iteration(1)
    for name in ("rotation", "shift_A", "score_start", "score_end"):
        np.testing.assert_array_equal(getattr(back, name), getattr(state, name))
    for name in ("half1", "half2", "full", "fsc", "fsc_masked"):
        np.testing.assert_array_equal(getattr(back.maps, name), getattr(maps, name))
    assert back.summary == state.summary

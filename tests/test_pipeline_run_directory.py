"""The run directory's record: a run resumes only under the options it was made with."""

from __future__ import annotations

import json

import pytest
from gmmrefine.errors import InputError
from gmmrefine.pipeline.options import RefineOptions


def test_a_run_from_before_an_option_existed_resumes_at_that_options_default(tmp_path):
    from gmmrefine.pipeline.run_directory import RunDirectory

    star = tmp_path / "p.star"
    star.write_text("")
    RunDirectory(tmp_path / "run", RefineOptions(), star, 10).write_record([])
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    del record["options"]["sym"], record["options"]["patches"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(record))
    RunDirectory(tmp_path / "run", RefineOptions(), star, 10)          # defaults: resumes
    with pytest.raises(InputError, match="sym='C1', not 'C3'"):
        RunDirectory(tmp_path / "run", RefineOptions(sym="C3"), star, 10)

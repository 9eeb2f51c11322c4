"""Every reader, fed mutated files, ends in a result or in one clear line (issue 16).

A fixed, bounded sample of the mutations in tests/fuzzing.py per format
(derandomized, so a run is repeatable); bench/fuzz_readers.py runs the same
properties at length.
"""

from __future__ import annotations

import functools
import io
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from fuzzing import MUTATIONS, TARGETS, mutate, read_outcome, run_mutated, seed_bytes
from gmmrefine.io.star_tables import split_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# 150 examples per format: about 10 s of CPU for this file (STAR and .cs, read and
# converted, are the slowest); bench/fuzz_readers.py runs thousands.
EXAMPLES = 150
_FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

seed_of = functools.cache(seed_bytes)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seed_file_reads(name, tmp_path):
    assert run_mutated(name, seed_of(name), [], tmp_path).kind == "ok"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_empty_and_cut_files_are_one_line(name, tmp_path):
    for mutations in ([("truncate", 0.0)], [("truncate", 0.5)]):
        outcome = run_mutated(name, seed_of(name), mutations, tmp_path)
        assert outcome.kind == "input_error", outcome


@pytest.mark.parametrize("name", sorted(TARGETS))
@_FUZZ
@given(mutations=MUTATIONS)
def test_mutated_file_reads_or_fails_in_one_line(name, mutations):
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_mutated(name, seed_of(name), mutations, Path(tmp))
    assert not outcome.failed, f"{outcome.kind} at {outcome.where}: {outcome.detail}"


@pytest.mark.parametrize("name", ["star31", "star30"])
@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(mutations=MUTATIONS)
def test_a_file_fixed_after_any_read_reads_as_it_is_now(name, mutations):
    # One process, one path: whatever the broken file did, the fixed one reads.
    with tempfile.TemporaryDirectory() as tmp:
        run_mutated(name, seed_of(name), mutations, Path(tmp))
        outcome = run_mutated(name, seed_of(name), [], Path(tmp))
    assert outcome.kind == "ok", outcome


def test_the_property_catches_what_it_should(tmp_path):
    def warns(path):
        import warnings
        warnings.warn("library chatter", RuntimeWarning)

    def crashes(path):
        raise TypeError("cannot unpack non-iterable NoneType object")

    assert read_outcome(warns, tmp_path / "x").kind == "warning"
    assert read_outcome(crashes, tmp_path / "x").kind == "exception"
    assert mutate(b"a b\nc d\n", [("delete_line", 0.0)]) == b"c d\n"


_ROW_TEXT = st.text(alphabet="ab \t\"'#", min_size=1, max_size=12).map(str.strip) \
    .filter(lambda s: s and not s.startswith("#"))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=_ROW_TEXT)
def test_rows_split_as_starfiles_pandas_call_splits_them(text):
    # starfile's read_csv call on one row (its ' -> " replacement included).
    try:
        frame = pd.read_csv(io.StringIO(text.replace("'", '"') + "\n"), delimiter=r"\s+",
                            header=None, comment="#", dtype=str, keep_default_na=False,
                            na_values=["nan", "NaN", "<NA>"], engine="c")
        expected = [("" if pd.isna(v) else v) for v in frame.iloc[0].tolist()]
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        expected = None
    assert split_values(text) == expected

"""io.npy: .npy headers parsed without numpy's own reader, every damage one InputError."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.io.npy import read_npy_bytes


def _npy(descr: str, shape: str = "(2,)") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header = header.ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + \
        bytes(64)


def test_a_valid_header_reads():
    np.testing.assert_array_equal(read_npy_bytes(_npy("<f4"), "x.cs", "dataset"), np.zeros(2))


@pytest.mark.parametrize("descr", ["012f4", "(01,)<f4", "(012)f4", "<f4<"])
def test_a_damaged_descr_is_one_line(descr):
    # numpy parses some descriptions with literal_eval: "012" is a SyntaxError there.
    with pytest.raises(InputError, match=r"x\.cs: .*descr") as err:
        read_npy_bytes(_npy(descr), "x.cs", "dataset")
    assert "\n" not in str(err.value)

"""Bad particle files give one clear line naming the file and the place; a failed write
leaves no file."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.io.particles import read_particles, write_particles
from helpers_formats import CS_CASES, STAR_CASES, bad_particle_file, write_star31


@pytest.mark.parametrize("case", STAR_CASES + CS_CASES)
def test_reader_names_file_and_place(tmp_path, case):
    path, expected = bad_particle_file(tmp_path, case)
    with pytest.raises(InputError) as err:
        read_particles(path)
    message = str(err.value)
    assert "\n" not in message
    for text in expected:
        assert text in message, (text, message)


def test_failed_write_leaves_no_file(tmp_path):
    write_star31(tmp_path / "in.star")
    ps = read_particles(tmp_path / "in.star")
    ps.shift_A = np.zeros((3, 2))            # wrong length: the writer fails midway
    with pytest.raises(ValueError):
        write_particles(ps, tmp_path / "out.cs")
    assert list(tmp_path.iterdir()) == [tmp_path / "in.star"]

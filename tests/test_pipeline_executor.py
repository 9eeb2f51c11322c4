"""The in-process executor is the plain chunk loop, and a run without a cluster option never
imports Dask."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from gmmrefine.data.images import ParticleImages
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.data.rotations import random_rotations
from gmmrefine.errors import InputError
from gmmrefine.io.mrc import write_stack
from gmmrefine.io.stack import StackReader
from gmmrefine.pipeline.executor import IN_PROCESS, ChunkPlan, HalfWork, open_executor
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.reconstruct.backproject import FourierSums, insert_slices

BOX, APIX = 24, 2.0


def _particles(folder, n: int = 23) -> ParticleSet:
    """n noise images on disk with random poses and CTFs, alternating halves."""
    rng = np.random.default_rng(4)
    write_stack(folder / "p.mrcs", rng.normal(size=(n, BOX, BOX)).astype(np.float32), 2.0)
    arrays = empty_like_arrays(n)
    arrays.update(image_path=np.array(["p.mrcs"] * n, dtype=object),
                  image_index=np.arange(n), rotation=random_rotations(n, rng),
                  shift_A=rng.normal(size=(n, 2)), defocus_u_A=rng.uniform(1e4, 2e4, n),
                  half_set=(1 + np.arange(n) % 2).astype(np.int8))
    arrays["defocus_v_A"] = arrays["defocus_u_A"] - 200.0
    optics = [OpticsGroup("g", 2.0, BOX, 300.0, 2.7, 0.1)]
    return ParticleSet(optics=optics, root=folder, **arrays)


def test_in_process_sums_are_the_chunk_loop_bit_for_bit(tmp_path):
    ps = _particles(tmp_path)
    index = np.flatnonzero(ps.half_set == 2)
    plan = ChunkPlan(ps, index, 4, ps.rotation, ps.shift_A)
    with StackReader(tmp_path) as reader:
        result = IN_PROCESS.run_half(HalfWork(None, BOX, APIX, 2, "test"), plan, reader, None,
                                     lambda: False)
        expected = FourierSums.zeros(BOX, 2)
        for part, spectra, ctf, _ in ParticleImages(ps, reader).chunks(index, chunk=4):
            insert_slices(spectra, ctf, ps.rotation[part], sums=expected)
    np.testing.assert_array_equal(result.sums.data, expected.data)
    np.testing.assert_array_equal(result.sums.weight, expected.weight)
    assert [len(rows) for rows, _ in result.poses] == [4, 4, 3]
    rows = np.concatenate([rows for rows, _ in result.poses])
    np.testing.assert_array_equal(rows, index)
    # Not aligned: the poses come back as they went in.
    np.testing.assert_array_equal(np.concatenate([p.rotation for _, p in result.poses]),
                                  ps.rotation[index])


def test_no_cluster_option_means_in_process():
    with open_executor(RefineOptions()) as executor:
        assert executor is IN_PROCESS
        assert executor.description == "in this process"


def test_a_cluster_option_without_dask_installed_is_one_line(monkeypatch):
    for name in ("dask", "distributed", "dask_jobqueue"):
        monkeypatch.setitem(sys.modules, name, None)      # as if not installed
    with pytest.raises(InputError, match=r'need Dask: pip install "gmmrefine\[cluster\]"'):
        with open_executor(RefineOptions(cluster="local:2")):
            pass


@pytest.mark.slow
def test_a_run_without_a_cluster_option_never_imports_dask(tmp_path):
    # In a fresh interpreter: the engine's whole run module, the executor the default
    # options open, and a half's chunks through it; Dask must not be loaded by any of it.
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import numpy as np
        import gmmrefine.pipeline.run
        from gmmrefine.io.stack import StackReader
        from gmmrefine.pipeline.executor import ChunkPlan, HalfWork, open_executor
        from gmmrefine.pipeline.options import RefineOptions
        from test_pipeline_executor import _particles
        ps = _particles(Path({str(tmp_path)!r}))
        plan = ChunkPlan(ps, np.arange(len(ps)), 8, ps.rotation, ps.shift_A)
        with open_executor(RefineOptions()) as executor, StackReader(ps.root) as reader:
            executor.run_half(HalfWork(None, {BOX}, {APIX}, 2, "t"), plan, reader, None, lambda: False)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                        ("dask", "distributed", "dask_jobqueue"))
        sys.exit(", ".join(loaded) or 0)
    """)
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": here + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr

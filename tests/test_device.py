"""--gpu: RELION's id syntax, the device chosen and said, memory growth, and (on a machine
with a GPU) the same poses on the GPU as on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.device import peak_memory_bytes, select_device, tf
from gmmrefine.errors import InputError
from gmmrefine.gpu_request import GpuRequest, parse_gpu
from gmmrefine.io.particles import read_particles
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.simulate.dataset import simulate_dataset

GPUS = tf.config.list_physical_devices("GPU")
needs_gpu = pytest.mark.skipif(not GPUS, reason="no GPU visible to TensorFlow")


@pytest.mark.parametrize("text, ids", [(None, None), ("cpu", ()), (" CPU ", ()), ("0", (0,)),
                                       ("0,1", (0, 1)), ("0:1", (0, 1)), ("1, 0 : 2", (1, 0, 2))])
def test_gpu_ids_as_relion_writes_them(text, ids):
    assert parse_gpu(text) == GpuRequest(ids)


@pytest.mark.parametrize("text", ["", "x", "0;1", "-1", "0,,1", "gpu0"])
def test_bad_gpu_values_are_one_line_in_every_front_end(text):
    with pytest.raises(InputError) as err:
        RefineOptions(gpu=text)
    assert str(err.value).startswith("--gpu ") and "\n" not in str(err.value)


@pytest.mark.skipif(bool(GPUS), reason="the CPU fallback is seen where there is no GPU")
def test_without_a_gpu_the_cpu_is_used_and_said_once(caplog):
    line = select_device("0,1")
    assert line.startswith("computing on the CPU")
    assert "asked for a GPU" in line and "gmmrefine[gpu]" in line and "\n" not in line
    assert select_device(None).startswith("computing on the CPU")
    assert not tf.config.get_visible_devices("GPU")
    kind, peak = peak_memory_bytes()
    assert kind == "cpu_rss" and peak > 50e6


@needs_gpu
def test_every_gpu_grows_its_memory_and_a_missing_id_is_refused():
    assert all(tf.config.experimental.get_memory_growth(gpu) for gpu in GPUS)
    with pytest.raises(InputError, match=f"--gpu {len(GPUS)}: TensorFlow sees GPU"):
        select_device(str(len(GPUS)))
    assert select_device("0").startswith("computing on GPU 0: ")


def _refine(star, out, gpu: str) -> dict:
    """A short refinement in its own process (a process keeps the device it started on)."""
    run = subprocess.run([str(Path(sys.executable).parent / "gmmrefine"), "refine", str(star),
                          "--out", str(out), "--iter", "1", "--gpu", gpu],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads((out / "run.json").read_text())


@pytest.mark.slow
@needs_gpu
def test_a_short_refinement_gives_the_same_poses_on_the_gpu_as_on_the_cpu(tmp_path):
    simulate_dataset(tmp_path / "sim", n=300, box=48, apix=2.6, snr=0.1, crb_sample=0)
    star = tmp_path / "sim" / "particles.star"
    on_cpu = _refine(star, tmp_path / "cpu", "cpu")
    on_gpu = _refine(star, tmp_path / "gpu", "0")
    assert "computing on GPU 0" in (tmp_path / "gpu" / "run.log").read_text()
    assert "computing on the CPU" in (tmp_path / "cpu" / "run.log").read_text()
    cpu = read_particles(tmp_path / "cpu" / "particles.star")
    gpu = read_particles(tmp_path / "gpu" / "particles.star")
    # float32 sums in another order: the poses agree far inside what an iteration moves them.
    moved = np.median(angle_between_deg(read_particles(star).rotation, cpu.rotation))
    difference = angle_between_deg(cpu.rotation, gpu.rotation)
    assert np.median(difference) < 0.05 * moved and np.percentile(difference, 99) < 0.05
    assert np.abs(cpu.shift_A - gpu.shift_A).max() < 0.05 * 2.6
    assert on_gpu["resolution_A"] == pytest.approx(on_cpu["resolution_A"], rel=0.02)

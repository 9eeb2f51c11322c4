"""The engine's layers hold: import-linter's contracts (pyproject.toml) pass, and fail on a
deliberate violation, so the check is real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> where it lands in the installed package (pyproject's package-dir).
LAYOUT = {"core": "gmmrefine", "relion_external": "gmmrefine/relion_external",
          "plugin": "gmmrefine/plugin"}


def _package_copy(root: Path) -> Path:
    """The sources laid out as installed, which import-linter reads without importing them
    (an editable install maps three folders into one package, which it cannot follow)."""
    for source, target in LAYOUT.items():
        shutil.copytree(REPO / source, root / target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _lint(root: Path) -> subprocess.CompletedProcess:
    program = Path(sys.executable).parent / "lint-imports"
    if not program.exists():
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(program), "--config", str(REPO / "pyproject.toml"),
                           "--no-cache"], cwd=root, env=env, capture_output=True, text=True)


def test_every_contract_is_kept(tmp_path):
    result = _lint(_package_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path):
    root = _package_copy(tmp_path)
    grids = root / "gmmrefine" / "fourier" / "grids.py"
    grids.write_text(grids.read_text() + "\nfrom ..pipeline import run  # noqa: E402,F401\n")
    result = _lint(root)
    assert result.returncode != 0
    assert "gmmrefine.fourier is not allowed to import gmmrefine.pipeline" in result.stdout


def test_the_engine_importing_the_simulator_breaks_the_contract(tmp_path):
    root = _package_copy(tmp_path)
    iteration = root / "gmmrefine" / "pipeline" / "iteration.py"
    iteration.write_text(iteration.read_text()
                         + "\nfrom ..simulate import render  # noqa: E402,F401\n")
    result = _lint(root)
    assert result.returncode != 0
    assert "gmmrefine.pipeline is not allowed to import gmmrefine.simulate" in result.stdout

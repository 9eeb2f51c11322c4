"""The option table: one declaration per refinement option, from which the CLI, the
CryoSPARC command and the RELION External job are made (no TensorFlow, no data: fast)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from gmmrefine.align.options import AlignSettings, GaussNewtonSettings
from gmmrefine.cli.main import cli
from gmmrefine.cli.refine import main as refine_command
from gmmrefine.errors import InputError
from gmmrefine.pipeline.options import RefineOptions, option_fields
from gmmrefine.plugin.cli import main as cryosparc_command
from gmmrefine.relion_external import pipeline_files as pf
from gmmrefine.relion_external.job import main as relion_main
from gmmrefine.relion_external.params import (
    INPUT_NODES,
    PARAMETERS,
    markdown_table,
    parse_command,
    split_arguments,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
FIELDS = [name for name, _, _ in option_fields()]
CRYOSPARC_REQUIRED = ["--project", "P3", "--job", "J42", "--workspace", "W1"]


# --- the three front ends, driven as their users drive them ------------------------------

def _cli(args: list[str]) -> RefineOptions:
    params = refine_command.make_context("refine", ["p.star", "--out", "run", *args]).params
    return RefineOptions(**{name: params[name] for name in FIELDS})


def _cryosparc(args: list[str]) -> RefineOptions:
    params = cryosparc_command.make_context("cryosparc", [*CRYOSPARC_REQUIRED, *args]).params
    return RefineOptions(**{name: params[name] for name in FIELDS})


def _relion(args: list[str]) -> RefineOptions:
    return parse_command(split_arguments(["--o", "J/", "--in_parts", "P.star", *args])).options


FRONT_ENDS = {"refine": _cli, "cryosparc": _cryosparc, "relion": _relion}


def _click_options(command) -> dict[str, object]:
    return {p.name: p for p in command.params if p.name in FIELDS}


# --- one spelling, one default ---------------------------------------------------------------

def test_every_field_is_declared_with_a_flag_and_help():
    for field in dataclasses.fields(RefineOptions):
        option = field.metadata["option"]
        assert option.flag.replace("-", "").isalnum() and option.flag.islower(), field.name
        assert option.help and option.kind in (int, float, str), field.name
        # A field without a None word must not default to None, and the word says what None does.
        assert field.default is not None or option.none in ("auto", "none"), field.name
        assert not option.none or option.none_means, field.name
    flags = [option.flag for _, option, _ in option_fields()]
    assert len(set(flags)) == len(flags)


@pytest.mark.parametrize("command", [refine_command, cryosparc_command],
                         ids=["refine", "cryosparc"])
def test_click_commands_have_every_field_with_its_spelling_and_default(command):
    params = _click_options(command)
    assert sorted(params) == sorted(FIELDS)
    for name, option, default in option_fields():
        assert params[name].opts == [f"--{option.flag}"], name
        assert params[name].default == default, name


def test_relion_has_every_field_with_its_spelling_and_default():
    reached = {p.field for p in PARAMETERS.values()} | set(INPUT_NODES.values())
    assert reached == set(FIELDS)
    for name, option, default in option_fields():
        if name in INPUT_NODES.values():
            continue
        assert PARAMETERS[option.flag].field == name and PARAMETERS[option.flag].default == default


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_nothing_given_means_the_engines_defaults(front_end):
    assert FRONT_ENDS[front_end]([]) == RefineOptions()


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_the_same_flags_give_the_same_options(front_end):
    args = ["--iter", "3", "--res", "7.5", "--n-gauss", "800", "--low-cut", "30",
            "--prior-deg", "none", "--score", "frc", "--steps", "12", "--step-deg", "0.3",
            "--align-fsc", "0.143", "--sym", "D2", "--patches", "4", "--patch-iter", "2",
            "--outside", "fade", "--model", "m.pdb", "--seed", "9"]
    assert FRONT_ENDS[front_end](args) == RefineOptions(
        iterations=3, res_A=7.5, n_gauss=800, low_cut_A=30.0, prior_deg=None, score="frc",
        steps=12, step_deg=0.3, align_fsc=0.143, sym="D2", patches=4, patch_iterations=2,
        outside="fade", model="m.pdb", seed=9)


# --- auto and none -----------------------------------------------------------------------

@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_auto_and_none_parse_as_documented(front_end):
    parse = FRONT_ENDS[front_end]
    options = parse(["--res", "auto", "--steps", "AUTO", "--align-fsc", "auto",
                     "--patches", "none", "--prior-px", "none"])
    assert options == RefineOptions(prior_px=None)
    # The prior is off when either of its options is none.
    assert not options.alignment().has_prior
    assert parse(["--prior-deg", "none"]).prior_deg is None
    # Each option has one word: "auto" lets the engine choose, "none" switches off.
    for wrong in (["--res", "none"], ["--prior-deg", "auto"], ["--iter", "auto"]):
        with pytest.raises(InputError, match="expected"):
            parse(wrong)


def test_help_words_and_optimiser_defaults_come_from_the_table():
    by_flag = {option.flag: option for _, option, _ in option_fields()}
    gn, adam = GaussNewtonSettings(), AlignSettings()
    assert f"{gn.iterations} Gauss-Newton" in by_flag["steps"].description()
    assert f"{adam.steps} Adam" in by_flag["steps"].description()
    assert f"{gn.max_step_deg:g} (score cc), {adam.step_deg:g} (score frc)" in \
        by_flag["step-deg"].description()
    assert f"{gn.max_step_px:g} (score cc), {adam.step_px:g} (score frc)" in \
        by_flag["step-px"].description()
    assert by_flag["res"].description().endswith("auto: from the FSC of the maps at the "
                                                 "imported poses")
    assert "[default: auto]" in by_flag["res"].command_line_help(None)


# --- one error line, whatever the front end ------------------------------------------------

BAD = [(["--iter", "0"], "--iter 0: expected an integer >= 1"),
       (["--iter", "three"], "--iter three: expected an integer >= 1"),
       (["--res", "-2"], "--res -2: expected a number > 0 (A), or auto"),
       (["--align-fsc", "1.5"], "--align-fsc 1.5: expected a number > 0 and < 1, or auto"),
       (["--outside", "shrink"], "--outside shrink: expected one of widen, fade"),
       (["--score", "frc"], "--score frc with a prior: expected --prior-deg none"),
       (["--score", "frc", "--prior-deg", "none", "--coarse-passes", "2"],
        "--coarse-passes 2 with --score frc: expected 0"),
       (["--sym", "C7x"], "--sym C7x: expected Cn or Dn"),
       (["--seed", "-1"], "--seed -1: expected an integer >= 0"),
       (["--prior-px", "0"], "--prior-px 0: expected a number > 0 (px), or none")]


def _click_error(args: list[str]) -> str:
    """The one line `gmmrefine ...` prints for a bad option (exit status 2)."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gmmrefine: error: "), result.output
    return lines[0].removeprefix("gmmrefine: error: ")


def _relion_error(args: list[str], tmp_path: Path, capsys) -> str:
    """The one line gmmrefine-relion leaves in run.err, with the FAILURE marker."""
    job = tmp_path / "job001"
    (tmp_path / "P.star").write_text("data_\n")
    assert relion_main(["--o", f"{job}/", "--in_parts", str(tmp_path / "P.star"), *args]) == 1
    assert sorted(p.name for p in job.iterdir()) == [pf.FAILURE]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gmmrefine-relion: error: ")
    return lines[0].removeprefix("gmmrefine-relion: error: ")


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_value_is_the_same_line_in_all_three(args, message, tmp_path, capsys):
    with pytest.raises(InputError) as engine:
        _relion(args)
    line = str(engine.value)
    assert line.startswith(message) and "\n" not in line
    assert _click_error(["refine", "p.star", "--out", str(tmp_path / "run"), *args]) == line
    assert _click_error(["cryosparc", *CRYOSPARC_REQUIRED, *args]) == line
    assert _relion_error(args, tmp_path, capsys) == line
    assert not (tmp_path / "run").exists()


def test_the_engine_refuses_what_the_front_ends_refuse():
    with pytest.raises(InputError, match="^--iter 0: expected an integer >= 1$"):
        RefineOptions(iterations=0)
    with pytest.raises(InputError, match="--score frc with a prior"):
        dataclasses.replace(RefineOptions(), score="frc")
    with pytest.raises(InputError, match="--n-gauss 2.5: expected an integer"):
        RefineOptions(n_gauss=2.5)
    with pytest.raises(InputError, match="--low-cut nan"):
        RefineOptions(low_cut_A=float("nan"))
    assert RefineOptions(score="frc", prior_px=None).score == "frc"


# --- RELION's own spellings ------------------------------------------------------------------

def test_old_relion_underscore_labels_still_work():
    old = _relion(["--n_gauss", "500", "--low_cut", "30", "--patch_iter", "2",
                   "--prior_deg", "none", "--coarse_passes", "1", "--step_deg", "1",
                   "--step_px", "0.5", "--align_fsc", "0.143", "--patches", "3"])
    new = _relion(["--n-gauss", "500", "--low-cut", "30", "--patch-iter", "2",
                   "--prior-deg", "none", "--coarse-passes", "1", "--step-deg", "1",
                   "--step-px", "0.5", "--align-fsc", "0.143", "--patches", "3"])
    assert old == new == RefineOptions(n_gauss=500, low_cut_A=30.0, patch_iterations=2,
                                       prior_deg=None, coarse_passes=1, step_deg=1.0,
                                       step_px=0.5, align_fsc=0.143, patches=3)
    with pytest.raises(InputError, match=r"^--low-cut x: expected a number > 0 \(A\)$"):
        _relion(["--low_cut", "x"])


def test_relion_help_prints_the_parameter_table(capsys):
    assert relion_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: gmmrefine-relion --o JOBDIR/")
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()
            if line and line.split()[0] in PARAMETERS}
    assert sorted(rows) == sorted(PARAMETERS)
    assert rows["low-cut"] == ["25", "A"] and rows["res"] == ["auto", "A"]
    assert rows["prior-deg"] == ["3", "deg"] and rows["patches"][0] == "none"


def test_the_relion_page_lists_every_parameter_as_the_table_says():
    text = (DOCS / "relion.md").read_text()
    start = text.index("| label | default | unit | what it does |")
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    assert "\n".join(lines) == markdown_table(), (
        "docs/relion.md's parameter table is out of date: paste in "
        "gmmrefine.relion_external.params.markdown_table()")


def test_front_ends_load_the_table_without_tensorflow():
    code = ("import sys, gmmrefine.cli.main, gmmrefine.relion_external.params; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0

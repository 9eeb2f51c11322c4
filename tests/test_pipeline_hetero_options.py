"""The option tables of hetero, conf2pose and composite: every front end (CLI, RELION job,
CryoSPARC command) made from one declaration, with the same defaults and one-line errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from gmmrefine.cli.composite import main as composite_command
from gmmrefine.cli.conf2pose import main as conf2pose_command
from gmmrefine.cli.hetero import main as hetero_command
from gmmrefine.cli.main import cli
from gmmrefine.errors import InputError
from gmmrefine.pipeline.hetero_options import CompositeOptions, Conf2PoseOptions, HeteroOptions
from gmmrefine.pipeline.options import option_fields
from gmmrefine.plugin import hetero_cli
from gmmrefine.relion_external.params import split_arguments
from gmmrefine.relion_external.tasks import COMPOSITE, CONF2POSE, HETERO, TASKS, parse_task

TABLES = [(HeteroOptions, hetero_command, hetero_cli.hetero, HETERO),
          (Conf2PoseOptions, conf2pose_command, hetero_cli.conf2pose, CONF2POSE),
          (CompositeOptions, composite_command, hetero_cli.composite, COMPOSITE)]
IDS = ["hetero", "conf2pose", "composite"]


@pytest.mark.parametrize("table, command, cryosparc, spec", TABLES, ids=IDS)
def test_every_field_reaches_every_front_end_with_its_default(table, command, cryosparc, spec):
    fields = option_fields(table)
    for click_command in (command, cryosparc):
        params = {p.name: p for p in click_command.params}
        for name, option, default in fields:
            assert params[name].opts == [f"--{option.flag}"] and params[name].default == default
    relion = {p.field for p in spec.parameters().values()} | {f for f in spec.nodes.values() if f}
    assert relion == {name for name, _, _ in fields}


def test_the_same_values_parse_alike_on_the_command_line_and_in_relion():
    args = ["--latent", "3", "--res", "10", "--encoder-input", "gaussians", "--epochs", "7",
            "--n-gauss", "auto", "--anchors", "20"]
    params = hetero_command.make_context("hetero", ["p.star", "--out", "o", *args]).params
    from_cli = HeteroOptions(**{n: params[n] for n, _, _ in option_fields(HeteroOptions)})
    from_relion = parse_task(HETERO, split_arguments(
        ["--o", "J/", "--in_parts", "p.star", "--in_mask", "m.mrc", *args])).options
    assert from_cli == HeteroOptions(latent_dim=3, res_A=10.0, encoder_input="gaussians",
                                     epochs=7, anchors=20)
    assert from_relion == HeteroOptions(latent_dim=3, res_A=10.0, encoder_input="gaussians",
                                        epochs=7, anchors=20, mask="m.mrc")


BAD = [(["--latent", "0"], "--latent 0: expected an integer >= 1"),
       (["--encoder-input", "pixels"], "--encoder-input pixels: expected one of anchors, "
                                       "gaussians"),
       (["--bins", "1"], "--bins 1: expected an integer >= 2")]


@pytest.mark.parametrize("args, message", BAD, ids=[a[0] for a, _ in BAD])
def test_a_bad_value_is_one_line_from_the_cli_and_from_relion(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["hetero", "p.star", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    assert result.output.strip() == f"gmmrefine: error: {message}"
    with pytest.raises(InputError, match=f"^{message}"):
        parse_task(HETERO, split_arguments(["--o", "J/", "--in_parts", "p.star", *args]))
    assert not (tmp_path / "o").exists()


def test_conf2pose_needs_a_mask_and_composite_needs_runs():
    with pytest.raises(InputError, match="--mask None: expected a non-empty value"):
        Conf2PoseOptions()
    with pytest.raises(InputError, match="--in_mask is missing"):
        parse_task(CONF2POSE, split_arguments(["--o", "J/", "--in_parts", "h/particles.star"]))
    with pytest.raises(InputError, match="--runs is missing"):
        parse_task(COMPOSITE, split_arguments(["--o", "J/"]))
    with pytest.raises(InputError, match="unknown parameter --patches; known labels: fill, runs"):
        parse_task(COMPOSITE, split_arguments(["--o", "J/", "--runs", "a", "--patches", "3"]))


def test_each_task_prints_its_own_rows(capsys):
    from gmmrefine.relion_external.job import run_job

    assert run_job(["--help"], TASKS["conf2pose"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: gmmrefine-relion-conf2pose --o JOBDIR/")
    assert "focus-iter  3" in out and "latent" not in out

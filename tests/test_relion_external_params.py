"""gmmrefine-relion's parameters: labels to options with their types, bad arguments in one line."""

from __future__ import annotations

import pytest
from gmmrefine.errors import InputError
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.relion_external.params import PARAMETERS, parse_command, split_arguments


def _command(text: str):
    return parse_command(split_arguments(text.split()))


def test_labels_set_their_fields_with_types_and_auto():
    cmd = _command("--o External/job003/ --in_parts P.star --in_3dref ref.mrc --in_mask m.mrc "
                   "--iter 3 --res 7.5 --n-gauss auto --batch 8 --low-cut 30 --seed 4 --j 2")
    assert cmd.options == RefineOptions(iterations=3, res_A=7.5, n_gauss=None, batch=8,
                                        low_cut_A=30.0, seed=4, reference="ref.mrc",
                                        mask="m.mrc")
    assert cmd.threads == 2 and str(cmd.particles) == "P.star"
    assert str(cmd.job_dir) == "External/job003"


def _sample(parameter) -> str:
    """A valid value of the row other than its default."""
    option = parameter.option
    if option.choices:
        return next(c for c in option.choices if c != parameter.default)
    if parameter.label in SAMPLES:
        return SAMPLES[parameter.label]
    return {int: "7", float: "0.5", str: "x.pdb"}[option.kind]


# Rows whose values have a form of their own, and rows that only a batch cluster uses.
SAMPLES = {"sym": "C2", "cluster": "local:2", "scheduler": "tcp://node1:8786",
           "worker-memory": "16GB", "walltime": "04:00:00", "gpu": "1"}
WITH_A_CLUSTER = ("queue", "worker-cores", "worker-memory", "worker-gpus", "walltime",
                  "cluster-config")


def test_every_table_row_parses_a_value_of_its_type():
    defaults = RefineOptions()
    for label, parameter in PARAMETERS.items():
        sample = _sample(parameter)
        # The frc score has no prior: switch it off with it.
        extra = " --prior-deg none" if label == "score" else ""
        extra += " --cluster slurm:2" if label in WITH_A_CLUSTER else ""
        options = _command(f"--o J/ --in_parts P.star --{label} {sample}{extra}").options
        value = getattr(options, parameter.field)
        expected = sample if parameter.option.kind is str else parameter.option.kind(sample)
        assert value == expected != getattr(defaults, parameter.field), label


@pytest.mark.parametrize("text, words", [
    ("--o J/ --in_parts P.star --patch_count 8",
     ["--patch_count", "known labels", "iter", "n-gauss"]),
    ("--o J/ --in_parts P.star --iter three", ["--iter", "integer"]),
    ("--o J/ --in_parts P.star --res", ["--res", "number"]),
    ("--o J/ --in_parts P.star --in_mics M.star", ["--in_mics", "does not use"]),
    ("--o J/ --iter 2", ["--in_parts"]),
    ("--o J/ --in_parts P.star --iter 1 --iter 2", ["--iter", "twice"]),
    ("--o J/ --in_parts P.star --low_cut 20 --low-cut 30", ["--low_cut", "--low-cut", "same"]),
    ("--o J/ --in_parts P.star --mask m.mrc", ["--mask", "input node", "--in_mask"]),
    ("--o J/ --in_parts P.star --iter 2 --j 0", ["--j 0", "integer"]),
])
def test_bad_arguments_are_one_clear_line(text, words):
    with pytest.raises(InputError) as err:
        _command(text)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message

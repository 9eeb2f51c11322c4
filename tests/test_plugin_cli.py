"""`gmmrefine cryosparc`: options and connection passed on to the job."""

from __future__ import annotations

from click.testing import CliRunner
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.plugin import compat


def test_cli_translates_options_and_connection(monkeypatch):
    from gmmrefine.plugin import cli as command
    from gmmrefine.plugin import cryosparc_job

    seen = {}
    monkeypatch.setattr(compat, "connect", lambda **kw: seen.setdefault("connect", kw))
    monkeypatch.setattr(cryosparc_job, "run_cryosparc_job",
                        lambda client, p, j, w, **kw: seen.setdefault("run", (p, j, w, kw)) and "J77")
    result = CliRunner().invoke(command.main, [
        "--project", "P3", "--job", "J42", "--workspace", "W1", "--iter", "2",
        "--res", "8", "--base-url", "http://cs:39000", "--email", "a@b.c", "--password", "x"])
    assert result.exit_code == 0, result.output
    assert seen["connect"]["base_url"] == "http://cs:39000"
    project, job, workspace, kwargs = seen["run"]
    assert (project, job, workspace) == ("P3", "J42", "W1")
    assert kwargs["options"] == RefineOptions(iterations=2, res_A=8.0)
    assert "J77" in result.output

    seen.clear()
    result = CliRunner().invoke(command.main, [
        "--project", "P3", "--job", "J42", "--workspace", "W1", "--prior-deg", "none",
        "--base-url", "http://cs:39000"])
    assert result.exit_code == 0, result.output
    assert seen["run"][3]["options"] == RefineOptions(prior_deg=None)
    assert not seen["run"][3]["options"].alignment().has_prior

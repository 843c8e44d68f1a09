"""Conventions of the `dtf models` and `dtf benchmark` commands, through the real CLI: readable
at 80 and 60 columns, help with examples and in the user's words, typos answered with a
suggestion, one-line errors (a traceback only with --debug)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from dtfcli.cli import app
from dtfcli.models import list_models

PLANNING_WORDS = re.compile(r"\bissue\b|\bTODO\b|\bsession\b|\bfor now\b", re.IGNORECASE)


def _assert_every_name_whole_on_its_line(out: str, names: list[str], columns: int) -> None:
    lines = out.splitlines()
    assert all(len(line) <= columns for line in lines), max(lines, key=len)
    assert "…" not in out  # nothing cut short
    for name in names:
        # the name, whole, as the first word of a line (a table row or a paragraph's head)
        assert any(re.match(rf"\W*{re.escape(name)}(\s|$)", line) for line in lines), (name, out)


@pytest.mark.parametrize("columns", [200, 80, 60])
def test_models_lists_every_name_whole_at_any_width(run_cli, columns):
    """A wide terminal gets the full table, 80 columns a compact one without descriptions,
    60 a paragraph per model; never a name cut or a line past the width."""
    proc = run_cli("models", "--no-cost", env={"COLUMNS": str(columns)}, check=True)
    _assert_every_name_whole_on_its_line(proc.stdout, list_models(), columns)
    has_descriptions = "DTF-Net, tiny ResNet (CPU)" in " ".join(proc.stdout.split())  # maybe wrapped
    assert has_descriptions == (columns != 80)
    assert ("--json" in proc.stdout) == (columns == 80)  # where the descriptions went


def test_models_with_costs_fit_80_columns(run_cli):
    """The widest rows, with the parameter and GFLOPs columns: a paper figure at another crop
    and unpublished weights."""
    proc = run_cli("models", "dtfnet_r1*", env={"COLUMNS": "80"}, check=True)
    _assert_every_name_whole_on_its_line(proc.stdout, list_models("dtfnet_r1*"), 80)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("dtfnet_r101"))
    assert re.search(r"\b51\.8\s+48\.1\s+38 @224\s+16\s+256\s+10x3\s+\d+ unpublished$", row), row


@pytest.mark.parametrize("command", ["models", "benchmark"])
def test_help_has_examples_and_speaks_to_users(command):
    result = CliRunner().invoke(app, [command, "--help"], prog_name="dtf", env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert not PLANNING_WORDS.search(result.output), PLANNING_WORDS.search(result.output)
    assert "Examples:" in result.output
    assert re.search(rf"^\s*dtf {command}\b", result.output, re.MULTILINE)


@pytest.mark.parametrize("command", ["predict", "eval", "export", "visualize"])
def test_the_model_option_shows_its_revision_syntax(command):
    """Rich reads "[...]" in a help text as markup: an unescaped "[@rev]" vanished from the help."""
    result = CliRunner().invoke(app, [command, "--help"], prog_name="dtf", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "hf://org/repo[@rev]" in result.output


@pytest.mark.parametrize("typo, command", [("modles", "models"), ("benchmrk", "benchmark")])
def test_a_mistyped_command_gets_a_suggestion(typo, command):
    result = CliRunner().invoke(app, [typo], prog_name="dtf")
    assert result.exit_code == 2
    assert f"Did you mean '{command}'?" in result.output


@pytest.mark.parametrize(
    "args, names",
    [(["models", "nosuch_*", "--no-cost"], "nosuch_*"), (["benchmark", "--suite", "nosuch"], "nosuch")],
)
def test_errors_are_one_line_and_traceback_only_with_debug(run_cli, args, names):
    proc = run_cli(*args, env={"COLUMNS": "40"})  # narrower than the message: still one line
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert names in proc.stderr and "Traceback" not in proc.stderr
    if args[0] == "models":
        debug = run_cli(*args, "--debug")
        assert debug.returncode == 1 and "Traceback" in debug.stderr

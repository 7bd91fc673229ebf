"""The README documents every command, option and exit code, and CI runs its test command."""

from __future__ import annotations

import re

import click
import pytest

from reconcile.cli import EXIT_CODES, cli
from tests.demo import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_is_documented(name: str) -> None:
    assert f"`reconcile {name}" in README


@pytest.mark.parametrize(
    ("name", "option"),
    sorted(
        (name, opt)
        for name, command in cli.commands.items()
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts
        if opt.startswith("--") and opt != "--help"
    ),
)
def test_every_option_is_documented(name: str, option: str) -> None:
    assert mentions(README, option), f"{name} {option} is not in the README"


def mentions(text: str, option: str) -> bool:
    """Whether `text` shows `option` in code: the exact name, as in `--out FILE` or `--out=...`;
    `--output` does not mention `--out`."""
    return re.search(rf"`{re.escape(option)}(?![\w-])", text) is not None


def test_an_option_is_matched_by_its_whole_name() -> None:
    assert mentions("`--out FILE`, `--report`, `--plan=x`", "--out")
    assert mentions("`--out FILE`, `--report`, `--plan=x`", "--report")
    assert mentions("`--out FILE`, `--report`, `--plan=x`", "--plan")
    assert not mentions("`--output FILE` and `--out-of-band`", "--out")
    assert not mentions("--out without code", "--out")


def test_exit_codes_are_documented_in_both_places() -> None:
    for code in re.findall(r"^\s+(\d)  ", EXIT_CODES, flags=re.MULTILINE):
        assert f"\n| {code} |" in README


def test_quickstart_has_two_commands_and_ci_runs_the_test_command() -> None:
    quickstart = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quickstart.strip().splitlines()]
    assert commands == ["./scripts/demo", "./scripts/check"]
    assert "exec bash scripts/check" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")

"""The one writer: every file reconcile writes is checked before the first request, replaced
whole (never half-written, never through a symbolic link), and `-` is standard output. Also: the
processes reconcile starts never see the token."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import TextIO

import pytest

from reconcile.errors import ConfigError
from reconcile.sandbox import Sandbox
from reconcile.writer import destination
from tests.demo import DEMO_IDS, ROOT, TOKEN
from tests.helpers import run, write_state

EXAMPLE = ROOT / "state.example.toml"


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_a_file_is_replaced_whole_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old\n")
    path.chmod(0o600)
    destination(path).write_text("new\n")
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == []


def test_a_failed_render_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text("old\n")

    def render(stream: TextIO) -> None:
        stream.write("half")
        raise ValueError("render failed")

    with pytest.raises(ValueError, match="render failed"):
        destination(path).write(render)
    assert path.read_text() == "old\n"
    assert leftovers(tmp_path) == []


def test_dash_is_standard_output_only_where_given() -> None:
    stream = io.StringIO()
    target = destination("-", stdout=stream)
    target.write_text("{}\n")
    assert stream.getvalue() == "{}\n"
    assert str(target) == "standard output"
    assert destination("-").path == Path("-")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing" / "out.json", "there is no directory"),
        (lambda tmp: tmp, "it is a directory"),
    ],
)
def test_unusable_destinations_are_refused_when_named(
    tmp_path: Path, make: object, message: str
) -> None:
    assert callable(make)
    with pytest.raises(ConfigError, match=message):
        destination(make(tmp_path))


def test_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    link = tmp_path / "report.json"
    link.symlink_to(precious)
    with pytest.raises(ConfigError, match="symbolic link"):
        destination(link)
    assert precious.read_text() == "keep me\n"
    assert link.is_symlink()


def test_an_unwritable_report_fails_before_any_request(sandbox: Sandbox, cli_env: str) -> None:
    result = run("apply", str(EXAMPLE), "--auto-approve", "--report", "/nonexistent/report.json")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Cannot write /nonexistent/report.json: ")
    assert sandbox.requests == []


def test_a_symlinked_report_or_plan_is_refused_before_any_request(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    link = tmp_path / "out.json"
    link.symlink_to(precious)
    for args in (["plan", "--out"], ["apply", "--auto-approve", "--report"]):
        result = run(args[0], str(EXAMPLE), *args[1:], str(link))
        assert result.exit_code == 1, args
        assert "symbolic link" in result.stderr
    imported = run("import", "--output", str(link), "--force")
    assert imported.exit_code == 1
    assert "symbolic link" in imported.stderr
    assert sandbox.requests == []
    assert precious.read_text() == "keep me\n"


def test_out_and_report_dash_write_to_standard_output(sandbox: Sandbox, cli_env: str) -> None:
    planned = run("plan", str(EXAMPLE), "--out", "-")
    assert planned.exit_code == 0, planned.output
    text, _, saved = planned.stdout.partition("\n{\n")
    assert text.endswith("Plan: 2 to archive, 1 to activate, 7 unchanged.")
    assert json.loads("{\n" + saved)["summary"]["archive"] == 2
    assert not Path("-").exists()

    applied = run("apply", str(EXAMPLE), "--auto-approve", "--report", "-")
    assert applied.exit_code == 0, applied.output
    start = applied.stdout.index("\n{\n") + 1
    report, _ = json.JSONDecoder().raw_decode(applied.stdout, start)
    assert report["summary"] == {"ok": 3, "failed": 0, "not_done": 0}


def test_git_runs_without_the_token(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `git` first on PATH records the environment it was given, then runs the real git."""
    repo = tmp_path / "repo"
    repo.mkdir()
    path = write_state(repo / "state.toml", {DEMO_IDS[0]: "active"})
    identity = ["-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.com"]
    for args in (["init", "-q"], ["add", "state.toml"], [*identity, "commit", "-qm", "state"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    seen = tmp_path / "environment.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True, check=True)
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\nenv > "{seen}"\nexec {real_git.stdout.strip()} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    result = run("plan", str(path), "--baseline-ref", "HEAD")
    assert result.exit_code == 0, result.output
    environment = seen.read_text()
    assert "TALLYFY_API_URL=" in environment
    assert "TALLYFY_ACCESS_TOKEN" not in environment
    assert TOKEN not in environment

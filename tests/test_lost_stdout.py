"""Every command with a standard output that is lost (a pipe whose reader has gone, or no
standard output at all, `>&-`), as a process against the sandbox over HTTP: no traceback, the
command's documented exit code, files written whole or not at all, and what the command did told
on stderr. `plan` and `apply` with a closed pipe are in tests/test_console.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reconcile.sandbox import Sandbox
from reconcile.state import load_state
from tests.deadlines import within
from tests.demo import DEMO_IDS, ORG
from tests.guards import check_no_secret
from tests.helpers import write_state

TIMEOUT = 60

LOST = {"pipe": "Broken pipe", "closed": "closed"}
"""How standard output is lost (a pipe whose reader has gone; no standard output at all, `>&-`),
and the reason each command then gives."""


def without_stdout(how: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`reconcile ARGS` as a process whose standard output is lost as `how` says."""
    if how == "closed":
        command = ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "reconcile", *args]
        process = subprocess.run(command, capture_output=True, check=False, timeout=TIMEOUT)
    else:
        command = [sys.executable, "-m", "reconcile", *args]
        reading, writing = os.pipe()
        os.close(reading)
        try:
            process = subprocess.run(
                command, stdout=writing, stderr=subprocess.PIPE, check=False, timeout=TIMEOUT
            )
        finally:
            os.close(writing)
    stderr = process.stderr.decode()
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    check_no_secret(stderr, "the stderr of reconcile")
    return process


def went_on(how: str, outcome: str, summary: str) -> str:
    return (
        f"Warning: standard output failed part-way ({LOST[how]}); {outcome} Its summary:\n{summary}"
    )


def leftovers(folder: Path) -> list[str]:
    """Files in `folder` besides the ones the test made: a half-written temporary file would be."""
    return sorted(path.name for path in folder.iterdir())


@pytest.mark.parametrize("how", LOST)
def test_import_writes_the_whole_file_and_tells_stderr(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, how: str
) -> None:
    path = tmp_path / "state.toml"
    process = without_stdout(how, "import", "--output", str(path))
    summary = f"Wrote 10 runs (3 archived, 7 active) to {path}.\n"
    assert process.returncode == 0
    assert process.stderr.decode() == went_on(how, "the import went on.", summary)
    declared = {run.run_id: run.state.value for run in load_state(path).runs}
    assert declared == {
        run_id: "archived" if sandbox.is_archived(run_id) else "active" for run_id in DEMO_IDS
    }
    assert leftovers(tmp_path) == ["state.toml"]
    assert sandbox.writes == []


@pytest.mark.parametrize("how", LOST)
def test_refresh_rewrites_the_whole_file_and_keeps_its_exit_code(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, how: str
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "archived", DEMO_IDS[2]: "archived"})
    process = without_stdout(how, "refresh", str(path), "--detailed-exitcode")
    assert process.returncode == 2
    stderr = process.stderr.decode()
    assert stderr.startswith(went_on(how, "the refresh went on.", ""))
    assert stderr.count("\n") == 2
    assert {run.run_id: run.state.value for run in load_state(path).runs} == {
        DEMO_IDS[0]: "active",
        DEMO_IDS[2]: "archived",
    }
    assert leftovers(tmp_path) == ["state.toml"]
    assert sandbox.writes == []


@pytest.mark.parametrize("how", LOST)
def test_a_dry_run_whose_diff_cannot_be_shown_exits_1(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, how: str
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "archived"})
    before = path.read_bytes()
    process = without_stdout(how, "refresh", str(path), "--dry-run", "--detailed-exitcode")
    assert process.returncode == 1
    assert process.stderr.decode() == (
        f"Error: the diff could not be written to standard output ({LOST[how]}); what was shown "
        "is incomplete.\n"
    )
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == ["state.toml"]


@pytest.mark.parametrize("how", LOST)
def test_validate_keeps_its_verdict(tmp_path: Path, how: str) -> None:
    good = write_state(tmp_path / "good.toml", {DEMO_IDS[0]: "archived", DEMO_IDS[1]: "active"})
    verdict = f"{good} is valid: 2 runs declared (1 archived, 1 active).\n"
    process = without_stdout(how, "validate", str(good))
    assert process.returncode == 0
    assert process.stderr.decode() == went_on(how, "every file was checked.", verdict)
    bad = tmp_path / "bad.toml"
    bad.write_text("[runs\n", encoding="utf-8")
    process = without_stdout(how, "validate", str(good), str(bad))
    assert process.returncode == 1
    stderr = process.stderr.decode()
    assert stderr.startswith("Error: ")
    assert stderr.endswith(went_on(how, "every file was checked.", verdict))


@pytest.mark.parametrize("how", LOST)
def test_plan_and_apply_without_stdout(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, how: str
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "archived"})
    for saved in ([], ["--out", "-"]):
        plan = without_stdout(how, "plan", str(path), *saved)
        assert plan.returncode == 1
        assert plan.stderr.decode() == (
            f"Error: the plan could not be written to standard output ({LOST[how]}); what was "
            "shown is incomplete.\n"
        )
    applied = without_stdout(how, "apply", str(path), "--auto-approve")
    assert applied.returncode == 0
    stderr = applied.stderr.decode()
    assert stderr.startswith(went_on(how, "the apply went on.", ""))
    assert stderr.endswith("Apply finished: 1 archived, 0 activated, 0 failed.\n")
    assert sandbox.is_archived(DEMO_IDS[0])
    assert [request.run_id for request in sandbox.writes] == [DEMO_IDS[0]]


@pytest.mark.parametrize("how", LOST)
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["import", "--help"]])
def test_click_own_output_ends_quietly(how: str, args: list[str]) -> None:
    process = without_stdout(how, *args)
    assert process.returncode == 1
    assert process.stderr == b""


@pytest.mark.parametrize("how", LOST)
def test_the_sandbox_serves_and_gives_its_settings_on_stderr(how: str) -> None:
    if how == "closed":
        command = ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "reconcile"]
        stdout: int | None = None
    else:
        command = [sys.executable, "-m", "reconcile"]
        reading, stdout = os.pipe()
        os.close(reading)
    server = subprocess.Popen(
        [*command, "sandbox", "--port", "0"], stdout=stdout, stderr=subprocess.PIPE
    )
    if stdout is not None:
        os.close(stdout)
    assert server.stderr is not None
    try:
        with within(TIMEOUT):
            shown = [server.stderr.readline().decode() for _ in range(5)]
        assert shown[0] == (
            f"Warning: standard output failed part-way ({LOST[how]}); the sandbox serves all the "
            "same, with these settings:\n"
        )
        settings = dict(line.split()[1].split("=", 1) for line in shown[2:])
        assert settings["TALLYFY_ORG_ID"] == ORG
        answer = httpx.get(
            f"{settings['TALLYFY_API_URL']}/organizations/{ORG}/runs/{DEMO_IDS[0]}",
            headers={
                "Authorization": f"Bearer {settings['TALLYFY_ACCESS_TOKEN']}",
                "X-Tallyfy-Client": "APIClient",
            },
            timeout=TIMEOUT,
        )
        assert answer.json()["data"]["id"] == DEMO_IDS[0]
    finally:
        server.terminate()
        _, rest = server.communicate(timeout=TIMEOUT)
    assert b"Traceback" not in rest

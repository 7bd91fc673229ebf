"""End to end: the `reconcile` command against the sandbox served over real HTTP on loopback.
Assertions are on exact output, exit codes, the sandbox's request log and its final state."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.sandbox import Fault, Sandbox
from tests.demo import DEMO_ARCHIVED, DEMO_IDS, ORG, ROOT, TOKEN
from tests.guards import check_no_secret
from tests.helpers import run, sandbox_states, write_state

EXAMPLE = ROOT / "state.example.toml"


def test_plan_apply_plan(sandbox: Sandbox, cli_env: str) -> None:
    plan = run("plan", str(EXAMPLE))
    assert plan.exit_code == 0, plan.output
    assert plan.stdout == (
        f"Organization {ORG} at {cli_env}; 10 runs declared in {EXAMPLE}.\n\n"
        f"  archive   {DEMO_IDS[0]}  active -> archived  (status: "
        f"{sandbox.run(DEMO_IDS[0])['status']})  {sandbox.run(DEMO_IDS[0])['name']!r}  "
        f"[{EXAMPLE}:15]\n"
        f"  archive   {DEMO_IDS[3]}  active -> archived  (status: "
        f"{sandbox.run(DEMO_IDS[3])['status']})  {sandbox.run(DEMO_IDS[3])['name']!r}  "
        f"[{EXAMPLE}:17]\n"
        f"  activate  {DEMO_IDS[2]}  archived -> active  (status: "
        f"{sandbox.run(DEMO_IDS[2])['status']})  {sandbox.run(DEMO_IDS[2])['name']!r}  "
        f"[{EXAMPLE}:16]\n"
        "\nChecksum: 1d3b01e1bd287324a647b279eb0a9cd3f0e5c8e7a3b0ced995ac2244973e7cb1\n"
        "Plan: 2 to archive, 1 to activate, 7 unchanged.\n"
    )
    assert sandbox.writes == []

    apply = run("apply", str(EXAMPLE), "--auto-approve")
    assert apply.exit_code == 0, apply.output
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in apply.stdout
    assert sorted((w.method, w.path) for w in sandbox.writes) == sorted(
        [
            ("DELETE", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}"),
            ("DELETE", f"/organizations/{ORG}/runs/{DEMO_IDS[3]}"),
            ("PUT", f"/organizations/{ORG}/runs/{DEMO_IDS[2]}/activate"),
        ]
    )
    assert all(w.status == 200 for w in sandbox.writes)

    again = run("plan", str(EXAMPLE), "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert again.stdout.endswith(f"No changes. 10 runs match {EXAMPLE}.\n")
    assert len(sandbox.writes) == 3


def test_detailed_exitcode_is_2_when_changes_exist(sandbox: Sandbox, cli_env: str) -> None:
    result = run("plan", str(EXAMPLE), "--detailed-exitcode")
    assert result.exit_code == 2
    assert result.stdout.endswith("Plan: 2 to archive, 1 to activate, 7 unchanged.\n")
    assert sandbox.writes == []


def test_apply_without_terminal_or_approval_refuses(sandbox: Sandbox, cli_env: str) -> None:
    result = run("apply", str(EXAMPLE))
    assert result.exit_code == 3
    assert "standard input is not a terminal" in result.stderr
    assert "--auto-approve" in result.stderr
    assert sandbox.writes == []


def test_apply_with_nothing_to_do_does_not_ask(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    result = run("apply", str(path))
    assert result.exit_code == 0
    assert result.stdout.endswith(f"No changes. 1 run matches {path}.\n")


def test_invalid_file_sends_no_request(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_text(f'[runs]\n{DEMO_IDS[0]} = "gone"\nXYZ = "archived"\n')
    for command in ("validate", "plan", "apply"):
        result = run(command, str(path))
        assert result.exit_code == 1
        assert result.stderr == (
            "Error: 2 problems in the state file; nothing was sent to Tallyfy:\n"
            f"  {path}:2: [runs.{DEMO_IDS[0]}] 'gone' is not a state; use \"archived\" or "
            '"active"\n'
            f"  {path}:3: [runs.XYZ] 'XYZ' is not a run ID (32 lowercase hex characters, as in "
            "the run's URL)\n"
        )
    assert sandbox.requests == []


def test_validate_reports_counts() -> None:
    result = run("validate", str(EXAMPLE))
    assert result.exit_code == 0
    assert result.stdout == f"{EXAMPLE} is valid: 10 runs declared (4 archived, 6 active).\n"


@pytest.mark.parametrize("archived_get", [200, 404])
@pytest.mark.parametrize("declared", ["active", "archived"])
@pytest.mark.parametrize("gone", ["warn", "error"])
def test_a_gone_run_is_named_by_its_line(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, archived_get: int, declared: str, gone: str
) -> None:
    """A declared run the organization does not have: declared archived, a warning and never
    written (unless [safety] gone = "error"); declared active, an error. Either way by file:line."""
    sandbox.behaviour = replace(sandbox.behaviour, archived_get=archived_get)
    unknown = "e" * 32
    path = tmp_path / "state.toml"
    path.write_text(
        f'[safety]\ngone = "{gone}"\n\n[runs]\n{DEMO_IDS[8]} = "archived"\n'
        f'{unknown} = "{declared}"\n{DEMO_IDS[0]} = "archived"\n',
        encoding="utf-8",
    )
    result = run("apply", str(path), "--auto-approve", "--fetch", "get")
    assert DEMO_IDS[8] not in result.stderr, "an archived run must not be called gone"
    if declared == "active" or gone == "error":
        assert result.exit_code == 1
        assert f"{path}:6: {unknown}" in result.stderr
        assert sandbox.writes == []
    else:
        assert result.exit_code == 0, result.output
        assert f"Warning: {path}:6: run {unknown} is declared archived but organization" in (
            result.stdout
        )
        assert [(w.method, w.run_id) for w in sandbox.writes] == [("DELETE", DEMO_IDS[0])]


def test_refused_token(sandbox: Sandbox, cli_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", "expired-token-value")
    result = run("apply", str(EXAMPLE), "--auto-approve")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: The API refused the access token.")
    assert "Settings > Integrations > REST API" in result.stderr
    assert "HTTP 401" in result.stderr
    assert "expired-token-value" not in result.output
    assert sandbox.writes == []


def test_wrong_org_is_refused_with_the_api_message(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    # A file without org_id: one that names its organization never gets this far with another.
    bare = tmp_path / "state.toml"
    bare.write_text(EXAMPLE.read_text().replace('org_id = "', '# org_id = "'))
    result = run("plan", str(bare), "--org", "a" * 32)
    assert result.exit_code == 1
    assert "HTTP 403" in result.stderr
    assert "You don't have application's permissions for this organization!" in result.stderr


def test_garbage_response_stops_before_any_write(sandbox: Sandbox, cli_env: str) -> None:
    sandbox.inject(Fault(kind="html", method="GET", status=200, times=100))
    result = run("apply", str(EXAMPLE), "--auto-approve")
    assert result.exit_code == 1
    assert "not JSON" in result.stderr
    assert "(request: GET /organizations/" in result.stderr
    assert sandbox.writes == []


def test_a_failed_change_does_not_stop_the_others(sandbox: Sandbox, cli_env: str) -> None:
    sandbox.inject(Fault(kind="status", status=403, method="DELETE", path_contains=DEMO_IDS[0]))
    result = run("apply", str(EXAMPLE), "--auto-approve")
    assert result.exit_code == 1
    assert "Apply finished: 1 archived, 1 activated, 1 failed." in result.stdout
    assert f"failed: {DEMO_IDS[0]} (archive): The token's user lacks permission" in result.stdout
    assert sandbox_states(sandbox, (DEMO_IDS[0], DEMO_IDS[3], DEMO_IDS[2])) == {
        DEMO_IDS[0]: "active",
        DEMO_IDS[3]: "archived",
        DEMO_IDS[2]: "active",
    }
    retry = run("apply", str(EXAMPLE), "--auto-approve")
    assert retry.exit_code == 0
    assert "Apply finished: 1 archived, 0 activated, 0 failed." in retry.stdout
    assert len(sandbox.writes) == 4


def test_help_documents_exit_codes() -> None:
    for command in ([], ["plan"], ["apply"], ["validate"]):
        result = run(*command, "--help")
        assert result.exit_code == 0
        assert "3  refused by a safety gate" in result.stdout
        assert "2  plan --detailed-exitcode only" in result.stdout


def test_token_is_never_printed(sandbox: Sandbox, cli_env: str) -> None:
    outputs = [
        run("plan", str(EXAMPLE)),
        run("--debug", "plan", str(EXAMPLE)),
        run("apply", str(EXAMPLE), "--auto-approve"),
    ]
    for result in outputs:
        assert TOKEN not in result.output


def test_demo_runs_do_not_start_archived_by_accident(sandbox: Sandbox) -> None:
    assert {run_id for run_id in DEMO_IDS if sandbox.is_archived(run_id)} == DEMO_ARCHIVED


def answer_the_prompt(answer: str) -> subprocess.CompletedProcess[str]:
    """`reconcile apply` with its standard input on a pseudo-terminal, as a person runs it,
    answering `answer` to the confirmation."""
    leader, follower = pty.openpty()
    os.write(leader, answer.encode() + b"\n")
    try:
        return subprocess.run(
            [sys.executable, "-m", "reconcile", "apply", str(EXAMPLE)],
            stdin=follower,
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            check=False,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)


def test_apply_asks_on_a_terminal_and_no_writes_nothing(sandbox: Sandbox, cli_env: str) -> None:
    refused = answer_the_prompt("n")
    check_no_secret(refused.stdout + refused.stderr, "apply answered no")
    assert refused.returncode == 3, refused.stderr
    assert "Apply 3 changes? [y/N]: " in refused.stdout
    assert refused.stderr == "Error: Apply cancelled at the prompt; nothing was written.\n"
    assert sandbox.writes == []

    accepted = answer_the_prompt("y")
    check_no_secret(accepted.stdout + accepted.stderr, "apply answered yes")
    assert accepted.returncode == 0, accepted.stderr
    assert "Apply 3 changes? [y/N]: " in accepted.stdout
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in accepted.stdout
    assert len(sandbox.writes) == 3

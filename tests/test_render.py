"""Plan formats end to end: the JSON contract (checked against the shipped JSON Schema), the
Markdown comment and its size limit, colour rules, and the GitHub Actions job summary."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pty
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconcile.apply import ApplyReport, Interruption, apply_plan
from reconcile.config import DEFAULT_RATE_LIMIT
from reconcile.plan import Plan, build_plan
from reconcile.render import render_apply_markdown
from reconcile.render.markdown import COMMENT_LIMIT
from reconcile.sandbox import Fault, Sandbox, SandboxRun
from reconcile.state import load_state
from reconcile.tallyfy import observe
from tests.demo import DEMO_IDS, ORG, ROOT
from tests.helpers import add_runs, client_for, run, write_state

CHANGES = 400
EXAMPLE = ROOT / "state.example.toml"
PLAN_SCHEMA = json.loads(files("reconcile").joinpath("schema/plan.schema.json").read_text())


def plan_json(*args: str) -> dict[str, Any]:
    result = run("plan", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    Draft202012Validator(PLAN_SCHEMA).validate(document)
    return document


def test_the_plan_schema_is_itself_valid() -> None:
    Draft202012Validator.check_schema(PLAN_SCHEMA)


def test_json_plan_contract(sandbox: Sandbox, cli_env: str) -> None:
    document = plan_json(str(EXAMPLE))
    assert document["format_version"] == 1
    assert (document["org_id"], document["api_url"]) == (ORG, cli_env)
    assert document["state_file"] == {
        "path": str(EXAMPLE),
        "sha256": hashlib.sha256(EXAMPLE.read_bytes()).hexdigest(),
    }
    counts = {k: v for k, v in document["summary"].items() if not k.startswith("by_")}
    assert counts == {"archive": 2, "activate": 1, "unchanged": 7, "declared": 10}
    assert document["warnings"] == []
    first = sandbox.run(DEMO_IDS[0])
    assert document["changes"][0] == {
        "run_id": DEMO_IDS[0],
        "name": first["name"],
        "label": None,
        "action": "archive",
        "current": "active",
        "desired": "archived",
        "status": first["status"],
        "archived_at": None,
        "last_updated": first["last_updated"],
        "source": f"{EXAMPLE}:15",
        "reason": None,
        "checklist_id": first["checklist_id"],
        "checklist_title": first["checklist_title"],
        "owner_id": first["owner_id"],
        # Attributed (every change is, without a baseline), but the feed has no move of it.
        "moved_by": None,
        "cause": "unknown",
    }
    assert (document["baseline"], document["unmanaged"], document["accepted"]) == (None, None, [])
    assert [(c["run_id"], c["action"]) for c in document["changes"]] == [
        (DEMO_IDS[0], "archive"),
        (DEMO_IDS[3], "archive"),
        (DEMO_IDS[2], "activate"),
    ]
    labelled = next(r for r in document["unchanged"] if r["run_id"] == DEMO_IDS[1])
    assert labelled["label"] == "Quarterly SOC 2 access review - Q1 2026"
    assert sandbox.writes == []


def test_json_plan_without_changes(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    result = run("plan", str(path), "--format", "json", "--detailed-exitcode")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    Draft202012Validator(PLAN_SCHEMA).validate(document)
    assert document["changes"] == []
    assert document["checksum"] == hashlib.sha256(b"[]").hexdigest()


def test_json_carries_gate_warnings_and_plan_exits_3(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 10, archived=False)
    path = write_state(tmp_path / "state.toml", dict.fromkeys(ids, "archived"))
    result = run("plan", str(path), "--format", "json", "--detailed-exitcode")
    assert result.exit_code == 3, "apply would refuse it"
    document = json.loads(result.stdout)
    Draft202012Validator(PLAN_SCHEMA).validate(document)
    assert document["warnings"] == [
        "the plan would archive 10 of the 10 declared runs that are active now (100.0%), over the "
        "limit of 30% (max_archive_percent, checked from 10 active runs on)."
    ]


def test_markdown_plan(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    sandbox.add_runs([SandboxRun(id="f" * 32, name="Pay *all* <b>vendors</b> | now")])
    path = write_state(tmp_path / "state.toml", {"f" * 32: "archived", DEMO_IDS[4]: "active"})
    result = run("plan", str(path), "--format", "markdown")
    assert result.exit_code == 0
    digest = json.loads(run("plan", str(path), "--format", "json").stdout)["checksum"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert result.stdout == (
        "**Plan: 1 to archive, 0 to activate, 1 unchanged.**\n"
        "\n"
        f"Organization `{ORG}` at `{cli_env}`; 2 runs declared in `{path}` (sha256 `{sha}`).\n"
        "\n"
        "| action | run | name | current -> desired | source |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"| archive | `{'f' * 32}` | Pay \\*all\\* &lt;b&gt;vendors&lt;/b&gt; \\| now | "
        f"active -> archived | `{path}:2` |\n"
        "\n"
        "<details><summary>1 unchanged run</summary>\n"
        "\n"
        "| run | name | state | source |\n"
        "| --- | --- | --- | --- |\n"
        f"| `{DEMO_IDS[4]}` | Employee onboarding - Dana Whitfield | active | `{path}:3` |\n"
        "\n"
        "</details>\n"
        "\n"
        f"Checksum: `{digest}` (`reconcile apply {path} --checksum {digest}`)\n"
    )


def test_markdown_of_5000_changes_fits_in_one_comment(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    ids = add_runs(sandbox, 5000, archived=False)
    kept = add_runs(sandbox, 50, archived=False, start=9000)
    path = write_state(
        tmp_path / "state.toml", {**dict.fromkeys(ids, "archived"), **dict.fromkeys(kept, "active")}
    )
    result = run("plan", str(path), "--format", "markdown", "--detailed-exitcode")
    assert result.exit_code == 3, "apply would refuse it"
    text = result.stdout
    assert len(text) < COMMENT_LIMIT
    lines = text.splitlines()
    assert lines[0] == "**Plan: 5000 to archive, 0 to activate, 50 unchanged.**"
    assert "> **Warning:** apply would refuse: the plan would archive 5000 of the 5050" in text
    shown = [line for line in lines if line.startswith("| archive | `")]
    assert 100 < len(shown) < 5000
    assert [line.split("`")[1] for line in shown] == ids[: len(shown)]
    assert (
        f"_{5000 - len(shown):,} more changes ({5000 - len(shown):,} to archive, 0 to activate) "
        f"not shown: only {len(shown):,} of 5,000 fit under GitHub's 65,536-character comment "
        "limit. The JSON plan (`reconcile plan --format json` or `--out`) lists them all._"
    ) in lines
    assert "<details><summary>50 unchanged runs</summary>" in lines
    assert lines[-1].startswith("Checksum: `")
    assert "</details>" in lines


def test_colour_only_on_a_terminal_and_never_with_no_color(sandbox: Sandbox, cli_env: str) -> None:
    assert "\x1b[" not in run("plan", str(EXAMPLE)).stdout
    assert "\x1b[31marchive" in on_a_terminal("plan", str(EXAMPLE), TERM="xterm")
    assert "\x1b[" not in on_a_terminal("plan", str(EXAMPLE), NO_COLOR="1", TERM="xterm")
    # no-color.org: only a NO_COLOR with a value turns colour off.
    assert "\x1b[31marchive" in on_a_terminal("plan", str(EXAMPLE), NO_COLOR="", TERM="xterm")
    assert "\x1b[" not in on_a_terminal("plan", str(EXAMPLE), TERM="dumb")
    assert "\x1b[" not in on_a_terminal("plan", str(EXAMPLE), "--format", "markdown")


def on_a_terminal(*args: str, **env: str) -> str:
    """Run reconcile with its standard output on a pseudo-terminal; return what it wrote."""
    leader, follower = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env
    process = subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=environ,
        check=False,
        timeout=60,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.returncode == 0, process.stderr
    return b"".join(chunks).decode()


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_github_step_summary_gets_the_markdown(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, command: str
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# Earlier step\n")
    extra = ["--auto-approve"] if command == "apply" else []
    result = run(command, str(EXAMPLE), *extra, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0, result.output
    text = summary.read_text()
    assert text.startswith("# Earlier step\n")
    first = text.splitlines()[1]
    if command == "plan":
        assert first == "**Plan: 2 to archive, 1 to activate, 7 unchanged.**"
    else:
        assert first == "**Apply finished: 2 archived, 1 activated, 0 failed.**"
        assert f"| ok | archive | `{DEMO_IDS[0]}` | " in text
    assert "\x1b[" not in text


def test_apply_summary_of_many_changes_fits_and_lists_failures_first(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    # Long names make a few hundred rows overflow the comment: with fewer writes than the default
    # rate limit allows in a minute, the apply never waits for the window to roll.
    long_name = (
        "Quarterly access review of every vendor contract, its owners and renewal terms -" * 2
    )
    ids = add_runs(sandbox, CHANGES, archived=False, name=long_name)
    sandbox.inject(Fault(kind="status", status=403, method="DELETE", path_contains=ids[-1]))
    path = write_state(tmp_path / "state.toml", dict.fromkeys(ids, "archived"))
    summary = tmp_path / "summary.md"
    result = run(
        "apply", str(path), "--auto-approve", "--force", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert result.exit_code == 1
    text = summary.read_text()
    assert len(text) < COMMENT_LIMIT
    assert len(sandbox.requests) < DEFAULT_RATE_LIMIT
    lines = text.splitlines()
    assert lines[0] == f"**Apply finished: {CHANGES - 1} archived, 0 activated, 1 failed.**"
    rows = [line for line in lines if line.startswith("| ")][2:]
    assert rows[0].startswith(f"| **failed** | archive | `{ids[-1]}` | ")
    assert all(row.startswith("| ok | archive | ") for row in rows[1:])
    assert (
        f"_{CHANGES - len(rows):,} more changes (failures are listed first) not shown: only "
        f"{len(rows):,} of {CHANGES} fit under GitHub's 65,536-character comment limit."
    ) in text


def test_an_unwritable_step_summary_is_a_warning_not_a_failure(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    result = run("plan", str(EXAMPLE), "--detailed-exitcode", env={"GITHUB_STEP_SUMMARY": "/"})
    assert result.exit_code == 2
    assert result.stderr.startswith("Warning: cannot append to GITHUB_STEP_SUMMARY (/): ")
    assert result.stdout.endswith("Plan: 2 to archive, 1 to activate, 7 unchanged.\n")


def test_json_and_markdown_carry_drift_labels_and_unmanaged_runs(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    baseline = write_state(tmp_path / "main.toml", {DEMO_IDS[0]: "active", DEMO_IDS[1]: "active"})
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "archived", DEMO_IDS[1]: "active"})
    sandbox.set_archived(DEMO_IDS[1], True)
    args = (str(path), "--baseline", str(baseline), "--show-unmanaged")

    document = plan_json(*args)
    assert document["baseline"] == str(baseline)
    assert [(c["run_id"], c["reason"]) for c in document["changes"]] == [
        (DEMO_IDS[0], "requested"),
        (DEMO_IDS[1], "drift"),
    ]
    undeclared = [run_id for run_id in DEMO_IDS if run_id not in (DEMO_IDS[0], DEMO_IDS[1])]
    assert sorted(u["run_id"] for u in document["unmanaged"]) == sorted(undeclared)
    assert plan_json(str(path))["unmanaged"] is None

    markdown = run("plan", *args, "--format", "markdown").stdout
    assert "| action | run | name | current -> desired | source | reason |" in markdown
    assert f"| `{DEMO_IDS[1]}` |" in markdown
    assert "1 requested (the declaration changed), 1 drift" in markdown
    assert "<details><summary>8 unmanaged runs (not in the state file; never touched)" in markdown


def test_markdown_with_thousands_of_unmanaged_runs_still_fits(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    add_runs(sandbox, 6000, archived=False)
    ids = add_runs(sandbox, 3000, archived=False, start=9000)
    path = write_state(tmp_path / "state.toml", dict.fromkeys(ids, "archived"))
    result = run("plan", str(path), "--format", "markdown", "--show-unmanaged")
    text = result.stdout
    assert len(text) < COMMENT_LIMIT
    assert "<details><summary>6010 unmanaged runs" in text
    assert "more unmanaged runs not shown" in text or "unmanaged runs not shown" in text
    document = plan_json(str(path), "--show-unmanaged", "--force")  # past the archive gate
    assert len(document["unmanaged"]) == 6010


def test_markdown_of_an_interrupted_apply_says_what_was_not_started(sandbox: Sandbox) -> None:
    async def interrupted() -> tuple[Plan, ApplyReport]:
        async with client_for(sandbox) as client:
            state = load_state(EXAMPLE)
            observed = await observe(client, state.runs)
            plan = build_plan(state, observed, org_id=ORG, api_url="https://sandbox.test/api")
            stop = Interruption()
            stop.set()
            return plan, await apply_plan(client, plan, stop=stop)

    plan, report = asyncio.run(interrupted())
    stream = io.StringIO()
    render_apply_markdown(plan, report, stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "**Apply interrupted: 0 archived, 0 activated, 0 failed, 3 not started.**"
    assert sum(1 for line in lines if line.startswith("| not started | ")) == 3
    assert not any("**failed**" in line for line in lines)
    assert sandbox.writes == []


def test_the_markdown_header_names_the_state_file_the_commit_and_the_ci_run(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    github = {
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/ops",
        "GITHUB_RUN_ID": "42",
    }
    lines = run("plan", str(EXAMPLE), "--format", "markdown", env=github).stdout.splitlines()
    sha = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()[:12]
    assert lines[2] == (
        f"Organization `{ORG}` at `{cli_env}`; 10 runs declared in `{EXAMPLE}` (sha256 `{sha}`)."
    )
    assert lines[4] == (
        "Commit 0123456789abcdef0123456789abcdef01234567 · "
        "[CI run](https://github.com/acme/ops/actions/runs/42)"
    )
    summary = tmp_path / "summary.md"
    gitlab = {
        "CI_COMMIT_SHA": "89abcdef",
        "CI_PIPELINE_URL": "https://gitlab.example/acme/ops/-/pipelines/7",
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    result = run("apply", str(EXAMPLE), "--auto-approve", env=gitlab)
    assert result.exit_code == 0, result.output
    assert summary.read_text().splitlines()[4] == (
        "Commit 89abcdef · [CI run](https://gitlab.example/acme/ops/-/pipelines/7)"
    )

"""`reconcile plan --baseline/--baseline-ref/--show-unmanaged` end to end against the sandbox:
which changes a pull request asks for and which undo edits made in Tallyfy, and which runs the
file does not manage."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from reconcile.drift import label_changes
from reconcile.plan import Plan, Reason, build_plan
from reconcile.render import render_plan
from reconcile.sandbox import Sandbox
from reconcile.state import load_state
from reconcile.tallyfy import observe
from reconcile.unmanaged import add_unmanaged
from tests.demo import DEMO_IDS, ORG
from tests.helpers import BIG_ORG_SIZE, big_org_runs, client_for, json_checksum, run, write_state

PLAN_SCHEMA = json.loads(files("reconcile").joinpath("schema/plan.schema.json").read_text())
NAMES = {
    DEMO_IDS[0]: "Client onboarding - Globex Corporation",
    DEMO_IDS[1]: "Quarterly SOC 2 access review - Q1 2026",
    DEMO_IDS[5]: "Month-end close - January 2026",
}
BASELINE = {DEMO_IDS[0]: "active", DEMO_IDS[1]: "active", DEMO_IDS[3]: "active"}
EDITED = {
    DEMO_IDS[0]: "archived",  # the edit under review asks for this
    DEMO_IDS[1]: "active",  # unchanged, but archived in the UI below: drift
    DEMO_IDS[3]: "active",  # unchanged and right
    DEMO_IDS[5]: "archived",  # new in the file: requested
}


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=Reviewer", "-c", "user.email=reviewer@example.com"]
    subprocess.run(["git", "-C", str(repo), *identity, *args], check=True, capture_output=True)


def labelled_plan(url: str, path: Path, baseline: str, checksum: str) -> str:
    return (
        f"Organization {ORG} at {url}; 4 runs declared in {path}.\n"
        "\n"
        f"  archive   {DEMO_IDS[0]}  active -> archived  (status: active)  "
        f"{NAMES[DEMO_IDS[0]]!r}  [{path}:2]  requested\n"
        f"  archive   {DEMO_IDS[5]}  active -> archived  (status: complete)  "
        f"{NAMES[DEMO_IDS[5]]!r}  [{path}:5]  requested\n"
        f"  activate  {DEMO_IDS[1]}  archived -> active  (status: archived)  "
        f"{NAMES[DEMO_IDS[1]]!r}  [{path}:3]  drift\n"
        "\n"
        f"Against the baseline {baseline}: 2 requested (the declaration changed), 1 drift (the run "
        "was moved in Tallyfy while its declaration stayed the same; applying moves it back).\n"
        "\n"
        f"Declarations since the baseline {baseline}: 1 added, 0 removed, 1 changed:\n"
        f"  added    {DEMO_IDS[5]}  archived\n"
        f"  changed  {DEMO_IDS[0]}  state 'active' -> 'archived'\n"
        "\n"
        f"Checksum: {checksum}\n"
        "Plan: 2 to archive, 1 to activate, 1 unchanged.\n"
    )


def test_baseline_file_tells_requested_changes_from_drift(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    baseline = write_state(tmp_path / "main.toml", BASELINE)
    path = write_state(tmp_path / "state.toml", EDITED)
    sandbox.set_archived(DEMO_IDS[1], True)

    result = run("plan", str(path), "--baseline", str(baseline), "--detailed-exitcode")

    assert result.exit_code == 2, result.output
    assert result.stdout == labelled_plan(cli_env, path, str(baseline), json_checksum(path))
    assert sandbox.writes == []


def test_no_baseline_means_no_labels(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path = write_state(tmp_path / "state.toml", EDITED)
    result = run("plan", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        f"{NAMES[DEMO_IDS[5]]!r}  [{path}:5]\n\nChecksum: {json_checksum(path)}\n"
        "Plan: 2 to archive, 0 to activate, 2 unchanged.\n"
    )
    assert "Against the baseline" not in result.stdout


@pytest.mark.parametrize("where", ["repo root", "state file's folder"])
def test_baseline_ref_reads_the_same_file_from_git(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    repo = tmp_path / "repo"
    (repo / "ops").mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch", "main")
    write_state(repo / "ops" / "state.toml", BASELINE)
    git(repo, "add", "ops/state.toml")
    git(repo, "commit", "--quiet", "-m", "Declare runs")
    git(repo, "checkout", "--quiet", "-b", "archive-globex")
    write_state(repo / "ops" / "state.toml", EDITED)
    git(repo, "commit", "--quiet", "-am", "Archive Globex onboarding")
    sandbox.set_archived(DEMO_IDS[1], True)
    monkeypatch.chdir(repo if where == "repo root" else repo / "ops")
    path = Path("ops/state.toml") if where == "repo root" else Path("state.toml")

    result = run("plan", str(path), "--baseline-ref", "main")

    assert result.exit_code == 0, result.output
    assert result.stdout == labelled_plan(cli_env, path, f"main:{path}", json_checksum(path))

    same = run("plan", str(path), "--baseline-ref", "HEAD")
    assert same.exit_code == 0, same.output
    assert same.stdout.count("  drift\n") == 3
    assert f"Against the baseline HEAD:{path}: 0 requested" in same.stdout


def test_baseline_ref_errors_name_the_ref_and_send_nothing(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "main")
    write_state(repo / "committed.toml", BASELINE)
    git(repo, "add", "committed.toml")
    git(repo, "commit", "--quiet", "-m", "Declare runs")
    write_state(repo / "state.toml", EDITED)
    monkeypatch.chdir(repo)
    hint = (
        "check that the ref exists locally (in CI, fetch the default branch first) and that the "
        "state file is committed there\n"
    )

    missing_ref = run("plan", "state.toml", "--baseline-ref", "origin/main")
    assert missing_ref.exit_code == 1
    assert missing_ref.stderr.startswith(
        "Error: 1 problem in the state file; nothing was sent to Tallyfy:\n"
        "  origin/main:state.toml: git cannot read the baseline (fatal: "
    )
    assert missing_ref.stderr.endswith(f"); {hint}")

    missing_path = run("plan", "state.toml", "--baseline-ref", "main")
    assert missing_path.exit_code == 1
    assert missing_path.stderr.startswith(
        "Error: 1 problem in the state file; nothing was sent to Tallyfy:\n"
        "  main:state.toml: git cannot read the baseline (fatal: path 'state.toml' "
    )
    assert missing_path.stderr.endswith(f"); {hint}")

    option = run("plan", "state.toml", "--baseline-ref", "--output=x")
    assert option.exit_code == 1
    assert option.stderr == "Error: --baseline-ref '--output=x' is not a git revision.\n"

    both = run("plan", "state.toml", "--baseline", "committed.toml", "--baseline-ref", "main")
    assert both.exit_code == 1
    assert both.stderr == "Error: Give --baseline or --baseline-ref, not both.\n"
    assert sandbox.requests == []
    assert not (repo / "x").exists()


def test_invalid_baseline_is_reported_with_its_name(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    baseline = tmp_path / "main.toml"
    baseline.write_text('[runs]\nabc = "archived"\n', encoding="utf-8")
    path = write_state(tmp_path / "state.toml", EDITED)
    result = run("plan", str(path), "--baseline", str(baseline))
    assert result.exit_code == 1
    assert f"  {baseline}:2: [runs.abc] 'abc' is not a run ID" in result.stderr
    assert sandbox.requests == []


def test_show_unmanaged_lists_the_runs_the_file_does_not_declare(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    declared = {
        run_id: "archived" if sandbox.is_archived(run_id) else "active" for run_id in DEMO_IDS[:6]
    }
    path = write_state(tmp_path / "state.toml", declared)

    result = run("plan", str(path), "--show-unmanaged")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"Organization {ORG} at {cli_env}; 6 runs declared in {path}.\n"
        "\n"
        f"Unmanaged: 4 runs are in the organization but not in {path}; reconcile never touches "
        "them (`reconcile import --merge` adds them):\n"
        "  0d6b3e9a5c2f47d1b8e4a0c6f3b9d5e2  archived  'Client offboarding - Soylent Foods'\n"
        "  4b9d2f6a8c1e43b7d5a0c9e2f4b6d8a3  active    "
        "'Supplier contract renewal - Umbrella Logistics'\n"
        "  5c0e8b2f6a9d41c3e7b5f1a8d2c6e4b0  archived  'Annual insurance policy review 2026'\n"
        "  8f1a4c7e2b5d49a6c3f0e8b1d4a7c2e9  active    'Fire safety inspection - Leeds warehouse'\n"
        "\n"
        f"No changes. 6 runs match {path}.\n"
    )
    listings = {r.query.get("archived") for r in sandbox.requests if r.run_id is None}
    assert listings == {None, "only"}
    assert sandbox.writes == []


def test_show_unmanaged_on_a_fully_managed_org(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.toml"
    assert run("import", "--output", str(path)).exit_code == 0
    result = run("plan", str(path), "--show-unmanaged")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        f"\nNo unmanaged runs: every run of the organization is in {path}.\n"
        f"\nNo changes. 10 runs match {path}.\n"
    )


def test_unmanaged_runs_of_a_large_org_are_all_on_the_plan(tmp_path: Path) -> None:
    sandbox = Sandbox(ORG, "sandbox-token", big_org_runs())
    ids = sorted(run.id for run in big_org_runs())
    path = write_state(tmp_path / "state.toml", {run_id: "active" for run_id in ids[::50]})

    async def plan() -> Plan:
        state = load_state(path)
        async with client_for(sandbox) as client:
            observed = await observe(client, state.runs)
            built = build_plan(state, observed, org_id=ORG, api_url="https://sandbox.test/api")
            return await add_unmanaged(client, built)

    result = asyncio.run(plan())
    assert result.unmanaged is not None
    assert [run.run_id for run in result.unmanaged] == [i for i in ids if i not in ids[::50]]
    assert len(result.unmanaged) == BIG_ORG_SIZE - 6
    assert all(change.reason is None for change in result.changes)
    assert {change.action.value for change in result.changes} == {"activate"}
    shown = io.StringIO()
    render_plan(result, shown)
    listed = shown.getvalue().split("\nUnmanaged: ", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert [line.split()[0] for line in listed[:-1]] == [
        run.run_id for run in result.unmanaged[:10]
    ]
    assert listed[-1] == f"  ... and {BIG_ORG_SIZE - 6 - 10} more"


def test_labels_are_on_the_plan_for_other_renderers(sandbox: Sandbox, tmp_path: Path) -> None:
    baseline = load_state(write_state(tmp_path / "main.toml", BASELINE))
    state = load_state(write_state(tmp_path / "state.toml", EDITED))
    sandbox.set_archived(DEMO_IDS[1], True)

    async def plan() -> Plan:
        async with client_for(sandbox) as client:
            observed = await observe(client, state.runs)
        return build_plan(state, observed, org_id=ORG, api_url="https://sandbox.test/api")

    labelled = label_changes(asyncio.run(plan()), baseline)
    assert labelled.baseline == str(tmp_path / "main.toml")
    assert [(c.run_id, c.reason) for c in labelled.changes] == [
        (DEMO_IDS[0], Reason.REQUESTED),
        (DEMO_IDS[5], Reason.REQUESTED),
        (DEMO_IDS[1], Reason.DRIFT),
    ]
    assert labelled.unmanaged is None
    assert labelled.warnings == ()


def test_the_declarations_changed_since_the_baseline_in_json_and_markdown(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    baseline = write_state(tmp_path / "main.toml", BASELINE)
    path = write_state(tmp_path / "state.toml", EDITED)
    result = run("plan", str(path), "--baseline", str(baseline), "--format", "json")
    document = json.loads(result.stdout)
    Draft202012Validator(PLAN_SCHEMA).validate(document)
    assert document["declarations"] == {
        "added": [{"run_id": DEMO_IDS[5], "state": "archived", "name": None}],
        "removed": [],
        "changed": [
            {"run_id": DEMO_IDS[0], "field": "state", "before": "active", "after": "archived"}
        ],
    }
    unlabelled = json.loads(run("plan", str(path), "--format", "json").stdout)
    assert unlabelled["declarations"] is None

    markdown = run("plan", str(path), "--baseline", str(baseline), "--format", "markdown").stdout
    assert (
        f"Declarations since the baseline `{baseline}`: 1 added, 0 removed, 1 changed:\n\n"
        f"- added    {DEMO_IDS[5]}  archived\n"
        f"- changed  {DEMO_IDS[0]}  state 'active' -&gt; 'archived'\n"
    ) in markdown
    same = run("plan", str(path), "--baseline", str(path), "--format", "markdown").stdout
    assert f"No declaration changed since the baseline `{path}`." in same

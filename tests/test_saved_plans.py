"""Apply exactly what was reviewed: `plan --out` then `apply --plan`, `apply --checksum`, and
`apply --report`, end to end against the sandbox over HTTP."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconcile.planfile import MAX_PLAN_BYTES
from reconcile.sandbox import Fault, Sandbox, serve
from tests.deadlines import within
from tests.demo import DEMO_IDS, ORG, ROOT
from tests.helpers import run, sandbox_states

EXAMPLE = ROOT / "state.example.toml"
REVIEWED = {DEMO_IDS[0]: "archived", DEMO_IDS[3]: "archived", DEMO_IDS[2]: "active"}


def save_plan(tmp_path: Path) -> Path:
    out = tmp_path / "plan.json"
    result = run("plan", str(EXAMPLE), "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def canonical_checksum(changes: list[dict[str, Any]]) -> str:
    """The documented checksum, computed here independently of reconcile.planfile."""
    canonical = [{k: c[k] for k in ("run_id", "action", "current", "desired")} for c in changes]
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def test_saved_plan_applies_exactly_its_changes_without_asking(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    out = save_plan(tmp_path)
    saved = json.loads(out.read_text())
    assert {c["run_id"]: c["desired"] for c in saved["changes"]} == REVIEWED
    assert len(saved["unchanged"]) == 7
    sandbox.clear_log()

    result = run("apply", "--plan", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Saved plan {out}: 3 changes reviewed, 0 already done.\n")
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in result.stdout
    assert sorted((w.method, w.run_id) for w in sandbox.writes) == sorted(
        [("DELETE", DEMO_IDS[0]), ("DELETE", DEMO_IDS[3]), ("PUT", DEMO_IDS[2])]
    )
    assert sandbox_states(sandbox, tuple(REVIEWED)) == REVIEWED

    again = run("apply", "--plan", str(out))
    assert again.exit_code == 0
    assert again.stdout == (
        f"Saved plan {out}: 3 changes reviewed, 3 already done.\n"
        f"Organization {ORG} at {cli_env}; 10 runs declared in {EXAMPLE}.\n"
        f"No changes. 10 runs match {EXAMPLE}.\n"
    )
    assert len(sandbox.writes) == 3


def test_a_change_made_meanwhile_is_skipped_as_done(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    out = save_plan(tmp_path)
    sandbox.set_archived(DEMO_IDS[0], True)
    sandbox.clear_log()
    result = run("apply", "--plan", str(out))
    assert result.exit_code == 0, result.output
    assert f"Saved plan {out}: 3 changes reviewed, 1 already done." in result.stdout
    assert sorted((w.method, w.run_id) for w in sandbox.writes) == sorted(
        [("DELETE", DEMO_IDS[3]), ("PUT", DEMO_IDS[2])]
    )


def test_runs_that_moved_since_the_plan_are_refused_before_any_write(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    out = save_plan(tmp_path)
    # Planned to be activated, but re-archived in the UI: archived_at moved.
    sandbox.set_archived(DEMO_IDS[2], False)
    sandbox.set_archived(DEMO_IDS[2], True)
    # Unchanged in the plan (declared active, was active), archived in the UI since.
    sandbox.set_archived(DEMO_IDS[4], True)
    sandbox.clear_log()

    result = run("apply", "--plan", str(out))
    assert result.exit_code == 3
    assert result.stderr.startswith(
        f"Error: 2 run(s) moved since the plan in {out} was made, so it no longer describes the "
        "organization. Nothing was written; make and review a new plan.\n"
    )
    moved = result.stderr.splitlines()[1:]
    assert [line.split()[0] for line in moved] == [DEMO_IDS[2], DEMO_IDS[4]]
    assert moved[0].startswith(f"  {DEMO_IDS[2]} ({EXAMPLE}:16): planned from archived (status ")
    assert f"{DEMO_IDS[4]} ({EXAMPLE}:18): planned from active" in moved[1]
    assert ", now archived (status archived" in moved[1]
    before, stamp = "'2026-02-02T16:20:00.000Z'", r"'2026-[0-9-]+T[0-9:.]+Z'"
    assert re.search(
        rf"\); changed: archived_at {before} -> {stamp}, last_updated {before} -> {stamp}$",
        moved[0],
    )
    changed = moved[1].split("; changed: ")[1]
    assert changed.startswith("archived_at None -> '")
    assert ", status 'active' -> 'archived', last_updated '" in changed
    assert sandbox.writes == []
    assert all(r.method == "GET" for r in sandbox.requests)


def test_a_plan_for_another_org_or_api_is_refused_without_a_request(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    out = save_plan(tmp_path)
    sandbox.clear_log()
    other_org = run("apply", "--plan", str(out), "--org", "a" * 32)
    assert other_org.exit_code == 3
    assert other_org.stderr == (
        f"Error: The plan file {out} was made for organization {ORG} at {cli_env}, but this "
        f"apply targets organization {'a' * 32} at {cli_env}. Nothing was written; check --org, "
        "--api-url, TALLYFY_ORG_ID and TALLYFY_API_URL.\n"
    )
    with serve(Sandbox.from_seed(ROOT / "examples" / "demo-org.toml")) as other:
        other_api = run("apply", "--plan", str(out), "--api-url", other.url)
    assert other_api.exit_code == 3
    assert f"but this apply targets organization {ORG} at {other.url}." in other_api.stderr
    assert sandbox.requests == []


def test_the_plan_is_read_from_the_file_alone(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = save_plan(tmp_path)
    monkeypatch.delenv("TALLYFY_ORG_ID")
    monkeypatch.chdir(tmp_path)  # no state.toml here: apply --plan does not need one
    result = run("apply", "--plan", str(out))
    assert result.exit_code == 0, result.output
    assert len(sandbox.writes) == 3


def test_the_api_url_is_never_taken_from_the_plan(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = save_plan(tmp_path)
    sandbox.clear_log()
    monkeypatch.delenv("TALLYFY_API_URL")
    result = run("apply", "--plan", str(out))
    assert result.exit_code == 3
    assert f"at {cli_env}, but this apply targets organization {ORG} at " in result.stderr
    assert "https://go.tallyfy.com/api. Nothing was written" in result.stderr
    assert sandbox.requests == []


def edit(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_an_edited_plan_file_is_refused(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    out = save_plan(tmp_path)

    def drop_a_change(document: dict[str, Any]) -> None:
        document["changes"].pop(0)

    edit(out, drop_a_change)
    result = run("apply", "--plan", str(out))
    assert result.exit_code == 3
    assert result.stderr.startswith(
        f"Error: The plan file {out} does not match its checksum: its changes were edited after "
        "`reconcile plan --out` wrote it"
    )
    assert sandbox.writes == []


def test_a_resealed_plan_is_never_applied_as_the_reviewed_one(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    """The file's checksum proves it is whole, not that it was reviewed: a plan edited and
    resealed (its checksum recomputed) is refused when apply is given the reviewed checksum, the
    one the pull-request comment printed. The reviewed file itself applies, and again after part
    of it was done (what is left is checked against the whole reviewed plan)."""
    out = save_plan(tmp_path)
    reviewed = json.loads(out.read_text())["checksum"]
    resealed = tmp_path / "resealed.json"
    resealed.write_text(out.read_text())

    def reseal(document: dict[str, Any]) -> None:
        document["changes"] = document["changes"][:1]
        document["checksum"] = canonical_checksum(document["changes"])

    edit(resealed, reseal)
    sandbox.clear_log()
    refused = run("apply", "--plan", str(resealed), "--checksum", reviewed)
    assert refused.exit_code == 3
    assert refused.stderr.startswith(
        f"Error: The plan file {resealed} has the checksum "
        f"{canonical_checksum(json.loads(resealed.read_text())['changes'])}, not the reviewed "
        f"{reviewed}: it is not the plan that was reviewed"
    )
    assert sandbox.requests == []

    sandbox.set_archived(DEMO_IDS[0], True)  # one change done meanwhile, in the web app
    applied = run("apply", "--plan", str(out), "--checksum", reviewed.upper())
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.startswith(f"Saved plan {out}: 3 changes reviewed, 1 already done.\n")
    assert sorted((w.method, w.run_id) for w in sandbox.writes) == [
        ("DELETE", DEMO_IDS[3]),
        ("PUT", DEMO_IDS[2]),
    ]
    assert sandbox_states(sandbox, tuple(REVIEWED)) == REVIEWED


@pytest.mark.parametrize("checksum", [[], ["--checksum", "0" * 64]])
def test_a_plan_file_that_never_ends_is_refused_after_a_bounded_read(
    sandbox: Sandbox, cli_env: str, checksum: list[str]
) -> None:
    with within(60):
        result = run("apply", "--plan", "/dev/zero", *checksum)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: The plan file /dev/zero is larger than {MAX_PLAN_BYTES} bytes (read up to that)"
    )
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda d: d.update(format_version=2), "format_version is 2, not 1"),
        (lambda d: d.pop("org_id"), "org_id: missing or not a string"),
        (lambda d: d["changes"][0].update(action="activate"), "changes[0].action: does not lead"),
        (lambda d: d["changes"][0].update(current="archived"), "changes[0].current: archived but"),
        (lambda d: d["changes"][1].update(run_id="../../x"), "changes[1].run_id: '../../x' is not"),
        (lambda d: d["unchanged"].append(d["changes"][0]), "appears more than once"),
        (lambda d: d["safety"].update(min_runs="10"), "safety.min_runs: missing or not a number"),
    ],
)
def test_a_malformed_plan_file_is_an_error_naming_the_problem(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, damage: Any, problem: str
) -> None:
    out = save_plan(tmp_path)

    def damage_and_reseal(document: dict[str, Any]) -> None:
        damage(document)
        document["checksum"] = canonical_checksum(document["changes"])

    edit(out, damage_and_reseal)
    sandbox.clear_log()
    result = run("apply", "--plan", str(out))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: The plan file {out} is not a plan this version")
    assert problem in result.stderr
    assert sandbox.requests == []


def test_a_plan_file_that_is_not_json(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    out.write_text("Plan: 2 to archive\n")
    result = run("apply", "--plan", str(out))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: The plan file {out} is not JSON (")
    missing = run("apply", "--plan", str(tmp_path / "nope.json"))
    assert missing.exit_code == 1
    assert missing.stderr == (
        f"Error: Cannot read the plan file {tmp_path / 'nope.json'}: No such file or directory.\n"
    )


def test_checksum_is_stable_and_the_same_in_every_format(sandbox: Sandbox, cli_env: str) -> None:
    document = json.loads(run("plan", str(EXAMPLE), "--format", "json").stdout)
    digest = document["checksum"]
    assert digest == canonical_checksum(document["changes"])
    assert f"\nChecksum: {digest}\n" in run("plan", str(EXAMPLE)).stdout
    markdown = run("plan", str(EXAMPLE), "--format", "markdown").stdout
    assert f"Checksum: `{digest}` (`reconcile apply {EXAMPLE} --checksum {digest}`)" in markdown
    assert json.loads(run("plan", str(EXAMPLE), "--format", "json").stdout)["checksum"] == digest


def test_apply_checksum_applies_only_the_reviewed_plan(sandbox: Sandbox, cli_env: str) -> None:
    digest = json.loads(run("plan", str(EXAMPLE), "--format", "json").stdout)["checksum"]
    sandbox.set_archived(DEMO_IDS[4], True)
    sandbox.clear_log()
    refused = run("apply", str(EXAMPLE), "--checksum", digest)
    assert refused.exit_code == 3
    assert refused.stderr.startswith("Error: The live plan's checksum is ")
    assert f"not the reviewed {digest}: the state file or the organization changed" in (
        refused.stderr
    )
    assert sandbox.writes == []

    sandbox.set_archived(DEMO_IDS[4], False)
    result = run("apply", str(EXAMPLE), "--checksum", digest.upper())
    assert result.exit_code == 0, result.output
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in result.stdout
    assert len(sandbox.writes) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checksum", "abc"], "--checksum 'abc' is not a sha256 checksum"),
    ],
)
def test_bad_review_flags(sandbox: Sandbox, cli_env: str, args: list[str], message: str) -> None:
    result = run("apply", str(EXAMPLE), *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert sandbox.requests == []


def test_report_lists_every_change_and_its_outcome(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    sandbox.inject(Fault(kind="status", status=403, method="DELETE", path_contains=DEMO_IDS[0]))
    result = run("apply", str(EXAMPLE), "--auto-approve", "--report", str(report))
    assert result.exit_code == 1
    written = json.loads(report.read_text())
    assert written["finished"] is True
    assert written["summary"] == {"ok": 2, "failed": 1, "not_done": 0}
    outcomes = {c["run_id"]: (c["action"], c["outcome"], c["writes"]) for c in written["changes"]}
    assert outcomes == {
        DEMO_IDS[0]: ("archive", "failed", 1),
        DEMO_IDS[3]: ("archive", "ok", 1),
        DEMO_IDS[2]: ("activate", "ok", 1),
    }
    failed = next(c for c in written["changes"] if c["outcome"] == "failed")
    assert failed["detail"].startswith("The token's user lacks permission")
    assert failed["source"] == f"{EXAMPLE}:15"


def test_report_is_written_when_apply_is_refused(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    result = run("apply", str(EXAMPLE), "--report", str(report))  # no terminal, no approval
    assert result.exit_code == 3
    written = json.loads(report.read_text())
    assert written["finished"] is False
    assert written["summary"] == {"ok": 0, "failed": 0, "not_done": 3}
    assert sandbox.writes == []

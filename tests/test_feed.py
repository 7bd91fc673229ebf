"""Who moved a run, auto-archive and cheap drift checks, end to end through the CLI against the
sandbox over HTTP: `plan` attributes drift from the activity feed (and stays the same plan when
the feed cannot be read), `[drift] auto_archived` chooses, `--changed-since` reads little."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconcile.cli import cli
from reconcile.sandbox import Fault, Sandbox, SandboxRun
from reconcile.sandbox.activity import TOKEN_USER, Actor
from reconcile.sandbox.model import zulu
from reconcile.sandbox.organization import AutoArchive
from tests.demo import DEMO_ARCHIVED, DEMO_IDS
from tests.helpers import write_state

JANE = Actor(67890, "Jane Doe", "jane@example.com")
FEED = "activity-feeds"
NOW = datetime.now(UTC).replace(microsecond=0)
DONE = "d" * 32
"""A run that completed ten days ago, in an organization that auto-archives after a week."""
COMPLETED = NOW - timedelta(days=10)
DUE = COMPLETED + timedelta(days=7)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def plan_json(path: Path, *args: str) -> dict[str, Any]:
    result = run("plan", str(path), "--format", "json", *args)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def stamp(moment: datetime) -> str:
    return zulu(moment)


def feed_reads(sandbox: Sandbox) -> int:
    return sum(1 for request in sandbox.requests if request.path.endswith(FEED))


@pytest.fixture
def auto_org(sandbox: Sandbox) -> Sandbox:
    """The demo org with auto-archive after 7 days and DONE, completed ten days ago, archived
    by the auto-archive clock (by nobody) three days ago."""
    sandbox.auto_archive = AutoArchive(True, "days", 7)
    done = SandboxRun(id=DONE, name="Done", status="complete", completed_at=stamp(COMPLETED))
    sandbox.add_runs([done])
    sandbox.behaviour = replace(sandbox.behaviour, auto_archive_clock=True)
    return sandbox


def test_plan_says_who_moved_each_drifted_run(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active", DEMO_IDS[1]: "active"})
    sandbox.move(DEMO_IDS[0], True, JANE, at="2026-11-30T15:00:00Z")
    sandbox.set_archived(DEMO_IDS[1], True)  # a move the feed never heard of

    text = run("plan", str(path)).stdout
    document = plan_json(path)

    assert f"{DEMO_IDS[0]}  archived -> active" in text
    assert "archived by Jane Doe (web app) on 2026-11-30\n" in text
    line = next(line for line in text.splitlines() if DEMO_IDS[1] in line)
    assert line.endswith(f"[{path}:3]")  # nobody named
    moved = {change["run_id"]: change for change in document["changes"]}
    assert moved[DEMO_IDS[0]]["moved_by"] == {
        "actor": "Jane Doe",
        "email": "jane@example.com",
        "at": "2026-11-30T15:00:00Z",
        "source": "Member",
        "self": False,
    }
    assert moved[DEMO_IDS[0]]["cause"] == "person"
    assert (moved[DEMO_IDS[1]]["moved_by"], moved[DEMO_IDS[1]]["cause"]) == (None, "unknown")
    assert sandbox.writes == []


def test_an_earlier_apply_is_the_tokens_own_move(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "archived"})
    assert run("apply", str(path), "--auto-approve").exit_code == 0
    write_state(path, {DEMO_IDS[0]: "active"})

    [change] = plan_json(path)["changes"]

    assert change["moved_by"]["self"] is True
    assert change["moved_by"]["email"] == TOKEN_USER.email
    assert "archived with this token's own user (an earlier apply)" in run("plan", str(path)).stdout


def test_only_drift_is_attributed_against_a_baseline(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    baseline = write_state(tmp_path / "main.toml", {DEMO_IDS[0]: "active"})
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "archived"})
    [change] = plan_json(path, "--baseline", str(baseline))["changes"]
    assert (change["reason"], change["moved_by"], change["cause"]) == ("requested", None, None)
    assert feed_reads(sandbox) == 0


@pytest.mark.parametrize(
    ("switch", "fault"),
    [
        ("forbidden", None),
        ("missing", None),
        ("on", Fault("html", path_contains=FEED, status=200, times=6)),
        ("on", Fault("truncated", path_contains=FEED, times=6)),
    ],
)
def test_a_feed_that_cannot_be_read_gives_the_same_plan(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, switch: str, fault: Fault | None
) -> None:
    path = write_state(
        tmp_path / "state.toml",
        {DEMO_IDS[0]: "active", DEMO_IDS[1]: "archived", DEMO_IDS[3]: "active"},
    )
    sandbox.move(DEMO_IDS[0], True, JANE, at="2026-11-30T15:00:00Z")
    served = plan_json(path)
    sandbox.behaviour = replace(sandbox.behaviour, activity_feed=switch)
    if fault is not None:
        sandbox.inject(fault)

    refused = plan_json(path)
    detailed = run("plan", str(path), "--detailed-exitcode")

    assert refused["checksum"] == served["checksum"]
    assert [(c["run_id"], c["action"]) for c in refused["changes"]] == [
        (c["run_id"], c["action"]) for c in served["changes"]
    ]
    assert {c["moved_by"] is None for c in refused["changes"]} == {True}
    [notice] = refused["warnings"]
    assert notice.startswith("who moved the drifted runs is unavailable")
    assert "the activity feed could not be read" in notice
    assert detailed.exit_code == 2
    assert "Warning: who moved the drifted runs is unavailable" in detailed.stdout


def test_an_empty_feed_names_nobody(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    sandbox.behaviour = replace(sandbox.behaviour, activity_feed="empty")
    sandbox.move(DEMO_IDS[0], True, JANE)
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    document = plan_json(path)
    assert (document["changes"][0]["moved_by"], document["warnings"]) == (None, [])


def test_no_attribution_skips_the_feed(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    sandbox.move(DEMO_IDS[0], True, JANE)
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    with_feed = plan_json(path)
    sandbox.clear_log()
    without = plan_json(path, "--no-attribution")
    assert feed_reads(sandbox) == 0
    assert all("/runs" in r.path for r in sandbox.requests)
    assert without["checksum"] == with_feed["checksum"]
    # The cause can still come from timing (the setting is read when a run is complete).
    assert (without["changes"][0]["moved_by"], without["changes"][0]["cause"]) == (None, "unknown")


# --- auto-archive -------------------------------------------------------------------------------


def test_auto_archive_drift_is_reverted_by_default(
    auto_org: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = write_state(tmp_path / "state.toml", {DONE: "active", DEMO_IDS[0]: "active"})
    [change] = plan_json(path)["changes"]
    assert (change["run_id"], change["action"], change["cause"]) == (
        DONE,
        "activate",
        "auto-archive",
    )
    assert change["moved_by"]["actor"] is None
    assert change["moved_by"]["at"] == stamp(DUE).replace(".000Z", "Z")
    text = run("plan", str(path), "--detailed-exitcode")
    assert text.exit_code == 2
    assert f"archived by auto-archive on {DUE.date()}" in text.stdout
    # Auto-archive will take it again: the plan says so before the tug-of-war starts.
    assert f"auto-archive (7 days) archives it since {DUE.date()}" in text.stdout


def test_accepted_auto_archive_drift_is_left_alone(
    auto_org: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = write_state(tmp_path / "state.toml", {DONE: "active", DEMO_IDS[0]: "active"})
    path.write_text('[drift]\nauto_archived = "accept"\n\n' + path.read_text(encoding="utf-8"))

    document = plan_json(path)
    detailed = run("plan", str(path), "--detailed-exitcode")
    applied = run("apply", str(path), "--auto-approve")

    assert document["changes"] == []
    assert [(r["run_id"], r["cause"]) for r in document["accepted"]] == [(DONE, "auto-archive")]
    assert detailed.exit_code == 0
    assert 'Accepted ([drift] auto_archived = "accept"): 1 run' in detailed.stdout
    assert "`reconcile refresh` writes them down" in detailed.stdout
    assert f"No changes. 1 run matches {path}; 1 accepted." in detailed.stdout
    assert "tug-of-war" not in detailed.stdout, "no apply activates an accepted run"
    assert applied.exit_code == 0
    assert auto_org.writes == []
    assert auto_org.is_archived(DONE)


def test_failing_on_auto_archive_drift_stops_plan_and_apply(
    auto_org: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path = write_state(tmp_path / "state.toml", {DONE: "active", DEMO_IDS[0]: "archived"})
    path.write_text('[drift]\nauto_archived = "fail"\n\n' + path.read_text(encoding="utf-8"))

    planned = run("plan", str(path))
    applied = run("apply", str(path), "--auto-approve")
    forced = run("apply", str(path), "--auto-approve", "--force")

    for result in (planned, applied, forced):
        assert result.exit_code == 3, result.output
        assert f"{path}:5: {DONE} 'Done'" in result.output
        assert 'auto_archived = "fail"' in result.output
    # The plan is shown as every refused plan is, in every format, with the runs named.
    assert f"activate  {DONE}" in planned.stdout
    saved = tmp_path / "plan.json"
    as_json = run("plan", str(path), "--format", "json", "--out", str(saved))
    assert as_json.exit_code == 3
    document = json.loads(as_json.stdout)
    causes = {c["run_id"]: (c["action"], c["cause"]) for c in document["changes"]}
    assert causes == {DEMO_IDS[0]: ("archive", "unknown"), DONE: ("activate", "auto-archive")}
    (reason,) = document["refused"]
    assert reason in document["warnings"]
    assert f"{path}:5: {DONE} 'Done'" in reason
    # A saved plan keeps the refusal: applying it refuses too, whatever --force says.
    from_saved = run("apply", "--plan", str(saved), "--auto-approve", "--force")
    assert from_saved.exit_code == 3, from_saved.output
    assert 'auto_archived = "fail"' in from_saved.output
    assert auto_org.writes == []


def test_timing_alone_tells_auto_archive_when_the_feed_is_forbidden(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    sandbox.auto_archive = AutoArchive(True, "days", 7)
    sandbox.add_runs(
        [
            SandboxRun(id=DONE, name="Done", status="complete", completed_at=stamp(COMPLETED)),
            SandboxRun(
                id="e" * 32, name="Jane's", status="complete", completed_at=stamp(COMPLETED)
            ),
        ]
    )
    sandbox.move(DONE, True, None, at=stamp(DUE + timedelta(hours=30)))
    sandbox.move("e" * 32, True, JANE, at=stamp(DUE))  # a person, at auto-archive's time
    path = write_state(tmp_path / "state.toml", {DONE: "active", "e" * 32: "active"})
    path.write_text('[drift]\nauto_archived = "accept"\n\n' + path.read_text(encoding="utf-8"))

    with_feed = plan_json(path)
    sandbox.behaviour = replace(sandbox.behaviour, activity_feed="forbidden")
    without = plan_json(path)

    assert [c["run_id"] for c in with_feed["changes"]] == ["e" * 32]  # the person wins
    assert with_feed["changes"][0]["cause"] == "person"
    assert [c["run_id"] for c in with_feed["accepted"]] == [DONE]
    assert [(c["run_id"], c["cause"]) for c in without["accepted"]] == [
        (DONE, "auto-archive"),
        ("e" * 32, "auto-archive"),
    ]


def test_plan_warns_before_auto_archive_comes(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    sandbox.auto_archive = AutoArchive(True, "weeks", 2)
    completed = NOW - timedelta(days=3)
    sandbox.add_runs(
        [SandboxRun(id=DONE, name="Done", status="complete", completed_at=stamp(completed))]
    )
    path = write_state(tmp_path / "state.toml", {DONE: "active"})
    result = run("plan", str(path), "--detailed-exitcode")
    assert result.exit_code == 0
    due = (completed + timedelta(weeks=2)).date()
    assert (
        f"Warning: {path}:2: run {DONE} is declared active but complete; auto-archive (2 weeks) "
        f"will archive it on {due}"
    ) in result.stdout


# --- changed-since ------------------------------------------------------------------------------


def test_changed_since_reads_only_the_declared_runs_that_moved(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    declared = {run_id: "active" for run_id in DEMO_IDS[:2] + DEMO_IDS[3:8]}
    path = write_state(tmp_path / "state.toml", declared)
    sandbox.move(DEMO_IDS[0], True, JANE, at=stamp(NOW - timedelta(hours=2)))
    sandbox.move(DEMO_IDS[1], True, JANE, at=stamp(NOW - timedelta(days=3)))  # before DATE
    sandbox.move(DEMO_IDS[2], False, JANE, at=stamp(NOW - timedelta(hours=1)))  # not declared
    full = plan_json(path)
    sandbox.clear_log()

    since = (NOW - timedelta(days=1)).isoformat()
    checked = plan_json(path, "--changed-since", since)

    assert [c["run_id"] for c in checked["changes"]] == [DEMO_IDS[0]]
    assert checked["changes"][0]["moved_by"]["actor"] == "Jane Doe"
    assert not any(r.path.endswith("/runs") for r in sandbox.requests)  # no listing page
    assert {r.run_id for r in sandbox.requests if r.run_id} == {DEMO_IDS[0]}
    assert any(
        w.startswith("drift check: the activity feed shows 1 of the 7") for w in checked["warnings"]
    )
    assert len(full["changes"]) == 2  # the full plan stays the truth


@pytest.mark.parametrize("switch", ["forbidden", "missing"])
def test_changed_since_falls_back_to_a_full_read(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, switch: str
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active", DEMO_IDS[1]: "active"})
    sandbox.move(DEMO_IDS[0], True, JANE)
    sandbox.set_archived(DEMO_IDS[1], True)
    sandbox.behaviour = replace(sandbox.behaviour, activity_feed=switch)

    checked = plan_json(path, "--changed-since", str(NOW.date()))

    assert [c["run_id"] for c in checked["changes"]] == [DEMO_IDS[0], DEMO_IDS[1]]
    assert any("could not answer completely" in w for w in checked["warnings"])
    assert any("every declared run was read instead" in w for w in checked["warnings"])
    # The reason is the feed's request and its answer, not a message about writing runs.
    status = {"forbidden": 403, "missing": 404}[switch]
    (fallback,) = [w for w in checked["warnings"] if w.startswith("--changed-since")]
    assert "/activity-feeds?entity_type=run&type=Process&verb=" in fallback
    assert f" answered HTTP {status} (" in fallback
    assert "Archiving" not in fallback
    # The feed that failed is not asked again for attribution: one warning says it.
    assert [w for w in checked["warnings"] if "activity-feeds" in w] == [fallback]
    verbs = [r.query.get("verb") for r in sandbox.requests if r.path.endswith(FEED)]
    assert len(verbs) == len(set(verbs)), verbs


def test_changed_since_refuses_what_is_not_a_date(cli_env: str, tmp_path: Path) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    result = run("plan", str(path), "--changed-since", "yesterday")
    assert result.exit_code == 1
    assert "is not a date (YYYY-MM-DD) or an ISO date-time" in result.output


def test_a_drift_check_that_finds_no_move_is_no_change(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    declared = {run_id: "archived" if run_id in DEMO_ARCHIVED else "active" for run_id in DEMO_IDS}
    path = write_state(tmp_path / "state.toml", declared)

    result = run("plan", str(path), "--changed-since", str(NOW.date()), "--detailed-exitcode")

    # Not an empty state file (exit 3): the runs the feed shows unmoved are declared, not read.
    assert result.exit_code == 0, result.output
    assert f"; 10 runs declared in {path}.\n" in result.stdout
    assert result.stdout.endswith(f"No changes. 0 runs match {path}; 10 not read.\n")
    assert not any(request.run_id for request in sandbox.requests)
    document = plan_json(path, "--changed-since", str(NOW.date()))
    assert (document["summary"]["declared"], document["summary"]["unchanged"]) == (10, 0)


def test_a_drift_check_trips_the_gates_the_full_plan_trips(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    declared = {run_id: "archived" if run_id in DEMO_ARCHIVED else "active" for run_id in DEMO_IDS}
    path = write_state(tmp_path / "state.toml", declared)
    sandbox.move(DEMO_IDS[2], False, JANE)  # declared archived: 1 of the 8 active runs to archive
    since = str(NOW.date())

    for limit, expected in (("20", 2), ("10", 3)):  # 12.5% of the active runs
        options = ("--detailed-exitcode", "--gate-min-runs", "1", "--max-archive-percent", limit)
        full = run("plan", str(path), *options)
        checked = run("plan", str(path), *options, "--changed-since", since)
        assert (full.exit_code, checked.exit_code) == (expected, expected), checked.output
        assert "Plan: 1 to archive, 0 to activate, 0 unchanged, 9 not read." in checked.stdout


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("2026-13-01", " (month must be in 1..12)"),
        ("2026-02-30", " (day is out of range for month)"),
        ("30/11/2026", " (Invalid isoformat string: '30/11/2026')"),
        ("2026-11-30T25:00", ""),
        ("", ""),
    ],
)
def test_a_bad_changed_since_date_is_one_error_naming_it(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, given: str, why: str
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    result = run("plan", str(path), "--changed-since", given)
    assert result.exit_code == 1
    assert result.output.endswith(
        f"Error: Invalid value for '--changed-since': {given!r} is not a date (YYYY-MM-DD) or an "
        f"ISO date-time{why}\n"
    )
    assert sandbox.requests == []


def test_the_drift_table_bounds_the_feed_read(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    """`[drift] lookback_days` is how far back the feed is asked about, `feed_pages` how many
    pages of a verb are read at most: a feed longer than that is left out, and the plan says so."""
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active", DEMO_IDS[1]: "active"})
    declarations = path.read_text(encoding="utf-8")
    sandbox.move(DEMO_IDS[0], True, JANE, at=stamp(NOW - timedelta(days=10)))
    sandbox.move(DEMO_IDS[1], True, JANE, at=stamp(NOW - timedelta(days=2)))

    def moved_by(drift: str) -> dict[str, Any]:
        path.write_text(drift + declarations, encoding="utf-8")
        sandbox.clear_log()
        document = plan_json(path)
        return {change["run_id"]: change["moved_by"] for change in document["changes"]}

    assert {run_id: by["actor"] for run_id, by in moved_by("").items()} == {
        DEMO_IDS[0]: "Jane Doe",
        DEMO_IDS[1]: "Jane Doe",
    }
    week = moved_by("[drift]\nlookback_days = 7\n\n")
    assert (week[DEMO_IDS[0]], week[DEMO_IDS[1]]["actor"]) == (None, "Jane Doe")
    asked = {r.query["created_after"] for r in sandbox.requests if r.path.endswith(FEED)}
    assert asked == {(NOW - timedelta(days=7)).date().isoformat()}

    busy = [f"{0xB0000 + n:032x}" for n in range(100)]  # 102 archive events: two pages
    sandbox.add_runs(SandboxRun(id=run_id, name="Busy") for run_id in busy)
    for run_id in busy:
        sandbox.move(run_id, True, JANE, at=stamp(NOW - timedelta(days=1)))
    pages = moved_by("[drift]\nfeed_pages = 2\n\n")
    assert {run_id: by["actor"] for run_id, by in pages.items()} == dict.fromkeys(
        DEMO_IDS[:2], "Jane Doe"
    )
    path.write_text("[drift]\nfeed_pages = 1\n\n" + declarations, encoding="utf-8")
    document = plan_json(path)
    assert {change["moved_by"] is None for change in document["changes"]} == {True}
    [notice] = document["warnings"]
    assert "fill 2 pages, more than the 1 read at most" in notice

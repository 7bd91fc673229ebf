"""The sandbox's organization endpoint, activity feed and auto-archive clock (docs: tallyfy-api.md
§8 "Organization settings: auto-archive" and "Activity feed"), called through `dispatch`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconcile.sandbox import Behaviour, Sandbox, SandboxRun, SeedError
from reconcile.sandbox.activity import TOKEN_USER, Actor
from reconcile.sandbox.organization import AutoArchive
from reconcile.sandbox.seed import load_seed
from tests.demo import DEMO_IDS, DEMO_SEED, ORG, TOKEN

HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Tallyfy-Client": "APIClient"}
JANE = Actor(67890, "Jane Doe", "jane@example.com")
NOW = 1_796_122_800.0  # 2026-12-01T11:00:00Z
WEEK = AutoArchive(True, "weeks", 1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def org_sandbox(
    runs: list[SandboxRun], clock: Clock, auto_archive: AutoArchive = WEEK, **switches: Any
) -> Sandbox:
    return Sandbox(ORG, TOKEN, runs, Behaviour(**switches), clock=clock, auto_archive=auto_archive)


def get(sandbox: Sandbox, path: str, query: str = "") -> tuple[int, Any]:
    target = f"/api/organizations/{ORG}{path}" + (f"?{query}" if query else "")
    answer = sandbox.dispatch("GET", target, HEADERS, b"")
    return answer.status, answer.json()


def feed(sandbox: Sandbox, query: str = "") -> list[dict[str, Any]]:
    status, body = get(sandbox, "/activity-feeds", query)
    assert status == 200, body
    items: list[dict[str, Any]] = body["data"]
    return items


def run(n: int, **fields: Any) -> SandboxRun:
    return SandboxRun(id=f"{n:032x}", name=f"Run {n}", **fields)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_organization_answers_with_its_auto_archive_setting(clock: Clock) -> None:
    sandbox = org_sandbox([], clock, AutoArchive(True, "days", 30))
    status, body = get(sandbox, "")
    assert status == 200
    assert body["data"]["id"] == ORG
    assert (body["data"]["auto_archive"], body["data"]["auto_archive_processes_after"]) == (
        True,
        {"unit": "days", "value": 30},
    )
    assert get(sandbox, "", "")[0] == 200
    other = sandbox.dispatch("GET", "/organizations/" + "0" * 32, HEADERS, b"")
    assert other.status == 403


@pytest.mark.parametrize(("unit", "value"), [("months", 3), ("days", 0), ("weeks", 91)])
def test_auto_archive_periods_are_those_the_settings_page_allows(unit: str, value: int) -> None:
    with pytest.raises(ValueError, match="auto-archive"):
        AutoArchive(True, unit, value)


def test_api_writes_are_recorded_with_the_tokens_user(clock: Clock) -> None:
    sandbox = org_sandbox([run(1), run(2)], clock)
    target = f"/organizations/{ORG}/runs/{run(1).id}"
    assert sandbox.dispatch("DELETE", target, HEADERS, b"").status == 200
    clock.now += 60
    assert sandbox.dispatch("PUT", target + "/activate", HEADERS, b"").status == 200
    # A no-op write moves nothing, so it records nothing.
    assert sandbox.dispatch("PUT", target + "/activate", HEADERS, b"").status == 200

    items = feed(sandbox)
    assert [item["verb"] for item in items] == [["unarchived"], ["archived"]]  # newest first
    first = items[1]
    assert first["actor_id"] == [TOKEN_USER.id]
    assert first["actor"][0]["email"] == TOKEN_USER.email
    assert first["actor"][0]["full_name"] == TOKEN_USER.full_name
    assert (first["source"], first["type"]) == (["Member"], ["Process"])
    assert (first["auditable_type"], first["auditable_id"]) == ("App\\Models\\Run", run(1).id)
    assert first["created_at"] == "2026-12-01T11:00:00.000Z"
    _, me = get_me(sandbox)
    assert me["data"]["id"] == TOKEN_USER.id


def get_me(sandbox: Sandbox) -> tuple[int, Any]:
    answer = sandbox.dispatch("GET", "/api/me", HEADERS, b"")
    return answer.status, answer.json()


def test_out_of_band_moves_name_their_person_and_change_the_run(clock: Clock) -> None:
    sandbox = org_sandbox([run(1)], clock)
    sandbox.move(run(1).id, True, JANE, at="2026-11-30T15:00:00Z")
    assert sandbox.run(run(1).id)["archived_at"] == "2026-11-30T15:00:00.000Z"
    [item] = feed(sandbox, f"entity_type=run&entity_id={run(1).id}")
    assert (item["actor_id"], item["actor"][0]["full_name"]) == ([JANE.id], "Jane Doe")
    assert sandbox.requests[-1].path.endswith("activity-feeds")  # the move itself is not logged
    with pytest.raises(ValueError, match="already archived"):
        sandbox.move(run(1).id, True, JANE)


def test_feed_filters(clock: Clock) -> None:
    sandbox = org_sandbox([run(1), run(2), run(3)], clock)
    sandbox.move(run(1).id, True, JANE, at="2026-11-28T10:00:00Z")
    sandbox.move(run(2).id, True, TOKEN_USER, at="2026-11-29T10:00:00Z", source="Webhook")
    sandbox.move(run(1).id, False, JANE, at="2026-11-30T10:00:00Z")
    sandbox.move(run(3).id, True, None, at="2026-12-01T10:00:00Z")

    def runs(query: str) -> list[str]:
        return [str(item["auditable_id"])[-1] + item["verb"][0][0] for item in feed(sandbox, query)]

    assert runs("") == ["3a", "1u", "2a", "1a"]
    assert runs("sort=created_at") == ["1a", "2a", "1u", "3a"]
    assert runs("verb=archived") == ["3a", "2a", "1a"]
    assert runs(f"entity_type=run&entity_id={run(1).id}") == ["1u", "1a"]
    assert runs("entity_type=task") == []
    assert runs("type=Process&actor_email=JANE@example.com") == ["1u", "1a"]
    assert runs(f"actor_id={TOKEN_USER.id}") == ["2a"]
    assert runs("actor_type=user") == ["1u", "2a", "1a"]
    assert runs("source=Webhook") == ["2a"]
    assert runs("created_after=2026-11-29&created_before=2026-11-30") == ["1u", "2a"]
    # No person behind it: empty actor, actor_id and source.
    auto = feed(sandbox, "verb=archived")[0]
    assert (auto["actor"], auto["actor_id"], auto["source"]) == ([], [], [])


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("created_after=2026-11-30T10:00:00Z", "created_after"),
        ("created_before=30/11/2026", "created_before"),
        ("verb=moved", "verb"),
        ("entity_type=process", "entity_type"),
        ("actor_id=jane", "actor_id"),
        ("per_page=0", "per_page"),
        ("search=onboarding", "search"),
    ],
)
def test_unusable_filters_are_422_naming_them(clock: Clock, query: str, key: str) -> None:
    status, body = get(org_sandbox([], clock), "/activity-feeds", query)
    assert status == 422
    assert list(body["errors"]) == [key]


def test_feed_pages_twenty_by_default(clock: Clock) -> None:
    sandbox = org_sandbox([run(n) for n in range(1, 46)], clock)
    for n in range(1, 46):
        clock.now += 1
        sandbox.move(run(n).id, True, JANE)
    status, body = get(sandbox, "/activity-feeds", "page=3")
    pagination = body["meta"]["pagination"]
    assert (status, len(body["data"]), pagination["total"], pagination["total_pages"]) == (
        200,
        5,
        45,
        3,
    )
    assert pagination["links"]["previous"].endswith("/activity-feeds?page=2")
    assert "next" not in pagination["links"]
    _, capped = get(sandbox, "/activity-feeds", "per_page=500")
    assert capped["meta"]["pagination"]["per_page"] == 100


@pytest.mark.parametrize(("mode", "status"), [("forbidden", 403), ("missing", 404), ("empty", 200)])
def test_feed_switches(clock: Clock, mode: str, status: int) -> None:
    sandbox = org_sandbox([run(1)], clock, activity_feed=mode)
    sandbox.move(run(1).id, True, JANE)
    answered, body = get(sandbox, "/activity-feeds")
    assert answered == status
    if status == 200:
        assert (body["data"], body["meta"]["pagination"]["total"]) == ([], 0)
    assert len(sandbox.activity) == 1  # recorded all the same


def test_switch_values_are_checked() -> None:
    with pytest.raises(ValueError, match="activity_feed"):
        Behaviour(activity_feed="off")


def test_auto_archive_clock_archives_completed_runs_by_nobody_when_due(clock: Clock) -> None:
    done = run(1, status="complete", completed_at="2026-11-20T08:00:00Z")
    recent = run(2, status="complete", completed_at="2026-11-30T08:00:00Z")
    sandbox = org_sandbox([done, recent, run(3)], clock, auto_archive_clock=True)

    get(sandbox, "")
    assert sandbox.run(done.id)["archived_at"] == "2026-11-27T08:00:00.000Z"
    assert sandbox.run(done.id)["completed_at"] == "2026-11-20T08:00:00.000Z"
    assert not sandbox.is_archived(recent.id)
    assert not sandbox.is_archived(run(3).id)
    [event] = sandbox.activity
    assert (event.run_id, event.verb, event.actor, event.source) == (
        done.id,
        "archived",
        None,
        None,
    )

    # Activated after its due time, it is archived again at once: the tug-of-war.
    clock.now += 3600
    target = f"/organizations/{ORG}/runs/{done.id}/activate"
    assert sandbox.dispatch("PUT", target, HEADERS, b"").status == 200
    clock.now += 1
    get(sandbox, "")
    assert sandbox.run(done.id)["archived_at"] == "2026-12-01T12:00:00.000Z"
    assert [e.verb for e in sandbox.activity] == ["archived", "unarchived", "archived"]

    clock.now += 7 * 86400
    get(sandbox, "")
    assert sandbox.is_archived(recent.id)


def test_auto_archive_clock_is_off_by_default_and_needs_the_setting(clock: Clock) -> None:
    done = run(1, status="complete", completed_at="2026-01-01T08:00:00Z")
    assert not _after_a_request(org_sandbox([done], clock)).is_archived(done.id)
    off = org_sandbox([done], clock, AutoArchive(False), auto_archive_clock=True)
    assert not _after_a_request(off).is_archived(done.id)


def _after_a_request(sandbox: Sandbox) -> Sandbox:
    get(sandbox, "")
    return sandbox


def test_seed_sets_auto_archive_and_carries_out_activity(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(
        DEMO_SEED.read_text(encoding="utf-8").replace(
            'token = "sandbox-token"',
            'token = "sandbox-token"\nauto_archive = true\n'
            'auto_archive_processes_after = { unit = "days", value = 14 }',
        )
        + f"""
[[activity]]
run = "{DEMO_IDS[0]}"
verb = "archived"
at = "2026-11-30T15:00:00Z"
actor = {{ id = 67890, name = "Jane Doe", email = "jane@example.com" }}

[[activity]]
run = "{DEMO_IDS[2]}"
verb = "activated"
at = 2026-11-29T09:00:00Z
""",
        encoding="utf-8",
    )
    sandbox = Sandbox.from_seed(seed)
    assert sandbox.auto_archive == AutoArchive(True, "days", 14)
    assert sandbox.run(DEMO_IDS[0])["archived_at"] == "2026-11-30T15:00:00.000Z"
    assert not sandbox.is_archived(DEMO_IDS[2])
    assert [(e.verb, e.actor, e.source) for e in sandbox.activity] == [
        ("activated", None, None),
        ("archived", JANE, "Member"),
    ]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('[[activity]]\nrun = "{id}"\nverb = "moved"\nat = "2026-11-30T15:00:00Z"', "verb must"),
        ('[[activity]]\nrun = "{id}"\nverb = "archived"\nat = "yesterday"', "at:"),
        (
            '[[activity]]\nrun = "{other}"\nverb = "archived"\nat = 2026-11-30T15:00:00Z',
            "not among",
        ),
        (
            '[[activity]]\nrun = "{id}"\nverb = "archived"\nat = 2026-11-30T15:00:00Z\n'
            'actor = {{ name = "Jane" }}',
            "actor must",
        ),
    ],
)
def test_unusable_activity_seeds_name_the_entry(tmp_path: Path, extra: str, problem: str) -> None:
    seed = tmp_path / "seed.toml"
    text = DEMO_SEED.read_text(encoding="utf-8")
    seed.write_text(text + "\n" + extra.format(id=DEMO_IDS[0], other="e" * 32), encoding="utf-8")
    with pytest.raises(SeedError, match=problem):
        load_seed(seed)


def test_unusable_auto_archive_seed_is_refused(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(
        DEMO_SEED.read_text(encoding="utf-8").replace(
            'token = "sandbox-token"',
            'token = "sandbox-token"\n'
            'auto_archive_processes_after = { unit = "months", value = 2 }',
        ),
        encoding="utf-8",
    )
    with pytest.raises(SeedError, match="auto_archive_processes_after"):
        load_seed(seed)

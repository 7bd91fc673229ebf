"""Who moved a run: the reads (org settings, the token's user, the activity feed) against the
in-process sandbox, including every way the feed can fail, and the pure rules that decide."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.attribution import UNATTRIBUTED, Attribution, Cause, MovedBy, attribute
from reconcile.config import Target, Token
from reconcile.domain import ObservedRun
from reconcile.render.text import moved_phrase
from reconcile.sandbox import Behaviour, Fault, Sandbox, SandboxRun
from reconcile.sandbox.activity import TOKEN_USER, Actor
from reconcile.sandbox.organization import AutoArchive
from reconcile.state import DriftSettings
from reconcile.tallyfy import RetryPolicy, TallyfyClient
from reconcile.tallyfy.activity import (
    AutoArchiveSetting,
    Move,
    Person,
    Sources,
    UnusableAnswer,
    latest_moves,
    read_moves,
    read_sources,
)
from tests.demo import ORG, TOKEN
from tests.helpers import client_for, make_plan

JANE = Actor(67890, "Jane Doe", "jane@example.com")
TODAY = date(2026, 12, 1)
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
LOOKBACK = timedelta(days=DriftSettings().lookback_days)
FEED_PAGES = DriftSettings().feed_pages
FEED = "activity-feeds"


def run(n: int, **fields: Any) -> SandboxRun:
    return SandboxRun(id=f"{n:032x}", name=f"Run {n}", **fields)


def org(runs: list[SandboxRun], **switches: Any) -> Sandbox:
    return Sandbox(
        ORG, TOKEN, runs, Behaviour(**switches), auto_archive=AutoArchive(True, "days", 7)
    )


def sources(sandbox: Sandbox, **options: Any) -> Sources:
    async def read() -> Sources:
        # No retries: a dropped connection is then final at once.
        async with client_for(sandbox, timeout=5.0, retry=RetryPolicy(max_attempts=1)) as client:
            bounds = {"lookback": LOOKBACK, "max_pages": FEED_PAGES}
            return await read_sources(client, today=TODAY, **{**bounds, **options})

    return asyncio.run(read())


def moves(sandbox: Sandbox, **options: Any) -> tuple[Move, ...]:
    async def read() -> tuple[Move, ...]:
        async with client_for(sandbox, timeout=5.0) as client:
            return await read_moves(client, SINCE, **{"max_pages": FEED_PAGES, **options})

    return asyncio.run(read())


def test_reads_the_setting_the_tokens_user_and_every_move() -> None:
    sandbox = org([run(1), run(2)])
    sandbox.move(run(1).id, True, JANE, at="2026-11-30T15:00:00Z")
    sandbox.move(run(2).id, True, None, at="2026-11-29T15:00:00Z")
    sandbox.move(run(2).id, False, TOKEN_USER, at="2026-11-30T16:00:00Z")
    sandbox.move(run(1).id, False, JANE, at="2026-01-02T10:00:00Z")  # before the lookback

    found = sources(sandbox)

    assert found.unavailable == ()
    assert found.auto_archive == AutoArchiveSetting(True, "days", 7)
    assert found.me == Person(TOKEN_USER.id, "Sandbox User", TOKEN_USER.email)
    assert found.moves is not None
    assert [(m.run_id[-1], m.archived, m.actor and m.actor.name) for m in found.moves] == [
        ("2", False, "Sandbox User"),
        ("1", True, "Jane Doe"),
        ("2", True, None),
    ]
    # One request each for the setting and the user, one per verb for the feed.
    feed_reads = [r for r in sandbox.requests if r.path.endswith(FEED)]
    assert len(sandbox.requests) == 5
    assert {r.query["verb"] for r in feed_reads} == {"archived", "unarchived", "activated"}
    assert {r.query["created_after"] for r in feed_reads} == {"2026-09-02"}
    assert all(r.query["entity_type"] == "run" for r in feed_reads)


def test_without_the_feed_only_the_setting_is_read() -> None:
    sandbox = org([run(1)])
    found = sources(sandbox, feed=False)
    assert (found.auto_archive is not None, found.me, found.moves) == (True, None, None)
    assert [r.path for r in sandbox.requests] == [f"/organizations/{ORG}"]


@pytest.mark.parametrize(
    ("switches", "fault", "reason"),
    [
        ({"activity_feed": "forbidden"}, None, "answered HTTP 403"),
        ({"activity_feed": "missing"}, None, "answered HTTP 404"),
        ({}, Fault("html", path_contains=FEED, status=200), "not the documented JSON"),
        ({}, Fault("truncated", path_contains=FEED), "not the documented JSON"),
        ({}, Fault("drop", path_contains=FEED, times=10), "got no answer"),
        ({}, Fault("slow", path_contains=FEED, delay=1.0), "did not answer within 0.3 s"),
    ],
)
def test_a_feed_that_cannot_be_read_is_a_reason_never_an_error(
    switches: dict[str, Any], fault: Fault | None, reason: str
) -> None:
    sandbox = org([run(1)], **switches)
    sandbox.move(run(1).id, True, JANE)
    if fault is not None:
        sandbox.inject(fault)

    found = sources(sandbox, budget=0.3)

    assert found.moves is None
    assert not found.attribution
    assert found.auto_archive is not None
    assert found.me is not None
    [said] = found.unavailable
    assert said.startswith("the activity feed ")
    assert reason in said


def test_more_pages_than_the_bound_is_incomplete() -> None:
    sandbox = org([run(n) for n in range(1, 102)])
    for n in range(1, 102):
        sandbox.move(run(n).id, True, JANE, at="2026-11-20T10:00:00Z")
    with pytest.raises(UnusableAnswer, match="101 archived events since 2026-11-01 fill 2 pages"):
        moves(sandbox, max_pages=1)
    # The bound held: the first page told the count, and nothing more was read.
    assert len([r for r in sandbox.requests if r.query.get("verb") == "archived"]) == 1
    assert len(moves(sandbox, max_pages=2)) == 101


def test_a_count_the_pages_do_not_hold_is_incomplete() -> None:
    sandbox = org([run(1)])
    sandbox.move(run(1).id, True, JANE)

    def one_short(request: httpx.Request, answer: httpx.Response) -> httpx.Response:
        body = answer.json()
        body["meta"]["pagination"]["total"] += 1
        return httpx.Response(200, json=body)

    with pytest.raises(UnusableAnswer, match="counted 2 archived events but its pages held 1"):
        asyncio.run(moves_through(sandbox, one_short))


def test_both_activation_spellings_are_activations() -> None:
    sandbox = org([run(n, archived_at="2026-11-01T00:00:00Z") for n in (1, 2)])
    sandbox.move(run(1).id, False, JANE, at="2026-11-30T15:00:00Z")
    sandbox.move(run(2).id, False, JANE, at="2026-11-30T16:00:00Z", activation_verb="activated")
    assert [(m.run_id, m.archived) for m in moves(sandbox)] == [
        (run(2).id, False),
        (run(1).id, False),
    ]


def test_a_server_that_refuses_one_spelling_has_no_events_spelled_so() -> None:
    sandbox = org([run(1)])
    sandbox.move(run(1).id, True, JANE, at="2026-11-30T15:00:00Z")

    def refuse_activated(request: httpx.Request, answer: httpx.Response) -> httpx.Response:
        if request.url.params.get("verb") == "activated":
            return httpx.Response(422, json={"message": "The selected verb is invalid."})
        return answer

    found = asyncio.run(moves_through(sandbox, refuse_activated))
    assert [(m.run_id, m.archived) for m in found] == [(run(1).id, True)]


async def moves_through(
    sandbox: Sandbox, change: Callable[[httpx.Request, httpx.Response], httpx.Response]
) -> tuple[Move, ...]:
    """read_moves against a server of the test's own: the sandbox's answers, changed."""

    def handle(request: httpx.Request) -> httpx.Response:
        answer = sandbox.dispatch(request.method, str(request.url), request.headers, b"")
        return change(request, httpx.Response(answer.status, content=answer.body))

    target, token = Target("https://sandbox.test/api", ORG), Token(TOKEN)
    transport = httpx.MockTransport(handle)
    async with TallyfyClient(target, token, transport=transport, timeout=5.0) as client:
        return await read_moves(client, SINCE, max_pages=FEED_PAGES)


# --- the rules ---------------------------------------------------------------------------------

ME = Person(TOKEN_USER.id, "Sandbox User", TOKEN_USER.email)
WEEKLY = AutoArchiveSetting(True, "weeks", 1)
RUN_ID = "a" * 32
COMPLETED = "2026-11-20T08:00:00.000Z"
DUE = datetime(2026, 11, 27, 8, tzinfo=UTC)
JANE_PERSON = Person(JANE.id, JANE.full_name, JANE.email)


def observed(archived_at: datetime | None, completed: str | None = COMPLETED) -> ObservedRun:
    stamp = archived_at.isoformat() if archived_at else None
    return ObservedRun(RUN_ID, "Run", "complete", stamp, None, completed_at=completed)


def move(at: datetime, actor: Person | None = JANE_PERSON, archived: bool = True) -> Move:
    return Move(RUN_ID, archived, at, actor, "Member" if actor else None)


def test_a_person_named_by_the_feed_wins_over_timing() -> None:
    found = attribute(observed(DUE), latest_moves([move(DUE)]), ME, WEEKLY)
    assert found.cause is Cause.PERSON
    assert found.moved_by is not None
    assert found.moved_by.to_json() == {
        "actor": "Jane Doe",
        "email": "jane@example.com",
        "at": "2026-11-27T08:00:00Z",
        "source": "Member",
        "self": False,
    }


def test_the_tokens_own_move_is_self() -> None:
    found = attribute(observed(DUE), {RUN_ID: move(DUE, Person(ME.id, None, None))}, ME, None)
    assert (found.cause, found.moved_by and found.moved_by.by_self) == (Cause.PERSON, True)
    by_email = attribute(observed(DUE), {RUN_ID: move(DUE, Person(None, "X", ME.email))}, ME, None)
    assert by_email.moved_by is not None
    assert by_email.moved_by.by_self


def test_an_archive_with_nobody_behind_it_is_auto_archive_whatever_the_timing() -> None:
    late = DUE + timedelta(days=30)
    found = attribute(observed(late), {RUN_ID: move(late, None)}, ME, None)
    assert found.cause is Cause.AUTO_ARCHIVE
    assert found.moved_by is not None
    assert found.moved_by.actor is None
    # An activation with nobody behind it is not auto-archive's doing.
    back = attribute(observed(None), {RUN_ID: move(late, None, archived=False)}, ME, WEEKLY)
    assert back.cause is Cause.UNKNOWN


@pytest.mark.parametrize(
    ("archived_at", "setting", "completed", "cause"),
    [
        (DUE, WEEKLY, COMPLETED, Cause.AUTO_ARCHIVE),
        (DUE + timedelta(days=2), WEEKLY, COMPLETED, Cause.AUTO_ARCHIVE),
        (DUE - timedelta(days=2), WEEKLY, COMPLETED, Cause.AUTO_ARCHIVE),
        (DUE + timedelta(days=2, seconds=1), WEEKLY, COMPLETED, Cause.UNKNOWN),
        (DUE, AutoArchiveSetting(False, "weeks", 1), COMPLETED, Cause.UNKNOWN),
        (DUE, AutoArchiveSetting(True, "days", 1), COMPLETED, Cause.UNKNOWN),
        (DUE, WEEKLY, None, Cause.UNKNOWN),
        (DUE, None, COMPLETED, Cause.UNKNOWN),
        (None, WEEKLY, COMPLETED, Cause.UNKNOWN),
    ],
)
def test_without_an_event_timing_decides(
    archived_at: datetime | None,
    setting: AutoArchiveSetting | None,
    completed: str | None,
    cause: Cause,
) -> None:
    nothing: list[dict[str, Move] | None] = [{}, None]
    for latest in nothing:  # the feed says nothing, or could not be read
        found = attribute(observed(archived_at, completed), latest, ME, setting)
        assert (found.moved_by, found.cause) == (None, cause)


def test_a_latest_move_that_does_not_lead_to_the_current_state_is_not_taken() -> None:
    activated = move(DUE + timedelta(days=9), archived=False)
    assert attribute(observed(DUE + timedelta(days=10)), {RUN_ID: activated}, ME, None) == (
        UNATTRIBUTED
    )


def test_without_the_tokens_user_nobody_is_named() -> None:
    assert attribute(observed(DUE), {RUN_ID: move(DUE)}, None, None) == UNATTRIBUTED


def test_the_latest_move_decides() -> None:
    older, newer = move(DUE - timedelta(days=1), ME), move(DUE)
    assert latest_moves([older, newer]) == latest_moves([newer, older]) == {RUN_ID: newer}


PEOPLE = st.sampled_from([None, ME, JANE_PERSON, Person(None, None, "jane@example.com")])
MOMENTS = st.integers(0, 40).map(lambda days: DUE - timedelta(days=20) + timedelta(days=days))


@given(
    st.lists(st.tuples(MOMENTS, PEOPLE, st.booleans()), max_size=6),
    st.one_of(st.none(), MOMENTS),
)
def test_attribution_never_contradicts_the_run(
    events: list[tuple[datetime, Person | None, bool]], archived_at: datetime | None
) -> None:
    moves_seen = [move(at, person, archived) for at, person, archived in events]
    found = attribute(observed(archived_at), latest_moves(moves_seen), ME, WEEKLY)
    moved_by = found.moved_by
    if moved_by is None:
        assert found.cause is not Cause.PERSON
        return
    # The move named is the run's latest, and it is the one that put the run where it is.
    assert moved_by.archived == (archived_at is not None)
    assert moved_by.at == max(at for at, _, _ in events)
    assert (found.cause is Cause.PERSON) == (
        moved_by.actor is not None or moved_by.email is not None
    )
    assert not moved_by.by_self or moved_by.email == ME.email


def test_the_day_shown_is_the_day_of_the_utc_time_json_gives() -> None:
    """An event stamped in another time zone is shown on its UTC day, as JSON's `at` says."""
    (change,) = make_plan([True], [False]).changes
    late = datetime(2026, 12, 1, 2, 0, tzinfo=timezone(timedelta(hours=5)))  # 21:00Z the day before
    moved = MovedBy(True, late, "Jane Doe", None, "web app", False)
    told = replace(change, attribution=Attribution(moved, Cause.PERSON))
    assert moved.to_json()["at"] == "2026-11-30T21:00:00Z"
    assert moved_phrase(told) == "archived by Jane Doe (web app) on 2026-11-30"

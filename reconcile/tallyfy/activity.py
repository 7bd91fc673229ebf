"""Read who moved runs: the organization's auto-archive setting, the token's own user, and the
archives and activations in the activity feed.

These reads are an aid, never a gate: `read_sources` catches every failure (refused, missing,
slow, malformed, more pages than the bound) and reports it as a reason, so a plan can go on
exactly as without them. `read_moves` raises `UnusableAnswer` (or ApiError) instead, for
callers that must know the feed answered completely, or fall back to a full read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeGuard

from reconcile.domain import ID_PATTERN
from reconcile.errors import ApiError, BadResponseError
from reconcile.tallyfy.client import TallyfyClient

FEED_VERBS = ("archived", "unarchived", "activated")
"""The verbs asked for, one listing each: the docs' names for archive and activation, and
`activated`, another source's spelling of `unarchived`."""
ACTIVATION_VERBS = frozenset(FEED_VERBS[1:])
FEED_PAGE_SIZE = 100
TIME_BUDGET = 20.0
"""Seconds the aid may take altogether; a slower feed is given up on."""


class UnusableAnswer(Exception):
    """An answer that cannot be used whole (malformed, or more pages than the bound); the
    message says why, in one sentence."""


@dataclass(frozen=True)
class AutoArchiveSetting:
    """The organization's "auto-archive completed processes" setting."""

    enabled: bool
    unit: str
    """"days" or "weeks"."""
    value: int

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.value * (7 if self.unit == "weeks" else 1))

    def __str__(self) -> str:
        unit = self.unit if self.value != 1 else self.unit.removesuffix("s")
        return f"{self.value} {unit}" if self.enabled else "off"


@dataclass(frozen=True)
class Person:
    """Someone the API names: the token's user, or the actor of a feed event."""

    id: int | None
    name: str | None
    email: str | None

    def same_as(self, other: Person) -> bool:
        """The same user, by id when both have one, otherwise by email."""
        if self.id is not None and other.id is not None:
            return self.id == other.id
        return bool(self.email and other.email and self.email.casefold() == other.email.casefold())


@dataclass(frozen=True, slots=True)
class Move:
    """One archive or activation of a run, as the activity feed recorded it."""

    run_id: str
    archived: bool
    """True for an archive, False for an activation."""
    at: datetime
    actor: Person | None
    """None when no person is behind the event (an automatic one)."""
    source: str | None
    """The feed's `source` ("Member", "Guest", "Webhook"), when it gives one."""


@dataclass(frozen=True)
class Sources:
    """What the attribution reads found. A part left None could not be read; `unavailable` says
    why, one sentence per part."""

    auto_archive: AutoArchiveSetting | None
    me: Person | None
    moves: tuple[Move, ...] | None
    unavailable: tuple[str, ...] = ()

    @property
    def attribution(self) -> bool:
        """Whether the feed and the token's user could both be read (needed to name anyone)."""
        return self.moves is not None and self.me is not None


async def read_sources(
    client: TallyfyClient,
    *,
    today: date,
    lookback: timedelta,
    max_pages: int,
    feed: bool = True,
    setting: bool = True,
    moves: tuple[Move, ...] | None = None,
    budget: float = TIME_BUDGET,
) -> Sources:
    """The auto-archive setting (when `setting`), the token's user and the feed's moves since
    `today` - `lookback`, at most `max_pages` pages per verb (when `feed`; `moves` already read
    stand in for the feed), read concurrently within `budget` seconds. Never raises for what the
    API answers: each failure becomes a reason in `unavailable`."""
    since = datetime.combine(today - lookback, datetime.min.time(), UTC)
    reasons: list[str] = []

    async def attempt(what: str, read: Any) -> Any:
        try:
            return await asyncio.wait_for(read, budget)
        except TimeoutError:
            reasons.append(f"{what} did not answer within {budget:g} s")
        except (ApiError, UnusableAnswer) as exc:
            reasons.append(f"{what} could not be read: {unread_because(exc)}")
        return None

    settings, me, read = await asyncio.gather(
        attempt("the organization's settings", read_auto_archive(client)) if setting else _is(None),
        attempt("the token's user", read_me(client)) if feed else _is(None),
        attempt("the activity feed", read_moves(client, since, max_pages=max_pages))
        if feed and moves is None
        else _is(moves if feed else None),
    )
    return Sources(settings, me, read, tuple(reasons))


async def _is(value: Any) -> Any:
    return value


def unread_because(exc: ApiError | UnusableAnswer) -> str:
    """Why a read of these sources failed, in one clause: the request and what it got. (An
    ApiError's own message is about runs and writes, so it is not repeated here.)"""
    if isinstance(exc, UnusableAnswer):
        return str(exc)
    said = f' ("{exc.api_message}")' if exc.api_message else ""
    if isinstance(exc, BadResponseError):
        answer = "answered with something that is not the documented JSON"
    elif exc.status is not None:
        answer = f"answered HTTP {exc.status}{said}"
    else:
        answer = "got no answer"
    return f"{exc.method} {exc.path} {answer}"


def parse_since(text: str) -> datetime:
    """`--changed-since`: a day (YYYY-MM-DD, its midnight UTC) or an ISO date-time (UTC when it
    gives no zone). ValueError when it is neither."""
    problem = f"{text!r} is not a date (YYYY-MM-DD) or an ISO date-time"
    if len(text) == 10:
        try:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        except ValueError as exc:
            raise ValueError(f"{problem} ({exc})") from None
    found = moment(text) if "T" in text or " " in text else None
    if found is None:
        raise ValueError(problem)
    return found


async def read_auto_archive(client: TallyfyClient) -> AutoArchiveSetting:
    """GET /organizations/{org}: `auto_archive` and `auto_archive_processes_after`."""
    path = f"organizations/{client.target.org_id}"
    data = _data(await client.get(path), path)
    enabled = data.get("auto_archive")
    period = data.get("auto_archive_processes_after")
    if not isinstance(enabled, bool):
        raise UnusableAnswer(f"GET /{path} gave no auto_archive true or false")
    if not enabled and not isinstance(period, dict):
        return AutoArchiveSetting(False, "days", 0)
    unit = period.get("unit") if isinstance(period, dict) else None
    value = period.get("value") if isinstance(period, dict) else None
    if not isinstance(unit, str) or unit not in ("days", "weeks") or not _whole(value) or not value:
        raise UnusableAnswer(
            f"GET /{path} gave an auto_archive_processes_after that is not "
            '{"unit": "days" | "weeks", "value": <positive whole number>}'
        )
    return AutoArchiveSetting(enabled, unit, value)


async def read_me(client: TallyfyClient) -> Person:
    """GET /me: the user the token acts as."""
    data = _data(await client.get("me"), "me")
    person = _person(data.get("id"), data)
    if person.id is None and person.email is None:
        raise UnusableAnswer("GET /me names no user id or email")
    return person


async def read_moves(client: TallyfyClient, since: datetime, *, max_pages: int) -> tuple[Move, ...]:
    """Every archive and activation of a run recorded since `since`, newest first, reading at
    most `max_pages` pages per verb. Raises UnusableAnswer when the feed cannot say it all."""
    listings = await asyncio.gather(*(_verb(client, verb, since, max_pages) for verb in FEED_VERBS))
    # A server that ignores the verb filter lists each event twice.
    moves = dict.fromkeys(move for listing in listings for move in listing)
    return tuple(sorted(moves, key=lambda move: move.at, reverse=True))


async def _verb(client: TallyfyClient, verb: str, since: datetime, max_pages: int) -> list[Move]:
    path = f"organizations/{client.target.org_id}/activity-feeds"
    params = {
        "entity_type": "run",
        "type": "Process",
        "verb": verb,
        "created_after": since.date().isoformat(),
        "sort": "-created_at",
        "per_page": str(FEED_PAGE_SIZE),
    }

    async def page(number: int) -> tuple[list[Any], int | None, int | None]:
        body = await client.get(path, {**params, "page": str(number)})
        return _page(body, f"/{path}?verb={verb}&page={number}")

    try:
        items, total, pages = await page(1)
    except ApiError as exc:
        # A server that refuses one spelling of activation (422) has no events spelled so.
        if exc.status == 422 and verb in ACTIVATION_VERBS:
            return []
        raise
    if pages is None or total is None:
        raise UnusableAnswer(f"GET /{path} gave no page count and total")
    if pages > max_pages:
        raise UnusableAnswer(
            f"{total} {verb} events since {since.date()} fill {pages} pages, more than the "
            f"{max_pages} read at most"
        )
    for more, _, _ in await asyncio.gather(*(page(n) for n in range(2, pages + 1))):
        items += more
    if len(items) != total:
        raise UnusableAnswer(
            f"the feed counted {total} {verb} events but its pages held {len(items)}"
        )
    moves = (_move(item, path) for item in items)
    return [move for move in moves if move is not None and move.at >= since]


def _page(body: Any, where: str) -> tuple[list[Any], int | None, int | None]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise UnusableAnswer(f'GET {where} is not {{"data": [...], "meta": {{...}}}}')
    meta = body.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    if not isinstance(pagination, dict):
        raise UnusableAnswer(f"GET {where} has no meta.pagination")
    total, pages = pagination.get("total"), pagination.get("total_pages")
    return (
        body["data"],
        total if _whole(total) else None,
        pages if _whole(pages) else None,
    )


def _move(item: Any, where: str) -> Move | None:
    """The move an event records; None for an event that is not an archive or activation of a
    run (a server may ignore a filter). UnusableAnswer for one that cannot be read."""
    if not isinstance(item, dict):
        raise UnusableAnswer(f"GET /{where} holds an event that is not a JSON object")
    verb = _first(item.get("verb"))
    if verb != "archived" and verb not in ACTIVATION_VERBS:
        return None
    run_id = item.get("auditable_id")
    if not str(item.get("auditable_type", "")).endswith("Run"):
        if not str(item.get("parentable_type", "")).endswith("Run"):
            return None
        run_id = item.get("parentable_id")
    if not isinstance(run_id, str) or not ID_PATTERN.fullmatch(run_id):
        raise UnusableAnswer(f"GET /{where} holds a {verb} event without a run id")
    at = moment(item.get("created_at"))
    if at is None:
        raise UnusableAnswer(f"GET /{where} holds a {verb} event without a created_at time")
    actor = _first(item.get("actor"))
    person = _person(_first(item.get("actor_id")), actor if isinstance(actor, dict) else {})
    source = _first(item.get("source"))
    return Move(
        run_id=run_id,
        archived=verb == "archived",
        at=at,
        actor=person if person.id is not None or person.name or person.email else None,
        source=source if isinstance(source, str) and source else None,
    )


def latest_moves(moves: Iterable[Move]) -> dict[str, Move]:
    """The latest move of each run (of two at the same moment, the one listed first)."""
    latest: dict[str, Move] = {}
    for move in moves:
        seen = latest.get(move.run_id)
        if seen is None or move.at > seen.at:
            latest[move.run_id] = move
    return latest


def _data(body: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise UnusableAnswer(f'GET /{path} is not {{"data": {{...}}}}')
    data: Mapping[str, Any] = body["data"]
    return data


def _person(person_id: Any, details: Mapping[str, Any]) -> Person:
    name = details.get("full_name")
    if not isinstance(name, str) or not name.strip():
        parts = [details.get(key) for key in ("first_name", "last_name")]
        name = " ".join(part for part in parts if isinstance(part, str) and part) or None
    email = details.get("email")
    return Person(
        id=person_id if _whole(person_id) else None,
        name=name.strip() if name else None,
        email=email if isinstance(email, str) and email else None,
    )


def _first(value: Any) -> Any:
    """The feed wraps most fields in arrays (`verb: ["archived"]`); take the first element,
    or the value itself when a server sends it bare."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def moment(value: Any) -> datetime | None:
    """A Tallyfy timestamp as an aware datetime (a bare one is UTC); None if absent or
    unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

"""GET /organizations/{org}/activity-feeds: the org's audit trail of archives and activations.

Shaped as Tallyfy documents it (get-process-activity): most fields are arrays (`verb: ["archived"]`,
`source: ["Member"]`, `actor_id: [67890]`, `actor: [{email, full_name, ...}]`), the run is the
`auditable`/`parentable`, and pages are Fractal's `meta.pagination` with 20 items by default.

Every archive and activation is recorded: the API's with the token's user, out-of-band moves with
the person given (`Sandbox.move`, or `[[activity]]` in a seed), and the auto-archive clock's with
nobody (empty `actor`, `actor_id` and `source`: the docs do not say how Tallyfy shows them).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from reconcile.sandbox.listing import _link
from reconcile.sandbox.model import RUN_ID, normalize_timestamp, zulu
from reconcile.sandbox.responses import (
    SandboxResponse,
    endpoint_not_found,
    forbidden,
    invalid,
    json_response,
)

FEED_MODES = ("on", "forbidden", "missing", "empty")
"""The activity-feed switch: served, 403 (the token's user may not read it), 404, or no entries."""
VERBS = ("archived", "unarchived", "activated")
"""`unarchived` is the docs' verb for an activation; `activated` is another source's spelling."""
ENTITY_TYPES = ("checklist", "run", "step", "task", "thread")
TYPES = ("Comment", "Task", "Step", "Process", "Blueprint", "User", "Organization", "Tag", "Group")
SOURCES = ("Member", "Guest", "Webhook")
PER_PAGE_DEFAULT = 20
PER_PAGE_CAP = 100
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNSUPPORTED = ("search", "field", "origin_type", "origin_id")
_USER_MODEL = "App\\Models\\User"
_RUN_MODEL = "App\\Models\\Run"


@dataclass(frozen=True)
class Actor:
    """A person of the organization, as the feed names them."""

    id: int
    full_name: str
    email: str

    def to_json(self) -> dict[str, Any]:
        first, _, last = self.full_name.partition(" ")
        return {
            "email": self.email,
            "username": self.email.partition("@")[0],
            "first_name": first,
            "last_name": last,
            "full_name": self.full_name,
            "profile_pic": None,
            "resize_profile_pic": None,
        }


TOKEN_USER = Actor(1, "Sandbox User", "sandbox@example.com")
"""The user the sandbox's token belongs to: GET /me answers with it, and API writes are its."""


@dataclass(frozen=True)
class Event:
    """One archive or activation of a run. `actor` None: no person was behind it."""

    id: int
    run_id: str
    verb: str
    actor: Actor | None
    source: str | None
    created_at: str

    @property
    def sort_key(self) -> tuple[str, int]:
        return (self.created_at, self.id)

    def to_json(self, org_id: str) -> dict[str, Any]:
        person = self.actor
        return {
            "id": self.id,
            "organization_id": org_id,
            "verb": [self.verb],
            "source": [self.source] if self.source else [],
            "actor_type": [_USER_MODEL] if person else [],
            "actor_id": [person.id] if person else [],
            "auditable_type": _RUN_MODEL,
            "auditable_id": self.run_id,
            "parentable_type": _RUN_MODEL,
            "parentable_id": self.run_id,
            "type": ["Process"],
            "description": ["Archived process" if self.verb == "archived" else "Restored process"],
            "field": None,
            "old_value": None,
            "created_at": self.created_at,
            "text": None,
            "references": None,
            "actor": [person.to_json()] if person else [],
            "undoable": False,
        }


@dataclass(frozen=True)
class SeedMove:
    """An `[[activity]]` entry of a seed: a run archived or activated by someone at a time."""

    run_id: str
    verb: str
    at: str
    actor: Actor | None
    source: str | None


class ActivityLog:
    """Every recorded event, oldest first. Not thread-safe itself (the Sandbox's lock guards it)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._events)

    def record(
        self, run_id: str, verb: str, actor: Actor | None, source: str | None, at: str
    ) -> Event:
        """Add an event; events keep their time order whatever order they are recorded in."""
        if verb not in VERBS:
            raise ValueError(f"verb must be one of {VERBS}, not {verb!r}")
        event = Event(self._next_id, run_id, verb, actor, source, at)
        self._next_id += 1
        bisect.insort(self._events, event, key=lambda e: e.sort_key)
        return event

    def events(self) -> list[Event]:
        """Every event, oldest first (a copy)."""
        return list(self._events)

    def last_activation(self, run_id: str) -> str | None:
        """When the run was last activated, if ever."""
        for event in reversed(self._events):
            if event.run_id == run_id and event.verb != "archived":
                return event.created_at
        return None

    def answer(
        self, mode: str, org_id: str, query: Mapping[str, str], page_url: str
    ) -> SandboxResponse:
        """The answer to GET /activity-feeds under the feed switch `mode`."""
        if mode == "forbidden":
            return forbidden("You don't have permission to view the activity feed.")
        if mode == "missing":
            return endpoint_not_found()
        parsed = _parse(query)
        if isinstance(parsed, SandboxResponse):
            return parsed
        chosen = [] if mode == "empty" else [e for e in self._events if parsed.matches(e)]
        if parsed.newest_first:
            chosen.reverse()
        per_page, page = parsed.per_page, parsed.page
        items = [e.to_json(org_id) for e in chosen[(page - 1) * per_page : page * per_page]]
        total_pages = max(math.ceil(len(chosen) / per_page), 1)
        links: dict[str, str] = {}
        if page > 1:
            links["previous"] = _link(page_url, query, page - 1)
        if page < total_pages:
            links["next"] = _link(page_url, query, page + 1)
        pagination: dict[str, object] = {
            "total": len(chosen),
            "count": len(items),
            "per_page": per_page,
            "current_page": page,
            "total_pages": total_pages,
            "links": links or [],
        }
        return json_response(200, {"data": items, "meta": {"pagination": pagination}})


@dataclass(frozen=True)
class _Query:
    entity_type: str | None
    entity_id: str | None
    type: str | None
    verb: str | None
    actor_type: str | None
    actor_id: int | None
    actor_email: str | None
    source: str | None
    after: date | None
    before: date | None
    newest_first: bool
    page: int
    per_page: int

    def matches(self, event: Event) -> bool:
        # Only runs' events are recorded, so another entity type or category matches nothing.
        if self.entity_type not in (None, "run") or self.type not in (None, "Process"):
            return False
        if self.entity_id is not None and self.entity_id != event.run_id:
            return False
        if self.verb is not None and self.verb != event.verb:
            return False
        person = event.actor
        if self.actor_type is not None and (self.actor_type != "user" or person is None):
            return False
        if self.actor_id is not None and (person is None or person.id != self.actor_id):
            return False
        if self.actor_email is not None and (
            person is None or person.email.casefold() != self.actor_email
        ):
            return False
        if self.source is not None and self.source != event.source:
            return False
        day = datetime.fromisoformat(event.created_at).date()
        return (self.after is None or day >= self.after) and (
            self.before is None or day <= self.before
        )


def _parse(query: Mapping[str, str]) -> _Query | SandboxResponse:
    """Read the documented filters; 422 naming every unusable one."""
    errors: dict[str, list[str]] = {}

    def choice(key: str, allowed: Sequence[str]) -> str | None:
        value = query.get(key) or None
        if value is not None and value not in allowed:
            errors[key] = [f"The selected {key.replace('_', ' ')} is invalid."]
        return value

    for key in _UNSUPPORTED:
        if query.get(key):
            errors[key] = [f"The sandbox does not implement the {key} filter."]
    days: dict[str, date | None] = {}
    for key in ("created_after", "created_before"):
        value = query.get(key) or None
        days[key] = None
        if value is not None:
            try:
                if not _DAY.fullmatch(value):
                    raise ValueError(value)
                days[key] = date.fromisoformat(value)
            except ValueError:
                errors[key] = [f"The {key.replace('_', ' ')} does not match the format Y-m-d."]
    actor_id: int | None = None
    if query.get("actor_id"):
        try:
            actor_id = int(query["actor_id"])
        except ValueError:
            errors["actor_id"] = ["The actor id must be an integer."]
    per_page = PER_PAGE_DEFAULT
    if query.get("per_page"):
        try:
            per_page = min(int(query["per_page"]), PER_PAGE_CAP)
        except ValueError:
            per_page = 0
        if per_page < 1:
            errors["per_page"] = ["The per page must be an integer of at least 1."]
    try:
        # Laravel's paginator falls back to page 1 for anything that is not a positive integer.
        page = max(int(query.get("page", "1")), 1)
    except ValueError:
        page = 1
    parsed = _Query(
        entity_type=choice("entity_type", ENTITY_TYPES),
        entity_id=query.get("entity_id") or None,
        type=choice("type", TYPES),
        verb=choice("verb", VERBS),
        actor_type=choice("actor_type", ("user", "guest")),
        actor_id=actor_id,
        actor_email=(query.get("actor_email") or "").casefold() or None,
        source=choice("source", SOURCES),
        after=days["created_after"],
        before=days["created_before"],
        newest_first=choice("sort", ("created_at", "-created_at")) != "created_at",
        page=page,
        per_page=per_page,
    )
    return invalid(errors) if errors else parsed


def parse_seed_activity(raw: Any, problems: list[str]) -> list[SeedMove]:
    """The `[[activity]]` entries of a seed; appends to `problems` for every unusable one.

    Each has `run`, `verb` ("archived", "unarchived" or "activated"), `at` (a timestamp), and
    optionally `actor = {id, name, email}` and `source` ("Member" by default when an actor is
    given; no actor means no person was behind the move).
    """
    if not isinstance(raw, list) or not all(isinstance(entry, dict) for entry in raw):
        problems.append("activity must be an array of tables ([[activity]])")
        return []
    moves: list[SeedMove] = []
    for index, entry in enumerate(raw, start=1):
        where = f"[[activity]] #{index}"
        before = len(problems)
        for key in sorted(set(entry) - {"run", "verb", "at", "actor", "source"}):
            problems.append(f"{where}: unknown key {key!r}")
        run_id, verb, at = entry.get("run"), entry.get("verb"), entry.get("at")
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            problems.append(f"{where}: run must be a run id (32 lowercase hex characters)")
        if verb not in VERBS:
            problems.append(f"{where}: verb must be one of {', '.join(VERBS)}")
        if isinstance(at, datetime) and at.tzinfo is not None:
            at = zulu(at)
        try:
            at = normalize_timestamp(at) if isinstance(at, str) else None
        except ValueError as exc:
            problems.append(f"{where}: at: {exc}")
        if at is None:
            problems.append(f"{where}: at must be a timestamp like 2026-01-05T09:00:00.000Z")
        actor = _seed_actor(entry.get("actor"), where, problems)
        source = entry.get("source", "Member" if actor else None)
        if source is not None and source not in SOURCES:
            problems.append(f"{where}: source must be one of {', '.join(SOURCES)}")
        if len(problems) == before:
            moves.append(SeedMove(str(run_id), str(verb), str(at), actor, source))
    return moves


def _seed_actor(raw: Any, where: str, problems: list[str]) -> Actor | None:
    if raw is None:
        return None
    if isinstance(raw, dict) and set(raw) == {"id", "name", "email"}:
        person_id, name, email = raw["id"], raw["name"], raw["email"]
        if (
            isinstance(person_id, int)
            and not isinstance(person_id, bool)
            and isinstance(name, str)
            and name
            and isinstance(email, str)
            and "@" in email
        ):
            return Actor(person_id, name, email)
    problems.append(f"{where}: actor must be {{id = <integer>, name = <text>, email = <address>}}")
    return None

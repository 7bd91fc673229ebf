"""The sandbox's value types: behaviour switches, seeded runs, logged requests, timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

RUN_ID = re.compile(r"[0-9a-f]{32}")
_ZULU = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")

DEFAULT_CHECKLIST_ID = "c0ffee00" * 4
DEFAULT_TIMESTAMP = "2026-01-05T09:00:00.000Z"


def zulu(moment: datetime) -> str:
    """Format a moment the way Tallyfy responses do: ISO-8601 UTC with milliseconds and a Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def zulu_from_epoch(seconds: float) -> str:
    """Format seconds since the epoch as a Tallyfy timestamp."""
    return zulu(datetime.fromtimestamp(seconds, UTC))


def normalize_timestamp(value: str) -> str:
    """Return `value` in the canonical millisecond form, or raise ValueError if it is not Zulu."""
    if not _ZULU.fullmatch(value):
        raise ValueError(f"{value!r} is not an ISO-8601 UTC timestamp like {DEFAULT_TIMESTAMP!r}")
    return zulu(datetime.fromisoformat(value.replace("Z", "+00:00")))


@dataclass(frozen=True)
class Behaviour:
    """Switches for what the Tallyfy docs leave open; every default is the documented reading."""

    archived_get: int = 200
    """Answer to GET of an archived run: 200 (with archived_at set) or 404 RESOURCE_NOT_FOUND."""
    noop_write: str = "200"
    """Archive of an archived run or activate of a live one: "200" (the run), "404" or "422"."""
    archive_sets_status: bool = True
    """While archived, runs show status "archived"; False leaves status alone."""
    put_clears_assignees: bool = True
    """PUT /runs/{id} without `users`/`groups` resets them to []."""
    latency: float = 0.0
    """Seconds from a request's arrival to its answer (the sandbox's own work included)."""
    rate_limit: int = 0
    """Requests per rolling minute per token; 0 turns the limit off."""
    per_page_default: int = 10
    """Listing page size when the request gives no per_page."""
    per_page_cap: int = 100
    """Larger per_page values are silently lowered to this."""
    missing_client_header: int = 401
    """Answer when X-Tallyfy-Client is absent: 401 or 404 ENDPOINT_NOT_FOUND."""
    can_archive: bool = True
    """False: the token's user is a light user, so archive and activate answer 403."""
    admin: bool = True
    """False: permanent delete answers 403."""
    activity_feed: str = "on"
    """GET /activity-feeds: "on", "forbidden" (403), "missing" (404) or "empty" (no entries)."""
    auto_archive_clock: bool = False
    """True: completed runs are archived, by nobody, once the org's auto-archive period passes."""

    def __post_init__(self) -> None:
        # A typo in a switch would otherwise silently fall back to some default branch.
        problems = []
        if self.archived_get not in (200, 404):
            problems.append(f"archived_get must be 200 or 404, not {self.archived_get!r}")
        if self.noop_write not in ("200", "404", "422"):
            problems.append(f'noop_write must be "200", "404" or "422", not {self.noop_write!r}')
        if self.missing_client_header not in (401, 404):
            problems.append(
                f"missing_client_header must be 401 or 404, not {self.missing_client_header!r}"
            )
        if self.activity_feed not in ("on", "forbidden", "missing", "empty"):
            problems.append(
                'activity_feed must be "on", "forbidden", "missing" or "empty", '
                f"not {self.activity_feed!r}"
            )
        if self.latency < 0 or self.rate_limit < 0:
            problems.append("latency and rate_limit cannot be negative")
        if not 1 <= self.per_page_default <= self.per_page_cap:
            problems.append("need 1 <= per_page_default <= per_page_cap")
        if problems:
            raise ValueError("invalid sandbox Behaviour: " + "; ".join(problems))


DEFAULT_BEHAVIOUR = Behaviour()


@dataclass(frozen=True)
class SandboxRun:
    """A process run as seeded into the sandbox. The store keeps its own mutable record."""

    id: str
    name: str
    status: str = "active"
    archived_at: str | None = None
    checklist_id: str = DEFAULT_CHECKLIST_ID
    owner_id: int = 1
    started_at: str = DEFAULT_TIMESTAMP
    created_at: str = DEFAULT_TIMESTAMP
    last_updated: str = DEFAULT_TIMESTAMP
    completed_at: str | None = None
    """When a complete run completed; defaults to its last_updated."""
    tags: tuple[str, ...] = ()
    users: tuple[int, ...] = ()
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for label, value in (("id", self.id), ("checklist_id", self.checklist_id)):
            if not RUN_ID.fullmatch(value):
                raise ValueError(f"run {label} {value!r} is not 32 lowercase hex characters")
        if not self.name:
            raise ValueError(f"run {self.id} has an empty name")
        # Normalizing here means the store and the JSON always show one timestamp format.
        for label in ("started_at", "created_at", "last_updated", "archived_at", "completed_at"):
            value = getattr(self, label)
            if value is not None:
                object.__setattr__(self, label, normalize_timestamp(value))


@dataclass(frozen=True)
class LoggedRequest:
    """One request the sandbox received, as it understood it, and the status it answered."""

    method: str
    path: str
    """Without the optional /api prefix and without the query string."""
    query: dict[str, str]
    status: int
    """The status answered; 0 when a `drop` fault closed the connection instead."""
    run_id: str | None
    is_write: bool

"""The sandbox's value types: behaviour switches, seeded runs, logged requests, timestamps."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from reconcile.sandbox.limits import RateWindow

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


NOOP_ANSWERS = ("200", "400", "404", "409", "422")
ARCHIVED_LISTINGS = ("both", "status", "archived")
LINK_STYLES = ("php", "null", "empty")
ACTIVITY_FEEDS = ("on", "forbidden", "missing", "empty")


@dataclass(frozen=True)
class Behaviour:
    """Switches for what the Tallyfy docs leave open; every default is the documented reading.

    `reconcile.sandbox.switches` names each one for the command line and the seed file.
    """

    archived_get: int = 200
    """Answer to GET of an archived run: 200 (with archived_at set) or 404 RESOURCE_NOT_FOUND."""
    noop_write: str = "200"
    """Archive of an archived run or activate of a live one: "200" (the run), or that error."""
    archive_sets_status: bool = True
    """While archived, runs show status "archived"; False leaves status alone."""
    put_clears_assignees: bool = True
    """PUT /runs/{id} without `users`/`groups` resets them to []."""
    latency: float = 0.0
    """Seconds from a request's arrival to its answer (the sandbox's own work included)."""
    rate_limit: int = 0
    """Requests per rolling minute per user; 0 turns this window off."""
    rate_windows: tuple[str, ...] = ()
    """More rolling windows, each `LIMIT/SPAN[:SCOPE]` (see `limits.RateWindow`)."""
    rate_limit_headers: int = 1
    """Which window X-RateLimit-Limit/Remaining describe: its position in `windows`; 0: none."""
    per_page_default: int = 10
    """Listing page size when the request gives no per_page (lowered to the cap if above it)."""
    per_page_cap: int = 100
    """Larger per_page values are silently lowered to this."""
    per_page_ignored: bool = False
    """True: every page has per_page_default runs, whatever per_page asks."""
    archived_listing: str = "both"
    """Which parameter lists archived runs: "both" (`archived=only|true` and `status=archived`),
    "status" (`archived` is ignored) or "archived" (`status=archived` is a plain status filter)."""
    default_lists_archived: bool = False
    """True: a listing without an archived parameter includes archived runs."""
    pagination_links: str = "php"
    """`links`: "php" ({next, previous}, or [] when neither), "null" or "empty" ({})."""
    total_pages: str | int = "served"
    """`total_pages`: "served" (for the page size served), "absent", or computed for this
    page size instead."""
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
        if self.noop_write not in NOOP_ANSWERS:
            problems.append(
                f"noop_write must be one of {', '.join(NOOP_ANSWERS)}, not {self.noop_write!r}"
            )
        if self.missing_client_header not in (401, 404):
            problems.append(
                f"missing_client_header must be 401 or 404, not {self.missing_client_header!r}"
            )
        if self.archived_listing not in ARCHIVED_LISTINGS:
            problems.append(
                f"archived_listing must be one of {', '.join(ARCHIVED_LISTINGS)}, "
                f"not {self.archived_listing!r}"
            )
        if self.pagination_links not in LINK_STYLES:
            problems.append(
                f"pagination_links must be one of {', '.join(LINK_STYLES)}, not "
                f"{self.pagination_links!r}"
            )
        if self.total_pages not in ("served", "absent") and not (
            type(self.total_pages) is int and self.total_pages >= 1
        ):
            problems.append(
                'total_pages must be "served", "absent" or a page size >= 1, not '
                f"{self.total_pages!r}"
            )
        if self.activity_feed not in ACTIVITY_FEEDS:
            problems.append(
                f"activity_feed must be one of {', '.join(ACTIVITY_FEEDS)}, "
                f"not {self.activity_feed!r}"
            )
        if self.latency < 0 or self.rate_limit < 0:
            problems.append("latency and rate_limit cannot be negative")
        if self.per_page_default < 1 or self.per_page_cap < 1:
            problems.append("per_page_default and per_page_cap must be at least 1")
        windows: list[RateWindow] = []
        for spec in self.rate_windows:
            try:
                windows.append(RateWindow.parse(spec))
            except ValueError as exc:
                problems.append(str(exc))
        if self.rate_limit:
            windows.insert(
                0, RateWindow(self.rate_limit, 60, "user", f"{self.rate_limit} requests per minute")
            )
        if not 0 <= self.rate_limit_headers <= max(len(windows), 1):
            problems.append(
                f"rate_limit_headers must be 0 or the position of a window "
                f"(1 to {len(windows)}), not {self.rate_limit_headers}"
            )
        if problems:
            raise ValueError("invalid sandbox Behaviour: " + "; ".join(problems))
        object.__setattr__(self, "_windows", tuple(windows))

    @property
    def windows(self) -> tuple[RateWindow, ...]:
        """Every rate-limit window: the per-minute `rate_limit` first, then `rate_windows`."""
        windows: tuple[RateWindow, ...] = self.__dict__["_windows"]
        return windows


DEFAULT_BEHAVIOUR = Behaviour()


@dataclass(frozen=True)
class SandboxRun:
    """A process run as seeded into the sandbox. The store keeps its own mutable record."""

    id: str
    name: str
    status: str = "active"
    archived_at: str | None = None
    checklist_id: str = DEFAULT_CHECKLIST_ID
    checklist_title: str = "Sandbox blueprint"
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

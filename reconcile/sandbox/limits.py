"""Server-side rate limits: several rolling windows at once, as Tallyfy's sources describe them.

The troubleshooting FAQ gives about 12 GETs per 5 s and 140 calls per 10 s, the Postman page
600 requests a minute per user, the support repository 100 a minute and 1,000 an hour per
organization (docs/tallyfy-api.md §5 and §9). Any of them may answer 429, so the sandbox counts
every window it is given and refuses a request as soon as one of them is full.

A window is written `LIMIT/SPAN[:SCOPE]`: `12/5s:get`, `140/10s`, `600/1m:user`, `1000/1h:org`.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The scope in any case, so the client's own window syntax ("12/5s:GET") reads the same.
_SPEC = re.compile(r"(\d+)/(\d*)([smh])(?::(get|user|org))?", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600}
_UNIT_NAME = {"s": "second", "m": "minute", "h": "hour"}
SCOPES = {
    "get": "GET requests of the user",
    "user": "requests of the user",
    "org": "requests to the organization",
}


@dataclass(frozen=True)
class RateWindow:
    """At most `limit` requests in any `span` seconds, counting the requests `scope` names.

    The sandbox has one user and one organization: `user` counts every authenticated request,
    `org` only those under /organizations/{org} (not /me), `get` only the user's GETs and HEADs.
    """

    limit: int
    span: float
    scope: str = "user"
    label: str = ""
    """How the 429 message names the window ("12 GET requests per 5 seconds")."""

    @classmethod
    def parse(cls, spec: str) -> RateWindow:
        """Read `LIMIT/SPAN[:SCOPE]`; ValueError naming the spec if it is not one."""
        found = _SPEC.fullmatch(spec.strip())
        if found is None:
            raise ValueError(
                f"rate window {spec!r} is not LIMIT/SPAN[:SCOPE] "
                '(for example "12/5s:get", "140/10s", "1000/1h:org")'
            )
        limit, count, unit, scope = found.groups()
        unit, scope = unit.lower(), (scope or "user").lower()
        span = int(count or 1)
        if int(limit) < 1 or span < 1:
            raise ValueError(f"rate window {spec!r}: the limit and the span must be at least 1")
        per = _UNIT_NAME[unit] if span == 1 else f"{span} {_UNIT_NAME[unit]}s"
        noun = "GET requests" if scope == "get" else "requests"
        owner = " to the organization" if scope == "org" else ""
        return cls(int(limit), span * _UNIT[unit], scope, f"{limit} {noun}{owner} per {per}")

    def counts(self, method: str, org_scoped: bool) -> bool:
        """Whether a request with this method (and path under the org or not) counts here."""
        if self.scope == "get":
            return method in ("GET", "HEAD")
        return org_scoped or self.scope == "user"


@dataclass(frozen=True)
class Verdict:
    """What the limiter decided for one request."""

    refused_by: RateWindow | None
    """The first full window, or None when the request was admitted (and counted)."""
    retry_after: int
    """Seconds until every full window has room again (0 when admitted)."""
    header: tuple[int, int] | None
    """(limit, remaining) of the window the X-RateLimit-* headers describe, if any."""


class RateLimiter:
    """Rolling-window counters. Not thread-safe itself (the sandbox's lock covers it).

    Refused requests are not counted, as with Laravel's throttle: waiting always helps.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._hits: dict[RateWindow, deque[float]] = {}

    def admit(
        self, windows: Sequence[RateWindow], header_window: int, method: str, org_scoped: bool
    ) -> Verdict:
        """Count the request in every window it belongs to, or refuse it if one is full.

        `header_window` is the 1-based position in `windows` of the window the X-RateLimit-*
        headers describe; 0 sends none.
        """
        now = self._clock()
        relevant = [w for w in windows if w.counts(method, org_scoped)]
        full: list[tuple[RateWindow, deque[float]]] = []
        for window in relevant:
            hits = self._recent(window, now)
            if len(hits) >= window.limit:
                full.append((window, hits))
        if full:
            # The hit whose expiry leaves room: the count must drop below the limit.
            waits = [hits[len(hits) - w.limit] + w.span - now for w, hits in full]
            retry = max(1, math.ceil(max(waits)))
            return Verdict(full[0][0], retry, self._header(windows, header_window, now))
        for window in relevant:
            self._hits[window].append(now)
        return Verdict(None, 0, self._header(windows, header_window, now))

    def _recent(self, window: RateWindow, now: float) -> deque[float]:
        """The window's hits still inside it."""
        hits = self._hits.setdefault(window, deque())
        while hits and hits[0] <= now - window.span:
            hits.popleft()
        return hits

    def _header(
        self, windows: Sequence[RateWindow], position: int, now: float
    ) -> tuple[int, int] | None:
        if not 1 <= position <= len(windows):
            return None
        window = windows[position - 1]
        return window.limit, max(window.limit - len(self._recent(window, now)), 0)

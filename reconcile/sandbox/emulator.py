"""The Sandbox: an in-memory Tallyfy organization that answers the runs API like the real one.

`dispatch` is the whole emulator and knows nothing about HTTP libraries; `transport()` (httpx,
in-process) and `serve()` (a loopback HTTP server) are thin adapters around it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from reconcile.sandbox.activity import TOKEN_USER, ActivityLog, Actor, Event, SeedMove
from reconcile.sandbox.faults import Fault, FaultQueue, distort, replacement
from reconcile.sandbox.limits import RateLimiter
from reconcile.sandbox.model import (
    DEFAULT_BEHAVIOUR,
    RUN_ID,
    Behaviour,
    LoggedRequest,
    SandboxRun,
    normalize_timestamp,
    zulu_from_epoch,
)
from reconcile.sandbox.organization import AUTO_ARCHIVE_OFF, AutoArchive, archived_at, organization
from reconcile.sandbox.responses import (
    SandboxResponse,
    endpoint_not_found,
    error,
    forbidden,
    json_response,
    rate_limited,
    unauthenticated,
)
from reconcile.sandbox.routes import ALLOWED, Call, Route, handle, match
from reconcile.sandbox.seed import load_seed
from reconcile.sandbox.store import ArchivedMode, RunRecord, RunStore

if TYPE_CHECKING:
    import httpx

WRONG_ORG = "You don't have application's permissions for this organization!"


class Sandbox:
    """An emulated Tallyfy organization with its runs, a request log and injectable faults.

    Thread-safe: one lock serializes the handling of requests (each takes microseconds), so the
    HTTP server can answer from many threads while tests read the log and state.
    """

    def __init__(
        self,
        org_id: str,
        token: str,
        runs: Iterable[SandboxRun] = (),
        behaviour: Behaviour = DEFAULT_BEHAVIOUR,
        *,
        org_name: str = "Sandbox organization",
        clock: Callable[[], float] = time.time,
        auto_archive: AutoArchive = AUTO_ARCHIVE_OFF,
        activity: Iterable[SeedMove] = (),
    ) -> None:
        """Create the org. `clock` (seconds since the epoch) drives timestamps and rate limits.
        `auto_archive` is the org's setting (the clock itself is the `auto_archive_clock` switch);
        `activity` are out-of-band moves carried out, in time order, once the runs are in."""
        if not RUN_ID.fullmatch(org_id):
            raise ValueError(f"org id {org_id!r} is not 32 lowercase hex characters")
        if not token:
            raise ValueError("the sandbox needs a non-empty token")
        self.org_id = org_id
        self.token = token
        self.org_name = org_name
        self.behaviour = behaviour
        self._clock = clock
        self._lock = threading.Lock()
        self._store = RunStore()
        self._store.add(runs)
        self.auto_archive = auto_archive
        self._activity = ActivityLog()
        for seeded in sorted(activity, key=lambda m: m.at):
            self._move(seeded.run_id, seeded.verb, seeded.actor, seeded.source, seeded.at)
        # Encoding a run takes longer than answering for it from the cache; doing it for every run
        # now keeps a first big listing from paying for it while it holds the lock.
        self._store.encode_all(behaviour.archive_sets_status)
        self._faults = FaultQueue()
        self._log: list[LoggedRequest] = []
        self._limiter = RateLimiter(clock)
        self._served = 0

    @classmethod
    def from_seed(cls, path: str | Path, behaviour: Behaviour | None = None) -> Sandbox:
        """Build a sandbox from a seed TOML file; raises SeedError if the file is unusable.

        `behaviour` replaces the seed's own [sandbox] switches when given.
        """
        seed = load_seed(path)
        return cls(
            seed.org_id,
            seed.token,
            seed.runs,
            seed.behaviour if behaviour is None else behaviour,
            org_name=seed.org_name,
            auto_archive=seed.auto_archive,
            activity=seed.activity,
        )

    def dispatch(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> SandboxResponse:
        """Answer one request. `target` is the path and query, or an absolute URL.

        Never sleeps: the response's `delay` and `drop` are for the adapter to carry out.
        """
        method = method.upper()
        lowered = {key.lower(): value for key, value in headers.items()}
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            scheme, host = parts.scheme, parts.netloc
            raw_path, query_string = parts.path, parts.query
        else:
            raw_path, _, query_string = target.partition("?")
            scheme, host = "http", lowered.get("host", "localhost")
        path = _normalize(raw_path)
        query = _parse_query(query_string)
        route = match(path)
        with self._lock:
            behaviour = self.behaviour
            if behaviour.auto_archive_clock:
                self._auto_archive()
            fault = self._faults.take(method, path)
            if fault is not None and fault.skips_operation:
                response = replacement(fault)
            else:
                page_url = f"{scheme}://{host}{raw_path.rstrip('/')}"
                request = _Request(method, route, query, lowered, body, page_url)
                response = self._answer(request, behaviour)
                if fault is not None:
                    response = distort(fault, response)
            self._served += 1
            if not response.drop:
                response.headers["X-Request-Id"] = f"sandbox-{self._served}"
            if behaviour.latency:
                response = replace(response, delay=response.delay + behaviour.latency)
            self._log.append(
                LoggedRequest(
                    method=method,
                    path=path,
                    query=query,
                    status=response.status,
                    run_id=route.run_id if route else None,
                    is_write=method not in ("GET", "HEAD"),
                )
            )
        if method == "HEAD":
            response = replace(response, body=b"")
        return response

    def _answer(self, request: _Request, behaviour: Behaviour) -> SandboxResponse:
        route, headers = request.route, request.headers
        # Routing comes before any middleware, as in Laravel: an unknown path is 404 even
        # without credentials.
        if route is None:
            return endpoint_not_found()
        allowed = ALLOWED[route.endpoint]
        if request.method not in allowed:
            refused = error(
                405, "The method is not supported for this route.", "METHOD_NOT_ALLOWED"
            )
            refused.headers["Allow"] = ", ".join(allowed)
            return refused
        if not headers.get("x-tallyfy-client"):
            if behaviour.missing_client_header == 404:
                return endpoint_not_found()
            return unauthenticated()
        if headers.get("authorization") != f"Bearer {self.token}":
            return unauthenticated()
        if not behaviour.windows:
            return self._authorized(request, route, behaviour)
        org_scoped = route.org_id is not None and route.org_id == self.org_id
        verdict = self._limiter.admit(
            behaviour.windows, behaviour.rate_limit_headers, request.method, org_scoped
        )
        if verdict.refused_by is None:
            response = self._authorized(request, route, behaviour)
        else:
            response = rate_limited(verdict.refused_by.label, str(verdict.retry_after))
        if verdict.header is not None:
            response.headers["X-RateLimit-Limit"] = str(verdict.header[0])
            response.headers["X-RateLimit-Remaining"] = str(verdict.header[1])
        return response

    def _authorized(self, request: _Request, route: Route, behaviour: Behaviour) -> SandboxResponse:
        if route.endpoint == "me":
            return json_response(200, {"data": _ME})

        if route.endpoint == "my_organizations":
            org = {"id": self.org_id, "name": self.org_name}
            pagination = {
                "total": 1,
                "count": 1,
                "per_page": 10,
                "current_page": 1,
                "total_pages": 1,
                "links": [],
            }
            return json_response(200, {"data": [org], "meta": {"pagination": pagination}})
        if route.org_id != self.org_id:
            return forbidden(WRONG_ORG)
        if route.endpoint == "organization":
            return organization(self.org_id, self.org_name, self.auto_archive)
        if route.endpoint == "activity":
            mode = behaviour.activity_feed
            return self._activity.answer(mode, self.org_id, request.query, request.page_url)
        now = zulu_from_epoch(self._clock())
        call = Call(route, request.method, request.query, request.body, request.page_url, now)
        record = self._store.get(route.run_id or "")
        was = record.archived if record is not None else None
        response = handle(call, self._store, behaviour)
        # Every archive and activation through the API is the token's user's, in the feed.
        if record is not None and record.archived != was and route.endpoint in ("run", "activate"):
            verb = "archived" if record.archived else "unarchived"
            self._activity.record(record.id, verb, TOKEN_USER, "Member", now)
        return response

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx.MockTransport answering from this sandbox, for httpx.AsyncClient."""
        from reconcile.sandbox.transport import make_transport

        return make_transport(self)

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def writes(self) -> list[LoggedRequest]:
        """The logged requests that could change state (any method but GET and HEAD)."""
        return [entry for entry in self.requests if entry.is_write]

    def clear_log(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self._log.clear()

    def run(self, run_id: str) -> dict[str, Any]:
        """The run as GET shows it, whatever `archived_get` says; KeyError if there is none."""
        with self._lock:
            return dict(
                json.loads(self._record(run_id).encoded(self.behaviour.archive_sets_status))
            )

    def run_ids(self, archived: bool | None = None) -> list[str]:
        """Ids in listing order: all runs, or only archived (True) or live (False) ones."""
        mode: ArchivedMode = "include" if archived is None else "only" if archived else "exclude"
        with self._lock:
            return [run_id for _, run_id in self._store.ordered_keys(mode)]

    def is_archived(self, run_id: str) -> bool:
        """Whether the run is archived; KeyError if there is no such run."""
        with self._lock:
            return self._record(run_id).archived

    def set_archived(self, run_id: str, archived: bool) -> None:
        """Archive or activate a run behind the client's back; not logged, and unknown to the
        activity feed (as a move the feed missed would be). `move` records who did it."""
        with self._lock:
            record = self._record(run_id)
            if record.archived != archived:
                now = zulu_from_epoch(self._clock())
                record.last_updated = now
                self._store.set_archived_at(record, now if archived else None)

    def move(
        self,
        run_id: str,
        archived: bool,
        actor: Actor | None,
        *,
        source: str | None = "Member",
        at: str | None = None,
        activation_verb: str = "unarchived",
    ) -> Event:
        """Archive or activate a run as `actor` did in the web app (None: nobody, as
        auto-archive), at `at` (default now); recorded in the activity feed (an activation with
        `activation_verb`: "unarchived", or "activated" as some sources spell it), not in the
        request log. KeyError if there is no such run, ValueError if it is already in that state."""
        moment = normalize_timestamp(at) if at is not None else zulu_from_epoch(self._clock())
        verb = "archived" if archived else activation_verb
        with self._lock:
            if self._record(run_id).archived == archived:
                raise ValueError(f"run {run_id} is already {'archived' if archived else 'active'}")
            return self._move(run_id, verb, actor, source if actor else None, moment)

    def _move(
        self, run_id: str, verb: str, actor: Actor | None, source: str | None, at: str
    ) -> Event:
        record = self._record(run_id)
        record.last_updated = at
        self._store.set_archived_at(record, at if verb == "archived" else None)
        return self._activity.record(run_id, verb, actor, source, at)

    @property
    def activity(self) -> list[Event]:
        """The activity feed's events, oldest first, whatever the activity_feed switch says."""
        with self._lock:
            return self._activity.events()

    def _auto_archive(self) -> None:
        """Archive, as nobody, every completed live run whose auto-archive time has come."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        for record in list(self._store.records(self._store.ordered_keys("exclude"))):
            last = self._activity.last_activation(record.id) if record.completed_at else None
            when = archived_at(self.auto_archive, record.completed_at, last, now)
            if when is not None:
                self._move(record.id, "archived", None, None, when)

    def add_runs(self, runs: Iterable[SandboxRun]) -> None:
        """Add runs; ValueError (and nothing added) if an id is already taken."""
        with self._lock:
            self._store.add(runs)

    def inject(self, fault: Fault) -> None:
        """Queue a fault; queued faults hit matching requests in injection order."""
        with self._lock:
            self._faults.add(fault)

    @property
    def pending_faults(self) -> list[Fault]:
        """Injected faults not used up yet; `times` is what each has left."""
        with self._lock:
            return self._faults.pending()

    def _record(self, run_id: str) -> RunRecord:
        record = self._store.get(run_id)
        if record is None:
            raise KeyError(f"the sandbox has no run {run_id!r}")
        return record


@dataclass(frozen=True)
class _Request:
    """A request as the emulator parsed it."""

    method: str
    route: Route | None
    query: dict[str, str]
    headers: dict[str, str]
    """Lowercased names."""
    body: bytes
    page_url: str


_ME = {
    "id": TOKEN_USER.id,
    "email": TOKEN_USER.email,
    "first_name": TOKEN_USER.full_name.partition(" ")[0],
    "last_name": TOKEN_USER.full_name.partition(" ")[2],
    "full_name": TOKEN_USER.full_name,
}


def _normalize(raw_path: str) -> str:
    """Strip the optional /api prefix and trailing slashes: both URL styles reach one route."""
    path = raw_path if raw_path.startswith("/") else "/" + raw_path
    if path == "/api" or path.startswith("/api/"):
        path = path[4:]
    return path.rstrip("/") or "/"


def _parse_query(query_string: str) -> dict[str, str]:
    """Decode the query like the API does: percent-escapes only, "+" stays a plus sign."""
    query: dict[str, str] = {}
    for pair in query_string.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            query[unquote(key)] = unquote(value)
    return query

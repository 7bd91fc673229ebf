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
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from reconcile.sandbox.faults import Fault, FaultQueue, distort, replacement
from reconcile.sandbox.limits import RateLimiter
from reconcile.sandbox.model import (
    DEFAULT_BEHAVIOUR,
    RUN_ID,
    Behaviour,
    LoggedRequest,
    SandboxRun,
    zulu_from_epoch,
)
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
    ) -> None:
        """Create the org. `clock` (seconds since the epoch) drives timestamps and rate limits."""
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
        chosen = seed.behaviour if behaviour is None else behaviour
        return cls(seed.org_id, seed.token, seed.runs, chosen, org_name=seed.org_name)

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
        now = zulu_from_epoch(self._clock())
        call = Call(route, request.method, request.query, request.body, request.page_url, now)
        return handle(call, self._store, behaviour)

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
        """Archive or activate a run behind the client's back (the UI, auto-archive); not logged."""
        with self._lock:
            record = self._record(run_id)
            if record.archived != archived:
                now = zulu_from_epoch(self._clock())
                record.last_updated = now
                self._store.set_archived_at(record, now if archived else None)

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


_ME = {"id": 1, "email": "sandbox@example.com", "first_name": "Sandbox", "last_name": "User"}


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

"""The Tallyfy HTTP client: the only code in reconcile that speaks HTTP.

Base URL, headers, timeouts, retries, pagination and the mapping of statuses to exceptions all
live here; how fast requests go (concurrency, rate limit, the pause after a 429) is the Pacer's.
Tests pass `transport=` to run it against the in-process sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
import orjson

from reconcile import __version__
from reconcile.config import Target, Token
from reconcile.domain import ObservedRun
from reconcile.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitError,
)
from reconcile.ratelimit import Window
from reconcile.tallyfy.listing import Listing, PageCallback, list_all
from reconcile.tallyfy.pacing import SYSTEM_CLOCK, Clock, Pacer, retry_after_seconds
from reconcile.tallyfy.runs import InvalidBody, Page, parse_page, parse_run

log = logging.getLogger("reconcile.http")

Archived = Literal["only"]
T = TypeVar("T")
READ_METHODS = frozenset({"GET", "HEAD"})
PAGE_SIZE = 100  # the documented cap for per_page
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry. 429 is retried for every method (the server did nothing),
    until the deadline however many come; 5xx and network errors only for reads, because a write
    may have happened, and at most `max_attempts` times."""

    max_attempts: int = 5
    deadline: float = 300.0
    max_retry_after: float = 60.0
    backoff_base: float = 0.5
    backoff_cap: float = 8.0


class TallyfyClient:
    """Reads and archives/activates the runs of one organization."""

    def __init__(
        self,
        target: Target,
        token: Token,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        parallelism: int = 8,
        rate_limit: int = 0,
        rate_limits: Sequence[Window] = (),
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`parallelism` bounds the requests in flight (and the connection pool); `rate_limit` is
        our own budget of requests per rolling minute, 0 for none, and `rate_limits` more windows
        of our own (the server's figures and Retry-After are obeyed either way)."""
        self.target = target
        self.parallelism = parallelism
        self._token = token
        self._retry = retry
        limits = [Window(rate_limit, 60.0)] if rate_limit else []
        self.pacer = Pacer(parallelism=parallelism, limits=[*limits, *rate_limits], clock=clock)
        self.requests_sent = 0
        self._origin = _origin(target.api_url)
        self._base = httpx.URL(target.api_url + "/")
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism),
            headers={
                "Authorization": f"Bearer {token.value}",
                "Accept": "application/json",
                "X-Tallyfy-Client": "APIClient",
                "User-Agent": f"reconcile/{__version__}",
            },
        )

    async def __aenter__(self) -> TallyfyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    def _runs_path(self, run_id: str | None = None) -> str:
        base = f"organizations/{self.target.org_id}/runs"
        return base if run_id is None else f"{base}/{run_id}"

    async def get_run(self, run_id: str) -> ObservedRun | None:
        """The run, or None when the API answers 404 (unknown, or archived on some servers)."""
        try:
            answer = await self._send("GET", self._runs_path(run_id), run_id=run_id)
        except NotFoundError:
            return None
        return self._parse(answer, lambda body: parse_run(body, run_id), run_id)

    async def archive(self, run_id: str) -> ObservedRun:
        """Archive (soft-delete) a run: DELETE /runs/{id}."""
        path = self._runs_path(run_id)
        answer = await self._send("DELETE", path, run_id=run_id)
        return self._parse(answer, lambda body: parse_run(body, run_id), run_id)

    async def activate(self, run_id: str) -> ObservedRun:
        """Restore an archived run: PUT /runs/{id}/activate."""
        path = self._runs_path(run_id) + "/activate"
        answer = await self._send("PUT", path, run_id=run_id)
        return self._parse(answer, lambda body: parse_run(body, run_id), run_id)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON answer to one GET of `path` (below the API URL, such as `me` or
        `organizations/{org}`), with the retries and error mapping of every other request."""
        return (await self._send("GET", path, params=params)).body

    async def list_page(self, page: int, query: Mapping[str, str] | None = None) -> Page:
        """One page of the run listing, `per_page` at the documented cap. `query` adds listing
        parameters such as `archived`, `checklist_id` or `with`."""
        params: dict[str, str] = {**(query or {}), "page": str(page), "per_page": str(PAGE_SIZE)}
        answer = await self._send("GET", self._runs_path(), params=params)
        return self._parse(answer, parse_page, None)

    async def list_runs(
        self,
        archived: Archived | None = None,
        query: Mapping[str, str] | None = None,
        on_page: PageCallback | None = None,
    ) -> list[ObservedRun]:
        """Every run of a listing, archived or not, read whole and checked (see
        reconcile.tallyfy.listing). `on_page` hears of each page fetched."""
        listing = Listing.ACTIVE if archived is None else Listing.ARCHIVED
        return await list_all(self, listing, query, on_page)

    async def follow(self, url: str) -> Page:
        """The listing page at `url` (a `links.next`), only on the configured API's origin."""
        if _origin(url) != self._origin:
            raise BadResponseError(
                f"The listing's next-page link points to another server ({_origin(url)}); it was "
                "not followed, so the access token stays with the configured API.",
                method="GET",
                path=self._runs_path(),
            )
        answer = await self._send("GET", url)
        return self._parse(answer, parse_page, None)

    def _parse(self, answer: _Answer, parse: Callable[[Any], T], run_id: str | None) -> T:
        try:
            return parse(answer.body)
        except InvalidBody as exc:
            raise BadResponseError(
                f"The API's answer does not look like Tallyfy's documented response: {exc}.",
                method=answer.method,
                path=answer.shown,
                run_id=run_id,
                request_id=answer.request_id,
            ) from None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        run_id: str | None = None,
    ) -> _Answer:
        """Send one logical request, retrying as RetryPolicy allows; the answer's JSON body."""
        url = self._url(path, params)
        # What error messages name: the path below the API URL with its query, or a whole link's.
        raw = url.raw_path.decode("ascii")
        shown = raw if "://" in path else "/" + raw.removeprefix(self._base.raw_path.decode())
        started = time.monotonic()
        # Failed attempts count against max_attempts; a 429 does not (the server did nothing and
        # said when to come back), so rate-limited work only gives up at the deadline.
        attempt = 0
        while True:
            try:
                async with self.pacer.turn(method) as turn:
                    self.requests_sent += 1
                    response = await self._http.request(method, url)
                    turn.heard(response.status_code, response.headers)
            except httpx.TransportError as exc:
                log.debug("%s %s -> %s", method, shown, type(exc).__name__)
                untrusted = _certificate_error(exc)
                if untrusted is not None:
                    raise ApiError(
                        f"The API's TLS certificate was not accepted ({untrusted}). Verification "
                        "is always on; if your network re-signs TLS with its own certificate "
                        "authority, point SSL_CERT_FILE at a CA bundle that includes it.",
                        method=method,
                        path=shown,
                        run_id=run_id,
                    ) from None
                attempt += 1
                if method in READ_METHODS and self._may_retry(attempt, started):
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                raise ApiError(
                    f"No answer from the API ({type(exc).__name__}: {exc or 'connection failed'})"
                    + (f" for run {run_id}." if run_id else "."),
                    method=method,
                    path=shown,
                    run_id=run_id,
                ) from None
            log.debug("%s %s -> %s", method, shown, response.status_code)
            status = response.status_code
            if status == 429:
                delay = self._retry_after(response)
                self.pacer.pause(delay)
                if self._may_retry(attempt, started, delay):
                    continue
            elif status >= 500 and method in READ_METHODS:
                attempt += 1
                if self._may_retry(attempt, started):
                    await asyncio.sleep(self._backoff(attempt))
                    continue
            if status >= 400:
                raise self._error(response, method, shown, run_id)
            # The turn just ended may have woken a request waiting for it: let that one go out
            # before this answer is decoded, rather than leave its connection idle meanwhile.
            await asyncio.sleep(0)
            body = self._json(response, method, shown, run_id)
            return _Answer(body, method, shown, _request_id(response))

    def _url(self, path: str, params: Mapping[str, str] | None) -> httpx.URL:
        """The absolute URL of `path` (below the API URL, or absolute) with `params`, parsed once
        per logical request: given a relative URL and parameters, httpx parses the URL three
        times on every send."""
        if "://" in path:
            return httpx.URL(path)
        # Spaces as %20, never "+": the API does not decode "+" as a space.
        target = path + ("?" + urlencode(params, quote_via=quote) if params else "")
        return self._base.copy_with(raw_path=self._base.raw_path + target.encode("ascii"))

    def _may_retry(self, attempt: int, started: float, delay: float = 0.0) -> bool:
        elapsed = time.monotonic() - started + delay
        return attempt < self._retry.max_attempts and elapsed < self._retry.deadline

    def _backoff(self, attempt: int) -> float:
        delay = min(self._retry.backoff_cap, self._retry.backoff_base * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.8, 1.2)

    def _retry_after(self, response: httpx.Response) -> float:
        seconds = retry_after_seconds(response.headers.get("Retry-After"), time.time())
        if seconds is None:
            seconds = self._retry.backoff_base
        return min(seconds, self._retry.max_retry_after)

    def _json(self, response: httpx.Response, method: str, path: str, run_id: str | None) -> Any:
        try:
            return orjson.loads(response.content)
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise BadResponseError(
                f"The API answered HTTP {response.status_code} with a body that is not JSON "
                f"({kind}: {self._snippet(response)!r})"
                + (f" for run {run_id}." if run_id else "."),
                method=method,
                path=path,
                status=response.status_code,
                run_id=run_id,
                request_id=_request_id(response),
            ) from None

    def _error(
        self, response: httpx.Response, method: str, path: str, run_id: str | None
    ) -> ApiError:
        status = response.status_code
        api_message = self._api_message(response)
        subject = f"run {run_id}" if run_id else f"organization {self.target.org_id}"
        kwargs: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "run_id": run_id,
            "api_message": api_message,
            "request_id": _request_id(response),
        }
        if status == 401:
            return AuthError(
                "The API refused the access token. Personal access tokens expire after 6 months "
                "and stop working when their user logs out of the web app; create a new one under "
                "Settings > Integrations > REST API and set TALLYFY_ACCESS_TOKEN.",
                **kwargs,
            )
        if status == 403:
            return AuthError(
                f"The token's user lacks permission for {subject}. Archiving and activating need "
                "a member or administrator (light users cannot archive), and an application token "
                "works only for the organization it was issued for.",
                **kwargs,
            )
        if status == 404:
            return NotFoundError(f"The API does not know {subject}.", **kwargs)
        if status == 429:
            return RateLimitError(
                "The API kept answering 429 (rate limited) past the retry deadline; try again "
                "later or lower --rate-limit.",
                **kwargs,
            )
        return ApiError(f"The API refused the request for {subject}.", **kwargs)

    def _api_message(self, response: httpx.Response) -> str | None:
        try:
            body = orjson.loads(response.content)
        except ValueError:
            return self._snippet(response) or None
        if isinstance(body, dict):
            message = body.get("message")
            if isinstance(body.get("error"), dict):
                message = body["error"].get("message")
            if isinstance(message, str):
                return self._redact(message)
        return None

    def _snippet(self, response: httpx.Response) -> str:
        text = " ".join(response.text[:120].split())
        return self._redact(text)

    def _redact(self, text: str) -> str:
        return text.replace(self._token.value, "***")


@dataclass(frozen=True)
class _Answer:
    """A decoded answer and the request it answered, for the errors its parsing may raise."""

    body: Any
    method: str
    shown: str
    request_id: str | None


def _request_id(response: httpx.Response) -> str | None:
    """`X-Request-Id`, for error messages, when it looks like an identifier (it is shown as is)."""
    value = response.headers.get("X-Request-Id", "")
    return value if _REQUEST_ID.fullmatch(value) else None


def _certificate_error(exc: BaseException) -> str | None:
    """The reason when `exc` comes from a failed certificate check; retrying cannot help then."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps twice; the bound only guards against a cycle
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or seen.reason or "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port

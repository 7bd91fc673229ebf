"""The Tallyfy HTTP client: the only code in reconcile that speaks HTTP.

Base URL, headers, timeouts, retries, pagination and the mapping of statuses to exceptions all
live here; how fast requests go (concurrency, rate limit, the pause after a 429) is the Pacer's.
Tests pass `transport=` to run it against the in-process sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import httpx

from reconcile import __version__
from reconcile.config import Target, Token
from reconcile.domain import ObservedRun
from reconcile.errors import ApiError, BadResponseError, ConfigError, NotFoundError
from reconcile.ratelimit import Window
from reconcile.tallyfy.answers import (
    Answer,
    AnswerTooLarge,
    Asked,
    BoundedBody,
    UnreadableEncoding,
)
from reconcile.tallyfy.listing import Listing, PageCallback, list_all
from reconcile.tallyfy.network import proxy_for
from reconcile.tallyfy.pacing import SYSTEM_CLOCK, Clock, Pacer, Turn, retry_after_seconds
from reconcile.tallyfy.runs import InvalidBody, Page, parse_page, parse_run

log = logging.getLogger("reconcile.http")

Archived = Literal["only"]
T = TypeVar("T")
READ_METHODS = frozenset({"GET", "HEAD"})
PAGE_SIZE = 100  # the documented cap for per_page
EXPECTED_STATUS = 200
"""The only status the API documents for a read, an archive or an activation that worked."""


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
        minute = [Window(rate_limit, 60.0)] if rate_limit else []
        self.pacer = Pacer(parallelism=parallelism, limits=[*minute, *rate_limits], clock=clock)
        self.requests_sent = 0
        self._timeout = timeout
        self._origin = _origin(target.api_url)
        self._base = httpx.URL(target.api_url + "/")
        limits = httpx.Limits(max_connections=parallelism, max_keepalive_connections=parallelism)
        self._http = httpx.AsyncClient(
            transport=transport or _network_transport(target.api_url, limits),
            # The environment's proxies are chosen by network.proxy_for, not by httpx, which
            # would send a plain-http request with the token through a forwarding proxy.
            trust_env=False,
            timeout=timeout,
            limits=limits,
            headers={
                "Authorization": f"Bearer {token.value}",
                "Accept": "application/json",
                # Only gzip, which BoundedBody decompresses with a bound on what it grows to.
                "Accept-Encoding": "gzip",
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

    async def get_run(
        self, run_id: str, query: Mapping[str, str] | None = None
    ) -> ObservedRun | None:
        """The run, or None when the API answers 404 (unknown, or archived on some servers).
        `query` adds parameters such as `with`."""
        try:
            reply = await self._send("GET", self._runs_path(run_id), params=query, run_id=run_id)
        except NotFoundError:
            return None
        return self._parse(reply, lambda body: parse_run(body, run_id))

    async def archive(self, run_id: str, stop: asyncio.Event | None = None) -> ObservedRun:
        """Archive (soft-delete) a run: DELETE /runs/{id}. Once `stop` is set the write is no
        longer sent, even after a 429 (WriteCancelled); a write already sent is finished."""
        path = self._runs_path(run_id)
        reply = await self._send("DELETE", path, run_id=run_id, stop=stop)
        return self._parse(reply, lambda body: parse_run(body, run_id))

    async def activate(self, run_id: str, stop: asyncio.Event | None = None) -> ObservedRun:
        """Restore an archived run: PUT /runs/{id}/activate. `stop` as for `archive`."""
        path = self._runs_path(run_id) + "/activate"
        reply = await self._send("PUT", path, run_id=run_id, stop=stop)
        return self._parse(reply, lambda body: parse_run(body, run_id))

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON answer to one GET of `path` (below the API URL, such as `me` or
        `organizations/{org}`), with the retries and error mapping of every other request."""
        return (await self._send("GET", path, params=params)).body

    async def list_page(self, page: int, query: Mapping[str, str] | None = None) -> Page:
        """One page of the run listing, `per_page` at the documented cap. `query` adds listing
        parameters such as `archived`, `checklist_id` or `with`."""
        params: dict[str, str] = {**(query or {}), "page": str(page), "per_page": str(PAGE_SIZE)}
        reply = await self._send("GET", self._runs_path(), params=params)
        return self._parse(reply, parse_page)

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
        try:
            # A link is the API's text: a bad port or white space in it is a bad answer.
            if any(character.isspace() for character in url):
                raise ValueError(url)
            origin = _origin(url)
            httpx.URL(url)
        except (ValueError, httpx.InvalidURL):
            raise BadResponseError(
                f"The listing's next-page link {url!r} is not a usable URL; it was not followed.",
                method="GET",
                path=self._runs_path(),
            ) from None
        if origin != self._origin:
            raise BadResponseError(
                f"The listing's next-page link points to another server ({origin}); it was "
                "not followed, so the access token stays with the configured API.",
                method="GET",
                path=self._runs_path(),
            )
        reply = await self._send("GET", url)
        return self._parse(reply, parse_page)

    def _parse(self, reply: _Reply, parse: Callable[[Any], T]) -> T:
        try:
            return parse(reply.body)
        except InvalidBody as exc:
            raise BadResponseError(
                f"The API's answer does not look like Tallyfy's documented response: {exc}.",
                request_id=reply.request_id,
                **reply.asked.where,
            ) from None

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        run_id: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> _Reply:
        """Send one logical request, retrying as RetryPolicy allows; its JSON body. Once `stop`
        is set no attempt of it is sent any more (see Pacer.turn)."""
        url = self._url(path, params)
        # What messages name: the path below the API URL with its query, or a whole link's.
        raw = url.raw_path.decode("ascii")
        shown = raw if "://" in path else "/" + raw.removeprefix(self._base.raw_path.decode())
        asked = Asked(method, shown, run_id, self._token.value)
        started = time.monotonic()
        # Failed attempts count against max_attempts; a 429 does not (the server did nothing and
        # said when to come back), so rate-limited work only gives up at the deadline.
        attempt = 0
        while True:
            try:
                async with self.pacer.turn(method, stop) as turn:
                    self.requests_sent += 1
                    answer = await self._exchange(method, url, turn)
            except (httpx.TransportError, TimeoutError) as exc:
                log.debug("%s %s -> %s", method, shown, type(exc).__name__)
                untrusted = _certificate_error(exc)
                if untrusted is not None:
                    raise ApiError(
                        f"The API's TLS certificate was not accepted ({untrusted}). Verification "
                        "is always on; if your network re-signs TLS with its own certificate "
                        "authority, point SSL_CERT_FILE at a CA bundle that includes it.",
                        **asked.where,
                    ) from None
                attempt += 1
                if method in READ_METHODS and self._may_retry(attempt, started):
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                reason = (
                    f"the whole answer did not arrive within the timeout of {self._timeout:g} s"
                    if isinstance(exc, TimeoutError)
                    else f"{type(exc).__name__}: {exc or 'connection failed'}"
                )
                host = url.netloc.decode("ascii")
                message = f"No answer from the API at {host} ({reason}){asked.ending}"
                raise ApiError(message, **asked.where) from None
            except (AnswerTooLarge, UnreadableEncoding) as exc:
                log.debug("%s %s -> %s", method, shown, type(exc).__name__)
                raise BadResponseError(
                    f"The API's answer was not read to its end: {exc}{asked.ending}", **asked.where
                ) from None
            log.debug("%s %s -> %s", method, shown, answer.status)
            status = answer.status
            if status == 429:
                delay = self._retry_after(answer)
                self.pacer.pause(delay)
                if self._may_retry(attempt, started, delay):
                    continue
            elif status >= 500 and method in READ_METHODS:
                attempt += 1
                if self._may_retry(attempt, started):
                    await asyncio.sleep(self._backoff(attempt))
                    continue
            if status >= 400:
                raise answer.error(asked, self.target.org_id)
            if status != EXPECTED_STATUS:
                raise answer.unexpected(asked)
            # The turn just ended may have woken a request waiting for it: let that one go out
            # before this answer is decoded, rather than leave its connection idle meanwhile.
            await asyncio.sleep(0)
            return _Reply(answer.json(asked), asked, answer.request_id)

    async def _exchange(self, method: str, url: httpx.URL, turn: Turn) -> Answer:
        """One attempt: the request and its whole answer, which must arrive within the timeout
        (httpx's own timeouts only bound each wait for the next bytes, so an answer trickling a
        byte at a time would never end) and stay within BoundedBody's bound."""
        async with asyncio.timeout(self._timeout):
            async with self._http.stream(method, url) as response:
                turn.heard(response.status_code, response.headers)
                if response.is_stream_consumed:
                    # Built whole in this process (an injected MockTransport): httpx has
                    # already decoded it, and only the bound is left to check.
                    body = BoundedBody(None)
                    body.feed(response.content)
                else:
                    body = BoundedBody(response.headers.get("Content-Encoding"))
                    async for chunk in response.aiter_raw():
                        body.feed(chunk)
                return Answer(response.status_code, response.headers, body.content())

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

    def _retry_after(self, answer: Answer) -> float:
        seconds = retry_after_seconds(answer.headers.get("Retry-After"), time.time())
        if seconds is None:
            seconds = self._retry.backoff_base
        return min(seconds, self._retry.max_retry_after)


@dataclass(frozen=True)
class _Reply:
    """A decoded answer and the request it answered, for the errors its parsing may raise."""

    body: Any
    asked: Asked
    request_id: str | None


def _network_transport(api_url: str, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """The transport to the real API: through the proxy network.proxy_for allows, if any, with
    TLS verified against certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR when set."""
    proxy = proxy_for(api_url, os.environ)
    try:
        # trust_env here only lets httpx read SSL_CERT_FILE and SSL_CERT_DIR.
        return httpx.AsyncHTTPTransport(
            limits=limits, proxy=proxy.url if proxy else None, trust_env=True
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "Cannot load the CA certificates that SSL_CERT_FILE points at "
            f"({exc.strerror or exc}); point it at a readable PEM bundle or unset it."
        ) from None
    except (httpx.InvalidURL, ValueError):
        # httpx's message would quote the URL, password included.
        raise ConfigError(
            f"The proxy {proxy} is not a URL httpx can use; check its host name."
        ) from None


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

"""Client-side pacing: how many requests may be in flight, and how many per rolling minute.

Tallyfy documents a limit per user on a rolling one-minute window and answers 429 with
`Retry-After` and `X-RateLimit-Remaining` when it is reached. The Pacer keeps the client under a
budget of requests per 60 seconds, tightens that budget from what the server says, and holds every
request back while a `Retry-After` pause lasts.

The budget is counted so that the server can never see more than it in any rolling minute: a
request occupies the budget from the moment it is sent until 60 seconds after its answer arrived
(the server counted it somewhere in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import islice
from typing import TypeVar

from reconcile.errors import WriteCancelled

T = TypeVar("T")

WINDOW = 60.0
"""The documented rolling window, in seconds."""


@dataclass(frozen=True)
class Clock:
    """Where the pacer reads the time and how it waits; tests inject a simulated one."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


SYSTEM_CLOCK = Clock()


@dataclass(frozen=True)
class _Answered:
    sent: float
    answered: float


class Turn:
    """One request's permission to go; report what the server answered with `heard`."""

    def __init__(self, pacer: Pacer, sent: float, completed_before: int) -> None:
        self._pacer = pacer
        self.sent = sent
        self.completed_before = completed_before

    def heard(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn the server's limit from the rate-limit headers of this answer."""
        self._pacer.learn(self, status, headers)


class Pacer:
    """Bounded concurrency plus a budget of requests per rolling minute: our own limit
    (`per_minute`, 0 for none), lowered to whatever the server's headers allow."""

    def __init__(
        self, *, parallelism: int, per_minute: int = 0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        if parallelism < 1 or per_minute < 0:
            raise ValueError("parallelism must be at least 1 and per_minute at least 0")
        self.parallelism = parallelism
        self.configured = per_minute or None
        self.throttled = 0
        """How many 429 answers the pacer has heard."""
        self._clock = clock
        self._slots = asyncio.Semaphore(parallelism)
        self._in_flight = 0
        self._answered: deque[_Answered] = deque()
        self._completed = 0
        self._resume_at = 0.0
        self._server_limit: int | None = None
        self._estimate: int | None = None
        self._heard = asyncio.Event()

    @property
    def budget(self) -> int | None:
        """Requests allowed per rolling minute now: the tightest of our own limit, the server's
        `X-RateLimit-Limit`, and what `X-RateLimit-Remaining` last implied."""
        known = [b for b in (self.configured, self._server_limit, self._estimate) if b is not None]
        return min(known) if known else None

    @asynccontextmanager
    async def turn(self, stop: asyncio.Event | None = None) -> AsyncIterator[Turn]:
        """Wait until a request may be sent, and hold its place until its answer has arrived.
        If `stop` is set before the request may go, the wait ends at once with WriteCancelled:
        a write waiting out a 429 pause or the budget is never sent after an interruption."""
        await _unless(stop, self._slots.acquire())
        try:
            await _unless(stop, self._wait_for_room())
            if stop is not None and stop.is_set():
                raise WriteCancelled()
            self._in_flight += 1
            turn = Turn(self, self._clock.now(), self._completed)
            try:
                yield turn
            finally:
                self._in_flight -= 1
                self._completed += 1
                now = self._clock.now()
                self._answered.append(_Answered(turn.sent, now))
                self._forget(now)
                heard, self._heard = self._heard, asyncio.Event()
                heard.set()
        finally:
            self._slots.release()

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (the server's Retry-After); pauses only ever lengthen."""
        self._resume_at = max(self._resume_at, self._clock.now() + seconds)

    def learn(self, turn: Turn, status: int, headers: Mapping[str, str]) -> None:
        """Tighten the budget from an answer's `X-RateLimit-Limit` / `X-RateLimit-Remaining`."""
        if status == 429:
            self.throttled += 1
            # A refusal is counted by neither side and says nothing the Retry-After pause
            # does not; tightening on it would let one stray 429 slow down a whole command.
            return
        limit = _whole_number(headers.get("X-RateLimit-Limit"))
        if limit is not None and limit > 0:
            self._server_limit = limit
        remaining = _whole_number(headers.get("X-RateLimit-Remaining"))
        if remaining is not None:
            self._estimate = self._counted_by_server(turn) + remaining

    def _counted_by_server(self, turn: Turn) -> int:
        """How many requests the server surely had in its window when it answered `turn`: the
        turn itself, and ours that were answered before it was sent and sent less than a minute
        before its answer. Counting no more than that keeps the estimate at or under the limit."""
        now = self._clock.now()
        forgotten = self._completed - len(self._answered)
        earlier = max(turn.completed_before - forgotten, 0)
        recent = sum(1 for a in islice(self._answered, earlier) if a.sent > now - WINDOW)
        return recent + 1

    def _forget(self, now: float) -> None:
        while self._answered and self._answered[0].answered <= now - WINDOW:
            self._answered.popleft()

    async def _wait_for_room(self) -> None:
        while True:
            now = self._clock.now()
            delay = self._resume_at - now
            budget = self.budget
            if budget is not None:
                self._forget(now)
                if self._in_flight + len(self._answered) >= budget:
                    if not self._answered:
                        # Only requests in flight hold the budget: wait for one to be answered.
                        await self._heard.wait()
                        continue
                    delay = max(delay, self._answered[0].answered + WINDOW - now)
            if delay <= 0:
                return
            await self._clock.sleep(delay)


async def _unless(stop: asyncio.Event | None, waiting: Awaitable[T]) -> T:
    """What `waiting` gives, unless `stop` is set first: then WriteCancelled, with `waiting`
    cancelled. If both happen at once, the result wins (the caller checks `stop` again)."""
    if stop is None:
        return await waiting
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if task.cancelled():
        raise WriteCancelled()
    return task.result()


def _whole_number(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None

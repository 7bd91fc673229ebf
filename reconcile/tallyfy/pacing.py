"""Client-side pacing: how many requests may be in flight, and how many in each rolling window.

Tallyfy's sources give several limits at once (600 a minute per user; about 12 GETs per 5 s and
140 calls per 10 s; 100 a minute and 1,000 an hour per organization), any of which may answer 429
with `Retry-After`, and the `X-RateLimit-*` headers describe one window without saying which.
The Pacer keeps every window it was given and adds the ones it learns:

- A window is kept so that the server can never see more than its limit in it: a request holds
  its place from the moment it is sent until `seconds` after its answer arrived (the server
  counted it somewhere in between).
- `X-RateLimit-Remaining` says how many more requests the described window admits. Once the
  requests sent since that answer reach it, no new request starts while others are in flight:
  their answers bring fresher figures. With none in flight, one request goes out as a probe.
- A 429 teaches a window, whatever window the headers describe: the server refused after a count
  of our requests, and its `Retry-After` says when the oldest of them leaves its window. The
  count is `X-RateLimit-Limit` when the refusal's headers show that window exhausted, and
  otherwise the requests accepted since the last pause; the window's length is the time from the
  first of them to the end of the pause. Learned windows only ever add constraints.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

from reconcile.errors import WriteCancelled
from reconcile.ratelimit import Window

T = TypeVar("T")

HISTORY = 20_000
"""Answers remembered for learning windows from 429s: bounded, so a long command stays small."""


def retry_after_seconds(value: str | None, wall_clock: float) -> float | None:
    """Seconds `Retry-After` asks to wait (a number or an HTTP date), or None if it is unusable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - wall_clock
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class Clock:
    """Where the pacer reads the time and how it waits; tests inject a simulated one."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    wall: Callable[[], float] = time.time


SYSTEM_CLOCK = Clock()


@dataclass(frozen=True)
class _Answered:
    seq: int
    sent: float
    answered: float
    accepted: bool


@dataclass(frozen=True)
class _Lesson:
    """A 429 waiting to be learned from once every request sent before it has been answered."""

    seq: int
    since: int
    answered: float
    retry_after: float
    limit: int | None


class _Track:
    """One window's answered requests that still hold a place in it."""

    def __init__(self, window: Window, answered: Iterable[float] = ()) -> None:
        self.window = window
        self.answered: deque[float] = deque(sorted(answered))

    def forget(self, now: float) -> None:
        while self.answered and self.answered[0] <= now - self.window.seconds:
            self.answered.popleft()


class Turn:
    """One request's permission to go; report what the server answered with `heard`."""

    def __init__(self, pacer: Pacer, seq: int, method: str, sent: float) -> None:
        self._pacer = pacer
        self.seq = seq
        self.method = method
        self.sent = sent
        self.status: int | None = None

    def heard(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from this answer's status and rate-limit headers."""
        self.status = status
        self._pacer.learn(self, status, headers)


class Pacer:
    """Bounded concurrency plus every rolling window given (`limits`) or learned from the server."""

    def __init__(
        self,
        *,
        parallelism: int,
        limits: Sequence[Window] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self.parallelism = parallelism
        self.throttled = 0
        """How many 429 answers the pacer has heard."""
        self._clock = clock
        self._slots = asyncio.Semaphore(parallelism)
        self._tracks = [_Track(window) for window in limits]
        self._learned: dict[int, _Track] = {}
        self._flying: Counter[str] = Counter()
        self._flying_seqs: set[int] = set()
        self._history: deque[_Answered] = deque(maxlen=HISTORY)
        self._lessons: list[_Lesson] = []
        self._next_seq = 0
        self._episode = 0
        """The first request of the current episode: the requests since the last 429."""
        self._allowance: tuple[int, int] | None = None
        """(seq, X-RateLimit-Remaining) of the newest request whose answer had the header."""
        self._resume_at = 0.0
        self._heard = asyncio.Event()

    @property
    def windows(self) -> tuple[Window, ...]:
        """The windows in force: the ones given, then the ones learned."""
        return tuple(track.window for track in (*self._tracks, *self._learned.values()))

    @asynccontextmanager
    async def turn(
        self, method: str = "GET", stop: asyncio.Event | None = None
    ) -> AsyncIterator[Turn]:
        """Wait until a request may be sent, and hold its place until its answer has arrived.
        If `stop` is set before the request may go, the wait ends at once with WriteCancelled:
        a write waiting out a 429 pause or a window is never sent after an interruption."""
        await _unless(stop, self._slots.acquire())
        try:
            await _unless(stop, self._wait_for_room(method))
            if stop is not None and stop.is_set():
                raise WriteCancelled()
            turn = Turn(self, self._next_seq, method, self._clock.now())
            self._next_seq += 1
            self._flying[method] += 1
            self._flying_seqs.add(turn.seq)
            try:
                yield turn
            finally:
                self._flying[method] -= 1
                self._flying_seqs.discard(turn.seq)
                now = self._clock.now()
                for track in self._all_tracks():
                    if track.window.counts(method):
                        track.answered.append(now)
                self._history.append(_Answered(turn.seq, turn.sent, now, turn.status != 429))
                self._study()
                heard, self._heard = self._heard, asyncio.Event()
                heard.set()
        finally:
            self._slots.release()

    def pause(self, seconds: float) -> None:
        """Send nothing for `seconds` (the server's Retry-After); pauses only ever lengthen."""
        self._resume_at = max(self._resume_at, self._clock.now() + seconds)

    def learn(self, turn: Turn, status: int, headers: Mapping[str, str]) -> None:
        """Take the remaining allowance from `X-RateLimit-Remaining`; note a 429 to learn from."""
        remaining = _whole_number(headers.get("X-RateLimit-Remaining"))
        if remaining is not None and (self._allowance is None or turn.seq > self._allowance[0]):
            self._allowance = (turn.seq, remaining)
        if status != 429:
            return
        self.throttled += 1
        retry_after = retry_after_seconds(headers.get("Retry-After"), self._clock.wall())
        # "Retry now" reveals no window: whatever filled one has already left it.
        if retry_after and turn.seq >= self._episode:
            limit = _whole_number(headers.get("X-RateLimit-Limit")) if remaining == 0 else None
            lesson = _Lesson(turn.seq, self._episode, self._clock.now(), retry_after, limit)
            self._lessons.append(lesson)
            self._episode = self._next_seq

    def _study(self) -> None:
        """Learn from each 429 whose earlier requests have all been answered."""
        oldest_flying = min(self._flying_seqs, default=self._next_seq)
        ready = [lesson for lesson in self._lessons if lesson.seq < oldest_flying]
        self._lessons = [lesson for lesson in self._lessons if lesson.seq >= oldest_flying]
        for lesson in ready:
            self._learn_window(lesson)

    def _learn_window(self, lesson: _Lesson) -> None:
        """The window a 429 reveals: `count` accepted requests, the first sent at `first`, filled
        it until the end of the pause (see the module's docstring)."""
        before = [a for a in self._history if a.seq < lesson.seq and a.accepted]
        counted = before if lesson.limit else [a for a in before if a.seq >= lesson.since]
        if lesson.limit:
            counted = counted[-lesson.limit :]
        if not counted:
            return
        seconds = lesson.answered + lesson.retry_after - counted[0].sent
        limit = len(counted)
        if seconds <= 0 or any(_stricter(t.window, limit, seconds) for t in self._all_tracks()):
            return
        known = self._learned.get(limit)
        if known is None or known.window.seconds < seconds:
            now = self._clock.now()
            recent = (a.answered for a in self._history if a.answered > now - seconds)
            self._learned[limit] = _Track(Window(limit, seconds), recent)

    def _all_tracks(self) -> Iterable[_Track]:
        yield from self._tracks
        yield from self._learned.values()

    def _in_flight(self, window: Window) -> int:
        if window.method is None:
            return self._flying.total()
        return self._flying[window.method]

    def _allowance_spent(self) -> bool:
        if self._allowance is None:
            return False
        seq, remaining = self._allowance
        return self._next_seq - seq - 1 >= remaining

    async def _wait_for_room(self, method: str) -> None:
        while True:
            now = self._clock.now()
            delay = self._resume_at - now
            must_hear = False
            for track in self._all_tracks():
                if not track.window.counts(method):
                    continue
                track.forget(now)
                if self._in_flight(track.window) + len(track.answered) >= track.window.limit:
                    if not track.answered:
                        must_hear = True  # only requests in flight hold the window
                    else:
                        delay = max(delay, track.answered[0] + track.window.seconds - now)
            if self._allowance_spent() and any(self._flying.values()):
                must_hear = True
            if must_hear:
                await self._heard.wait()
                continue
            if delay <= 0:
                return
            await self._clock.sleep(delay)


def _stricter(window: Window, limit: int, seconds: float) -> bool:
    """Whether `window` already allows no more than `limit` requests in `seconds`."""
    return window.method is None and window.limit <= limit and window.seconds >= seconds


def _whole_number(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


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

"""Carry out a plan: one write per change, each checked, none for a run that is already right."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reconcile.domain import ObservedRun
from reconcile.errors import (
    ApiError,
    AuthError,
    BadResponseError,
    RateLimitError,
    WriteCancelled,
)
from reconcile.plan import Action, Change, Plan
from reconcile.tallyfy import TallyfyClient, reread
from reconcile.tallyfy.tasks import gather

WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class Result:
    """What became of one change. `writes` is 0 when the change was never started."""

    change: Change
    ok: bool
    detail: str
    writes: int
    observed: ObservedRun | None = None

    @property
    def started(self) -> bool:
        return self.writes > 0


@dataclass(frozen=True, repr=False)
class ApplyReport:
    """Every change's result, in plan order. `stopped`: an interruption ended the apply early."""

    results: tuple[Result, ...]
    stopped: bool = False

    def __repr__(self) -> str:
        # Counts, not contents: see Plan.__repr__.
        return (
            f"ApplyReport(succeeded={len(self.succeeded)}, failed={len(self.failed)}, "
            f"not_started={len(self.not_started)}, stopped={self.stopped})"
        )

    @property
    def succeeded(self) -> tuple[Result, ...]:
        return tuple(result for result in self.results if result.ok)

    @property
    def failed(self) -> tuple[Result, ...]:
        return tuple(result for result in self.results if result.started and not result.ok)

    @property
    def not_started(self) -> tuple[Result, ...]:
        return tuple(result for result in self.results if not result.started)


class Interruption(asyncio.Event):
    """A stop for `apply_plan` that SIGINT and SIGTERM set while `on_signals` is active.
    `announce` hears of the first signal."""

    def __init__(self, announce: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.announce = announce
        self.signum: int | None = None
        """The first signal received, for the exit code (128 + signum)."""

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Within the block, SIGINT and SIGTERM set this stop instead of ending the process, so
        the writes in flight finish and get checked."""
        loop = asyncio.get_running_loop()

        def interrupted(signum: int) -> None:
            if self.signum is None:
                self.signum = signum
                if self.announce is not None:
                    self.announce(signum)
            self.set()

        handled = (signal.SIGINT, signal.SIGTERM)
        for signum in handled:
            loop.add_signal_handler(signum, interrupted, signum)
        try:
            yield
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)


async def apply_plan(
    client: TallyfyClient,
    plan: Plan,
    *,
    on_result: Callable[[Result], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ApplyReport:
    """Carry out the changes, `client.parallelism` at a time. A failed change does not stop the
    others. `on_result` hears about each change as it finishes.

    Once `stop` is set no new write starts: the changes not begun are reported as not started,
    and a write already sent is finished and checked (re-read if its answer was ambiguous) but
    never sent again. Changes are handed out one by one, rather than all queued in the client,
    so that "not begun" is decided here and not somewhere in a queue of requests.
    """
    stop = stop or asyncio.Event()
    results: dict[int, Result] = {}
    pending = iter(enumerate(plan.changes))

    async def worker() -> None:
        for index, change in pending:
            if stop.is_set():
                results[index] = Result(change, ok=False, detail="not started", writes=0)
                continue
            results[index] = await _carry_out(client, change, stop)
            if on_result is not None:
                on_result(results[index])

    await gather(*(worker() for _ in range(min(client.parallelism, len(plan.changes)))))
    ordered = tuple(results[index] for index in range(len(plan.changes)))
    return ApplyReport(results=ordered, stopped=stop.is_set())


async def _carry_out(client: TallyfyClient, change: Change, stop: asyncio.Event) -> Result:
    write = client.archive if change.action is Action.ARCHIVE else client.activate
    done = "archived" if change.action is Action.ARCHIVE else "activated"
    writes = 0
    unsettled = ""  # why the previous write, re-read as not done, is being sent again
    while True:
        writes += 1
        try:
            run = await write(change.run_id, stop)
        except WriteCancelled:
            # The API did nothing for this attempt: it was never sent, or refused with a 429.
            if writes == 1:
                return Result(change, ok=False, detail="not started", writes=0)
            detail = f"{unsettled} A re-read showed it not done; interrupted, so not sent again."
            return Result(change, ok=False, detail=detail, writes=writes - 1)
        except ApiError as exc:
            # After a 5xx, a dropped connection or an unreadable or unexpected answer (a redirect
            # included) the write may or may not have happened; a 4xx such as 400, 404 or 422 may
            # be the API's answer to a write that was a no-op. Either way only a fresh read tells,
            # and nothing is sent again before it. Only a refused token or permission (401, 403)
            # and a rate limit that outlasted the deadline say for certain nothing was done.
            ambiguous = exc.status is None or exc.status >= 500 or isinstance(exc, BadResponseError)
            if isinstance(exc, (AuthError, RateLimitError)):
                return Result(change, ok=False, detail=str(exc), writes=writes)
            try:
                now = await reread(client, change.run_id)
            except ApiError as reread_exc:
                detail = f"{exc} Re-reading the run to check also failed: {reread_exc}"
                return Result(change, ok=False, detail=detail, writes=writes)
            if now is not None and now.state is change.target:
                return Result(change, True, f"{done} (confirmed by re-reading)", writes, now)
            if ambiguous and writes < WRITE_ATTEMPTS:
                if not stop.is_set():
                    unsettled = str(exc)
                    continue
                detail = f"{exc} A re-read showed it not done; interrupted, so not sent again."
                return Result(change, ok=False, detail=detail, writes=writes, observed=now)
            return Result(change, ok=False, detail=str(exc), writes=writes)
        if run.state is not change.target:
            detail = (
                f"the API accepted the request but answered with run {change.run_id} still "
                f"{run.state.value} (archived_at={run.archived_at!r})"
            )
            return Result(change, ok=False, detail=detail, writes=writes, observed=run)
        return Result(change, ok=True, detail=done, writes=writes, observed=run)

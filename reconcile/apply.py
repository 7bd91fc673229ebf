"""Carry out a plan: one write per change, each checked, none for a run that is already right."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from reconcile.errors import ApiError, BadResponseError
from reconcile.plan import Action, Change, Plan
from reconcile.tallyfy import ObservedRun, TallyfyClient, reread

WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class Result:
    """What became of one change."""

    change: Change
    ok: bool
    detail: str
    writes: int
    observed: ObservedRun | None = None


@dataclass(frozen=True)
class ApplyReport:
    """Every change's result, in plan order."""

    results: tuple[Result, ...]

    @property
    def succeeded(self) -> tuple[Result, ...]:
        return tuple(result for result in self.results if result.ok)

    @property
    def failed(self) -> tuple[Result, ...]:
        return tuple(result for result in self.results if not result.ok)


async def apply_plan(
    client: TallyfyClient,
    plan: Plan,
    *,
    on_result: Callable[[Result], None] | None = None,
) -> ApplyReport:
    """Run every change concurrently (the client bounds how many at once). A failed change does
    not stop the others. `on_result` hears about each change as it finishes."""

    async def run(change: Change) -> Result:
        result = await _carry_out(client, change)
        if on_result is not None:
            on_result(result)
        return result

    results = await asyncio.gather(*(run(change) for change in plan.changes))
    return ApplyReport(results=tuple(results))


async def _carry_out(client: TallyfyClient, change: Change) -> Result:
    write = client.archive if change.action is Action.ARCHIVE else client.activate
    done = "archived" if change.action is Action.ARCHIVE else "activated"
    writes = 0
    while True:
        writes += 1
        try:
            run = await write(change.run_id)
        except ApiError as exc:
            # After a 5xx, a dropped connection or an unreadable answer the write may or may not
            # have happened; a 404/422 may be the API's answer to a write that was a no-op.
            # Either way only a fresh read tells, and nothing is sent again before it.
            ambiguous = exc.status is None or exc.status >= 500 or isinstance(exc, BadResponseError)
            if not ambiguous and exc.status not in (404, 422):
                return Result(change, ok=False, detail=str(exc), writes=writes)
            try:
                now = await reread(client, change.run_id)
            except ApiError as reread_exc:
                detail = f"{exc} Re-reading the run to check also failed: {reread_exc}"
                return Result(change, ok=False, detail=detail, writes=writes)
            if now is not None and now.state is change.target:
                return Result(change, True, f"{done} (confirmed by re-reading)", writes, now)
            if ambiguous and writes < WRITE_ATTEMPTS:
                continue
            return Result(change, ok=False, detail=str(exc), writes=writes)
        if run.state is not change.target:
            detail = (
                f"the API accepted the request but answered with run {change.run_id} still "
                f"{run.state.value} (archived_at={run.archived_at!r})"
            )
            return Result(change, ok=False, detail=detail, writes=writes, observed=run)
        return Result(change, ok=True, detail=done, writes=writes, observed=run)

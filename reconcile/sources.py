"""The reads attribution needs (the activity feed with the token's user, and the organization's
auto-archive setting), started as soon as the read of the runs shows they will be needed.

A page that shows a declared run in another state than declared means the plan will have drift
to attribute: the feed is read from then on, alongside the remaining pages, rather than after
the last one (a round trip less). A page that shows a run declared active that is complete does
the same for the setting. A plan that needs neither reads neither.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from reconcile.domain import ObservedRun, RunState
from reconcile.state import StateFile
from reconcile.tallyfy import TallyfyClient
from reconcile.tallyfy.activity import Move, Sources, read_sources


class Reads:
    """The attribution's reads for one plan; `seen` is the read of the runs' callback. `feed`
    allows starting the feed early: only where every change will be attributed (no baseline)."""

    def __init__(self, client: TallyfyClient, state: StateFile, *, feed: bool) -> None:
        self._client = client
        self._state = state
        self._early_feed = feed
        self._declared = {run.run_id: run.state for run in state.runs}
        self._feed: asyncio.Task[Sources] | None = None
        self._setting: asyncio.Task[Sources] | None = None

    def seen(self, runs: Sequence[ObservedRun]) -> None:
        declared = self._declared
        if (
            self._feed is None
            and self._early_feed
            and any(declared.get(run.run_id, run.state) is not run.state for run in runs)
        ):
            self._feed = self._start(feed=True)
        if self._setting is None and any(
            run.completed_at is not None and declared.get(run.run_id) is RunState.ACTIVE
            for run in runs
        ):
            self._setting = self._start(setting=True)

    async def sources(
        self, *, feed: bool, setting: bool, moves: tuple[Move, ...] | None = None
    ) -> Sources:
        """What the plan needs: the feed (and the token's user) when `feed`, the setting when
        `setting`; the reads started early are taken, the others made now, concurrently.
        `moves` already read stand in for the feed's."""
        if feed and moves is not None:  # a drift check read the feed: only the user is left
            return await self._read(feed=True, setting=setting, moves=moves)
        wanted = [
            (self._feed or self._start(feed=True)) if feed else None,
            (self._setting or self._start(setting=True)) if setting else None,
        ]
        found = [None if task is None else await task for task in wanted]
        told, set_ = found
        return Sources(
            auto_archive=set_.auto_archive if set_ else None,
            me=told.me if told else None,
            moves=told.moves if told else None,
            unavailable=tuple(reason for part in found if part for reason in part.unavailable),
        )

    async def aclose(self) -> None:
        """Cancel the reads the plan turned out not to need (or that an error left behind)."""
        for task in (self._feed, self._setting):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _start(self, *, feed: bool = False, setting: bool = False) -> asyncio.Task[Sources]:
        return asyncio.create_task(self._read(feed=feed, setting=setting))

    async def _read(
        self, *, feed: bool, setting: bool, moves: tuple[Move, ...] | None = None
    ) -> Sources:
        drift = self._state.drift
        return await read_sources(
            self._client,
            today=datetime.now(UTC).date(),
            lookback=timedelta(days=drift.lookback_days),
            max_pages=drift.feed_pages,
            feed=feed,
            setting=setting,
            moves=moves,
        )

"""Read the current state of the declared runs with as few requests as the API allows.

A read never guesses. The listings are read whole and checked (reconcile.tallyfy.listing); a run
seen in both listings moved while they were read and is read again by GET; a declared run that
neither GET nor either listing knows is reported as gone, never taken for archived or active.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconcile.config import Fetch
from reconcile.domain import DesiredRun, ObservedRun
from reconcile.errors import UnknownRunsError
from reconcile.tallyfy.client import TallyfyClient
from reconcile.tallyfy.listing import Listing, Opened, moved, open_listing, read_listing
from reconcile.tallyfy.runs import Page
from reconcile.tallyfy.tasks import gather

Progress = Callable[[int, int], None]
"""Called with (requests answered, requests expected) as a read goes on."""
Seen = Callable[[Sequence[ObservedRun]], None]
"""Called with the runs of each answer (a listing page, or one run) as they arrive."""
FEW_RUNS = 3  # at or below this, single GETs cost no more than the two listings' first pages


@dataclass(frozen=True)
class Observation:
    """What a read found of the declared runs."""

    runs: Mapping[str, ObservedRun]
    """The declared runs the organization has, by run ID, in declaration order."""
    gone: tuple[DesiredRun, ...] = ()
    """Declared runs that neither GET nor either listing knows, in declaration order."""
    moved: tuple[str, ...] = ()
    """Runs seen in both listings (they moved while the listings were read), each read again."""


class _Tally:
    """Counts a read's requests for a Progress callback; the total grows as the plan firms up."""

    def __init__(self, progress: Progress | None, seen: Seen | None = None) -> None:
        self._progress = progress
        self._seen = seen
        self.done = 0
        self.total = 0

    def expect(self, requests: int) -> None:
        if requests > 0:
            self.total += requests
            self._tell()

    def tick(self, answer: object = None) -> None:
        """One request answered (also usable as a page callback), with the runs it holds, if
        given. Listings read on past their expected pages grow the total as they go."""
        if self._seen is not None:
            if isinstance(answer, Page):
                self._seen(answer.runs)
            elif isinstance(answer, ObservedRun):
                self._seen((answer,))
        self.done += 1
        self.total = max(self.total, self.done)
        self._tell()

    def _tell(self) -> None:
        if self._progress is not None:
            self._progress(self.done, self.total)


async def read_state(
    client: TallyfyClient,
    declared: Sequence[DesiredRun],
    fetch: Fetch = "auto",
    progress: Progress | None = None,
    seen: Seen | None = None,
) -> Observation:
    """The observed state of every declared run, and the declared runs that are gone.

    `get` reads each run with one GET; `list` pages through the listing without and with archived
    runs; `auto` reads the first page of both listings and keeps listing only when that takes
    fewer requests than one GET per run. A run GET calls unknown is looked for in both listings
    before it is called gone, because the API may answer 404 for archived runs. `progress`
    hears how many of the expected requests have been answered, `seen` the runs of each answer.
    """
    wanted = [run.run_id for run in declared]
    tally = _Tally(progress, seen)
    moved_ids: set[str] = set()
    whole = False
    if fetch == "get" or (fetch == "auto" and len(wanted) <= FEW_RUNS):
        found = await _get_each(client, wanted, tally)
    else:
        found, moved_ids, whole = await _from_listings(client, wanted, tally, fetch == "auto")
    missing = {run_id for run_id in wanted if run_id not in found}
    if missing and not whole:
        listed, again = await _whole_listings(client, tally, missing)
        found.update(listed)
        moved_ids |= again
    return Observation(
        runs={run_id: found[run_id] for run_id in wanted if run_id in found},
        gone=tuple(run for run in declared if run.run_id not in found),
        moved=tuple(sorted(moved_ids)),
    )


async def observe(
    client: TallyfyClient,
    declared: Sequence[DesiredRun],
    fetch: Fetch = "auto",
    progress: Progress | None = None,
) -> dict[str, ObservedRun]:
    """The observed state of every declared run, keyed by run ID; UnknownRunsError names every
    declared run that is gone."""
    seen = await read_state(client, declared, fetch, progress)
    if seen.gone:
        raise UnknownRunsError(
            [run.run_id for run in seen.gone],
            client.target.org_id,
            [str(run.source) for run in seen.gone],
        )
    return dict(seen.runs)


async def _get_each(
    client: TallyfyClient, run_ids: Sequence[str], tally: _Tally
) -> dict[str, ObservedRun]:
    async def get(run_id: str) -> ObservedRun | None:
        run = await client.get_run(run_id)
        tally.tick(run)
        return run

    tally.expect(len(run_ids))
    results = await gather(*(get(run_id) for run_id in run_ids))
    return {run.run_id: run for run in results if run is not None}


def _pages(page: Page) -> int:
    """The pages a listing needs, from its count at the page size served (see listing)."""
    if page.total is not None and page.runs:
        return math.ceil(page.total / len(page.runs))
    return page.total_pages or 1


async def _from_listings(
    client: TallyfyClient, run_ids: Sequence[str], tally: _Tally, decide: bool
) -> tuple[dict[str, ObservedRun], set[str], bool]:
    """The declared runs from both listings read whole, the runs that moved, and True; or, when
    `decide` finds single GETs cheaper, the runs from GETs, no moves and False."""
    tally.expect(2)
    active_first, archived_first = await gather(
        open_listing(client, Listing.ACTIVE, on_page=tally.tick),
        open_listing(client, Listing.ARCHIVED, on_page=tally.tick),
    )
    pages = _pages(active_first.first) + _pages(archived_first.first)
    if decide and pages > len(run_ids):
        return await _get_each(client, run_ids, tally), set(), False
    tally.expect(pages - 2)
    listed, moved_ids = await _read_both(client, active_first, archived_first, tally)
    wanted = set(run_ids)
    found = {run_id: run for run_id, run in listed.items() if run_id in wanted}
    # A declared run that neither whole listing holds is gone, or was skipped as runs shifted
    # between pages while they were read: one GET tells.
    unseen = [run_id for run_id in run_ids if run_id not in found]
    found.update(await _get_each(client, unseen, tally))
    return found, moved_ids & wanted, True


async def _whole_listings(
    client: TallyfyClient, tally: _Tally, run_ids: set[str]
) -> tuple[dict[str, ObservedRun], set[str]]:
    """`run_ids`, if either whole listing holds them (GET answered 404 for them)."""
    tally.expect(2)
    active_first, archived_first = await gather(
        open_listing(client, Listing.ACTIVE, on_page=tally.tick),
        open_listing(client, Listing.ARCHIVED, on_page=tally.tick),
    )
    tally.expect(_pages(active_first.first) + _pages(archived_first.first) - 2)
    listed, moved_ids = await _read_both(client, active_first, archived_first, tally)
    return {k: v for k, v in listed.items() if k in run_ids}, moved_ids & run_ids


async def _read_both(
    client: TallyfyClient, active: Opened, archived: Opened, tally: _Tally
) -> tuple[dict[str, ObservedRun], set[str]]:
    """Both listings whole, with every run seen in both read again by GET."""
    active_runs, archived_runs = await gather(
        read_listing(client, active, on_page=tally.tick),
        read_listing(client, archived, on_page=tally.tick),
    )
    runs, contradicted = moved(active_runs, archived_runs)
    tally.expect(len(contradicted))
    await read_again(client, runs, contradicted, tally.tick)
    return runs, contradicted


async def read_again(
    client: TallyfyClient,
    runs: dict[str, ObservedRun],
    run_ids: Iterable[str],
    on_read: Callable[[], None] | None = None,
    relations: Mapping[str, str] | None = None,
) -> None:
    """Replace each of `run_ids` in `runs` with a fresh read, or drop it if it is gone now: the
    runs seen in both listings, whose listed copies are stale. `relations` (such as
    `{"with": "tags"}`) are asked for again, so the fresh copy holds what the listed one held."""
    for run_id in sorted(run_ids):
        now = await reread(client, run_id, relations)
        if on_read is not None:
            on_read()
        if now is None:
            del runs[run_id]
        else:
            runs[run_id] = now


async def reread(
    client: TallyfyClient, run_id: str, relations: Mapping[str, str] | None = None
) -> ObservedRun | None:
    """The run as it is now, or None if the organization does not have it. `relations` are
    asked for with it (by GET, or by the archived listing when GET answers 404)."""
    run = await client.get_run(run_id, relations)
    if run is not None:
        return run
    archived = await client.list_runs("only", query=relations)
    return next((run for run in archived if run.run_id == run_id), None)

"""Read the current state of the declared runs with as few requests as the API allows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconcile.config import Fetch
from reconcile.domain import DesiredRun, ObservedRun
from reconcile.errors import UnknownRunsError
from reconcile.tallyfy.client import TallyfyClient
from reconcile.tallyfy.runs import Page
from reconcile.tallyfy.tasks import gather

Progress = Callable[[int, int], None]
"""Called with (requests answered, requests expected) as a read goes on."""
FEW_RUNS = 3  # at or below this, single GETs cost no more than the two listings' first pages


class _Tally:
    """Counts a read's requests for a Progress callback; the total grows as the plan firms up."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self.done = 0
        self.total = 0

    def expect(self, requests: int) -> None:
        if requests:
            self.total += requests
            self._tell()

    def tick(self, _: object = None) -> None:
        """One request answered (also usable as a page callback). Listings without a page count
        grow the total as they go."""
        self.done += 1
        self.total = max(self.total, self.done)
        self._tell()

    def _tell(self) -> None:
        if self._progress is not None:
            self._progress(self.done, self.total)


async def observe(
    client: TallyfyClient,
    declared: Sequence[DesiredRun],
    fetch: Fetch = "auto",
    progress: Progress | None = None,
) -> dict[str, ObservedRun]:
    """The observed state of every declared run, keyed by run ID.

    `get` reads each run with one GET; `list` pages through the listing with and without archived
    runs; `auto` reads the first page of both listings and keeps listing only when that takes
    fewer requests than one GET per run. A run that GET calls unknown is looked for among the
    archived runs before it is reported missing, because the API may answer 404 for archived runs.
    `progress` hears how many of the expected requests have been answered.
    """
    wanted = [run.run_id for run in declared]
    tally = _Tally(progress)
    if fetch == "get" or (fetch == "auto" and len(wanted) <= FEW_RUNS):
        found = await _get_each(client, wanted, tally)
    else:
        found = await _from_listings(client, wanted, tally, decide=fetch == "auto")
    missing = {run_id for run_id in wanted if run_id not in found}
    if missing:
        found.update(await _among_archived(client, missing, tally))
    unknown = [run for run in declared if run.run_id not in found]
    if unknown:
        raise UnknownRunsError(
            [run.run_id for run in unknown],
            client.target.org_id,
            [str(run.source) for run in unknown],
        )
    return {run_id: found[run_id] for run_id in wanted}


async def _get_each(
    client: TallyfyClient, run_ids: Sequence[str], tally: _Tally
) -> dict[str, ObservedRun]:
    async def get(run_id: str) -> ObservedRun | None:
        run = await client.get_run(run_id)
        tally.tick()
        return run

    tally.expect(len(run_ids))
    results = await gather(*(get(run_id) for run_id in run_ids))
    return {run.run_id: run for run in results if run is not None}


async def _from_listings(
    client: TallyfyClient, run_ids: Sequence[str], tally: _Tally, *, decide: bool
) -> dict[str, ObservedRun]:
    tally.expect(2)
    active_first, archived_first = await gather(
        client.list_page(None, 1), client.list_page("only", 1)
    )
    tally.tick()
    tally.tick()
    pages = (active_first.total_pages or 1) + (archived_first.total_pages or 1)
    if decide and pages > len(run_ids):
        return await _get_each(client, run_ids, tally)
    tally.expect(pages - 2)
    active, archived = await gather(
        client.list_runs(None, active_first, on_page=tally.tick),
        client.list_runs("only", archived_first, on_page=tally.tick),
    )
    wanted = set(run_ids)
    found = {run.run_id: run for run in (*active, *archived) if run.run_id in wanted}
    # A run can move between listings while they are read; one GET settles where it is now.
    unseen = [run_id for run_id in run_ids if run_id not in found]
    found.update(await _get_each(client, unseen, tally))
    return found


async def reread(client: TallyfyClient, run_id: str) -> ObservedRun | None:
    """The run as it is now, or None if the organization does not have it."""
    run = await client.get_run(run_id)
    if run is not None:
        return run
    return (await _among_archived(client, {run_id}, _Tally(None))).get(run_id)


async def _among_archived(
    client: TallyfyClient, run_ids: set[str], tally: _Tally
) -> dict[str, ObservedRun]:
    def heard(page: Page) -> None:
        if page.current_page == 1:
            tally.expect(page.total_pages or 0)
        tally.tick()

    listed = await client.list_runs("only", on_page=heard)
    return {run.run_id: run for run in listed if run.run_id in run_ids}

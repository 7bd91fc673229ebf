"""Read the current state of the declared runs with as few requests as the API allows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from reconcile.errors import UnknownRunsError
from reconcile.state import DesiredRun
from reconcile.tallyfy.client import TallyfyClient
from reconcile.tallyfy.runs import ObservedRun

Fetch = Literal["auto", "get", "list"]
FEW_RUNS = 3  # at or below this, single GETs cost no more than the two listings' first pages


async def observe(
    client: TallyfyClient, declared: Sequence[DesiredRun], fetch: Fetch = "auto"
) -> dict[str, ObservedRun]:
    """The observed state of every declared run, keyed by run ID.

    `get` reads each run with one GET; `list` pages through the listing with and without archived
    runs; `auto` reads the first page of both listings and keeps listing only when that takes
    fewer requests than one GET per run. A run that GET calls unknown is looked for among the
    archived runs before it is reported missing, because the API may answer 404 for archived runs.
    """
    wanted = [run.run_id for run in declared]
    if fetch == "get" or (fetch == "auto" and len(wanted) <= FEW_RUNS):
        found = await _get_each(client, wanted)
    else:
        found = await _from_listings(client, wanted, decide=fetch == "auto")
    missing = {run_id for run_id in wanted if run_id not in found}
    if missing:
        found.update(await _among_archived(client, missing))
    unknown = [run for run in declared if run.run_id not in found]
    if unknown:
        raise UnknownRunsError(
            [run.run_id for run in unknown],
            client.target.org_id,
            [str(run.source) for run in unknown],
        )
    return {run_id: found[run_id] for run_id in wanted}


async def _get_each(client: TallyfyClient, run_ids: Sequence[str]) -> dict[str, ObservedRun]:
    results = await asyncio.gather(*(client.get_run(run_id) for run_id in run_ids))
    return {run.run_id: run for run in results if run is not None}


async def _from_listings(
    client: TallyfyClient, run_ids: Sequence[str], *, decide: bool
) -> dict[str, ObservedRun]:
    active_first, archived_first = await asyncio.gather(
        client.list_page(None, 1), client.list_page("only", 1)
    )
    pages = (active_first.total_pages or 1) + (archived_first.total_pages or 1)
    if decide and pages > len(run_ids):
        return await _get_each(client, run_ids)
    active, archived = await asyncio.gather(
        client.list_runs(None, active_first), client.list_runs("only", archived_first)
    )
    wanted = set(run_ids)
    found = {run.run_id: run for run in (*active, *archived) if run.run_id in wanted}
    # A run can move between listings while they are read; one GET settles where it is now.
    unseen = [run_id for run_id in run_ids if run_id not in found]
    found.update(await _get_each(client, unseen))
    return found


async def reread(client: TallyfyClient, run_id: str) -> ObservedRun | None:
    """The run as it is now, or None if the organization does not have it."""
    run = await client.get_run(run_id)
    if run is not None:
        return run
    return (await _among_archived(client, {run_id})).get(run_id)


async def _among_archived(client: TallyfyClient, run_ids: set[str]) -> dict[str, ObservedRun]:
    return {run.run_id: run for run in await client.list_runs("only") if run.run_id in run_ids}

"""Read every run of the organization through its listings (`per_page` at the cap), with and
without archived runs: what `import` adopts and `plan --show-unmanaged` lists."""

from __future__ import annotations

from reconcile.domain import ObservedRun
from reconcile.selection import Include, Selection
from reconcile.tallyfy import TallyfyClient
from reconcile.tallyfy.client import Archived
from reconcile.tallyfy.listing import moved
from reconcile.tallyfy.observe import read_again
from reconcile.tallyfy.tasks import gather

_LISTINGS: dict[Include, tuple[Archived | None, ...]] = {
    "active": (None,),
    "archived": ("only",),
    "all": (None, "only"),
}


async def list_org_runs(
    client: TallyfyClient, include: Include = "all", query: dict[str, str] | None = None
) -> list[ObservedRun]:
    """Every run of the organization's listings, each read whole, sorted by run ID. A run archived
    or activated while the listings are read appears in both: it is read again."""
    listings = await gather(
        *(client.list_runs(archived, query=query) for archived in _LISTINGS[include])
    )
    unique, contradicted = moved(*listings)
    # The fresh read asks for the relations the listing did: without them a moved run would come
    # back with no tags, and a filter on tags would drop it.
    relations = {"with": query["with"]} if query and "with" in query else None
    await read_again(client, unique, contradicted, relations=relations)
    return [unique[run_id] for run_id in sorted(unique)]


async def select_runs(client: TallyfyClient, selection: Selection) -> list[ObservedRun]:
    """The runs the selection picks, sorted by run ID."""
    runs = await list_org_runs(client, selection.include, selection.query())
    return [run for run in runs if selection.matches(run)]

"""Read a whole run listing, and refuse one that is not what it claims to be.

The sources leave the listings open in ways that can silently drop runs: `total_pages` may be
computed for another page size, `per_page` may be capped or ignored, `links` may be `null`, `{}`
or `[]`, and a server may ignore the parameter that asks for archived runs and answer the default
listing instead. So a listing is read by page number up to what its count needs at the page size
actually served, checked against `meta.pagination.total`, and read on while the count is not met;
it ends in an error, never in a partial result. Archived runs are asked for with `archived=only`,
then with `status=archived`; an answer whose runs are not all archived is not the archived
listing. The default listing may hold archived runs on some servers: they are left out of it,
since the archived listing is where archived runs are read.

Every listing is bounded: at most MAX_RUNS runs and MAX_PAGES pages, and a count that keeps
growing stops after a few pages more than it first needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from reconcile.domain import ObservedRun
from reconcile.errors import ApiError, BadResponseError
from reconcile.tallyfy.runs import Page
from reconcile.tallyfy.tasks import gather

if TYPE_CHECKING:
    from reconcile.tallyfy.client import TallyfyClient

PageCallback = Callable[[Page], None]
MAX_RUNS = 500_000
"""The most runs one listing may count: 50 times the largest organization measured."""
MAX_PAGES = 20_000
"""The most pages one listing may need (200 pages of 100 runs cover 20,000 runs)."""
ARCHIVED_PARAMETERS: tuple[Mapping[str, str], ...] = ({"archived": "only"}, {"status": "archived"})
"""How archived runs are asked for, in order: Tallyfy's SDK and MCP server use `archived=only`,
its docs, CLI and n8n node `status=archived`."""


class Listing(Enum):
    """Which of the organization's runs a listing holds."""

    ACTIVE = "active"
    """The default listing: runs whose `archived_at` is null."""
    ARCHIVED = "archived"
    """Archived runs only: every run has `archived_at` set."""


class ListingError(BadResponseError):
    """A listing cannot be read whole: its counts cannot be met, it never ends, or no parameter
    lists archived runs."""


@dataclass(frozen=True)
class Opened:
    """A listing's first page, and the parameters that produced it."""

    listing: Listing
    params: Mapping[str, str]
    first: Page


async def open_listing(
    client: TallyfyClient,
    listing: Listing,
    query: Mapping[str, str] | None = None,
    on_page: PageCallback | None = None,
) -> Opened:
    """The first page of `listing`, asked for the way this server understands."""
    query = dict(query or {})
    if listing is Listing.ACTIVE:
        first = await _page(client, query, 1, on_page)
        return Opened(listing, query, first)
    refusals: list[str] = []
    empty: Opened | None = None
    for asked in ARCHIVED_PARAMETERS:
        params = {**query, **asked}
        try:
            first = await _page(client, params, 1, on_page)
        except ApiError as exc:
            if exc.status not in (400, 404, 422):
                raise
            refusals.append(f"GET {describe(client, params, 1)} was refused (HTTP {exc.status})")
            continue
        active = [run.run_id for run in first.runs if run.archived_at is None]
        if not first.runs:
            # Empty proves nothing: an ignored parameter answers the default listing, which is
            # empty when every run is archived. The other parameter may list them.
            empty = empty or Opened(listing, params, first)
            continue
        if not active:
            return Opened(listing, params, first)
        refusals.append(
            f"GET {describe(client, params, 1)} answered {len(active)} run(s) that are not "
            f"archived (such as {active[0]}), so the server ignored the parameter"
        )
    if empty is not None:
        return empty
    raise ListingError(
        "No listing of archived runs could be read: " + "; ".join(refusals) + ". Nothing was "
        "written. Use --fetch get to read declared runs one by one.",
        method="GET",
        path=_path(client),
    )


async def read_listing(
    client: TallyfyClient, opened: Opened, on_page: PageCallback | None = None
) -> list[ObservedRun]:
    """Every run of an opened listing, or ListingError."""
    first = opened.first
    if first.total is None:
        pages = await _by_links(client, opened, on_page)
    else:
        pages = await _by_count(client, opened, first.total, on_page)
    runs: dict[str, ObservedRun] = {}
    for page in pages:
        for run in page.runs:
            runs[run.run_id] = run
    if opened.listing is Listing.ARCHIVED:
        stray = next((run for run in runs.values() if run.archived_at is None), None)
        if stray is not None:
            raise ListingError(
                f"The archived listing holds run {stray.run_id}, which is not archived; the "
                "listing cannot be trusted and nothing was written.",
                method="GET",
                path=describe(client, opened.params, None),
            )
        return list(runs.values())
    return [run for run in runs.values() if run.archived_at is None]


async def list_all(
    client: TallyfyClient,
    listing: Listing,
    query: Mapping[str, str] | None = None,
    on_page: PageCallback | None = None,
) -> list[ObservedRun]:
    """Every run of `listing` (see the module's docstring)."""
    opened = await open_listing(client, listing, query, on_page)
    return await read_listing(client, opened, on_page)


def moved(*listings: Sequence[ObservedRun]) -> tuple[dict[str, ObservedRun], set[str]]:
    """The runs of several listings by ID, and the IDs seen in more than one state: those moved
    while the listings were read, and must be read again before anything is decided on them."""
    runs: dict[str, ObservedRun] = {}
    contradicted: set[str] = set()
    for listing in listings:
        for run in listing:
            seen = runs.setdefault(run.run_id, run)
            if seen is not run and seen.state is not run.state:
                contradicted.add(run.run_id)
    return runs, contradicted


async def _by_count(
    client: TallyfyClient, opened: Opened, total: int, on_page: PageCallback | None
) -> list[Page]:
    """Pages by number, as many as `total` needs at the size page 1 was served with, then more
    while the runs gathered fall short of the count (which may grow while it is read)."""
    first = opened.first
    where = describe(client, opened.params, None)
    if total > MAX_RUNS:
        raise ListingError(
            f"The listing counts {total:,} runs; reconcile reads at most {MAX_RUNS:,} in one "
            "listing, so it stopped before reading it. Nothing was written.",
            method="GET",
            path=where,
        )
    size = len(first.runs)
    if total and not size:
        raise _short(where, total, 0, 1)
    needed = math.ceil(total / size) if total else 1
    if needed > MAX_PAGES:
        raise ListingError(
            f"The listing counts {total:,} runs but serves {size} a page: {needed:,} pages, more "
            f"than the {MAX_PAGES:,} reconcile reads. Nothing was written.",
            method="GET",
            path=where,
        )
    pages = [first]
    pages += await gather(*(_page(client, opened.params, n, on_page) for n in range(2, needed + 1)))
    counted = max(page.total or 0 for page in pages)
    seen = {run.run_id for page in pages for run in page.runs}
    # A few runs may be added while the listing is read; a count that keeps growing is refused.
    last = min(needed + 2 + needed // 20, MAX_PAGES)
    number = needed
    while len(seen) < counted:
        number += 1
        if number > last:
            raise ListingError(
                f"The listing's count grew from {total:,} to {counted:,} runs while it was "
                f"read, and {number - 1} pages held {len(seen):,}; it was not read further. "
                "Nothing was written; run the command again.",
                method="GET",
                path=where,
            )
        page = await _page(client, opened.params, number, on_page)
        fresh = {run.run_id for run in page.runs} - seen
        if not fresh:
            raise _short(where, counted, len(seen), number)
        pages.append(page)
        seen |= fresh
        counted = max(counted, page.total or 0)
    return pages


async def _by_links(
    client: TallyfyClient, opened: Opened, on_page: PageCallback | None
) -> list[Page]:
    """A listing without a count: `total_pages` pages, or `links.next` one page at a time."""
    first = opened.first
    where = describe(client, opened.params, None)
    if first.total_pages is not None:
        if first.total_pages > MAX_PAGES:
            raise ListingError(
                f"The listing claims {first.total_pages:,} pages, more than the {MAX_PAGES:,} "
                "reconcile reads, and gives no count of its runs. Nothing was written.",
                method="GET",
                path=where,
            )
        rest = range(2, first.total_pages + 1)
        return [
            first,
            *await gather(*(_page(client, opened.params, n, on_page) for n in rest)),
        ]
    pages = [first]
    visited: set[str] = set()
    page = first
    while page.next_url is not None and page.runs:
        if page.next_url in visited or len(pages) >= MAX_PAGES:
            raise ListingError(
                f"The listing's next-page links do not end (page {len(pages)} links to "
                f"{page.next_url!r}, already read or beyond {MAX_PAGES:,} pages). Nothing was "
                "written.",
                method="GET",
                path=where,
            )
        visited.add(page.next_url)
        page = await client.follow(page.next_url)
        if on_page is not None:
            on_page(page)
        pages.append(page)
    return pages


async def _page(
    client: TallyfyClient, params: Mapping[str, str], number: int, on_page: PageCallback | None
) -> Page:
    page = await client.list_page(number, params)
    if on_page is not None:
        on_page(page)
    return page


def _short(where: str, counted: int, gathered: int, pages: int) -> ListingError:
    return ListingError(
        f"The listing counts {counted:,} runs but its pages hold only {gathered:,} (page {pages} "
        "added none); the rest cannot be read. Nothing was written: a partial listing is never "
        "taken for the whole organization.",
        method="GET",
        path=where,
    )


def _path(client: TallyfyClient) -> str:
    return f"/organizations/{client.target.org_id}/runs"


def describe(client: TallyfyClient, params: Mapping[str, str], page: int | None) -> str:
    """A listing request's path and query as an error message shows them."""
    shown = dict(params) if page is None else {**params, "page": str(page)}
    return f"{_path(client)}?{urlencode(shown, quote_via=quote)}" if shown else _path(client)

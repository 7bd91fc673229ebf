"""GET /organizations/{org}/runs: query parsing, filters, sorting and Fractal-style pagination."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from reconcile.sandbox.model import Behaviour
from reconcile.sandbox.responses import SandboxResponse, encode, invalid, raw_json
from reconcile.sandbox.store import ArchivedMode, RunRecord, RunStore

_SORTS = ("created_at", "-created_at", "name", "-name")
_TRUE = ("true", "1", "yes")
# Documented filters the sandbox does not apply -> the values that filter nothing.
_UNIMPLEMENTED: dict[str, tuple[str, ...]] = {"folder": (), "task_status": ("all",)}


@dataclass(frozen=True)
class ListQuery:
    """A parsed listing request. Filter fields left None do not filter."""

    archived: ArchivedMode = "exclude"
    status: str | None = None
    q: str | None = None
    checklist_id: str | None = None
    owners: frozenset[int] | None = None
    tags: frozenset[str] | None = None
    untagged: bool = False
    starred: bool | None = None
    run_type: str | None = None
    groups: frozenset[str] | None = None
    sort: str = "created_at"
    page: int = 1
    per_page: int = 10
    without_pagination: bool = False
    with_tags: bool = False

    @property
    def filters(self) -> bool:
        """True when anything beyond the archived mode narrows the runs."""
        return (
            any(
                value is not None
                for value in (
                    self.status,
                    self.q,
                    self.checklist_id,
                    self.owners,
                    self.tags,
                    self.starred,
                    self.run_type,
                    self.groups,
                )
            )
            or self.untagged
        )

    def matches(self, run: RunRecord, archive_sets_status: bool) -> bool:
        """Whether `run` passes every filter (the archived mode is applied by the caller)."""
        if self.status is not None:
            # Filter on the status the client sees, so archived runs can show as "archived".
            shown = run.shown_status(archive_sets_status)
            wanted = ("problem", "issue") if self.status == "problem" else (self.status,)
            if shown not in wanted:
                return False
        if self.q is not None and self.q not in run.name.casefold():
            return False
        if self.checklist_id is not None and run.checklist_id != self.checklist_id:
            return False
        # The docs: owners matches the process owner or any assignee.
        if self.owners is not None and not (
            run.owner_id in self.owners or self.owners.intersection(run.users)
        ):
            return False
        if self.tags is not None and not self.tags.intersection(run.tags):
            return False
        if self.untagged and run.tags:
            return False
        if self.starred is not None and run.starred != self.starred:
            return False
        if self.run_type is not None and self.run_type != "procedure":
            return False
        return self.groups is None or bool(self.groups.intersection(run.groups))


def wants_tags(query: Mapping[str, str]) -> bool:
    """Whether the request asks for the tags relation (`with=tags`, among others)."""
    return "tags" in query.get("with", "").split(",")


def parse_list_query(query: Mapping[str, str], behaviour: Behaviour) -> ListQuery | SandboxResponse:
    """Read the documented listing parameters; a 422 response when one is unusable."""
    # A documented filter the sandbox cannot apply is refused rather than ignored: ignoring it
    # would answer with more runs than asked for, as if they had matched.
    missing = {
        name: [f"The sandbox does not implement the {name} filter."]
        for name in _UNIMPLEMENTED
        if query.get(name, "") not in ("", *_UNIMPLEMENTED[name])
    }
    if missing:
        names = " and ".join(missing)
        plural = "s" if len(missing) > 1 else ""
        return invalid(missing, f"The sandbox does not implement the {names} filter{plural}.")
    errors: dict[str, list[str]] = {}
    archived, status = _archived_mode(query, behaviour)
    starred = query["starred"].lower() in _TRUE if "starred" in query else None
    if status == "starred":
        starred, status = True, None
    owners: frozenset[int] | None = None
    if query.get("owners"):
        try:
            owners = frozenset(int(part) for part in query["owners"].split(",") if part)
        except ValueError:
            errors["owners"] = ["The owners must be a comma-separated list of user ids."]
    tag_ids = [t for t in query.get("tag_ids", "").split(",") if t]
    if query.get("tag"):
        tag_ids.append(query["tag"])
    groups = [g for g in query.get("groups", "").split(",") if g]
    per_page = min(behaviour.per_page_default, behaviour.per_page_cap)
    if query.get("per_page") and not behaviour.per_page_ignored:
        try:
            per_page = int(query["per_page"])
        except ValueError:
            errors["per_page"] = ["The per page must be an integer."]
        else:
            if per_page < 1:
                errors["per_page"] = ["The per page must be at least 1."]
            per_page = min(per_page, behaviour.per_page_cap)
    try:
        # Laravel's paginator falls back to page 1 for anything that is not a positive integer.
        page = max(int(query.get("page", "1")), 1)
    except ValueError:
        page = 1
    sort = query.get("sort") or query.get("sort_by") or "created_at"
    if errors:
        return invalid(errors)
    return ListQuery(
        archived=archived,
        status=status,
        q=query["q"].casefold() if query.get("q") else None,
        checklist_id=query.get("checklist_id") or query.get("blueprint_id") or None,
        owners=owners,
        tags=frozenset(tag_ids) if tag_ids else None,
        untagged=query.get("untagged", "").lower() in _TRUE,
        starred=starred,
        run_type=query.get("type") or None,
        groups=frozenset(groups) if groups else None,
        sort=sort if sort in _SORTS else "created_at",
        page=page,
        per_page=per_page,
        without_pagination=query.get("without_pagination", "").lower() in _TRUE,
        with_tags=wants_tags(query),
    )


def _archived_mode(
    query: Mapping[str, str], behaviour: Behaviour
) -> tuple[ArchivedMode, str | None]:
    """Which runs the listing covers, and the status filter left once that is settled."""
    mode: ArchivedMode = "include" if behaviour.default_lists_archived else "exclude"
    status = query.get("status") or None
    flag = query.get("archived", "").lower()
    if behaviour.archived_listing != "status":
        if flag == "only":
            mode = "only"
        elif flag in _TRUE:
            mode = "include"
        elif flag in ("false", "0", "no"):
            mode = "exclude"
    if status == "archived" and behaviour.archived_listing != "archived":
        # The docs' spelling of archived=only (clients disagree on which one works).
        mode, status = "only", None
    return mode, status


def list_runs(
    store: RunStore,
    listing: ListQuery,
    behaviour: Behaviour,
    page_url: str,
    query: Mapping[str, str],
) -> SandboxResponse:
    """Answer one listing page. `page_url` is the absolute URL without query, for the links."""
    sets_status = behaviour.archive_sets_status
    keys = store.ordered_keys(listing.archived)
    reverse = listing.sort.startswith("-")
    runs: Sequence[RunRecord] | None = None
    if listing.filters or listing.sort.endswith("name"):
        selected = [r for r in store.records(keys) if listing.matches(r, sets_status)]
        if listing.sort.endswith("name"):
            selected.sort(key=lambda r: (r.name.casefold(), r.key))
        runs = selected
    total = len(keys) if runs is None else len(runs)

    if listing.without_pagination:
        per_page, page, start, stop = max(total, 1), 1, 0, total
    else:
        per_page, page = listing.per_page, listing.page
        start, stop = min((page - 1) * per_page, total), min(page * per_page, total)
    if reverse:
        start, stop = total - stop, total - start
    chosen: Iterable[RunRecord]
    chosen = store.records(keys[start:stop]) if runs is None else runs[start:stop]
    items = [run.encoded(sets_status, listing.with_tags) for run in chosen]
    if reverse:
        items.reverse()

    total_pages = max(math.ceil(total / per_page), 1)
    links: dict[str, str] = {}
    if not listing.without_pagination:
        if page > 1:
            links["previous"] = _link(page_url, query, page - 1)
        if page < total_pages:
            links["next"] = _link(page_url, query, page + 1)
    pagination: dict[str, object] = {
        "total": total,
        "count": len(items),
        "per_page": per_page,
        "current_page": page,
    }
    if behaviour.total_pages == "served":
        pagination["total_pages"] = total_pages
    elif isinstance(behaviour.total_pages, int):
        # Computed for another page size than the one served (MCP saw this).
        pagination["total_pages"] = max(math.ceil(total / behaviour.total_pages), 1)
    if behaviour.pagination_links == "php":
        # PHP encodes an empty associative array as [], and clients must cope with that.
        pagination["links"] = links or []
    else:
        pagination["links"] = None if behaviour.pagination_links == "null" else {}
    meta = encode({"pagination": pagination})
    return raw_json(200, b'{"data":[' + b",".join(items) + b'],"meta":' + meta + b"}")


def _link(page_url: str, query: Mapping[str, str], page: int) -> str:
    params = {**query, "page": str(page)}
    # Spaces as %20, never "+": the API does not decode "+" as a space.
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe=',')}" for k, v in params.items())
    return f"{page_url}?{encoded}"

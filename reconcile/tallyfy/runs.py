"""Turn API response bodies into values, refusing anything that does not look like what Tallyfy
documents. A write is only ever planned from a run that passed these checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconcile.domain import ID_PATTERN, ObservedRun, Tag


@dataclass(frozen=True)
class Page:
    """One page of a run listing."""

    runs: tuple[ObservedRun, ...]
    current_page: int
    total_pages: int | None
    total: int | None
    next_url: str | None


TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
)
"""The shapes of `archived_at` Tallyfy sends: ISO 8601 (`2026-01-10T09:00:00.000Z`) or MySQL's
`2026-01-10 09:00:00`."""


class InvalidBody(ValueError):
    """The body does not have the documented shape; the message says what is wrong."""


def parse_run(body: Any, expected_id: str | None = None) -> ObservedRun:
    """The run in a `{"data": {...}}` body."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise InvalidBody('expected a JSON object {"data": {...run...}}')
    run = _run(body["data"])
    if expected_id is not None and run.run_id != expected_id:
        raise InvalidBody(
            f"asked for run {expected_id} but the response describes run {run.run_id}"
        )
    return run


def parse_page(body: Any) -> Page:
    """A listing page `{"data": [...], "meta": {"pagination": {...}}}`, with its counts checked."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise InvalidBody('expected a JSON object {"data": [...runs...], "meta": {...}}')
    runs = tuple(_run(item) for item in body["data"])
    meta = body.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    if not isinstance(pagination, dict):
        raise InvalidBody("the listing has no meta.pagination object")
    count = _optional_int(pagination, "count")
    if count is not None and count != len(runs):
        raise InvalidBody(f"meta.pagination.count is {count} but the page holds {len(runs)} runs")
    current = _optional_int(pagination, "current_page")
    total_pages = _optional_int(pagination, "total_pages")
    if current is None:
        raise InvalidBody("meta.pagination.current_page is missing")
    links = pagination.get("links")
    # PHP encodes an empty associative array as [], so "no links" may arrive as a list.
    next_url = links.get("next") if isinstance(links, dict) else None
    if next_url is not None and not isinstance(next_url, str):
        raise InvalidBody("meta.pagination.links.next is not a URL")
    return Page(
        runs=runs,
        current_page=current,
        total_pages=total_pages,
        total=_optional_int(pagination, "total"),
        next_url=next_url or None,
    )


def _run(data: Any) -> ObservedRun:
    if not isinstance(data, dict):
        raise InvalidBody("a run is not a JSON object")
    run_id = data.get("id")
    if not isinstance(run_id, str) or not ID_PATTERN.fullmatch(run_id):
        raise InvalidBody(f"a run has no valid id (got {run_id!r})")
    if "archived_at" not in data:
        raise InvalidBody(f"run {run_id} has no archived_at field, so its state is unknown")
    archived_at = data["archived_at"]
    if archived_at is not None and not _is_timestamp(archived_at):
        # "null", "0000-00-00 00:00:00", 0 or "" would otherwise read as "archived".
        raise InvalidBody(f"run {run_id} has an archived_at that is not a timestamp or null")
    owner_id = data.get("owner_id")
    return ObservedRun(
        run_id=run_id,
        name=_text(data, "name") or "",
        status=_text(data, "status") or "",
        archived_at=archived_at,
        last_updated=_text(data, "last_updated"),
        checklist_id=_text(data, "checklist_id"),
        checklist_title=_text(data, "checklist_title"),
        owner_id=owner_id if isinstance(owner_id, int) and not isinstance(owner_id, bool) else None,
        started_at=_text(data, "started_at"),
        tags=_tags(data.get("tags"), run_id),
        completed_at=_text(data, "completed_at"),
    )


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or not TIMESTAMP.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:  # a date that does not exist, such as month 00 or year 0000
        return False
    return True


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _tags(relation: Any, run_id: str) -> tuple[Tag, ...]:
    """The `{"data": [...]}` relation (or a bare list); absent unless asked for."""
    if relation is None:
        return ()
    items = relation.get("data") if isinstance(relation, dict) else relation
    if not isinstance(items, list):
        raise InvalidBody(f'run {run_id} has tags that are not {{"data": [...]}}')
    tags = []
    for item in items:
        tag_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(tag_id, str) or not tag_id:
            raise InvalidBody(f"run {run_id} has a tag without an id")
        title = item.get("title")
        tags.append(Tag(id=tag_id, title=title if isinstance(title, str) else ""))
    return tuple(tags)


def _optional_int(table: dict[str, Any], key: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidBody(f"meta.pagination.{key} is not a whole number (got {value!r})")
    return value

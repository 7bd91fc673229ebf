"""Which runs `reconcile import` adopts: the filters, how each run is matched against them, the
listing parameters that narrow the read, and the filters written back as command-line options.

Every filter is decided here, on the client, because the API's own filters differ from ours:
`owners` matches the owner *or* any assignee, `tag` wants a tag ID where people know titles, `q`
is a substring search, and there is no date filter. Where the API's filter returns a superset of
ours (`checklist_id`, `owners`) it is sent too, only to shorten the listing; the decision stays
with `Selection.matches`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from reconcile.domain import ID_PATTERN, ObservedRun
from reconcile.errors import ConfigError

Include = Literal["active", "archived", "all"]


@dataclass(frozen=True)
class Selection:
    """Which runs to import. Every filter given must match (they combine with AND)."""

    include: Include = "all"
    blueprint: str | None = None
    tag: str | None = None
    owner: int | None = None
    started_before: datetime | None = None
    started_after: datetime | None = None
    name: re.Pattern[str] | None = None

    def matches(self, run: ObservedRun) -> bool:
        """Whether `run` passes every filter but `include` (the listings decide that)."""
        if self.blueprint is not None and run.checklist_id != self.blueprint:
            return False
        if self.tag is not None and not any(self.tag in (t.id, t.title) for t in run.tags):
            return False
        if self.owner is not None and run.owner_id != self.owner:
            return False
        if self.started_before is not None or self.started_after is not None:
            started = _moment(run.started_at)
            if started is None:
                return False
            if self.started_before is not None and started >= self.started_before:
                return False
            if self.started_after is not None and started < self.started_after:
                return False
        return self.name is None or self.name.search(run.name) is not None

    def query(self) -> dict[str, str]:
        """Listing parameters that narrow the listing to a superset of the selection."""
        query: dict[str, str] = {}
        if self.blueprint is not None:
            query["checklist_id"] = self.blueprint
        if self.owner is not None:
            query["owners"] = str(self.owner)
        if self.tag is not None:
            query["with"] = "tags"
        return query

    def describe(self) -> str:
        """The filters as command-line options, for the imported file's header and messages."""
        parts = [f"--include {self.include}"]
        if self.blueprint is not None:
            parts.append(f"--blueprint {self.blueprint}")
        if self.tag is not None:
            parts.append(f"--tag {self.tag!r}")
        if self.owner is not None:
            parts.append(f"--owner {self.owner}")
        if self.started_before is not None:
            parts.append(f"--started-before {self.started_before:%Y-%m-%d}")
        if self.started_after is not None:
            parts.append(f"--started-after {self.started_after:%Y-%m-%d}")
        if self.name is not None:
            parts.append(f"--name {self.name.pattern!r}")
        return " ".join(parts)


def make_selection(
    *,
    include: Include = "all",
    blueprint: str | None = None,
    tag: str | None = None,
    owner: int | None = None,
    started_before: datetime | None = None,
    started_after: datetime | None = None,
    name: str | None = None,
) -> Selection:
    """A Selection from command-line values; ConfigError names every unusable one."""
    problems: list[str] = []
    if blueprint is not None and not ID_PATTERN.fullmatch(blueprint):
        problems.append(
            f"--blueprint {blueprint!r} is not a blueprint ID (32 lowercase hex characters, the "
            "run's checklist_id)"
        )
    pattern = None
    if name is not None:
        try:
            pattern = re.compile(name)
        except re.error as exc:
            problems.append(f"--name {name!r} is not a regular expression: {exc}")
    if problems:
        raise ConfigError("; ".join(problems) + ". Nothing was read or written.")
    return Selection(
        include=include,
        blueprint=blueprint,
        tag=tag,
        owner=owner,
        started_before=_utc(started_before),
        started_after=_utc(started_after),
        name=pattern,
    )


def _utc(moment: datetime | None) -> datetime | None:
    """Dates given without a zone are UTC, like every timestamp the API returns."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _moment(timestamp: str | None) -> datetime | None:
    if timestamp is None:
        return None
    try:
        return _utc(datetime.fromisoformat(timestamp))
    except ValueError:
        return None

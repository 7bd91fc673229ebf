"""The values every layer shares: a run's ID, its state, a declared run and an observed run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ID_PATTERN = re.compile(r"[0-9a-f]{32}")
"""A run, organization or blueprint ID: 32 lowercase hex characters."""

RunId = str
"""A run's ID (see ID_PATTERN)."""


class RunState(StrEnum):
    """Whether a run is archived. "active" means not archived, whatever its workflow status."""

    ARCHIVED = "archived"
    ACTIVE = "active"


@dataclass(frozen=True)
class Source:
    """Where a declaration stands in the state file."""

    path: str
    line: int | None

    def __str__(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


@dataclass(frozen=True)
class DesiredRun:
    """One declared run."""

    run_id: RunId
    state: RunState
    name: str | None
    source: Source


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag on a run, as listed with `with=tags`."""

    id: str
    title: str


@dataclass(frozen=True, slots=True)
class ObservedRun:
    """A run as the API reported it. `tags` is filled only when the request asked `with=tags`."""

    run_id: RunId
    name: str
    status: str
    archived_at: str | None
    last_updated: str | None
    checklist_id: str | None = None
    checklist_title: str | None = None
    owner_id: int | None = None
    started_at: str | None = None
    tags: tuple[Tag, ...] = ()
    completed_at: str | None = None

    @property
    def state(self) -> RunState:
        """Archived-ness comes from `archived_at` alone: `status` is free text."""
        return RunState.ARCHIVED if self.archived_at else RunState.ACTIVE

"""The sandbox's runs: mutable records, their cached JSON, and the indexes listings page through.

Listings in the default order are the hot path of the benchmark, so the store keeps the run
keys `(created_at, id)` in sorted lists per archived state; a page is then a slice, and archive
or activate moves one key between lists with a binary search instead of rescanning every run.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from reconcile.sandbox.model import SandboxRun

ArchivedMode = Literal["exclude", "only", "include"]
RunKey = tuple[str, str]


@dataclass(slots=True, eq=False)
class RunRecord:
    """The sandbox's mutable view of one run. Call `touch()` after changing any field."""

    id: str
    increment_id: int
    name: str
    status: str
    archived_at: str | None
    checklist_id: str
    checklist_title: str
    owner_id: int
    started_at: str
    created_at: str
    last_updated: str
    tags: tuple[str, ...]
    users: list[int]
    groups: list[str]
    completed_at: str | None = None
    summary: str | None = None
    starred: bool = False
    is_public: bool = False
    prerun: dict[str, Any] = field(default_factory=dict)
    # Encoded JSON per ("show status as archived", "with tags") flags; cleared by touch().
    _cache: dict[tuple[bool, bool], bytes] = field(default_factory=dict)

    @property
    def key(self) -> RunKey:
        """The default listing order: oldest first, ties broken by id."""
        return (self.created_at, self.id)

    @property
    def archived(self) -> bool:
        """Archived means `archived_at` is set; status is presentation only."""
        return self.archived_at is not None

    def shown_status(self, archive_sets_status: bool) -> str:
        """The status a client sees, which depends on the archive_sets_status switch."""
        if self.archived and archive_sets_status:
            return "archived"
        return self.status

    def touch(self) -> None:
        """Forget the cached JSON after a change."""
        self._cache.clear()

    def to_json(self, archive_sets_status: bool, with_tags: bool = False) -> dict[str, Any]:
        """The run as the API shows it: every documented field, users and groups always present,
        and the tags relation when asked for (`with=tags`)."""
        complete = self.status == "complete"
        progress = {
            "complete": 5 if complete else 2,
            "total": 5,
            "percent": 100 if complete else 40,
        }
        relations: dict[str, Any] = {}
        if with_tags:
            # A seeded tag is one string, shown as both the tag's id and its title.
            relations["tags"] = {"data": [{"id": tag, "title": tag} for tag in self.tags]}
        return {
            "id": self.id,
            "increment_id": self.increment_id,
            "checklist_id": self.checklist_id,
            "checklist_title": self.checklist_title,
            "name": self.name,
            "summary": self.summary,
            "status": self.shown_status(archive_sets_status),
            # Objects, as the get and list pages show them (the archive page's number is not).
            "progress": progress,
            "whole_progress": dict(progress),
            "started_by": self.owner_id,
            "owner_id": self.owner_id,
            "prerun": dict(self.prerun),
            "prerun_status": "complete",
            "starred": self.starred,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "last_updated": self.last_updated,
            "archived_at": self.archived_at,
            "completed_at": self.completed_at,
            "type": "procedure",
            "is_public": self.is_public,
            "users": list(self.users),
            "groups": list(self.groups),
            "due_date": None,
            "due_date_passed": False,
            "due_soon": False,
            "late_tasks": 0,
            "collaborators": [],
            "parent_id": None,
            "can_add_oot": True,
            "has_open_issue": self.status in ("problem", "issue"),
            **relations,
        }

    def encoded(self, archive_sets_status: bool, with_tags: bool = False) -> bytes:
        """`to_json` encoded, computed once per change."""
        flags = (archive_sets_status and self.archived, with_tags)
        cached = self._cache.get(flags)
        if cached is None:
            shown = self.to_json(archive_sets_status, with_tags)
            cached = json.dumps(shown, separators=(",", ":")).encode()
            self._cache[flags] = cached
        return cached


class RunStore:
    """Every run of the sandbox org, indexed by id and by listing order. Not thread-safe itself."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._order: dict[ArchivedMode, list[RunKey]] = {"exclude": [], "only": [], "include": []}
        self._next_increment = 1001

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: str) -> RunRecord | None:
        """The record for `run_id`, or None."""
        return self._runs.get(run_id)

    def add(self, runs: Iterable[SandboxRun]) -> None:
        """Add seeded runs; raises ValueError on an id the store already has (adds none then)."""
        runs = list(runs)
        counts = Counter(run.id for run in runs)
        clashes = sorted(i for i, n in counts.items() if n > 1 or i in self._runs)
        if clashes:
            raise ValueError(f"duplicate run id(s): {', '.join(clashes)}")
        for run in runs:
            record = RunRecord(
                id=run.id,
                increment_id=self._next_increment,
                name=run.name,
                status=run.status,
                archived_at=run.archived_at,
                checklist_id=run.checklist_id,
                checklist_title=run.checklist_title,
                owner_id=run.owner_id,
                started_at=run.started_at,
                created_at=run.created_at,
                last_updated=run.last_updated,
                tags=run.tags,
                users=list(run.users),
                groups=list(run.groups),
                # Completion is a fact of the past: archiving or activating never changes it.
                completed_at=run.completed_at
                or (run.last_updated if run.status == "complete" else None),
            )
            self._next_increment += 1
            self._runs[run.id] = record
            bisect.insort(self._order["include"], record.key)
            bisect.insort(self._order[self._mode_of(record)], record.key)

    def encode_all(self, archive_sets_status: bool) -> None:
        """Fill every record's JSON cache (see `RunRecord.encoded`)."""
        for record in self._runs.values():
            record.encoded(archive_sets_status)

    def set_archived_at(self, record: RunRecord, archived_at: str | None) -> None:
        """Archive (timestamp) or activate (None) a run, keeping the indexes in step."""
        was = self._mode_of(record)
        record.archived_at = archived_at
        record.touch()
        now = self._mode_of(record)
        if was != now:
            _remove(self._order[was], record.key)
            bisect.insort(self._order[now], record.key)

    def delete(self, record: RunRecord) -> None:
        """Remove a run for good."""
        del self._runs[record.id]
        _remove(self._order["include"], record.key)
        _remove(self._order[self._mode_of(record)], record.key)

    def ordered_keys(self, mode: ArchivedMode) -> list[RunKey]:
        """The live, sorted key list for `mode`. Callers must only read it (under the lock)."""
        return self._order[mode]

    def records(self, keys: Iterable[RunKey]) -> Iterator[RunRecord]:
        """Records for keys taken from `ordered_keys`."""
        runs = self._runs
        return (runs[run_id] for _, run_id in keys)

    @staticmethod
    def _mode_of(record: RunRecord) -> ArchivedMode:
        return "only" if record.archived else "exclude"


def _remove(keys: list[RunKey], key: RunKey) -> None:
    index = bisect.bisect_left(keys, key)
    if index < len(keys) and keys[index] == key:
        del keys[index]

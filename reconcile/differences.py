"""What moved, in words a reviewer reads: which fields of a run changed between two observations,
and which declarations were added, removed or changed between two state files. Both are DeepDiffs
of plain records.

The planner never uses this: it compares one state per run directly, because DeepDiff builds a
tree node per compared item (1.8 s of CPU for 100,000 runs). Here only the entries that differ,
found by the same direct comparison, are handed to DeepDiff, so the cost follows the number of
differences, not the size of the file; and deepdiff is imported only when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconcile.domain import ObservedRun, RunId
from reconcile.state import StateFile

RECORDED = ("archived_at", "status", "name", "last_updated")
"""The observed fields a saved plan records, and so the ones that can tell a run moved."""

Declarations = Mapping[RunId, Mapping[str, str | None]]
"""Run ID -> {"state": ..., "name": ...}, as a state file declares them."""


@dataclass(frozen=True)
class FieldChange:
    """One field that differs: of a run's observation, or of a declaration."""

    run_id: RunId
    field: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        return f"{self.field} {self.before!r} -> {self.after!r}"


@dataclass(frozen=True)
class Declaration:
    """A run as declared: its state and its optional name label."""

    run_id: RunId
    state: str
    name: str | None


@dataclass(frozen=True)
class DeclarationChanges:
    """What an edit of the declarations did, from the old map to the new one."""

    added: tuple[Declaration, ...]
    removed: tuple[Declaration, ...]
    changed: tuple[FieldChange, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        """`2 added, 0 removed, 1 changed`."""
        return f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"


def record(run: ObservedRun) -> dict[str, str | None]:
    """The recorded fields of an observation."""
    return {field: getattr(run, field) for field in RECORDED}


def moved_fields(before: ObservedRun, after: ObservedRun) -> tuple[FieldChange, ...]:
    """The recorded fields that differ between two observations of one run, in RECORDED order."""
    from deepdiff import DeepDiff  # imported on use: it costs 0.2 s of start-up

    changes = _leaves(DeepDiff(record(before), record(after), view="tree"))
    found = {path[0]: (old, new) for path, old, new in changes}
    return tuple(
        FieldChange(before.run_id, field, *found[field]) for field in RECORDED if field in found
    )


def declared(state: StateFile) -> dict[RunId, dict[str, str | None]]:
    """A state file's declarations as a map."""
    return {run.run_id: {"state": run.state.value, "name": run.name} for run in state.runs}


def compare_declarations(before: Declarations, after: Declarations) -> DeclarationChanges:
    """Which runs `after` declares that `before` does not (added), the reverse (removed), and the
    fields of the others that differ (changed); each sorted by run ID."""
    differing = sorted(
        run_id for run_id in before.keys() | after.keys() if before.get(run_id) != after.get(run_id)
    )
    if not differing:
        return DeclarationChanges((), (), ())
    from deepdiff import DeepDiff  # imported on use: it costs 0.2 s of start-up

    old = {run_id: dict(before[run_id]) for run_id in differing if run_id in before}
    new = {run_id: dict(after[run_id]) for run_id in differing if run_id in after}
    # threshold 0: always key by key; by default DeepDiff reports two maps that share few keys
    # (as these, which hold only the entries that differ) as one replaced value.
    diff = DeepDiff(old, new, view="tree", threshold_to_diff_deeper=0)
    added, removed, changed = [], [], []
    for path, was, now in _leaves(diff):
        run_id = path[0]
        if len(path) > 1:
            changed.append(FieldChange(run_id, path[1], _text(was), _text(now)))
        elif was is _ABSENT:
            added.append(_declaration(run_id, now))
        else:
            removed.append(_declaration(run_id, was))
    return DeclarationChanges(
        tuple(sorted(added, key=lambda d: d.run_id)),
        tuple(sorted(removed, key=lambda d: d.run_id)),
        tuple(sorted(changed, key=lambda c: (c.run_id, c.field))),
    )


_ABSENT = object()
_REPORTS = {
    "values_changed",
    "type_changes",
    "dictionary_item_added",
    "dictionary_item_removed",
}


def _leaves(diff: Any) -> list[tuple[list[str], Any, Any]]:
    """Each difference of a tree-view DeepDiff as (path, before, after); a side that has no such
    key is _ABSENT."""
    unexpected = set(diff) - _REPORTS
    if unexpected:
        raise AssertionError(f"DeepDiff reported {sorted(unexpected)} for string-valued maps")
    leaves = []
    for report in _REPORTS & set(diff):
        for level in diff[report]:
            was = _ABSENT if report == "dictionary_item_added" else level.t1
            now = _ABSENT if report == "dictionary_item_removed" else level.t2
            leaves.append(([str(part) for part in level.path(output_format="list")], was, now))
    return leaves


def _text(value: Any) -> str | None:
    return None if value is None or value is _ABSENT else str(value)


def _declaration(run_id: str, value: Any) -> Declaration:
    return Declaration(run_id, str(value["state"]), _text(value.get("name")))

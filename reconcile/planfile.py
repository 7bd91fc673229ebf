"""The saved plan: the JSON document `plan --format json` prints and `plan --out` writes, read back
by `apply --plan`, and the checksum that ties a reviewed plan to the changes applied.

The document keeps, for every declared run, what the API reported when the plan was made, so
`apply --plan` can tell which runs moved since (reconcile.safety decides). Its shape is described
by schema/plan.schema.json.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reconcile import __version__
from reconcile.differences import DeclarationChanges
from reconcile.domain import ID_PATTERN, DesiredRun, ObservedRun, RunState, Source
from reconcile.errors import PlanFileError, SafetyError
from reconcile.plan import Action, Change, Group, Plan, PlannedRun
from reconcile.state import SafetySettings, StateFileRef

FORMAT_VERSION = 1
MAX_PLAN_BYTES = 256 * 1024 * 1024
_SOURCE = re.compile(r"(.*):(\d+)")
_HEX = re.compile(r"[0-9a-f]{64}")


def checksum(plan: Plan) -> str:
    """sha256 of the canonical JSON (sorted keys, no white space) of the changes' run, action,
    current and desired state, in plan order: equal for two plans that would write the same."""
    canonical = [
        {
            "run_id": change.run_id,
            "action": change.action.value,
            "current": change.current.value,
            "desired": change.target.value,
        }
        for change in plan.changes
    ]
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


def document(plan: Plan, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """The plan as a JSON-ready value, format_version 1."""
    safety = plan.limits
    return {
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "org_id": plan.org_id,
        "api_url": plan.api_url,
        "state_file": {"path": plan.state_file.path, "sha256": plan.state_file.sha256},
        "safety": {
            "max_archive_percent": safety.max_archive_percent,
            "max_activate_percent": safety.max_activate_percent,
            "min_runs": safety.min_runs,
        },
        "summary": {
            "archive": plan.count(Action.ARCHIVE),
            "activate": plan.count(Action.ACTIVATE),
            "unchanged": len(plan.unchanged),
            "declared": plan.declared,
            "by_blueprint": [_group(group) for group in plan.by_blueprint],
            "by_owner": [_group(group) for group in plan.by_owner],
        },
        "warnings": [*plan.warnings, *warnings],
        "refused": list(plan.refused),
        "baseline": plan.baseline,
        "declarations": None if plan.declarations is None else _declarations(plan.declarations),
        "changes": [
            {
                **_entry(change),
                "action": change.action.value,
                "reason": None if change.reason is None else change.reason.value,
                # What the groups count, so that a saved plan shows them too.
                "checklist_id": change.observed.checklist_id,
                "checklist_title": change.observed.checklist_title,
                "owner_id": change.observed.owner_id,
                **_attribution(change),
            }
            for change in plan.changes
        ],
        "accepted": [{**_entry(change), **_attribution(change)} for change in plan.accepted],
        "unchanged": [_entry(run) for run in plan.unchanged],
        "unmanaged": None
        if plan.unmanaged is None
        else [
            {"run_id": run.run_id, "name": run.name, "state": run.state.value, "status": run.status}
            for run in plan.unmanaged
        ],
        "gone": [
            {"run_id": run.run_id, "declared": run.state.value, "source": str(run.source)}
            for run in plan.gone
        ],
        "checksum": checksum(plan),
    }


def _attribution(change: Change) -> dict[str, Any]:
    """`moved_by` and `cause`, both null when the change was not attributed."""
    told = change.attribution
    return {
        "moved_by": None if told is None or told.moved_by is None else told.moved_by.to_json(),
        "cause": None if told is None else told.cause.value,
    }


def _declarations(edits: DeclarationChanges) -> dict[str, Any]:
    return {
        "added": [asdict(declaration) for declaration in edits.added],
        "removed": [asdict(declaration) for declaration in edits.removed],
        "changed": [asdict(change) for change in edits.changed],
    }


def _group(group: Group) -> dict[str, Any]:
    return {"id": group.id, "title": group.title, "count": group.count}


def _entry(run: PlannedRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "name": run.observed.name,
        "label": run.desired.name,
        "current": run.current.value,
        "desired": run.target.value,
        "status": run.observed.status,
        "archived_at": run.observed.archived_at,
        "last_updated": run.observed.last_updated,
        "source": str(run.desired.source),
    }


def load_plan(path: Path) -> Plan:
    """Read a saved plan. PlanFileError if it is not one; SafetyError if its checksum does not
    match its changes (the file was edited after it was made)."""
    try:
        # A bounded read, not the size on disk: /dev/zero or a pipe has none and never ends.
        with path.open("rb") as stream:
            data = stream.read(MAX_PLAN_BYTES + 1)
        if len(data) > MAX_PLAN_BYTES:
            raise PlanFileError(
                f"The plan file {path} is larger than {MAX_PLAN_BYTES} bytes (read up to that); "
                "it is not a plan `reconcile plan --out` wrote."
            )
        raw = json.loads(data)
    except OSError as exc:
        raise PlanFileError(f"Cannot read the plan file {path}: {exc.strerror}.") from None
    except ValueError as exc:
        raise PlanFileError(
            f"The plan file {path} is not JSON ({exc}); write it with `reconcile plan --out`."
        ) from None
    reader = _Reader(path)
    plan = reader.plan(raw)
    reader.done()
    if checksum(plan) != raw["checksum"]:
        raise SafetyError(
            f"The plan file {path} does not match its checksum: its changes were edited after "
            f"`reconcile plan --out` wrote it (checksum {raw['checksum']}, content "
            f"{checksum(plan)}). Nothing was written; make and review a new plan."
        )
    return plan


class _Reader:
    """Rebuilds a Plan from a document, collecting every problem before raising."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self.seen: set[str] = set()

    def done(self) -> None:
        if self.problems:
            listed = "\n".join(f"  {problem}" for problem in self.problems)
            raise PlanFileError(
                f"The plan file {self.path} is not a plan this version of reconcile can apply "
                f"(format_version {FORMAT_VERSION}); write it with `reconcile plan --out`:\n"
                f"{listed}"
            )

    def field(self, table: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        value = table.get(key) if isinstance(table, dict) else None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            self.problems.append(f"{where}{key}: missing or not a {_kind_name(kind)}")
            return None
        return value

    def optional(self, table: dict[str, Any], key: str, kind: type, where: str) -> Any:
        """A field plans written before it existed do not have."""
        if table.get(key) is None:
            return None
        return self.field(table, key, kind, where)

    def plan(self, raw: Any) -> Plan:
        if not isinstance(raw, dict):
            self.problems.append("the document is not a JSON object")
            self.done()
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            self.problems.append(f"format_version is {version!r}, not {FORMAT_VERSION}")
            self.done()
        org_id = self.field(raw, "org_id", str, "")
        api_url = self.field(raw, "api_url", str, "")
        state = self.field(raw, "state_file", dict, "")
        sha = self.field(raw, "checksum", str, "")
        if sha is not None and not _HEX.fullmatch(sha):
            self.problems.append("checksum: not 64 lowercase hex characters")
        safety = self.field(raw, "safety", dict, "") or {}
        percents = [self.field(safety, key, (int, float), "safety.") for key in _PERCENTS]
        min_runs = self.field(safety, "min_runs", int, "safety.")
        if not all(0 <= p <= 100 for p in percents if p is not None) or (min_runs or 0) < 0:
            self.problems.append("safety: a percentage outside 0-100 or a negative min_runs")
        changes = [
            self.run(entry, f"changes[{n}].", change=True)
            for n, entry in enumerate(self.field(raw, "changes", list, "") or [])
        ]
        unchanged = [
            self.run(entry, f"unchanged[{n}].", change=False)
            for n, entry in enumerate(self.field(raw, "unchanged", list, "") or [])
        ]
        path = self.field(state, "path", str, "state_file.")
        sha256 = self.field(state, "sha256", str, "state_file.")
        refused = self.optional(raw, "refused", list, "") or []
        if not all(isinstance(reason, str) for reason in refused):
            self.problems.append("refused: not a list of strings")
        self.done()
        return Plan(
            org_id,
            api_url,
            StateFileRef(path, sha256),
            tuple(Change(run.desired, run.observed) for run in changes),
            tuple(unchanged),
            limits=SafetySettings(float(percents[0]), float(percents[1]), min_runs),
            refused=tuple(refused),
        )

    def run(self, entry: Any, where: str, *, change: bool) -> PlannedRun:
        if not isinstance(entry, dict):
            self.problems.append(f"{where[:-1]}: not a JSON object")
            entry = {}
        run_id = self.field(entry, "run_id", str, where) or ""
        if run_id and not ID_PATTERN.fullmatch(run_id):
            self.problems.append(f"{where}run_id: {run_id!r} is not a run ID")
        elif run_id in self.seen:
            self.problems.append(f"{where}run_id: run {run_id} appears more than once")
        self.seen.add(run_id)
        name = self.field(entry, "name", str, where) or ""
        status = self.field(entry, "status", str, where) or ""
        source = self.field(entry, "source", str, where) or ""
        label, archived_at, last_updated = (
            self.field(entry, key, (str, type(None)), where)
            for key in ("label", "archived_at", "last_updated")
        )
        current, desired = (self.state(entry, key, where) for key in ("current", "desired"))
        found = _SOURCE.fullmatch(source)
        blueprint, title = (self.optional(entry, key, str, where) for key in _GROUPED)
        observed = ObservedRun(
            run_id,
            name,
            status,
            archived_at,
            last_updated,
            checklist_id=blueprint,
            checklist_title=title,
            owner_id=self.optional(entry, "owner_id", int, where),
        )
        planned = PlannedRun(
            DesiredRun(
                run_id=run_id,
                state=desired,
                name=label,
                source=Source(found[1], int(found[2])) if found else Source(source, None),
            ),
            observed,
        )
        if current is not None and current is not observed.state:
            self.problems.append(f"{where}current: {current.value} but archived_at says otherwise")
        if change and current is desired:
            self.problems.append(f"{where}: a change whose current and desired states are equal")
        if not change and current is not desired:
            self.problems.append(f"{where}: an unchanged run whose states differ")
        if change and entry.get("action") != Change(planned.desired, observed).action.value:
            self.problems.append(f"{where}action: does not lead from current to desired")
        return planned

    def state(self, entry: Any, key: str, where: str) -> RunState:
        value = self.field(entry, key, str, where)
        try:
            return RunState(value)
        except ValueError:
            if value is not None:
                self.problems.append(f'{where}{key}: {value!r} is not "archived" or "active"')
            return RunState.ACTIVE


_PERCENTS = ("max_archive_percent", "max_activate_percent")
_GROUPED = ("checklist_id", "checklist_title")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "string", int: "number", float: "number", dict: "object", list: "array"}
    return " or ".join(dict.fromkeys(names.get(k, "null") for k in kinds))

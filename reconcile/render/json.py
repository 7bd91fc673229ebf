"""The plan and the apply report as JSON, for machines. The plan's shape is the saved-plan format
of reconcile.planfile (schema/plan.schema.json); its field names are a stable contract."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from reconcile import __version__
from reconcile.apply import Result
from reconcile.plan import Plan
from reconcile.planfile import FORMAT_VERSION, checksum, document


def render_plan_json(plan: Plan, stream: TextIO, *, warnings: Sequence[str] = ()) -> None:
    """The plan document, indented, with a final newline."""
    _dump(document(plan, warnings), stream)


def render_report_json(
    plan: Plan, results: Sequence[Result], stream: TextIO, *, finished: bool
) -> None:
    """Every change of an apply with its outcome: "ok", "failed", or "not_done" for a change that
    had no result when the apply stopped (`finished` is False when it stopped part-way)."""
    by_run = {result.change.run_id: result for result in results}
    changes: list[dict[str, Any]] = []
    for change in plan.changes:
        result = by_run.get(change.run_id)
        outcome = "not_done" if result is None else "ok" if result.ok else "failed"
        changes.append(
            {
                "run_id": change.run_id,
                "name": change.name,
                "action": change.action.value,
                "current": change.current.value,
                "desired": change.target.value,
                "source": str(change.desired.source),
                "outcome": outcome,
                "detail": None if result is None else result.detail,
                "writes": 0 if result is None else result.writes,
            }
        )
    counts = {key: 0 for key in ("ok", "failed", "not_done")}
    for entry in changes:
        counts[entry["outcome"]] += 1
    _dump(
        {
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "org_id": plan.org_id,
            "api_url": plan.api_url,
            "state_file": {"path": plan.state_file.path, "sha256": plan.state_file.sha256},
            "checksum": checksum(plan),
            "finished": finished,
            "summary": counts,
            "changes": changes,
        },
        stream,
    )


def _dump(value: dict[str, Any], stream: TextIO) -> None:
    # JSON is exact data: every string is what the API sent, escaped rather than cleaned. Written
    # in ASCII (other characters as \uXXXX), no byte of it is a control sequence for a terminal
    # and it encodes on any console; DEL is the one ASCII control that JSON leaves raw.
    text = json.dumps(value, indent=2, ensure_ascii=True)
    stream.write(text.replace("\x7f", "\\u007f") + "\n")

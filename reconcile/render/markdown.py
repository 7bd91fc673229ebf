"""The plan and the apply outcome as Markdown, for a pull-request comment or a CI job summary.

GitHub refuses a comment longer than 65,536 characters, so tables are cut to fit a budget below
that, with a note giving the counts of what was left out; the summary line always comes first.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from reconcile.apply import ApplyReport, Result
from reconcile.plan import Plan, Reason
from reconcile.planfile import checksum
from reconcile.render.text import apply_summary_line, moved_phrase, summary_line

COMMENT_LIMIT = 65_536
BUDGET = 60_000
"""What reconcile writes at most: the rest of the limit is left to the pipeline's own words
(a marker, a heading, a link to the job)."""
_NOTE_ROOM = 400
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def render_plan_markdown(plan: Plan, stream: TextIO, *, warnings: Sequence[str] = ()) -> None:
    """Summary line, the changes as a table, unchanged runs folded away, the checksum."""
    head = [
        f"**{summary_line(plan)}**",
        "",
        f"Organization `{plan.org_id}` at `{plan.api_url}`; {plan.declared} runs declared in "
        f"`{plan.state_file.path}` (sha256 `{plan.state_file.sha256[:12]}`).",
    ]
    for warning in plan.warnings:
        head += ["", f"> **Warning:** {_cell(warning)}."]
    for warning in warnings:
        head += ["", f"> **Warning:** apply would refuse: {_cell(warning)}"]
    if plan.baseline is not None and plan.changes:
        head += [
            "",
            f"Against the baseline `{plan.baseline}`: {plan.count_reason(Reason.REQUESTED)} "
            f"requested (the declaration changed), {plan.count_reason(Reason.DRIFT)} drift (the "
            "run was moved in Tallyfy; applying moves it back).",
        ]
    foot = []
    if plan.changes:
        digest = checksum(plan)
        foot = ["", f"Checksum: `{digest}` (`reconcile apply --checksum {digest}`)"]
    if plan.accepted:
        count = len(plan.accepted)
        head += [
            "",
            f'Accepted (`[drift] auto_archived = "accept"`): {count} '
            f"{'run' if count == 1 else 'runs'} archived by the organization's auto-archive stay "
            "as they are and are not among the changes; `reconcile refresh` writes them down:",
            "",
            *(
                f"- `{c.run_id}` {_cell(c.name)} (`{c.desired.source}`): "
                f"{_cell(moved_phrase(c) or 'archived by auto-archive')}"
                for c in plan.accepted
            ),
        ]
    budget = BUDGET - _size(head) - _size(foot) - 3 * _NOTE_ROOM
    labelled = plan.baseline is not None
    attributed = any(moved_phrase(change) for change in plan.changes)
    changes = [
        f"| {c.action.value} | `{c.run_id}` | {_cell(c.name)} | {c.current.value} -> "
        f"{c.target.value} | `{c.desired.source}` |"
        + (f" {c.reason.value if c.reason else ''} |" if labelled else "")
        + (f" {_cell(moved_phrase(c) or '')} |" if attributed else "")
        for c in plan.changes
    ]
    columns = ["action", "run", "name", "current -> desired", "source"]
    columns += ["reason"] if labelled else []
    columns += ["moved"] if attributed else []
    body, shown, budget = _table(columns, changes, budget)
    if shown < len(changes):
        left = Counter(change.action.value for change in plan.changes[shown:])
        counts = f"{left['archive']:,} to archive, {left['activate']:,} to activate"
        body += _cut(f"changes ({counts})", shown, len(changes))
    if plan.unchanged:
        rows = [
            f"| `{r.run_id}` | {_cell(r.name)} | {r.current.value} | `{r.desired.source}` |"
            for r in plan.unchanged
        ]
        noun = "run" if len(rows) == 1 else "runs"
        table, shown, budget = _table(["run", "name", "state", "source"], rows, budget)
        table += _cut("unchanged runs", shown, len(rows))
        body += ["", f"<details><summary>{len(rows)} unchanged {noun}</summary>", *table]
        body += ["", "</details>"]
    if plan.unmanaged:
        rows = [f"| `{r.run_id}` | {_cell(r.name)} | {r.state.value} |" for r in plan.unmanaged]
        noun = "run" if len(rows) == 1 else "runs"
        table, shown, _ = _table(["run", "name", "state"], rows, budget)
        table += _cut("unmanaged runs", shown, len(rows))
        summary = f"{len(rows)} unmanaged {noun} (not in the state file; never touched)"
        body += ["", f"<details><summary>{summary}</summary>", *table, "", "</details>"]
    stream.write("\n".join([*head, *body, *foot]) + "\n")


def render_apply_markdown(plan: Plan, report: ApplyReport, stream: TextIO) -> None:
    """The closing line of an apply, then one row per change with its outcome."""
    head = [
        f"**{apply_summary_line(report)}**",
        "",
        f"Organization `{plan.org_id}` at `{plan.api_url}`; state file "
        f"`{plan.state_file.path}`; plan checksum `{checksum(plan)}`.",
    ]
    ordered = sorted(report.results, key=lambda result: (result.ok, not result.started))
    rows = [
        f"| {_outcome(r)} | {r.change.action.value} | `{r.change.run_id}` | "
        f"{_cell(r.change.name)} | {_cell(r.detail)} |"
        for r in ordered
    ]
    body, shown, _ = _table(
        ["outcome", "action", "run", "name", "detail"], rows, BUDGET - _size(head) - _NOTE_ROOM
    )
    body += _cut("changes (failures are listed first)", shown, len(rows))
    stream.write("\n".join([*head, *body]) + "\n")


def _outcome(result: Result) -> str:
    if result.ok:
        return "ok"
    return "**failed**" if result.started else "not started"


def _table(header: Sequence[str], rows: Sequence[str], budget: int) -> tuple[list[str], int, int]:
    """The table with as many rows as fit in `budget` characters (none at all if no row fits),
    how many rows it shows, and the budget left."""
    lines = ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    budget -= _size(lines)
    shown = 0
    for row in rows:
        if len(row) + 1 > budget:
            break
        lines.append(row)
        budget -= len(row) + 1
        shown += 1
    return (lines if shown or not rows else []), shown, budget


def _cut(what: str, shown: int, total: int) -> list[str]:
    """The note under a table that had to leave rows out."""
    if shown == total:
        return []
    return [
        "",
        f"_{total - shown:,} more {what} not shown: only {shown:,} of {total:,} fit under "
        f"GitHub's {COMMENT_LIMIT:,}-character comment limit. The JSON plan "
        "(`reconcile plan --format json` or `--out`) lists them all._",
    ]


def _size(lines: Sequence[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _cell(text: str) -> str:
    """Text safe inside a table cell: no Markdown, no HTML, one line."""
    return _SPECIAL.sub(r"\\\1", html.escape(" ".join(text.split()), quote=False))

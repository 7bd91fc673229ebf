"""The plan and the apply outcome as Markdown, for a pull-request comment or a CI job summary.

GitHub refuses a comment longer than 65,536 characters. Whatever the API returns, the text stays
within BUDGET: every field from outside is cleaned (reconcile.render.sanitize), escaped and cut to
a fixed length, warnings are listed up to a fixed share, and tables are cut to what is left, with
a note giving the counts of what was left out; the summary line always comes first.
"""

from __future__ import annotations

import html
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TextIO

from reconcile.apply import ApplyReport, Result
from reconcile.differences import DeclarationChanges
from reconcile.plan import Group, Plan, Reason
from reconcile.planfile import checksum
from reconcile.render.origin import Origin
from reconcile.render.sanitize import clean
from reconcile.render.text import EDITS_SHOWN, apply_summary_line, declaration_lines, summary_line

COMMENT_LIMIT = 65_536
BUDGET = 60_000
"""What reconcile writes at most: the rest of the limit is left to the pipeline's own words
(a marker, a heading, a link to the job)."""
CELL_LIMIT = 160
"""Characters of one table cell at most, so that one long name cannot crowd out the other rows."""
FIELD_LIMIT = 300
"""Characters at most of a path, URL or other value in the sentences around the tables."""
WARNING_LIMIT = 600
WARNINGS_BUDGET = 8_000
"""Characters of warnings at most; the rest are counted, and the JSON plan has them all."""
_NOTE_ROOM = 400
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_PLAIN = re.compile(r"[A-Za-z0-9 ._:/@+=,%#'~-]+")
"""Text that is shown as it is inside a code span: no backtick, pipe or backslash."""
_SHA = re.compile(r"[0-9a-f]{7,64}")
_URL = re.compile(r"https?://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+")
"""A URL that can be a link target as it is: no space, bracket, parenthesis or angle bracket."""
_JSON_HAS_ALL = "The JSON plan (`reconcile plan --format json` or `--out`) lists them all."


def render_plan_markdown(
    plan: Plan, stream: TextIO, *, warnings: Sequence[str] = (), origin: Origin | None = None
) -> None:
    """Summary line, where the plan comes from, warnings, the changes as a table, unchanged and
    unmanaged runs folded away, and the checksum with the command that applies exactly this plan.
    """
    head = [
        f"**{_cell(summary_line(plan), FIELD_LIMIT)}**",
        "",
        f"Organization {_code(plan.org_id)} at {_code(plan.api_url)}; {plan.declared} runs "
        f"declared in {_code(plan.state_file.path)} (sha256 {_code(plan.state_file.sha256[:12])}).",
        *_origin_lines(origin),
        *_warning_lines(
            [f"apply would refuse: {warning}" for warning in warnings]
            + [f"{warning}." for warning in plan.warnings]
        ),
    ]
    if plan.baseline is not None and plan.changes:
        head += [
            "",
            f"Against the baseline {_code(plan.baseline)}: {plan.count_reason(Reason.REQUESTED)} "
            f"requested (the declaration changed), {plan.count_reason(Reason.DRIFT)} drift (the "
            "run was moved in Tallyfy; applying moves it back).",
        ]
    if plan.declarations is not None:
        head += ["", *_declarations_since(plan.declarations, plan.baseline)]
    foot = []
    if plan.changes:
        digest = checksum(plan)
        command = f"reconcile apply {shlex.quote(plan.state_file.path)} --checksum {digest}"
        foot = ["", f"Checksum: `{digest}` ({_code(command, FIELD_LIMIT + 100)})"]
    budget = BUDGET - _size(head) - _size(foot) - 5 * _NOTE_ROOM
    if plan.summarised:
        for kind, found in (("blueprint", plan.by_blueprint), ("owner", plan.by_owner)):
            rows = (f"| {_group_cell(kind, group)} | {group.count:,} |" for group in found)
            table, shown, budget = _table([kind, "changes"], rows, budget)
            head += table + _cut(f"{kind}s", shown, len(found))
    labelled = plan.baseline is not None
    columns = ["action", "run", "name", "current -> desired", "source"]
    changes = (
        f"| {c.action.value} | {_code(c.run_id)} | {_cell(c.name)} | {c.current.value} -> "
        f"{c.target.value} | {_code(str(c.desired.source))} |"
        + (f" {c.reason.value if c.reason else ''} |" if labelled else "")
        for c in plan.changes
    )
    header = [*columns, "reason"] if labelled else columns
    body, shown, budget = _table(header, changes, budget)
    if shown < len(plan.changes):
        left = Counter(change.action.value for change in plan.changes[shown:])
        counts = f"{left['archive']:,} to archive, {left['activate']:,} to activate"
        body += _cut(f"changes ({counts})", shown, len(plan.changes))
    if plan.unchanged:
        unchanged = (
            f"| {_code(r.run_id)} | {_cell(r.name)} | {r.current.value} | "
            f"{_code(str(r.desired.source))} |"
            for r in plan.unchanged
        )
        table, shown, budget = _table(["run", "name", "state", "source"], unchanged, budget)
        table += _cut("unchanged runs", shown, len(plan.unchanged))
        body += _details(f"{_count(len(plan.unchanged), 'unchanged run')}", table)
    if plan.unmanaged:
        unmanaged = (
            f"| {_code(r.run_id)} | {_cell(r.name)} | {r.state.value} |" for r in plan.unmanaged
        )
        table, shown, _ = _table(["run", "name", "state"], unmanaged, budget)
        table += _cut("unmanaged runs", shown, len(plan.unmanaged))
        what = _count(len(plan.unmanaged), "unmanaged run")
        body += _details(f"{what} (not in the state file; never touched)", table)
    stream.write("\n".join([*head, *body, *foot]) + "\n")


def _declarations_since(edits: DeclarationChanges, baseline: str | None) -> list[str]:
    if not edits:
        return [f"No declaration changed since the baseline {_code(baseline or '')}."]
    lines = declaration_lines(edits)
    items = [f"- {_cell(line)}" for line in lines[:EDITS_SHOWN]]
    if len(lines) > EDITS_SHOWN:
        items.append(f"- and {len(lines) - EDITS_SHOWN:,} more (the JSON plan lists them all)")
    head = f"Declarations since the baseline {_code(baseline or '')}: {edits.summary()}:"
    return [head, "", *items]


def render_apply_markdown(
    plan: Plan, report: ApplyReport, stream: TextIO, *, origin: Origin | None = None
) -> None:
    """The closing line of an apply, where it ran, then one row per change with its outcome."""
    head = [
        f"**{_cell(apply_summary_line(report), FIELD_LIMIT)}**",
        "",
        f"Organization {_code(plan.org_id)} at {_code(plan.api_url)}; state file "
        f"{_code(plan.state_file.path)}; plan checksum `{checksum(plan)}`.",
        *_origin_lines(origin),
    ]
    ordered = sorted(report.results, key=lambda result: (result.ok, not result.started))
    rows = (
        f"| {_outcome(r)} | {r.change.action.value} | {_code(r.change.run_id)} | "
        f"{_cell(r.change.name)} | {_cell(r.detail)} |"
        for r in ordered
    )
    body, shown, _ = _table(
        ["outcome", "action", "run", "name", "detail"], rows, BUDGET - _size(head) - _NOTE_ROOM
    )
    body += _cut("changes (failures are listed first)", shown, len(ordered))
    stream.write("\n".join([*head, *body]) + "\n")


def _group_cell(kind: str, group: Group) -> str:
    if group.id is None:
        return f"_no {kind}_"
    if group.title:
        return f"{_cell(group.title)} ({_code(str(group.id))})"
    return _code(str(group.id))


def _origin_lines(origin: Origin | None) -> list[str]:
    """`Commit 0123abc… · [CI run](https://…)`: a commit in hex is left for GitHub to link; a
    URL that cannot be a link target as it is is shown as text."""
    if origin is None:
        return []
    parts = []
    if origin.commit:
        commit = origin.commit
        parts.append(f"Commit {commit if _SHA.fullmatch(commit) else _cell(commit)}")
    if origin.run_url:
        url = origin.run_url
        good = _URL.fullmatch(url) and len(url) <= FIELD_LIMIT
        parts.append(f"[CI run]({url})" if good else f"CI run {_cell(url, FIELD_LIMIT)}")
    return ["", " · ".join(parts)] if parts else []


def _warning_lines(warnings: Sequence[str]) -> list[str]:
    """One quoted line per warning, as many as fit in WARNINGS_BUDGET, then a count of the rest."""
    lines: list[str] = []
    budget = WARNINGS_BUDGET
    for warning in warnings:
        line = f"> **Warning:** {_cell(warning, WARNING_LIMIT)}"
        if len(line) + 2 > budget:
            break
        lines += ["", line]
        budget -= len(line) + 2
    left = len(warnings) - len(lines) // 2
    if left:
        lines += ["", f"> _{left:,} more warnings not shown. {_JSON_HAS_ALL}_"]
    return lines


def _outcome(result: Result) -> str:
    if result.ok:
        return "ok"
    return "**failed**" if result.started else "not started"


def _table(header: Sequence[str], rows: Iterable[str], budget: int) -> tuple[list[str], int, int]:
    """The table with as many rows as fit in `budget` characters, how many rows it shows, and the
    budget left. No table at all when there is no row, or when no row fits (the note under it
    says so); rows past the first that does not fit are never formatted."""
    lines = ["", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    left = budget - _size(lines)
    shown = 0
    for row in rows:
        if len(row) + 1 > left:
            break
        lines.append(row)
        left -= len(row) + 1
        shown += 1
    return (lines, shown, left) if shown else ([], 0, budget)


def _cut(what: str, shown: int, total: int) -> list[str]:
    """The note under a table that had to leave rows out."""
    if shown == total:
        return []
    return [
        "",
        f"_{total - shown:,} more {what} not shown: only {shown:,} of {total:,} fit under "
        f"GitHub's {COMMENT_LIMIT:,}-character comment limit. {_JSON_HAS_ALL}_",
    ]


def _details(summary: str, table: list[str]) -> list[str]:
    return ["", f"<details><summary>{summary}</summary>", *table, "", "</details>"]


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _size(lines: Sequence[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _cell(text: str, limit: int = CELL_LIMIT) -> str:
    """Text safe in a table cell or a sentence: cleaned, no Markdown, no HTML, one line, at most
    `limit` characters (cut with an ellipsis, never inside an escape)."""
    shown = clean(text)
    escaped = _escape(shown)
    if len(escaped) <= limit:
        return escaped
    pieces = []
    room = limit - 1
    for char in shown:
        piece = _escape(char)
        if len(piece) > room:
            break
        pieces.append(piece)
        room -= len(piece)
    return "".join(pieces) + "…"


def _code(text: str, limit: int = FIELD_LIMIT) -> str:
    """A code span for a run ID, path or URL that can stand in one as it is; anything else (a
    backtick, a pipe, a control character, too long) is shown as escaped text instead."""
    if len(text) <= limit and _PLAIN.fullmatch(text):
        return f"`{text}`"
    return _cell(text, limit)


def _escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", html.escape(text, quote=False))

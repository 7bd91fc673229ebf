"""The human-readable plan and apply output."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import TextIO

from reconcile.apply import ApplyReport, Result
from reconcile.attribution import Cause
from reconcile.differences import DeclarationChanges
from reconcile.plan import Action, Change, Group, Plan, Reason
from reconcile.planfile import checksum
from reconcile.render.sanitize import clean, quoted

UNMANAGED_SHOWN = 10  # the text output lists this many unmanaged runs, then counts the rest
EDITS_SHOWN = 10  # and this many declarations changed since the baseline
GROUPS_SHOWN = 10  # and this many blueprints and owners in a long plan's summary
_COLOURS = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}
_ACTION_COLOUR = {Action.ARCHIVE: "red", Action.ACTIVATE: "green"}


def _paint(text: str, colour: str, enabled: bool) -> str:
    return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m" if enabled else text


def summary_line(plan: Plan) -> str:
    """`Plan: 2 to archive, 1 to activate, 7 unchanged.` or `No changes. 10 runs match FILE.`"""
    more = [
        f"{len(runs)} {what}"
        for runs, what in ((plan.accepted, "accepted"), (plan.unread, "not read"))
        if runs
    ]
    if not plan.changes:
        matching = len(plan.unchanged)
        noun = "run matches" if matching == 1 else "runs match"
        tail = "".join(f"; {part}" for part in more)
        return f"No changes. {matching} {noun} {clean(plan.state_file.path)}{tail}."
    return (
        f"Plan: {plan.count(Action.ARCHIVE)} to archive, {plan.count(Action.ACTIVATE)} to "
        f"activate, {len(plan.unchanged)} unchanged" + "".join(f", {part}" for part in more) + "."
    )


def change_line(change: Change, colour: bool) -> str:
    """One line a reviewer can read: action, run, current -> desired, workflow status, source,
    and who moved the run when the activity feed says."""
    action = _paint(f"{change.action.value:<8}", _ACTION_COLOUR[change.action], colour)
    status = clean(change.observed.status or "unknown")
    reason = "" if change.reason is None else f"  {change.reason.value}"
    moved = moved_phrase(change)
    return (
        f"  {action}  {change.run_id}  {change.current.value} -> {change.target.value}  "
        f"(status: {status})  {quoted(change.name)}  [{clean(str(change.desired.source))}]{reason}"
        + (f"  {moved}" if moved else "")
    )


def moved_phrase(change: Change) -> str | None:
    """ "archived by Jane Doe (web app) on 2026-11-30", or None when nobody is known to have
    moved the run. Names come from the API, so they pass the sanitizer."""
    told = change.attribution
    if told is None:
        return None
    moved = told.moved_by
    if moved is None:
        archived = change.observed.archived_at
        if told.cause is Cause.AUTO_ARCHIVE and archived:
            return f"archived by auto-archive on {archived[:10]} (by its timing)"
        return None
    verb = "archived" if moved.archived else "activated"
    day = moved.at.astimezone(UTC).date()  # the day of JSON's `at`, which is in UTC
    if moved.by_self:
        return f"{verb} with this token's own user (an earlier apply) on {day}"
    who = moved.actor or moved.email
    if who is None:
        return f"{verb} by auto-archive on {day}" if moved.archived else f"{verb} on {day}"
    source = _SOURCES.get(moved.source or "", moved.source)
    where = f" ({clean(source)})" if source else ""
    return f"{verb} by {clean(who)}{where} on {day}"


_SOURCES = {"Member": "web app", "Guest": "guest", "Webhook": "webhook"}
"""The feed's `source` in words: a member's move is one made in the web app."""


def _accepted_lines(plan: Plan) -> list[str]:
    if not plan.accepted:
        return []
    count = len(plan.accepted)
    noun = "run" if count == 1 else "runs"
    lines = [
        f'Accepted ([drift] auto_archived = "accept"): {count} {noun} archived by the '
        "organization's auto-archive stay as they are and are not among the changes; "
        "`reconcile refresh` writes them down in the state file:"
    ]
    for change in plan.accepted:
        moved = moved_phrase(change)
        lines.append(
            f"  {change.run_id}  {change.current.value} (declared {change.target.value})  "
            f"{quoted(change.name)}  [{clean(str(change.desired.source))}]"
            + (f"  {moved}" if moved else "")
        )
    return lines


def _baseline_lines(plan: Plan) -> list[str]:
    if plan.baseline is None or not plan.changes:
        return []
    return [
        f"Against the baseline {clean(plan.baseline)}: {plan.count_reason(Reason.REQUESTED)} "
        f"requested (the declaration changed), {plan.count_reason(Reason.DRIFT)} drift (the run "
        "was moved in Tallyfy while its declaration stayed the same; applying moves it back)."
    ]


def declaration_lines(edits: DeclarationChanges) -> list[str]:
    """One line per declaration added, removed or changed since the baseline."""
    lines = [f"added    {d.run_id}  {d.state}" + _label(d.name) for d in edits.added]
    lines += [f"removed  {d.run_id}  {d.state}" + _label(d.name) for d in edits.removed]
    lines += [
        f"changed  {c.run_id}  {c.field} {_value(c.before)} -> {_value(c.after)}"
        for c in edits.changed
    ]
    return lines


def _label(name: str | None) -> str:
    return "" if name is None else f"  {quoted(name)}"


def _value(value: str | None) -> str:
    return "None" if value is None else quoted(value)


def _declarations_since(plan: Plan) -> list[str]:
    if plan.declarations is None:
        return []
    if not plan.declarations:
        return [f"No declaration changed since the baseline {plan.baseline}."]
    lines = declaration_lines(plan.declarations)
    shown = [f"  {line}" for line in lines[:EDITS_SHOWN]]
    if len(lines) > EDITS_SHOWN:
        shown.append(f"  ... and {len(lines) - EDITS_SHOWN} more")
    head = f"Declarations since the baseline {plan.baseline}: {plan.declarations.summary()}:"
    return [head, *shown]


def _group_label(kind: str, group: Group) -> str:
    """`blueprint 'Onboarding' (3f2a...)`, `owner 17`, or `no owner` when the API gave none."""
    if group.id is None:
        return f"no {kind}"
    if group.title:
        return f"{kind} {quoted(group.title)} ({clean(str(group.id))})"
    return f"{kind} {clean(str(group.id))}"


def _group_lines(plan: Plan) -> list[str]:
    if not plan.summarised:
        return []
    lines = []
    for kind, groups in (("blueprint", plan.by_blueprint), ("owner", plan.by_owner)):
        lines.append(f"{len(plan.changes)} changes by {kind}:")
        lines += [f"  {g.count:>6}  {_group_label(kind, g)}" for g in groups[:GROUPS_SHOWN]]
        if len(groups) > GROUPS_SHOWN:
            rest = groups[GROUPS_SHOWN:]
            lines.append(f"  {sum(g.count for g in rest):>6}  in {len(rest)} more {kind}s")
    return lines


def _unmanaged_lines(plan: Plan) -> list[str]:
    if plan.unmanaged is None:
        return []
    count = len(plan.unmanaged)
    path = clean(plan.state_file.path)
    if not count:
        return [f"No unmanaged runs: every run of the organization is in {path}."]
    noun = "run is" if count == 1 else "runs are"
    lines = [
        f"Unmanaged: {count} {noun} in the organization but not in {path}; "
        "reconcile never touches them (`reconcile import --merge` adds them):"
    ]
    lines += [
        f"  {clean(run.run_id)}  {run.state.value:<8}  {quoted(run.name)}"
        for run in plan.unmanaged[:UNMANAGED_SHOWN]
    ]
    if count > UNMANAGED_SHOWN:
        lines.append(f"  ... and {count - UNMANAGED_SHOWN} more")
    return lines


def render_plan(
    plan: Plan, stream: TextIO, *, colour: bool = False, warnings: Sequence[str] = ()
) -> None:
    """The plan: header, one line per change, warnings (outdated labels, safety gates), drift
    and unmanaged runs when asked for, checksum, summary."""
    stream.write(
        f"Organization {clean(plan.org_id)} at {clean(plan.api_url)}; "
        f"{plan.declared} runs declared in {clean(plan.state_file.path)}.\n"
    )
    notes = [f"Warning: {clean(warning)}." for warning in plan.warnings]
    notes += [f"Warning: apply would refuse: {clean(warning)}" for warning in warnings]
    sections = [
        _group_lines(plan),
        [change_line(change, colour) for change in plan.changes],
        [_paint(note, "yellow", colour) for note in notes],
        _baseline_lines(plan),
        _declarations_since(plan),
        _accepted_lines(plan),
        _unmanaged_lines(plan),
    ]
    sections = [lines for lines in sections if lines]
    if sections:
        stream.write("\n")
    for lines in sections:
        stream.write("".join(line + "\n" for line in lines) + "\n")
    if plan.changes:
        stream.write(f"Checksum: {checksum(plan)}\n")
    stream.write(_paint(summary_line(plan), "bold", colour) + "\n")


def render_result(result: Result, stream: TextIO, *, colour: bool = False) -> None:
    """One line per finished change."""
    change = result.change
    if result.ok:
        mark = _paint("ok    ", "green", colour)
        stream.write(f"  {mark}  {change.run_id}  {clean(result.detail)}  {quoted(change.name)}\n")
    else:
        mark = _paint("FAILED", "red", colour)
        stream.write(f"  {mark}  {change.run_id}  {change.action.value}: {clean(result.detail)}\n")


def apply_summary_line(report: ApplyReport) -> str:
    """`Apply finished: 2 archived, 1 activated, 0 failed.` (or interrupted, with the count of
    changes not started)."""
    done = {action: 0 for action in Action}
    for result in report.succeeded:
        done[result.change.action] += 1
    return (
        f"Apply {'interrupted' if report.stopped else 'finished'}: {done[Action.ARCHIVE]} "
        f"archived, {done[Action.ACTIVATE]} activated, {len(report.failed)} failed"
        + (f", {len(report.not_started)} not started." if report.stopped else ".")
    )


def render_summary(report: ApplyReport, stream: TextIO, *, colour: bool = False) -> None:
    """The closing line of an apply, and the failures again so they are not lost in the scroll."""
    line = apply_summary_line(report)
    alarming = report.failed or report.stopped
    stream.write("\n" + _paint(line, "red" if alarming else "bold", colour) + "\n")
    for result in report.failed:
        stream.write(
            f"  failed: {result.change.run_id} ({result.change.action.value}): "
            f"{clean(result.detail)}\n"
        )
    for result in report.not_started:
        stream.write(f"  not started: {result.change.run_id} ({result.change.action.value})\n")

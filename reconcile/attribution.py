"""Who moved a run, and why: the activity feed's latest move of a run, told apart as the token's
own (an earlier apply), another person's, or the organization's auto-archive.

Pure: the reads are reconcile.tallyfy.activity's; this module only decides, and `attach` applies
the state file's `[drift] auto_archived` policy to a plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from reconcile.domain import ObservedRun, RunState
from reconcile.plan import Change, Plan, Reason
from reconcile.tallyfy.activity import (
    AutoArchiveSetting,
    Move,
    Person,
    Sources,
    latest_moves,
    moment,
)

AUTO_ARCHIVE_WINDOW = timedelta(days=2)
"""An archive this close to completion + the period is taken for auto-archive's."""


class Cause(StrEnum):
    """What moved a run."""

    AUTO_ARCHIVE = "auto-archive"
    PERSON = "person"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MovedBy:
    """The feed's latest archive or activation of a run. `actor` is None when no person was
    behind it; `by_self` is True when the token's own user made it (an earlier apply)."""

    archived: bool
    at: datetime
    actor: str | None
    email: str | None
    source: str | None
    by_self: bool

    def to_json(self) -> dict[str, Any]:
        """The plan's `moved_by` object."""
        return {
            "actor": self.actor,
            "email": self.email,
            "at": timestamp(self.at),
            "source": self.source,
            "self": self.by_self,
        }


@dataclass(frozen=True)
class Attribution:
    """Who moved a run (None when the feed does not say) and the cause."""

    moved_by: MovedBy | None
    cause: Cause


UNATTRIBUTED = Attribution(None, Cause.UNKNOWN)


def attribute(
    run: ObservedRun,
    latest: Mapping[str, Move] | None,
    me: Person | None,
    setting: AutoArchiveSetting | None,
) -> Attribution:
    """Attribute the run's current state. `latest` is each run's latest move in the feed (see
    `latest_moves`), None when the feed could not be read; `me` the token's user; `setting` the
    organization's auto-archive setting, None when unknown.

    A feed event naming a person decides (the cause is "person", even for an archive at
    auto-archive's time); an archive with no person behind it is auto-archive's; without an
    event, a completed run archived within AUTO_ARCHIVE_WINDOW of its due time is too.
    """
    move = latest.get(run.run_id) if latest is not None and me is not None else None
    # A latest move that does not lead to the current state means the feed missed the last one.
    if move is not None and move.archived != (run.archived_at is not None):
        move = None
    if move is not None:
        moved_by = MovedBy(
            archived=move.archived,
            at=move.at,
            actor=move.actor.name if move.actor else None,
            email=move.actor.email if move.actor else None,
            source=move.source,
            by_self=move.actor is not None and me is not None and move.actor.same_as(me),
        )
        if move.actor is not None:
            return Attribution(moved_by, Cause.PERSON)
        if move.archived:
            return Attribution(moved_by, Cause.AUTO_ARCHIVE)
        return Attribution(moved_by, Cause.UNKNOWN)
    if archived_on_schedule(run, setting):
        return Attribution(None, Cause.AUTO_ARCHIVE)
    return UNATTRIBUTED


def auto_archive_due(run: ObservedRun, setting: AutoArchiveSetting | None) -> datetime | None:
    """When auto-archive archives (or archived) this completed run; None if it never will."""
    if setting is None or not setting.enabled:
        return None
    completed = moment(run.completed_at)
    return None if completed is None else completed + setting.period


def archived_on_schedule(run: ObservedRun, setting: AutoArchiveSetting | None) -> bool:
    """Whether the run was archived within AUTO_ARCHIVE_WINDOW of its auto-archive due time."""
    due = auto_archive_due(run, setting)
    archived = moment(run.archived_at)
    return due is not None and archived is not None and abs(archived - due) <= AUTO_ARCHIVE_WINDOW


def timestamp(at: datetime) -> str:
    """An aware datetime as ISO-8601 UTC with a Z, the way Tallyfy writes them."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def attributed_changes(plan: Plan) -> list[Change]:
    """The changes to attribute: drift, or every change when there is no baseline."""
    return [change for change in plan.changes if change.reason in (None, Reason.DRIFT)]


def needs_setting(plan: Plan) -> bool:
    """Whether the organization's auto-archive setting matters: a change may be auto-archive's,
    or a run declared active is complete (auto-archive may come for it)."""
    return any(
        run.target is RunState.ACTIVE and run.observed.completed_at is not None for run in plan.runs
    )


def attach(plan: Plan, sources: Sources, *, policy: str, now: datetime) -> Plan:
    """The plan with each drift change attributed, the `[drift] auto_archived` policy applied,
    and notices: why attribution is unavailable, and which runs auto-archive will archive.

    "accept" moves auto-archive's drift to `accepted`; "fail" keeps it among the changes and
    refuses the plan (`refused`), naming the runs."""
    latest = latest_moves(sources.moves) if sources.moves is not None else None
    me = sources.me
    targets = {change.run_id for change in attributed_changes(plan)}
    changes: list[Change] = []
    accepted: list[Change] = []
    refusing: list[Change] = []
    for change in plan.changes:
        if change.run_id not in targets:
            changes.append(change)
            continue
        found = attribute(change.observed, latest, me, sources.auto_archive)
        told = replace(change, attribution=found)
        auto = found.cause is Cause.AUTO_ARCHIVE
        if auto and policy == "accept":
            accepted.append(told)
            continue
        changes.append(told)
        if auto and policy == "fail":
            refusing.append(told)
    refused = plan.refused
    if refusing:
        # One line: warnings are shown with their line breaks escaped.
        listed = "; ".join(f"{c.desired.source}: {c.run_id} {c.name!r}" for c in refusing)
        refused += (
            f"{len(refusing)} declared run(s) were archived by the organization's auto-archive, "
            'and the state file says [drift] auto_archived = "fail"; declare them archived '
            f'(`reconcile refresh` writes them down), or choose "revert" or "accept": {listed}',
        )
    notices = list(plan.notices)
    if targets and not sources.attribution:
        notices.append(
            "who moved the drifted runs is unavailable (the plan is the same without it): "
            + "; ".join(sources.unavailable)
        )
    # An accepted run is left archived: no apply starts a tug-of-war over it.
    notices += _coming(plan, sources.auto_archive, now, {change.run_id for change in accepted})
    return replace(
        plan,
        changes=tuple(changes),
        accepted=tuple(accepted),
        notices=tuple(notices),
        refused=refused,
    )


def _coming(
    plan: Plan, setting: AutoArchiveSetting | None, now: datetime, accepted: set[str]
) -> list[str]:
    """One warning per run declared active that is complete, with the day auto-archive archives
    it (or, past that day, that it will again after every activation)."""
    if setting is None or not setting.enabled:  # no run is due: skip reading every run's date
        return []
    coming = [
        (run, when)
        for run in plan.runs
        if run.target is RunState.ACTIVE
        and run.run_id not in accepted
        and (when := auto_archive_due(run.observed, setting)) is not None
    ]
    coming.sort(key=lambda pair: (pair[0].desired.source.line or 0, pair[0].run_id))
    warnings = []
    for run, when in coming:
        where = f"{run.desired.source}: run {run.run_id} is declared active but complete"
        if when > now and run.current is RunState.ACTIVE:
            warnings.append(
                f"{where}; auto-archive ({setting}) will archive it on {when.date()}, and each "
                "apply after that would activate it again; declare it archived before then"
            )
        else:
            warnings.append(
                f"{where}; auto-archive ({setting}) archives it since {when.date()}, so each "
                "apply that activates it starts a tug-of-war; declare it archived"
            )
    return warnings

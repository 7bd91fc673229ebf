"""Who moved a run, and why: the activity feed's latest move of a run, told apart as the token's
own (an earlier apply), another person's, or the organization's auto-archive.

Pure: the reads are reconcile.tallyfy.activity's; this module only decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from reconcile.domain import ObservedRun
from reconcile.tallyfy.activity import AutoArchiveSetting, Move, Person, moment

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
    completed = moment(run.completed_at)
    if setting is None or not setting.enabled or completed is None:
        return None
    return completed + setting.period


def archived_on_schedule(run: ObservedRun, setting: AutoArchiveSetting | None) -> bool:
    """Whether the run was archived within AUTO_ARCHIVE_WINDOW of its auto-archive due time."""
    due = auto_archive_due(run, setting)
    archived = moment(run.archived_at)
    return due is not None and archived is not None and abs(archived - due) <= AUTO_ARCHIVE_WINDOW


def timestamp(at: datetime) -> str:
    """An aware datetime as ISO-8601 UTC with a Z, the way Tallyfy writes them."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")

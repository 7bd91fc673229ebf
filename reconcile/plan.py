"""Compare declared and observed states and produce a Plan: the whole set of changes, built before
anything is written. A plan with no changes is an ordinary plan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from reconcile.differences import DeclarationChanges
from reconcile.domain import DesiredRun, ObservedRun, RunState
from reconcile.state import SafetySettings, StateFile, StateFileRef

if TYPE_CHECKING:
    from reconcile.attribution import Attribution


class Action(StrEnum):
    """The two writes reconcile ever makes. Archives sort before activations."""

    ARCHIVE = "archive"
    ACTIVATE = "activate"


class Reason(StrEnum):
    """Why a change is in the plan, when the plan was compared with a baseline state file."""

    REQUESTED = "requested"
    """The declaration differs from the baseline's (or is new): the edit asks for it."""
    DRIFT = "drift"
    """The declaration equals the baseline's: the run was moved in Tallyfy; the change undoes it."""


@dataclass(frozen=True)
class PlannedRun:
    """A declared run next to what the API reported for it."""

    desired: DesiredRun
    observed: ObservedRun

    @property
    def run_id(self) -> str:
        return self.desired.run_id

    @property
    def current(self) -> RunState:
        return self.observed.state

    @property
    def target(self) -> RunState:
        return self.desired.state

    @property
    def name(self) -> str:
        """The live name; the label in the state file is only a fallback."""
        return self.observed.name or self.desired.name or ""

    @property
    def label_outdated(self) -> bool:
        """The state file labels the run with a `name` that is not its live name."""
        return self.desired.name is not None and self.desired.name != self.observed.name


@dataclass(frozen=True)
class Change(PlannedRun):
    """A planned run whose current state differs from its declaration."""

    reason: Reason | None = None
    """Set only when the plan was compared with a baseline (see reconcile.drift)."""
    attribution: Attribution | None = None
    """Who moved the run and why, for drift (every change without a baseline); None when not
    looked for (see reconcile.attribution)."""

    @property
    def action(self) -> Action:
        return Action.ARCHIVE if self.target is RunState.ARCHIVED else Action.ACTIVATE


GroupKey = str | int | None
SUMMARY_ABOVE = 20
"""Text and Markdown summarise the changes by blueprint and by owner when there are more."""


@dataclass(frozen=True)
class Group:
    """The changes that share a blueprint or an owner. `id` is None for runs the API did not
    say it of; `title` is the blueprint's title when the API gives one (it gives no owner names)."""

    id: GroupKey
    title: str | None
    count: int


def _groups(
    changes: Iterable[Change], key: Callable[[ObservedRun], tuple[GroupKey, str | None]]
) -> tuple[Group, ...]:
    counts: Counter[GroupKey] = Counter()
    titles: dict[GroupKey, str] = {}
    for change in changes:
        group, title = key(change.observed)
        counts[group] += 1
        if title:
            titles.setdefault(group, title)
    # Largest first; ties in a stable order, with the runs the API said nothing of last.
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, str(item[0])))
    return tuple(Group(group, titles.get(group), count) for group, count in ordered)


def _blueprint(run: ObservedRun) -> tuple[GroupKey, str | None]:
    return run.checklist_id, run.checklist_title


def _owner(run: ObservedRun) -> tuple[GroupKey, str | None]:
    return run.owner_id, None


@dataclass(frozen=True)
class SavedPlan:
    """Where a plan applied with `apply --plan` came from, and how much of it was left to do."""

    path: str
    reviewed: int
    """Changes in the saved plan."""
    done: int
    """Of those, changes already made when it was applied (their runs are in the declared state)."""


@dataclass(frozen=True, repr=False)
class Plan:
    """Every declared run, split into changes (in execution order) and runs already right, with
    what the pipeline attached: the limits it was checked against and the gates it trips, the
    baseline's labels, unmanaged runs, and the saved plan it came from."""

    org_id: str
    api_url: str
    state_file: StateFileRef
    changes: tuple[Change, ...]
    unchanged: tuple[PlannedRun, ...]
    limits: SafetySettings
    """The safety gates' limits this plan is checked against (reconcile.safety)."""
    baseline: str | None = None
    """Where the baseline state file was read from (a path, or REF:path), if one was given."""
    declarations: DeclarationChanges | None = None
    """With a baseline: the declarations added, removed and changed since it."""
    unmanaged: tuple[ObservedRun, ...] | None = None
    """Runs of the organization the file does not declare, by run ID; None when not looked for."""
    gates: tuple[str, ...] = ()
    """One sentence per safety gate the plan trips (reconcile.safety.tripped)."""
    saved: SavedPlan | None = None
    """Set when the plan is what was left to do of a saved plan."""
    notices: tuple[str, ...] = ()
    """Warnings the pipeline attached from what it read, shown after the outdated labels."""
    gone: tuple[DesiredRun, ...] = ()
    """Declared runs that neither GET nor either listing knows (deleted for good, or never
    there): never written; each is a warning (see `warnings`)."""
    accepted: tuple[Change, ...] = ()
    """Drift caused by auto-archive that `[drift] auto_archived = "accept"` leaves as it is."""
    unread: tuple[DesiredRun, ...] = ()
    """Declared runs a drift check (`--changed-since`) did not read, the activity feed showing
    them unmoved: still declared, and counted at their declared state by the safety gates."""
    refused: tuple[str, ...] = ()
    """Why the state file itself forbids applying this plan (`[drift] auto_archived = "fail"`
    with auto-archive drift): unlike a gate, no option lifts it."""

    def __repr__(self) -> str:
        # Counts, not contents: a plan can hold 100,000 runs, and libraries format reprs of
        # finished tasks (anyio does when it cancels a connection attempt).
        return (
            f"Plan(org_id={self.org_id!r}, api_url={self.api_url!r}, "
            f"state_file={self.state_file.path!r}, changes={len(self.changes)}, "
            f"unchanged={len(self.unchanged)})"
        )

    @property
    def declared(self) -> int:
        return len(self.changes) + len(self.unchanged) + len(self.accepted) + len(self.unread)

    @property
    def runs(self) -> tuple[PlannedRun, ...]:
        """Every declared run: the changes, the unchanged runs, then the accepted drift."""
        return (*self.changes, *self.unchanged, *self.accepted)

    @property
    def warnings(self) -> tuple[str, ...]:
        """One sentence per declared run whose `name` label no longer matches its live name, then
        the notices."""
        labels = tuple(
            f"{run.desired.source}: run {run.run_id} is labelled {run.desired.name!r} but is "
            f"named {run.observed.name!r} in Tallyfy; update the label"
            for run in sorted(self.runs, key=_in_file_order)
            if run.label_outdated
        )
        gone = tuple(
            f"{run.source}: run {run.run_id} is declared {run.state.value} but organization "
            f"{self.org_id} no longer has it (GET and both listings do not know it; archived runs "
            "are deleted for good in time); it is left alone: remove it from the state file"
            for run in self.gone
        )
        return labels + gone + self.notices

    @property
    def by_blueprint(self) -> tuple[Group, ...]:
        """The changes counted by the blueprint their run was launched from, largest first."""
        return _groups(self.changes, _blueprint)

    @property
    def by_owner(self) -> tuple[Group, ...]:
        """The changes counted by their run's owner, largest first."""
        return _groups(self.changes, _owner)

    @property
    def summarised(self) -> bool:
        """Whether text and Markdown show the groups: a long plan is read by its groups first."""
        return len(self.changes) > SUMMARY_ABOVE

    def count_reason(self, reason: Reason) -> int:
        return sum(1 for change in self.changes if change.reason is reason)

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)


def _in_file_order(run: PlannedRun) -> tuple[int, str]:
    return (run.desired.source.line or 0, run.run_id)


def build_plan(
    state_file: StateFile,
    observed: Mapping[str, ObservedRun],
    *,
    org_id: str,
    api_url: str,
    limits: SafetySettings | None = None,
    gone: Sequence[DesiredRun] = (),
) -> Plan:
    """The plan that brings every declared run to its declared state, to be checked against
    `limits` (by default the state file's [safety] table). Runs `gone` are left out of it."""
    changes: list[Change] = []
    unchanged: list[PlannedRun] = []
    left_out = {run.run_id for run in gone}
    for run in state_file.runs:
        if run.run_id in left_out:
            continue
        seen = observed[run.run_id]
        if seen.state is run.state:
            unchanged.append(PlannedRun(run, seen))
        else:
            changes.append(Change(run, seen))
    order = list(Action)
    changes.sort(key=lambda change: order.index(change.action))
    return Plan(
        org_id=org_id,
        api_url=api_url,
        state_file=state_file.ref,
        changes=tuple(changes),
        unchanged=tuple(unchanged),
        limits=state_file.safety if limits is None else limits,
        gone=tuple(gone),
    )

"""Compare declared and observed states and produce a Plan: the whole set of changes, built before
anything is written. A plan with no changes is an ordinary plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconcile.state import DesiredRun, RunState, StateFile
from reconcile.tallyfy import ObservedRun


class Action(StrEnum):
    """The two writes reconcile ever makes. Archives sort before activations."""

    ARCHIVE = "archive"
    ACTIVATE = "activate"


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


@dataclass(frozen=True)
class Change(PlannedRun):
    """A planned run whose current state differs from its declaration."""

    @property
    def action(self) -> Action:
        return Action.ARCHIVE if self.target is RunState.ARCHIVED else Action.ACTIVATE


@dataclass(frozen=True)
class Plan:
    """Every declared run, split into changes (in execution order) and runs already right."""

    org_id: str
    api_url: str
    state_file: StateFile
    changes: tuple[Change, ...]
    unchanged: tuple[PlannedRun, ...]

    @property
    def declared(self) -> int:
        return len(self.changes) + len(self.unchanged)

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)


def build_plan(
    state_file: StateFile, observed: Mapping[str, ObservedRun], *, org_id: str, api_url: str
) -> Plan:
    """The plan that brings every declared run to its declared state."""
    changes: list[Change] = []
    unchanged: list[PlannedRun] = []
    for run in state_file.runs:
        if observed[run.run_id].state is not run.state:
            changes.append(Change(run, observed[run.run_id]))
        else:
            unchanged.append(PlannedRun(run, observed[run.run_id]))
    order = list(Action)
    changes.sort(key=lambda change: order.index(change.action))
    return Plan(
        org_id=org_id,
        api_url=api_url,
        state_file=state_file,
        changes=tuple(changes),
        unchanged=tuple(unchanged),
    )

"""Label each change of a plan against a baseline state file.

A change whose declaration is the same in the baseline (typically the default branch) was not
asked for by the edit under review: the run was archived or activated in Tallyfy behind the file's
back, and applying the plan undoes that ("drift"). Any other change is "requested".
"""

from __future__ import annotations

from dataclasses import replace

from reconcile.plan import Plan, Reason
from reconcile.state import StateFile


def label_changes(plan: Plan, baseline: StateFile) -> Plan:
    """The plan with each change marked requested or drift against `baseline`."""
    before = {run.run_id: run.state for run in baseline.runs}
    changes = tuple(
        replace(
            change,
            reason=Reason.DRIFT if before.get(change.run_id) is change.target else Reason.REQUESTED,
        )
        for change in plan.changes
    )
    return replace(plan, changes=changes, baseline=baseline.path)

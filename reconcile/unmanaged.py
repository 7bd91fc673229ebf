"""Unmanaged runs: the organization's runs that the state file does not declare. They are only
reported, never touched."""

from __future__ import annotations

from dataclasses import replace

from reconcile.listing import list_org_runs
from reconcile.plan import Plan
from reconcile.tallyfy import TallyfyClient


async def add_unmanaged(client: TallyfyClient, plan: Plan) -> Plan:
    """The plan with the organization's undeclared runs (active and archived), by run ID."""
    declared = {run.run_id for run in plan.runs}
    runs = await list_org_runs(client)
    return replace(plan, unmanaged=tuple(run for run in runs if run.run_id not in declared))

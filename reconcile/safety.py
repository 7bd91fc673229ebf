"""Every check between a plan and its first write: refuse a plan that looks like a mistake rather
than an intent, or that is not the plan that was reviewed.

A state file emptied by a bad merge, or a wrong organization ID that makes half the runs look
misdeclared, produces a plan that archives or activates a large share of the organization at once.
`apply` refuses such a plan (exit 3) unless `--force` is given; `plan` shows the same gates as
warnings, so a reviewer sees them before the merge. A reviewed plan, named by its checksum or
saved with `plan --out`, is applied only if it still describes the organization.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from reconcile.differences import moved_fields, record
from reconcile.domain import DesiredRun, ObservedRun, RunState
from reconcile.errors import ConfigError, SafetyError, UnknownRunsError
from reconcile.plan import Action, Change, Plan, PlannedRun, SavedPlan
from reconcile.planfile import checksum
from reconcile.state import SafetySettings

_HEX = re.compile(r"[0-9a-f]{64}")


def tripped(plan: Plan) -> tuple[str, ...]:
    """One sentence per gate this plan trips against its limits; empty when apply may proceed."""
    if plan.declared == 0:
        return (
            f"{plan.state_file.path} declares no runs at all; an empty state file is more "
            "likely a mistake (a bad merge, the wrong file) than an intent.",
        )
    limits = plan.limits
    # One pass over the runs and one over the changes: at 100,000 runs, property lookups per run
    # and per gate cost a tenth of a second.
    archived_now = sum(1 for run in plan.runs if run.observed.archived_at) + sum(
        1 for run in plan.unread if run.state is RunState.ARCHIVED
    )
    bases = {RunState.ARCHIVED: archived_now, RunState.ACTIVE: plan.declared - archived_now}
    archives = sum(1 for change in plan.changes if change.desired.state is RunState.ARCHIVED)
    counts = {Action.ARCHIVE: archives, Action.ACTIVATE: len(plan.changes) - archives}
    found = []
    for action, now, limit, key in (
        (Action.ARCHIVE, RunState.ACTIVE, limits.max_archive_percent, "max_archive_percent"),
        (Action.ACTIVATE, RunState.ARCHIVED, limits.max_activate_percent, "max_activate_percent"),
    ):
        base = bases[now]
        count = counts[action]
        if base >= limits.min_runs and count * 100 > limit * base:
            found.append(
                f"the plan would {action.value} {count} of the {base} declared runs that are "
                f"{now.value} now ({count * 100 / base:.1f}%), over the limit of {limit:g}% "
                f"({key}, checked from {limits.min_runs} {now.value} runs on)."
            )
    return tuple(found)


def _over(plan: Plan, max_changes: int | None) -> bool:
    return max_changes is not None and len(plan.changes) > max_changes


def refusals(plan: Plan, *, force: bool, max_changes: int | None) -> tuple[str, ...]:
    """Why `apply` with the same options would refuse this plan, one sentence each (empty when
    it would go ahead): what `plan` shows and exits 3 for, so a review sees it before the merge."""
    found = [*plan.refused, *(() if force else plan.gates)]
    if _over(plan, max_changes):
        found.append(
            f"the plan has {len(plan.changes)} changes, more than --max-changes {max_changes}."
        )
    return tuple(found)


def check_before_writes(
    plan: Plan, *, expected_checksum: str | None, force: bool, max_changes: int | None
) -> None:
    """Every check between the plan and the first write, in order: the state file's own refusal
    (`refused`), the reviewed checksum, the limit on changes (a limit the caller set explicitly,
    so `force` does not lift it), then the gates (unless forced). SafetyError names what
    refused."""
    if plan.refused:  # the state file's own policy: --force does not lift it
        raise SafetyError(
            "The state file refuses this plan; nothing was written:\n"
            + "\n".join(f"  - {reason}" for reason in plan.refused)
        )
    if expected_checksum is not None and plan.changes:
        check_checksum(plan, expected_checksum)
    if _over(plan, max_changes):
        raise SafetyError(
            f"The plan has {len(plan.changes)} changes, more than --max-changes {max_changes}; "
            "nothing was written. Raise --max-changes, or split the change into smaller steps."
        )
    if plan.gates and not force:
        reasons = "\n".join(f"  - {gate}" for gate in plan.gates)
        raise SafetyError(
            "A safety gate refused the plan; nothing was written:\n"
            f"{reasons}\n"
            "Check the state file and the organization. If the plan is intended, raise the limit "
            "in the state file's [safety] table or with --max-archive-percent / "
            "--max-activate-percent / --gate-min-runs, or pass --force."
        )


def parse_checksum(value: str) -> str:
    """A checksum given on the command line, normalized; ConfigError if it cannot be one."""
    digest = value.strip().lower()
    if not _HEX.fullmatch(digest):
        raise ConfigError(
            f"--checksum {value!r} is not a sha256 checksum (64 hex characters) as printed by "
            "reconcile plan."
        )
    return digest


def check_checksum(plan: Plan, expected: str) -> None:
    """SafetyError unless the plan is the one whose checksum was reviewed."""
    if checksum(plan) != expected:
        raise SafetyError(
            f"The live plan's checksum is {checksum(plan)}, not the reviewed {expected}: the "
            "state file or the organization changed since that plan was reviewed. Nothing was "
            "written; run plan again and review it."
        )


def check_saved_checksum(plan: Plan, path: str, expected: str) -> None:
    """SafetyError unless the saved plan is the one whose checksum was reviewed. The file's own
    checksum only proves it is whole: whoever can write the file can recompute it."""
    if checksum(plan) != expected:
        raise SafetyError(
            f"The plan file {path} has the checksum {checksum(plan)}, not the reviewed {expected}: "
            "it is not the plan that was reviewed (made again, or edited and its checksum "
            "recomputed). Nothing was written; apply the reviewed plan or review this one."
        )


def check_target(plan: Plan, path: str, *, org_id: str, api_url: str) -> None:
    """SafetyError unless the saved plan was made for this organization and API."""
    if (plan.org_id, plan.api_url) != (org_id, api_url):
        raise SafetyError(
            f"The plan file {path} was made for organization {plan.org_id} at {plan.api_url}, "
            f"but this apply targets organization {org_id} at {api_url}. Nothing was written; "
            "check --org, --api-url, TALLYFY_ORG_ID and TALLYFY_API_URL."
        )


def remaining(plan: Plan, path: str, now: Mapping[str, ObservedRun]) -> Plan:
    """What is left to do of a saved plan, given every declared run as it is now.

    A run already in its declared state needs nothing. Any other run must look exactly as it did
    when the plan was made; otherwise the reviewed plan no longer describes the organization and
    SafetyError names every run that moved, with the fields that changed."""
    moved = []
    for run in plan.runs:
        fresh = now[run.run_id]
        if fresh.state is not run.target and record(fresh) != record(run.observed):
            changed = ", ".join(map(str, moved_fields(run.observed, fresh)))
            moved.append(
                f"  {run.run_id} ({run.desired.source}): planned from {_seen(run.observed)}, now "
                f"{_seen(fresh)}; changed: {changed}"
            )
    if moved:
        listed = "\n".join(moved)
        raise SafetyError(
            f"{len(moved)} run(s) moved since the plan in {path} was made, so it no longer "
            f"describes the organization. Nothing was written; make and review a new plan.\n"
            f"{listed}"
        )
    pending = {
        change.run_id for change in plan.changes if now[change.run_id].state is not change.target
    }
    changes = tuple(Change(c.desired, now[c.run_id]) for c in plan.changes if c.run_id in pending)
    unchanged = tuple(
        PlannedRun(run.desired, now[run.run_id]) for run in plan.runs if run.run_id not in pending
    )
    saved = SavedPlan(path, reviewed=len(plan.changes), done=len(plan.changes) - len(changes))
    return Plan(
        plan.org_id,
        plan.api_url,
        plan.state_file,
        changes,
        unchanged,
        plan.limits,
        saved=saved,
        refused=plan.refused,
    )


def _seen(run: ObservedRun) -> str:
    return (
        f"{run.state.value} (status {run.status or 'unknown'}, last updated "
        f"{run.last_updated or 'unknown'}, name {run.name!r})"
    )


def check_gone(gone: Sequence[DesiredRun], limits: SafetySettings, org_id: str) -> None:
    """Refuse a plan with gone runs that cannot be left alone: every run declared active (it
    cannot be activated), and with `[safety] gone = "error"` every one. The others are warnings
    (Plan.warnings). UnknownRunsError names each by ID and file line."""
    refused = [run for run in gone if limits.gone == "error" or run.state is RunState.ACTIVE]
    if refused:
        raise UnknownRunsError(
            [run.run_id for run in refused], org_id, [str(run.source) for run in refused]
        )

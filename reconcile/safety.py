"""Safety gates: refuse, before any write, a plan that looks like a mistake rather than an intent.

A state file emptied by a bad merge, or a wrong organization ID that makes half the runs look
misdeclared, produces a plan that archives or activates a large share of the organization at once.
`apply` refuses such a plan (exit 3) unless `--force` is given; `plan` shows the same gates as
warnings, so a reviewer sees them before the merge.
"""

from __future__ import annotations

from reconcile.errors import SafetyError
from reconcile.plan import Action, Plan
from reconcile.state import RunState, SafetySettings


def settings_with(
    settings: SafetySettings,
    *,
    max_archive_percent: float | None = None,
    max_activate_percent: float | None = None,
    min_runs: int | None = None,
) -> SafetySettings:
    """The state file's `[safety]` settings with any flag given on the command line on top."""
    return SafetySettings(
        max_archive_percent=settings.max_archive_percent
        if max_archive_percent is None
        else max_archive_percent,
        max_activate_percent=settings.max_activate_percent
        if max_activate_percent is None
        else max_activate_percent,
        min_runs=settings.min_runs if min_runs is None else min_runs,
    )


def tripped(plan: Plan, settings: SafetySettings) -> tuple[str, ...]:
    """One sentence per gate this plan trips; empty when apply may proceed."""
    if plan.declared == 0:
        return (
            f"{plan.state_file.path} declares no runs at all; an empty state file is more "
            "likely a mistake (a bad merge, the wrong file) than an intent.",
        )
    runs = (*plan.changes, *plan.unchanged)
    found = []
    for action, now, limit, key in (
        (Action.ARCHIVE, RunState.ACTIVE, settings.max_archive_percent, "max_archive_percent"),
        (Action.ACTIVATE, RunState.ARCHIVED, settings.max_activate_percent, "max_activate_percent"),
    ):
        base = sum(1 for run in runs if run.current is now)
        count = plan.count(action)
        if base >= settings.min_runs and count * 100 > limit * base:
            found.append(
                f"the plan would {action.value} {count} of the {base} declared runs that are "
                f"{now.value} now ({count * 100 / base:.1f}%), over the limit of {limit:g}% "
                f"({key}, checked from {settings.min_runs} {now.value} runs on)."
            )
    return tuple(found)


def enforce(
    plan: Plan, settings: SafetySettings, *, force: bool, max_changes: int | None = None
) -> None:
    """Raise SafetyError if a gate trips (unless forced) or the plan has more than
    `max_changes` changes (a limit the caller set explicitly, so --force does not lift it)."""
    if max_changes is not None and len(plan.changes) > max_changes:
        raise SafetyError(
            f"The plan has {len(plan.changes)} changes, more than --max-changes {max_changes}; "
            "nothing was written. Raise --max-changes, or split the change into smaller steps."
        )
    gates = tripped(plan, settings)
    if gates and not force:
        reasons = "\n".join(f"  - {gate}" for gate in gates)
        raise SafetyError(
            "A safety gate refused the plan; nothing was written:\n"
            f"{reasons}\n"
            "Check the state file and the organization. If the plan is intended, raise the limit "
            "in the state file's [safety] table or with --max-archive-percent / "
            "--max-activate-percent / --gate-min-runs, or pass --force."
        )

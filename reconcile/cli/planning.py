"""`reconcile validate`, `plan` and `apply`."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from reconcile.apply import ApplyReport, Interruption, Result, apply_plan
from reconcile.cli.app import (
    EXIT_CHANGES,
    EXIT_CODES,
    EXIT_ERROR,
    cli,
    colour_for,
    connection_options,
    make_client,
    open_state,
    plan_state,
    progress_line,
    safety_options,
    safety_settings,
    state_argument,
    step_summary,
    write_file,
)
from reconcile.drift import add_unmanaged, label_changes, read_baseline
from reconcile.errors import ConfigError, SafetyError
from reconcile.plan import Plan
from reconcile.planfile import check_checksum, check_target, load_plan, parse_checksum, verify
from reconcile.render import (
    render_apply_markdown,
    render_plan,
    render_plan_json,
    render_plan_markdown,
    render_report_json,
    render_result,
    render_summary,
)
from reconcile.safety import enforce, tripped
from reconcile.state import (
    RunState,
    StateFile,
    TallyfySettings,
    load_state,
)
from reconcile.tallyfy import Fetch, TallyfyClient, observe


@cli.command(epilog=EXIT_CODES)
@state_argument
def validate(state_file: Path) -> None:
    """Check STATE_FILE offline (default: state.toml). Sends no request."""
    state = load_state(state_file)
    archived = sum(1 for run in state.runs if run.state is RunState.ARCHIVED)
    click.echo(
        f"{state.path} is valid: {len(state.runs)} runs declared "
        f"({archived} archived, {len(state.runs) - archived} active)."
    )


@cli.command(epilog=EXIT_CODES)
@state_argument
@connection_options
@safety_options
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when there are changes, 0 when there are none.",
)
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Label each change requested (its declaration differs from this file's) or drift.",
)
@click.option(
    "--baseline-ref",
    metavar="REF",
    help="Like --baseline, reading the same state file at this git revision (e.g. origin/main).",
)
@click.option(
    "--show-unmanaged",
    is_flag=True,
    help="Also list the organization's runs that the file does not declare (reads every run).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="Output for people, for programs (versioned JSON), or for a pull-request comment.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also save the plan as JSON in this file, for apply --plan.",
)
def plan(
    state_file: Path,
    detailed_exitcode: bool,
    baseline: Path | None,
    baseline_ref: str | None,
    show_unmanaged: bool,
    output_format: str,
    out: Path | None,
    **connection: Any,
) -> None:
    """Show what apply would change. Read-only: sends only GET requests."""

    async def run() -> Plan:
        state, client = open_state(state_file, connection)
        async with client:
            before = read_baseline(state_file, path=baseline, ref=baseline_ref)
            planned = await plan_state(client, state, connection["fetch"])
            if show_unmanaged:
                planned = await add_unmanaged(client, planned)
        return planned if before is None else label_changes(planned, before)

    result = asyncio.run(run())
    warnings = tripped(result, result.state_file.safety)
    if output_format == "json":
        render_plan_json(result, sys.stdout, warnings=warnings)
    elif output_format == "markdown":
        render_plan_markdown(result, sys.stdout, warnings=warnings)
    else:
        render_plan(result, sys.stdout, colour=colour_for(sys.stdout), warnings=warnings)
    if out is not None:
        write_file(out, lambda stream: render_plan_json(result, stream, warnings=warnings))
    step_summary(lambda stream: render_plan_markdown(result, stream, warnings=warnings))
    if detailed_exitcode and result.changes:
        sys.exit(EXIT_CHANGES)


@cli.command(epilog=EXIT_CODES)
@state_argument
@connection_options
@safety_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Apply exactly the changes of this saved plan (from plan --out) instead of planning "
    "from STATE_FILE; refused if any run moved since. Counts as approval.",
)
@click.option(
    "--checksum",
    "expected_checksum",
    metavar="HEX",
    help="Plan live and apply only if the plan's checksum is this one (as printed by plan). "
    "Counts as approval.",
)
@click.option("--force", is_flag=True, help="Apply even when a safety gate refuses the plan.")
@click.option(
    "--max-changes",
    type=click.IntRange(0),
    metavar="N",
    help="Refuse a plan with more changes (writes) than this; --force does not lift it.",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write JSON of every change attempted and its outcome, also when apply stops part-way.",
)
def apply(
    state_file: Path,
    auto_approve: bool,
    plan_file: Path | None,
    expected_checksum: str | None,
    force: bool,
    max_changes: int | None,
    report_file: Path | None,
    **connection: Any,
) -> None:
    """Plan, ask for confirmation, then archive and activate exactly the planned runs."""
    colour = colour_for(sys.stdout)
    if plan_file is not None and expected_checksum is not None:
        raise ConfigError("Give --plan or --checksum, not both: each names the reviewed plan.")
    if expected_checksum is not None:
        expected_checksum = parse_checksum(expected_checksum)
    approved = auto_approve or plan_file is not None or expected_checksum is not None
    planned: Plan | None = None
    results: list[Result] = []
    finished = False

    def done(result: Result) -> None:
        results.append(result)
        render_result(result, sys.stdout, colour=colour)

    async def run() -> ApplyReport | None:
        nonlocal planned, finished
        loaded, client = _open_for_apply(state_file, plan_file, connection)
        async with client:
            planned = await _plan_to_apply(client, loaded, connection["fetch"])
            render_plan(planned, sys.stdout, colour=colour)
            _gate(planned, expected_checksum, force, max_changes)
            if not planned.changes:
                finished = True
                return None
            _confirm(len(planned.changes), approved)
            click.echo("")
            report = await _write_phase(client, planned, stop, done)
            finished = not report.stopped
            return report

    stop = Interruption()
    report: ApplyReport | None = None
    try:
        report = asyncio.run(run())
    finally:
        if report_file is not None and planned is not None:
            attempted = planned
            write_file(
                report_file,
                lambda stream: render_report_json(attempted, results, stream, finished=finished),
            )
    assert planned is not None
    applied = planned
    if report is None:
        step_summary(lambda stream: render_plan_markdown(applied, stream))
        return
    render_summary(report, sys.stdout, colour=colour)
    step_summary(lambda stream: render_apply_markdown(applied, report, stream))
    if stop.signum is not None:
        sys.exit(128 + stop.signum)
    if report.failed:
        sys.exit(EXIT_ERROR)


def _announce(signum: int) -> None:
    click.echo(
        f"\nInterrupted ({signal.Signals(signum).name}): no new write will start; "
        "finishing and checking the writes in flight.",
        err=True,
    )


async def _write_phase(
    client: TallyfyClient, planned: Plan, stop: Interruption, on_result: Callable[[Result], None]
) -> ApplyReport:
    """Carry out the plan with a progress line on a terminal; SIGINT and SIGTERM stop new
    writes (see Interruption) instead of killing the process."""
    total = len(planned.changes)
    progress = progress_line("Applying", "changes")
    count = 0

    def heard(result: Result) -> None:
        nonlocal count
        count += 1
        if progress is not None:
            progress.clear()
        on_result(result)
        sys.stdout.flush()
        if progress is not None:
            progress.update(count, total)

    with stop.on_signals(_announce):
        report = await apply_plan(client, planned, on_result=heard, stop=stop)
    if progress is not None:
        progress.clear()
    return report


def _open_for_apply(
    state_file: Path, plan_file: Path | None, connection: dict[str, Any]
) -> tuple[StateFile | tuple[Plan, Path], TallyfyClient]:
    if plan_file is None:
        return open_state(state_file, connection)
    saved, client = _open_saved(plan_file, connection)
    return (saved, plan_file), client


async def _plan_to_apply(
    client: TallyfyClient, loaded: StateFile | tuple[Plan, Path], fetch: Fetch
) -> Plan:
    """The live plan of a state file, or what is left to do of a saved plan."""
    if isinstance(loaded, StateFile):
        return await plan_state(client, loaded, fetch)
    saved, plan_file = loaded
    now = await observe(client, saved.state_file.runs, fetch)
    planned = verify(saved, plan_file, now)
    skipped = len(saved.changes) - len(planned.changes)
    click.echo(
        f"Saved plan {plan_file}: {len(saved.changes)} changes reviewed, {skipped} already done."
    )
    return planned


def _gate(
    planned: Plan, expected_checksum: str | None, force: bool, max_changes: int | None
) -> None:
    """Every check between the plan and the first write: the reviewed checksum, then the gates."""
    if expected_checksum is not None and planned.changes:
        check_checksum(planned, expected_checksum)
    safety = planned.state_file.safety
    enforce(planned, safety, force=force, max_changes=max_changes)
    for gate in tripped(planned, safety):
        click.echo(f"Warning: --force overrides a safety gate: {gate}", err=True)


def _confirm(count: int, auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise SafetyError(
            "apply needs confirmation, but standard input is not a terminal. Review the plan and "
            "pass --auto-approve to apply it unattended (as in CI); nothing was written."
        )
    noun = "change" if count == 1 else "changes"
    if not click.confirm(f"Apply {count} {noun}?", default=False):
        raise SafetyError("Apply cancelled at the prompt; nothing was written.")


def _open_saved(plan_file: Path, connection: dict[str, Any]) -> tuple[Plan, TallyfyClient]:
    """Load a saved plan, check it is for the organization and API configured, and make the
    client. The organization may come from the plan; the API URL never does, so that a plan file
    cannot send the token to another server."""
    saved = load_plan(plan_file)
    client = make_client(TallyfySettings(org_id=saved.org_id), connection)
    check_target(saved, plan_file, org_id=client.target.org_id, api_url=client.target.api_url)
    state = replace(saved.state_file, safety=safety_settings(saved.state_file, connection))
    return replace(saved, state_file=state), client

"""`reconcile validate`, `plan` and `apply`: options, confirmation and output around the library's
pipeline (reconcile.pipeline)."""

from __future__ import annotations

import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconcile.cli.app import (
    EXIT_CHANGES,
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_REFUSED,
    cli,
    colour_for,
    connection_options,
    progress_line,
    safety_options,
    state_argument,
    step_summary,
    takes_flags,
)
from reconcile.cli.console import Console
from reconcile.config import Flags
from reconcile.domain import RunState
from reconcile.errors import ReconcileError, SafetyError
from reconcile.render.progress import ProgressLine
from reconcile.state import load_state
from reconcile.writer import destination

if TYPE_CHECKING:
    from reconcile.apply import Result
    from reconcile.plan import Plan

# `plan` and `apply` import the pipeline and the renderers when they run: they bring the HTTP
# stack, which `--version` and `validate` (run by pre-commit on every commit) never need.


@cli.command(epilog=EXIT_CODES)
@click.argument(
    "state_files",
    nargs=-1,
    metavar="[STATE_FILE]...",
    type=click.Path(dir_okay=False, path_type=Path),
)
def validate(state_files: tuple[Path, ...]) -> None:
    """Check each STATE_FILE offline (default: state.toml). Sends no request. Every file is
    checked, and every problem of each is reported, before the exit code says whether all were
    valid (as pre-commit calls it, with the changed files)."""
    invalid = 0
    console = Console(sys.stdout)
    verdicts: list[str] = []
    for state_file in state_files or (Path("state.toml"),):
        try:
            state = load_state(state_file)  # what pipeline.validate is, without the pipeline
        except ReconcileError as exc:
            click.echo(f"Error: {exc}", err=True)
            invalid += 1
            continue
        archived = sum(1 for run in state.runs if run.state is RunState.ARCHIVED)
        verdicts.append(
            f"{state.path} is valid: {len(state.runs)} runs declared "
            f"({archived} archived, {len(state.runs) - archived} active).\n"
        )
        console.write(verdicts[-1])
    if console.lost is not None:
        # The verdict is the exit code, which a lost output does not change.
        console.tell_on_stderr(
            "every file was checked. Its summary:", lambda stream: stream.write("".join(verdicts))
        )
    if invalid:
        sys.exit(EXIT_ERROR)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    from reconcile.tallyfy.activity import parse_since

    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


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
    help="Also save the plan as JSON in this file (- for standard output), for apply --plan.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Show the plan apply --force would carry out: the safety gates do not make plan exit 3.",
)
@click.option(
    "--max-changes",
    type=click.IntRange(0),
    metavar="N",
    help="Exit 3, as apply --max-changes N would refuse, when the plan has more changes.",
)
@click.option(
    "--no-attribution",
    is_flag=True,
    help="Do not read the activity feed to say who moved drifted runs.",
)
@click.option(
    "--changed-since",
    metavar="DATE",
    callback=_since,
    help="Drift check: read only the declared runs the activity feed shows moved since DATE "
    "(YYYY-MM-DD or an ISO date-time); every run when the feed cannot tell.",
)
@takes_flags
def plan(
    state_file: Path,
    detailed_exitcode: bool,
    baseline: Path | None,
    baseline_ref: str | None,
    show_unmanaged: bool,
    output_format: str,
    out: Path | None,
    force: bool,
    max_changes: int | None,
    no_attribution: bool,
    changed_since: datetime | None,
    flags: Flags,
) -> None:
    """Show what apply would change. Read-only: sends only GET requests. Exits 3 when apply of
    this plan (with the same --force and --max-changes) would refuse it."""
    from reconcile import pipeline
    from reconcile.render import ci_origin, render_plan, render_plan_json, render_plan_markdown
    from reconcile.safety import refusals

    saved_to = None if out is None else destination(out, stdout=sys.stdout)
    reading = progress_line("Reading runs", "requests")
    try:
        result = pipeline.plan(
            state_file,
            flags,
            baseline=baseline,
            baseline_ref=baseline_ref,
            show_unmanaged=show_unmanaged,
            on_read=reading.update if reading else None,
            attribution=not no_attribution,
            changed_since=changed_since,
        )
    finally:
        if reading is not None:
            reading.clear()
    warnings = refusals(result, force=force, max_changes=max_changes)
    origin = ci_origin(os.environ)
    colour = colour_for(sys.stdout)
    console = Console(sys.stdout)
    if output_format == "json":
        console.show(lambda stream: render_plan_json(result, stream, warnings=warnings))
    elif output_format == "markdown":
        console.show(
            lambda stream: render_plan_markdown(result, stream, warnings=warnings, origin=origin)
        )
    else:
        console.show(lambda stream: render_plan(result, stream, colour=colour, warnings=warnings))
    if saved_to is not None:
        saved_to.write(lambda stream: render_plan_json(result, stream, warnings=warnings))
    step_summary(
        lambda stream: render_plan_markdown(result, stream, warnings=warnings, origin=origin)
    )
    if console.lost is not None:
        raise click.ClickException(
            f"the plan could not be written to standard output ({console.lost}); what was "
            "shown is incomplete."
        )
    if force:
        for gate in result.gates:
            click.echo(f"Warning: --force overrides a safety gate: {gate}", err=True)
    if warnings:
        click.echo(
            "Error: apply would refuse this plan; nothing can be applied as it is:\n"
            + "\n".join(f"  - {warning}" for warning in warnings),
            err=True,
        )
        sys.exit(EXIT_REFUSED)
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
    "from STATE_FILE; refused if any run moved since. Counts as approval: give --checksum too "
    "to bind it to the reviewed plan.",
)
@click.option(
    "--checksum",
    "expected_checksum",
    metavar="HEX",
    help="Apply only the plan whose checksum is this one, as the reviewed plan printed it: "
    "the live plan, or with --plan the saved one. Counts as approval.",
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
    help="Write JSON of every change attempted and its outcome, also when apply stops part-way "
    "(- for standard output).",
)
@takes_flags
def apply(
    state_file: Path,
    auto_approve: bool,
    plan_file: Path | None,
    expected_checksum: str | None,
    force: bool,
    max_changes: int | None,
    report_file: Path | None,
    flags: Flags,
) -> None:
    """Plan, ask for confirmation, then archive and activate exactly the planned runs."""
    from reconcile import pipeline
    from reconcile.apply import Interruption
    from reconcile.render import (
        ci_origin,
        render_apply_markdown,
        render_plan_markdown,
        render_report_json,
        render_summary,
    )

    report_to = None if report_file is None else destination(report_file, stdout=sys.stdout)
    approved = auto_approve or plan_file is not None or expected_checksum is not None
    shown = _Applying(Console(sys.stdout), colour_for(sys.stdout), approved)
    stop = Interruption(_announce)
    try:
        outcome = pipeline.apply(
            state_file,
            flags,
            saved_plan=plan_file,
            expected_checksum=expected_checksum,
            force=force,
            max_changes=max_changes,
            on_plan=shown.plan,
            before_writes=shown.approve,
            on_result=shown.result,
            stop=stop,
            on_read=shown.reading.update if shown.reading else None,
        )
        shown.finished = outcome.report is None or not outcome.report.stopped
    finally:
        if shown.progress is not None:
            shown.progress.clear()
        if report_to is not None and shown.planned is not None:
            attempted, results, finished = shown.planned, shown.results, shown.finished
            report_to.write(
                lambda stream: render_report_json(attempted, results, stream, finished=finished)
            )
    applied, report = outcome.plan, outcome.report
    origin = ci_origin(os.environ)
    if report is None:
        step_summary(lambda stream: render_plan_markdown(applied, stream, origin=origin))
        return
    shown.console.show(lambda stream: render_summary(report, stream, colour=shown.colour))
    if shown.console.lost is not None:
        # The writes went on; the exit code below is theirs.
        shown.console.tell_on_stderr(
            "the apply went on. Its summary:", lambda stream: render_summary(report, stream)
        )
    step_summary(lambda stream: render_apply_markdown(applied, report, stream, origin=origin))
    if stop.signum is not None:
        sys.exit(128 + stop.signum)
    if report.failed:
        sys.exit(EXIT_ERROR)


class _Applying:
    """What `apply` shows as the pipeline goes: progress on a terminal, the plan, the forced
    gates, the prompt, each change's result; and what the report needs if it stops part-way."""

    def __init__(self, console: Console, colour: bool, approved: bool) -> None:
        self.console = console
        self.colour = colour
        self.approved = approved
        self.planned: Plan | None = None
        self.results: list[Result] = []
        self.finished = False
        self.reading = progress_line("Reading runs", "requests")
        self.progress: ProgressLine | None = None

    def plan(self, plan: Plan) -> None:
        self.planned = plan
        if self.reading is not None:
            self.reading.clear()
        if plan.saved is not None:
            self.console.line(
                f"Saved plan {plan.saved.path}: {plan.saved.reviewed} changes reviewed, "
                f"{plan.saved.done} already done."
            )
        from reconcile.render import render_plan

        self.console.show(lambda stream: render_plan(plan, stream, colour=self.colour))

    def approve(self, plan: Plan) -> None:
        for gate in plan.gates:
            click.echo(f"Warning: --force overrides a safety gate: {gate}", err=True)
        if not plan.changes:
            return
        if not self.approved and self.console.lost is not None:
            raise SafetyError(
                f"apply needs confirmation, but the plan could not be shown ({self.console.lost});"
                " nothing was written."
            )
        _confirm(len(plan.changes), self.approved)
        self.console.line()
        self.progress = progress_line("Applying", "changes")

    def result(self, result: Result) -> None:
        self.results.append(result)
        if self.progress is not None:
            self.progress.clear()
        from reconcile.render import render_result

        self.console.show(lambda stream: render_result(result, stream, colour=self.colour))
        if self.progress is not None and self.planned is not None:
            self.progress.update(len(self.results), len(self.planned.changes))


def _announce(signum: int) -> None:
    click.echo(
        f"\nInterrupted ({signal.Signals(signum).name}): no new write will start; "
        "finishing and checking the writes in flight.",
        err=True,
    )


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

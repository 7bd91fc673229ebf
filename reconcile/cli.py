"""The `reconcile` command. The only module that prints or chooses an exit code."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO, Any, NoReturn, TextIO, TypeVar

import click

from reconcile import __version__
from reconcile.apply import ApplyReport, Interruption, Result, apply_plan
from reconcile.config import (
    DEFAULT_PARALLELISM,
    DEFAULT_RATE_LIMIT,
    read_token,
    resolve_pace,
    resolve_target,
)
from reconcile.drift import add_unmanaged, label_changes, read_baseline
from reconcile.errors import ConfigError, ReconcileError, SafetyError
from reconcile.importer import (
    Imported,
    Include,
    Mode,
    build_import,
    existing_file,
    make_selection,
    select_runs,
    write_text,
)
from reconcile.plan import Plan, build_plan
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
from reconcile.render.progress import ProgressLine
from reconcile.safety import enforce, settings_with, tripped
from reconcile.state import (
    MAX_PARALLELISM,
    RunState,
    SafetySettings,
    StateFile,
    TallyfySettings,
    load_state,
)
from reconcile.tallyfy import Fetch, TallyfyClient, observe

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_REFUSED = 3
EXIT_CODES = """\b
Exit codes:
  0  success (for plan --detailed-exitcode: no changes)
  1  error: bad input (including bad options), API failure, or any change
     that failed
  2  plan --detailed-exitcode only: changes are present (not a failure)
  3  refused by a safety gate before any write (e.g. apply without a terminal
     or --auto-approve); nothing was written
  130, 143  interrupted by SIGINT (Ctrl-C) or SIGTERM; apply started no new
     write after the signal and reports what was done"""

F = TypeVar("F", bound=Callable[..., Any])
YOUNG_OBJECTS = 20_000
"""The cycle collector's first threshold in the command (Python's default is 700)."""


class _Cli(click.Group):
    """Turns reconcile's own exceptions into `Error: ...` and an exit code, never a traceback
    (unless --debug)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _usage_errors_exit_1():
            return super().make_context(*args, **kwargs)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _refuse_contradicting_options(command, rest)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _usage_errors_exit_1():
                return super().invoke(ctx)
        except ReconcileError as exc:
            if ctx.params.get("debug"):
                raise
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


@contextlib.contextmanager
def _usage_errors_exit_1() -> Iterator[None]:
    """Bad options are bad input: exit 1, not click's 2, which plan --detailed-exitcode uses
    for "changes are present"."""
    try:
        yield
    except click.UsageError as exc:
        raise _BadUsage(exc) from None


def _refuse_contradicting_options(command: click.Command, args: list[str]) -> None:
    """An option given twice with different values is refused rather than "the last one wins":
    in a CI script, one of the two is a mistake, and which one is not for reconcile to guess."""
    given: dict[str, list[str]] = {}
    options = {
        opt: param.opts[0]
        for param in command.params
        if isinstance(param, click.Option) and not (param.is_flag or param.multiple)
        for opt in param.opts
    }
    for index, arg in enumerate(args):
        if arg == "--":
            break
        name, equals, value = arg.partition("=")
        if name in options:
            value = value if equals else (args[index + 1] if index + 1 < len(args) else "")
            given.setdefault(options[name], []).append(value)
    for option, values in given.items():
        if len(set(values)) > 1:
            shown = ", ".join(repr(value) for value in values)
            raise click.UsageError(
                f"{option} is given more than once with different values ({shown}); give it once."
            )


class _BadUsage(click.ClickException):
    """A usage error shown exactly as click shows it, with exit code 1."""

    exit_code = EXIT_ERROR

    def __init__(self, usage: click.UsageError) -> None:
        super().__init__(usage.format_message())
        self.usage = usage

    def show(self, file: IO[Any] | None = None) -> None:
        self.usage.show(file)


def _fail(exc: ReconcileError) -> NoReturn:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(EXIT_REFUSED if isinstance(exc, SafetyError) else EXIT_ERROR)


@click.group(cls=_Cli, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
@click.option("--debug", is_flag=True, help="Trace requests on stderr and show tracebacks.")
def cli(debug: bool) -> None:
    """Declare the state of Tallyfy process runs (archived or active) in a TOML file, then plan
    and apply exactly the API calls that make the organization match it."""
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="debug: %(name)s: %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)


def _state_argument(f: F) -> F:
    return click.argument(
        "state_file", default="state.toml", type=click.Path(dir_okay=False, path_type=Path)
    )(f)


def _connection_options(f: F, *, fetch: bool = True) -> F:
    options = [
        click.option(
            "--api-url",
            help="API base URL [env TALLYFY_API_URL; default https://go.tallyfy.com/api].",
        ),
        click.option("--org", "org_id", help="Organization ID [env TALLYFY_ORG_ID]."),
        click.option(
            "--token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the access token from this file instead of TALLYFY_ACCESS_TOKEN.",
        ),
        click.option(
            "--fetch",
            type=click.Choice(["auto", "get", "list"]),
            default="auto",
            show_default=True,
            help="Read runs one GET each, through the listing, or whichever takes fewer requests.",
        )
        if fetch
        else None,
        click.option(
            "--parallelism",
            type=click.IntRange(1, MAX_PARALLELISM),
            help=f"Requests in flight at once [state file: parallelism; default "
            f"{DEFAULT_PARALLELISM}].",
        ),
        click.option(
            "--rate-limit",
            type=click.IntRange(0),
            help=f"Requests per rolling minute, 0 for no limit of our own; the API's Retry-After "
            f"and rate-limit headers are obeyed either way [state file: rate_limit; default "
            f"{DEFAULT_RATE_LIMIT}].",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=30.0,
            show_default=True,
            help="Seconds to wait for each answer before treating the request as failed.",
        ),
    ]
    for option in reversed(options):
        if option is not None:
            f = option(f)
    return f


def _safety_options(f: F) -> F:
    options = [
        click.option(
            "--max-archive-percent",
            type=click.FloatRange(0, 100),
            help="Safety gate: most of the active declared runs one apply may archive "
            "[state file safety.max_archive_percent; default 30].",
        ),
        click.option(
            "--max-activate-percent",
            type=click.FloatRange(0, 100),
            help="Safety gate: most of the archived declared runs one apply may activate "
            "[state file safety.max_activate_percent; default 30].",
        ),
        click.option(
            "--gate-min-runs",
            type=click.IntRange(0),
            help="Check the percentage gates only from this many active (or archived) declared "
            "runs on [state file safety.min_runs; default 10].",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


@cli.command(epilog=EXIT_CODES)
@_state_argument
def validate(state_file: Path) -> None:
    """Check STATE_FILE offline (default: state.toml). Sends no request."""
    state = load_state(state_file)
    archived = sum(1 for run in state.runs if run.state is RunState.ARCHIVED)
    click.echo(
        f"{state.path} is valid: {len(state.runs)} runs declared "
        f"({archived} archived, {len(state.runs) - archived} active)."
    )


@cli.command(epilog=EXIT_CODES)
@_state_argument
@_connection_options
@_safety_options
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
        state, client = _open(state_file, connection)
        async with client:
            before = read_baseline(state_file, path=baseline, ref=baseline_ref)
            planned = await _plan(client, state, connection["fetch"])
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
        render_plan(result, sys.stdout, colour=_colour(sys.stdout), warnings=warnings)
    if out is not None:
        _write(out, lambda stream: render_plan_json(result, stream, warnings=warnings))
    _step_summary(lambda stream: render_plan_markdown(result, stream, warnings=warnings))
    if detailed_exitcode and result.changes:
        sys.exit(EXIT_CHANGES)


@cli.command(epilog=EXIT_CODES)
@_state_argument
@_connection_options
@_safety_options
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
    colour = _colour(sys.stdout)
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
            _write(
                report_file,
                lambda stream: render_report_json(attempted, results, stream, finished=finished),
            )
    assert planned is not None
    applied = planned
    if report is None:
        _step_summary(lambda stream: render_plan_markdown(applied, stream))
        return
    render_summary(report, sys.stdout, colour=colour)
    _step_summary(lambda stream: render_apply_markdown(applied, report, stream))
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
    progress = _progress("Applying", "changes")
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
        return _open(state_file, connection)
    saved, client = _open_saved(plan_file, connection)
    return (saved, plan_file), client


async def _plan_to_apply(
    client: TallyfyClient, loaded: StateFile | tuple[Plan, Path], fetch: Fetch
) -> Plan:
    """The live plan of a state file, or what is left to do of a saved plan."""
    if isinstance(loaded, StateFile):
        return await _plan(client, loaded, fetch)
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


def _write(path: Path, render: Callable[[TextIO], None]) -> None:
    """Render into a file, replacing it."""
    try:
        with path.open("w", encoding="utf-8") as stream:
            render(stream)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror}.") from None


def _step_summary(render: Callable[[TextIO], None]) -> None:
    """Append Markdown to the GitHub Actions job summary when running there."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    try:
        with open(summary, "a", encoding="utf-8") as stream:
            render(stream)
    except OSError as exc:
        click.echo(f"Warning: cannot append to GITHUB_STEP_SUMMARY ({summary}): {exc}", err=True)


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


def _open(state_file: Path, connection: dict[str, Any]) -> tuple[StateFile, TallyfyClient]:
    """Load the state file and settings, and make the one API client of this command."""
    state = load_state(state_file)
    state = replace(state, safety=_safety(state, connection))
    return state, _client(state.tallyfy, connection)


def _open_saved(plan_file: Path, connection: dict[str, Any]) -> tuple[Plan, TallyfyClient]:
    """Load a saved plan, check it is for the organization and API configured, and make the
    client. The organization may come from the plan; the API URL never does, so that a plan file
    cannot send the token to another server."""
    saved = load_plan(plan_file)
    client = _client(TallyfySettings(org_id=saved.org_id), connection)
    check_target(saved, plan_file, org_id=client.target.org_id, api_url=client.target.api_url)
    state = replace(saved.state_file, safety=_safety(saved.state_file, connection))
    return replace(saved, state_file=state), client


def _safety(state: StateFile, connection: dict[str, Any]) -> SafetySettings:
    return settings_with(
        state.safety,
        max_archive_percent=connection["max_archive_percent"],
        max_activate_percent=connection["max_activate_percent"],
        min_runs=connection["gate_min_runs"],
    )


def _client(settings: TallyfySettings, connection: dict[str, Any]) -> TallyfyClient:
    target = resolve_target(
        api_url_flag=connection["api_url"],
        org_flag=connection["org_id"],
        environ=os.environ,
        settings=settings,
    )
    token = read_token(token_file=connection["token_file"], environ=os.environ)
    pace = resolve_pace(
        parallelism_flag=connection["parallelism"],
        rate_limit_flag=connection["rate_limit"],
        settings=settings,
    )
    return TallyfyClient(
        target,
        token,
        parallelism=pace.parallelism,
        rate_limit=pace.rate_limit,
        timeout=connection["timeout"],
    )


def _progress(label: str, unit: str) -> ProgressLine | None:
    """A progress line on stderr, only when stderr is a terminal (never in logs or pipes) and
    --debug is not tracing requests there."""
    if not sys.stderr.isatty() or logging.getLogger().isEnabledFor(logging.DEBUG):
        return None
    return ProgressLine(sys.stderr, label, unit)


async def _plan(client: TallyfyClient, state: StateFile, fetch: Fetch) -> Plan:
    reading = _progress("Reading runs", "requests")
    observed = await observe(client, state.runs, fetch, reading.update if reading else None)
    if reading is not None:
        reading.clear()
    return build_plan(state, observed, org_id=client.target.org_id, api_url=client.target.api_url)


@cli.command("import", epilog=EXIT_CODES)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default="state.toml",
    show_default=True,
    help="The state file to write.",
)
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option(
    "--merge",
    is_flag=True,
    help="Append the runs the output file does not declare; keep its text and declarations.",
)
@click.option(
    "--include",
    type=click.Choice(["active", "archived", "all"]),
    default="all",
    show_default=True,
    help="Which runs: not archived, archived, or both.",
)
@click.option("--blueprint", metavar="ID", help="Only runs of this blueprint (checklist_id).")
@click.option("--tag", help="Only runs with this tag (its title or ID).")
@click.option("--owner", type=int, metavar="USER_ID", help="Only runs this user owns.")
@click.option(
    "--started-before",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="DATE",
    help="Only runs started before DATE (YYYY-MM-DD, UTC).",
)
@click.option(
    "--started-after",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="DATE",
    help="Only runs started on or after DATE (YYYY-MM-DD, UTC).",
)
@click.option("--name", metavar="REGEX", help="Only runs whose live name matches REGEX.")
@partial(_connection_options, fetch=False)
def import_(
    output: Path,
    force: bool,
    merge: bool,
    include: Include,
    blueprint: str | None,
    tag: str | None,
    owner: int | None,
    started_before: datetime | None,
    started_after: datetime | None,
    name: str | None,
    **connection: Any,
) -> None:
    """Write the organization's runs, with their live states and names, as a state file.
    Read-only towards Tallyfy: sends only GET requests."""
    if force and merge:
        raise ConfigError("Give --force or --merge, not both.")
    selection = make_selection(
        include=include,
        blueprint=blueprint,
        tag=tag,
        owner=owner,
        started_before=started_before,
        started_after=started_after,
        name=name,
    )
    mode = Mode.MERGE if merge else Mode.FORCE if force else Mode.NEW
    existing = existing_file(output, mode)

    async def run() -> Imported:
        client = _client(existing.tallyfy if existing else TallyfySettings(), connection)
        async with client:
            runs = await select_runs(client, selection)
        org_id = client.target.org_id
        return build_import(output, runs, org_id=org_id, selection=selection, existing=existing)

    imported = asyncio.run(run())
    if imported.written:
        write_text(output, imported.text)
    click.echo(imported.summary)


@cli.command(epilog="Stop it with Ctrl-C.")
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="TOML file defining the organization and its runs (examples/demo-org.toml is the demo).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--archived-get",
    type=click.Choice(["200", "404"]),
    default="200",
    show_default=True,
    help="How GET answers for an archived run.",
)
@click.option(
    "--noop-write",
    type=click.Choice(["200", "404", "422"]),
    default="200",
    show_default=True,
    help="How archiving an archived run (or activating an active one) is answered.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Delay added to every response.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Server-side limit in requests per minute (0: none).",
)
def sandbox(
    seed: Path,
    host: str,
    port: int,
    archived_get: str,
    noop_write: str,
    latency_ms: float,
    rate_limit: int,
) -> None:
    """Serve an emulator of Tallyfy's runs API on this machine, for trying reconcile and for
    testing pipelines. Prints the settings to export, then serves until interrupted."""
    from reconcile.sandbox import Behaviour, Sandbox, SeedError, serve_forever

    behaviour = Behaviour(
        archived_get=int(archived_get),
        noop_write=noop_write,
        latency=latency_ms / 1000,
        rate_limit=rate_limit,
    )
    try:
        emulator = Sandbox.from_seed(seed, behaviour=behaviour)
    except SeedError as exc:
        raise click.ClickException(str(exc)) from None

    def ready(url: str) -> None:
        click.echo(f"Sandbox serving organization {emulator.org_id} at {url}")
        click.echo(f"  export TALLYFY_API_URL={url}")
        click.echo(f"  export TALLYFY_ORG_ID={emulator.org_id}")
        click.echo(f"  export TALLYFY_ACCESS_TOKEN={emulator.token}")
        sys.stdout.flush()

    serve_forever(emulator, host, port, ready)


def collect_less() -> None:
    """Run Python's cycle collector less often. A command builds structures that live until it
    exits (the declared runs, the runs read) while parsing answers allocates objects by the
    million; at the default thresholds every few thousand allocations trigger a collection and
    the full ones re-scan everything alive, a large share of the CPU time of a big plan."""
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


def main() -> None:
    """Entry point of the `reconcile` command."""
    collect_less()
    cli(prog_name="reconcile")

"""The `reconcile` command. The only module that prints or chooses an exit code."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import click

from reconcile import __version__
from reconcile.apply import ApplyReport, Result, apply_plan
from reconcile.config import (
    DEFAULT_PARALLELISM,
    DEFAULT_RATE_LIMIT,
    read_token,
    resolve_pace,
    resolve_target,
)
from reconcile.errors import ReconcileError, SafetyError
from reconcile.plan import Plan, build_plan
from reconcile.render import render_plan, render_result, render_summary
from reconcile.render.progress import ProgressLine
from reconcile.state import MAX_PARALLELISM, RunState, StateFile, load_state
from reconcile.tallyfy import Fetch, TallyfyClient, observe

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_REFUSED = 3
EXIT_CODES = """\b
Exit codes:
  0  success (for plan --detailed-exitcode: no changes)
  1  error: bad input, API failure, or any change that failed
  2  plan --detailed-exitcode only: changes are present (not a failure)
  3  refused by a safety gate before any write (e.g. apply without a terminal
     or --auto-approve); nothing was written"""

F = TypeVar("F", bound=Callable[..., Any])
YOUNG_OBJECTS = 20_000
"""The cycle collector's first threshold in the command (Python's default is 700)."""


class _Cli(click.Group):
    """Turns reconcile's own exceptions into `Error: ...` and an exit code, never a traceback
    (unless --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ReconcileError as exc:
            if ctx.params.get("debug"):
                raise
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


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


def _connection_options(f: F) -> F:
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
        ),
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
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when there are changes, 0 when there are none.",
)
def plan(state_file: Path, detailed_exitcode: bool, **connection: Any) -> None:
    """Show what apply would change. Read-only: sends only GET requests."""

    async def run() -> Plan:
        state, client = _open(state_file, connection)
        async with client:
            return await _plan(client, state, connection["fetch"])

    result = asyncio.run(run())
    render_plan(result, sys.stdout, colour=_colour(sys.stdout))
    if detailed_exitcode and result.changes:
        sys.exit(EXIT_CHANGES)


@cli.command(epilog=EXIT_CODES)
@_state_argument
@_connection_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
def apply(state_file: Path, auto_approve: bool, **connection: Any) -> None:
    """Plan, ask for confirmation, then archive and activate exactly the planned runs."""
    colour = _colour(sys.stdout)

    async def run() -> ApplyReport | None:
        state, client = _open(state_file, connection)
        async with client:
            planned = await _plan(client, state, connection["fetch"])
            render_plan(planned, sys.stdout, colour=colour)
            if not planned.changes:
                return None
            _confirm(len(planned.changes), auto_approve)
            click.echo("")
            applying = _progress("Applying", "changes")
            finished = 0

            def show(result: Result) -> None:
                nonlocal finished
                finished += 1
                if applying is not None:
                    applying.clear()
                render_result(result, sys.stdout, colour=colour)
                sys.stdout.flush()
                if applying is not None:
                    applying.update(finished, len(planned.changes))

            report = await apply_plan(client, planned, on_result=show)
            if applying is not None:
                applying.clear()
            return report

    report = asyncio.run(run())
    if report is not None:
        render_summary(report, sys.stdout, colour=colour)
        if report.failed:
            sys.exit(EXIT_ERROR)


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
    target = resolve_target(
        api_url_flag=connection["api_url"],
        org_flag=connection["org_id"],
        environ=os.environ,
        settings=state.tallyfy,
    )
    token = read_token(token_file=connection["token_file"], environ=os.environ)
    pace = resolve_pace(
        parallelism_flag=connection["parallelism"],
        rate_limit_flag=connection["rate_limit"],
        settings=state.tallyfy,
    )
    client = TallyfyClient(target, token, parallelism=pace.parallelism, rate_limit=pace.rate_limit)
    return state, client


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

"""The `reconcile` command. The only module that prints or chooses an exit code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn, TextIO, TypeVar

import click

from reconcile import __version__
from reconcile.apply import ApplyReport, Interruption, apply_plan
from reconcile.config import read_token, resolve_target
from reconcile.errors import ReconcileError, SafetyError
from reconcile.plan import Plan, build_plan
from reconcile.render import render_plan, render_result, render_summary
from reconcile.state import RunState, StateFile, load_state
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
            type=click.IntRange(1, 64),
            default=8,
            show_default=True,
            help="Requests in flight at once.",
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
            with stop.on_signals(announce):
                return await apply_plan(
                    client,
                    planned,
                    on_result=lambda r: render_result(r, sys.stdout, colour=colour),
                    stop=stop,
                )

    def announce(signum: int) -> None:
        click.echo(
            f"\nInterrupted ({signal.Signals(signum).name}): no new write will start; "
            "finishing and checking the writes in flight.",
            err=True,
        )

    stop = Interruption()
    report = asyncio.run(run())
    if report is not None:
        render_summary(report, sys.stdout, colour=colour)
        if stop.signum is not None:
            sys.exit(128 + stop.signum)
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
    client = TallyfyClient(
        target, token, parallelism=connection["parallelism"], timeout=connection["timeout"]
    )
    return state, client


async def _plan(client: TallyfyClient, state: StateFile, fetch: Fetch) -> Plan:
    observed = await observe(client, state.runs, fetch)
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


def main() -> None:
    """Entry point of the `reconcile` command."""
    cli(prog_name="reconcile")

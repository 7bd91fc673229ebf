"""The `reconcile` command group: exit codes, error handling, and what every command shares
(options, settings, the API client). Only the cli package prints or chooses an exit code."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import IO, Any, NoReturn, TextIO, TypeVar, cast

import click

from reconcile import __version__
from reconcile.cli.console import ClosedOutput
from reconcile.config import DEFAULT_PARALLELISM, DEFAULT_RATE_LIMIT, DEFAULT_TIMEOUT, Flags
from reconcile.errors import ConfigError, ReconcileError, SafetyError
from reconcile.ratelimit import Window, parse_window
from reconcile.render.progress import ProgressLine
from reconcile.render.sanitize import CleanFormatter, clean_lines
from reconcile.state import MAX_PARALLELISM
from reconcile.writer import Render, append

EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_REFUSED = 3
EXIT_CODES = """\b
Exit codes:
  0  success (for plan --detailed-exitcode: no changes; for refresh
     --detailed-exitcode: the file does not change)
  1  error: bad input (including bad options), API failure, or any change
     that failed
  2  plan --detailed-exitcode only: changes are present; refresh
     --detailed-exitcode only: the file changed or would (not a failure)
  3  refused by a safety gate before any write (e.g. apply without a terminal
     or --auto-approve); nothing was written. plan: apply would refuse
     this plan (a gate, --max-changes, an empty file)
  130, 143  interrupted by SIGINT (Ctrl-C) or SIGTERM; apply started no new
     write after the signal and reports what was done"""

F = TypeVar("F", bound=Callable[..., Any])
YOUNG_OBJECTS = 20_000
"""The cycle collector's first threshold in the command (Python's default is 700)."""


class _Cli(click.Group):
    """The command group's policy: reconcile's own exceptions become `Error: ...` and an exit
    code, never a traceback (unless --debug); bad options exit 1; an option given twice with
    different values is refused."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _usage_errors_exit_1():
            return super().make_context(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --debug belongs to the group, but it is usually added at the end of the command line
        # that failed: take it from anywhere before `--`.
        end = args.index("--") if "--" in args else len(args)
        found = [arg for arg in args[:end] if arg == "--debug"]
        rest = [arg for arg in args[:end] if arg != "--debug"] + args[end:]
        return super().parse_args(ctx, found[:1] + rest)

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


class WindowType(click.ParamType[Window]):
    """A rate-limit window, `LIMIT/PERIOD[:METHOD]`."""

    name = "window"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> Window:
        if isinstance(value, Window):
            return value
        try:
            return parse_window(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _BadUsage(click.ClickException):
    """A usage error shown exactly as click shows it, with exit code 1."""

    exit_code = EXIT_ERROR

    def __init__(self, usage: click.UsageError) -> None:
        super().__init__(usage.format_message())
        self.usage = usage

    def show(self, file: IO[Any] | None = None) -> None:
        self.usage.show(file)


def _fail(exc: ReconcileError) -> NoReturn:
    click.echo(f"Error: {clean_lines(str(exc))}", err=True)
    sys.exit(EXIT_REFUSED if isinstance(exc, SafetyError) else EXIT_ERROR)


@click.group(cls=_Cli, epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconcile")
@click.option(
    "--debug",
    is_flag=True,
    envvar="RECONCILE_DEBUG",
    help="Trace requests on stderr and show tracebacks; anywhere on the command line "
    "[env RECONCILE_DEBUG=1].",
)
def cli(debug: bool) -> None:
    """Declare the state of Tallyfy process runs (archived or active) in a TOML file, then plan
    and apply exactly the API calls that make the organization match it."""
    if debug:
        trace = logging.StreamHandler()
        trace.setFormatter(CleanFormatter("debug: %(name)s: %(message)s"))
        logging.basicConfig(level=logging.DEBUG, handlers=[trace])
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)


def state_argument(f: F) -> F:
    """The STATE_FILE argument, state.toml by default."""
    return click.argument(
        "state_file", default="state.toml", type=click.Path(dir_okay=False, path_type=Path)
    )(f)


def connection_options(f: F, *, fetch: bool = True) -> F:
    """The options that say which API and organization to use, as whom, and how fast."""
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
            "--rate-window",
            type=WindowType(),
            multiple=True,
            callback=lambda _ctx, _param, value: value or None,
            metavar="LIMIT/PERIOD[:METHOD]",
            help="Another limit of our own, kept besides --rate-limit; repeat for several, e.g. "
            "--rate-window 140/10s --rate-window 12/5s:GET [state file: rate_limits].",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds each answer may take, from the request to its last byte, before the "
            "request counts as failed.",
        ),
    ]
    for option in reversed(options):
        if option is not None:
            f = option(f)
    return f


def safety_options(f: F) -> F:
    """The flags that override the state file's [safety] limits."""
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


def colour_for(stream: TextIO) -> bool:
    """Colour only on a terminal, never when NO_COLOR is set to a value (an empty NO_COLOR does
    not count, as no-color.org says) nor when TERM is dumb."""
    environ = os.environ
    return stream.isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def takes_flags(f: F) -> F:
    """Hand the options that are settings (see reconcile.config.Flags) to the command as one
    typed `flags` argument. Goes below the options it collects."""
    names = {field.name for field in fields(Flags)}

    @functools.wraps(f)
    def command(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in names & kwargs.keys()}
        return f(*args, flags=Flags(**given), **kwargs)

    return cast(F, command)


def step_summary(render: Render) -> None:
    """Append Markdown to the GitHub Actions job summary when running there."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    try:
        append(Path(summary), render)
    except ConfigError as exc:
        click.echo(f"Warning: cannot append to GITHUB_STEP_SUMMARY ({summary}): {exc}", err=True)


def progress_line(label: str, unit: str) -> ProgressLine | None:
    """A progress line on stderr, only when stderr is a terminal (never in logs or pipes) and
    --debug is not tracing requests there."""
    if not sys.stderr.isatty() or logging.getLogger().isEnabledFor(logging.DEBUG):
        return None
    return ProgressLine(sys.stderr, label, unit)


def collect_less() -> None:
    """Run Python's cycle collector less often. A command builds structures that live until it
    exits (the declared runs, the runs read) while parsing answers allocates objects by the
    million; at the default thresholds every few thousand allocations trigger a collection and
    the full ones re-scan everything alive, a large share of the CPU time of a big plan."""
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])


def main() -> None:
    """Entry point of the `reconcile` command."""
    collect_less()
    if sys.stdout is None:  # started with standard output closed (`>&-`)
        sys.stdout = cast(TextIO, ClosedOutput())
    cli(prog_name="reconcile")

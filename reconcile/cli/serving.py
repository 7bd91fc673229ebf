"""`reconcile sandbox`: serve the API emulator."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from reconcile.cli.app import cli
from reconcile.cli.console import Console
from reconcile.sandbox.model import DEFAULT_BEHAVIOUR
from reconcile.sandbox.switches import SWITCHES, YES_NO, changed, value_text


def _switch_options(command: Callable[..., None]) -> Callable[..., None]:
    """One option per behaviour switch; left out, the seed's [sandbox] value (or the default)
    holds."""
    for switch in reversed(SWITCHES):
        command = click.option(
            switch.flag,
            switch.name,
            type=click.Choice(switch.choices) if switch.choices else click.STRING,
            multiple=switch.multiple,
            # A yes/no switch given alone means yes: `--auto-archive-clock`.
            is_flag=False,
            flag_value="true" if switch.choices == YES_NO else None,
            default=None,
            metavar=None if switch.choices else switch.metavar,
            help=f"{switch.help} Default: {value_text(switch, DEFAULT_BEHAVIOUR)}.",
        )(command)
    return command


@cli.command(epilog="Stop it with Ctrl-C.")
@click.option(
    "--seed",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TOML file defining the organization, its runs and [sandbox] switches "
    "(default: the demo organization).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@_switch_options
def sandbox(seed: Path | None, host: str, port: int, **switches: Any) -> None:
    """Serve an emulator of Tallyfy's runs API on this machine, for trying reconcile and for
    testing pipelines. Prints the settings to export, then serves until interrupted.

    Every behaviour the docs leave open is a switch: a flag here, or a key of the seed file's
    [sandbox] table; a flag wins over the seed file."""
    from reconcile.sandbox import Sandbox, SeedError, serve_forever
    from reconcile.sandbox.seed import DEMO_SEED, load_seed

    try:
        loaded = load_seed(seed or DEMO_SEED)
    except SeedError as exc:
        raise click.ClickException(str(exc)) from None
    given: dict[str, Any] = {}
    for switch in SWITCHES:
        value = switches[switch.name]
        if value is None or value == ():
            continue
        try:
            given[switch.name] = switch.convert(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{switch.flag}'") from None
    try:
        behaviour = replace(loaded.behaviour, **given)
    except ValueError as exc:
        raise click.ClickException(f"{exc}.") from None
    emulator = Sandbox(
        loaded.org_id,
        loaded.token,
        loaded.runs,
        behaviour,
        org_name=loaded.org_name,
        auto_archive=loaded.auto_archive,
        activity=loaded.activity,
    )
    # The seeded organization lives as long as the server: exempt it from the cycle collector,
    # whose full passes would otherwise re-scan every run and stall every request meanwhile.
    gc.freeze()
    switched = changed(behaviour)
    console = Console(sys.stdout)

    def ready(url: str) -> None:
        lines = [f"Sandbox serving organization {emulator.org_id} at {url}"]
        if switched:
            lines.append(f"  switches: {', '.join(switched)}")
        lines.append(f"  export TALLYFY_API_URL={url}")
        lines.append(f"  export TALLYFY_ORG_ID={emulator.org_id}")
        lines.append(f"  export TALLYFY_ACCESS_TOKEN={emulator.token}")
        settings = "".join(line + "\n" for line in lines)
        console.write(settings)
        if console.lost is not None:
            # Serving is the command's work; the settings, with the port it picked, go to stderr.
            console.tell_on_stderr(
                "the sandbox serves all the same, with these settings:",
                lambda stream: stream.write(settings),
            )

    try:
        serve_forever(emulator, host, port, ready)
    except (OSError, ValueError) as exc:
        # A port in use, an address this machine does not have, a host name that does not resolve.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(
            f"cannot listen on {host} port {port}: {reason}. Pick another --port (0 picks a free "
            "one) or a --host this machine has, such as 127.0.0.1."
        ) from None

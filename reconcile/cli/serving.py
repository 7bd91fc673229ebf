"""`reconcile sandbox`: serve the API emulator."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import click

from reconcile.cli.app import (
    cli,
)


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
    help="Time from each request's arrival to its answer.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Server-side limit in requests per minute (0: none).",
)
@click.option(
    "--activity-feed",
    type=click.Choice(["on", "forbidden", "missing", "empty"]),
    default="on",
    show_default=True,
    help="How GET /activity-feeds answers: served, 403, 404, or with no entries.",
)
@click.option(
    "--auto-archive-clock",
    is_flag=True,
    help="Archive completed runs, with no person behind it, once the org's auto-archive period "
    "has passed.",
)
def sandbox(
    seed: Path,
    host: str,
    port: int,
    archived_get: str,
    noop_write: str,
    latency_ms: float,
    rate_limit: int,
    activity_feed: str,
    auto_archive_clock: bool,
) -> None:
    """Serve an emulator of Tallyfy's runs API on this machine, for trying reconcile and for
    testing pipelines. Prints the settings to export, then serves until interrupted."""
    from reconcile.sandbox import Behaviour, Sandbox, SeedError, serve_forever

    behaviour = Behaviour(
        archived_get=int(archived_get),
        noop_write=noop_write,
        latency=latency_ms / 1000,
        rate_limit=rate_limit,
        activity_feed=activity_feed,
        auto_archive_clock=auto_archive_clock,
    )
    try:
        emulator = Sandbox.from_seed(seed, behaviour=behaviour)
    except SeedError as exc:
        raise click.ClickException(str(exc)) from None
    # The seeded organization lives as long as the server: exempt it from the cycle collector,
    # whose full passes would otherwise re-scan every run and stall every request meanwhile.
    gc.freeze()

    def ready(url: str) -> None:
        click.echo(f"Sandbox serving organization {emulator.org_id} at {url}")
        click.echo(f"  export TALLYFY_API_URL={url}")
        click.echo(f"  export TALLYFY_ORG_ID={emulator.org_id}")
        click.echo(f"  export TALLYFY_ACCESS_TOKEN={emulator.token}")
        sys.stdout.flush()

    serve_forever(emulator, host, port, ready)

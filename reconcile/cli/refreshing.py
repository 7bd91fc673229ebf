"""`reconcile refresh`: accept the live state into the state file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconcile.cli.app import (
    EXIT_CHANGES,
    EXIT_CODES,
    cli,
    connection_options,
    progress_line,
    state_argument,
    takes_flags,
)
from reconcile.cli.console import Console
from reconcile.config import Flags


@cli.command(epilog=EXIT_CODES)
@state_argument
@click.option("--dry-run", is_flag=True, help="Print the diff; write nothing.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when the file changes (or would, with --dry-run), 0 when it does not.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Also remove the declarations of runs the organization no longer has.",
)
@click.option("--names", is_flag=True, help="Also update name labels to the runs' live names.")
@connection_options
@takes_flags
def refresh(
    state_file: Path,
    dry_run: bool,
    detailed_exitcode: bool,
    prune: bool,
    names: bool,
    flags: Flags,
) -> None:
    """Rewrite STATE_FILE in place so that each declaration says what Tallyfy says now: runs
    archived or activated in Tallyfy are declared so. Only the changed values (or, with --prune,
    lines) change; comments and everything else stay. Read-only: sends only GET requests."""
    # Only now: the pipeline brings the HTTP stack, which `--version` and `validate` never need.
    from reconcile import pipeline

    reading = progress_line("Reading runs", "requests")
    try:
        refreshed = pipeline.refresh(
            state_file,
            flags,
            prune=prune,
            names=names,
            dry_run=dry_run,
            on_read=reading.update if reading else None,
        )
    finally:
        if reading is not None:
            reading.clear()
    # The file is rewritten whole before anything is shown, so a lost standard output cannot leave
    # half a file. With --dry-run the diff is the result: losing it is an error, as for `plan`.
    console = Console(sys.stdout)
    console.write(refreshed.diff())
    console.line(refreshed.summary())
    if console.lost is not None and dry_run:
        raise click.ClickException(
            f"the diff could not be written to standard output ({console.lost}); what was shown "
            "is incomplete."
        )
    if console.lost is not None:
        console.tell_on_stderr(
            "the refresh went on. Its summary:",
            lambda stream: stream.write(refreshed.summary() + "\n"),
        )
    if detailed_exitcode and refreshed.changed:
        sys.exit(EXIT_CHANGES)

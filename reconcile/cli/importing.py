"""`reconcile import`: write a state file from the live organization."""

from __future__ import annotations

import sys
from datetime import datetime
from functools import partial
from pathlib import Path

import click

from reconcile.cli.app import EXIT_CODES, cli, connection_options, takes_flags
from reconcile.cli.console import Console
from reconcile.config import Flags
from reconcile.errors import ConfigError
from reconcile.importer import Mode
from reconcile.selection import Include, make_selection


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
@partial(connection_options, fetch=False)
@takes_flags
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
    flags: Flags,
) -> None:
    """Write the organization's runs, with their live states and names, as a state file.
    Read-only towards Tallyfy: sends only GET requests."""
    # Only now: the pipeline brings the HTTP stack, which `--version` and `validate` never need.
    from reconcile import pipeline

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
    imported = pipeline.import_runs(output, selection, mode, flags)
    # The file is written (or left alone) whole before anything is shown: a lost standard output
    # cannot leave half a file, and the exit code stays the import's.
    console = Console(sys.stdout)
    console.line(imported.summary)
    if console.lost is not None:
        console.tell_on_stderr(
            "the import went on. Its summary:", lambda stream: stream.write(imported.summary + "\n")
        )

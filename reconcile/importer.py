"""Write a state file from the organization's runs (`reconcile import`): a new file, or the
runs an existing file does not declare appended to its text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import tomli_w

from reconcile.domain import ObservedRun, RunState
from reconcile.errors import ConfigError, Problem, StateFileError
from reconcile.selection import Selection
from reconcile.state import StateFile, load_state


class Mode(StrEnum):
    """What to do when the output file exists."""

    NEW = "new"
    """Refuse to overwrite it."""
    FORCE = "force"
    """Replace it."""
    MERGE = "merge"
    """Keep its text and declarations, and append the runs it does not declare."""


@dataclass(frozen=True)
class Imported:
    """The text to write and what it holds."""

    path: Path
    text: str
    written: tuple[ObservedRun, ...]
    """The runs written by this import (for a merge, only the ones appended)."""
    kept: int | None
    """Declarations of the existing file that a merge kept; None when there was no file."""

    @property
    def summary(self) -> str:
        """One sentence on what the import wrote."""
        archived = sum(1 for run in self.written if run.state is RunState.ARCHIVED)
        noun = "run" if len(self.written) == 1 else "runs"
        active = len(self.written) - archived
        counts = f"{len(self.written)} {noun} ({archived} archived, {active} active)"
        if self.kept is None:
            return f"Wrote {counts} to {self.path}."
        if not self.written:
            return f"No new runs: {self.path} already declares every selected run; it is unchanged."
        return (
            f"Added {counts} to {self.path}; its {self.kept} declarations and its comments are "
            "unchanged."
        )


def existing_file(output: Path, mode: Mode) -> StateFile | None:
    """Check the output path before any request: the file a merge extends (None if there is none
    yet), or ConfigError when the file exists and may not be replaced."""
    if mode is Mode.MERGE:
        return load_state(output) if output.exists() else None
    if output.exists() and mode is Mode.NEW:
        raise ConfigError(
            f"{output} already exists; nothing was written. Pass --force to replace it, or "
            "--merge to add the runs it does not declare while keeping its declarations."
        )
    if output.is_dir():
        raise ConfigError(f"{output} is a directory; name a file with --output.")
    return None


def build_import(
    output: Path,
    runs: Sequence[ObservedRun],
    *,
    org_id: str,
    selection: Selection,
    existing: StateFile | None,
) -> Imported:
    """The state file for `runs`, or, when merging, the existing file's text with the runs it
    does not declare appended (tomli-w cannot keep comments, so the old text is not rewritten)."""
    if existing is not None:
        if existing.tallyfy.org_id not in (None, org_id):
            raise ConfigError(
                f"{output} declares organization {existing.tallyfy.org_id}, but the runs were read "
                f"from organization {org_id}; nothing was written. Merge into a file of the same "
                "organization."
            )
        declared = {run.run_id for run in existing.runs}
        added = tuple(run for run in runs if run.run_id not in declared)
        old = output.read_text(encoding="utf-8")
        text = old if not added else old.rstrip("\n") + "\n\n" + _runs_toml(added)
        _check_merged(output, text)
        return Imported(output, text, added, len(existing.runs))
    if not runs:
        raise ConfigError(
            f"No run of organization {org_id} matches {selection.describe()}; nothing was written."
        )
    header = (
        f"# Process runs of organization {org_id}, from `reconcile import "
        f"{selection.describe()}`.\n"
        "# Each state is the run's live state; `name` is a label for humans, and the plan warns\n"
        "# when it no longer matches the run's live name.\n\n"
    )
    document = {"tallyfy": {"org_id": org_id}, "runs": _declarations(runs)}
    return Imported(output, header + tomli_w.dumps(document), tuple(runs), None)


def _declarations(runs: Iterable[ObservedRun]) -> dict[str, dict[str, str]]:
    return {run.run_id: {"state": run.state.value, "name": run.name} for run in runs}


def _runs_toml(runs: Iterable[ObservedRun]) -> str:
    return tomli_w.dumps({"runs": _declarations(runs)})


def _check_merged(output: Path, text: str) -> None:
    try:
        load_state(output, raw=text.encode("utf-8"))
    except StateFileError:
        message = (
            "the new runs cannot be appended as [runs.<id>] tables (is [runs] written as an "
            "inline table or with dotted keys?); nothing was written. Rewrite [runs] as a table "
            "or import into a new file"
        )
        raise StateFileError([Problem(str(output), None, "runs", message)]) from None

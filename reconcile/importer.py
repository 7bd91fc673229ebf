"""Adopt an existing organization: select its runs by filters and write them as a state file.

The listings are read in full (`per_page` at the cap) and every filter is decided here, on the
client, because the API's own filters differ from ours: `owners` matches the owner *or* any
assignee, `tag` wants a tag ID where people know titles, `q` is a substring search, and there is
no date filter. Where the API's filter returns a superset of ours (`checklist_id`, `owners`) it is
sent too, only to shorten the listing; the decision stays with `Selection.matches`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

import tomli_w

from reconcile.domain import ID_PATTERN, ObservedRun, RunState
from reconcile.errors import ConfigError, Problem, StateFileError
from reconcile.state import StateFile, load_state
from reconcile.tallyfy import TallyfyClient
from reconcile.tallyfy.client import Archived
from reconcile.tallyfy.listing import moved
from reconcile.tallyfy.observe import read_again

Include = Literal["active", "archived", "all"]
_LISTINGS: dict[Include, tuple[Archived | None, ...]] = {
    "active": (None,),
    "archived": ("only",),
    "all": (None, "only"),
}


@dataclass(frozen=True)
class Selection:
    """Which runs to import. Every filter given must match (they combine with AND)."""

    include: Include = "all"
    blueprint: str | None = None
    tag: str | None = None
    owner: int | None = None
    started_before: datetime | None = None
    started_after: datetime | None = None
    name: re.Pattern[str] | None = None

    def matches(self, run: ObservedRun) -> bool:
        """Whether `run` passes every filter but `include` (the listings decide that)."""
        if self.blueprint is not None and run.checklist_id != self.blueprint:
            return False
        if self.tag is not None and not any(self.tag in (t.id, t.title) for t in run.tags):
            return False
        if self.owner is not None and run.owner_id != self.owner:
            return False
        if self.started_before is not None or self.started_after is not None:
            started = _moment(run.started_at)
            if started is None:
                return False
            if self.started_before is not None and started >= self.started_before:
                return False
            if self.started_after is not None and started < self.started_after:
                return False
        return self.name is None or self.name.search(run.name) is not None

    def query(self) -> dict[str, str]:
        """Listing parameters that narrow the listing to a superset of the selection."""
        query: dict[str, str] = {}
        if self.blueprint is not None:
            query["checklist_id"] = self.blueprint
        if self.owner is not None:
            query["owners"] = str(self.owner)
        if self.tag is not None:
            query["with"] = "tags"
        return query

    def describe(self) -> str:
        """The filters as command-line options, for the imported file's header and messages."""
        parts = [f"--include {self.include}"]
        if self.blueprint is not None:
            parts.append(f"--blueprint {self.blueprint}")
        if self.tag is not None:
            parts.append(f"--tag {self.tag!r}")
        if self.owner is not None:
            parts.append(f"--owner {self.owner}")
        if self.started_before is not None:
            parts.append(f"--started-before {self.started_before:%Y-%m-%d}")
        if self.started_after is not None:
            parts.append(f"--started-after {self.started_after:%Y-%m-%d}")
        if self.name is not None:
            parts.append(f"--name {self.name.pattern!r}")
        return " ".join(parts)


def make_selection(
    *,
    include: Include = "all",
    blueprint: str | None = None,
    tag: str | None = None,
    owner: int | None = None,
    started_before: datetime | None = None,
    started_after: datetime | None = None,
    name: str | None = None,
) -> Selection:
    """A Selection from command-line values; ConfigError names every unusable one."""
    problems: list[str] = []
    if blueprint is not None and not ID_PATTERN.fullmatch(blueprint):
        problems.append(
            f"--blueprint {blueprint!r} is not a blueprint ID (32 lowercase hex characters, the "
            "run's checklist_id)"
        )
    pattern = None
    if name is not None:
        try:
            pattern = re.compile(name)
        except re.error as exc:
            problems.append(f"--name {name!r} is not a regular expression: {exc}")
    if problems:
        raise ConfigError("; ".join(problems) + ". Nothing was read or written.")
    return Selection(
        include=include,
        blueprint=blueprint,
        tag=tag,
        owner=owner,
        started_before=_utc(started_before),
        started_after=_utc(started_after),
        name=pattern,
    )


def _utc(moment: datetime | None) -> datetime | None:
    """Dates given without a zone are UTC, like every timestamp the API returns."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _moment(timestamp: str | None) -> datetime | None:
    if timestamp is None:
        return None
    try:
        return _utc(datetime.fromisoformat(timestamp))
    except ValueError:
        return None


async def list_org_runs(
    client: TallyfyClient, include: Include = "all", query: dict[str, str] | None = None
) -> list[ObservedRun]:
    """Every run of the organization's listings, each read whole, sorted by run ID. A run archived
    or activated while the listings are read appears in both: it is read again."""
    listings = await asyncio.gather(
        *(client.list_runs(archived, query=query) for archived in _LISTINGS[include])
    )
    unique, contradicted = moved(*listings)
    await read_again(client, unique, contradicted)
    return [unique[run_id] for run_id in sorted(unique)]


async def select_runs(client: TallyfyClient, selection: Selection) -> list[ObservedRun]:
    """The runs the selection picks, sorted by run ID."""
    runs = await list_org_runs(client, selection.include, selection.query())
    return [run for run in runs if selection.matches(run)]


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

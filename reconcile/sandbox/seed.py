"""Seed files: the TOML that describes a sandbox organization and its runs.

[org]
id = "<32 hex>"
name = "Demo Org"
token = "sandbox-token"

[[runs]]
id = "<32 hex>"
name = "Client onboarding - ACME"
status = "active"                           # optional
archived_at = "2026-01-10T09:00:00.000Z"    # optional; absent = not archived
completed_at = "2026-01-09T17:00:00.000Z"   # optional; a complete run defaults to last_updated

[sandbox]                                   # optional: behaviour switches (see switches.py)
noop_write = "409"

`[org]` may also set `auto_archive` and `auto_archive_processes_after` (organization.py), and
`[[activity]]` entries are out-of-band moves (activity.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli

from reconcile.sandbox.activity import SeedMove, parse_seed_activity
from reconcile.sandbox.model import DEFAULT_BEHAVIOUR, RUN_ID, Behaviour, SandboxRun, zulu
from reconcile.sandbox.organization import AUTO_ARCHIVE_OFF, AutoArchive, parse_seed_auto_archive
from reconcile.sandbox.switches import BY_KEY

DEMO_SEED = Path(__file__).with_name("demo-org.toml")
"""The demo organization, shipped with the package: what `reconcile sandbox` serves by default."""
_ORG_KEYS = frozenset({"id", "name", "token", "auto_archive", "auto_archive_processes_after"})
_TIMESTAMPS = ("archived_at", "started_at", "created_at", "last_updated", "completed_at")
_STRINGS = ("status", "checklist_id", "checklist_title")
_RUN_KEYS = frozenset(
    {"id", "name", "owner_id", "tags", "users", "groups", *_TIMESTAMPS, *_STRINGS}
)


class SeedError(ValueError):
    """A seed file cannot be used. Lists every problem found, each naming where it is."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{path}: unusable sandbox seed:\n{lines}")


@dataclass(frozen=True)
class Seed:
    """The contents of a valid seed file."""

    org_id: str
    org_name: str
    token: str
    runs: tuple[SandboxRun, ...]
    auto_archive: AutoArchive = AUTO_ARCHIVE_OFF
    activity: tuple[SeedMove, ...] = ()
    behaviour: Behaviour = DEFAULT_BEHAVIOUR
    """The seed's [sandbox] switches over the defaults."""


def load_seed(path: str | Path) -> Seed:
    """Read and validate a seed file; raises SeedError naming the file and every problem."""
    path = Path(path)
    try:
        data = tomli.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedError(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise SeedError(path, [f"not UTF-8 text: {exc}"]) from exc
    except tomli.TOMLDecodeError as exc:
        raise SeedError(path, [f"not valid TOML: {exc}"]) from exc

    problems: list[str] = []
    for key in sorted(set(data) - {"org", "runs", "activity", "sandbox"}):
        problems.append(
            f"unknown top-level key {key!r} (expected [org], [[runs]], [[activity]], [sandbox])"
        )
    org = data.get("org")
    org_id = org_name = token = ""
    auto_archive = AUTO_ARCHIVE_OFF
    if not isinstance(org, dict):
        problems.append("missing [org] table with id, name and token")
    else:
        for key in sorted(set(org) - _ORG_KEYS):
            problems.append(f"[org]: unknown key {key!r}")
        org_id = _string(org, "id", "[org]", problems, required=True)
        if org_id and not RUN_ID.fullmatch(org_id):
            problems.append(f"[org] id: {org_id!r} is not 32 lowercase hex characters")
        org_name = _string(org, "name", "[org]", problems) or "Sandbox organization"
        token = _string(org, "token", "[org]", problems, required=True)
        auto_archive = parse_seed_auto_archive(org, problems)

    raw_runs = data.get("runs", [])
    runs: list[SandboxRun] = []
    if not isinstance(raw_runs, list) or not all(isinstance(r, dict) for r in raw_runs):
        problems.append("runs must be an array of tables ([[runs]])")
    else:
        for index, table in enumerate(raw_runs, start=1):
            run = _run(table, f"[[runs]] #{index}", problems)
            if run is not None:
                runs.append(run)
    for run_id, count in Counter(run.id for run in runs).items():
        if count > 1:
            problems.append(f"run id {run_id} appears {count} times")
    activity = parse_seed_activity(data.get("activity", []), problems)
    seeded = {run.id for run in runs}
    for move in activity:
        if move.run_id not in seeded:
            problems.append(f"[[activity]]: run {move.run_id} is not among the [[runs]]")
    behaviour = _behaviour(data.get("sandbox", {}), problems)
    if problems:
        raise SeedError(path, problems)
    return Seed(
        org_id=org_id,
        org_name=org_name,
        token=token,
        runs=tuple(runs),
        auto_archive=auto_archive,
        activity=tuple(activity),
        behaviour=behaviour,
    )


def _behaviour(table: Any, problems: list[str]) -> Behaviour:
    """The [sandbox] table's switches over the defaults; problems are added to `problems`."""
    if not isinstance(table, dict):
        problems.append("sandbox must be a table ([sandbox])")
        return DEFAULT_BEHAVIOUR
    values: dict[str, Any] = {}
    for key, value in table.items():
        switch = BY_KEY.get(key)
        if switch is None:
            problems.append(f"[sandbox]: unknown key {key!r} (known: {', '.join(sorted(BY_KEY))})")
            continue
        try:
            values[switch.name] = switch.convert(value)
        except ValueError as exc:
            problems.append(f"[sandbox] {key}: {exc}")
    try:
        return Behaviour(**values)
    except ValueError as exc:
        problems.append(f"[sandbox]: {exc}")
        return DEFAULT_BEHAVIOUR


def _run(table: dict[str, Any], where: str, problems: list[str]) -> SandboxRun | None:
    before = len(problems)
    for key in sorted(set(table) - _RUN_KEYS):
        problems.append(f"{where}: unknown key {key!r}")
    fields: dict[str, Any] = {"id": _string(table, "id", where, problems, required=True)}
    if fields["id"]:
        where = f"{where} (id {fields['id']})"
    fields["name"] = _string(table, "name", where, problems, required=True)
    for key in _STRINGS:
        if key in table:
            fields[key] = _string(table, key, where, problems)
    for key in _TIMESTAMPS:
        value = table.get(key)
        if isinstance(value, datetime) and value.tzinfo is not None:
            fields[key] = zulu(value)  # an unquoted TOML datetime is fine too
        elif value is not None:
            fields[key] = _string(table, key, where, problems)
    if "owner_id" in table:
        owner = table["owner_id"]
        if isinstance(owner, int) and not isinstance(owner, bool):
            fields["owner_id"] = owner
        else:
            problems.append(f"{where}: owner_id must be an integer user id")
    for key, kind in (("tags", str), ("users", int), ("groups", str)):
        if key in table:
            items = table[key]
            if isinstance(items, list) and all(type(item) is kind for item in items):
                fields[key] = tuple(items)
            else:
                noun = "strings" if kind is str else "integers"
                problems.append(f"{where}: {key} must be an array of {noun}")
    if len(problems) > before:
        return None
    try:
        return SandboxRun(**fields)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _string(
    table: dict[str, Any], key: str, where: str, problems: list[str], *, required: bool = False
) -> str:
    value = table.get(key)
    if value is None:
        if required:
            problems.append(f"{where}: missing required key {key!r}")
        return ""
    if not isinstance(value, str):
        problems.append(f"{where}: {key} must be a string, not {type(value).__name__}")
        return ""
    if required and not value:
        problems.append(f"{where}: {key} cannot be empty")
    return value

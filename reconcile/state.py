"""Read and validate the state file: the desired state of each declared run.

Validation collects every problem before raising, so one run of `reconcile validate` shows them all.
TOML syntax errors are the exception: the parser stops at the first, so it is reported alone.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeGuard

import tomli

from reconcile.domain import ID_PATTERN, DesiredRun, RunState, Source
from reconcile.errors import Problem, StateFileError
from reconcile.ratelimit import Window, parse_window

MAX_FILE_BYTES = 64 * 1024 * 1024
TOP_LEVEL_KEYS = ("tallyfy", "safety", "drift", "runs")
TALLYFY_KEYS = ("org_id", "api_url", "parallelism", "rate_limit", "rate_limits")
SAFETY_KEYS = ("max_archive_percent", "max_activate_percent", "min_runs", "gone")
DRIFT_KEYS = ("auto_archived", "lookback_days", "feed_pages")
AUTO_ARCHIVED_POLICIES = ("revert", "accept", "fail")
MAX_PARALLELISM = 64
_DRIFT_BOUNDS: dict[str, tuple[int, int, str]] = {
    # Ten years of the feed, or 1,000 pages (100,000 events) per verb: bounds on what one plan
    # reads, not on what the API keeps.
    "lookback_days": (1, 3650, "days"),
    "feed_pages": (1, 1000, "pages"),
}
_WHOLE_NUMBER_KEYS: dict[str, tuple[int, int | None]] = {
    "parallelism": (1, MAX_PARALLELISM),
    "rate_limit": (0, None),
}
LONG_FORM_KEYS = ("state", "name")
Gone = Literal["warn", "error"]


_STATES = {state.value: state for state in RunState}


@dataclass(frozen=True)
class TallyfySettings:
    """The optional `[tallyfy]` table: connection settings that flags and environment override."""

    org_id: str | None = None
    api_url: str | None = None
    parallelism: int | None = None
    rate_limit: int | None = None
    rate_limits: tuple[Window, ...] | None = None
    """More windows of our own, such as `["12/5s:GET", "140/10s"]`."""


@dataclass(frozen=True)
class SafetySettings:
    """The optional `[safety]` table: the gates of reconcile.safety; flags override each value.

    `apply` refuses to archive more than `max_archive_percent` of the declared runs that are active
    now (once at least `min_runs` are), and likewise for activations of archived runs."""

    max_archive_percent: float = 30.0
    max_activate_percent: float = 30.0
    min_runs: int = 10
    gone: Gone = "warn"
    """A run declared archived that the organization no longer has: a warning, or an error. A run
    declared active that is gone is always an error."""


@dataclass(frozen=True)
class DriftSettings:
    """The optional `[drift]` table: what a plan does with drift the organization's auto-archive
    caused: "revert" it (activate the run again), "accept" it (leave the run archived and list it
    apart) or "fail" (plan and apply stop, exit 3); and how much of the activity feed is read to
    say who moved a run."""

    auto_archived: str = "revert"
    lookback_days: int = 90
    """Days back the feed is read for who moved a run."""
    feed_pages: int = 15
    """Pages of 100 events read per verb at most; a feed with more is incomplete, and the plan
    goes without it."""


@dataclass(frozen=True)
class StateFileRef:
    """Which state file a plan was made from: the path as given and the sha256 of its bytes."""

    path: str
    sha256: str


@dataclass(frozen=True, repr=False)
class StateFile:
    """A validated state file, as it is on disk."""

    path: str
    sha256: str
    tallyfy: TallyfySettings
    runs: tuple[DesiredRun, ...]
    safety: SafetySettings = SafetySettings()
    drift: DriftSettings = DriftSettings()

    @property
    def ref(self) -> StateFileRef:
        return StateFileRef(self.path, self.sha256)

    def __repr__(self) -> str:
        # Counts, not contents: see Plan.__repr__.
        return f"StateFile(path={self.path!r}, sha256={self.sha256[:12]!r}, runs={len(self.runs)})"


def load_state(path: str | Path, raw: bytes | None = None) -> StateFile:
    """Read and validate a state file, raising StateFileError with every problem found. `raw`,
    when given, is the content (e.g. from git), and `path` only names it in messages."""
    shown = str(path)
    raw = _read_bytes(Path(path), shown) if raw is None else raw
    text = _decode(raw, shown)
    locator = _Locator(text)
    try:
        document = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise StateFileError(_syntax_problems(exc, shown, locator)) from None
    except RecursionError:
        message = "invalid TOML: arrays or inline tables nested too deeply to read"
        raise StateFileError([Problem(shown, None, None, message)]) from None
    problems: list[Problem] = []
    settings = _tallyfy_settings(document, shown, locator, problems)
    safety = _safety_settings(document, shown, locator, problems)
    drift = _drift_settings(document, shown, locator, problems)
    runs = _runs(document, shown, locator, problems)
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            problems.append(_unknown_key(shown, locator, (key,), key, TOP_LEVEL_KEYS))
    if problems:
        shown_problems = [replace(p, key=_printable(p.key)) for p in problems]
        raise StateFileError(sorted(shown_problems, key=lambda p: (p.line or 0, p.key or "")))
    return StateFile(
        path=shown,
        sha256=hashlib.sha256(raw).hexdigest(),
        tallyfy=settings,
        runs=tuple(runs),
        safety=safety,
        drift=drift,
    )


def _read_bytes(path: Path, shown: str) -> bytes:
    try:
        size = path.stat().st_size
        # Reading one byte past the limit also stops files whose size stat() does not tell
        # (a pipe, /dev/zero).
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        message = "no such file (create one from state.example.toml, or name another file)"
        raise StateFileError([Problem(shown, None, None, message)]) from None
    except OSError as exc:
        raise StateFileError([Problem(shown, None, None, f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        message = (
            f"the file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes"
            if size > MAX_FILE_BYTES
            else f"the file holds more than the limit of {MAX_FILE_BYTES} bytes"
        )
        raise StateFileError([Problem(shown, None, None, message)])
    return raw


def _decode(raw: bytes, shown: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise StateFileError([Problem(shown, line, None, message)]) from None
    if not text.strip():
        message = "the file is empty; declare runs under a [runs] table (see state.example.toml)"
        raise StateFileError([Problem(shown, None, None, message)])
    return text.removeprefix("\ufeff")


def _syntax_problems(exc: tomli.TOMLDecodeError, shown: str, locator: _Locator) -> list[Problem]:
    duplicates = locator.duplicate_runs()
    if duplicates:
        return [
            Problem(
                shown,
                lines[1],
                f"runs.{run_id}",
                f"run declared more than once (lines "
                f"{', '.join(map(str, lines))}); declare each run once",
            )
            for run_id, lines in duplicates.items()
        ]
    message = str(exc)
    found = re.search(r"\(at line (\d+), column (\d+)\)$", message)
    if found:
        detail = message[: found.start()].strip()
        return [Problem(shown, int(found[1]), None, f"invalid TOML at column {found[2]}: {detail}")]
    return [Problem(shown, None, None, f"invalid TOML: {message}")]


def _tallyfy_settings(
    document: Mapping[str, Any], shown: str, locator: _Locator, problems: list[Problem]
) -> TallyfySettings:
    values: dict[str, str] = {}
    numbers: dict[str, int] = {}
    windows: tuple[Window, ...] | None = None
    for key, value in _settings_table(document, "tallyfy", TALLYFY_KEYS, shown, locator, problems):
        line = locator.line("tallyfy", key)
        if key == "rate_limits":
            windows = _windows(value, Problem(shown, line, "tallyfy.rate_limits", ""), problems)
        elif key in _WHOLE_NUMBER_KEYS:
            low, high = _WHOLE_NUMBER_KEYS[key]
            if _whole_number_between(value, low, high):
                numbers[key] = value
            else:
                allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
                message = f"must be a whole number {allowed}, not {value!r}"
                problems.append(Problem(shown, line, f"tallyfy.{key}", message))
        elif not isinstance(value, str):
            problems.append(Problem(shown, line, f"tallyfy.{key}", "must be a string"))
        elif key == "org_id" and not ID_PATTERN.fullmatch(value):
            message = f"{value!r} is not an organization ID (32 lowercase hex characters)"
            problems.append(Problem(shown, line, "tallyfy.org_id", message))
        else:
            values[key] = value
    return TallyfySettings(
        org_id=values.get("org_id"),
        api_url=values.get("api_url"),
        parallelism=numbers.get("parallelism"),
        rate_limit=numbers.get("rate_limit"),
        rate_limits=windows,
    )


def _windows(value: object, where: Problem, problems: list[Problem]) -> tuple[Window, ...] | None:
    """`rate_limits`: an array of windows such as "12/5s:GET"; each bad one is a problem."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append(replace(where, message='must be an array of strings like "140/10s"'))
        return None
    windows = []
    for item in value:
        try:
            windows.append(parse_window(item))
        except ValueError as exc:
            problems.append(replace(where, message=str(exc)))
    return tuple(windows)


def _settings_table(
    document: Mapping[str, Any],
    name: str,
    valid: tuple[str, ...],
    shown: str,
    locator: _Locator,
    problems: list[Problem],
) -> list[tuple[str, Any]]:
    """The known keys of an optional settings table with their values; a table that is not one,
    and each unknown key, becomes a problem."""
    table = document.get(name, {})
    if not isinstance(table, dict):
        problems.append(Problem(shown, locator.line(name), name, "must be a table"))
        return []
    known = []
    for key, value in table.items():
        if key in valid:
            known.append((key, value))
        else:
            problems.append(_unknown_key(shown, locator, (name, key), key, valid))
    return known


def _whole_number_between(value: object, low: int, high: int | None) -> TypeGuard[int]:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return low <= value and (high is None or value <= high)


def _safety_settings(
    document: Mapping[str, Any], shown: str, locator: _Locator, problems: list[Problem]
) -> SafetySettings:
    values: dict[str, Any] = {}
    for key, value in _settings_table(document, "safety", SAFETY_KEYS, shown, locator, problems):
        line = locator.line("safety", key)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key == "gone":
            if value in ("warn", "error"):
                values[key] = value
            else:
                message = f'must be "warn" or "error" (got {value!r})'
                problems.append(Problem(shown, line, f"safety.{key}", message))
        elif key == "min_runs" and not _whole_number_between(value, 0, None):
            message = f"must be a whole number of runs, 0 or more (got {value!r})"
            problems.append(Problem(shown, line, f"safety.{key}", message))
        elif not (number and 0 <= value <= 100):
            message = f"must be a percentage from 0 to 100 (got {value!r})"
            problems.append(Problem(shown, line, f"safety.{key}", message))
        else:
            values[key] = value if key == "min_runs" else float(value)
    return SafetySettings(**values)


def _drift_settings(
    document: Mapping[str, Any], shown: str, locator: _Locator, problems: list[Problem]
) -> DriftSettings:
    values: dict[str, Any] = {}
    for key, value in _settings_table(document, "drift", DRIFT_KEYS, shown, locator, problems):
        line = locator.line("drift", key)
        if key in _DRIFT_BOUNDS:
            low, high, unit = _DRIFT_BOUNDS[key]
            if _whole_number_between(value, low, high):
                values[key] = value
            else:
                message = f"must be a whole number of {unit} from {low} to {high} (got {value!r})"
                problems.append(Problem(shown, line, f"drift.{key}", message))
        elif value in AUTO_ARCHIVED_POLICIES:
            values[key] = value
        else:
            choices = ", ".join(f'"{policy}"' for policy in AUTO_ARCHIVED_POLICIES)
            message = f"must be one of {choices} (got {value!r})"
            problems.append(Problem(shown, line, f"drift.{key}", message))
    return DriftSettings(**values)


def _runs(
    document: Mapping[str, Any], shown: str, locator: _Locator, problems: list[Problem]
) -> list[DesiredRun]:
    if "runs" not in document:
        message = "no [runs] table; declare each run's desired state there (see state.example.toml)"
        problems.append(Problem(shown, None, "runs", message))
        return []
    table = document["runs"]
    if not isinstance(table, dict):
        problems.append(Problem(shown, locator.line("runs"), "runs", "must be a table"))
        return []
    runs: list[DesiredRun] = []
    for run_id, value in table.items():
        source = Source(shown, locator.line("runs", run_id))
        before = len(problems)
        if not ID_PATTERN.fullmatch(run_id):
            problems.append(Problem(shown, source.line, f"runs.{run_id}", _bad_id(run_id)))
        state, name = _declaration(value, run_id, source, locator, problems)
        if state is not None and len(problems) == before:
            runs.append(DesiredRun(run_id=run_id, state=state, name=name, source=source))
    return runs


def _declaration(
    value: object, run_id: str, source: Source, locator: _Locator, problems: list[Problem]
) -> tuple[RunState | None, str | None]:
    key = f"runs.{run_id}"
    if isinstance(value, str):
        return _state(value, key, source, problems), None
    if not isinstance(value, dict):
        message = 'must be "archived", "active", or a table with state = "..." and name = "..."'
        problems.append(Problem(source.path, source.line, key, message))
        return None, None
    for extra in value:
        if extra not in LONG_FORM_KEYS:
            problems.append(
                _unknown_key(
                    source.path, locator, ("runs", run_id, extra), f"{key}.{extra}", LONG_FORM_KEYS
                )
            )
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        line = locator.line("runs", run_id, "name") or source.line
        problems.append(Problem(source.path, line, f"{key}.name", "must be a string"))
        name = None
    if "state" not in value:
        problems.append(
            Problem(
                source.path,
                source.line,
                f"{key}.state",
                'missing; set state = "archived" or state = "active"',
            )
        )
        return None, name
    line = locator.line("runs", run_id, "state") or source.line
    return _state(value["state"], f"{key}.state", Source(source.path, line), problems), name


def _state(value: object, key: str, source: Source, problems: list[Problem]) -> RunState | None:
    if isinstance(value, str) and value in _STATES:
        return _STATES[value]
    hint = ""
    if isinstance(value, str) and value.lower() in ("complete", "completed", "problem", "open"):
        hint = " (workflow statuses are not declared; only archived or not)"
    message = f'{value!r} is not a state; use "archived" or "active"{hint}'
    problems.append(Problem(source.path, source.line, key, message))
    return None


def _bad_id(run_id: str) -> str:
    if ID_PATTERN.fullmatch(run_id.lower()):
        return f"run ID {run_id!r} must be lowercase (write {run_id.lower()!r})"
    return f"{run_id!r} is not a run ID (32 lowercase hex characters, as in the run's URL)"


def _unknown_key(
    shown: str, locator: _Locator, path: tuple[str, ...], key: str, valid: tuple[str, ...]
) -> Problem:
    close = difflib.get_close_matches(path[-1], valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid)}"
    return Problem(shown, locator.line(*path), key, f"unknown key{hint}")


_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|' + r"'[^']*'"
_PART = rf"(?:{_QUOTED}|{_BARE})"
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_KEY = re.compile(rf"^\s*({_DOTTED})\s*=")
_BARE_KEY = re.compile(rf"\s*({_BARE})\s*=")
_SPLIT = re.compile(_PART)


class _Locator:
    """Line numbers of tables and keys. The TOML parser reports none, so the text is scanned once
    here."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], list[int]] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                table = _parts(header[1])
                self._lines.setdefault(table, []).append(number)
                continue
            # Most lines are `<run id> = ...`: a bare key needs no splitting or unquoting.
            key = _BARE_KEY.match(line) or _KEY.match(line)
            if key:
                parts = (key[1],) if key.re is _BARE_KEY else _parts(key[1])
                self._lines.setdefault(table + parts, []).append(number)

    def line(self, *path: str) -> int | None:
        """The first line that declares this key or table, if it can be found."""
        lines = self._lines.get(path)
        return lines[0] if lines else None

    def duplicate_runs(self) -> dict[str, list[int]]:
        """Run IDs declared on more than one line (TOML itself rejects the file then)."""
        return {
            path[1]: lines
            for path, lines in self._lines.items()
            if len(path) == 2 and path[0] == "runs" and len(lines) > 1
        }


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(_unquote(part) for part in _SPLIT.findall(dotted))


def _unquote(part: str) -> str:
    """A key as TOML reads it: basic strings ("...") may hold escapes such as \\n."""
    if part.startswith('"'):
        try:
            return str(tomli.loads(f"k = {part}")["k"])
        except tomli.TOMLDecodeError:
            return part.strip('"')
    return part.strip("'")


def _printable(key: str | None) -> str | None:
    """Keys go into one-line messages: control characters are shown escaped."""
    if key is None or key.isprintable():
        return key
    return key.encode("unicode_escape").decode("ascii")

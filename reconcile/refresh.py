"""`reconcile refresh`: accept the live state into the state file, by editing its text in place
(new states, updated labels, the removal of runs that are gone).

tomli-w would write the whole document anew and lose every comment, so the text is scanned here
and only the bytes that change are replaced: a state or a `name` value, or the lines of a
declaration that goes. The scan knows TOML's syntax well enough to find where each statement and
each value starts and ends; a value it rewrites must be a one-line string ("..." or '...'), which
is how reconcile and people write them. Anything else is refused with its line, before any edit.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from reconcile.differences import DeclarationChanges, compare_declarations, declared
from reconcile.domain import ObservedRun, RunState
from reconcile.errors import Problem, StateFileError
from reconcile.state import StateFile, load_state
from reconcile.tomltext import Kind, Unreadable, Value, scan

_FORMS: dict[Kind, str] = {
    "basic": "a string",
    "literal": "a string",
    "multiline": "a multi-line string",
    "array": "an array",
    "table": "an inline table",
    "other": "a number, boolean or date",
}
_WS = " \t"
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


@dataclass(frozen=True)
class Refreshed:
    """What refresh did to a state file: its text before and after, and the change to its
    declarations (a DeepDiff of the declared maps, see reconcile.differences)."""

    path: str
    before: str
    after: str
    declarations: DeclarationChanges
    written: bool = False
    """Whether the file was rewritten (never with --dry-run, nor when nothing changes)."""
    kept: tuple[str, ...] = ()
    """Runs the organization no longer has whose declarations stay (without --prune)."""

    @property
    def changed(self) -> bool:
        return self.after != self.before

    def diff(self) -> str:
        """The change to the file as a unified diff (empty when there is none), each line ended,
        as diff and git show a last line without a newline."""
        lines = difflib.unified_diff(
            _lines(self.before), _lines(self.after), f"a/{self.path}", f"b/{self.path}"
        )
        return "".join(
            line if line.endswith("\n") else f"{line}\n\\ No newline at end of file\n"
            for line in lines
        )

    def summary(self) -> str:
        """One sentence: what changed in the declarations, or that nothing did."""
        them = "it" if len(self.kept) == 1 else "them"
        kept = (
            f"{_count(len(self.kept), 'run')} gone from Tallyfy left in the file "
            f"(--prune removes {them})"
        )
        if not self.changed:
            if self.kept:
                return f"No changes to {self.path}; {kept}."
            return f"No changes: {self.path} matches Tallyfy."
        states = [c for c in self.declarations.changed if c.field == "state"]
        archived = sum(1 for change in states if change.after == RunState.ARCHIVED.value)
        labels = len(self.declarations.changed) - len(states)
        parts = []
        if states:
            parts.append(
                f"{_count(len(states), 'state')} accepted from Tallyfy ({archived} now archived, "
                f"{len(states) - archived} now active)"
            )
        if labels:
            parts.append(f"{_count(labels, 'label')} updated")
        if self.declarations.removed:
            parts.append(
                f"{_count(len(self.declarations.removed), 'run')} gone from Tallyfy removed"
            )
        if self.kept:
            parts.append(kept)
        verb = "was" if self.written else "would be"
        return f"{self.path} {verb} refreshed: {'; '.join(parts)}."


def refresh_text(
    text: str,
    state: StateFile,
    observed: Mapping[str, ObservedRun],
    *,
    prune: bool = False,
    names: bool = False,
) -> Refreshed:
    """The text of `state`'s file with every declaration brought to what Tallyfy says now: the
    live state of each run in `observed`; with `names`, its live name for a label that differs;
    with `prune`, no declaration for a run missing from `observed`. Nothing is written here."""
    states: dict[str, RunState] = {}
    labels: dict[str, str] = {}
    gone = set()
    for run in state.runs:
        seen = observed.get(run.run_id)
        if seen is None:
            gone.add(run.run_id)
            continue
        if seen.state is not run.state:
            states[run.run_id] = seen.state
        if names and run.name is not None and seen.name and seen.name != run.name:
            labels[run.run_id] = seen.name
    edits = StateEdits(states=states, names=labels, prune=gone if prune else frozenset())
    after = edit_state(text, state.path, edits)
    # The report is read back from the new text, so it says what the file now declares.
    now = load_state(state.path, raw=after.encode("utf-8"))
    changes = compare_declarations(declared(state), declared(now))
    kept = () if prune else tuple(run.run_id for run in state.runs if run.run_id in gone)
    return Refreshed(state.path, text, after, changes, kept=kept)


def _lines(text: str) -> list[str]:
    """The file's lines, each with its newline; only "\\n" ends one (str.splitlines would also
    split at a form feed or U+2028 in a comment)."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@dataclass(frozen=True)
class StateEdits:
    """What to change in a state file, by run ID. A run that is pruned is not edited."""

    states: Mapping[str, RunState] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)
    """New `name` labels; only a declaration that has a label can have it updated."""
    prune: Collection[str] = frozenset()
    """Runs whose declarations are removed."""


def check_editable(text: str, path: str, *, names: bool = False) -> None:
    """Raise StateFileError naming each line whose form refresh cannot rewrite: a `[runs]` table
    written inline, a declared state (and, with `names`, a label) that is not a one-line string.
    Refresh calls this before it reads anything from Tallyfy."""
    layout = _Layout(text, path)
    fields = ("state", "name") if names else ("state",)
    problems = layout.inline_problems() or [
        p for run_id in layout.runs() for p in layout.problems(run_id, fields, needed=False)
    ]
    if problems:
        raise StateFileError(problems)


def edit_state(text: str, path: str, edits: StateEdits) -> str:
    """`text` with the edits made and every other byte kept. StateFileError, naming the line,
    when a declaration the edits touch cannot be rewritten exactly; nothing is edited then."""
    layout = _Layout(text, path)
    pruned = set(edits.prune)
    problems: list[Problem] = []
    cuts: list[tuple[int, int, str]] = []
    for run_id in sorted(pruned):
        problems += layout.problems(run_id, (), needed=True)
        cuts += [(start, end, "") for start, end in layout.spans(run_id)]
    for field_name, values in (("state", edits.states), ("name", edits.names)):
        for run_id, new in values.items():
            if run_id in pruned:
                continue
            found = layout.problems(run_id, (field_name,), needed=True)
            problems += found
            value = layout.field(run_id, field_name)
            if not found and value is not None:
                cuts.append((value.start, value.end, _quote(new, literal=value.kind == "literal")))
    if problems:
        raise StateFileError(sorted(set(problems), key=lambda p: (p.line or 0, p.key or "")))
    pieces: list[str] = []
    done = 0
    for start, end, new in sorted(cuts):
        pieces += [text[done:start], new]
        done = end
    return "".join([*pieces, text[done:]])


class _Layout:
    """Where each statement of a TOML text stands."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self._starts = [0, *(m.end() for m in re.finditer("\n", text))]
        try:
            self.statements = scan(text)
        except Unreadable as exc:
            message = (
                "refresh cannot read the form of this line, so it cannot edit the file safely; "
                "nothing was written"
            )
            raise StateFileError([Problem(path, self.line_at(exc.offset), None, message)]) from None
        self._by_run: dict[str, list[int]] = {}
        for index, statement in enumerate(self.statements):
            if len(statement.path) >= 2 and statement.path[0] == "runs":
                self._by_run.setdefault(statement.path[1], []).append(index)
        self.inline_runs = next(
            (s for s in self.statements if s.path == ("runs",) and s.value is not None), None
        )

    def line_at(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset)

    def line(self, run_id: str) -> int:
        return self.line_at(self.statements[self._by_run[run_id][0]].first)

    def runs(self) -> list[str]:
        return list(self._by_run)

    def field(self, run_id: str, name: str) -> Value | None:
        """The value of the run's `state` or `name`, in whichever form the run is declared."""
        for index in self._by_run.get(run_id, ()):
            statement = self.statements[index]
            value = statement.value
            rest = statement.path[2:]
            if value is None:
                continue
            if rest == (name,):
                return value
            if not rest and value.kind == "table":
                inner = dict(value.items).get((name,))
                if inner is not None:
                    return inner
            elif not rest and name == "state":
                return value
        return None

    def inline_problems(self) -> list[Problem]:
        """A `[runs]` table written inline, where refresh makes no edit."""
        if self.inline_runs is None:
            return []
        message = (
            "it is written as an inline table (runs = {...}); refresh edits runs declared in "
            "a [runs] table or as [runs.<id>] tables. Rewrite it as a table; nothing was written"
        )
        return [Problem(self.path, self.line_at(self.inline_runs.first), "runs", message)]

    def problems(self, run_id: str, fields: tuple[str, ...], *, needed: bool) -> list[Problem]:
        """Why the run's `fields` cannot be rewritten (or, when `needed`, are missing); empty when
        they can. Any edit is refused in a `[runs]` table written inline."""
        key = f"runs.{run_id}"
        inline = self.inline_problems()
        if inline:
            return inline
        if run_id not in self._by_run:
            return [Problem(self.path, None, key, f"run {run_id} is not declared in the file")]
        problems = []
        for name in fields:
            value = self.field(run_id, name)
            if value is None and needed:
                message = f"run {run_id} has no {name} to update"
                problems.append(Problem(self.path, self.line(run_id), key, message))
            elif value is not None and value.kind not in ("basic", "literal"):
                message = (
                    f"the {name} is written as {_FORMS[value.kind]}; refresh rewrites only "
                    "one-line strings (\"...\" or '...'). Write it that way; nothing was written"
                )
                problems.append(Problem(self.path, self.line_at(value.start), key, message))
        return problems

    def spans(self, run_id: str) -> list[tuple[int, int]]:
        """The text a run's declaration stands on: its `key = value` lines, and each of its
        `[runs.<id>]` tables from the header to the last line inside it (comments included).
        Comments written right above the next table's header are that table's and stay."""
        spans = []
        for index in self._by_run.get(run_id, ()):
            statement = self.statements[index]
            if statement.value is not None:
                spans.append((statement.first, statement.last))
                continue
            end = statement.last
            for following in self.statements[index + 1 :]:
                if following.value is None:
                    break
                end = following.last
            spans.append((statement.first, self._trailing_comments(end)))
        merged: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def _trailing_comments(self, end: int) -> int:
        """`end`, moved past the comment lines that follow it when a blank line or the end of
        the file comes after them (comments right above a header belong to that table)."""
        index = self.line_at(end) - 1
        after = end
        while index < len(self._starts):
            start = self._starts[index]
            stop = self._starts[index + 1] if index + 1 < len(self._starts) else len(self.text)
            line = self.text[start:stop].strip(_WS + "\r\n")
            if not line.startswith("#"):
                return after if not line else end
            index += 1
            after = stop
        return after


def _quote(value: str, *, literal: bool) -> str:
    """A TOML string for `value`: literal ('...') when asked and it can be, else basic ("...").
    What is not printable is escaped, so that the file and its diff show it plainly."""
    if literal and "'" not in value and all(c == "\t" or c.isprintable() for c in value):
        return f"'{value}'"
    return '"' + "".join(_escape(c) for c in value) + '"'


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

"""Edit a state file's text in place: new states, updated labels, and the removal of runs.

tomli-w would write the whole document anew and lose every comment, so the text is scanned here
and only the bytes that change are replaced: a state or a `name` value, or the lines of a
declaration that goes. The scan knows TOML's syntax well enough to find where each statement and
each value starts and ends; a value it rewrites must be a one-line string ("..." or '...'), which
is how reconcile and people write them. Anything else is refused with its line, before any edit.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeVar

import tomli

from reconcile.domain import RunState
from reconcile.errors import Problem, StateFileError

_T = TypeVar("_T")
Kind = Literal["basic", "literal", "multiline", "array", "table", "other"]
_FORMS: dict[Kind, str] = {
    "basic": "a string",
    "literal": "a string",
    "multiline": "a multi-line string",
    "array": "an array",
    "table": "an inline table",
    "other": "a number, boolean or date",
}
_WS = " \t"
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"\d{4}-\d{2}-\d{2} (?=\d\d:)[^\s,\]}#]+|[^\s,\]}#]+")
# Most lines of a large file are `<run id> = "state"`: one match reads them whole.
_SIMPLE = re.compile(
    r"""[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*("[^"\\\r\n]*"|'[^'\r\n]*')"""
    r"[ \t]*(?:\#[^\r\n]*)?(?:\r?\n|\Z)"
)
_SIMPLE_HEADER = re.compile(
    r"[ \t]*\[[ \t]*([A-Za-z0-9_-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_-]+)*)[ \t]*\]"
    r"[ \t]*(?:#[^\r\n]*)?(?:\r?\n|\Z)"
)
_EMPTY = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r?\n|\Z)")
_ESCAPES = {"\x7f": "\\u007f"}


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


class _Value(NamedTuple):
    kind: Kind
    start: int
    end: int
    items: tuple[tuple[tuple[str, ...], _Value], ...] = ()
    """An inline table's keys and values."""


class _Statement(NamedTuple):
    """A `[table]` header (value None) or a `key = value`, with the lines it stands on."""

    path: tuple[str, ...]
    first: int
    """Offset of the start of its first line."""
    last: int
    """Offset just past its last line's newline."""
    value: _Value | None


class _Unreadable(Exception):
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Layout:
    """Where each statement of a TOML text stands."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self._starts = [0, *(m.end() for m in re.finditer("\n", text))]
        try:
            self.statements = list(_Scanner(text).statements())
        except _Unreadable as exc:
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

    def field(self, run_id: str, name: str) -> _Value | None:
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
            "[runs] is written as an inline table (runs = {...}); refresh edits runs declared in "
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
    """A TOML string for `value`: literal ('...') when asked and it can be, else basic ("...")."""
    if literal and "'" not in value and all(c == "\t" or c.isprintable() for c in value):
        return f"'{value}'"
    # JSON's escapes are TOML's, except that TOML also forbids DEL unescaped.
    return "".join(_ESCAPES.get(c, c) for c in json.dumps(value, ensure_ascii=False))


class _Scanner:
    """Reads TOML statements with their offsets. The text has parsed as TOML already, so the
    scanner only finds boundaries; what it does not know raises _Unreadable."""

    def __init__(self, text: str) -> None:
        self.text = text
        # A byte-order mark is not part of the first line's statement.
        self.start = self.pos = 1 if text.startswith("\ufeff") else 0
        self.table: tuple[str, ...] = ()

    def statements(self) -> Iterator[_Statement]:
        text = self.text
        while self.pos < len(text):
            first = max(text.rfind("\n", 0, self.pos) + 1, self.start)
            if self.pos == first:
                simple = _SIMPLE.match(text, first)
                if simple is not None:
                    self.pos = simple.end()
                    kind: Kind = "basic" if simple[2][0] == '"' else "literal"
                    value = _Value(kind, simple.start(2), simple.end(2))
                    yield _Statement((*self.table, simple[1]), first, self.pos, value)
                    continue
                empty = _EMPTY.match(text, first)
                if empty is not None:
                    self.pos = empty.end()
                    continue
                header = _SIMPLE_HEADER.match(text, first)
                if header is not None:
                    self.pos = header.end()
                    self.table = tuple(part.strip(_WS) for part in header[1].split("."))
                    yield _Statement(self.table, first, self.pos, None)
                    continue
            self._skip(_WS)
            if self._at_line_end():
                continue
            char = text[self.pos]
            if char == "[":
                depth = 2 if text.startswith("[[", self.pos) else 1
                self.pos += depth
                self._skip(_WS)
                self.table = self._key()
                self._skip(_WS)
                self._expect("]" * depth)
                self._end_line()
                yield _Statement(self.table, first, self.pos, None)
            else:
                key = self._key()
                self._skip(_WS)
                self._expect("=")
                self._skip(_WS)
                value = self._value()
                self._end_line()
                yield _Statement((*self.table, *key), first, self.pos, value)

    def _at_line_end(self) -> bool:
        """Past a comment and the newline if the line holds nothing else."""
        text = self.text
        if self.pos < len(text) and text[self.pos] == "#":
            newline = text.find("\n", self.pos)
            self.pos = len(text) if newline < 0 else newline
        if self.pos >= len(text):
            return True
        if text.startswith("\r\n", self.pos):
            self.pos += 2
            return True
        if text[self.pos] == "\n":
            self.pos += 1
            return True
        return False

    def _end_line(self) -> None:
        self._skip(_WS)
        if not self._at_line_end():
            raise _Unreadable(self.pos)

    def _skip(self, chars: str) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] in chars:
            self.pos += 1

    def _skip_blank(self) -> None:
        """Whitespace, newlines and comments, as arrays and inline tables allow between items."""
        while True:
            self._skip(_WS + "\r\n")
            if not self.text.startswith("#", self.pos):
                return
            self._at_line_end()

    def _expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise _Unreadable(self.pos)
        self.pos += len(token)

    def _key(self) -> tuple[str, ...]:
        parts = [self._key_part()]
        self._skip(_WS)
        while self.text.startswith(".", self.pos):
            self.pos += 1
            self._skip(_WS)
            parts.append(self._key_part())
            self._skip(_WS)
        return tuple(parts)

    def _key_part(self) -> str:
        start = self.pos
        if self.text.startswith('"', start):
            self._basic_string()
            return str(tomli.loads(f"k = {self.text[start : self.pos]}")["k"])
        if self.text.startswith("'", start):
            self._literal_string()
            return self.text[start + 1 : self.pos - 1]
        bare = _BARE.match(self.text, start)
        if bare is None:
            raise _Unreadable(start)
        self.pos = bare.end()
        return bare[0]

    def _value(self) -> _Value:
        text = self.text
        start = self.pos
        kind: Kind
        items: tuple[tuple[tuple[str, ...], _Value], ...] = ()
        if text.startswith(('"""', "'''"), start):
            kind = "multiline"
            self._multiline_string(text[start])
        elif text.startswith('"', start):
            kind = "basic"
            self._basic_string()
        elif text.startswith("'", start):
            kind = "literal"
            self._literal_string()
        elif text.startswith("[", start):
            kind = "array"
            self._items("]", self._value)
        elif text.startswith("{", start):
            kind = "table"
            items = tuple(self._items("}", self._pair))
        else:
            kind = "other"
            scalar = _SCALAR.match(text, start)
            if scalar is None:
                raise _Unreadable(start)
            self.pos = scalar.end()
        return _Value(kind, start, self.pos, items)

    def _pair(self) -> tuple[tuple[str, ...], _Value]:
        key = self._key()
        self._skip(_WS)
        self._expect("=")
        self._skip(_WS)
        return key, self._value()

    def _items(self, close: str, item: Callable[[], _T]) -> list[_T]:
        """The comma-separated items of an array or inline table, up to `close`."""
        self.pos += 1
        found: list[_T] = []
        while True:
            self._skip_blank()
            if self.text.startswith(close, self.pos):
                self.pos += 1
                return found
            found.append(item())
            self._skip_blank()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif not self.text.startswith(close, self.pos):
                raise _Unreadable(self.pos)

    def _basic_string(self) -> None:
        text = self.text
        index = self.pos + 1
        while index < len(text) and text[index] not in '"\n':
            index += 2 if text[index] == "\\" else 1
        if index >= len(text) or text[index] != '"':
            raise _Unreadable(self.pos)
        self.pos = index + 1

    def _literal_string(self) -> None:
        end = self.text.find("'", self.pos + 1)
        if end < 0 or "\n" in self.text[self.pos : end]:
            raise _Unreadable(self.pos)
        self.pos = end + 1

    def _multiline_string(self, quote: str) -> None:
        text = self.text
        delimiter = quote * 3
        index = self.pos + 3
        while index < len(text):
            if quote == '"' and text[index] == "\\":
                index += 2
            elif text.startswith(delimiter, index):
                # Up to two quotes right before the delimiter belong to the string.
                end = index + 3
                while end < len(text) and end < index + 5 and text[end] == quote:
                    end += 1
                self.pos = end
                return
            else:
                index += 1
        raise _Unreadable(self.pos)

"""Where each statement and value of a TOML text stands: what `reconcile refresh` needs to edit
a state file in place, byte for byte, where tomli (which gives values, not places) cannot help.

The text has parsed as TOML already, so the scanner only finds boundaries: the start and end of
each `[table]` header, each `key = value` line (or lines) and each value, with the key's full path.
What it does not know raises Unreadable with the offset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple, TypeVar

import tomli

_T = TypeVar("_T")
Kind = Literal["basic", "literal", "multiline", "array", "table", "other"]
"""A value's form: a one-line basic ("...") or literal ('...') string, or anything else."""
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


class Value(NamedTuple):
    kind: Kind
    start: int
    end: int
    items: tuple[tuple[tuple[str, ...], Value], ...] = ()
    """An inline table's keys and values."""


class Statement(NamedTuple):
    """A `[table]` header (value None) or a `key = value`, with the lines it stands on."""

    path: tuple[str, ...]
    first: int
    """Offset of the start of its first line."""
    last: int
    """Offset just past its last line's newline."""
    value: Value | None


class Unreadable(Exception):
    def __init__(self, offset: int) -> None:
        self.offset = offset


def scan(text: str) -> list[Statement]:
    """Every header and key/value statement of `text`, in order; Unreadable if a line is in a
    form the scanner does not know."""
    return list(_Scanner(text).statements())


class _Scanner:
    """Reads TOML statements with their offsets. The text has parsed as TOML already, so the
    scanner only finds boundaries; what it does not know raises Unreadable."""

    def __init__(self, text: str) -> None:
        self.text = text
        # A byte-order mark is not part of the first line's statement.
        self.start = self.pos = 1 if text.startswith("\ufeff") else 0
        self.table: tuple[str, ...] = ()

    def statements(self) -> Iterator[Statement]:
        text = self.text
        while self.pos < len(text):
            first = max(text.rfind("\n", 0, self.pos) + 1, self.start)
            if self.pos == first:
                simple = _SIMPLE.match(text, first)
                if simple is not None:
                    self.pos = simple.end()
                    kind: Kind = "basic" if simple[2][0] == '"' else "literal"
                    value = Value(kind, simple.start(2), simple.end(2))
                    yield Statement((*self.table, simple[1]), first, self.pos, value)
                    continue
                empty = _EMPTY.match(text, first)
                if empty is not None:
                    self.pos = empty.end()
                    continue
                header = _SIMPLE_HEADER.match(text, first)
                if header is not None:
                    self.pos = header.end()
                    self.table = tuple(part.strip(_WS) for part in header[1].split("."))
                    yield Statement(self.table, first, self.pos, None)
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
                yield Statement(self.table, first, self.pos, None)
            else:
                key = self._key()
                self._skip(_WS)
                self._expect("=")
                self._skip(_WS)
                value = self._value()
                self._end_line()
                yield Statement((*self.table, *key), first, self.pos, value)

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
            raise Unreadable(self.pos)

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
            raise Unreadable(self.pos)
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
            raise Unreadable(start)
        self.pos = bare.end()
        return bare[0]

    def _value(self) -> Value:
        text = self.text
        start = self.pos
        kind: Kind
        items: tuple[tuple[tuple[str, ...], Value], ...] = ()
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
                raise Unreadable(start)
            self.pos = scalar.end()
        return Value(kind, start, self.pos, items)

    def _pair(self) -> tuple[tuple[str, ...], Value]:
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
                raise Unreadable(self.pos)

    def _basic_string(self) -> None:
        text = self.text
        index = self.pos + 1
        while index < len(text) and text[index] not in '"\n':
            index += 2 if text[index] == "\\" else 1
        if index >= len(text) or text[index] != '"':
            raise Unreadable(self.pos)
        self.pos = index + 1

    def _literal_string(self) -> None:
        end = self.text.find("'", self.pos + 1)
        if end < 0 or "\n" in self.text[self.pos : end]:
            raise Unreadable(self.pos)
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
        raise Unreadable(self.pos)

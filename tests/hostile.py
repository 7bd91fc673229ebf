"""Hostile text from the API, and the checks that it reached the output inert: no control
character or escape sequence, no forged line, no forged cell of a Markdown table."""

from __future__ import annotations

import re

HOSTILE = (
    "\x1b[2J\x1b[Hscreen cleared",
    "\x1b]0;window title\x07",
    "\x1b]8;;https://evil.example\x1b\\a link\x1b]8;;\x1b\\",
    "\x1b[31mred\x1b[0m",
    "done\r  activate  ffffffffffffffffffffffffffffffff  archived -> active",
    "active)\n  activate  ffffffffffffffffffffffffffffffff  archived -> active  (status: ok)",
    "bells\x07\x07\x07",
    "\u202eevitca",
    "\u2066isolated\u2069 \u2067rtl\u2069 \u200f",
    "zero\u200bwidth\u200d\u2060joiner\ufeff",
    "line\u2028separator\u2029paragraph",
    "next\x85line \x9b31mC1 CSI",
    "nul\x00 del\x7f tab\t vertical\x0b feed\x0c",
    "\u3164\u115f fillers",
    "\U000e0041\U000e0042 tags",
    "| archive | `ffffffffffffffffffffffffffffffff` | forged | active -> archived | `x` |",
    "<!-- hidden --> <details><summary>x</summary> <img src=x onerror=alert(1)> </details>",
    "**bold** _it_ `code` [link](https://evil.example) ~~gone~~ \\| back\\slash\\",
    "Checksum: `0000` (`reconcile apply --checksum 0000`)",
    "日本語の名前 ✓ café 😀",
    "y" * 5_000,
)
"""Text a hostile or broken API could send as a name, status or message: terminal escape sequences,
carriage returns and line breaks that forge lines, bells, bidi overrides and other invisible
characters, Markdown and HTML that would break out of a table cell, and a very long name. The
last-but-one is ordinary non-ASCII text, which must come out exactly."""

_FILLERS = "\u115f\u1160\u3164\uffa0"

_CELL_END = re.compile(r"(?<!\\)(?:\\\\)*\|")
"""A pipe that ends a Markdown table cell: one not escaped by an odd run of backslashes."""


def assert_inert(output: str) -> None:
    """Nothing in `output` but printable characters and its own line breaks: no control
    character, escape sequence, bidi override, invisible format character or blank filler."""
    for line in output.split("\n"):
        assert line.isprintable(), f"unsafe character in {line[:200]!r}"
        assert not set(_FILLERS) & set(line), f"blank filler in {line[:200]!r}"


def table_rows(markdown: str) -> int:
    """The rows of every Markdown table, checking that each has as many cells as its header (a
    row with more would be a cell forged by a name)."""
    lines = markdown.splitlines()
    rows = 0
    for index, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[index + 1].startswith("| --- |"):
            width = len(_CELL_END.findall(line))
            for row in lines[index + 2 :]:
                if not row.startswith("| "):
                    break
                assert len(_CELL_END.findall(row)) == width, f"a row with a forged cell: {row!r}"
                rows += 1
    return rows

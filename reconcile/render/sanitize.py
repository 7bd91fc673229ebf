"""The one sanitizer for text from outside (run names, statuses, the API's error messages, any
field of an answer): it is shown as data, never acted on by a terminal, a log or a Markdown page.

A character is unsafe when Python does not count it as printable (control characters such as
ESC, BEL, CR and line breaks; Unicode line and paragraph separators; format characters such as
the bidirectional overrides and zero-width characters; lone surrogates; unassigned and private
code points; spaces other than the ASCII space) or when it is a blank filler that renders as
nothing. Each unsafe character becomes a visible escape as Python writes it (`\\x1b`, `\\n`,
`\\u202e`), so the text keeps one line, and a reviewer sees that something odd is there.
"""

from __future__ import annotations

import logging

_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
"""Hangul fillers: letters to Unicode, so printable to Python, but drawn as blank space."""


def clean(text: str) -> str:
    """`text` on one line, with every unsafe character escaped."""
    if text.isprintable() and _FILLERS.isdisjoint(text):
        return text
    return "".join(_escape(char) if _unsafe(char) else char for char in text)


def clean_lines(text: str) -> str:
    """Several lines of reconcile's own words (an error listing problems), each cleaned, with
    the line breaks between them kept. Outside text quoted inside must have been cleaned where
    it was quoted, or a line break in it would pass for one of ours."""
    return "\n".join(clean(line) for line in text.split("\n"))


def quoted(text: str) -> str:
    """`text` cleaned between single quotes, as the text output shows names."""
    return f"'{clean(text)}'"


def _unsafe(char: str) -> bool:
    return not char.isprintable() or char in _FILLERS


def _escape(char: str) -> str:
    # The escape Python source would use: \n, \x1b, \u202e, \U000e0001.
    return char.encode("unicode_escape").decode("ascii")


class CleanFormatter(logging.Formatter):
    """Log lines with the message cleaned: the debug trace quotes paths and URLs the API sent
    (a listing's `next` link). A traceback appended to a record is reconcile's own and is kept."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return clean(super().formatMessage(record))

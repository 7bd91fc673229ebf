"""A progress counter redrawn in place on one terminal line, for long reads and applies."""

from __future__ import annotations

import time
from typing import TextIO

from reconcile.render.sanitize import clean

_ERASE = "\r\x1b[K"


class ProgressLine:
    """`Reading runs: 120/201 requests`, redrawn at most every `every` seconds (the first and the
    last count are always drawn). Only for streams that are terminals; `clear` erases it.

    It is drawn while an apply writes, so it never raises: a terminal that goes away (a closed
    ssh session) turns it off rather than stopping the apply between a write and its check."""

    def __init__(self, stream: TextIO, label: str, unit: str, *, every: float = 0.1) -> None:
        self._stream = stream
        self._label = clean(label)
        self._unit = clean(unit)
        self._every = every
        self._drawn_at: float | None = None
        self._broken = False

    def update(self, done: int, total: int) -> None:
        """Show `done` of `total`."""
        now = time.monotonic()
        if self._drawn_at is not None and done < total and now - self._drawn_at < self._every:
            return
        self._drawn_at = now
        self._draw(f"{_ERASE}{self._label}: {done}/{total} {self._unit}")

    def clear(self) -> None:
        """Erase the line, so that other output starts at the left margin."""
        if self._drawn_at is not None:
            self._draw(_ERASE)
            self._drawn_at = None

    def _draw(self, text: str) -> None:
        if self._broken:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            self._broken = True

"""Standard output for `plan` and `apply`, which must not fail in the middle of an apply."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import TextIO


class Console:
    """Standard output that never raises. A console that cannot encode a character (cp1252,
    Windows redirected output) gets the character's escape instead of an error. A write that
    fails (a closed pipe, as in `apply | head`; a full disk) is remembered in `lost` rather than
    raised, so that it cannot interrupt an apply between a write request and its check; the
    output after it is dropped, and the command says so on standard error."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lost: str | None = None
        """Why standard output stopped taking text, once it has."""
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")

    def show(self, render: Callable[[TextIO], None]) -> None:
        """Render whole (so that a renderer's own error is not taken for lost output), then
        write."""
        text = io.StringIO()
        render(text)
        self.write(text.getvalue())

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def write(self, text: str) -> None:
        if self.lost is not None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: the stream was closed
            self.lost = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            _discard_the_rest(self.stream)


def _discard_the_rest(stream: TextIO) -> None:
    """Point the stream's file at /dev/null: what is still buffered in it, flushed when Python
    exits, would otherwise fail again and print a traceback-like warning."""
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)

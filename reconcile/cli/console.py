"""Standard output for every command: it never raises, so a closed pipe cannot stop an apply in
the middle nor turn into a traceback, and each command decides what a lost output means."""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Callable
from typing import TextIO

import click


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

    def tell_on_stderr(self, outcome: str, summary: Callable[[TextIO], object]) -> None:
        """For a command whose result is not its output (writes made, a file written, a
        verdict): once standard output has failed, say on stderr that the command went on
        (`outcome`), then render its summary there, so that what it did still reaches someone."""
        click.echo(f"Warning: standard output failed part-way ({self.lost}); {outcome}", err=True)
        summary(sys.stderr)


class ClosedOutput(io.TextIOBase):
    """Standard output of a process started without one (`reconcile plan >&-`; Python then sets
    sys.stdout to None). It behaves as a pipe whose reader has gone, so that each command treats
    both alike: writes fail (click's own output, --help, ends as on a broken pipe) until a
    Console has noticed, and then go nowhere, as a broken pipe's do once pointed at /dev/null."""

    def __init__(self) -> None:
        super().__init__()
        self.discarding = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self.discarding:
            raise BrokenPipeError(errno.EPIPE, "closed")
        return len(text)


def _discard_the_rest(stream: TextIO) -> None:
    """Point the stream's file at /dev/null: what is still buffered in it, flushed when Python
    exits, would otherwise fail again and print a traceback-like warning."""
    if isinstance(stream, ClosedOutput):
        stream.discarding = True
        return
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)

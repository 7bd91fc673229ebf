"""The one writer of files. Every file reconcile writes (a state file from `import`, a saved plan
from `plan --out`, a report from `apply --report`) is named by a Destination, checked when it is
made, before the command's first request, and written whole: into a temporary file beside it,
then renamed over it, so a reader never sees half a file and an interruption leaves the old one.

A symbolic link is refused rather than followed or replaced: following it would write a file the
command line does not name, and replacing it would silently turn a link someone made on purpose
into a regular file. `-` names standard output.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reconcile.errors import ConfigError

STANDARD_OUTPUT = "-"
NEW_FILE_MODE = 0o644

Render = Callable[[TextIO], None]


@dataclass(frozen=True)
class Destination:
    """A checked place to write: a file, or the stream `-` stands for."""

    path: Path | None
    """None for standard output."""
    stream: TextIO | None = None

    def write(self, render: Render) -> None:
        """Render into the destination, replacing the file atomically."""
        if self.path is None:
            assert self.stream is not None
            render(self.stream)
            self.stream.flush()
            return
        _replace(self.path, render)

    def write_text(self, text: str) -> None:
        def render(stream: TextIO) -> None:
            stream.write(text)

        self.write(render)

    def __str__(self) -> str:
        return "standard output" if self.path is None else str(self.path)


def destination(name: Path | str, *, stdout: TextIO | None = None) -> Destination:
    """A Destination for `name`, checked now: ConfigError if it is a symbolic link, a directory,
    a read-only file, or in a directory where no file can be created. `-` is `stdout` when one is
    given (the commands whose output may go there say so)."""
    if str(name) == STANDARD_OUTPUT and stdout is not None:
        return Destination(None, stdout)
    path = Path(name)
    if path.is_symlink():
        raise ConfigError(
            f"Cannot write {path}: it is a symbolic link, and reconcile writes only the file it "
            "is given, never through a link. Name the file the link points to, or another file."
        )
    if path.is_dir():
        raise ConfigError(f"Cannot write {path}: it is a directory; name a file.")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"Cannot write {path}: the file is read-only.")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"Cannot write {path}: there is no directory {folder}.")
    try:
        probe, probe_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        os.close(probe)
        os.unlink(probe_name)
    except OSError as exc:
        raise ConfigError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    return Destination(path)


def _replace(path: Path, render: Render) -> None:
    temporary: str | None = None
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else NEW_FILE_MODE
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as stream:
            render(stream)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        message = f"Cannot write {path}: {exc.strerror or exc}; it was not changed."
        raise ConfigError(message) from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def append(path: Path, render: Render) -> None:
    """Append to a file another program owns and reads as it grows (GitHub Actions' job summary,
    GITHUB_STEP_SUMMARY): appending, not replacing, is that file's contract."""
    try:
        with path.open("a", encoding="utf-8") as stream:
            render(stream)
    except OSError as exc:
        raise ConfigError(str(exc)) from None

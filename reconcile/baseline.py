"""Read the baseline a plan is compared with: another state file (`--baseline`), or the same
state file at a git revision (`--baseline-ref`, typically the default branch)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from reconcile.config import child_environment
from reconcile.errors import ConfigError, Problem, StateFileError
from reconcile.state import StateFile, load_state

GIT_TIMEOUT = 60.0


def read_baseline(
    state_path: Path, *, path: Path | None, ref: str | None, environ: Mapping[str, str]
) -> StateFile | None:
    """The baseline from a file (`--baseline`) or from git (`--baseline-ref`, run in `environ`
    without the token), or None."""
    if path is not None and ref is not None:
        raise ConfigError("Give --baseline or --baseline-ref, not both.")
    if path is not None:
        return load_state(path)
    if ref is not None:
        return baseline_from_git(state_path, ref, environ)
    return None


def baseline_from_git(state_path: Path, ref: str, environ: Mapping[str, str]) -> StateFile:
    """The state file as it is at `ref`: `git show REF:<the same path>`, relative to the repo."""
    shown = f"{ref}:{state_path}"
    if not ref or ref.startswith("-"):
        # git would read a leading "-" as an option of `git show`.
        raise ConfigError(f"--baseline-ref {ref!r} is not a git revision.")
    directory = state_path.parent if str(state_path.parent) else Path(".")
    command = ["git", "-C", str(directory), "show", f"{ref}:./{state_path.name}"]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            env=child_environment(environ),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StateFileError([Problem(shown, None, None, f"cannot run git: {exc}")]) from None
    if done.returncode != 0:
        said = " ".join(done.stderr.decode("utf-8", "replace").split()) or "no message"
        message = (
            f"git cannot read the baseline ({said}); check that the ref exists locally (in CI, "
            "fetch the default branch first) and that the state file is committed there"
        )
        raise StateFileError([Problem(shown, None, None, message)])
    return load_state(shown, raw=done.stdout)

"""The commit that carries refreshed state files, and its push to the branch reconcile owns.

The commit is made beside the checkout, not on it: a temporary index holds HEAD's tree with the
refreshed files, so the checked-out branch and the real index stay as they were. The branch is
force-pushed because reconcile owns it: each run proposes one commit on top of the base.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

TIMEOUT = 120.0
TOKEN_VARIABLE = "RECONCILE_GIT_TOKEN"
# Asked for a password, git runs this helper; the token comes from the helper's environment, so
# it is never in a command line, a remote's URL or the log.
_HELPER = (
    '!f() { test "$1" = get || return 0; echo username=reconcile; '
    f'echo "password=${TOKEN_VARIABLE}"; }}; f'
)


class GitError(Exception):
    """A git command failed; the message names the command and what git said."""


class Checkout:
    """A working tree whose HEAD is the base of the proposal, and the remote to push to."""

    def __init__(
        self,
        path: Path,
        remote: str,
        *,
        identity: tuple[str, str] = ("reconcile", "reconcile@localhost"),
        token: str | None = None,
    ) -> None:
        self.path = path
        self.remote = remote
        self.identity = identity
        """Who commits when neither the environment nor git's configuration says."""
        self.token = token

    def _git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        shown = "git " + " ".join(args)
        environment = {**os.environ, **(env or {})}
        environment.pop(TOKEN_VARIABLE, None)
        if self.token:
            environment[TOKEN_VARIABLE] = self.token
            args = ("-c", "credential.helper=", "-c", f"credential.helper={_HELPER}", *args)
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=self.path,
                env={**environment, "GIT_TERMINAL_PROMPT": "0"},
                capture_output=True,
                text=True,
                check=False,
                timeout=TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise GitError(f"{shown}: {exc}") from None
        if done.returncode != 0:
            said = " ".join(done.stderr.split())[:500] or f"exit {done.returncode}"
            raise GitError(f"{shown} failed: {said}")
        return done.stdout.strip()

    def head(self) -> str:
        return self._git("rev-parse", "--verify", "HEAD^{commit}")

    def commit(self, files: Sequence[str], message: str) -> str:
        """A commit whose parent is HEAD and whose tree is HEAD's with `files` as they are in
        the working tree now; HEAD, the branch and the index are left alone."""
        with tempfile.TemporaryDirectory(prefix="reconcile-index-") as folder:
            index = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
            self._git("read-tree", "HEAD", env=index)
            self._git("add", "--", *files, env=index)
            tree = self._git("write-tree", env=index)
        return self._git("commit-tree", tree, "-p", "HEAD", "-m", message, env=self._author())

    def _author(self) -> dict[str, str]:
        if "GIT_AUTHOR_EMAIL" in os.environ:
            return {}
        try:
            self._git("config", "user.email")
        except GitError:  # unset: git would refuse to commit
            name, email = self.identity
            return {
                "GIT_AUTHOR_NAME": name,
                "GIT_AUTHOR_EMAIL": email,
                "GIT_COMMITTER_NAME": name,
                "GIT_COMMITTER_EMAIL": email,
            }
        return {}

    def remote_branch(self, branch: str) -> str | None:
        """The commit the remote's branch points at, fetched here; None when there is none."""
        listed = self._git("ls-remote", "--heads", self.remote, f"refs/heads/{branch}")
        if not listed:
            return None
        sha = listed.split()[0]
        # CI checkouts are often shallow: the commit and its parent are all the comparison needs
        shallow = self._git("rev-parse", "--is-shallow-repository") == "true"
        self._git("fetch", "--quiet", "--no-tags", *(["--depth=2"] * shallow), self.remote, sha)
        return sha

    def same_proposal(self, one: str, other: str) -> bool:
        """Whether two commits propose the same thing: the same tree on the same parent."""
        try:
            trees = self._git("rev-parse", f"{one}^{{tree}}", f"{other}^{{tree}}").split()
            parents = self._git("rev-parse", f"{one}^", f"{other}^").split()
        except GitError:  # a commit without a parent, e.g. a branch someone else started
            return False
        return len(set(trees)) == 1 and len(set(parents)) == 1

    def push(self, sha: str, branch: str) -> None:
        self._git("push", "--quiet", "--force", self.remote, f"{sha}:refs/heads/{branch}")

"""The commit that carries refreshed files is made beside the checkout, and a push or read that
needs a password gets the token from a credential helper: never in a URL, an argument or a log."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from reconcile.ci.git import Checkout, GitError
from tests.helpers import within

SECRET = "glpat-not-a-real-token-0123"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository on a machine where git has no identity configured, as on a CI runner."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--initial-branch", "main", str(work))
    (work / "state.toml").write_text('[runs]\nabc = "active"\n')
    (work / "other.toml").write_text("x = 1\n")
    git(work, "add", ".")
    git(work, "-c", "user.name=Ops", "-c", "user.email=ops@example.com", "commit", "-qm", "one")
    return work


def test_the_commit_leaves_head_the_branch_and_the_index_alone(work: Path) -> None:
    head = git(work, "rev-parse", "HEAD")
    (work / "state.toml").write_text('[runs]\nabc = "archived"\n')
    (work / "other.toml").write_text("x = 2\n")  # changed, but not one of the files proposed
    checkout = Checkout(work, "origin", identity=("Bot", "bot@example.com"))
    sha = checkout.commit(["state.toml"], "Accept drift")
    assert git(work, "rev-parse", "HEAD") == head
    assert git(work, "rev-parse", f"{sha}^") == head
    assert git(work, "show", f"{sha}:state.toml") == '[runs]\nabc = "archived"'
    assert git(work, "show", f"{sha}:other.toml") == "x = 1", "only the files named"
    assert git(work, "diff", "--cached", "--name-only") == "", "the real index is untouched"
    assert git(work, "log", "-1", "--format=%an <%ae>", sha) == "Bot <bot@example.com>"
    again = checkout.commit(["state.toml"], "Accept drift")
    assert checkout.same_proposal(sha, again)
    assert not checkout.same_proposal(sha, head), "a root commit has no parent to compare"


class AskForPassword(BaseHTTPRequestHandler):
    """A git host that wants a password, and records what it was sent."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        authorization = self.headers.get("Authorization")
        if authorization is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
        else:
            self.seen.append(authorization)
            self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def host() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AskForPassword)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/acme/runs.git"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_token_reaches_git_only_through_the_credential_helper(work: Path, host: str) -> None:
    AskForPassword.seen.clear()
    checkout = Checkout(work, host, token=SECRET)
    with within(60), pytest.raises(GitError) as refused:
        checkout.remote_branch("reconcile/accept-drift")
    (sent,) = set(AskForPassword.seen)
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == f"reconcile:{SECRET}"
    assert str(refused.value).startswith("git ls-remote --heads http://127.0.0.1:")
    assert SECRET not in str(refused.value)
    assert SECRET not in git(work, "config", "--list")


def test_without_a_token_git_never_waits_for_a_password(work: Path, host: str) -> None:
    with within(60), pytest.raises(GitError, match="ls-remote"):
        Checkout(work, host).remote_branch("reconcile/accept-drift")


def shallow_run(origin: Path, folder: Path) -> tuple[Checkout, str]:
    """One scheduled run: a fresh clone of main's newest commit only (as actions/checkout and
    GitLab clone by default) whose refresh archived the run; returns its proposal."""
    git(origin.parent, "clone", "--quiet", "--depth=1", f"file://{origin}", str(folder))
    (folder / "state.toml").write_text('[runs]\nabc = "archived"\n')
    checkout = Checkout(folder, "origin", identity=("Bot", "bot@example.com"))
    return checkout, checkout.commit(["state.toml"], "Accept drift")


def test_shallow_checkouts_compare_with_the_pushed_branch(work: Path, tmp_path: Path) -> None:
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(work), str(origin))
    for n in range(3):
        (work / "other.toml").write_text(f"x = {n + 10}\n")
        git(work, "-c", "user.name=Ops", "-c", "user.email=o@example.com", "commit", "-qam", "n")
    git(work, "push", "--quiet", str(origin), "HEAD:main")
    first, proposed = shallow_run(origin, tmp_path / "monday")
    assert first.remote_branch("reconcile/accept-drift") is None
    first.push(proposed, "reconcile/accept-drift")

    second, again = shallow_run(origin, tmp_path / "tuesday")
    pushed = second.remote_branch("reconcile/accept-drift")
    assert pushed == proposed
    assert second.same_proposal(pushed, again), "the same file on the same base: no push"

    (work / "other.toml").write_text("x = 99\n")
    git(work, "-c", "user.name=Ops", "-c", "user.email=o@example.com", "commit", "-qam", "later")
    git(work, "push", "--quiet", str(origin), "HEAD:main")
    third, moved = shallow_run(origin, tmp_path / "wednesday")
    pushed = third.remote_branch("reconcile/accept-drift")
    assert pushed is not None
    assert not third.same_proposal(pushed, moved), "main moved on: the proposal is rebased"

"""The suite-wide guards (tests/conftest.py installs them).

Whatever file a test is in, it is watched for two things:

1. Forbidden requests. reconcile may only read (GET, HEAD), archive (DELETE .../runs/{id}) and
   activate (PUT .../runs/{id}/activate); never the permanent delete (DELETE
   .../runs/{id}/delete), never PUT .../runs/{id}, never anything else. Checked on every request
   any httpx client sends in this process (conftest wraps httpx's Client.send and
   AsyncClient.send, which every request passes through, whatever reconcile logs), and on the
   request log of every `sandbox` fixture, which also sees the requests of subprocesses. A test
   that sends forbidden requests on purpose (to see the sandbox refuse them) says so with
   `@pytest.mark.sends_forbidden_requests`.
2. The token. No CLI output (stdout and stderr), exception or traceback, log record, or file
   the CLI wrote may contain an access token. Every `CliRunner.invoke` of the session is
   observed (the token is whatever TALLYFY_ACCESS_TOKEN or --token-file held for that run,
   plus every token seen before); tests that run a subprocess pass its output to
   `check_no_secret`. `reconcile sandbox` is exempt: printing its own token is its job.

A violation fails the test it happens in. The terminal summary prints what was checked.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

from tests.demo import TOKEN

_RUN_PATH = re.compile(r"/organizations/[^/]+/runs/[0-9a-f]{32}")

_MIN_SECRET = 8  # shorter strings would match ordinary output by chance


def allowed_request(method: str, path: str) -> bool:
    """Whether reconcile may send this request: reads, archive and activate, nothing else. `path`
    may carry the API's base path (/api/organizations/...)."""
    if method in ("GET", "HEAD"):
        return True
    start = path.find("/organizations/")
    path = path[start:] if start >= 0 else path
    if method == "DELETE":
        return _RUN_PATH.fullmatch(path) is not None
    if method == "PUT" and path.endswith("/activate"):
        return _RUN_PATH.fullmatch(path.removesuffix("/activate")) is not None
    return False


class Guard(logging.Handler):
    """Collects what the session checked and every violation, per test. As a logging handler it
    reads every log record of reconcile for tokens."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = {TOKEN}
        self.violations: list[str] = []
        self.requests_checked = 0
        self.outputs_checked = 0
        self.files_checked = 0
        self.records_checked = 0
        self.forbidden_allowed = False
        """Set for the one test marked sends_forbidden_requests."""

    def add_secret(self, value: str | None) -> None:
        if value and len(value.strip()) >= _MIN_SECRET:
            self.secrets.add(value.strip())

    def leaks(self, text: str) -> list[str]:
        return sorted(secret for secret in self.secrets if secret in text)

    def emit(self, record: logging.LogRecord) -> None:
        self.records_checked += 1
        leaked = self.leaks(record.getMessage())
        if leaked:
            self.violations.append(f"log record {record.getMessage()!r} holds a token")

    def sent(self, method: str, path: str) -> None:
        """An HTTP request left an httpx client of this process."""
        self.requests_checked += 1
        if not self.forbidden_allowed and not allowed_request(method, path):
            self.violations.append(f"a forbidden request was sent: {method} {path}")


GUARD = Guard()


FIGURES: Counter[str] = Counter()
"""Figures some tests add up (faults injected, bad inputs tried...), printed after the run."""


def check_no_secret(text: str, where: str) -> None:
    """Fail if `text` (an output of reconcile) contains any token seen in this session."""
    GUARD.outputs_checked += 1
    leaked = GUARD.leaks(text)
    assert not leaked, f"{where} contains an access token"

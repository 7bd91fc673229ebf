"""The exceptions reconcile raises. The CLI turns each into a one-paragraph message and exit code.

ReconcileError
├── StateFileError        the state file cannot be used; lists every problem with file:line and key
├── ConfigError           a setting is missing or contradictory (org, token, API URL, flags)
├── ApiError              the Tallyfy API refused a request or answered something unusable
│   ├── AuthError         401 or 403: the token is refused or lacks a permission
│   ├── NotFoundError     404 for a path or resource
│   ├── RateLimitError    429 answers outlasted the retry deadline
│   └── BadResponseError  an answer that is not what the API documents (HTML, bad JSON, wrong run,
│                         a redirect or other unexpected status, too large, cut off)
├── WriteCancelled        a write was not sent because apply was interrupted (never shown: apply
│                         reports the change as not started)
├── UnknownRunsError      declared runs that the organization does not have
├── SafetyError           a safety gate refused before any write (exit code 3)
└── PlanFileError         a saved plan (`plan --out`) is unreadable or malformed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconcile.render.sanitize import clean


class ReconcileError(Exception):
    """Base of every error reconcile raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a state file, located as precisely as the file allows."""

    path: str
    line: int | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class StateFileError(ReconcileError):
    """The state file is unreadable or invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{count} {noun} in the state file; nothing was sent to Tallyfy:\n{lines}")


class ConfigError(ReconcileError):
    """A required setting is missing or settings contradict each other."""


class ApiError(ReconcileError):
    """The Tallyfy API answered a request with an error or with something unusable."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None = None,
        run_id: str | None = None,
        api_message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.run_id = run_id
        self.api_message = api_message
        self.request_id = request_id
        parts = [message]
        request = f"{method} {path}"
        if status is not None:
            request += f", HTTP {status}"
        if request_id is not None:
            request += f", X-Request-Id {request_id}"
        parts.append(f"(request: {request})")
        if api_message:
            # Cleaned here, where it is quoted: a line break in it must not pass for a line of
            # the message when the CLI prints it.
            parts.append(f'The API said: "{clean(api_message)}".')
        super().__init__(" ".join(parts))


class AuthError(ApiError):
    """401 or 403."""


class NotFoundError(ApiError):
    """404."""


class RateLimitError(ApiError):
    """The API kept answering 429 past the retry deadline."""


class BadResponseError(ApiError):
    """The response does not match what the API documents."""


class WriteCancelled(ReconcileError):
    """A write was waiting for its turn (a 429 pause, the rate budget) when apply was stopped,
    so it was not sent; the API did nothing for it."""

    def __init__(self) -> None:
        super().__init__("The write was not sent: apply was interrupted while it waited.")


class UnknownRunsError(ReconcileError):
    """Declared runs that the organization does not have, even among its archived runs."""

    def __init__(self, run_ids: Sequence[str], org_id: str, locations: Sequence[str]) -> None:
        self.run_ids = tuple(run_ids)
        listed = "\n".join(f"  {loc}: {rid}" for rid, loc in zip(run_ids, locations, strict=True))
        super().__init__(
            f"{len(run_ids)} declared run(s) do not exist in organization {org_id}, neither active "
            f"nor archived (checked with GET and both listings, each read whole). Remove them from "
            f"the state file (`reconcile refresh --prune` does) or fix the ID; nothing was "
            f"written:\n{listed}"
        )


class SafetyError(ReconcileError):
    """A safety gate refused to proceed. Nothing was written."""


class PlanFileError(ReconcileError):
    """A saved plan file cannot be read or is not a plan reconcile wrote."""

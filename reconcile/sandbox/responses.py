"""Framework-neutral responses and the Tallyfy-shaped error bodies the sandbox answers with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True)
class SandboxResponse:
    """What the sandbox answers. The adapters (MockTransport, HTTP server) turn it into the wire.

    `dispatch` never sleeps or hangs up itself: `delay` is how long the adapter waits before
    answering, and `drop` tells it to close the connection without any answer.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    drop: bool = False

    def json(self) -> Any:
        """The body decoded as JSON (a convenience for tests and callers of `dispatch`)."""
        return json.loads(self.body)


def encode(payload: Any) -> bytes:
    """Compact JSON, as the API sends it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def json_response(status: int, payload: Any) -> SandboxResponse:
    """A JSON response with `payload` as its body."""
    return raw_json(status, encode(payload))


def raw_json(status: int, body: bytes) -> SandboxResponse:
    """A JSON response whose body is already encoded (cached run representations)."""
    return SandboxResponse(status, {"Content-Type": JSON_TYPE}, body)


def error(status: int, message: str, code: str) -> SandboxResponse:
    """The documented error envelope: {"error": true, "message": ..., "code": ...}."""
    return json_response(status, {"error": True, "message": message, "code": code})


def not_found() -> SandboxResponse:
    """404 for a missing (or hidden) resource."""
    return error(404, "Resource not found", "RESOURCE_NOT_FOUND")


def endpoint_not_found() -> SandboxResponse:
    """404 for a path the API does not have."""
    return error(404, "API endpoint not found", "ENDPOINT_NOT_FOUND")


def unauthenticated() -> SandboxResponse:
    """401 for a missing, malformed or wrong bearer token."""
    return error(401, "Unauthenticated.", "UNAUTHENTICATED")


def forbidden(message: str) -> SandboxResponse:
    """403 with the reason."""
    return error(403, message, "FORBIDDEN")


def invalid(errors: dict[str, list[str]], message: str | None = None) -> SandboxResponse:
    """422 in the documented validation shape; `message` is added when there is one reason."""
    payload: dict[str, Any] = {"error": True}
    if message is not None:
        payload["message"] = message
    payload["errors"] = errors
    return json_response(422, payload)


def rate_limited(window: str | None, retry_after: str) -> SandboxResponse:
    """429 with the documented body and headers; `window` names the limit reached."""
    what = "rate limit" if window is None else f"limit of {window}"
    body = {
        "message": f"You've reached the {what}. Please try again later.",
        "code": "RATE_LIMIT_EXCEEDED",
    }
    response = json_response(429, body)
    response.headers.update({"Retry-After": retry_after, "X-RateLimit-Remaining": "0"})
    return response


def reason(status: int) -> str:
    """The standard reason phrase of a status ("Bad Gateway"), or "Error" for odd codes."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def for_status(status: int) -> SandboxResponse:
    """A plausible Tallyfy-shaped error body for an arbitrary status (used by faults)."""
    if status == 401:
        return unauthenticated()
    if status == 403:
        return forbidden("This action is unauthorized.")
    if status == 404:
        return not_found()
    if status == 422:
        return invalid({"run": ["The given data was invalid."]}, "The given data was invalid.")
    if status == 429:
        return rate_limited(None, "1")
    phrase = reason(status)
    code = phrase.upper().replace(" ", "_").replace("-", "_")
    return error(status, phrase, code)

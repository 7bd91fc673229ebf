"""Injected faults: answers a real server or the network in front of it can give by accident.

Two families:
- `status`, `html`, `drop` and `timeout` replace the answer. By default the request is not
  carried out (the failure happened before the API); with `after_effect=True` it is carried out
  first, which is the ambiguous write a client cannot tell apart from a failed one.
- `truncated`, `missing_archived_at`, `wrong_id`, `wrong_count` (a listing page whose
  `meta.pagination.count` is one more than the runs it holds) and `slow` distort or delay a real
  answer, so the request is always carried out.

A 429 storm is `Fault("status", status=429, times=N)`: N requests in a row are refused, each with
`Retry-After: retry_after`. A timeout is `Fault("timeout", delay=D)` with D longer than the
client's timeout: the server holds the request for D seconds and then hangs up without an answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from reconcile.sandbox.responses import HTML_TYPE, SandboxResponse, encode, for_status, reason

KINDS = frozenset(
    {
        "status",
        "html",
        "truncated",
        "missing_archived_at",
        "wrong_id",
        "wrong_count",
        "drop",
        "slow",
        "timeout",
    }
)
_REPLACING = frozenset({"status", "html", "drop", "timeout"})
_HTML = (
    "<!DOCTYPE html>\n<html><head><title>{status} {phrase}</title></head>\n"
    "<body><h1>{phrase}</h1><p>Served by a proxy, not by the API.</p></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    """One injected fault, affecting the next `times` requests that match it."""

    kind: str
    method: str | None = None
    """Match only this HTTP method (any case); None matches every method."""
    path_contains: str | None = None
    """Match only paths containing this; paths are seen without the /api prefix and query."""
    times: int = 1
    status: int = 500
    """The status of `status` and `html` faults."""
    retry_after: float = 1.0
    """Retry-After of a `status` fault with status 429."""
    delay: float = 0.0
    """Seconds a `slow` fault waits before answering, or a `timeout` fault before hanging up."""
    after_effect: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {sorted(KINDS)}")
        if self.times < 1:
            raise ValueError("a fault must affect at least one request (times >= 1)")
        if self.kind == "timeout" and self.delay <= 0:
            raise ValueError("a timeout fault needs a delay longer than the client's timeout")

    @property
    def skips_operation(self) -> bool:
        """True when the request must not be carried out at all."""
        return self.kind in _REPLACING and not self.after_effect

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with this method and normalized path is affected."""
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_contains is None or self.path_contains in path


class FaultQueue:
    """Faults in injection order; the first match is consumed. Not thread-safe itself."""

    def __init__(self) -> None:
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Queue a fault behind those already injected."""
        self._pending.append(fault)

    def pending(self) -> list[Fault]:
        """Faults not used up yet, with `times` showing how many requests each still affects."""
        return list(self._pending)

    def clear(self) -> None:
        """Drop every pending fault."""
        self._pending.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching the request, if any."""
        for index, fault in enumerate(self._pending):
            if fault.matches(method, path):
                if fault.times == 1:
                    del self._pending[index]
                else:
                    self._pending[index] = replace(fault, times=fault.times - 1)
                return fault
        return None


def replacement(fault: Fault) -> SandboxResponse:
    """The answer of a fault that replaces the real one (`status`, `html`, `drop`, `timeout`)."""
    if fault.kind in ("drop", "timeout"):
        return SandboxResponse(0, delay=fault.delay, drop=True)
    if fault.kind == "html":
        page = _HTML.format(status=fault.status, phrase=reason(fault.status)).encode()
        return SandboxResponse(fault.status, {"Content-Type": HTML_TYPE}, page)
    response = for_status(fault.status)
    if fault.status == 429:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    return response


def distort(fault: Fault, response: SandboxResponse) -> SandboxResponse:
    """Apply `fault` to the real answer `response`."""
    if fault.kind in _REPLACING:
        return replacement(fault)
    if fault.kind == "slow":
        return replace(response, delay=response.delay + fault.delay)
    if fault.kind == "truncated":
        return replace(response, body=response.body[: len(response.body) // 2])
    try:
        payload = json.loads(response.body)
    except ValueError:
        return response
    if not isinstance(payload, dict):
        return response
    if fault.kind == "wrong_count":
        pagination = payload.get("meta", {}).get("pagination")
        if isinstance(pagination, dict) and isinstance(pagination.get("count"), int):
            pagination["count"] += 1
        return replace(response, body=encode(payload))
    data = payload.get("data")
    runs = data if isinstance(data, list) else [data]
    for run in runs:
        if isinstance(run, dict) and "id" in run:
            if fault.kind == "missing_archived_at":
                run.pop("archived_at", None)
            else:
                run["id"] = _other_id(str(run["id"]))
    return replace(response, body=encode(payload))


def _other_id(run_id: str) -> str:
    # Swapping the halves keeps it a valid-looking id that is not the one asked for.
    other = run_id[16:] + run_id[:16]
    return other if other != run_id else "f" * 32 if run_id != "f" * 32 else "0" * 32

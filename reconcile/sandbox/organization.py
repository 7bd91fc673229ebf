"""GET /organizations/{org}: the organization and its auto-archive settings, and the auto-archive
clock that archives completed runs once their period has passed, with no person behind it.

The settings have the shape Tallyfy's SDK reads (`Organization.auto_archive`, a bool, and
`auto_archive_processes_after` `{unit: "days" | "weeks", value}`); the docs allow 1 to 90 days or
weeks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from reconcile.sandbox.model import zulu
from reconcile.sandbox.responses import SandboxResponse, json_response

UNITS = ("days", "weeks")
PERIOD_MAX = 90


@dataclass(frozen=True)
class AutoArchive:
    """The organization's "auto-archive completed processes" setting. Off by default; the period
    defaults to the SDK's model default (52 weeks)."""

    enabled: bool = False
    unit: str = "weeks"
    value: int = 52

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f'auto-archive unit must be "days" or "weeks", not {self.unit!r}')
        if isinstance(self.value, bool) or not 1 <= self.value <= PERIOD_MAX:
            raise ValueError(f"auto-archive period must be 1 to {PERIOD_MAX}, not {self.value!r}")

    @property
    def period(self) -> timedelta:
        """How long after completion a run is archived."""
        return timedelta(days=self.value * (7 if self.unit == "weeks" else 1))

    def due(self, completed_at: str) -> datetime:
        """When a run completed at `completed_at` (a Tallyfy timestamp) is archived."""
        return datetime.fromisoformat(completed_at) + self.period


AUTO_ARCHIVE_OFF = AutoArchive()


def organization(org_id: str, name: str, settings: AutoArchive) -> SandboxResponse:
    """The answer to GET /organizations/{org}: `{"data": {...}}` with the auto-archive fields."""
    data: dict[str, Any] = {
        "id": org_id,
        "name": name,
        "auto_archive": settings.enabled,
        "auto_archive_processes_after": {"unit": settings.unit, "value": settings.value},
        "timezone": "UTC",
    }
    return json_response(200, {"data": data})


def archived_at(
    settings: AutoArchive, completed_at: str | None, activated_at: str | None, now: datetime
) -> str | None:
    """When the auto-archive clock archived a live run completed at `completed_at`, if it has by
    `now`; a run activated after its due time is archived again at its activation.

    The clock is read lazily: a run found past its due time is archived as of that time, as a job
    running on schedule would have done, so the timestamps do not depend on when it was looked at.
    """
    if not settings.enabled or completed_at is None:
        return None
    due = settings.due(completed_at)
    if activated_at is not None:
        due = max(due, datetime.fromisoformat(activated_at))
    return zulu(due) if due <= now else None


def parse_seed_auto_archive(org: dict[str, Any], problems: list[str]) -> AutoArchive:
    """The `[org]` keys `auto_archive` (bool) and `auto_archive_processes_after = {unit, value}`;
    appends to `problems` when they are unusable."""
    enabled = org.get("auto_archive", False)
    period = org.get("auto_archive_processes_after", {})
    if not isinstance(enabled, bool):
        problems.append("[org] auto_archive must be true or false")
        enabled = False
    if not isinstance(period, dict) or not set(period) <= {"unit", "value"}:
        problems.append('[org] auto_archive_processes_after must be {unit = "days", value = 7}')
        return AUTO_ARCHIVE_OFF
    try:
        return AutoArchive(
            enabled, period.get("unit", AUTO_ARCHIVE_OFF.unit), period.get("value", 52)
        )
    except (TypeError, ValueError) as exc:
        problems.append(f"[org] auto_archive_processes_after: {exc}")
        return AUTO_ARCHIVE_OFF

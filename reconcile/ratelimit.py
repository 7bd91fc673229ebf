"""Rate-limit windows: "at most LIMIT requests in any PERIOD", as settings and flags give them.

A leaf module, so that the state file's reader, the settings and the pacer can all use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_WINDOW = re.compile(
    r"(?P<limit>\d+)(?:/(?P<count>\d+(?:\.\d+)?)?(?P<unit>s|sec|m|min|h|hour))?(?::(?P<method>[A-Za-z]+))?"
)


@dataclass(frozen=True)
class Window:
    """At most `limit` requests in any `seconds`; `method` (upper case) limits it to one method."""

    limit: int
    seconds: float
    method: str | None = None

    def __str__(self) -> str:
        seconds = f"{self.seconds:g}s"
        if self.seconds % 3600 == 0:
            seconds = f"{self.seconds / 3600:g}h"
        elif self.seconds % 60 == 0:
            seconds = f"{self.seconds / 60:g}m"
        return f"{self.limit}/{seconds}" + (f":{self.method}" if self.method else "")

    def counts(self, method: str) -> bool:
        return self.method is None or self.method == method


def parse_window(text: str) -> Window:
    """A window from `LIMIT[/PERIOD][:METHOD]`: `600` (a minute), `140/10s`, `12/5s:GET`, `1000/1h`.
    ValueError says what is wrong."""
    found = _WINDOW.fullmatch(text.strip())
    if found is None:
        raise ValueError(
            f"{text!r} is not a rate limit; write LIMIT/PERIOD[:METHOD], such as 600/1m, 140/10s "
            "or 12/5s:GET (a bare number is per minute)"
        )
    limit = int(found["limit"])
    unit = found["unit"] or "m"
    seconds = float(found["count"] or 1) * _UNITS[unit]
    if limit < 1 or seconds <= 0:
        raise ValueError(f"{text!r} must allow at least 1 request in a period longer than 0")
    method = found["method"].upper() if found["method"] else None
    return Window(limit, seconds, method)

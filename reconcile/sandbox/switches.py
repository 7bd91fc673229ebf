"""Every `Behaviour` switch by the names a user reaches it with: a flag of `reconcile sandbox` and a
key of the seed file's `[sandbox]` table. The command line and the seed reader both go through
this one table, so a switch cannot exist in one and not the other.

Sources are sections of docs/tallyfy-api.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconcile.sandbox.limits import RateWindow
from reconcile.sandbox.model import (
    ACTIVITY_FEEDS,
    ARCHIVED_LISTINGS,
    LINK_STYLES,
    NOOP_ANSWERS,
    Behaviour,
)

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class Switch:
    """One behaviour switch: its Behaviour field, flag, seed key, values and source."""

    name: str
    """The Behaviour field."""
    flag: str
    key: str
    """The key in the seed file's [sandbox] table."""
    values: str
    source: str
    help: str
    convert: Convert
    """From a flag's text or a TOML value to the field's value; ValueError if unusable."""
    choices: tuple[str, ...] = ()
    multiple: bool = False
    metavar: str = "N"


def _choice(values: tuple[str, ...], as_int: bool = False) -> Convert:
    def convert(value: Any) -> Any:
        if isinstance(value, bool) or str(value) not in values:
            raise ValueError(f"must be one of {', '.join(values)}, not {value!r}")
        return int(value) if as_int else str(value)

    return convert


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise ValueError(f"must be true or false, not {value!r}")


def _whole(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"must be a whole number, not {value!r}")


def _millis(value: Any) -> float:
    try:
        seconds = float(value) / 1000
    except (TypeError, ValueError):
        seconds = -1
    if isinstance(value, bool) or not seconds >= 0:
        raise ValueError(f"must be a number of milliseconds, not {value!r}")
    return seconds


def _windows(value: Any) -> tuple[str, ...]:
    specs = (value,) if isinstance(value, str) else value
    if not isinstance(specs, list | tuple) or not all(isinstance(s, str) for s in specs):
        raise ValueError(f"must be a list of LIMIT/SPAN[:SCOPE] strings, not {value!r}")
    for spec in specs:
        RateWindow.parse(spec)
    return tuple(specs)


def _total_pages(value: Any) -> str | int:
    if value in ("served", "absent"):
        return str(value)
    try:
        size = _whole(value)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f'must be "served", "absent" or a page size, not {value!r}')
    return size


YES_NO = ("true", "false")
SWITCHES: tuple[Switch, ...] = (
    Switch(
        name="archived_get",
        flag="--archived-get",
        key="archived_get",
        values="`200`, `404`",
        source="§2 (not stated; 200 inferred)",
        help="How GET answers for an archived run.",
        convert=_choice(("200", "404"), as_int=True),
        choices=("200", "404"),
    ),
    Switch(
        name="noop_write",
        flag="--noop-write",
        key="noop_write",
        values="`200`, `400`, `404`, `409`, `422`",
        source="§4 edge cases; §9 (400, withdrawn)",
        help="How archiving an archived run (or activating an active one) is answered.",
        convert=_choice(NOOP_ANSWERS),
        choices=NOOP_ANSWERS,
    ),
    Switch(
        name="archive_sets_status",
        flag="--archive-sets-status",
        key="archive_sets_status",
        values="`true`, `false`",
        source="§4 (conflict)",
        help='Whether archived runs show status "archived".',
        convert=_boolean,
        choices=YES_NO,
    ),
    Switch(
        name="put_clears_assignees",
        flag="--put-clears-assignees",
        key="put_clears_assignees",
        values="`true`, `false`",
        source="§4 update (MCP)",
        help="Whether a PUT without users/groups empties them.",
        convert=_boolean,
        choices=YES_NO,
    ),
    Switch(
        name="archived_listing",
        flag="--archived-listing",
        key="archived_listing",
        values="`both`, `status` (`archived` is ignored), "
        "`archived` (`status=archived` is a status filter)",
        source="§3; §9 (conflict)",
        help="Which parameter lists archived runs.",
        convert=_choice(ARCHIVED_LISTINGS),
        choices=ARCHIVED_LISTINGS,
    ),
    Switch(
        name="default_lists_archived",
        flag="--default-lists-archived",
        key="default_lists_archived",
        values="`true`, `false`",
        source="§3 (inferred)",
        help="Whether a listing without an archived parameter includes archived runs.",
        convert=_boolean,
        choices=YES_NO,
    ),
    Switch(
        name="per_page_default",
        flag="--per-page-default",
        key="per_page_default",
        values="page size",
        source="§3",
        help="Page size when the request gives no per_page.",
        convert=_whole,
    ),
    Switch(
        name="per_page_cap",
        flag="--per-page-cap",
        key="per_page_cap",
        values="page size",
        source="§3; §9",
        help="Largest page size; larger per_page values are lowered to it.",
        convert=_whole,
    ),
    Switch(
        name="per_page_ignored",
        flag="--per-page-ignored",
        key="per_page_ignored",
        values="`true`, `false`",
        source="§9: pagination (MCP, SDK)",
        help="Whether per_page is ignored (every page has the default size).",
        convert=_boolean,
        choices=YES_NO,
    ),
    Switch(
        name="pagination_links",
        flag="--pagination-links",
        key="pagination_links",
        values="`php` (`{next, previous}`, `[]` when neither), `null`, `empty` (`{}`)",
        source="§3 pagination metadata (CLI)",
        help="How meta.pagination.links is written.",
        convert=_choice(LINK_STYLES),
        choices=LINK_STYLES,
    ),
    Switch(
        name="total_pages",
        flag="--total-pages",
        key="total_pages",
        values="`served`, `absent`, or a page size to compute it for",
        source="§9: pagination (MCP)",
        help="What meta.pagination.total_pages says.",
        convert=_total_pages,
        metavar="served|absent|N",
    ),
    Switch(
        name="rate_limit",
        flag="--rate-limit",
        key="rate_limit",
        values="requests per minute (`0`: off)",
        source="§5 rate limits (600 a minute per user)",
        help="Requests per rolling minute per user (0: no limit).",
        convert=_whole,
    ),
    Switch(
        name="rate_windows",
        flag="--rate-window",
        key="rate_windows",
        values="`LIMIT/SPAN[:SCOPE]`, several "
        "(`12/5s:get`, `140/10s`, `100/1m:org`, `1000/1h:org`)",
        source="§5; §9: rate limits",
        help="A rolling window, LIMIT/SPAN[:get|user|org]; repeat for more.",
        convert=_windows,
        multiple=True,
        metavar="SPEC",
    ),
    Switch(
        name="rate_limit_headers",
        flag="--rate-limit-headers",
        key="rate_limit_headers",
        values="position of the window (`0`: no headers)",
        source="§9 (not documented)",
        help="Which window X-RateLimit-Limit/Remaining describe: 1 is --rate-limit if set, "
        "then each --rate-window in order; 0 sends none.",
        convert=_whole,
    ),
    Switch(
        name="missing_client_header",
        flag="--missing-client-header",
        key="missing_client_header",
        values="`401`, `404`",
        source="§1 required headers",
        help="How a request without X-Tallyfy-Client is answered.",
        convert=_choice(("401", "404"), as_int=True),
        choices=("401", "404"),
    ),
    Switch(
        name="can_archive",
        flag="--can-archive",
        key="can_archive",
        values="`true`, `false`",
        source="§4 archive (light users)",
        help="Whether the token's user may archive and activate (else 403).",
        convert=_boolean,
        choices=YES_NO,
    ),
    Switch(
        name="admin",
        flag="--admin",
        key="admin",
        values="`true`, `false`",
        source="§4 permanent delete",
        help="Whether the token's user may delete runs permanently (else 403).",
        convert=_boolean,
        choices=YES_NO,
    ),
    Switch(
        name="activity_feed",
        flag="--activity-feed",
        key="activity_feed",
        values="`on`, `forbidden` (403), `missing` (404), `empty` (no entries)",
        source="§4 audit trail; §9: activity feed",
        help="How GET /activity-feeds answers: served, 403, 404, or with no entries.",
        convert=_choice(ACTIVITY_FEEDS),
        choices=ACTIVITY_FEEDS,
    ),
    Switch(
        name="auto_archive_clock",
        flag="--auto-archive-clock",
        key="auto_archive_clock",
        values="`true`, `false`",
        source="§4 automatic archiving; §9: auto-archive",
        help="Whether completed runs are archived, with no person behind it, once the org's "
        "auto-archive period has passed.",
        convert=_boolean,
        choices=YES_NO,
    ),
    Switch(
        name="latency",
        flag="--latency-ms",
        key="latency_ms",
        values="milliseconds",
        source="none (for the benchmark)",
        help="Time from each request's arrival to its answer, in milliseconds.",
        convert=_millis,
        metavar="MS",
    ),
)
BY_KEY: Mapping[str, Switch] = {switch.key: switch for switch in SWITCHES}


def value_text(switch: Switch, behaviour: Behaviour) -> str:
    """The value of a switch in `behaviour`, as a user writes it."""
    value = getattr(behaviour, switch.name)
    if isinstance(value, bool):
        return str(value).lower()
    if switch.name == "latency":
        return f"{value * 1000:g}"
    if isinstance(value, tuple):
        return " ".join(value) or "none"
    return str(value)


def changed(behaviour: Behaviour) -> list[str]:
    """`key=value` for every switch `behaviour` sets away from its default."""
    default = Behaviour()
    return [
        f"{switch.key}={value_text(switch, behaviour)}"
        for switch in SWITCHES
        if getattr(behaviour, switch.name) != getattr(default, switch.name)
    ]

"""The sandbox's behaviour switches: what each changes in the answers, the one table that names
them (Behaviour field, flag, seed key, README row), and the rolling rate-limit windows."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from reconcile.sandbox import Behaviour, Sandbox, SandboxRun
from reconcile.sandbox.limits import RateWindow
from reconcile.sandbox.model import DEFAULT_BEHAVIOUR
from reconcile.sandbox.switches import SWITCHES, changed, value_text
from tests.demo import DEMO_IDS, ROOT
from tests.helpers import SANDBOX_HEADERS, Clock, call, listed, pagination

IDS = DEMO_IDS
ARCHIVED = [IDS[2], IDS[8], IDS[9]]
LIVE = [i for i in IDS if i not in ARCHIVED]
README = (ROOT / "README.md").read_text(encoding="utf-8")


# --- the table of switches -------------------------------------------------------------------


def test_every_behaviour_field_is_one_switch_with_its_own_flag_and_key() -> None:
    assert sorted(s.name for s in SWITCHES) == sorted(f.name for f in fields(Behaviour))
    assert len({s.flag for s in SWITCHES}) == len({s.key for s in SWITCHES}) == len(SWITCHES)


def test_the_readme_has_one_row_per_switch_with_default_and_source() -> None:
    section = README.split("## The sandbox", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| `--")
    ]
    switch_rows = {row[0].strip("`"): row for row in rows if row[1]}
    assert sorted(switch_rows) == sorted(s.flag for s in SWITCHES)
    assert len(switch_rows) == len([row for row in rows if row[1]])  # one row each
    for switch in SWITCHES:
        cells = switch_rows[switch.flag]
        assert cells[1:3] == [f"`{switch.key}`", f"`{switch.name}`"], switch.flag
        assert cells[4:] == [f"`{value_text(switch, DEFAULT_BEHAVIOUR)}`", switch.source]
        assert switch.source.startswith(("§", "none")), switch.flag


@pytest.mark.parametrize(
    ("behaviour", "shown"),
    [
        (Behaviour(), []),
        (
            Behaviour(noop_write="409", latency=0.02, rate_windows=("12/5s:get", "140/10s")),
            ["noop_write=409", "rate_windows=12/5s:get 140/10s", "latency_ms=20"],
        ),
        (Behaviour(can_archive=False, total_pages=250), ["total_pages=250", "can_archive=false"]),
    ],
)
def test_changed_lists_the_switches_away_from_their_default(
    behaviour: Behaviour, shown: list[str]
) -> None:
    assert changed(behaviour) == shown


@pytest.mark.parametrize(
    ("behaviour", "problem"),
    [
        ({"archived_listing": "neither"}, "archived_listing must be one of both, status"),
        ({"pagination_links": "[]"}, "pagination_links must be one of php, null, empty"),
        ({"total_pages": 0}, 'total_pages must be "served", "absent" or a page size'),
        ({"total_pages": "10"}, 'total_pages must be "served", "absent" or a page size'),
        ({"rate_windows": ("12 per 5s",)}, "rate window '12 per 5s' is not LIMIT/SPAN"),
        ({"rate_windows": ("0/5s",)}, "the limit and the span must be at least 1"),
        ({"rate_windows": ("5/1m",), "rate_limit_headers": 2}, "rate_limit_headers must be 0"),
        ({"per_page_cap": 0}, "per_page_default and per_page_cap must be at least 1"),
    ],
)
def test_inconsistent_switches_are_refused(behaviour: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        Behaviour(**behaviour)  # type: ignore[arg-type]


# --- listing switches ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "query", "expected"),
    [
        ("both", "archived=only", ARCHIVED),
        ("both", "status=archived", ARCHIVED),
        ("both", "archived=true", IDS),
        # Only status=archived works: the archived parameter is ignored.
        ("status", "archived=only", LIVE),
        ("status", "archived=true", LIVE),
        ("status", "status=archived", ARCHIVED),
        # Only archived works: status=archived is a status filter on the default listing.
        ("archived", "archived=only", ARCHIVED),
        ("archived", "archived=true", IDS),
        ("archived", "status=archived", []),
        ("archived", "status=archived&archived=true", ARCHIVED),
    ],
)
def test_archived_listing_modes(demo: Sandbox, mode: str, query: str, expected: list[str]) -> None:
    demo.behaviour = Behaviour(archived_listing=mode)
    response = call(demo, "GET", query=query)
    assert listed(response) == list(expected)
    assert pagination(response)["total"] == len(expected)


def test_the_default_listing_can_include_archived_runs(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(default_lists_archived=True)
    assert listed(call(demo, "GET")) == list(IDS)
    assert listed(call(demo, "GET", query="archived=false")) == LIVE
    assert listed(call(demo, "GET", query="archived=only")) == ARCHIVED


@pytest.mark.parametrize(("style", "single", "paged"), [("null", None, None), ("empty", {}, {})])
def test_links_can_be_null_or_an_empty_object(
    demo: Sandbox, style: str, single: object, paged: object
) -> None:
    assert pagination(call(demo, "GET"))["links"] == []
    assert set(pagination(call(demo, "GET", query="per_page=3"))["links"]) == {"next"}
    demo.behaviour = Behaviour(pagination_links=style)
    assert pagination(call(demo, "GET"))["links"] == single
    assert pagination(call(demo, "GET", query="per_page=3&page=2"))["links"] == paged


@pytest.mark.parametrize(
    ("total_pages", "per_page", "expected"),
    [("served", 100, 3), (10, 100, 26), (250, 100, 2), (250, 10, 2), ("absent", 100, None)],
)
def test_total_pages_can_be_absent_or_for_another_page_size(
    demo: Sandbox, total_pages: str | int, per_page: int, expected: int | None
) -> None:
    demo.add_runs(SandboxRun(id=f"{n:032x}", name=f"Bulk {n}") for n in range(250))
    demo.behaviour = Behaviour(total_pages=total_pages)
    meta = pagination(call(demo, "GET", query=f"per_page={per_page}"))
    assert (meta["total"], meta["per_page"], meta.get("total_pages")) == (257, per_page, expected)
    assert ("total_pages" in meta) is (expected is not None)
    assert "next" in meta["links"]  # the links follow the page size actually served


def test_per_page_capped_below_100(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(per_page_cap=5)
    response = call(demo, "GET", query="per_page=100&archived=true")
    assert listed(response) == list(IDS[:5])
    assert (pagination(response)["per_page"], pagination(response)["total_pages"]) == (5, 2)


def test_per_page_ignored_serves_a_fixed_page_size(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(per_page_ignored=True, per_page_default=4)
    pages = [call(demo, "GET", query=f"per_page=100&page={n}&archived=true") for n in (1, 2, 3)]
    assert [listed(page) for page in pages] == [list(IDS[:4]), list(IDS[4:8]), list(IDS[8:])]
    assert {pagination(page)["per_page"] for page in pages} == {4}
    assert call(demo, "GET", query="per_page=ten").status == 200  # not even read


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("folder=12", ["folder"]),
        ("task_status=completed", ["task_status"]),
        ("task_status=in-progress&folder=3&archived=only", ["folder", "task_status"]),
    ],
)
def test_documented_filters_not_implemented_are_422(
    demo: Sandbox, query: str, named: list[str]
) -> None:
    response = call(demo, "GET", query=query)
    assert response.status == 422
    body = response.json()
    assert sorted(body["errors"]) == named
    assert all(name in body["message"] for name in named)
    assert call(demo, "GET", query="task_status=all&folder=").status == 200  # filters nothing


# --- rate-limit windows ----------------------------------------------------------------------


def test_window_specs() -> None:
    assert RateWindow.parse("12/5s:get") == RateWindow(
        12, 5, "get", "12 GET requests per 5 seconds"
    )
    assert RateWindow.parse("1000/1h:org").label == "1000 requests to the organization per hour"
    assert RateWindow.parse("600/m") == RateWindow(600, 60, "user", "600 requests per minute")
    assert RateWindow.parse("12/5S:GET") == RateWindow.parse("12/5s:get")
    assert Behaviour(rate_limit=600, rate_windows=("140/10s",)).windows == (
        RateWindow(600, 60, "user", "600 requests per minute"),
        RateWindow(140, 10, "user", "140 requests per 10 seconds"),
    )


def test_every_window_counts_and_the_first_full_one_refuses(demo: Sandbox, clock: Clock) -> None:
    demo.behaviour = Behaviour(rate_windows=("2/5s:get", "3/10s"), rate_limit_headers=2)
    statuses = [call(demo, method, f"/{IDS[0]}").status for method in ("GET", "GET", "DELETE")]
    assert statuses == [200, 200, 200]
    clock.now += 1
    refused = call(demo, "GET")  # both windows are full
    assert refused.status == 429
    assert refused.json() == {
        "message": "You've reached the limit of 2 GET requests per 5 seconds. "
        "Please try again later.",
        "code": "RATE_LIMIT_EXCEEDED",
    }
    assert refused.headers["Retry-After"] == "9"  # the 10 s window holds out longest
    assert (refused.headers["X-RateLimit-Limit"], refused.headers["X-RateLimit-Remaining"]) == (
        "3",
        "0",
    )
    clock.now += 4  # the GET window has room again; the 10 s window still does not
    assert call(demo, "PUT", f"/{IDS[0]}/activate").status == 429
    clock.now += 5
    assert call(demo, "PUT", f"/{IDS[0]}/activate").status == 200
    assert not demo.is_archived(IDS[0])


def test_the_headers_describe_one_window_of_the_servers_choosing(
    demo: Sandbox, clock: Clock
) -> None:
    demo.behaviour = Behaviour(rate_limit=100, rate_windows=("2/5s:get",), rate_limit_headers=1)
    answers = [call(demo, "GET") for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 429]
    # The minute window has plenty left while its 5 s neighbour refuses.
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["99", "98", "98"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"100"}
    assert answers[2].headers["Retry-After"] == "5"
    demo.behaviour = Behaviour(rate_limit=100, rate_limit_headers=0)
    assert "X-RateLimit-Limit" not in call(demo, "GET").headers


def test_organization_windows_do_not_count_me(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(rate_windows=("2/1h:org",))
    for _ in range(3):
        assert demo.dispatch("GET", "/api/me", SANDBOX_HEADERS, b"").status == 200
    assert [call(demo, "GET").status for _ in range(3)] == [200, 200, 429]
    other = demo.dispatch("GET", f"/api/organizations/{'0' * 32}/runs", SANDBOX_HEADERS, b"")
    assert other.status == 403  # another organization's window, not this one's

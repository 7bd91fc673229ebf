"""The sandbox emulator against the documented Tallyfy runs API (docs/tallyfy-api.md §1-§5,
§8, §9): routing and auth, reading one run, listing. Requests go straight to `Sandbox.dispatch`."""

from __future__ import annotations

import re
from typing import Any

import pytest

from reconcile.sandbox import (
    Behaviour,
    LoggedRequest,
    Sandbox,
    SandboxRun,
)
from tests.demo import ACTIVE, ARCHIVED, DONE, IDS, LIVE, ORG, TOKEN, UNKNOWN
from tests.helpers import SANDBOX_HEADERS, Clock, call, listed, pagination

HEADERS = SANDBOX_HEADERS
NOT_FOUND = {"error": True, "message": "Resource not found", "code": "RESOURCE_NOT_FOUND"}
NO_ENDPOINT = {"error": True, "message": "API endpoint not found", "code": "ENDPOINT_NOT_FOUND"}
UNAUTHENTICATED = {"error": True, "message": "Unauthenticated.", "code": "UNAUTHENTICATED"}
RUN_FIELDS = {
    "id", "increment_id", "checklist_id", "checklist_title", "name", "summary", "status",
    "progress", "whole_progress", "started_by", "owner_id", "prerun", "prerun_status",
    "starred", "created_at", "started_at", "last_updated", "archived_at", "completed_at",
    "type", "is_public", "users", "groups",
}  # fmt: skip


# --- auth, routing, the request log ----------------------------------------------------------


@pytest.mark.parametrize(
    "authorization", [None, "", f"bearer {TOKEN}", f"Bearer  {TOKEN}", "Bearer other", TOKEN]
)
def test_bearer_token_must_match_exactly(demo: Sandbox, authorization: str | None) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "Authorization"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = call(demo, "DELETE", f"/{ACTIVE}", headers=headers)
    assert (response.status, response.json()) == (401, UNAUTHENTICATED)
    assert not demo.is_archived(ACTIVE)
    assert demo.requests == [
        LoggedRequest("DELETE", f"/organizations/{ORG}/runs/{ACTIVE}", {}, 401, ACTIVE, True)
    ]


@pytest.mark.parametrize(("switch", "expected"), [(401, UNAUTHENTICATED), (404, NO_ENDPOINT)])
def test_missing_client_header(demo: Sandbox, switch: int, expected: dict[str, Any]) -> None:
    demo.behaviour = Behaviour(missing_client_header=switch)
    headers = {k: v for k, v in HEADERS.items() if k != "X-Tallyfy-Client"}
    response = call(demo, "GET", headers=headers)
    assert (response.status, response.json()) == (switch, expected)
    # Header names are case-insensitive, and any client name is accepted.
    lowered = {k.lower(): v for k, v in headers.items()} | {"x-tallyfy-client": "TallyfySDK"}
    assert call(demo, "GET", headers=lowered).status == 200


def test_other_org_is_forbidden(demo: Sandbox) -> None:
    response = demo.dispatch("GET", f"/api/organizations/{'0' * 32}/runs", HEADERS, b"")
    assert response.status == 403
    assert response.json() == {
        "error": True,
        "message": "You don't have application's permissions for this organization!",
        "code": "FORBIDDEN",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/api/organizations",
        f"/api/organizations/{ORG}/checklists",
        f"/organizations/{ORG}/run",
        "/",
    ],
)
def test_unknown_paths_are_endpoint_not_found_even_unauthenticated(
    demo: Sandbox, path: str
) -> None:
    for headers in (HEADERS, {}):
        response = demo.dispatch("GET", path, headers, b"")
        assert (response.status, response.json()) == (404, NO_ENDPOINT)
    assert [entry.status for entry in demo.requests] == [404, 404]


def test_wrong_method_is_405_with_allow(demo: Sandbox) -> None:
    response = call(demo, "POST", f"/{ACTIVE}/activate")
    assert response.status == 405
    assert response.headers["Allow"] == "PUT"
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert demo.writes[0].status == 405


def test_both_prefixes_reach_the_same_route(demo: Sandbox) -> None:
    with_api = call(demo, "GET", f"/{ACTIVE}")
    without = call(demo, "GET", f"/{ACTIVE}", prefix="")
    assert with_api.body == without.body
    assert [entry.path for entry in demo.requests] == [f"/organizations/{ORG}/runs/{ACTIVE}"] * 2


def test_log_records_query_run_and_write_flag(demo: Sandbox) -> None:
    call(demo, "GET", query="archived=only&q=client%20on")
    call(demo, "PUT", f"/{DONE}/activate")
    call(demo, "HEAD", f"/{ACTIVE}")
    assert demo.requests == [
        LoggedRequest(
            "GET", f"/organizations/{ORG}/runs", {"archived": "only", "q": "client on"}, 200,
            None, False,
        ),
        LoggedRequest("PUT", f"/organizations/{ORG}/runs/{DONE}/activate", {}, 200, DONE, True),
        LoggedRequest("HEAD", f"/organizations/{ORG}/runs/{ACTIVE}", {}, 200, ACTIVE, False),
    ]  # fmt: skip
    assert [w.method for w in demo.writes] == ["PUT"]
    copy = demo.requests
    copy.clear()
    assert len(demo.requests) == 3
    demo.clear_log()
    assert demo.requests == []


def test_me_endpoints(demo: Sandbox) -> None:
    me = demo.dispatch("GET", "/api/me", HEADERS, b"")
    assert me.status == 200
    assert me.json()["data"]["id"] == 1
    orgs = demo.dispatch("GET", "/me/organizations", HEADERS, b"").json()
    assert orgs["data"] == [{"id": ORG, "name": "Acme Operations (demo)"}]


# --- GET one run ---------------------------------------------------------------------------


def test_get_run_shows_every_documented_field(demo: Sandbox) -> None:
    response = call(demo, "GET", f"/{ACTIVE}", query="with=checklist,tasks")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"sandbox-\d+", response.headers["X-Request-Id"])
    run = response.json()["data"]
    assert set(run) >= RUN_FIELDS
    assert run["id"] == ACTIVE
    assert run["name"] == "Client onboarding - Globex Corporation"
    assert (run["status"], run["archived_at"]) == ("active", None)
    assert (run["owner_id"], run["users"], run["groups"]) == (101, [101, 102], [])
    assert run["checklist_id"] == "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert run == demo.run(ACTIVE)


def test_get_archived_run_is_200_by_default(demo: Sandbox) -> None:
    run = call(demo, "GET", f"/{DONE}").json()["data"]
    assert (run["status"], run["archived_at"]) == ("archived", "2026-02-02T16:20:00.000Z")
    demo.behaviour = Behaviour(archive_sets_status=False)
    assert call(demo, "GET", f"/{DONE}").json()["data"]["status"] == "complete"


def test_get_archived_run_can_be_404(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(archived_get=404)
    response = call(demo, "GET", f"/{DONE}")
    assert (response.status, response.json()) == (404, NOT_FOUND)
    assert call(demo, "GET", f"/{ACTIVE}").status == 200
    assert demo.run(DONE)["archived_at"] == "2026-02-02T16:20:00.000Z"


@pytest.mark.parametrize("run_id", [UNKNOWN, ACTIVE.upper(), ACTIVE[:31], "1234"])
def test_unknown_or_malformed_run_ids_are_not_found(demo: Sandbox, run_id: str) -> None:
    for method, suffix in [("GET", ""), ("PUT", ""), ("DELETE", ""), ("PUT", "/activate")]:
        response = call(demo, method, f"/{run_id}{suffix}", body=b"{}")
        assert (response.status, response.json()) == (404, NOT_FOUND)
    assert {entry.run_id for entry in demo.requests} == {run_id}


def test_head_answers_without_body(demo: Sandbox) -> None:
    response = call(demo, "HEAD", f"/{ACTIVE}")
    assert (response.status, response.body) == (200, b"")


# --- the documented shapes ---------------------------------------------------------------------

Kind = type | tuple[type, ...]
# The types the docs' get-process and list-processes pages show (tallyfy-api.md §2, §9).
RUN_TYPES: dict[str, Kind] = {
    "id": str, "increment_id": int, "checklist_id": str, "checklist_title": str, "name": str,
    "summary": (str, type(None)), "status": str, "progress": dict, "whole_progress": dict,
    "started_by": int, "owner_id": int, "prerun": dict, "prerun_status": str, "starred": bool,
    "created_at": str, "started_at": str, "last_updated": str, "archived_at": (str, type(None)),
    "completed_at": (str, type(None)), "type": str, "is_public": bool, "users": list,
    "groups": list, "due_date": (str, type(None)), "due_date_passed": bool, "due_soon": bool,
    "late_tasks": int, "collaborators": list, "parent_id": (str, type(None)),
    "can_add_oot": bool, "has_open_issue": bool,
}  # fmt: skip
ZULU = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def assert_documented_shape(run: dict[str, Any]) -> None:
    for field, kind in RUN_TYPES.items():
        value = run[field]
        # bool is an int to isinstance; a number field holding true is still wrong.
        assert isinstance(value, kind), (field, value)
        assert not (kind is int and isinstance(value, bool)), (field, value)
    for field in ("progress", "whole_progress"):
        assert set(run[field]) == {"complete", "total", "percent"}
        assert all(type(v) in (int, float) for v in run[field].values())
    assert all(type(user) is int for user in run["users"])
    assert all(type(group) is str for group in run["groups"])
    for field in ("created_at", "started_at", "last_updated", "archived_at", "completed_at"):
        assert run[field] is None or ZULU.fullmatch(run[field]), (field, run[field])


def test_every_answer_has_the_documented_types(demo: Sandbox) -> None:
    seen = [call(demo, "GET", f"/{run_id}").json()["data"] for run_id in IDS]
    seen += call(demo, "GET", query="archived=true&with=tags").json()["data"]
    for run_id in IDS:
        path = f"/{run_id}/activate" if run_id in ARCHIVED else f"/{run_id}"
        seen.append(call(demo, "PUT" if run_id in ARCHIVED else "DELETE", path).json()["data"])
    assert len(seen) == 3 * len(IDS)
    for run in seen:
        assert_documented_shape(run)


@pytest.mark.parametrize("run_id", IDS)
def test_archive_and_activate_change_only_archived_at_status_and_last_updated(
    demo: Sandbox, clock: Clock, run_id: str
) -> None:
    before = demo.run(run_id)
    writes = [("DELETE", ""), ("PUT", "/activate")]
    if before["archived_at"] is not None:
        writes.reverse()
    answers = []
    for method, suffix in writes:
        clock.now += 60
        answers.append(call(demo, method, f"/{run_id}{suffix}").json()["data"])
    first, second = answers
    changed = {key for key in before if before[key] != first[key]}
    assert changed <= {"archived_at", "status", "last_updated"}
    assert {"archived_at", "last_updated"} <= changed
    # Back where it started; an archived run was archived again, so at a later time.
    moved = {"last_updated", "archived_at"} if before["archived_at"] else {"last_updated"}
    assert {key for key in before if before[key] != second[key]} == moved
    assert second == demo.run(run_id)


def test_get_one_run_with_tags(demo: Sandbox) -> None:
    run = call(demo, "GET", f"/{IDS[1]}", query="with=checklist,tags").json()["data"]
    assert run["tags"] == {
        "data": [{"id": "audit", "title": "audit"}, {"id": "compliance", "title": "compliance"}]
    }
    assert "tags" not in call(demo, "GET", f"/{IDS[1]}").json()["data"]
    listed_run = call(demo, "GET", query="with=tags").json()["data"][1]
    assert listed_run == run


# --- listing -------------------------------------------------------------------------------


def test_list_defaults_exclude_archived(demo: Sandbox) -> None:
    response = call(demo, "GET")
    assert listed(response) == list(LIVE)
    assert pagination(response) == {
        "total": 7,
        "count": 7,
        "per_page": 10,
        "current_page": 1,
        "total_pages": 1,
        "links": [],
    }
    assert b'"links":[]' in response.body  # an empty PHP array, not {}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("archived=only", ARCHIVED),
        ("status=archived", ARCHIVED),
        ("archived=true", IDS),
        ("archived=false", LIVE),
        ("status=complete", (IDS[5],)),
        ("status=complete&archived=true", (IDS[5],)),
        ("status=problem", (IDS[3], IDS[7])),
        ("q=ONBOARDING", (IDS[0], IDS[4])),
        ("q=client%20o&archived=true", (IDS[0], IDS[8])),
        ("q=client+o", ()),  # the API does not decode "+" as a space
        ("checklist_id=c3d4e5f60718293a4b5c6d7e8f90a1b2&archived=true", (IDS[2], IDS[6])),
        ("blueprint_id=c3d4e5f60718293a4b5c6d7e8f90a1b2", (IDS[6],)),
        ("owners=102", (IDS[0], IDS[3])),  # owner of IDS[3], assignee of IDS[0]
        ("owners=103,108", (IDS[1], IDS[7])),
        ("tag=audit", (IDS[1], IDS[7])),
        ("tag_ids=hr,legal", (IDS[4], IDS[6])),
        ("groups=finance&archived=only", (IDS[9],)),
        ("type=form", ()),
        ("sort=-created_at", tuple(reversed(LIVE))),
        ("sort=name&archived=only", (IDS[9], IDS[8], IDS[2])),
        ("sort_by=-name&per_page=2", (IDS[6], IDS[1])),
    ],
)
def test_list_filters(demo: Sandbox, query: str, expected: tuple[str, ...]) -> None:
    response = call(demo, "GET", query=query)
    assert listed(response) == list(expected)
    assert pagination(response)["count"] == len(expected)


def test_problem_filter_includes_issue_runs(demo: Sandbox) -> None:
    late = "2026-03-01T00:00:00.000Z"
    demo.add_runs([SandboxRun(id="e" * 32, name="Escalated", status="issue", created_at=late)])
    assert listed(call(demo, "GET", query="status=problem")) == [IDS[3], IDS[7], "e" * 32]
    assert listed(call(demo, "GET", query="status=issue")) == ["e" * 32]


def test_pagination_links_are_absolute_and_keep_the_query(demo: Sandbox) -> None:
    response = call(demo, "GET", query="per_page=3&page=2&q=%20")
    base = f"http://sandbox.test/api/organizations/{ORG}/runs?per_page=3"
    assert pagination(response) == {
        "total": 7,
        "count": 3,
        "per_page": 3,
        "current_page": 2,
        "total_pages": 3,
        "links": {"previous": f"{base}&page=1&q=%20", "next": f"{base}&page=3&q=%20"},
    }
    first = pagination(call(demo, "GET", query="per_page=3&q=%20", prefix=""))
    assert first["links"] == {
        "next": f"http://sandbox.test/organizations/{ORG}/runs?per_page=3&q=%20&page=2"
    }


def test_page_beyond_the_end_is_empty(demo: Sandbox) -> None:
    response = call(demo, "GET", query="page=9")
    assert listed(response) == []
    meta = pagination(response)
    assert (meta["total"], meta["count"], meta["current_page"], meta["total_pages"]) == (7, 0, 9, 1)
    assert set(meta["links"]) == {"previous"}


def test_per_page_default_and_cap(demo: Sandbox) -> None:
    demo.add_runs(SandboxRun(id=f"{n:032x}", name=f"Bulk {n}") for n in range(250))
    assert pagination(call(demo, "GET"))["per_page"] == 10
    capped = call(demo, "GET", query="per_page=500")
    assert (len(listed(capped)), pagination(capped)["total_pages"]) == (100, 3)
    demo.behaviour = Behaviour(per_page_default=3, per_page_cap=5)
    assert len(listed(call(demo, "GET"))) == 3
    assert pagination(call(demo, "GET", query="per_page=50"))["per_page"] == 5


@pytest.mark.parametrize("value", ["ten", "0", "-1"])
def test_bad_per_page_is_422(demo: Sandbox, value: str) -> None:
    response = call(demo, "GET", query=f"per_page={value}")
    assert response.status == 422
    assert set(response.json()["errors"]) == {"per_page"}


def test_without_pagination_returns_everything(demo: Sandbox) -> None:
    response = call(demo, "GET", query="without_pagination=true&archived=true&per_page=2")
    assert listed(response) == list(IDS)
    assert pagination(response)["links"] == []


def test_reverse_pages_partition_the_runs(demo: Sandbox) -> None:
    pages = [
        listed(call(demo, "GET", query=f"sort=-created_at&per_page=3&page={n}")) for n in (1, 2, 3)
    ]
    assert pages == [list(reversed(LIVE))[i : i + 3] for i in (0, 3, 6)]

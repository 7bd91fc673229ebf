"""The sandbox emulator against the documented Tallyfy runs API (docs: tallyfy-api.md §1-§5, §8).

Most tests call `Sandbox.dispatch` directly; a few go through the httpx MockTransport and the
real loopback server, where keep-alive, absolute pagination links and dropped connections live.
"""

from __future__ import annotations

import _thread
import asyncio
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconcile.sandbox import (
    Behaviour,
    Fault,
    LoggedRequest,
    Sandbox,
    SandboxResponse,
    SandboxRun,
    SeedError,
    serve,
    serve_forever,
)
from reconcile.sandbox.seed import load_seed
from tests.conftest import DEMO_IDS, ORG, TOKEN

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo-org.toml"
HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "X-Tallyfy-Client": "APIClient",
    "Accept": "application/json",
    "Host": "sandbox.test",
}
IDS = DEMO_IDS
ARCHIVED = (IDS[2], IDS[8], IDS[9])
LIVE = tuple(i for i in IDS if i not in ARCHIVED)
ACTIVE = IDS[0]  # active, users [101, 102]
DONE = IDS[2]  # status "complete", archived
UNKNOWN = "f" * 32
NOW = 1_772_442_000.0  # 2026-03-02T09:00:00Z
NOW_ZULU = "2026-03-02T09:00:00.000Z"
NOT_FOUND = {"error": True, "message": "Resource not found", "code": "RESOURCE_NOT_FOUND"}
NO_ENDPOINT = {"error": True, "message": "API endpoint not found", "code": "ENDPOINT_NOT_FOUND"}
UNAUTHENTICATED = {"error": True, "message": "Unauthenticated.", "code": "UNAUTHENTICATED"}
RUN_FIELDS = {
    "id", "increment_id", "checklist_id", "checklist_title", "name", "summary", "status",
    "progress", "whole_progress", "started_by", "owner_id", "prerun", "prerun_status",
    "starred", "created_at", "started_at", "last_updated", "archived_at", "completed_at",
    "type", "is_public", "users", "groups",
}  # fmt: skip


class Clock:
    """A settable wall clock, so timestamps and the rate-limit window are deterministic."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def demo(clock: Clock) -> Sandbox:
    seed = load_seed(DEMO)
    return Sandbox(seed.org_id, seed.token, seed.runs, org_name=seed.org_name, clock=clock)


def call(
    sandbox: Sandbox,
    method: str,
    path: str = "",
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    prefix: str = "/api",
) -> SandboxResponse:
    """Dispatch a request to `/organizations/{ORG}/runs{path}`."""
    target = f"{prefix}/organizations/{ORG}/runs{path}" + (f"?{query}" if query else "")
    return sandbox.dispatch(method, target, HEADERS if headers is None else headers, body)


def listed(response: SandboxResponse) -> list[str]:
    assert response.status == 200, response.body
    return [run["id"] for run in response.json()["data"]]


def pagination(response: SandboxResponse) -> dict[str, Any]:
    result: dict[str, Any] = response.json()["meta"]["pagination"]
    return result


# --- seed files ----------------------------------------------------------------------------


def test_demo_seed_has_the_documented_org_and_runs() -> None:
    seed = load_seed(DEMO)
    assert (seed.org_id, seed.org_name, seed.token) == (ORG, "Acme Operations (demo)", TOKEN)
    assert tuple(run.id for run in seed.runs) == IDS
    assert tuple(run.id for run in seed.runs if run.archived_at) == ARCHIVED
    assert {run.status for run in seed.runs} == {"active", "complete", "problem"}
    assert len({run.name for run in seed.runs}) == 10


def test_from_seed_builds_the_org_in_listing_order() -> None:
    sandbox = Sandbox.from_seed(DEMO, Behaviour(archived_get=404))
    assert (sandbox.org_id, sandbox.token, sandbox.org_name) == (
        ORG,
        TOKEN,
        "Acme Operations (demo)",
    )
    assert sandbox.behaviour == Behaviour(archived_get=404)
    assert sandbox.run_ids() == list(IDS)  # the seed's created_at values ascend
    assert sandbox.run_ids(archived=True) == list(ARCHIVED)
    assert sandbox.run(IDS[8])["archived_at"] == "2026-02-21T10:00:00.000Z"


ORG_OK = '[org]\nid = "5e7c0f3a9d2b4c6e8a1f0b3d5c7e9a2b"\ntoken = "t"\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[org\n", "not valid TOML"),
        ('[runs]\nid = "x"\n', "missing [org] table"),
        ('[org]\nid = "ABC"\ntoken = "t"\n', "[org] id: 'ABC' is not 32 lowercase hex"),
        ('[org]\nid = "5e7c0f3a9d2b4c6e8a1f0b3d5c7e9a2b"\n', "[org]: missing required key 'token'"),
        (ORG_OK + "[[runs]]\nid = " + '"' + "a" * 32 + '"\n', "missing required key 'name'"),
        (ORG_OK + '[[runs]]\nid = "a1"\nname = "x"\n', "run id 'a1' is not 32 lowercase hex"),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\narchived_at = "yesterday"\n',
            "'yesterday' is not an ISO-8601 UTC timestamp",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\nowner_id = "7"\n',
            "owner_id must be an integer",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\ntags = [1]\n',
            "tags must be an array of strings",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\narchived = true\n',
            "unknown key 'archived'",
        ),
        (
            ORG_OK + f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\n' * 2,
            f"run id {'a' * 32} appears 2 times",
        ),
        ("runs = 3\n" + ORG_OK, "runs must be an array of tables"),
    ],
)
def test_malformed_seeds_name_file_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SeedError) as caught:
        Sandbox.from_seed(path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_seed_error_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    path.write_text('[org]\nid = 5\n[[runs]]\nname = 3\n[[runs]]\nid = "b"\n', encoding="utf-8")
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    assert caught.value.problems == (
        "[org]: id must be a string, not int",
        "[org]: missing required key 'token'",
        "[[runs]] #1: missing required key 'id'",
        "[[runs]] #1: name must be a string, not int",
        "[[runs]] #2 (id b): missing required key 'name'",
    )


def test_missing_seed_file(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match=r"nowhere\.toml: unusable sandbox seed:\n  - cannot read"):
        load_seed(tmp_path / "nowhere.toml")


def test_seed_accepts_toml_datetimes_and_normalizes_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "seed.toml"
    run = f'[[runs]]\nid = "{"a" * 32}"\nname = "x"\narchived_at = 2026-01-10T09:00:00Z\n'
    path.write_text(ORG_OK + run + 'created_at = "2026-01-02T03:04:05Z"\n', encoding="utf-8")
    (seeded,) = load_seed(path).runs
    assert seeded.archived_at == "2026-01-10T09:00:00.000Z"
    assert seeded.created_at == "2026-01-02T03:04:05.000Z"


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


# --- archive, activate, permanent delete ------------------------------------------------------


def test_archive_sets_archived_at_and_status(demo: Sandbox, clock: Clock) -> None:
    response = call(demo, "DELETE", f"/{ACTIVE}")
    assert response.status == 200
    run = response.json()["data"]
    assert (run["id"], run["status"], run["archived_at"]) == (ACTIVE, "archived", NOW_ZULU)
    assert run["last_updated"] == NOW_ZULU
    assert demo.is_archived(ACTIVE)
    assert ACTIVE not in listed(call(demo, "GET"))
    assert listed(call(demo, "GET", query="archived=only"))[0] == ACTIVE  # oldest first

    clock.now += 60
    restored = call(demo, "PUT", f"/{ACTIVE}/activate").json()["data"]
    assert (restored["status"], restored["archived_at"]) == ("active", None)
    assert restored["last_updated"] == "2026-03-02T09:01:00.000Z"
    assert listed(call(demo, "GET")) == list(LIVE)


def test_archive_can_leave_status_alone(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(archive_sets_status=False)
    run = call(demo, "DELETE", f"/{IDS[3]}").json()["data"]
    assert (run["status"], run["archived_at"]) == ("problem", NOW_ZULU)
    assert listed(call(demo, "GET", query="status=problem&archived=true")) == [IDS[3], IDS[7]]


def test_activate_restores_the_status_from_before(demo: Sandbox) -> None:
    before = demo.run(DONE)
    assert before["status"] == "archived"
    run = call(demo, "PUT", f"/{DONE}/activate").json()["data"]
    # Completion is a fact of the past: activating changes neither it nor when it happened.
    assert (run["status"], run["archived_at"], run["completed_at"]) == (
        "complete",
        None,
        before["completed_at"],
    )
    assert run["last_updated"] != before["last_updated"]


@pytest.mark.parametrize(
    ("noop", "status", "reason"),
    [
        ("200", 200, None),
        ("404", 404, None),
        ("422", 422, "The process is already archived."),
    ],
)
def test_archiving_an_archived_run(
    demo: Sandbox, noop: str, status: int, reason: str | None
) -> None:
    demo.behaviour = Behaviour(noop_write=noop)
    before = demo.run(DONE)
    response = call(demo, "DELETE", f"/{DONE}")
    assert response.status == status
    if status == 200:
        assert response.json() == {"data": before}
    elif status == 404:
        assert response.json() == NOT_FOUND
    else:
        assert response.json() == {"error": True, "message": reason, "errors": {"run": [reason]}}
    assert demo.run(DONE) == before
    assert [w.status for w in demo.writes] == [status]


@pytest.mark.parametrize(("noop", "status"), [("200", 200), ("404", 404), ("422", 422)])
def test_activating_a_live_run(demo: Sandbox, noop: str, status: int) -> None:
    demo.behaviour = Behaviour(noop_write=noop)
    before = demo.run(ACTIVE)
    response = call(demo, "PUT", f"/{ACTIVE}/activate")
    assert response.status == status
    if status == 200:
        assert response.json()["data"] == before
    if status == 422:
        assert response.json()["message"] == "The process is not archived."
    assert demo.run(ACTIVE) == before


def test_activate_works_when_get_hides_archived_runs(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(archived_get=404)
    assert call(demo, "GET", f"/{DONE}").status == 404
    assert call(demo, "PUT", f"/{DONE}/activate").status == 200
    assert call(demo, "GET", f"/{DONE}").status == 200


def test_light_user_cannot_archive_or_activate(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(can_archive=False)
    for method, run_id, suffix in [("DELETE", ACTIVE, ""), ("PUT", DONE, "/activate")]:
        response = call(demo, method, f"/{run_id}{suffix}")
        assert response.status == 403
        assert response.json()["code"] == "FORBIDDEN"
    assert call(demo, "DELETE", f"/{UNKNOWN}").status == 404  # the lookup comes first
    assert (demo.is_archived(ACTIVE), demo.is_archived(DONE)) == (False, True)


def test_permanent_delete(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(admin=False)
    assert call(demo, "DELETE", f"/{DONE}/delete").status == 403
    demo.behaviour = Behaviour()
    live = call(demo, "DELETE", f"/{ACTIVE}/delete")
    assert live.status == 422
    assert live.json()["errors"] == {
        "run": ["The process must be archived before it can be deleted permanently."]
    }
    gone = call(demo, "DELETE", f"/{DONE}/delete")
    assert (gone.status, gone.body) == (200, b"")
    assert call(demo, "GET", f"/{DONE}").status == 404
    assert call(demo, "DELETE", f"/{DONE}/delete").status == 404
    assert DONE not in listed(call(demo, "GET", query="archived=true"))
    with pytest.raises(KeyError):
        demo.run(DONE)
    assert [w.status for w in demo.writes] == [403, 422, 200, 404]


# --- update ------------------------------------------------------------------------------


def test_put_updates_and_clears_assignees_left_out(demo: Sandbox) -> None:
    body = json.dumps({"name": "Renamed", "summary": "s", "starred": True}).encode()
    run = call(demo, "PUT", f"/{ACTIVE}", body=body).json()["data"]
    assert (run["name"], run["summary"], run["starred"]) == ("Renamed", "s", True)
    assert (run["users"], run["groups"], run["last_updated"]) == ([], [], NOW_ZULU)
    assert demo.run(ACTIVE)["users"] == []


def test_put_can_keep_assignees(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(put_clears_assignees=False)
    run = call(demo, "PUT", f"/{ACTIVE}", body=b'{"groups": ["ops"]}').json()["data"]
    assert (run["users"], run["groups"]) == ([101, 102], ["ops"])


def test_put_sends_assignees_explicitly(demo: Sandbox) -> None:
    body = b'{"name": "x", "users": [7], "groups": ["g"], "owner_id": 7, "prerun": {"f": 1}}'
    run = call(demo, "PUT", f"/{ACTIVE}", body=body).json()["data"]
    assert (run["users"], run["groups"], run["owner_id"], run["prerun"]) == (
        [7],
        ["g"],
        7,
        {"f": 1},
    )


def test_put_on_an_archived_run_is_422(demo: Sandbox) -> None:
    response = call(demo, "PUT", f"/{DONE}", body=b'{"name": "x"}')
    message = "Cannot update archived processes."
    assert (response.status, response.json()) == (
        422,
        {"error": True, "message": message, "errors": {"run": [message]}},
    )


def test_put_validation_reports_every_field(demo: Sandbox) -> None:
    body = {"name": "n" * 551, "owner_id": "7", "starred": "yes", "users": ["a"], "groups": [1]}
    response = call(demo, "PUT", f"/{ACTIVE}", body=json.dumps(body).encode())
    assert response.status == 422
    assert response.json() == {
        "error": True,
        "errors": {
            "name": ["The name may not be greater than 550 characters."],
            "owner_id": ["The owner id must be an integer."],
            "starred": ["The starred field must be true or false."],
            "users": ["The users must be a list of user ids."],
            "groups": ["The groups must be a list of group ids."],
        },
    }
    assert demo.run(ACTIVE)["name"] == "Client onboarding - Globex Corporation"
    assert call(demo, "PUT", f"/{ACTIVE}", body=b'{"name": "' + b"n" * 550 + b'"}').status == 200


def test_put_with_bad_json(demo: Sandbox) -> None:
    assert call(demo, "PUT", f"/{ACTIVE}", body=b"{name").status == 400
    assert call(demo, "PUT", f"/{ACTIVE}", body=b"[1]").status == 422
    assert demo.run(ACTIVE)["users"] == [101, 102]


# --- rate limit, latency -------------------------------------------------------------------


def test_rate_limit_per_rolling_minute(demo: Sandbox, clock: Clock) -> None:
    demo.behaviour = Behaviour(rate_limit=3)
    remaining = []
    for _ in range(3):
        response = call(demo, "GET", f"/{ACTIVE}")
        remaining.append(response.headers["X-RateLimit-Remaining"])
        clock.now += 10
    assert remaining == ["2", "1", "0"]
    assert call(demo, "GET", headers={}).status == 401  # unauthenticated: not counted
    refused = call(demo, "DELETE", f"/{ACTIVE}")
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "30"  # the first request leaves the window then
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert "message" in refused.json()
    assert not demo.is_archived(ACTIVE)
    clock.now += 30
    assert call(demo, "DELETE", f"/{ACTIVE}").headers["X-RateLimit-Remaining"] == "0"
    demo.behaviour = Behaviour()
    assert "X-RateLimit-Remaining" not in call(demo, "GET").headers


def test_latency_is_applied_by_the_transport(demo: Sandbox) -> None:
    demo.behaviour = Behaviour(latency=0.2)
    assert call(demo, "GET").delay == 0.2  # dispatch itself never sleeps

    async def timed() -> float:
        async with httpx.AsyncClient(transport=demo.transport(), headers=HEADERS) as client:
            start = time.perf_counter()
            await client.get(f"https://sandbox.test/api/organizations/{ORG}/runs")
            return time.perf_counter() - start

    assert asyncio.run(timed()) >= 0.2


# --- faults --------------------------------------------------------------------------------


def test_status_fault_answers_instead_of_the_api(demo: Sandbox) -> None:
    demo.inject(Fault("status", status=503))
    response = call(demo, "DELETE", f"/{ACTIVE}")
    assert (response.status, response.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert not demo.is_archived(ACTIVE)
    assert demo.pending_faults == []
    assert call(demo, "DELETE", f"/{ACTIVE}").status == 200
    assert [w.status for w in demo.writes] == [503, 200]


def test_ambiguous_write_happens_then_fails(demo: Sandbox) -> None:
    demo.inject(Fault("status", status=502, after_effect=True))
    assert call(demo, "DELETE", f"/{ACTIVE}").status == 502
    assert demo.is_archived(ACTIVE)


def test_429_fault_has_retry_headers(demo: Sandbox) -> None:
    demo.inject(Fault("status", status=429, retry_after=0.5))
    response = call(demo, "GET")
    assert response.status == 429
    assert (response.headers["Retry-After"], response.headers["X-RateLimit-Remaining"]) == (
        "0.5",
        "0",
    )
    assert response.json()["code"] == "RATE_LIMIT_EXCEEDED"


def test_html_fault(demo: Sandbox) -> None:
    demo.inject(Fault("html", status=200))
    response = call(demo, "GET")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.body.startswith(b"<!DOCTYPE html>\n<html><head><title>200 OK</title>")
    demo.inject(Fault("html", status=502))
    assert b"<title>502 Bad Gateway</title>" in call(demo, "GET").body


def test_truncated_fault_cuts_the_real_answer(demo: Sandbox) -> None:
    whole = call(demo, "GET", f"/{ACTIVE}").body
    demo.inject(Fault("truncated"))
    cut = call(demo, "GET", f"/{ACTIVE}")
    assert cut.status == 200
    assert cut.body == whole[: len(whole) // 2]
    with pytest.raises(json.JSONDecodeError):
        cut.json()


def test_missing_archived_at_and_wrong_id_faults(demo: Sandbox) -> None:
    demo.inject(Fault("missing_archived_at", path_contains="/runs/"))
    demo.inject(Fault("wrong_id", method="GET"))
    missing = call(demo, "DELETE", f"/{ACTIVE}").json()["data"]
    assert "archived_at" not in missing
    assert demo.is_archived(ACTIVE)  # the write itself happened
    wrong = call(demo, "GET", query="per_page=2").json()["data"]
    assert [run["id"] for run in wrong] == [IDS[1][16:] + IDS[1][:16], IDS[3][16:] + IDS[3][:16]]


def test_faults_match_method_and_path_and_count_down(demo: Sandbox) -> None:
    demo.inject(Fault("status", method="put", path_contains="/activate", times=2, status=500))
    demo.inject(Fault("status", status=418))
    assert call(demo, "GET", f"/{DONE}").status == 418  # the first fault did not match
    assert call(demo, "PUT", f"/{DONE}").status == 422  # no /activate in the path
    assert demo.pending_faults == [
        Fault("status", method="put", path_contains="/activate", times=2, status=500)
    ]
    statuses = [call(demo, "PUT", f"/{DONE}/activate").status for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert demo.pending_faults == []


def test_fault_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown fault kind 'hang'"):
        Fault("hang")
    with pytest.raises(ValueError, match="a timeout fault needs a delay"):
        Fault("timeout")
    with pytest.raises(ValueError, match="times >= 1"):
        Fault("drop", times=0)


def test_behaviour_values_are_checked() -> None:
    with pytest.raises(ValueError, match="archived_get must be 200 or 404"):
        Behaviour(archived_get=410)
    with pytest.raises(ValueError, match='noop_write must be "200", "404" or "422"'):
        Behaviour(noop_write="204")


def test_drop_and_slow_through_the_mock_transport(demo: Sandbox) -> None:
    demo.inject(Fault("drop", method="DELETE", after_effect=True))
    demo.inject(Fault("slow", delay=0.5))
    url = f"https://sandbox.test/api/organizations/{ORG}/runs"

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=demo.transport(), headers=HEADERS) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.delete(f"{url}/{ACTIVE}")
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url, timeout=0.05)

    asyncio.run(scenario())
    assert demo.is_archived(ACTIVE)
    assert [entry.status for entry in demo.requests] == [0, 200]


def test_mock_transport_walks_pages_by_links(demo: Sandbox) -> None:
    async def walk() -> list[str]:
        seen: list[str] = []
        transport = demo.transport()
        async with httpx.AsyncClient(transport=transport, headers=HEADERS) as client:
            url: str | None = (
                f"https://sandbox.test/api/organizations/{ORG}/runs?per_page=4&archived=true"
            )
            while url:
                body = (await client.get(url)).json()
                seen += [run["id"] for run in body["data"]]
                links = body["meta"]["pagination"]["links"]
                url = links.get("next") if isinstance(links, dict) else None
        return seen

    assert asyncio.run(walk()) == list(IDS)
    assert [entry.query.get("page") for entry in demo.requests] == [None, "2", "3"]


# --- state helpers ---------------------------------------------------------------------------


def test_set_archived_is_silent_and_indexes_follow(demo: Sandbox) -> None:
    demo.set_archived(ACTIVE, True)
    demo.set_archived(DONE, False)
    assert (demo.is_archived(ACTIVE), demo.is_archived(DONE)) == (True, False)
    assert demo.run(ACTIVE)["archived_at"] == NOW_ZULU
    assert demo.requests == []
    assert listed(call(demo, "GET", query="archived=only")) == [ACTIVE, IDS[8], IDS[9]]
    with pytest.raises(KeyError):
        demo.is_archived(UNKNOWN)


def test_add_runs_refuses_duplicates(demo: Sandbox) -> None:
    with pytest.raises(ValueError, match=ACTIVE):
        demo.add_runs([SandboxRun(id="e" * 32, name="new"), SandboxRun(id=ACTIVE, name="dup")])
    assert "e" * 32 not in demo.run_ids()  # nothing added
    with pytest.raises(ValueError, match="not 32 lowercase hex"):
        SandboxRun(id="E" * 32, name="upper")


def test_behaviour_can_be_replaced_between_requests(demo: Sandbox) -> None:
    demo.behaviour = replace(demo.behaviour, archived_get=404)
    assert call(demo, "GET", f"/{DONE}").status == 404
    demo.behaviour = replace(demo.behaviour, archived_get=200)
    assert call(demo, "GET", f"/{DONE}").status == 200


def test_concurrent_dispatch_is_consistent(demo: Sandbox) -> None:
    def toggle(run_id: str) -> None:
        for _ in range(50):
            call(demo, "DELETE", f"/{run_id}")
            call(demo, "PUT", f"/{run_id}/activate")

    threads = [threading.Thread(target=toggle, args=(run_id,)) for run_id in LIVE]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(demo.requests) == 7 * 100
    assert all(entry.status == 200 for entry in demo.requests)
    assert listed(call(demo, "GET")) == list(LIVE)


# --- the real HTTP server --------------------------------------------------------------------


@pytest.fixture
def api_url(demo: Sandbox) -> Iterator[str]:
    with serve(demo) as running:
        assert running.url == f"http://127.0.0.1:{running.port}/api"
        assert running.host == "127.0.0.1"
        yield running.url


def test_server_latency_counts_from_the_request_line(demo: Sandbox, api_url: str) -> None:
    demo.behaviour = Behaviour(latency=0.2)
    connection = http.client.HTTPConnection("127.0.0.1", httpx.URL(api_url).port, timeout=5)
    try:
        for _ in range(2):  # the first request of a connection and one that waited for it
            start = time.perf_counter()
            connection.request("GET", f"/api/organizations/{ORG}/runs/{ACTIVE}", headers=HEADERS)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert time.perf_counter() - start >= 0.2
            time.sleep(0.1)  # idle on the kept-alive connection: not part of the next latency
    finally:
        connection.close()


def test_server_keeps_connections_alive_on_both_prefixes(demo: Sandbox, api_url: str) -> None:
    port = httpx.URL(api_url).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        sockets = []
        for path in (f"/api/organizations/{ORG}/runs/{ACTIVE}", f"/organizations/{ORG}/runs"):
            connection.request("GET", path, headers=HEADERS)
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200
            assert not response.will_close
            assert "data" in body
            sockets.append(connection.sock)
        connection.request("DELETE", f"/organizations/{ORG}/runs/{ACTIVE}", headers=HEADERS)
        assert json.loads(connection.getresponse().read())["data"]["status"] == "archived"
        assert connection.sock is sockets[0]
    finally:
        connection.close()
    assert sockets[0] is sockets[1] is not None
    assert [entry.status for entry in demo.requests] == [200, 200, 200]
    assert demo.is_archived(ACTIVE)


def test_server_links_are_usable_as_is(demo: Sandbox, api_url: str) -> None:
    seen: list[str] = []
    with httpx.Client(headers={k: v for k, v in HEADERS.items() if k != "Host"}) as client:
        url: str | None = f"{api_url}/organizations/{ORG}/runs?per_page=3&archived=true"
        while url:
            response = client.get(url)
            assert response.status_code == 200
            body = response.json()
            seen += [run["id"] for run in body["data"]]
            links = body["meta"]["pagination"]["links"]
            url = links.get("next") if isinstance(links, dict) else None
            if url:
                assert url.startswith(api_url)
    assert seen == list(IDS)
    assert len(demo.requests) == 4


def test_server_drop_fault_closes_the_connection(demo: Sandbox, api_url: str) -> None:
    demo.inject(Fault("drop", method="PUT", after_effect=True))
    headers = {k: v for k, v in HEADERS.items() if k != "Host"}
    with httpx.Client(base_url=api_url, headers=headers) as client:
        assert client.get(f"/organizations/{ORG}/runs/{DONE}").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.put(f"/organizations/{ORG}/runs/{DONE}/activate")
        after = client.get(f"/organizations/{ORG}/runs/{DONE}").json()["data"]
    assert after["archived_at"] is None
    assert [entry.status for entry in demo.requests] == [200, 0, 200]


def test_serve_forever_reports_its_url_and_stops_on_interrupt(demo: Sandbox) -> None:
    seen: dict[str, Any] = {}

    def ready(url: str) -> None:
        def probe() -> None:
            try:
                seen["status"] = httpx.get(f"{url}/me", headers=HEADERS, timeout=5).status_code
            finally:
                _thread.interrupt_main()  # what Ctrl-C does

        seen["url"] = url
        threading.Thread(target=probe, daemon=True).start()

    serve_forever(demo, "127.0.0.1", 0, ready)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", seen["url"])
    assert seen["status"] == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{seen['url']}/me", headers=HEADERS, timeout=1)

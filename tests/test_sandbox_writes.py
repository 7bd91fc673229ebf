"""The sandbox's writes (archive, activate, permanent delete, update), its rate limit and
latency, injected faults and the state helpers tests use."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import replace
from typing import Any

import httpx
import pytest

from reconcile.sandbox import (
    Behaviour,
    Fault,
    Sandbox,
    SandboxRun,
)
from tests.demo import ACTIVE, DONE, IDS, LIVE, ORG, UNKNOWN
from tests.helpers import SANDBOX_HEADERS, Clock, call, listed

HEADERS = SANDBOX_HEADERS
NOW_ZULU = "2026-03-02T09:00:00.000Z"
NOT_FOUND = {"error": True, "message": "Resource not found", "code": "RESOURCE_NOT_FOUND"}


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
    assert (run["status"], run["archived_at"]) == ("complete", None)
    assert run["completed_at"] == before["completed_at"] is not None


ALREADY = "The process is already archived."
NOT_ARCHIVED = "The process is not archived."


def noop_body(noop: str, reason: str) -> dict[str, Any]:
    """The error body the noop_write switch answers with (200 answers the run instead)."""
    if noop == "404":
        return NOT_FOUND
    if noop == "422":
        return {"error": True, "message": reason, "errors": {"run": [reason]}}
    code = {"400": "BAD_REQUEST", "409": "CONFLICT"}[noop]
    return {"error": True, "message": reason, "code": code}


@pytest.mark.parametrize("noop", ["200", "400", "404", "409", "422"])
def test_archiving_an_archived_run(demo: Sandbox, noop: str) -> None:
    demo.behaviour = Behaviour(noop_write=noop)
    before = demo.run(DONE)
    response = call(demo, "DELETE", f"/{DONE}")
    assert response.status == int(noop)
    expected = {"data": before} if noop == "200" else noop_body(noop, ALREADY)
    assert response.json() == expected
    assert demo.run(DONE) == before
    assert [w.status for w in demo.writes] == [int(noop)]


@pytest.mark.parametrize("noop", ["200", "400", "404", "409", "422"])
def test_activating_a_live_run(demo: Sandbox, noop: str) -> None:
    demo.behaviour = Behaviour(noop_write=noop)
    before = demo.run(ACTIVE)
    response = call(demo, "PUT", f"/{ACTIVE}/activate")
    assert response.status == int(noop)
    expected = {"data": before} if noop == "200" else noop_body(noop, NOT_ARCHIVED)
    assert response.json() == expected
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
    with pytest.raises(ValueError, match="noop_write must be one of 200, 400, 404, 409, 422"):
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

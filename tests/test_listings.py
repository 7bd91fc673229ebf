"""Listings check themselves: against a small server of the test's own whose listings behave in
every way the sources leave open, a read holds exactly the server's runs or stops with an error
naming the request, in a bounded number of requests. Also: runs that move while the listings are
read, runs that are gone, no-op writes answered 400 or 409, `%20` and `X-Request-Id`."""

from __future__ import annotations

import asyncio
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from jsonschema import Draft202012Validator

from reconcile import pipeline
from reconcile.apply import apply_plan
from reconcile.config import TOKEN_ENV, Flags, Target, Token
from reconcile.domain import RunState
from reconcile.errors import ApiError, BadResponseError, UnknownRunsError
from reconcile.listing import list_org_runs
from reconcile.plan import build_plan
from reconcile.render import render_plan_json, render_plan_markdown
from reconcile.sandbox import Sandbox
from reconcile.state import load_state
from reconcile.tallyfy import TallyfyClient, observe
from reconcile.tallyfy.listing import MAX_RUNS, ListingError
from reconcile.tallyfy.observe import read_state
from tests.demo import DEMO_IDS, ORG, TOKEN
from tests.helpers import sandbox_connect, write_state

API = "https://listings.test/api"
ARCHIVED_AT = "2026-01-10T09:00:00.000Z"
Archived = Literal["both", "status", "archived"]


def run_id(number: int) -> str:
    return f"{number:032x}"


@dataclass
class Server:
    """An organization whose listings can be as odd as the sources allow.

    `archived_by`: which parameter lists archived runs ("both", only "status", only "archived";
    the other one is ignored and the default listing comes back). `default_has_archived`: the
    default listing also holds archived runs. `page_size`: runs served per page whatever
    `per_page` asks (None: per_page, capped at 100). `pages_for`: the page size `total_pages` is
    computed for (None: the one served). `links`: "next" (a next link), "null", "{}" or "[]".
    `total_pages`/`total`: False leaves them out. `grow`: runs added to `total` on each page.
    `extra_total`: runs `total` counts that no page holds. `get_archived_404`: GET answers 404
    for archived runs. `noop`: the status of a write that changes nothing. `on_list`: called
    with the listing query before each listing page is answered.
    """

    archived: dict[str, bool]
    archived_by: Archived = "both"
    default_has_archived: bool = False
    page_size: int | None = None
    pages_for: int | None = None
    links: str = "next"
    total_pages: bool = True
    total: bool = True
    grow: int = 0
    extra_total: int = 0
    get_archived_404: bool = False
    noop: int = 200
    request_id: str | None = "req-1"
    on_list: Callable[[dict[str, str]], None] | None = None
    seen: list[str] = field(default_factory=list)

    def listing(self, query: dict[str, str]) -> list[str]:
        archived = query.get("archived") == "only" and self.archived_by in ("both", "archived")
        archived = archived or (
            query.get("status") == "archived" and self.archived_by in ("both", "status")
        )
        if archived:
            return [r for r, a in self.archived.items() if a]
        return [r for r, a in self.archived.items() if self.default_has_archived or not a]

    def run(self, run: str) -> dict[str, Any]:
        return {
            "id": run,
            "name": f"Run {run[-4:]}",
            "status": "active",
            "archived_at": ARCHIVED_AT if self.archived[run] else None,
        }

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.raw_path.decode()}")
        headers = {"X-Request-Id": self.request_id} if self.request_id else {}
        path = request.url.path.removeprefix(f"/api/organizations/{ORG}/runs")
        if path == "" and request.method == "GET":
            return httpx.Response(200, json=self.page(request), headers=headers)
        run, _, action = path.strip("/").partition("/")
        if run not in self.archived:
            return httpx.Response(404, json={"message": "Resource not found"}, headers=headers)
        if request.method == "GET":
            if self.archived[run] and self.get_archived_404:
                return httpx.Response(404, json={"message": "Resource not found"}, headers=headers)
            return httpx.Response(200, json={"data": self.run(run)}, headers=headers)
        target = request.method == "DELETE"
        if self.archived[run] == target and self.noop != 200:
            return httpx.Response(self.noop, json={"message": "Nothing to do"}, headers=headers)
        assert action == ("" if target else "activate")
        self.archived[run] = target
        return httpx.Response(200, json={"data": self.run(run)}, headers=headers)

    def page(self, request: httpx.Request) -> dict[str, Any]:
        query = dict(parse_qsl(request.url.query.decode()))
        if self.on_list is not None:
            self.on_list(query)
        runs = self.listing(query)
        size = self.page_size or min(int(query.get("per_page", 10)), 100)
        number = int(query.get("page", 1))
        chosen = runs[(number - 1) * size : number * size]
        total = len(runs) + self.extra_total + self.grow * number
        pages = max(math.ceil(total / (self.pages_for or size)), 1)
        pagination: dict[str, Any] = {
            "count": len(chosen),
            "per_page": size,
            "current_page": number,
        }
        if self.total:
            pagination["total"] = total
        if self.total_pages:
            pagination["total_pages"] = pages
        nxt = f"{API}/organizations/{ORG}/runs?{urlencode({**query, 'page': number + 1})}"
        pagination["links"] = {
            "next": {"next": nxt if number < pages else None},
            "null": None,
            "{}": {},
            "[]": [],
        }[self.links]
        return {"data": [self.run(r) for r in chosen], "meta": {"pagination": pagination}}

    def client(self, parallelism: int = 4) -> TallyfyClient:
        return TallyfyClient(
            Target(API, ORG),
            Token(TOKEN),
            transport=httpx.MockTransport(self.handle),
            parallelism=parallelism,
        )

    @property
    def listed(self) -> int:
        return sum(
            1 for line in self.seen if line.startswith(f"GET /api/organizations/{ORG}/runs?")
        )


def org(active: int = 230, archived: int = 120) -> dict[str, bool]:
    return {run_id(n): n >= active for n in range(active + archived)}


def run_async(work: Any) -> Any:
    return asyncio.run(asyncio.wait_for(work, timeout=20))


def read_org(server: Server) -> dict[str, RunState]:
    async def read() -> dict[str, RunState]:
        async with server.client() as client:
            return {run.run_id: run.state for run in await list_org_runs(client)}

    result: dict[str, RunState] = run_async(read())
    return result


def truth(server: Server) -> dict[str, RunState]:
    return {r: RunState.ARCHIVED if a else RunState.ACTIVE for r, a in server.archived.items()}


# --- every listing the sources allow is read whole ---------------------------------------------

READABLE: dict[str, dict[str, Any]] = {
    "documented": {},
    "only status=archived": {"archived_by": "status"},
    "only archived=only": {"archived_by": "archived"},
    "default listing holds archived runs": {"default_has_archived": True},
    "default has archived, only status": {"default_has_archived": True, "archived_by": "status"},
    "links null, no total_pages": {"links": "null", "total_pages": False},
    "links {}, no total_pages": {"links": "{}", "total_pages": False},
    "links [], no total_pages": {"links": "[]", "total_pages": False},
    "total_pages for 10 a page": {"pages_for": 10},
    "total_pages for 250 a page": {"pages_for": 250},
    "total_pages for 250, no links": {"pages_for": 250, "links": "null"},
    "per_page capped at 20": {"page_size": 20},
    "fixed pages of 10, total_pages for 100": {"page_size": 10, "pages_for": 100},
    "no count: total_pages": {"total": False},
    "no count: next links only": {"total": False, "total_pages": False},
}


@pytest.mark.parametrize("behaviour", READABLE.values(), ids=READABLE.keys())
def test_a_listing_is_read_whole_however_it_paginates(behaviour: dict[str, Any]) -> None:
    server = Server(org(), **behaviour)
    assert read_org(server) == truth(server)


@pytest.mark.parametrize("behaviour", READABLE.values(), ids=READABLE.keys())
def test_plan_by_listing_sees_every_declared_run(behaviour: dict[str, Any], tmp_path: Path) -> None:
    server = Server(org(), **behaviour)
    declared = {r: "active" for r in list(server.archived)[::7]}
    state = load_state(write_state(tmp_path / "state.toml", declared))

    async def read() -> dict[str, RunState]:
        async with server.client() as client:
            seen = await observe(client, state.runs, "list")
        return {r: run.state for r, run in seen.items()}

    assert run_async(read()) == {r: truth(server)[r] for r in declared}
    assert not [line for line in server.seen if not line.startswith("GET /api/")]


# --- or not at all ----------------------------------------------------------------------------


def refused(server: Server) -> ListingError:
    with pytest.raises(ListingError) as caught:
        read_org(server)
    return caught.value


def test_a_count_no_page_holds_is_an_error_naming_the_request() -> None:
    server = Server(org(archived=0), extra_total=5, total_pages=False, links="null")

    async def read() -> None:
        async with server.client() as client:
            await client.list_runs(None)

    with pytest.raises(ListingError) as caught:
        run_async(read())
    assert "counts 235 runs but its pages hold only 230" in str(caught.value)
    assert f"(request: GET /organizations/{ORG}/runs)" in str(caught.value)
    assert server.listed == 3 + 1  # the pages the count needs, and one more


def test_an_archived_listing_no_parameter_gives_is_an_error_naming_both_requests() -> None:
    server = Server(org(), archived_by="archived")
    server.archived_by = "none"  # type: ignore[assignment]
    error = refused(server)
    assert f"GET /organizations/{ORG}/runs?archived=only&page=1 answered 100 run(s)" in str(error)
    assert f"GET /organizations/{ORG}/runs?status=archived&page=1 answered 100 run(s)" in str(error)


@pytest.mark.parametrize("archived_by", ["status", "archived"])
def test_an_organization_whose_runs_are_all_archived_is_read_whole(archived_by: Archived) -> None:
    """The default listing is empty, so a server ignoring one parameter answers it empty too;
    the other parameter is asked before the organization is taken to have no archived run."""
    server = Server(org(active=0, archived=150), archived_by=archived_by)
    assert read_org(server) == truth(server)


def test_a_next_link_looping_to_the_same_page_stops() -> None:
    server = Server(org(), total=False, total_pages=False)
    loop = f"{API}/organizations/{ORG}/runs?per_page=100&page=2"
    original = server.page

    def looping(request: httpx.Request) -> dict[str, Any]:
        answer = original(request)
        answer["meta"]["pagination"]["links"] = {"next": loop}
        return answer

    server.page = looping  # type: ignore[method-assign]
    assert "do not end" in str(refused(server))
    assert server.listed <= 2 + 2


@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:99999/api/runs?page=2",
        "http://127.0.0.1:port/api/runs?page=2",
        "http://127.0.0.1/api/runs?page=2\nX-Injected: 1",
        "http://[::1/api/runs?page=2",
    ],
    ids=["port out of range", "port not a number", "line break", "broken IPv6"],
)
def test_a_next_link_that_is_no_url_is_a_bad_answer(link: str) -> None:
    server = Server(org(), total=False, total_pages=False)
    original = server.page

    def broken(request: httpx.Request) -> dict[str, Any]:
        answer = original(request)
        answer["meta"]["pagination"]["links"] = {"next": link}
        return answer

    server.page = broken  # type: ignore[method-assign]

    async def read() -> None:
        async with server.client() as client:
            await client.list_runs(None)

    with pytest.raises(BadResponseError, match="not a usable URL"):
        run_async(read())
    assert server.listed == 1


@pytest.mark.parametrize(
    ("behaviour", "most"),
    [
        ({"total": False, "pages_for": 1e-4}, 1),  # millions of pages and no count
        ({"extra_total": MAX_RUNS}, 1),  # a count beyond any organization
        ({"grow": 100}, 3 + 2 + 2),  # a count that grows by a page on every page
    ],
    ids=["millions of pages", "a huge count", "a growing count"],
)
def test_a_listing_that_never_ends_stops_after_a_bounded_number_of_requests(
    behaviour: dict[str, Any], most: int
) -> None:
    server = Server(org(active=230, archived=0), **behaviour)

    async def read() -> None:
        async with server.client() as client:
            await client.list_runs(None)

    with pytest.raises(ListingError):
        run_async(read())
    assert server.listed <= most


# --- moved and gone runs ----------------------------------------------------------------------


def test_a_run_that_moves_while_the_listings_are_read_is_read_again(tmp_path: Path) -> None:
    server = Server(org(active=5, archived=2))
    moving = run_id(0)

    def archive_once(query: dict[str, str]) -> None:
        if "archived" in query or "status" in query:
            server.archived[moving] = True

    server.on_list = archive_once
    state = load_state(
        write_state(tmp_path / "state.toml", {moving: "active", run_id(5): "archived"})
    )

    async def read() -> Any:
        async with server.client(parallelism=1) as client:
            return await read_state(client, state.runs, "list")

    seen = run_async(read())
    assert seen.moved == (moving,)
    assert seen.runs[moving].state is RunState.ARCHIVED
    assert f"GET /api/organizations/{ORG}/runs/{moving}" in server.seen
    assert read_org(server) == truth(server)


@pytest.mark.parametrize("fetch", ["get", "list", "auto"])
@pytest.mark.parametrize("get_archived_404", [False, True])
def test_a_run_neither_get_nor_either_listing_knows_is_gone(
    fetch: Literal["get", "list", "auto"], get_archived_404: bool, tmp_path: Path
) -> None:
    server = Server(org(active=5, archived=3), get_archived_404=get_archived_404)
    gone_active, gone_archived = run_id(900), run_id(901)
    declared = {
        run_id(1): "active",
        run_id(6): "archived",
        gone_archived: "archived",
        gone_active: "active",
    }
    state = load_state(write_state(tmp_path / "state.toml", declared))

    async def read() -> Any:
        async with server.client() as client:
            return await read_state(client, state.runs, fetch)

    seen = run_async(read())
    assert [run.run_id for run in seen.gone] == [gone_archived, gone_active]
    assert [run.source.line for run in seen.gone] == [4, 5]
    assert {r: run.state for r, run in seen.runs.items()} == {
        run_id(1): RunState.ACTIVE,
        run_id(6): RunState.ARCHIVED,
    }
    with pytest.raises(UnknownRunsError, match=gone_active):
        run_async(observe(server.client(), state.runs, fetch))


# --- writes and requests ----------------------------------------------------------------------


@pytest.mark.parametrize("noop", [400, 404, 409, 422])
def test_a_no_op_write_refused_is_settled_by_reading_the_run(noop: int, tmp_path: Path) -> None:
    """The run was archived after the plan read it: the DELETE is refused as a no-op, a re-read
    shows it archived, and the change counts as done, with one write."""
    server = Server(org(active=3, archived=0), noop=noop)
    target = run_id(0)
    state = load_state(write_state(tmp_path / "state.toml", {target: "archived"}))

    async def work() -> Any:
        async with server.client() as client:
            plan = build_plan(
                state, await observe(client, state.runs, "get"), org_id=ORG, api_url=API
            )
            server.archived[target] = True
            return await apply_plan(client, plan)

    report = run_async(work())
    assert [(r.ok, r.detail, r.writes) for r in report.results] == [
        (True, "archived (confirmed by re-reading)", 1)
    ]
    assert [line for line in server.seen if line.startswith("DELETE")] == [
        f"DELETE /api/organizations/{ORG}/runs/{target}"
    ]


def test_query_values_are_sent_with_percent_20() -> None:
    server = Server(org(active=1, archived=0))

    async def read() -> None:
        async with server.client() as client:
            await client.list_page(1, {"q": "quarterly review + audit"})

    run_async(read())
    assert server.seen == [
        f"GET /api/organizations/{ORG}/runs?q=quarterly%20review%20%2B%20audit&page=1&per_page=100"
    ]


@pytest.mark.parametrize(
    ("sent", "shown"), [("abc-123", "abc-123"), (None, None), ("evil\u001b[2Jid", None)]
)
def test_errors_name_the_request_and_its_request_id(sent: str | None, shown: str | None) -> None:
    server = Server(org(active=1, archived=0), request_id=sent)

    async def read() -> None:
        async with server.client() as client:
            await client.archive(run_id(5))

    with pytest.raises(ApiError) as caught:
        run_async(read())
    message = str(caught.value)
    request = f"(request: DELETE /organizations/{ORG}/runs/{run_id(5)}, HTTP 404"
    assert request + (f", X-Request-Id {shown})" if shown else ")") in message
    assert "\u001b" not in message


def test_a_gone_archived_run_is_in_every_output(sandbox: Sandbox, tmp_path: Path) -> None:
    """Through the library pipeline: the plan succeeds, the gone run is in its warnings, in the
    JSON `gone` list (valid against the schema) and in the Markdown, and it is not planned."""
    unknown = "e" * 32
    path = write_state(
        tmp_path / "state.toml",
        {DEMO_IDS[0]: "active", unknown: "archived", DEMO_IDS[1]: "archived"},
    )
    flags = Flags(org_id=ORG, api_url="https://sandbox.test/api")
    plan = pipeline.plan(path, flags, environ={TOKEN_ENV: TOKEN}, connect=sandbox_connect(sandbox))
    assert [run.run_id for run in plan.gone] == [unknown]
    assert [change.run_id for change in plan.changes] == [DEMO_IDS[1]]
    assert unknown not in {run.run_id for run in plan.runs}
    assert any(f"{path}:3: run {unknown} is declared archived" in w for w in plan.warnings)
    rendered = io.StringIO()
    render_plan_json(plan, rendered)
    document = json.loads(rendered.getvalue())
    schema = files("reconcile").joinpath("schema/plan.schema.json").read_text()
    Draft202012Validator(json.loads(schema)).validate(document)
    assert document["gone"] == [{"run_id": unknown, "declared": "archived", "source": f"{path}:3"}]
    markdown = io.StringIO()
    render_plan_markdown(plan, markdown)
    assert f"run {unknown} is declared archived" in markdown.getvalue()


def test_import_reads_a_run_that_moved_while_it_was_listed_again() -> None:
    server = Server(org(active=5, archived=2))
    moving = run_id(0)

    def archive_once(query: dict[str, str]) -> None:
        if "archived" in query or "status" in query:
            server.archived[moving] = True

    server.on_list = archive_once

    async def read() -> dict[str, RunState]:
        async with server.client(parallelism=1) as client:
            return {run.run_id: run.state for run in await list_org_runs(client)}

    assert run_async(read()) == truth(server)
    assert f"GET /api/organizations/{ORG}/runs/{moving}" in server.seen

"""Every sandbox switch the client meets, alone and where switches interact: plan, apply, a clean
re-plan, `plan --show-unmanaged` and `import`, end to end through the library pipeline against the
in-process sandbox. Each case asserts the exact writes, the final state, that the re-plan is
empty, and that the import and the unmanaged runs hold exactly the server's runs."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconcile import pipeline
from reconcile.apply import ApplyReport, apply_plan
from reconcile.config import TOKEN_ENV, Fetch, Flags, resolve
from reconcile.importer import Mode
from reconcile.sandbox import Behaviour, Sandbox, SandboxRun
from reconcile.selection import Selection
from reconcile.state import load_state
from reconcile.tallyfy import RetryPolicy
from tests.demo import ORG, TOKEN
from tests.helpers import sandbox_connect, write_state

ACTIVE, ARCHIVED = 230, 120
API = "https://sandbox.test/api"
ENVIRON = {TOKEN_ENV: TOKEN}
FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.001, max_retry_after=0.5)

SWITCHES: dict[str, dict[str, Any]] = {
    "documented": {},
    "GET of an archived run is 404": {"archived_get": 404},
    "archive leaves status alone": {"archive_sets_status": False},
    "only status=archived lists archived runs": {"archived_listing": "status"},
    "only archived=only lists archived runs": {"archived_listing": "archived"},
    "the default listing includes archived runs": {"default_lists_archived": True},
    "links null": {"pagination_links": "null"},
    "links {}": {"pagination_links": "empty"},
    "no total_pages": {"total_pages": "absent"},
    "total_pages for 10 a page": {"total_pages": 10},
    "total_pages for 250 a page": {"total_pages": 250},
    "per_page capped at 20": {"per_page_cap": 20},
    "per_page ignored, pages of 10": {"per_page_ignored": True},
    "several rate windows, headers of the first": {"rate_windows": ("60/1s:get", "80/1s")},
    "several rate windows, headers of the second": {
        "rate_windows": ("60/1s:get", "80/1s"),
        "rate_limit_headers": 2,
    },
    "several rate windows, no headers": {
        "rate_windows": ("60/1s:get", "80/1s"),
        "rate_limit_headers": 0,
    },
    # Switches for what reconcile never does (answer without X-Tallyfy-Client, permanent delete,
    # PUT /runs/{id}, list without per_page): each must change nothing.
    "missing client header is 404": {"missing_client_header": 404},
    "not an administrator": {"admin": False},
    "PUT keeps assignees": {"put_clears_assignees": False},
    "default page size 20": {"per_page_default": 20},
    # Where switches interact:
    "status=archived only, and the default listing includes archived runs": {
        "archived_listing": "status",
        "default_lists_archived": True,
    },
    "status=archived only, and GET of an archived run is 404": {
        "archived_listing": "status",
        "archived_get": 404,
    },
    "links {} and no total_pages": {"pagination_links": "empty", "total_pages": "absent"},
    "links null and total_pages for 250": {"pagination_links": "null", "total_pages": 250},
    "per_page capped at 20 and total_pages for 100": {"per_page_cap": 20, "total_pages": 100},
    "pages of 10, no links, no total_pages": {
        "per_page_ignored": True,
        "pagination_links": "empty",
        "total_pages": "absent",
    },
    "archived=only only, default includes archived, links null": {
        "archived_listing": "archived",
        "default_lists_archived": True,
        "pagination_links": "null",
    },
}


def run_id(number: int) -> str:
    return f"{number:032x}"


def organization(behaviour: Behaviour) -> Sandbox:
    runs = [
        SandboxRun(
            id=run_id(n),
            name=f"Run {n}",
            archived_at="2026-01-10T09:00:00.000Z" if n >= ACTIVE else None,
        )
        for n in range(ACTIVE + ARCHIVED)
    ]
    return Sandbox(ORG, TOKEN, runs, behaviour)


def truth(sandbox: Sandbox) -> dict[str, str]:
    return {run: "archived" if sandbox.is_archived(run) else "active" for run in sandbox.run_ids()}


CASES = [
    pytest.param(switches, fetch, id=f"{fetch}-{name}")
    for name, switches in SWITCHES.items()
    # Under real one-second windows, reading every declared run by GET only takes longer.
    for fetch in (("auto", "list") if "rate_windows" in switches else ("auto", "list", "get"))
]


@pytest.mark.parametrize(("switches", "fetch"), CASES)
def test_plan_apply_replan_unmanaged_and_import(
    switches: dict[str, Any], fetch: Fetch, tmp_path: Path
) -> None:
    sandbox = organization(replace(Behaviour(), **switches))
    connect = sandbox_connect(sandbox, retry=FAST)
    declared_numbers = [*range(0, ACTIVE, 3), *range(ACTIVE, ACTIVE + ARCHIVED, 2)]
    flipped = set(declared_numbers[::5])
    declared = {
        run_id(n): ("active" if (n >= ACTIVE) == (n in flipped) else "archived")
        for n in declared_numbers
    }
    path = write_state(tmp_path / "state.toml", declared, org_id=ORG)
    flags = Flags(
        api_url=API, org_id=ORG, fetch=fetch, max_archive_percent=100, max_activate_percent=100
    )
    before = truth(sandbox)

    planned = pipeline.plan(path, flags, environ=ENVIRON, connect=connect, show_unmanaged=True)
    assert {change.run_id for change in planned.changes} == {run_id(n) for n in flipped}
    assert planned.gone == ()
    assert planned.unmanaged is not None
    assert {run.run_id: run.state.value for run in planned.unmanaged} == {
        run: state for run, state in before.items() if run not in declared
    }

    sandbox.clear_log()
    applied = pipeline.apply(path, flags, environ=ENVIRON, connect=connect)
    assert applied.report is not None
    assert len(applied.report.succeeded) == len(flipped)
    writes = sorted((w.method, w.run_id) for w in sandbox.writes)
    expected = sorted(
        ("DELETE" if declared[run_id(n)] == "archived" else "PUT", run_id(n)) for n in flipped
    )
    assert writes == expected, "exactly one write per change"
    assert truth(sandbox) == {**before, **declared}

    assert pipeline.plan(path, flags, environ=ENVIRON, connect=connect).changes == ()

    output = tmp_path / "imported.toml"
    pipeline.import_runs(output, Selection(), Mode.NEW, flags, environ=ENVIRON, connect=connect)
    imported = {run.run_id: run.state.value for run in load_state(output).runs}
    assert imported == truth(sandbox)


@pytest.mark.parametrize("noop", ["200", "400", "404", "409", "422"])
@pytest.mark.parametrize("archived_get", [200, 404])
def test_a_write_that_finds_its_run_moved_is_settled(
    noop: str, archived_get: int, tmp_path: Path
) -> None:
    """The runs move to their declared state between the plan and its writes: every write is a
    no-op, answered as the switch says, and settled by re-reading the run: one write each."""
    sandbox = organization(Behaviour(noop_write=noop, archived_get=archived_get))
    connect = sandbox_connect(sandbox, retry=FAST)
    declared = {run_id(0): "archived", run_id(ACTIVE): "active", run_id(1): "active"}
    path = write_state(tmp_path / "state.toml", declared, org_id=ORG)
    flags = Flags(api_url=API, org_id=ORG)
    planned = pipeline.plan(path, flags, environ=ENVIRON, connect=connect)
    assert len(planned.changes) == 2
    sandbox.set_archived(run_id(0), True)
    sandbox.set_archived(run_id(ACTIVE), False)
    sandbox.clear_log()

    async def write() -> ApplyReport:
        async with connect(resolve(flags, environ=ENVIRON)) as client:
            return await apply_plan(client, planned)

    report = asyncio.run(asyncio.wait_for(write(), timeout=30))
    assert [(r.ok, r.writes) for r in report.results] == [(True, 1), (True, 1)]
    assert sorted((w.method, w.run_id) for w in sandbox.writes) == [
        ("DELETE", run_id(0)),
        ("PUT", run_id(ACTIVE)),
    ]
    assert {run: truth(sandbox)[run] for run in declared} == declared


def test_a_light_user_writes_nothing_and_says_so(tmp_path: Path) -> None:
    """`can_archive = false`: every write is refused with 403, one write per change and none
    again; the organization is unchanged, the re-plan shows the same changes, and the import
    still holds exactly the server's runs."""
    sandbox = organization(Behaviour(can_archive=False))
    connect = sandbox_connect(sandbox, retry=FAST)
    declared = {run_id(0): "archived", run_id(ACTIVE): "active", run_id(1): "active"}
    path = write_state(tmp_path / "state.toml", declared, org_id=ORG)
    flags = Flags(api_url=API, org_id=ORG)
    before = truth(sandbox)
    applied = pipeline.apply(path, flags, environ=ENVIRON, connect=connect)
    assert applied.report is not None
    assert [r.writes for r in applied.report.failed] == [1, 1]
    assert all("HTTP 403" in r.detail for r in applied.report.failed)
    assert sorted((w.method, w.run_id, w.status) for w in sandbox.writes) == [
        ("DELETE", run_id(0), 403),
        ("PUT", run_id(ACTIVE), 403),
    ]
    assert truth(sandbox) == before
    replanned = pipeline.plan(path, flags, environ=ENVIRON, connect=connect)
    assert {change.run_id for change in replanned.changes} == {run_id(0), run_id(ACTIVE)}
    output = tmp_path / "imported.toml"
    pipeline.import_runs(output, Selection(), Mode.NEW, flags, environ=ENVIRON, connect=connect)
    assert {run.run_id: run.state.value for run in load_state(output).runs} == before

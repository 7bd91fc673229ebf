"""The library pipeline against the in-process sandbox: observe -> plan -> apply, under every
setting of what the API docs leave open."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import pipeline
from reconcile.apply import ApplyReport, apply_plan
from reconcile.config import TOKEN_ENV, Fetch, Flags
from reconcile.errors import SafetyError, UnknownRunsError
from reconcile.plan import Action, Plan, build_plan
from reconcile.planfile import checksum
from reconcile.sandbox import Behaviour, Sandbox, SandboxRun
from reconcile.state import SafetySettings, load_state
from reconcile.tallyfy import TallyfyClient, observe
from tests.demo import DEMO_ARCHIVED, DEMO_IDS, ORG, TOKEN
from tests.helpers import client_for, numbered_runs, sandbox_connect, sandbox_states, write_state

BEHAVIOURS = [
    Behaviour(),
    Behaviour(archived_get=404),
    Behaviour(noop_write="404"),
    Behaviour(noop_write="422", archived_get=404, archive_sets_status=False),
]


async def plan_with(client: TallyfyClient, path: Path, fetch: Fetch = "auto") -> Plan:
    state = load_state(path)
    observed = await observe(client, state.runs, fetch)
    return build_plan(state, observed, org_id=ORG, api_url="https://sandbox.test/api")


async def plan_apply_replan(
    sandbox: Sandbox, path: Path, fetch: Fetch = "auto"
) -> tuple[Plan, ApplyReport, Plan]:
    async with client_for(sandbox) as client:
        first = await plan_with(client, path, fetch)
        report = await apply_plan(client, first)
        second = await plan_with(client, path, fetch)
    return first, report, second


def test_demo_plan_matches_the_example(sandbox: Sandbox) -> None:
    example = Path(__file__).parent.parent / "state.example.toml"

    async def run() -> Plan:
        async with client_for(sandbox) as client:
            return await plan_with(client, example)

    plan = asyncio.run(run())
    assert [(c.action, c.run_id) for c in plan.changes] == [
        (Action.ARCHIVE, DEMO_IDS[0]),
        (Action.ARCHIVE, DEMO_IDS[3]),
        (Action.ACTIVATE, DEMO_IDS[2]),
    ]
    assert len(plan.unchanged) == 7
    assert all(request.method == "GET" for request in sandbox.requests)


@pytest.mark.parametrize("behaviour", BEHAVIOURS, ids=repr)
@pytest.mark.parametrize("fetch", ["get", "list", "auto"])
def test_apply_then_plan_shows_no_changes(
    sandbox: Sandbox, tmp_path: Path, behaviour: Behaviour, fetch: Fetch
) -> None:
    sandbox.behaviour = behaviour
    desired = {run_id: ("active" if run_id in DEMO_ARCHIVED else "archived") for run_id in DEMO_IDS}
    path = write_state(tmp_path / "state.toml", desired)
    first, report, second = asyncio.run(plan_apply_replan(sandbox, path, fetch))
    assert len(first.changes) == 10
    assert not report.failed
    assert second.changes == ()
    assert sandbox_states(sandbox, DEMO_IDS) == desired
    assert len(sandbox.writes) == 10
    assert {(w.method, w.path.rsplit("/", 1)[-1] == "activate") for w in sandbox.writes} == {
        ("DELETE", False),
        ("PUT", True),
    }


@pytest.mark.parametrize("noop_write", ["200", "404", "422"])
def test_change_made_in_the_ui_between_plan_and_write(
    sandbox: Sandbox, tmp_path: Path, noop_write: str
) -> None:
    """Someone archives the run in the UI after the plan was read: whatever the API answers to
    the now redundant DELETE (the docs leave it open), a re-read settles it as done."""
    sandbox.behaviour = Behaviour(noop_write=noop_write)
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "archived"})

    async def run() -> ApplyReport:
        async with client_for(sandbox) as client:
            plan = await plan_with(client, path)
            sandbox.set_archived(DEMO_IDS[0], True)
            return await apply_plan(client, plan)

    report = asyncio.run(run())
    assert [(r.ok, r.writes) for r in report.results] == [(True, 1)]
    expected = "archived" if noop_write == "200" else "archived (confirmed by re-reading)"
    assert report.results[0].detail == expected
    assert [w.status for w in sandbox.writes] == [int(noop_write)]


def test_unknown_run_is_confirmed_through_the_archived_listing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.behaviour = Behaviour(archived_get=404)
    unknown = "f" * 32
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[2]: "archived", unknown: "active"})

    async def run() -> None:
        async with client_for(sandbox) as client:
            await plan_with(client, path, "get")

    with pytest.raises(UnknownRunsError) as caught:
        asyncio.run(run())
    assert caught.value.run_ids == (unknown,)
    assert f"{path}:3: {unknown}" in str(caught.value)
    listed = [r for r in sandbox.requests if r.query.get("archived") == "only"]
    assert listed, "a 404 must be checked against the archived listing before calling a run unknown"
    assert not sandbox.writes


def test_listing_reads_fewer_requests_than_gets_for_many_runs(tmp_path: Path) -> None:
    runs = [SandboxRun(id=f"{n:032x}", name=f"Run {n}") for n in range(1, 451)]
    sandbox = Sandbox(ORG, TOKEN, runs)
    path = write_state(tmp_path / "state.toml", {run.id: "active" for run in runs})

    async def run(fetch: Fetch) -> int:
        sandbox.clear_log()
        async with client_for(sandbox) as client:
            plan = await plan_with(client, path, fetch)
        assert plan.changes == ()
        return len(sandbox.requests)

    assert asyncio.run(run("get")) == 450
    # 5 pages of active runs; the archived listing is empty, so both its parameters are asked.
    assert asyncio.run(run("list")) == 5 + 2
    assert asyncio.run(run("auto")) == 7


def test_auto_uses_gets_when_few_runs_are_declared(sandbox: Sandbox, tmp_path: Path) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})

    async def run() -> None:
        async with client_for(sandbox) as client:
            await plan_with(client, path)

    asyncio.run(run())
    assert [(r.method, r.run_id) for r in sandbox.requests] == [("GET", DEMO_IDS[0])]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    initial=st.lists(st.booleans(), min_size=1, max_size=12),
    desired=st.lists(st.sampled_from(["archived", "active", None]), min_size=12, max_size=12),
    behaviour=st.sampled_from(BEHAVIOURS),
    fetch=st.sampled_from(["get", "list", "auto"]),
)
def test_apply_converges_and_writes_once_per_change(
    initial: list[bool], desired: list[str | None], behaviour: Behaviour, fetch: Fetch
) -> None:
    """For any start and any declaration: apply writes once per planned change, touches nothing
    undeclared, reaches the declared state, and a fresh plan is empty."""
    runs = numbered_runs(initial)
    sandbox = Sandbox(ORG, TOKEN, runs, replace(behaviour))
    declared = {run.id: want for run, want in zip(runs, desired, strict=False) if want}
    if not declared:
        return
    undeclared_before = sandbox_states(sandbox, tuple(r.id for r in runs if r.id not in declared))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_state(Path(tmp) / "state.toml", declared)
        first, report, second = asyncio.run(plan_apply_replan(sandbox, path, fetch))
    assert not report.failed
    assert len(sandbox.writes) == len(first.changes)
    assert {w.run_id for w in sandbox.writes} == {c.run_id for c in first.changes}
    assert second.changes == ()
    assert sandbox_states(sandbox, tuple(declared)) == declared
    assert sandbox_states(sandbox, tuple(undeclared_before)) == undeclared_before


def test_large_values_repr_as_counts(sandbox: Sandbox) -> None:
    """Plans, state files and reports can hold 100,000 runs; their reprs stay one short line,
    because libraries format them (anyio does, for a finished task's result)."""
    example = Path(__file__).parent.parent / "state.example.toml"

    async def run() -> tuple[Plan, ApplyReport]:
        async with client_for(sandbox) as client:
            plan = await plan_with(client, example)
            return plan, await apply_plan(client, plan)

    plan, report = asyncio.run(run())
    assert repr(plan) == (
        f"Plan(org_id={ORG!r}, api_url='https://sandbox.test/api', state_file={str(example)!r}, "
        "changes=3, unchanged=7)"
    )
    digest = plan.state_file.sha256[:12]
    state = load_state(example)
    assert repr(state) == f"StateFile(path={str(example)!r}, sha256={digest!r}, runs=10)"
    assert repr(report) == "ApplyReport(succeeded=3, failed=0, not_started=0, stopped=False)"


def test_the_library_entry_points_plan_check_and_apply(sandbox: Sandbox) -> None:
    """reconcile.pipeline, as a library caller uses it: the plan carries its limits and gates;
    apply checks them, asks `before_writes`, and writes only then."""
    example = Path(__file__).parent.parent / "state.example.toml"
    flags = Flags(api_url="https://sandbox.test/api", org_id=ORG)
    environ, connect = {TOKEN_ENV: TOKEN}, sandbox_connect(sandbox)

    planned = pipeline.plan(example, flags, environ=environ, connect=connect)
    assert [(c.action, c.run_id) for c in planned.changes] == [
        (Action.ARCHIVE, DEMO_IDS[0]),
        (Action.ARCHIVE, DEMO_IDS[3]),
        (Action.ACTIVATE, DEMO_IDS[2]),
    ]
    assert (planned.limits, planned.gates) == (SafetySettings(), ())
    strict = pipeline.plan(
        example,
        replace(flags, max_archive_percent=10.0, max_activate_percent=50.0, gate_min_runs=0),
        environ=environ,
        connect=connect,
    )
    assert strict.limits.max_archive_percent == 10.0
    assert len(strict.gates) == 1
    assert strict.gates[0].startswith("the plan would archive 2 of the 7 declared runs")
    with pytest.raises(SafetyError, match="A safety gate refused the plan"):
        pipeline.apply(
            example,
            replace(flags, max_archive_percent=10.0, max_activate_percent=50.0, gate_min_runs=0),
            environ=environ,
            connect=connect,
        )

    def refuse(plan: Plan) -> None:
        raise SafetyError(f"not now: {len(plan.changes)} changes")

    with pytest.raises(SafetyError, match="not now: 3 changes"):
        pipeline.apply(example, flags, before_writes=refuse, environ=environ, connect=connect)
    assert sandbox.writes == []

    done = pipeline.apply(
        example, flags, expected_checksum=checksum(planned), environ=environ, connect=connect
    )
    assert done.report is not None
    assert len(done.report.succeeded) == len(sandbox.writes) == 3
    assert pipeline.plan(example, flags, environ=environ, connect=connect).changes == ()

"""Faults injected into the sandbox: 429 storms, 5xx, timeouts, dropped connections, ambiguous
writes and answers that do not look like Tallyfy's. Each test asserts the exit code, what the
output says, what the sandbox saw, and its final state."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.apply import ApplyReport, apply_plan
from reconcile.errors import ApiError, RateLimitError
from reconcile.plan import build_plan
from reconcile.sandbox import Fault, Sandbox
from reconcile.state import load_state
from reconcile.tallyfy import RetryPolicy, observe
from tests.deadlines import interrupt_apply
from tests.demo import DEMO_ARCHIVED, DEMO_IDS, ORG, ROOT
from tests.helpers import client_for, run, sandbox_states, write_state

EXAMPLE = ROOT / "state.example.toml"
CHANGED = {DEMO_IDS[0]: "archived", DEMO_IDS[3]: "archived", DEMO_IDS[2]: "active"}
FAST = RetryPolicy(backoff_base=0.001, backoff_cap=0.01)
LONGER = 5.0  # a delay the in-process client never waits out: it times out first


def writes_by_status(sandbox: Sandbox) -> Counter[int]:
    return Counter(w.status for w in sandbox.writes)


def answered(fault: Fault) -> int:
    """The status the sandbox logs for a faulted request (0: no answer at all)."""
    return fault.status if fault.kind in ("status", "html") else 0


def run_path(run_id: str) -> str:
    return f"/organizations/{ORG}/runs/{run_id}"


# --- 429 ------------------------------------------------------------------------------------


def test_a_429_storm_on_every_method_is_waited_out(sandbox: Sandbox, cli_env: str) -> None:
    """More 429s in a row than the retry budget for errors: rate limiting alone never fails."""
    sandbox.inject(Fault("status", status=429, times=12, retry_after=0))
    sandbox.inject(Fault("status", method="DELETE", status=429, times=8, retry_after=0))
    result = run("apply", str(EXAMPLE), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in result.stdout
    assert sum(1 for r in sandbox.requests if r.status == 429) == 20
    assert writes_by_status(sandbox)[200] == 3
    assert sandbox_states(sandbox, tuple(CHANGED)) == CHANGED
    assert sandbox.pending_faults == []


def test_retry_after_longer_than_the_deadline_gives_up_at_once(sandbox: Sandbox) -> None:
    sandbox.inject(Fault("status", status=429, retry_after=30))

    async def read() -> None:
        async with client_for(sandbox, retry=RetryPolicy(deadline=5)) as client:
            await client.get_run(DEMO_IDS[0])

    with pytest.raises(RateLimitError) as caught:
        asyncio.run(read())
    assert str(caught.value).startswith("The API kept answering 429 (rate limited) past the retry")
    assert f"(request: GET {run_path(DEMO_IDS[0])}, HTTP 429, X-Request-Id " in str(caught.value)
    assert [r.status for r in sandbox.requests] == [429]


def test_retry_after_is_capped(sandbox: Sandbox) -> None:
    """Retry-After 30 with a cap of 0.01 s fits a 5 s deadline: the cap is what is waited."""
    sandbox.inject(Fault("status", status=429, retry_after=30, times=3))
    policy = RetryPolicy(deadline=5, max_retry_after=0.01)

    async def read() -> str:
        async with client_for(sandbox, retry=policy) as client:
            run = await client.get_run(DEMO_IDS[0])
        assert run is not None
        return run.run_id

    assert asyncio.run(read()) == DEMO_IDS[0]
    assert [r.status for r in sandbox.requests] == [429, 429, 429, 200]


# --- reads: 5xx, timeouts, dropped connections ------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", method="GET", status=503, times=2),
        Fault("html", method="GET", status=502, times=2),
        Fault("drop", method="GET", times=2),
        Fault("timeout", method="GET", delay=1.0, times=2),
    ],
    ids=["503", "html-502", "drop", "timeout"],
)
def test_failed_reads_are_retried(sandbox: Sandbox, cli_env: str, fault: Fault) -> None:
    sandbox.inject(fault)
    result = run("apply", str(EXAMPLE), "--auto-approve", "--timeout", "0.3")
    assert result.exit_code == 0, result.output
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in result.stdout
    assert [r.status for r in sandbox.requests[:2]] == [answered(fault)] * 2
    assert len(sandbox.writes) == 3
    assert sandbox_states(sandbox, tuple(CHANGED)) == CHANGED


def test_reads_give_up_after_the_retry_budget(sandbox: Sandbox) -> None:
    sandbox.inject(Fault("status", method="GET", status=503, times=50))

    async def read() -> None:
        async with client_for(sandbox, retry=FAST) as client:
            await client.get_run(DEMO_IDS[0])

    with pytest.raises(ApiError, match=r"HTTP 503") as caught:
        asyncio.run(read())
    assert f"(request: GET {run_path(DEMO_IDS[0])}, HTTP 503, X-Request-Id " in str(caught.value)
    assert len(sandbox.requests) == RetryPolicy().max_attempts


# --- ambiguous writes -------------------------------------------------------------------------

AMBIGUOUS = [
    Fault("status", method="DELETE", status=500, after_effect=True),
    Fault("status", method="DELETE", status=504, after_effect=True),
    Fault("html", method="DELETE", status=502, after_effect=True),
    Fault("drop", method="DELETE", after_effect=True),
    Fault("timeout", method="DELETE", delay=1.0, after_effect=True),
    Fault("slow", method="DELETE", delay=1.0),
    Fault("truncated", method="DELETE"),
    Fault("missing_archived_at", method="DELETE"),
    Fault("wrong_id", method="DELETE"),
]


@pytest.mark.parametrize("fault", AMBIGUOUS, ids=lambda f: f"{f.kind}-{f.status}")
def test_an_ambiguous_write_that_happened_is_confirmed_not_repeated(
    sandbox: Sandbox, cli_env: str, fault: Fault
) -> None:
    target = DEMO_IDS[0]
    sandbox.inject(replace(fault, path_contains=target))
    result = run("apply", str(EXAMPLE), "--auto-approve", "--timeout", "0.3")
    assert result.exit_code == 0, result.output
    assert f"ok      {target}  archived (confirmed by re-reading)" in result.stdout
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in result.stdout
    to_target = [r for r in sandbox.requests if r.run_id == target]
    # The plan's read, the one write, then the re-read; never a second write.
    assert [(r.method, r.path) for r in to_target][-2:] == [
        ("DELETE", run_path(target)),
        ("GET", run_path(target)),
    ]
    assert len(sandbox.writes) == 3
    assert sandbox_states(sandbox, tuple(CHANGED)) == CHANGED


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", method="PUT", status=500),
        Fault("status", method="PUT", status=503),
        Fault("drop", method="PUT"),
        Fault("timeout", method="PUT", delay=1.0),
    ],
    ids=lambda f: f"{f.kind}-{f.status}",
)
def test_an_ambiguous_write_that_did_not_happen_is_sent_again(
    sandbox: Sandbox, cli_env: str, fault: Fault
) -> None:
    target = DEMO_IDS[2]
    sandbox.inject(fault)
    result = run("apply", str(EXAMPLE), "--auto-approve", "--timeout", "0.3")
    assert result.exit_code == 0, result.output
    assert f"ok      {target}  activated" in result.stdout
    to_target = [(r.method, r.status) for r in sandbox.requests if r.run_id == target]
    assert to_target[-3:] == [("PUT", answered(fault)), ("GET", 200), ("PUT", 200)]
    assert len(sandbox.writes) == 4
    assert sandbox_states(sandbox, tuple(CHANGED)) == CHANGED


def test_partial_failure_reports_both_sides_and_a_rerun_finishes(
    sandbox: Sandbox, cli_env: str
) -> None:
    failing = DEMO_IDS[3]
    sandbox.inject(Fault("status", method="DELETE", path_contains=failing, status=503, times=3))
    result = run("apply", str(EXAMPLE), "--auto-approve")
    assert result.exit_code == 1
    assert f"ok      {DEMO_IDS[0]}  archived" in result.stdout
    assert f"ok      {DEMO_IDS[2]}  activated" in result.stdout
    assert "Apply finished: 1 archived, 1 activated, 1 failed." in result.stdout
    assert (
        f"  failed: {failing} (archive): The API refused the request for run {failing}. "
        f"(request: DELETE {run_path(failing)}, HTTP 503, X-Request-Id sandbox-"
    ) in result.stdout
    assert ') The API said: "Service Unavailable".' in result.stdout
    assert [w.status for w in sandbox.writes if w.run_id == failing] == [503, 503, 503]
    assert sandbox_states(sandbox, (failing,)) == {failing: "active"}

    again = run("apply", str(EXAMPLE), "--auto-approve")
    assert again.exit_code == 0, again.output
    assert "Apply finished: 1 archived, 0 activated, 0 failed." in again.stdout
    assert sandbox_states(sandbox, tuple(CHANGED)) == CHANGED
    assert run("plan", str(EXAMPLE), "--detailed-exitcode").exit_code == 0


# --- answers that are not what the API documents --------------------------------------------


@pytest.mark.parametrize(
    ("fault", "fetch", "message"),
    [
        (Fault("html", method="GET", status=200), "get", "a body that is not JSON (text/html"),
        (Fault("truncated", method="GET"), "get", "a body that is not JSON (application/json"),
        (
            Fault("missing_archived_at", method="GET"),
            "get",
            "has no archived_at field, so its state is unknown",
        ),
        (Fault("wrong_id", method="GET"), "get", "but the response describes run"),
        (
            Fault("missing_archived_at", method="GET"),
            "list",
            "has no archived_at field, so its state is unknown",
        ),
        (Fault("wrong_count", method="GET"), "list", "meta.pagination.count is"),
    ],
    ids=lambda v: v.kind if isinstance(v, Fault) else str(v)[:12],
)
def test_an_unusable_answer_stops_before_any_write(
    sandbox: Sandbox, cli_env: str, fault: Fault, fetch: str, message: str
) -> None:
    sandbox.inject(fault)
    result = run("apply", str(EXAMPLE), "--auto-approve", "--fetch", fetch)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert f"(request: GET /organizations/{ORG}/runs" in result.stderr
    assert "Traceback" not in result.output
    assert sandbox.writes == []


# --- Ctrl-C and SIGTERM -----------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_new_writes_and_the_report_matches_the_sandbox(
    sandbox: Sandbox, served: str, tmp_path: Path, signum: int, code: int
) -> None:
    """`apply` in a real process, 10 changes, 2 writes at a time, every answer 0.5 s late; the
    signal comes as soon as the sandbox has received the first write. Whatever the timing, the
    report must account for exactly the writes the sandbox received, and nothing else changed."""
    sandbox.behaviour = replace(sandbox.behaviour, latency=0.5)
    desired = {rid: "active" if rid in DEMO_ARCHIVED else "archived" for rid in DEMO_IDS}
    path = write_state(tmp_path / "state.toml", desired)
    returncode, stdout, stderr = interrupt_apply(
        served, [str(path), "--parallelism", "2"], signum, lambda: bool(sandbox.writes)
    )
    assert returncode == code, stdout + stderr
    name = signal.Signals(signum).name
    assert f"Interrupted ({name}): no new write will start" in stderr
    written = [w.run_id or "" for w in sandbox.writes]
    assert len(set(written)) == len(written), "a change was written twice"
    assert 0 < len(written) < len(DEMO_IDS), "the signal should have stopped some writes"
    assert all(w.status == 200 for w in sandbox.writes)
    for run_id in DEMO_IDS:
        verb = "archived" if desired[run_id] == "archived" else "activated"
        if run_id in written:
            assert f"  ok      {run_id}  {verb}" in stdout
        else:
            assert f"  not started: {run_id} (" in stdout
    archived = sum(1 for run_id in written if desired[run_id] == "archived")
    assert (
        f"Apply interrupted: {archived} archived, {len(written) - archived} activated, 0 failed, "
        f"{len(DEMO_IDS) - len(written)} not started."
    ) in stdout
    flipped = {"archived": "active", "active": "archived"}
    assert sandbox_states(sandbox, DEMO_IDS) == {
        run_id: state if run_id in written else flipped[state] for run_id, state in desired.items()
    }


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_cancels_the_writes_waiting_out_a_429(
    sandbox: Sandbox, served: str, tmp_path: Path, signum: int, code: int
) -> None:
    """Every write is answered 429 with `Retry-After: 30`, and the signal comes once the sandbox
    has refused one. The writes waiting out the pause are cancelled at once rather than sent when
    it ends: the command ends long before 30 s, the sandbox carried out nothing, and every change
    is reported not started (a 429 means the API did nothing)."""
    for method in ("DELETE", "PUT"):
        sandbox.inject(Fault("status", method=method, status=429, retry_after=30, times=1000))
    desired = {rid: "active" if rid in DEMO_ARCHIVED else "archived" for rid in DEMO_IDS}
    path = write_state(tmp_path / "state.toml", desired)
    before = sandbox_states(sandbox, DEMO_IDS)
    returncode, stdout, stderr = interrupt_apply(
        served, [str(path), "--parallelism", "2"], signum, lambda: bool(sandbox.writes), timeout=20
    )
    assert returncode == code, stdout + stderr
    assert sandbox.writes
    assert all(write.status == 429 for write in sandbox.writes)
    assert len(sandbox.writes) <= 2, "only the writes on the wire when the pause began"
    assert sandbox_states(sandbox, DEMO_IDS) == before
    assert "Apply interrupted: 0 archived, 0 activated, 0 failed, 10 not started." in stdout


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, -15)])
def test_a_signal_before_the_writes_stops_with_nothing_written(
    sandbox: Sandbox, served: str, signum: int, code: int
) -> None:
    """While planning, Ctrl-C ends the command (exit 130) and SIGTERM keeps its default (the
    process ends by the signal, 143 in a shell); either way nothing is written."""
    sandbox.behaviour = replace(sandbox.behaviour, latency=0.5)
    returncode, stdout, stderr = interrupt_apply(
        served, [str(EXAMPLE)], signum, lambda: bool(sandbox.requests)
    )
    assert returncode == code, stdout + stderr
    assert sandbox.writes == []
    assert "Apply" not in stdout


def test_after_a_stop_an_ambiguous_write_is_checked_but_not_sent_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Two writes at a time: the first times out without effect, the second succeeds and the stop
    comes right then. The first is re-read (not done) and left alone; the third never starts."""
    first, second, third = DEMO_IDS[0], DEMO_IDS[3], DEMO_IDS[4]
    sandbox.inject(Fault("timeout", method="DELETE", path_contains=first, delay=LONGER))
    path = write_state(tmp_path / "state.toml", dict.fromkeys((first, second, third), "archived"))
    stop = asyncio.Event()

    async def apply() -> ApplyReport:
        async with client_for(sandbox, parallelism=2, timeout=0.2) as client:
            state = load_state(path)
            observed = await observe(client, state.runs, "get")
            plan = build_plan(state, observed, org_id=ORG, api_url="https://sandbox.test/api")
            return await apply_plan(client, plan, on_result=lambda _: stop.set(), stop=stop)

    report = asyncio.run(apply())
    assert report.stopped
    assert [(r.change.run_id, r.ok, r.writes) for r in report.results] == [
        (first, False, 1),
        (second, True, 1),
        (third, False, 0),
    ]
    assert report.results[0].detail.endswith(
        "A re-read showed it not done; interrupted, so not sent again."
    )
    assert [r.change.run_id for r in report.failed] == [first]
    assert [r.change.run_id for r in report.not_started] == [third]
    assert [(w.run_id, w.status) for w in sandbox.writes] == [(first, 0), (second, 200)]
    assert sandbox_states(sandbox, (first, second, third)) == {
        first: "active",
        second: "archived",
        third: "active",
    }

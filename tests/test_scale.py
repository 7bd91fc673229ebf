"""Scale: how many requests each read strategy makes, that listing pages go out concurrently, that
the pacer keeps to its budget and learns the server's, that writes equal changes, and that the
progress line appears only on a terminal. Time here is simulated or irrelevant: nothing is timed
(the figures are bench/'s)."""

from __future__ import annotations

import asyncio
import math
import os
import pty
import select
import subprocess
import sys
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.config import (
    DEFAULT_PARALLELISM,
    DEFAULT_RATE_LIMIT,
    Pace,
    Target,
    Token,
    resolve_pace,
)
from reconcile.errors import StateFileError
from reconcile.sandbox import Behaviour, Fault, Sandbox, SandboxRun, serve
from reconcile.sandbox.model import DEFAULT_BEHAVIOUR
from reconcile.state import TallyfySettings, load_state
from reconcile.tallyfy import TallyfyClient, observe
from tests.demo import ORG, TOKEN
from tests.helpers import SimulatedTime, sandbox_states, write_state

T = TypeVar("T")
ACTIVE_RUNS, ARCHIVED_RUNS = 250, 120
PAGES = math.ceil(ACTIVE_RUNS / 100) + math.ceil(ARCHIVED_RUNS / 100)


def run_id(number: int) -> str:
    return f"{number:032x}"


def client(
    org: Sandbox, transport: httpx.AsyncBaseTransport | None = None, **options: Any
) -> TallyfyClient:
    return TallyfyClient(
        Target("https://sandbox.test/api", ORG),
        Token(TOKEN),
        transport=transport or org.transport(),
        **options,
    )


def big_sandbox(
    behaviour: Behaviour = DEFAULT_BEHAVIOUR, clock: SimulatedTime | None = None
) -> Sandbox:
    runs = [
        SandboxRun(
            id=run_id(n),
            name=f"Run {n}",
            archived_at="2026-01-10T09:00:00.000Z" if n >= ACTIVE_RUNS else None,
        )
        for n in range(ACTIVE_RUNS + ARCHIVED_RUNS)
    ]
    if clock is None:
        return Sandbox(ORG, TOKEN, runs, behaviour)
    return Sandbox(ORG, TOKEN, runs, behaviour, clock=clock.now)


def declare(path: Path, numbers: range | list[int], flip: frozenset[int] = frozenset()) -> Path:
    """Declare runs in their current state, except those in `flip`."""
    return write_state(
        path,
        {run_id(n): "archived" if (n >= ACTIVE_RUNS) != (n in flip) else "active" for n in numbers},
    )


def statuses(sandbox: Sandbox) -> list[int]:
    return [entry.status for entry in sandbox.requests]


# --- read strategies ---------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Sandbox:
    """Overrides conftest's: an organization with 3 pages of live runs and 2 of archived ones."""
    return big_sandbox()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("fetch", "declared", "gets", "pages"),
    [
        ("get", 10, 10, 0),
        ("list", 10, 0, PAGES),
        ("auto", 3, 3, 0),  # few runs: single GETs
        ("auto", PAGES - 1, PAGES - 1, 2),  # first pages show listing costs more than GETs
        ("auto", PAGES, 0, PAGES),  # listing costs no more: keep listing
        ("auto", ACTIVE_RUNS + ARCHIVED_RUNS, 0, PAGES),
    ],
)
def test_requests_per_strategy(
    sandbox: Sandbox,
    cli_env: str,
    tmp_path: Path,
    fetch: str,
    declared: int,
    gets: int,
    pages: int,
) -> None:
    # Every other run, so that a few declarations span both listings.
    spread = list(range(0, ACTIVE_RUNS + ARCHIVED_RUNS, 2))
    numbers = spread[:declared] if declared <= len(spread) else list(range(declared))
    path = declare(tmp_path / "state.toml", numbers)
    code, stdout, stderr = invoke("plan", str(path), "--fetch", fetch)
    assert (code, stderr) == (0, "")
    assert stdout.endswith(f"No changes. {declared} runs match {path}.\n")
    singles = [r for r in sandbox.requests if r.run_id is not None]
    listings = [r for r in sandbox.requests if r.run_id is None]
    assert len(singles) == gets
    assert all(r.method == "GET" for r in sandbox.requests)
    assert len(listings) == pages
    assert all(r.query["per_page"] == "100" for r in listings)
    if pages == PAGES:
        assert sorted((r.query.get("archived", "-"), r.query["page"]) for r in listings) == [
            ("-", "1"),
            ("-", "2"),
            ("-", "3"),
            ("only", "1"),
            ("only", "2"),
        ]


class _Watch(httpx.AsyncBaseTransport):
    """Counts the requests in flight through another transport."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.in_flight = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("parallelism", [1, 4])
def test_pages_after_the_first_are_fetched_concurrently(parallelism: int) -> None:
    org = big_sandbox(Behaviour(latency=0.01))
    watch = _Watch(org.transport())
    reader = client(org, watch, parallelism=parallelism)

    async def list_all() -> int:
        async with reader:
            return len(await reader.list_runs(None))

    assert asyncio.run(list_all()) == ACTIVE_RUNS
    assert org.requests[0].query["page"] == "1"
    assert sorted(int(r.query["page"]) for r in org.requests) == [1, 2, 3]
    assert watch.peak == min(parallelism, 2), "pages 2 and 3 go out together, within the bound"


def test_parallelism_bounds_requests_in_flight() -> None:
    org = big_sandbox(Behaviour(latency=0.01))
    watch = _Watch(org.transport())
    reader = client(org, watch, parallelism=3)

    async def get_many() -> None:
        async with reader:
            await asyncio.gather(*(reader.get_run(run_id(n)) for n in range(20)))

    asyncio.run(get_many())
    assert (watch.peak, reader.requests_sent) == (3, 20)


# --- the pacer -------------------------------------------------------------------------------


@pytest.mark.parametrize("own_limit", [0, DEFAULT_RATE_LIMIT])
def test_client_keeps_under_the_servers_limit(own_limit: int, tmp_path: Path) -> None:
    """Against a server allowing 30 requests a minute, 100 GETs take minutes of simulated time
    and one is refused: once the headers say none remain, one request goes alone, and its 429
    teaches the pacer the window."""
    sim = SimulatedTime()
    org = big_sandbox(Behaviour(rate_limit=30), clock=sim)
    reader = client(org, rate_limit=own_limit, clock=sim.clock)
    declared = load_state(declare(tmp_path / "state.toml", range(100)))

    async def read() -> int:
        async with reader:
            return len(await observe(reader, declared.runs, "get"))

    start = sim.now()
    assert asyncio.run(sim.run(read())) == 100
    assert sorted(statuses(org)) == [200] * 100 + [429]
    assert sim.now() - start >= (100 - 1) // 30 * 60
    assert reader.pacer.throttled == 1


def test_after_a_429_the_pause_holds_every_request(tmp_path: Path) -> None:
    sim = SimulatedTime()
    org = big_sandbox(clock=sim)
    org.inject(Fault("status", status=429, retry_after=45, method="GET"))
    reader = client(org, clock=sim.clock)
    declared = load_state(declare(tmp_path / "state.toml", range(6)))

    async def read() -> int:
        async with reader:
            return len(await observe(reader, declared.runs, "get"))

    start = sim.now()
    assert asyncio.run(sim.run(read())) == 6
    assert statuses(org) == [429, 200, 200, 200, 200, 200, 200]
    assert sim.now() - start >= 45
    assert reader.pacer.throttled == 1


# --- writes, settings, progress -----------------------------------------------------------


def test_apply_writes_once_per_change(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    flipped = frozenset(range(0, ACTIVE_RUNS + ARCHIVED_RUNS, 9))
    path = declare(tmp_path / "state.toml", range(ACTIVE_RUNS + ARCHIVED_RUNS), flipped)
    code, stdout, stderr = invoke("apply", str(path), "--auto-approve", "--parallelism", "5")
    assert (code, stderr) == (0, "")
    to_archive = sum(1 for n in flipped if n < ACTIVE_RUNS)
    assert stdout.endswith(
        f"Apply finished: {to_archive} archived, {len(flipped) - to_archive} activated, 0 failed.\n"
    )
    assert len(sandbox.writes) == len(flipped)
    assert sorted(w.run_id or "" for w in sandbox.writes) == sorted(run_id(n) for n in flipped)
    code, stdout, _ = invoke("plan", str(path), "--detailed-exitcode", "--rate-limit", "0")
    assert code == 0
    assert len(sandbox.writes) == len(flipped)


def test_pace_settings_flag_then_file_then_default() -> None:
    in_file = TallyfySettings(parallelism=3, rate_limit=0)
    assert resolve_pace(parallelism_flag=5, rate_limit_flag=90, settings=in_file) == Pace(5, 90)
    assert resolve_pace(parallelism_flag=None, rate_limit_flag=None, settings=in_file) == Pace(3, 0)
    assert resolve_pace(
        parallelism_flag=None, rate_limit_flag=None, settings=TallyfySettings()
    ) == Pace(DEFAULT_PARALLELISM, DEFAULT_RATE_LIMIT)


def test_pace_settings_in_the_state_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        f"[tallyfy]\nparallelism = 16\nrate_limit = 0\n[runs]\n{run_id(1)} = 'active'\n"
    )
    assert load_state(good).tallyfy == TallyfySettings(parallelism=16, rate_limit=0)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f"[tallyfy]\nparallelism = 0\nrate_limit = '600'\n[runs]\n{run_id(1)} = 'active'\n"
    )
    with pytest.raises(StateFileError) as caught:
        load_state(bad)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{bad}:2: [tallyfy.parallelism] must be a whole number from 1 to 64, not 0",
        f"{bad}:3: [tallyfy.rate_limit] must be a whole number 0 or more, not '600'",
    ]


def on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run `python -m reconcile ARGS` with a pseudo-terminal as stdin, stdout and stderr."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconcile", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, **env, "NO_COLOR": "1"},
        cwd=cwd,
    )
    os.close(follower)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                raise AssertionError(f"no output for 60 s; so far: {output!r}")
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes when the process ends
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        process.wait(timeout=60)
    assert process.returncode == 0, output
    return output.decode()


def test_progress_only_on_a_terminal(sandbox: Sandbox, tmp_path: Path) -> None:
    flipped = frozenset({0, 300})
    path = declare(tmp_path / "state.toml", range(ACTIVE_RUNS + ARCHIVED_RUNS), flipped)
    with serve(sandbox) as running:
        env = {
            "TALLYFY_API_URL": running.url,
            "TALLYFY_ORG_ID": ORG,
            "TALLYFY_ACCESS_TOKEN": TOKEN,
        }
        # Off a terminal (CliRunner's streams are not one), only the plan is written.
        result = CliRunner().invoke(cli, ["plan", str(path)], env=env)
        assert (result.exit_code, result.stderr) == (0, "")
        assert "\r" not in result.output
        shown = on_a_terminal(["apply", str(path), "--auto-approve"], env, tmp_path)
    erase = "\r\x1b[K"
    assert f"{erase}Reading runs: {PAGES}/{PAGES} requests{erase}" in shown
    assert f"{erase}Applying: 2/2 changes{erase}" in shown
    assert "Apply finished: 1 archived, 1 activated, 0 failed." in shown
    assert sandbox_states(sandbox, (run_id(0), run_id(300))) == {
        run_id(0): "archived",
        run_id(300): "active",
    }

"""Pacing: every window given is kept, several at once; a stricter server is learned from its
headers and its 429s, whatever window the headers describe, at the cost of a few 429s. Time is
simulated (tests.helpers.SimulatedTime): minutes pass in no time, and nothing is timed."""

from __future__ import annotations

import asyncio
import bisect
import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from reconcile import pipeline
from reconcile.cli import cli
from reconcile.config import TOKEN_ENV, Flags, Pace, Settings, Target, Token, resolve_pace
from reconcile.errors import StateFileError
from reconcile.ratelimit import Window, parse_window
from reconcile.sandbox import Sandbox, SandboxRun
from reconcile.state import TallyfySettings, load_state
from reconcile.tallyfy import TallyfyClient, observe
from reconcile.tallyfy.pacing import Pacer
from tests.demo import DEMO_IDS, ORG, TOKEN
from tests.helpers import SimulatedTime, sandbox_connect, write_state

LATENCY = 0.1
FAQ = (Window(12, 5.0, "GET"), Window(140, 10.0))
"""The troubleshooting FAQ's limits: about 12 GETs per 5 s and 140 calls per 10 s."""


def most_in_any(times: Sequence[float], seconds: float) -> int:
    """The most of `times` in any `seconds` [t, t + seconds)."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + seconds) - i for i, t in enumerate(times)), default=0)


class WindowedServer:
    """A server with rolling windows, in simulated time: a request is counted when it arrives
    (half the latency after it was sent) unless a window is full; then it is refused with 429,
    `Retry-After` in whole seconds rounded up, like Laravel's throttle. Every answer carries
    `X-RateLimit-Limit`/`-Remaining` of the window at index `described` (None: no headers)."""

    def __init__(
        self,
        sim: SimulatedTime,
        windows: Sequence[Window],
        org: Sandbox,
        described: int | None,
    ) -> None:
        self.sim = sim
        self.windows = windows
        self.described = described
        self.hits: list[deque[float]] = [deque() for _ in windows]
        self.statuses: list[int] = []
        self.arrivals: list[tuple[str, float]] = []
        self._inner = org.transport()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await self.sim.sleep(LATENCY / 2)
        now = self.sim.now()
        counting = [i for i, w in enumerate(self.windows) if w.counts(request.method)]
        for i in counting:
            while self.hits[i] and self.hits[i][0] <= now - self.windows[i].seconds:
                self.hits[i].popleft()
        full = [i for i in counting if len(self.hits[i]) >= self.windows[i].limit]
        if full:
            wait = max(self.hits[i][0] + self.windows[i].seconds - now for i in full)
            response = httpx.Response(
                429,
                json={"message": "Too many requests.", "code": "RATE_LIMIT_EXCEEDED"},
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        else:
            for i in counting:
                self.hits[i].append(now)
            self.arrivals.append((request.method, now))
            response = await self._inner.handle_async_request(request)
            await response.aread()
        if self.described is not None:
            window = self.windows[self.described]
            used = len(self.hits[self.described])
            response.headers["X-RateLimit-Limit"] = str(window.limit)
            response.headers["X-RateLimit-Remaining"] = str(max(window.limit - used, 0))
        self.statuses.append(response.status_code)
        await self.sim.sleep(LATENCY / 2)
        return response


def organization(runs: int) -> Sandbox:
    seeded = [SandboxRun(id=f"{n:032x}", name=f"Run {n}") for n in range(runs)]
    return Sandbox(ORG, TOKEN, seeded)


def bound(requests: int, windows: Sequence[Window]) -> float:
    """The least time `requests` GETs take under `windows`: each window admits its limit at once,
    then its limit again each time the window has passed; plus one latency."""
    waits = [(requests - 1) // w.limit * w.seconds for w in windows if w.counts("GET")]
    return max(waits, default=0.0) + LATENCY


def read_runs(
    tmp_path: Path,
    windows: Sequence[Window],
    described: int | None,
    *,
    runs: int = 201,
    rate_limit: int = 600,
    rate_limits: Sequence[Window] = (),
) -> tuple[WindowedServer, float, TallyfyClient]:
    """Read `runs` runs by GET through a WindowedServer: the server, simulated seconds, client."""
    sim = SimulatedTime()
    server = WindowedServer(sim, windows, organization(runs), described)
    reader = TallyfyClient(
        Target("https://sandbox.test/api", ORG),
        Token(TOKEN),
        transport=httpx.MockTransport(server.handle),
        rate_limit=rate_limit,
        rate_limits=rate_limits,
        clock=sim.clock,
    )
    state = load_state(
        write_state(tmp_path / "state.toml", {f"{n:032x}": "active" for n in range(runs)})
    )

    async def read() -> int:
        async with reader:
            return len(await observe(reader, state.runs, "get"))

    start = sim.now()
    assert asyncio.run(asyncio.wait_for(sim.run(read()), timeout=60)) == runs
    return server, sim.now() - start, reader


# --- windows given ------------------------------------------------------------------------------


def test_parse_window_forms() -> None:
    assert parse_window("600") == Window(600, 60.0)
    assert parse_window("140/10s") == Window(140, 10.0)
    assert parse_window(" 12/5s:get ") == Window(12, 5.0, "GET")
    assert parse_window("100/min") == Window(100, 60.0)
    assert parse_window("1000/1h") == Window(1000, 3600.0)
    assert parse_window("5/0.5s") == Window(5, 0.5)
    for window in (Window(12, 5.0, "GET"), Window(600, 60.0), Window(1000, 3600.0)):
        assert parse_window(str(window)) == window


@pytest.mark.parametrize(
    "text", ["", "0/1m", "12/0s", "twelve", "12/5", "12/5d", "-1/1m", "12/5s:"]
)
def test_parse_window_refuses_what_is_not_a_window(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate limit|at least 1"):
        parse_window(text)


def test_pacer_never_exceeds_any_of_its_windows() -> None:
    """Several windows at once, one only for GETs: no window ever holds more sends than its limit,
    whatever order the answers come back in."""
    sim = SimulatedTime()
    windows = (Window(12, 5.0, "GET"), Window(20, 10.0), Window(50, 60.0))
    pacer = Pacer(parallelism=8, limits=windows, clock=sim.clock)
    sent: dict[str, list[float]] = {"GET": [], "DELETE": []}

    async def request(n: int) -> None:
        method = "DELETE" if n % 3 == 0 else "GET"
        async with pacer.turn(method):
            sent[method].append(sim.now())
            await sim.sleep(0.05 + (n % 7) * 0.3)  # answers take their time, in any order

    async def many() -> None:
        await asyncio.gather(*(request(n) for n in range(230)))

    start = sim.now()
    asyncio.run(asyncio.wait_for(sim.run(many()), timeout=30))
    everything = sent["GET"] + sent["DELETE"]
    assert len(everything) == 230
    assert most_in_any(sent["GET"], 5.0) <= 12
    assert most_in_any(everything, 10.0) <= 20
    assert most_in_any(everything, 60.0) == 50
    # The minute window binds: it admits 50 at once, then one more for each that leaves it.
    assert sim.now() - start >= (230 - 1) // 50 * 60


def test_pacer_pauses_for_retry_after_and_counts_refusals() -> None:
    sim = SimulatedTime()
    pacer = Pacer(parallelism=2, clock=sim.clock)
    waited: list[float] = []

    async def work() -> None:
        async with pacer.turn() as turn:
            turn.heard(429, {"Retry-After": "30", "X-RateLimit-Remaining": "0"})
        pacer.pause(30)
        start = sim.now()
        async with pacer.turn():
            waited.append(sim.now() - start)

    asyncio.run(asyncio.wait_for(sim.run(work()), timeout=10))
    assert waited == [30]
    assert pacer.throttled == 1
    assert pacer.windows == (), "a refusal of the first request teaches no window"


def test_a_429_that_asks_for_no_wait_teaches_nothing() -> None:
    sim = SimulatedTime()
    pacer = Pacer(parallelism=1, clock=sim.clock)

    async def work() -> None:
        for status in (200, 200, 200, 429):
            async with pacer.turn() as turn:
                await sim.sleep(0.1)
                turn.heard(status, {"Retry-After": "0"} if status == 429 else {})

    asyncio.run(asyncio.wait_for(sim.run(work()), timeout=10))
    assert pacer.windows == ()


def test_remaining_holds_new_requests_until_an_answer_refreshes_it() -> None:
    """With X-RateLimit-Remaining at 2, at most 2 more go out before the next answer, whatever
    the parallelism; with none in flight, one goes alone."""
    sim = SimulatedTime()
    pacer = Pacer(parallelism=8, clock=sim.clock)
    in_flight: list[int] = []
    flying = 0

    async def request(remaining: str) -> None:
        nonlocal flying
        async with pacer.turn() as turn:
            flying += 1
            in_flight.append(flying)
            await sim.sleep(1.0)
            turn.heard(200, {"X-RateLimit-Remaining": remaining})
            flying -= 1

    async def work() -> None:
        await request("2")
        await asyncio.gather(*(request("0") for _ in range(5)))

    asyncio.run(asyncio.wait_for(sim.run(work()), timeout=10))
    assert in_flight == [1, 1, 2, 1, 1, 1]


# --- against servers stricter than the default ------------------------------------------------


@pytest.mark.parametrize("described", [None, 0, 1])
def test_told_the_windows_the_client_keeps_to_them(described: int | None, tmp_path: Path) -> None:
    """Told the FAQ's windows, 201 GETs take within 1.1x of the least time those windows allow,
    with at most one 429, whichever window the headers describe (if any)."""
    server, took, _ = read_runs(tmp_path, FAQ, described, rate_limits=FAQ)
    assert server.statuses.count(429) <= 1
    assert took <= 1.1 * bound(201, FAQ)


@pytest.mark.parametrize("described", [None, 0, 1])
def test_with_its_defaults_the_client_learns_the_windows(
    described: int | None, tmp_path: Path
) -> None:
    """With its default of 600 a minute, the client learns the FAQ's windows from the server:
    within 1.3x of the least time, for at most one 429 per request in flight when the first
    refusal arrives, whichever window the headers describe (if any)."""
    server, took, reader = read_runs(tmp_path, FAQ, described)
    assert server.statuses.count(429) <= reader.parallelism
    assert len(reader.pacer.windows) == 2, "600 a minute, and one window learned"
    assert took <= 1.3 * bound(201, FAQ)


@pytest.mark.parametrize("described", [None, 0])
def test_a_per_minute_organization_limit_is_learned_too(
    described: int | None, tmp_path: Path
) -> None:
    """100 a minute per organization (the API support repository's figure): 250 GETs, a few
    429s at first, then none."""
    limits = (Window(100, 60.0),)
    server, took, reader = read_runs(tmp_path, limits, described, runs=250)
    assert server.statuses.count(429) <= reader.parallelism
    assert took <= 1.3 * bound(250, limits)
    assert most_in_any([t for _, t in server.arrivals], 60.0) <= 100


# --- settings -----------------------------------------------------------------------------------


def test_windows_come_from_the_flags_else_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_text(
        f'[tallyfy]\nrate_limit = 0\nrate_limits = ["140/10s", "12/5s:GET"]\n\n[runs]\n'
        f'{"0" * 32} = "active"\n',
        encoding="utf-8",
    )
    state = load_state(path)
    assert state.tallyfy.rate_limits == FAQ[::-1]
    in_file = resolve_pace(parallelism_flag=None, rate_limit_flag=None, settings=state.tallyfy)
    assert in_file == Pace(parallelism=8, rate_limit=0, windows=FAQ[::-1])
    flagged = resolve_pace(
        parallelism_flag=None,
        rate_limit_flag=None,
        settings=state.tallyfy,
        windows_flag=(Window(100, 60.0),),
    )
    assert flagged.windows == (Window(100, 60.0),)
    assert resolve_pace(
        parallelism_flag=None, rate_limit_flag=None, settings=TallyfySettings()
    ) == Pace(parallelism=8, rate_limit=600, windows=())


def test_a_bad_window_in_the_state_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_text(
        f'[tallyfy]\nrate_limits = ["140/10s", "12 per 5s"]\n\n[runs]\n{"0" * 32} = "active"\n',
        encoding="utf-8",
    )
    with pytest.raises(StateFileError) as caught:
        load_state(path)
    assert f"{path}:2: [tallyfy.rate_limits] '12 per 5s' is not a rate limit" in str(caught.value)


def test_rate_window_flags_reach_the_client(sandbox: Sandbox, tmp_path: Path) -> None:
    """`plan --rate-window` twice: both windows are the client's, besides the default 600."""
    seen: list[tuple[Window, ...]] = []

    def connect(settings: Settings) -> TallyfyClient:
        client = sandbox_connect(sandbox)(settings)
        seen.append(client.pacer.windows)
        return client

    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    flags = Flags(org_id=ORG, api_url="https://sandbox.test/api", rate_window=FAQ)
    pipeline.plan(path, flags, environ={TOKEN_ENV: TOKEN}, connect=connect)
    assert seen == [(Window(600, 60.0), *FAQ)]
    result = CliRunner().invoke(cli, ["plan", str(path), "--rate-window", "12 a second"])
    assert result.exit_code == 1  # a bad flag value is a usage error (see the exit codes)
    assert "Invalid value for '--rate-window': '12 a second' is not a rate limit" in result.output

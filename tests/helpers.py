"""What the tests share: a CLI runner, sandbox wiring for the library, state, plan and sandbox
builders, requests straight to the sandbox, and simulated time. By topic, beside it: tests/demo.py
(the demo organization), tests/guards.py (the suite-wide guards, installed by tests/conftest.py),
tests/hostile.py (hostile strings and the checks that they came out inert), tests/deadlines.py
(tests that could hang, an interrupted apply) and tests/tls.py (TLS on loopback). Test modules
import from these, never from each other or from conftest."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
from collections.abc import Awaitable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner, Result

from reconcile.cli import cli
from reconcile.config import Settings, Target, Token
from reconcile.domain import DesiredRun, ObservedRun, RunState, Source
from reconcile.pipeline import Connect
from reconcile.plan import Plan, build_plan
from reconcile.sandbox import Sandbox, SandboxResponse, SandboxRun
from reconcile.state import SafetySettings, StateFile, TallyfySettings
from reconcile.tallyfy import TallyfyClient
from reconcile.tallyfy.pacing import Clock as PacerClock
from tests.deadlines import within
from tests.demo import DEMO_ARCHIVED, DEMO_IDS, ORG, ROOT, TOKEN
from tests.guards import check_no_secret

# The demo organization's names, the token check and `within` are importable from here as well, as
# they were before they moved to tests/demo.py, tests/guards.py and tests/deadlines.py.
__all__ = [
    "API",
    "BIG_ORG_SIZE",
    "BLUEPRINTS",
    "DEMO_ARCHIVED",
    "DEMO_IDS",
    "NOW",
    "ODD_NAMES",
    "ORG",
    "ROOT",
    "SANDBOX_HEADERS",
    "STAMP",
    "TOKEN",
    "Clock",
    "SimulatedTime",
    "add_runs",
    "big_org_runs",
    "call",
    "check_no_secret",
    "client_for",
    "json_checksum",
    "listed",
    "make_plan",
    "numbered_runs",
    "pagination",
    "run",
    "sandbox_connect",
    "sandbox_states",
    "within",
    "write_state",
]

API = "https://api.test/api"
STAMP = "2026-01-01T00:00:00.000Z"

T = TypeVar("T")


def run(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """`reconcile ARGS` in this process, as a user would run it; exceptions propagate."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def client_for(sandbox: Sandbox, **options: Any) -> TallyfyClient:
    """A client wired to the in-process sandbox."""
    return TallyfyClient(
        Target("https://sandbox.test/api", sandbox.org_id),
        Token(sandbox.token),
        transport=sandbox.transport(),
        **options,
    )


def sandbox_connect(sandbox: Sandbox, **options: Any) -> Connect:
    """What reconcile.pipeline uses to make its API client, wired to the in-process sandbox: the
    settings the pipeline resolved, and `options` (e.g. a faster RetryPolicy) on top."""

    def connect(settings: Settings) -> TallyfyClient:
        return TallyfyClient(
            settings.target,
            settings.token,
            transport=sandbox.transport(),
            parallelism=settings.pace.parallelism,
            rate_limit=settings.pace.rate_limit,
            rate_limits=settings.pace.windows,
            timeout=settings.timeout,
            **options,
        )

    return connect


def write_state(path: Path, runs: Mapping[str, str], org_id: str | None = None) -> Path:
    """Write a state file declaring `runs` (run ID -> "archived" | "active")."""
    lines = [f'[tallyfy]\norg_id = "{org_id}"\n'] if org_id else []
    lines.append("[runs]")
    lines += [f'{run_id} = "{state}"' for run_id, state in runs.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def numbered_runs(archived: list[bool]) -> list[SandboxRun]:
    """Runs with IDs 1, 2, 3... (as 32 hex digits), archived or not as `archived` says."""
    return [
        SandboxRun(
            id=f"{n + 1:032x}",
            name=f"Run {n}",
            archived_at="2026-01-01T00:00:00.000Z" if is_archived else None,
        )
        for n, is_archived in enumerate(archived)
    ]


def sandbox_states(sandbox: Sandbox, run_ids: Iterator[str] | tuple[str, ...]) -> dict[str, str]:
    """The sandbox's truth, in the state file's vocabulary."""
    return {run_id: "archived" if sandbox.is_archived(run_id) else "active" for run_id in run_ids}


def json_checksum(state_file: Path | str) -> str:
    """The checksum `plan --format json` gives for a state file, to check text output against."""
    result = CliRunner().invoke(cli, ["plan", str(state_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    checksum: str = json.loads(result.stdout)["checksum"]
    return checksum


def make_plan(now: list[bool], want: list[bool], limits: SafetySettings | None = None) -> Plan:
    """A plan of runs 1, 2, 3...: archived now as `now` says, declared archived as `want` says."""
    runs = tuple(
        DesiredRun(
            f"{n + 1:032x}",
            RunState.ARCHIVED if archived else RunState.ACTIVE,
            None,
            Source("state.toml", n + 2),
        )
        for n, archived in enumerate(want)
    )
    state = StateFile("state.toml", "0" * 64, TallyfySettings(), runs, limits or SafetySettings())
    observed = {
        run.run_id: ObservedRun(run.run_id, "Run", "active", STAMP if archived else None, STAMP)
        for run, archived in zip(runs, now, strict=True)
    }
    return build_plan(state, observed, org_id=ORG, api_url=API)


def add_runs(
    sandbox: Sandbox, count: int, *, archived: bool, start: int = 0, name: str = "Run"
) -> list[str]:
    """`count` new runs in the sandbox, archived or active, named `name` and a number; their IDs
    in order."""
    ids = [f"{0xA0000000 + start + n:032x}" for n in range(count)]
    stamp = "2026-01-10T09:00:00.000Z" if archived else None
    sandbox.add_runs(
        SandboxRun(id=run_id, name=f"{name} {start + n}", archived_at=stamp)
        for n, run_id in enumerate(ids)
    )
    return ids


BLUEPRINTS = ("a1" * 16, "b2" * 16, "c3" * 16)
ODD_NAMES = {
    7: 'Contract "Q3" \\ renewal - Société Générale',
    11: "Line one\nline two",
    13: "Déjà vu - 日本語 review",
}
BIG_ORG_SIZE = 260  # 156 active and 104 archived: two pages of 100 in each listing


def big_org_runs() -> list[SandboxRun]:
    """An organization of several pages: mixed states, blueprints, owners, tags and dates.
    Each run's assignee is another user than its owner, so --owner must not match assignees."""
    runs = []
    for i in range(BIG_ORG_SIZE):
        day = 1 + i % 28
        month = 1 + (i // 28) % 3
        runs.append(
            SandboxRun(
                id=hashlib.md5(f"run-{i}".encode()).hexdigest(),
                name=ODD_NAMES.get(
                    i, f"Run {i:03d} - {('Onboarding', 'Audit', 'Offboarding')[i % 3]}"
                ),
                status=("active", "complete", "problem")[i % 3],
                archived_at="2026-03-30T12:00:00.000Z" if i % 5 in (0, 3) else None,
                checklist_id=BLUEPRINTS[i % 3],
                owner_id=100 + i % 4,
                users=(100 + (i + 1) % 4,),
                tags=("audit",) if i % 4 == 0 else ("onboarding", "q1") if i % 4 == 1 else (),
                started_at=f"2026-{month:02d}-{day:02d}T{i % 24:02d}:30:00.000Z",
                created_at=f"2026-{month:02d}-{day:02d}T{i % 24:02d}:30:00.000Z",
            )
        )
    return runs


# --- Requests straight to Sandbox.dispatch (the sandbox's own tests) ---------------------------

SANDBOX_HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "X-Tallyfy-Client": "APIClient",
    "Accept": "application/json",
    "Host": "sandbox.test",
}
NOW = 1_772_442_000.0  # 2026-03-02T09:00:00Z


class Clock:
    """A settable wall clock, so timestamps and the rate-limit windows are deterministic."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


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
    return sandbox.dispatch(method, target, SANDBOX_HEADERS if headers is None else headers, body)


def listed(response: SandboxResponse) -> list[str]:
    """The run IDs of a 200 listing page, in order."""
    assert response.status == 200, response.body
    return [run["id"] for run in response.json()["data"]]


def pagination(response: SandboxResponse) -> dict[str, Any]:
    """A listing page's meta.pagination."""
    result: dict[str, Any] = response.json()["meta"]["pagination"]
    return result


class SimulatedTime:
    """A clock that moves only when every task is waiting: then it jumps to the next wake-up.
    Drives both the pacer and the sandbox's rate limit, so minutes pass in no time at all."""

    def __init__(self) -> None:
        self.time = 1_790_000_000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.time + max(seconds, 0.0), next(self._order), future))
        await future

    @property
    def clock(self) -> PacerClock:
        return PacerClock(now=self.now, sleep=self.sleep, wall=self.now)

    async def run(self, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work)
        while not task.done():
            for _ in range(200):  # let everything that can run, run
                await asyncio.sleep(0)
            if task.done():
                break
            assert self._sleepers, "every task waits, but not for the clock"
            wake, _, future = heapq.heappop(self._sleepers)
            self.time = max(self.time, wake)
            future.set_result(None)
        return task.result()

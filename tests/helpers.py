"""What the tests share: the demo organization's constants, a CLI runner, sandbox wiring for the
library, state, plan and sandbox builders, the hostile strings, deadlines for tests that could
hang, an interrupted apply in a process of its own, TLS on loopback, and the suite-wide guards'
record (tests/conftest.py installs the guards). Test modules import from here, never from each
other or from conftest."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
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

ROOT = Path(__file__).resolve().parent.parent
DEMO_SEED = ROOT / "examples" / "demo-org.toml"
ORG = "5e7c0f3a9d2b4c6e8a1f0b3d5c7e9a2b"
TOKEN = "sandbox-token"
DEMO_IDS = (
    "3f2a9c0d5e6b47a8b9c0d1e2f3a4b5c6",
    "9b1e2d3c4b5a69788796a5b4c3d2e1f0",
    "1c4e7a9b2d5f48e6a3c1b7d9e2f4a6c8",
    "7d2b9e4f1a6c43d8b5e0a7c2f9d4b1e6",
    "2a8f5c1e9b3d47a6c0e4f8b2d6a9c3e1",
    "6e3c0a7d4b1f48e5a2c9f6b3d0e7a4c1",
    "4b9d2f6a8c1e43b7d5a0c9e2f4b6d8a3",
    "8f1a4c7e2b5d49a6c3f0e8b1d4a7c2e9",
    "0d6b3e9a5c2f47d1b8e4a0c6f3b9d5e2",
    "5c0e8b2f6a9d41c3e7b5f1a8d2c6e4b0",
)
DEMO_ARCHIVED = frozenset({DEMO_IDS[2], DEMO_IDS[8], DEMO_IDS[9]})
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


HOSTILE = (
    "\x1b[2J\x1b[Hscreen cleared",
    "\x1b]0;window title\x07",
    "\x1b]8;;https://evil.example\x1b\\a link\x1b]8;;\x1b\\",
    "\x1b[31mred\x1b[0m",
    "done\r  activate  ffffffffffffffffffffffffffffffff  archived -> active",
    "active)\n  activate  ffffffffffffffffffffffffffffffff  archived -> active  (status: ok)",
    "bells\x07\x07\x07",
    "\u202eevitca",
    "\u2066isolated\u2069 \u2067rtl\u2069 \u200f",
    "zero\u200bwidth\u200d\u2060joiner\ufeff",
    "line\u2028separator\u2029paragraph",
    "next\x85line \x9b31mC1 CSI",
    "nul\x00 del\x7f tab\t vertical\x0b feed\x0c",
    "\u3164\u115f fillers",
    "\U000e0041\U000e0042 tags",
    "| archive | `ffffffffffffffffffffffffffffffff` | forged | active -> archived | `x` |",
    "<!-- hidden --> <details><summary>x</summary> <img src=x onerror=alert(1)> </details>",
    "**bold** _it_ `code` [link](https://evil.example) ~~gone~~ \\| back\\slash\\",
    "Checksum: `0000` (`reconcile apply --checksum 0000`)",
    "日本語の名前 ✓ café 😀",
    "y" * 5_000,
)
"""Text a hostile or broken API could send as a name, status or message: terminal escape sequences,
carriage returns and line breaks that forge lines, bells, bidi overrides and other invisible
characters, Markdown and HTML that would break out of a table cell, and a very long name. The
last-but-one is ordinary non-ASCII text, which must come out exactly."""

_FILLERS = "\u115f\u1160\u3164\uffa0"
_CELL_END = re.compile(r"(?<!\\)(?:\\\\)*\|")
"""A pipe that ends a Markdown table cell: one not escaped by an odd run of backslashes."""


def assert_inert(output: str) -> None:
    """Nothing in `output` but printable characters and its own line breaks: no control
    character, escape sequence, bidi override, invisible format character or blank filler."""
    for line in output.split("\n"):
        assert line.isprintable(), f"unsafe character in {line[:200]!r}"
        assert not set(_FILLERS) & set(line), f"blank filler in {line[:200]!r}"


def table_rows(markdown: str) -> int:
    """The rows of every Markdown table, checking that each has as many cells as its header (a
    row with more would be a cell forged by a name)."""
    lines = markdown.splitlines()
    rows = 0
    for index, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[index + 1].startswith("| --- |"):
            width = len(_CELL_END.findall(line))
            for row in lines[index + 2 :]:
                if not row.startswith("| "):
                    break
                assert len(_CELL_END.findall(row)) == width, f"a row with a forged cell: {row!r}"
                rows += 1
    return rows


# --- Deadlines, interrupted applies, TLS on loopback ---------------------------------------


class Hung(BaseException):
    """A block outlived its deadline. BaseException, so that no `except Exception` on the way
    (CliRunner's included) can take it for the command's own failure."""


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail the block if it takes longer than `seconds` (SIGALRM: tests run in the main thread)."""

    def expire(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interrupt_apply(
    served: str,
    args: list[str],
    signum: int,
    ready: Callable[[], bool],
    timeout: float = 60,
) -> tuple[int, str, str]:
    """Run `reconcile apply --auto-approve ARGS` in a process of its own against the served
    sandbox, send it `signum` once `ready()` holds (or it ended, or `timeout` passed), and return
    its exit code and output, checked for the token. A process still running `timeout` seconds
    after the signal is killed and the test fails."""
    env = {
        **os.environ,
        "TALLYFY_API_URL": served,
        "TALLYFY_ORG_ID": ORG,
        "TALLYFY_ACCESS_TOKEN": TOKEN,
    }
    command = [sys.executable, "-m", "reconcile", "apply", "--auto-approve", *args]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        give_up = time.monotonic() + timeout
        while not ready() and process.poll() is None and time.monotonic() < give_up:
            time.sleep(0.01)
        process.send_signal(signum)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise Hung(f"apply still running {timeout} s after the signal") from None
    check_no_secret(stdout + stderr, "the output of an interrupted apply")
    return process.returncode, stdout, stderr


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and its key for `name`, a subjectAltName such as
    `IP:127.0.0.1` or `DNS:api.example.test` (needs the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name.partition(':')[2]}",
            "-addext",
            f"subjectAltName={name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.contextmanager
def tls_in_front(port: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS endpoint on loopback that forwards to the sandbox's plain-HTTP port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def forward(connection: socket.socket) -> None:
        connection.settimeout(5)  # a client that never finishes its handshake gives up a thread
        try:
            secured = context.wrap_socket(connection, server_side=True)
        except OSError:  # SSLError included: the client refused our certificate
            connection.close()
            return
        secured.settimeout(None)
        with secured, socket.create_connection(("127.0.0.1", port)) as upstream:
            back = threading.Thread(target=pump, args=(upstream, secured), daemon=True)
            back.start()
            pump(secured, upstream)
            back.join(timeout=5)

    threads: list[threading.Thread] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            threads.append(threading.Thread(target=forward, args=(connection,), daemon=True))
            threads[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=5)
        for thread in threads:  # each ends when its client closes: every socket is closed here
            thread.join(timeout=5)


# --- Suite-wide guards ------------------------------------------------------------------------
#
# Whatever file a test is in, it is watched for two things:
#
# 1. Forbidden requests. reconcile may only read (GET, HEAD), archive (DELETE .../runs/{id}) and
#    activate (PUT .../runs/{id}/activate); never the permanent delete (DELETE
#    .../runs/{id}/delete), never PUT .../runs/{id}, never anything else. Checked on every request
#    any httpx client sends in this process (conftest wraps httpx's Client.send and
#    AsyncClient.send, which every request passes through, whatever reconcile logs), and on the
#    request log of every `sandbox` fixture, which also sees the requests of subprocesses. A test
#    that sends forbidden requests on purpose (to see the sandbox refuse them) says so with
#    `@pytest.mark.sends_forbidden_requests`.
# 2. The token. No CLI output (stdout and stderr), exception or traceback, log record, or file
#    the CLI wrote may contain an access token. Every `CliRunner.invoke` of the session is
#    observed (the token is whatever TALLYFY_ACCESS_TOKEN or --token-file held for that run,
#    plus every token seen before); tests that run a subprocess pass its output to
#    `check_no_secret`. `reconcile sandbox` is exempt: printing its own token is its job.
#
# A violation fails the test it happens in. The terminal summary prints what was checked.

_RUN_PATH = re.compile(r"/organizations/[^/]+/runs/[0-9a-f]{32}")
_MIN_SECRET = 8  # shorter strings would match ordinary output by chance


def allowed_request(method: str, path: str) -> bool:
    """Whether reconcile may send this request: reads, archive and activate, nothing else. `path`
    may carry the API's base path (/api/organizations/...)."""
    if method in ("GET", "HEAD"):
        return True
    start = path.find("/organizations/")
    path = path[start:] if start >= 0 else path
    if method == "DELETE":
        return _RUN_PATH.fullmatch(path) is not None
    if method == "PUT" and path.endswith("/activate"):
        return _RUN_PATH.fullmatch(path.removesuffix("/activate")) is not None
    return False


class Guard(logging.Handler):
    """Collects what the session checked and every violation, per test. As a logging handler it
    reads every log record of reconcile for tokens."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = {TOKEN}
        self.violations: list[str] = []
        self.requests_checked = 0
        self.outputs_checked = 0
        self.files_checked = 0
        self.records_checked = 0
        self.forbidden_allowed = False
        """Set for the one test marked sends_forbidden_requests."""

    def add_secret(self, value: str | None) -> None:
        if value and len(value.strip()) >= _MIN_SECRET:
            self.secrets.add(value.strip())

    def leaks(self, text: str) -> list[str]:
        return sorted(secret for secret in self.secrets if secret in text)

    def emit(self, record: logging.LogRecord) -> None:
        self.records_checked += 1
        leaked = self.leaks(record.getMessage())
        if leaked:
            self.violations.append(f"log record {record.getMessage()!r} holds a token")

    def sent(self, method: str, path: str) -> None:
        """An HTTP request left an httpx client of this process."""
        self.requests_checked += 1
        if not self.forbidden_allowed and not allowed_request(method, path):
            self.violations.append(f"a forbidden request was sent: {method} {path}")


GUARD = Guard()
FIGURES: Counter[str] = Counter()
"""Figures some tests add up (faults injected, bad inputs tried...), printed after the run."""


def check_no_secret(text: str, where: str) -> None:
    """Fail if `text` (an output of reconcile) contains any token seen in this session."""
    GUARD.outputs_checked += 1
    leaked = GUARD.leaks(text)
    assert not leaked, f"{where} contains an access token"


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

"""Shared fixtures: the demo organization in the sandbox, in-process or over real HTTP; and the
suite-wide guards (at the end of this file) that watch every test for a leaked token and for a
write request reconcile must never send."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconcile.cli import cli
from reconcile.config import TOKEN_ENV, Settings, Target, Token
from reconcile.pipeline import Connect
from reconcile.sandbox import LoggedRequest, Sandbox, SandboxResponse, SandboxRun, serve
from reconcile.sandbox.seed import load_seed
from reconcile.tallyfy import TallyfyClient

pytest_plugins = ["pytester"]  # test_secrets.py runs the guards below on tests made to fail

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


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The demo organization. At teardown its request log is checked for forbidden writes."""
    emulator = Sandbox.from_seed(DEMO_SEED)
    yield emulator
    forbidden = [f"{r.method} {r.path}" for r in emulator.requests if not allowed_request(r)]
    GUARD.requests_checked += len(emulator.requests)
    assert not forbidden, f"the sandbox received requests reconcile must never send: {forbidden}"


@pytest.fixture
def served(sandbox: Sandbox) -> Iterator[str]:
    with serve(sandbox) as running:
        yield running.url


@pytest.fixture
def cli_env(served: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the served sandbox through the environment, as a user would."""
    monkeypatch.setenv("TALLYFY_API_URL", served)
    monkeypatch.setenv("TALLYFY_ORG_ID", ORG)
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", TOKEN)
    return served


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
            timeout=settings.timeout,
            **options,
        )

    return connect


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


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def demo(clock: Clock) -> Sandbox:
    """The demo organization on a settable clock, for calling `dispatch` directly."""
    seed = load_seed(DEMO_SEED)
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
    return sandbox.dispatch(method, target, SANDBOX_HEADERS if headers is None else headers, body)


def listed(response: SandboxResponse) -> list[str]:
    """The run IDs of a 200 listing page, in order."""
    assert response.status == 200, response.body
    return [run["id"] for run in response.json()["data"]]


def pagination(response: SandboxResponse) -> dict[str, Any]:
    """A listing page's meta.pagination."""
    result: dict[str, Any] = response.json()["meta"]["pagination"]
    return result


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


# --- Suite-wide guards ------------------------------------------------------------------------
#
# Whatever file a test is in, it is watched for two things:
#
# 1. Forbidden requests. reconcile may only read (GET, HEAD), archive (DELETE .../runs/{id}) and
#    activate (PUT .../runs/{id}/activate); never the permanent delete (DELETE
#    .../runs/{id}/delete), never PUT .../runs/{id}, never anything else. Checked on every request
#    reconcile's client sends in this process (it logs each one on the "reconcile.http" logger,
#    which is set to DEBUG for the whole session) and on the request log of every `sandbox`
#    fixture, which also sees the requests of subprocesses.
# 2. The token. No CLI output (stdout and stderr), exception or traceback, log record, or file
#    the CLI wrote may contain an access token. Every `CliRunner.invoke` of the session is
#    observed (the token is whatever TALLYFY_ACCESS_TOKEN or --token-file held for that run,
#    plus every token seen before); tests that run a subprocess pass its output to
#    `check_no_secret`. `reconcile sandbox` is exempt: printing its own token is its job.
#
# A violation fails the test it happens in. The terminal summary prints what was checked.

_RUN_PATH = re.compile(r"/organizations/[^/]+/runs/[0-9a-f]{32}")
_MIN_SECRET = 8  # shorter strings would match ordinary output by chance


def allowed_request(request: LoggedRequest) -> bool:
    """Whether reconcile may send this request: reads, archive and activate, nothing else."""
    if request.method in ("GET", "HEAD"):
        return True
    if request.method == "DELETE":
        return _RUN_PATH.fullmatch(request.path) is not None
    if request.method == "PUT" and request.path.endswith("/activate"):
        return _RUN_PATH.fullmatch(request.path.removesuffix("/activate")) is not None
    return False


class _Guard(logging.Handler):
    """Collects what the session checked and every violation, per test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = {TOKEN}
        self.violations: list[str] = []
        self.requests_checked = 0
        self.outputs_checked = 0
        self.files_checked = 0
        self.records_checked = 0

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
        args = record.args
        if record.name == "reconcile.http" and isinstance(args, tuple) and len(args) == 3:
            method, path = str(args[0]), str(args[1])
            self.requests_checked += 1
            logged = LoggedRequest(method, path, {}, 0, None, method not in ("GET", "HEAD"))
            if not allowed_request(logged):
                self.violations.append(f"reconcile sent a forbidden request: {method} {path}")


GUARD = _Guard()
FIGURES: Counter[str] = Counter()
"""Figures some tests add up (faults injected, bad inputs tried...), printed after the run."""


def check_no_secret(text: str, where: str) -> None:
    """Fail if `text` (an output of reconcile) contains any token seen in this session."""
    GUARD.outputs_checked += 1
    leaked = GUARD.leaks(text)
    assert not leaked, f"{where} contains an access token"


def _path_args(args: Iterable[str]) -> list[Path]:
    return [Path(arg.split("=", 1)[-1]) for arg in args if os.sep in arg]


def _files(folders: Iterable[Path]) -> dict[Path, int]:
    return {
        path: path.stat().st_mtime_ns
        for folder in folders
        if folder.is_dir()
        for path in folder.iterdir()
        if path.is_file()
    }


def _observed_invoke(original: Any) -> Any:
    def invoke(self: CliRunner, cli: Any, args: Any = None, **kwargs: Any) -> Result:
        argv = [args] if isinstance(args, str) else [str(arg) for arg in args or ()]
        env = kwargs.get("env") or {}
        GUARD.add_secret(env.get(TOKEN_ENV) or os.environ.get(TOKEN_ENV))
        token_files = set()
        for flag, value in itertools.pairwise(argv):
            if flag == "--token-file" and Path(value).is_file():
                token_files.add(Path(value).resolve())
                GUARD.add_secret(Path(value).read_text(encoding="utf-8", errors="replace"))
        folders = {Path.cwd(), *(path.parent for path in _path_args(argv))}
        before = _files(folders)
        result: Result = original(self, cli, args, **kwargs)
        if "sandbox" in argv:
            return result
        where = f"`reconcile {' '.join(argv)}`"
        check_no_secret(result.output, f"the output of {where}")
        if result.exc_info is not None and not isinstance(result.exception, SystemExit):
            trace = "".join(traceback.format_exception(*result.exc_info))
            check_no_secret(trace, f"the exception raised by {where}")
        for path, mtime in _files(folders).items():
            if before.get(path) != mtime and path.resolve() not in token_files:
                GUARD.files_checked += 1
                text = path.read_text(encoding="utf-8", errors="replace")
                check_no_secret(text, f"the file {path} written by {where}")
        return result

    return invoke


@pytest.fixture(autouse=True, scope="session")
def _session_guard() -> Iterator[None]:
    logger = logging.getLogger("reconcile")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(GUARD)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CliRunner, "invoke", _observed_invoke(CliRunner.invoke))
        yield
    logger.removeHandler(GUARD)
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def _test_guard() -> Iterator[None]:
    GUARD.violations.clear()
    yield
    violations = list(GUARD.violations)
    GUARD.violations.clear()
    assert not violations, "\n".join(violations)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.write_line(
            "figures: " + ", ".join(f"{name} {count}" for name, count in sorted(FIGURES.items()))
        )
    terminalreporter.write_line(
        f"guards: {GUARD.requests_checked} requests checked for forbidden writes; "
        f"{GUARD.outputs_checked} outputs, {GUARD.files_checked} written files and "
        f"{GUARD.records_checked} log records checked for {len(GUARD.secrets)} tokens"
    )

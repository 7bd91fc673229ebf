"""Shared fixtures: the demo organization in the sandbox, in-process or over real HTTP; and the
suite-wide guards that watch every test for a leaked token and for a write request reconcile must
never send (what they check is described in tests/guards.py)."""

from __future__ import annotations

import itertools
import logging
import os
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from reconcile.config import TOKEN_ENV
from reconcile.sandbox import Sandbox, serve
from reconcile.sandbox.seed import load_seed
from tests.demo import DEMO_SEED, ORG, TOKEN
from tests.guards import FIGURES, GUARD, allowed_request, check_no_secret
from tests.helpers import Clock

pytest_plugins = [
    "pytester",  # test_secrets.py runs the guards below on tests made to fail
    "tests.ci_runner",  # the CI runners and their fixtures (the fake forge, a clone)
]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The demo organization. At teardown its request log is checked for forbidden writes."""
    emulator = Sandbox.from_seed(DEMO_SEED)
    yield emulator
    forbidden = [
        f"{r.method} {r.path}" for r in emulator.requests if not allowed_request(r.method, r.path)
    ]
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


CI_CONTEXT = (
    *("GITHUB_SHA", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"),
    *("CI_COMMIT_SHA", "CI_PIPELINE_URL", "GITHUB_STEP_SUMMARY"),
)
"""What a CI job sets and reconcile's Markdown reads: a test sets it, never inherits it."""


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_CONTEXT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def demo(clock: Clock) -> Sandbox:
    """The demo organization on a settable clock, for calling `dispatch` directly."""
    seed = load_seed(DEMO_SEED)
    return Sandbox(seed.org_id, seed.token, seed.runs, org_name=seed.org_name, clock=clock)


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


def _watched_send(original: Any) -> Any:
    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        GUARD.sent(request.method, request.url.path)
        response: httpx.Response = original(self, request, **kwargs)
        return response

    return send


def _watched_async_send(original: Any) -> Any:
    async def send(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        GUARD.sent(request.method, request.url.path)
        response: httpx.Response = await original(self, request, **kwargs)
        return response

    return send


@pytest.fixture(autouse=True, scope="session")
def _session_guard() -> Iterator[None]:
    logger = logging.getLogger("reconcile")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(GUARD)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CliRunner, "invoke", _observed_invoke(CliRunner.invoke))
        patch.setattr(httpx.Client, "send", _watched_send(httpx.Client.send))
        patch.setattr(httpx.AsyncClient, "send", _watched_async_send(httpx.AsyncClient.send))
        yield
    logger.removeHandler(GUARD)
    logger.setLevel(level)


@pytest.fixture(autouse=True)
def _test_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    GUARD.violations.clear()
    GUARD.forbidden_allowed = (
        request.node.get_closest_marker("sends_forbidden_requests") is not None
    )
    yield
    GUARD.forbidden_allowed = False
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

"""The console cannot break an apply: a console that is not UTF-8, a standard output closed before
or during the apply (`apply | head`), and error messages and traces that quote a hostile API. The
CLI runs as a process against the sandbox over HTTP, or in-process against a small server of the
test's own that refuses every request with a hostile message."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.render.progress import ProgressLine
from reconcile.render.sanitize import CleanFormatter
from reconcile.sandbox import Sandbox, SandboxRun
from tests.demo import ORG
from tests.guards import FIGURES, check_no_secret
from tests.hostile import HOSTILE, assert_inert

TIMEOUT = 60


def hostile_runs(sandbox: Sandbox, folder: Path, count: int) -> tuple[Path, list[str]]:
    """`count` active runs named from the hostile corpus, and a state file (gates opened) that
    archives them all."""
    ids = [f"{0xC0000 + n:032x}" for n in range(count)]
    sandbox.add_runs(
        [SandboxRun(id=run_id, name=HOSTILE[n % len(HOSTILE)]) for n, run_id in enumerate(ids)]
    )
    lines = ["[safety]", "max_archive_percent = 100", "[runs]"]
    lines += [f'{run_id} = "archived"' for run_id in ids]
    path = folder / "state.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, ids


def reconcile(
    *args: str, stdout: int = subprocess.PIPE, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """`reconcile ARGS` as a process, in the test's environment plus `env`."""
    process = subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=os.environ | env,
        check=False,
        timeout=TIMEOUT,
    )
    for name, output in (("stdout", process.stdout), ("stderr", process.stderr)):
        check_no_secret((output or b"").decode(errors="replace"), f"the {name} of reconcile")
    return process


def report_of(path: Path) -> dict[str, str]:
    """Each change's outcome in an apply report."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return {entry["run_id"]: entry["outcome"] for entry in document["changes"]}


@pytest.mark.parametrize("command", ["text", "markdown", "json", "apply"])
def test_a_cp1252_console_never_crashes_plan_or_apply(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, command: str
) -> None:
    path, ids = hostile_runs(sandbox, tmp_path, len(HOSTILE))
    report = tmp_path / "report.json"
    if command == "apply":
        args = ["apply", str(path), "--auto-approve", "--report", str(report)]
    else:
        args = ["plan", str(path), "--format", command]
    process = reconcile(*args, PYTHONIOENCODING="cp1252")
    assert process.returncode == 0, process.stderr.decode()
    assert b"Traceback" not in process.stderr
    shown = process.stdout.decode("cp1252")
    assert_inert(shown)
    if command == "json":
        names = {c["run_id"]: c["name"] for c in json.loads(shown)["changes"]}
        assert names == {run_id: sandbox.run(run_id)["name"] for run_id in ids}
    else:
        assert "\\u65e5\\u672c\\u8a9e" in shown  # the Japanese name, escaped, not a crash
    if command == "apply":
        assert report_of(report) == dict.fromkeys(ids, "ok")
        assert all(sandbox.is_archived(run_id) for run_id in ids)
        assert len(sandbox.writes) == len(ids)
        closing = f"Apply finished: {len(ids)} archived, 0 activated, 0 failed."
        assert shown.rstrip().endswith(closing)
    FIGURES["hostile strings shown through the CLI"] += len(ids)


def test_a_closed_stdout_never_cancels_writes_and_the_report_tells_all(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path, ids = hostile_runs(sandbox, tmp_path, 40)
    sandbox.behaviour = replace(sandbox.behaviour, latency=0.02)
    report = tmp_path / "report.json"
    reading, writing = os.pipe()
    os.close(reading)  # every write to standard output fails with EPIPE
    try:
        process = reconcile(
            "apply", str(path), "--auto-approve", "--report", str(report), stdout=writing
        )
    finally:
        os.close(writing)
    stderr = process.stderr.decode()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "Exception ignored" not in stderr
    assert stderr.startswith(
        "Warning: standard output failed part-way (Broken pipe); the apply went on. Its summary:\n"
    )
    assert "Apply finished: 40 archived, 0 activated, 0 failed." in stderr
    assert report_of(report) == dict.fromkeys(ids, "ok")
    assert json.loads(report.read_text())["finished"] is True
    assert all(sandbox.is_archived(run_id) for run_id in ids)
    assert sorted(request.path.rsplit("/", 1)[1] for request in sandbox.writes) == ids


def test_apply_piped_into_head(sandbox: Sandbox, cli_env: str, tmp_path: Path) -> None:
    path, ids = hostile_runs(sandbox, tmp_path, 30)
    sandbox.behaviour = replace(sandbox.behaviour, latency=0.02)
    report = tmp_path / "report.json"
    reporting = ("--report", str(report))
    apply = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "apply", str(path), "--auto-approve", *reporting],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert apply.stdout is not None
    head = subprocess.run(
        ["head", "-n", "3"], stdin=apply.stdout, capture_output=True, check=True, timeout=TIMEOUT
    )
    apply.stdout.close()
    _, stderr = apply.communicate(timeout=TIMEOUT)
    assert len(head.stdout.splitlines()) == 3
    assert apply.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert report_of(report) == dict.fromkeys(ids, "ok")
    assert all(sandbox.is_archived(run_id) for run_id in ids)
    assert len(sandbox.writes) == len(ids)


def test_a_plan_that_cannot_be_shown_exits_1(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    path, _ = hostile_runs(sandbox, tmp_path, 5)
    reading, writing = os.pipe()
    os.close(reading)
    try:
        process = reconcile("plan", str(path), "--detailed-exitcode", stdout=writing)
    finally:
        os.close(writing)
    assert process.returncode == 1
    assert process.stderr.decode() == (
        "Error: the plan could not be written to standard output (Broken pipe); what was shown "
        "is incomplete.\n"
    )
    assert sandbox.writes == []


class Refusing(ThreadingHTTPServer):
    """A server that refuses every request with 403 and `message`, as Tallyfy words refusals."""

    message = ""


class _Refuse(BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        message = cast(Refusing, self.server).message
        body = json.dumps({"error": True, "message": message}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_DELETE = do_PUT = _refuse

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads what the CLI prints, not the server's log."""


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Refusing]:
    server = Refusing(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    monkeypatch.setenv("TALLYFY_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api")
    monkeypatch.setenv("TALLYFY_ORG_ID", ORG)
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", "refused-token")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_an_api_message_cannot_forge_a_line_of_an_error(refusing: Refusing, tmp_path: Path) -> None:
    path = tmp_path / "state.toml"
    path.write_text(f'[runs]\n{"a" * 32} = "archived"\n', encoding="utf-8")
    for message in HOSTILE:
        refusing.message = message
        result = CliRunner().invoke(cli, ["plan", str(path), "--fetch", "get"])
        assert result.exit_code == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: The token's user lacks permission for run ")
        assert lines[0].endswith('".')
        assert_inert(result.stderr)
    FIGURES["hostile strings shown through the CLI"] += len(HOSTILE)
    FIGURES["forged lines"] += 0


def test_the_debug_trace_is_cleaned() -> None:
    record = logging.LogRecord(
        "reconcile.http", logging.DEBUG, __file__, 1, "%s %s -> %s", ("GET", HOSTILE[4], 200), None
    )
    line = CleanFormatter("debug: %(name)s: %(message)s").format(record)
    assert line == "debug: reconcile.http: GET " + HOSTILE[4].replace("\r", "\\r") + " -> 200"
    assert_inert(line)


def test_the_progress_line_never_raises_and_shows_its_label_cleaned() -> None:
    reading, writing = os.pipe()
    os.close(reading)
    closed = os.fdopen(writing, "w")
    progress = ProgressLine(closed, "Applying", "changes", every=0)
    progress.update(1, 2)  # the pipe is closed: the line turns itself off
    progress.update(2, 2)
    progress.clear()
    with contextlib.suppress(BrokenPipeError):
        closed.close()  # what it still buffers cannot be written either
    shown = io.StringIO()
    progress = ProgressLine(shown, "Reading\x1b[2J", "runs\n", every=0)
    progress.update(1, 2)
    progress.clear()
    assert shown.getvalue() == "\r\x1b[KReading\\x1b[2J: 1/2 runs\\n\r\x1b[K"

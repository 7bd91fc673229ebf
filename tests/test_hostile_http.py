"""A hostile API, through the CLI: redirects, statuses nobody documents, timestamps that are not,
answers that trickle, never end or expand a thousandfold. None is taken for an answer, none hangs,
none grows past a bound, and a write they leave in doubt is settled by re-reading the run.

The server is the demo sandbox over real HTTP on loopback with a hand on the wire (HostileApi):
a rule may answer a request itself, before or after the sandbox carried it out. Every test that
could hang runs under `within`, which fails it after a few seconds instead."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner, Result

from reconcile.cli import cli
from reconcile.sandbox import Sandbox
from reconcile.sandbox.responses import SandboxResponse
from tests.deadlines import within
from tests.demo import DEMO_IDS, ORG, TOKEN
from tests.guards import FIGURES
from tests.helpers import sandbox_states, write_state

RUN = DEMO_IDS[0]  # active in the demo organization
RUN_PATH = f"/organizations/{ORG}/runs/{RUN}"


class Wire:
    """One request a rule answers: `honest()` lets the sandbox carry it out and returns its
    answer; `send` writes raw bytes; `gone` is set when the server shuts down."""

    def __init__(self, handler: _Handler, body: bytes) -> None:
        self._handler = handler
        self._body = body
        self.gone = handler.api.gone

    def honest(self) -> SandboxResponse:
        h = self._handler
        return h.api.sandbox.dispatch(h.command, h.path, dict(h.headers.items()), self._body)

    def send(self, data: bytes) -> None:
        self._handler.wfile.write(data)
        self._handler.wfile.flush()

    def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} Whatever"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        self.send("\r\n".join(lines).encode() + body)


Rule = Callable[[Wire], None]


@dataclass
class _Tamper:
    method: str
    path: str
    rule: Rule
    times: int


@dataclass
class HostileApi:
    """The sandbox served on loopback; `tamper(method, path, rule)` makes `rule` answer the next
    `times` requests with that method and path (query aside) instead of the sandbox."""

    sandbox: Sandbox
    seen: list[tuple[str, str]] = field(default_factory=list)
    gone: threading.Event = field(default_factory=threading.Event)
    _rules: list[_Tamper] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def tamper(self, method: str, path: str, rule: Rule, times: int = 1_000) -> None:
        self._rules.append(_Tamper(method, path, rule, times))

    def rule_for(self, method: str, target: str) -> Rule | None:
        path = urlsplit(target).path.removeprefix("/api")
        with self._lock:
            self.seen.append((method, target))
            for entry in self._rules:
                if entry.times and entry.method == method and entry.path == path:
                    entry.times -= 1
                    return entry.rule
        return None

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, target in self.seen if m == method and target == "/api" + path)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: HostileApi

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rule = self.api.rule_for(self.command, self.path)
        wire = Wire(self, body)
        if rule is not None:
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client hung up, as it should
                rule(wire)
            return
        answer = wire.honest()
        wire.answer(answer.status, answer.headers, answer.body)
        self.close_connection = True

    do_GET = do_PUT = do_DELETE = do_POST = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_hostile(sandbox: Sandbox) -> Iterator[HostileApi]:
    api = HostileApi(sandbox)
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield api
    finally:
        api.gone.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def hostile(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileApi]:
    with serve_hostile(sandbox) as api:
        monkeypatch.setenv("TALLYFY_API_URL", api.url)
        monkeypatch.setenv("TALLYFY_ORG_ID", ORG)
        monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", TOKEN)
        yield api


def reconcile(*args: str) -> Result:
    FIGURES["hostile answers tried"] += 1
    return CliRunner().invoke(cli, list(args))


def forged_run(archived_at: Any) -> bytes:
    """A run body as the API would send it, with `archived_at` as given."""
    data = {"id": RUN, "name": "Forged", "status": "archived", "archived_at": archived_at}
    return json.dumps({"data": data}).encode()


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308, 201, 202, 203, 206])
def test_an_unexpected_status_on_a_write_is_not_an_answer(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path, status: int
) -> None:
    """The DELETE is answered `status` with a body saying "archived", and not carried out. The
    answer is not taken for a result: each write is settled by re-reading the run (still active),
    written again at most twice, then reported failed. A redirect's Location is never visited."""
    headers = {"Content-Type": "application/json", "Location": f"{hostile.url}/stolen"}
    hostile.tamper(
        "DELETE", RUN_PATH, lambda wire: wire.answer(status, headers, forged_run("2026-01-01"))
    )
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        result = reconcile("apply", str(state), "--auto-approve")
    assert result.exit_code == 1, result.output
    assert f"FAILED  {RUN}  archive: The API answered HTTP {status} (" in result.stdout
    assert "Apply finished: 0 archived, 0 activated, 1 failed." in result.stdout
    assert sandbox_states(sandbox, (RUN,)) == {RUN: "active"}
    assert not [target for _, target in hostile.seen if "stolen" in target]
    deletes = [n for n, (method, _) in enumerate(hostile.seen) if method == "DELETE"]
    assert len(deletes) == 3
    for index in deletes:  # each write was followed by a read of the run before anything else
        assert hostile.seen[index + 1] == ("GET", "/api" + RUN_PATH)


def test_a_redirect_to_a_write_that_happened_is_confirmed_by_reading(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Settled like any ambiguous write: the sandbox archived the run and a 302 came back; the
    re-read finds it archived, so the change is done and not written again."""

    def carried_out_then_redirected(wire: Wire) -> None:
        wire.honest()
        wire.answer(302, {"Location": "https://elsewhere.test/"}, b"")

    hostile.tamper("DELETE", RUN_PATH, carried_out_then_redirected)
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        result = reconcile("apply", str(state), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert f"ok      {RUN}  archived (confirmed by re-reading)" in result.stdout
    assert hostile.count("DELETE", RUN_PATH) == 1
    assert sandbox_states(sandbox, (RUN,)) == {RUN: "archived"}


@pytest.mark.parametrize("status", [400, 405, 409, 410, 418])
@pytest.mark.parametrize("carried_out", [True, False], ids=["done", "not done"])
def test_an_undocumented_refusal_of_a_write_is_settled_by_reading(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path, status: int, carried_out: bool
) -> None:
    """A 4xx the API does not document for the write may answer a write that was a no-op, or
    one that happened: the run is re-read. Done, the change is confirmed; not done, it fails
    with the API's answer and is not sent again (a refusal is not a failure to deliver)."""

    def refuse(wire: Wire) -> None:
        if carried_out:
            wire.honest()
        body = json.dumps({"error": True, "message": "Nope", "code": "X"}).encode()
        wire.answer(status, {"Content-Type": "application/json"}, body)

    hostile.tamper("DELETE", RUN_PATH, refuse)
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        result = reconcile("apply", str(state), "--auto-approve")
    assert hostile.count("DELETE", RUN_PATH) == 1
    assert hostile.seen[-1] == ("GET", "/api" + RUN_PATH)
    if carried_out:
        assert result.exit_code == 0, result.output
        assert f"ok      {RUN}  archived (confirmed by re-reading)" in result.stdout
    else:
        assert result.exit_code == 1, result.output
        assert f"FAILED  {RUN}  archive: The API refused the request for run {RUN}." in (
            result.stdout
        )
        assert f'HTTP {status}) The API said: "Nope".' in result.stdout
    assert sandbox_states(sandbox, (RUN,)) == {RUN: "archived" if carried_out else "active"}


@pytest.mark.parametrize("status", [301, 302, 304, 307, 308, 204])
def test_an_unexpected_status_on_a_read_stops_before_any_write(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path, status: int
) -> None:
    headers = {"Location": f"{hostile.url}/stolen"}
    hostile.tamper("GET", RUN_PATH, lambda wire: wire.answer(status, headers, b""))
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        result = reconcile("apply", str(state), "--auto-approve")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: The API answered HTTP {status} (")
    assert f"(request: GET {RUN_PATH}, HTTP {status})" in result.stderr
    assert sandbox.writes == []
    assert not [target for _, target in hostile.seen if "stolen" in target]


# --- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["null", "0000-00-00 00:00:00", 0, 1767225600, "", True, "yes"])
def test_an_archived_at_that_is_not_a_timestamp_is_a_bad_answer(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path, value: Any
) -> None:
    """Read as "archived", any of these would make apply activate a run that is active."""
    hostile.tamper("GET", RUN_PATH, lambda wire: wire.answer(200, {}, forged_run(value)))
    state = write_state(tmp_path / "state.toml", {RUN: "active"})
    with within(20):
        planned = reconcile("plan", str(state))
        applied = reconcile("apply", str(state), "--auto-approve")
    for result in (planned, applied):
        assert result.exit_code == 1
        assert f"run {RUN} has an archived_at that is not a timestamp or null" in result.stderr
    assert sandbox.writes == []


def test_an_archived_at_that_is_not_a_timestamp_after_a_write_is_settled_by_reading(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The DELETE is carried out but answered with archived_at "null": an ambiguous answer, so
    the run is re-read (archived) and the change confirmed, not written twice."""

    def forged_after_effect(wire: Wire) -> None:
        wire.honest()
        wire.answer(200, {}, forged_run("null"))

    hostile.tamper("DELETE", RUN_PATH, forged_after_effect)
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        result = reconcile("apply", str(state), "--auto-approve")
    assert result.exit_code == 0, result.output
    assert f"ok      {RUN}  archived (confirmed by re-reading)" in result.stdout
    assert hostile.count("DELETE", RUN_PATH) == 1


def trickle(wire: Wire) -> None:
    """Headers at once, then one byte of the body every half second, for a minute."""
    wire.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 120\r\n\r\n")
    for byte in b" " * 120:
        if wire.gone.wait(0.5):
            return
        wire.send(bytes([byte]))


def test_timeout_bounds_the_whole_answer_not_the_gap_between_bytes(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Every DELETE trickles; each is cut off after --timeout, settled by reading, and after
    three writes the change fails with the reason. A read that trickles once is retried."""
    hostile.tamper("DELETE", RUN_PATH, trickle)
    hostile.tamper("GET", RUN_PATH, trickle, times=1)
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        result = reconcile("apply", str(state), "--auto-approve", "--timeout", "0.5")
    assert result.exit_code == 1, result.output
    assert (
        f"FAILED  {RUN}  archive: No answer from the API at {urlsplit(hostile.url).netloc} (the "
        f"whole answer did not arrive within the timeout of 0.5 s) for run {RUN}."
    ) in result.stdout
    assert hostile.count("DELETE", RUN_PATH) == 3
    assert sandbox_states(sandbox, (RUN,)) == {RUN: "active"}


@functools.cache
def gzip_bomb(mebibytes: int) -> bytes:
    """A gzip stream of `mebibytes` MiB of zeros, about a thousand times smaller. Each MiB is
    compressed once and its block repeated (a full flush makes blocks independent); the trailer's
    checksum is wrong, which a client that stops at its bound never reaches."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    first = squeeze.compress(chunk) + squeeze.flush(zlib.Z_FULL_FLUSH)
    block = squeeze.compress(chunk) + squeeze.flush(zlib.Z_FULL_FLUSH)
    return first + block * (mebibytes - 1) + squeeze.flush()


@pytest.mark.parametrize(
    ("encoding", "layers"),
    [("gzip", 1), ("gzip, gzip", 2), ("br", 0), ("deflate", 0)],
    ids=["1 GiB gzip bomb", "stacked gzip", "brotli", "deflate"],
)
def test_a_compressed_answer_cannot_expand_past_the_bound(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path, encoding: str, layers: int
) -> None:
    body = gzip_bomb(1024) if layers else b"x"
    if layers == 2:
        body = gzip.compress(body)
    headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
    hostile.tamper("GET", RUN_PATH, lambda wire: wire.answer(200, headers, body))
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        result = reconcile("apply", str(state), "--auto-approve")
    assert result.exit_code == 1
    reason = "larger than 32 MiB" if encoding == "gzip" else f"encoded as {encoding!r}"
    assert result.stderr.startswith("Error: The API's answer was not read to its end: the body")
    assert reason in result.stderr
    assert sandbox.writes == []


def test_a_corrupt_or_cut_gzip_answer_is_a_bad_answer(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    whole = gzip.compress(forged_run(None))
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    hostile.tamper("GET", RUN_PATH, lambda wire: wire.answer(200, headers, whole[:-12]), times=1)
    hostile.tamper("GET", RUN_PATH, lambda wire: wire.answer(200, headers, b"\x1f\x8bjunk"))
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(20):
        cut = reconcile("plan", str(state))
        corrupt = reconcile("plan", str(state))
    assert "the gzip-compressed body ends before its end" in cut.stderr
    assert "the gzip-compressed body is corrupt" in corrupt.stderr
    assert cut.exit_code == corrupt.exit_code == 1


def endless(wire: Wire) -> None:
    """A chunked body that never ends, as fast as the client takes it."""
    wire.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    wire.send(b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b" " * 65536
    while not wire.gone.is_set():
        wire.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))


def test_an_answer_that_never_ends_is_cut_off_at_the_bound(
    hostile: HostileApi, sandbox: Sandbox, tmp_path: Path
) -> None:
    hostile.tamper("GET", RUN_PATH, endless)
    state = write_state(tmp_path / "state.toml", {RUN: "archived"})
    with within(30):
        result = reconcile("plan", str(state), "--timeout", "25")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: The API's answer was not read to its end: the body is larger than 32 MiB for run "
    )
    assert sandbox.writes == []

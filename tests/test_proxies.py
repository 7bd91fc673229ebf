"""Which proxy a request with the token may cross, and which API URLs are refused, through the CLI.

The proxies are the test's own on loopback (RecordingProxy): they keep every byte a client sends
them, and tunnel a CONNECT to a TLS endpoint in front of the sandbox. A loopback API is reached
directly whatever the variables say; an https API only through a CONNECT tunnel, so the proxy sees
a host name and encrypted bytes, never the token."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconcile.cli import cli
from reconcile.sandbox import Sandbox, serve
from reconcile.tallyfy.network import Proxy, proxy_for
from tests.deadlines import within
from tests.demo import DEMO_IDS, ORG, ROOT, TOKEN
from tests.guards import FIGURES
from tests.helpers import sandbox_states
from tests.tls import self_signed, tls_in_front

EXAMPLE = ROOT / "state.example.toml"
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)
ENVIRONMENT = (*PROXY_VARIABLES, "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")


@dataclass
class RecordingProxy:
    """A proxy that keeps every byte clients send it. A CONNECT to a host in `tunnels` is
    answered 200 and relayed to that address; anything else gets a 502."""

    tunnels: dict[str, tuple[str, int]]
    received: bytearray = field(default_factory=bytearray)
    heads: list[str] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, data: bytes) -> None:
        with self._lock:
            self.received += data

    def handle(self, client: socket.socket) -> None:
        client.settimeout(10)
        head = b""
        with contextlib.suppress(OSError), client:
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                self.keep(chunk)
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.heads.append(line)
            verb, target, _ = [*line.split(" "), "", ""][:3]
            upstream = self.tunnels.get(target) if verb == "CONNECT" else None
            if upstream is None:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with socket.create_connection(upstream) as server:
                server.sendall(head.split(b"\r\n\r\n", 1)[1])
                back = threading.Thread(target=_pump, args=(server, client, None), daemon=True)
                back.start()
                _pump(client, server, self)
                back.join(10)


def _pump(source: socket.socket, sink: socket.socket, recorder: RecordingProxy | None) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            if recorder is not None:
                recorder.keep(data)
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def recording_proxy(tunnels: dict[str, tuple[str, int]] | None = None) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy(tunnels or {})
    listener = socket.create_server(("127.0.0.1", 0))
    proxy.url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def accept() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            threading.Thread(target=proxy.handle, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield proxy
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the variables each test sets; the organization and token of the demo sandbox."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TALLYFY_ORG_ID", ORG)
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", TOKEN)


def reconcile(*args: str) -> Result:
    with within(30):
        return CliRunner().invoke(cli, list(args))


def refused(*args: str) -> Result:
    """A command given a bad proxy variable or API URL, counted for the README's figures."""
    FIGURES["bad proxy variables and API URLs tried"] += 1
    return reconcile(*args)


def every_proxy_variable(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.setenv(name, url)


# --- which proxy -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_loopback_api_never_goes_through_a_proxy(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scheme: str
) -> None:
    """Every proxy variable names a proxy and NO_PROXY is unset: not one byte reaches it."""
    cert, key = self_signed(tmp_path, "IP:127.0.0.1")
    with (
        recording_proxy() as proxy,
        serve(sandbox) as running,
        tls_in_front(running.port, cert, key) as tls_port,
    ):
        every_proxy_variable(monkeypatch, proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        port = running.port if scheme == "http" else tls_port
        monkeypatch.setenv("TALLYFY_API_URL", f"{scheme}://127.0.0.1:{port}/api")
        planned = reconcile("plan", str(EXAMPLE))
        applied = reconcile("apply", str(EXAMPLE), "--auto-approve")
    assert planned.exit_code == 0, planned.output
    assert applied.exit_code == 0, applied.output
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in applied.stdout
    assert sandbox.writes
    assert proxy.received == b""


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
def test_an_https_api_goes_through_a_connect_tunnel_only(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    """The proxy sees `CONNECT host:443` and TLS records: neither the token nor a header. A
    plain-http forwarding proxy (HTTP_PROXY) is never used."""
    cert, key = self_signed(tmp_path, "DNS:api.tallyfy.test")
    with (
        serve(sandbox) as running,
        tls_in_front(running.port, cert, key) as tls_port,
        recording_proxy({"api.tallyfy.test:443": ("127.0.0.1", tls_port)}) as tunnel,
        recording_proxy() as forwarder,
    ):
        monkeypatch.setenv("HTTP_PROXY", forwarder.url)
        monkeypatch.setenv("http_proxy", forwarder.url)
        monkeypatch.setenv(variable, tunnel.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        monkeypatch.setenv("TALLYFY_API_URL", "https://api.tallyfy.test/api")
        applied = reconcile("apply", str(EXAMPLE), "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert sandbox_states(sandbox, (DEMO_IDS[0], DEMO_IDS[2])) == {
        DEMO_IDS[0]: "archived",
        DEMO_IDS[2]: "active",
    }
    assert tunnel.heads
    assert set(tunnel.heads) == {"CONNECT api.tallyfy.test:443 HTTP/1.1"}
    assert TOKEN.encode() not in tunnel.received
    assert b"Authorization" not in tunnel.received
    assert b"/organizations/" not in tunnel.received
    assert forwarder.received == b""


API = "https://api.tallyfy.test/api"
HTTP = Proxy("http://proxy.test:3128", "https_proxy")
EVERY = Proxy("http://every.test:3128", "ALL_PROXY")


@pytest.mark.parametrize(
    ("api_url", "environ", "expected"),
    [
        (API, {"https_proxy": HTTP.url, "ALL_PROXY": EVERY.url}, HTTP),
        (API, {"ALL_PROXY": EVERY.url}, EVERY),
        (API, {"https_proxy": HTTP.url, "HTTPS_PROXY": "http://upper.test:1"}, HTTP),
        (API, {"HTTP_PROXY": "http://plain.test:80", "http_proxy": "http://plain.test:80"}, None),
        (API, {"ALL_PROXY": EVERY.url, "NO_PROXY": "tallyfy.test"}, None),
        (API, {"ALL_PROXY": EVERY.url, "no_proxy": ".api.tallyfy.test"}, None),
        (API, {"ALL_PROXY": EVERY.url, "NO_PROXY": "*"}, None),
        (API, {"ALL_PROXY": EVERY.url, "NO_PROXY": "api.tallyfy.test:443"}, None),
        (API, {"ALL_PROXY": EVERY.url, "NO_PROXY": "api.tallyfy.test:8443"}, EVERY),
        (API, {"ALL_PROXY": EVERY.url, "NO_PROXY": "other.test,example.com"}, EVERY),
        (API, {"ALL_PROXY": EVERY.url, "NO_PROXY": "tallyfy.testing"}, EVERY),
        ("https://10.1.2.3/api", {"ALL_PROXY": EVERY.url, "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://[fd00::1]/api", {"ALL_PROXY": EVERY.url, "NO_PROXY": "[fd00::1]:443"}, None),
        ("https://localhost/api", {"ALL_PROXY": EVERY.url}, None),
        ("https://[::1]:8443/api", {"ALL_PROXY": EVERY.url}, None),
        ("http://127.0.0.5:8080/api", {"ALL_PROXY": EVERY.url}, None),
        (API, {"ALL_PROXY": "every.test:3128"}, EVERY),
    ],
)
def test_the_proxy_for_an_api_url(
    api_url: str, environ: dict[str, str], expected: Proxy | None
) -> None:
    assert proxy_for(api_url, environ) == expected


# --- refused before any request --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://proxy.test:99999", "a port from 1 to 65535"),
        ("http://proxy.test:port", "a port from 1 to 65535"),
        ("http://proxy.test:0", "a port from 1 to 65535"),
        ("http://[::1:3128", "a port from 1 to 65535"),
        ("http://:3128", "a port from 1 to 65535"),
        ("socks5://proxy.test:1080", "names a socks5:// proxy"),
        ("ftp://proxy.test", "names a ftp:// proxy"),
        ("http://proxy.test\n:3128", "white space or a control character"),
        ("http://pro xy.test:3128", "white space or a control character"),
        ("http://user:s3cret@proxy.test:99999", "(ALL_PROXY=http://***@proxy.test:99999)"),
        ("http://user:s3cret@pro\x1bxy.test", "white space or a control character"),
    ],
)
@pytest.mark.parametrize("variable", ["https_proxy", "ALL_PROXY"])
def test_a_malformed_or_unsupported_proxy_variable_is_a_clear_error(
    sandbox: Sandbox,
    served: str,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    reason: str,
    variable: str,
) -> None:
    """Checked whether or not it applies (here the API is on loopback): a mistake shows on the
    first run. The value is never quoted with its password."""
    if variable not in reason and "=" in reason:
        reason = reason.replace("ALL_PROXY", variable)
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("TALLYFY_API_URL", served)
    result = refused("plan", str(EXAMPLE))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: The proxy variable {variable} ")
    assert reason in result.stderr
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output
    assert sandbox.requests == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:99999/api", "a port that is not a number from 1 to 65535"),
        ("http://127.0.0.1:http/api", "a port that is not a number from 1 to 65535"),
        ("https://go.tallyfy.com:0/api", "a port that is not a number from 1 to 65535"),
        ("http://[::1/api", "a malformed [IPv6] address"),
        ("https://go.tallyfy.com/api\n", "white space or a control character"),
        ("https://go.tallyfy.com/a\npi", "white space or a control character"),
        ("https://go.tallyfy.com/api\r", "white space or a control character"),
        ("https://go.tallyfy.com/ api", "white space or a control character"),
        ("https://me:pw@go.tallyfy.com/api", "carries a user name or password"),
    ],
)
def test_a_bad_api_url_is_a_clear_error(
    sandbox: Sandbox, served: str, monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    for given in (["--api-url", url], []):
        monkeypatch.setenv("TALLYFY_API_URL", url)
        result = refused("plan", str(EXAMPLE), *given)
        assert result.exit_code == 1
        assert result.stderr.startswith("Error: ")
        assert reason in result.stderr
        assert "Traceback" not in result.output
        assert ":pw@" not in result.output
    assert sandbox.requests == []


# --- the state file's api_url ----------------------------------------------------------------


def state_with_api_url(tmp_path: Path, api_url: str) -> Path:
    path = tmp_path / "state.toml"
    path.write_text(
        f'[tallyfy]\napi_url = "{api_url}"\n\n[runs]\n{DEMO_IDS[0]} = "archived"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    "api_url",
    [
        "https://collector.example/api",
        "https://tallyfy.com.collector.example/api",
        "https://go.tallyfy.com@collector.example/api",
        "https://collector.example/go.tallyfy.com/api",
        "http://go.tallyfy.com/api",
    ],
)
def test_a_state_file_cannot_send_the_token_to_another_host(
    sandbox: Sandbox, served: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, api_url: str
) -> None:
    """A pull request edits api_url. Every request would have to cross the recording proxy (the
    host is not loopback), and not one does. Given by the pipeline (TALLYFY_API_URL), another
    API is used, and the file's value is not."""
    state = state_with_api_url(tmp_path, api_url)
    with recording_proxy() as proxy:
        every_proxy_variable(monkeypatch, proxy.url)
        refusal = refused("apply", str(state), "--auto-approve")
        monkeypatch.setenv("TALLYFY_API_URL", served)
        overridden = reconcile("apply", str(state), "--auto-approve")
    assert refusal.exit_code == 1
    assert refusal.stderr.startswith("Error: ")
    reasons = ("is not a Tallyfy host", "unencrypted", "carries a user name or password")
    assert any(reason in refusal.stderr for reason in reasons), refusal.stderr
    assert proxy.received == b""
    assert overridden.exit_code == 0, overridden.output
    assert sandbox_states(sandbox, (DEMO_IDS[0],)) == {DEMO_IDS[0]: "archived"}


@pytest.mark.parametrize("host", ["go.tallyfy.com", "eu.tallyfy.com"])
def test_a_state_file_may_name_a_tallyfy_host(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, host: str
) -> None:
    """Reached here through the test's proxy, which tunnels the host to the sandbox."""
    cert, key = self_signed(tmp_path, f"DNS:{host}")
    state = state_with_api_url(tmp_path, f"https://{host}/api")
    with (
        serve(sandbox) as running,
        tls_in_front(running.port, cert, key) as tls_port,
        recording_proxy({f"{host}:443": ("127.0.0.1", tls_port)}) as tunnel,
    ):
        monkeypatch.setenv("HTTPS_PROXY", tunnel.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        applied = reconcile("apply", str(state), "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert set(tunnel.heads) == {f"CONNECT {host}:443 HTTP/1.1"}
    assert sandbox_states(sandbox, (DEMO_IDS[0],)) == {DEMO_IDS[0]: "archived"}


def test_a_state_file_may_name_loopback(
    sandbox: Sandbox, served: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = state_with_api_url(tmp_path, served)
    applied = reconcile("apply", str(state), "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert sandbox_states(sandbox, (DEMO_IDS[0],)) == {DEMO_IDS[0]: "archived"}


def test_an_unreadable_ca_bundle_is_a_clear_error(
    sandbox: Sandbox, served: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("TALLYFY_API_URL", served)
    result = refused("plan", str(EXAMPLE))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: Cannot load the CA certificates that SSL_CERT_FILE points at"
    )
    assert "Traceback" not in result.output
    assert sandbox.requests == []

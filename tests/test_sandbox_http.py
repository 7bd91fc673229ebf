"""The sandbox over real HTTP on loopback: keep-alive, absolute pagination links, dropped
connections, serve_forever, and the `reconcile sandbox` command."""

from __future__ import annotations

import _thread
import http.client
import json
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.sandbox import (
    Behaviour,
    Fault,
    Sandbox,
    serve,
    serve_forever,
)
from reconcile.sandbox.seed import DEMO_SEED, load_seed
from reconcile.sandbox.switches import SWITCHES, changed
from tests.demo import DEMO_IDS, ORG, TOKEN
from tests.helpers import SANDBOX_HEADERS

HEADERS = SANDBOX_HEADERS
IDS = DEMO_IDS
ACTIVE = IDS[0]  # active, users [101, 102]
DONE = IDS[2]  # status "complete", archived


# --- the real HTTP server --------------------------------------------------------------------


@pytest.fixture
def api_url(demo: Sandbox) -> Iterator[str]:
    with serve(demo) as running:
        assert running.url == f"http://127.0.0.1:{running.port}/api"
        assert running.host == "127.0.0.1"
        yield running.url


def test_server_latency_counts_from_the_request_line(demo: Sandbox, api_url: str) -> None:
    demo.behaviour = Behaviour(latency=0.2)
    connection = http.client.HTTPConnection("127.0.0.1", httpx.URL(api_url).port, timeout=5)
    try:
        for _ in range(2):  # the first request of a connection and one that waited for it
            start = time.perf_counter()
            connection.request("GET", f"/api/organizations/{ORG}/runs/{ACTIVE}", headers=HEADERS)
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert time.perf_counter() - start >= 0.2
            time.sleep(0.1)  # idle on the kept-alive connection: not part of the next latency
    finally:
        connection.close()


def test_server_keeps_connections_alive_on_both_prefixes(demo: Sandbox, api_url: str) -> None:
    port = httpx.URL(api_url).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        sockets = []
        for path in (f"/api/organizations/{ORG}/runs/{ACTIVE}", f"/organizations/{ORG}/runs"):
            connection.request("GET", path, headers=HEADERS)
            response = connection.getresponse()
            body = json.loads(response.read())
            assert response.status == 200
            assert not response.will_close
            assert "data" in body
            sockets.append(connection.sock)
        connection.request("DELETE", f"/organizations/{ORG}/runs/{ACTIVE}", headers=HEADERS)
        assert json.loads(connection.getresponse().read())["data"]["status"] == "archived"
        assert connection.sock is sockets[0]
    finally:
        connection.close()
    assert sockets[0] is sockets[1] is not None
    assert [entry.status for entry in demo.requests] == [200, 200, 200]
    assert demo.is_archived(ACTIVE)


def test_server_links_are_usable_as_is(demo: Sandbox, api_url: str) -> None:
    seen: list[str] = []
    with httpx.Client(headers={k: v for k, v in HEADERS.items() if k != "Host"}) as client:
        url: str | None = f"{api_url}/organizations/{ORG}/runs?per_page=3&archived=true"
        while url:
            response = client.get(url)
            assert response.status_code == 200
            body = response.json()
            seen += [run["id"] for run in body["data"]]
            links = body["meta"]["pagination"]["links"]
            url = links.get("next") if isinstance(links, dict) else None
            if url:
                assert url.startswith(api_url)
    assert seen == list(IDS)
    assert len(demo.requests) == 4


def test_server_drop_fault_closes_the_connection(demo: Sandbox, api_url: str) -> None:
    demo.inject(Fault("drop", method="PUT", after_effect=True))
    headers = {k: v for k, v in HEADERS.items() if k != "Host"}
    with httpx.Client(base_url=api_url, headers=headers) as client:
        assert client.get(f"/organizations/{ORG}/runs/{DONE}").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.put(f"/organizations/{ORG}/runs/{DONE}/activate")
        after = client.get(f"/organizations/{ORG}/runs/{DONE}").json()["data"]
    assert after["archived_at"] is None
    assert [entry.status for entry in demo.requests] == [200, 0, 200]


def test_serve_forever_reports_its_url_and_stops_on_interrupt(demo: Sandbox) -> None:
    seen: dict[str, Any] = {}

    def ready(url: str) -> None:
        def probe() -> None:
            try:
                seen["status"] = httpx.get(f"{url}/me", headers=HEADERS, timeout=5).status_code
            finally:
                _thread.interrupt_main()  # what Ctrl-C does

        seen["url"] = url
        threading.Thread(target=probe, daemon=True).start()

    serve_forever(demo, "127.0.0.1", 0, ready)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", seen["url"])
    assert seen["status"] == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{seen['url']}/me", headers=HEADERS, timeout=1)


# --- the `reconcile sandbox` command -----------------------------------------------------------

# One non-default value of every switch, by flag: (flag value(s), TOML value, Python value).
SAMPLES: dict[str, tuple[str, str, Any]] = {
    "--archived-get": ("404", "404", 404),
    "--noop-write": ("409", '"409"', "409"),
    "--archive-sets-status": ("false", "false", False),
    "--put-clears-assignees": ("false", "false", False),
    "--archived-listing": ("status", '"status"', "status"),
    "--default-lists-archived": ("true", "true", True),
    "--per-page-default": ("5", "5", 5),
    "--per-page-cap": ("50", "50", 50),
    "--per-page-ignored": ("true", "true", True),
    "--pagination-links": ("null", '"null"', "null"),
    "--total-pages": ("250", "250", 250),
    "--rate-limit": ("600", "600", 600),
    "--rate-window": ("12/5s:get 140/10s", '["12/5s:get", "140/10s"]', ("12/5s:get", "140/10s")),
    "--rate-limit-headers": ("2", "2", 2),
    "--missing-client-header": ("404", "404", 404),
    "--can-archive": ("false", "false", False),
    "--admin": ("false", "false", False),
    "--activity-feed": ("forbidden", '"forbidden"', "forbidden"),
    "--auto-archive-clock": ("", "true", True),  # a yes/no flag alone means yes
    "--latency-ms": ("20", "20", 0.02),
}
BY_FLAG = {switch.flag: switch for switch in SWITCHES}
START_TIMEOUT = 20.0


@contextmanager
def sandbox_command(*args: str) -> Iterator[tuple[str, list[str]]]:
    """`reconcile sandbox --port 0 ARGS` in a process of its own: (its URL, its first lines)."""
    command = [sys.executable, "-m", "reconcile", "sandbox", "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout or ():
            lines.put(line)
        lines.put("")  # the end of its output

    # A thread reads, so that waiting for a line can time out.
    reader = threading.Thread(target=read)
    reader.start()
    try:
        seen: list[str] = []
        while not seen or not seen[-1].startswith("  export TALLYFY_ACCESS_TOKEN="):
            line = lines.get(timeout=START_TIMEOUT)
            assert line, f"the sandbox stopped before serving: {seen}"
            seen.append(line.rstrip("\n"))
        yield seen[0].rsplit(" at ", 1)[1], seen
    finally:
        process.terminate()
        process.wait(timeout=START_TIMEOUT)
        reader.join(timeout=START_TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()


def test_flags_and_the_seed_table_reach_every_switch(tmp_path: Path) -> None:
    assert sorted(SAMPLES) == sorted(BY_FLAG)
    behaviour = Behaviour(**{BY_FLAG[flag].name: value for flag, (*_, value) in SAMPLES.items()})
    shown = f"  switches: {', '.join(changed(behaviour))}"
    seed = tmp_path / "seed.toml"
    table = "\n".join(f"{BY_FLAG[flag].key} = {toml}" for flag, (_, toml, _) in SAMPLES.items())
    seed.write_text(DEMO_SEED.read_text("utf-8") + f"\n[sandbox]\n{table}\n", "utf-8")
    assert load_seed(seed).behaviour == behaviour
    with sandbox_command("--seed", str(seed)) as (_, lines):
        assert lines[1] == shown
    flags = [
        arg
        for flag, (text, *_) in SAMPLES.items()
        for arg in ([flag] if not text else [x for v in text.split() for x in (flag, v)])
    ]
    with sandbox_command(*flags) as (url, lines):
        # Without --seed: the demo organization, from the copy inside the package.
        assert lines[0] == f"Sandbox serving organization {ORG} at {url}"
        assert lines[1] == shown
        headers = {k: v for k, v in HEADERS.items() if k != "Host"}
        with httpx.Client(base_url=f"{url}/organizations/{ORG}", headers=headers, timeout=5) as api:
            listing = api.get("/runs", params={"per_page": 2, "archived": "only"})
            meta = listing.json()["meta"]["pagination"]
            assert (meta["total"], meta["per_page"], meta["total_pages"]) == (10, 5, 1)
            assert meta["links"] is None
            assert listing.headers["X-RateLimit-Limit"] == "12"  # the second window
            assert api.delete(f"/runs/{ACTIVE}").status_code == 403
            unnamed = api.get("/runs", headers={"X-Tallyfy-Client": ""})
            assert (unnamed.status_code, unnamed.json()["code"]) == (404, "ENDPOINT_NOT_FOUND")


def refused(*args: str) -> str:
    """The output of `reconcile sandbox ARGS`, which must fail with exit 1 and no traceback."""
    result = CliRunner().invoke(cli, ["sandbox", *args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result.output


def test_a_port_in_use_is_one_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert refused("--port", str(port)) == (
            f"Error: cannot listen on 127.0.0.1 port {port}: Address already in use. Pick another "
            "--port (0 picks a free one) or a --host this machine has, such as 127.0.0.1.\n"
        )


def test_an_address_this_machine_does_not_have_is_one_error() -> None:
    output = refused("--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: never assigned
    assert output.startswith("Error: cannot listen on 192.0.2.1 port 0: Cannot assign request")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--noop-write", "204"], "Invalid value for '--noop-write': '204' is not one of"),
        (["--rate-window", "5/1x"], "Invalid value for '--rate-window': rate window '5/1x' is"),
        (["--total-pages", "all"], "Invalid value for '--total-pages': must be \"served\""),
        (["--per-page-cap", "0"], "Error: invalid sandbox Behaviour: per_page_default and per_p"),
        (["--rate-limit-headers", "3"], "Error: invalid sandbox Behaviour: rate_limit_headers"),
    ],
)
def test_bad_switch_values_are_one_error(args: list[str], expected: str) -> None:
    assert expected in refused(*args)


def test_a_bad_seed_file_is_one_error(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(DEMO_SEED.read_text("utf-8") + '\n[sandbox]\nnoop_write = "204"\n', "utf-8")
    assert refused("--seed", str(seed)) == (
        f"Error: {seed}: unusable sandbox seed:\n"
        "  - [sandbox] noop_write: must be one of 200, 400, 404, 409, 422, not '204'\n"
    )
    seed.write_text("[org\n", "utf-8")
    assert refused("--seed", str(seed)).startswith(f"Error: {seed}: unusable sandbox seed:\n")


def test_the_seeds_auto_archive_and_activity_are_served(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    text = DEMO_SEED.read_text("utf-8").replace(
        'token = "sandbox-token"\n',
        'token = "sandbox-token"\nauto_archive = true\n'
        'auto_archive_processes_after = { unit = "weeks", value = 2 }\n',
        1,
    )
    actor = '{ id = 67890, name = "Jane Doe", email = "jane@example.com" }'
    moves = f'[[activity]]\nrun = "{ACTIVE}"\nverb = "archived"\nat = "2026-11-30T15:00:00Z"\n'
    seed.write_text(f"{text}\n{moves}actor = {actor}\n", "utf-8")
    state = tmp_path / "state.toml"
    state.write_text(f'[runs]\n{ACTIVE} = "active"\n', "utf-8")
    with sandbox_command("--seed", str(seed)) as (url, _):
        headers = {k: v for k, v in HEADERS.items() if k != "Host"}
        with httpx.Client(base_url=f"{url}/organizations/{ORG}", headers=headers, timeout=5) as api:
            org = api.get("").json()["data"]
            assert (org["auto_archive"], org["auto_archive_processes_after"]) == (
                True,
                {"unit": "weeks", "value": 2},
            )
            assert api.get(f"/runs/{ACTIVE}").json()["data"]["archived_at"] is not None
        env = {"TALLYFY_API_URL": url, "TALLYFY_ORG_ID": ORG, "TALLYFY_ACCESS_TOKEN": TOKEN}
        result = CliRunner().invoke(cli, ["plan", str(state), "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    (change,) = json.loads(result.stdout)["changes"]
    assert change["cause"] == "person"
    assert change["moved_by"] == {
        "actor": "Jane Doe",
        "email": "jane@example.com",
        "at": "2026-11-30T15:00:00Z",
        "source": "Member",
        "self": False,
    }

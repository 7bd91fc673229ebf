"""Everyday edges: a state file is used only with its own organization, a connection error names
the host, and --debug works anywhere on the command line or from RECONCILE_DEBUG."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconcile.cli import cli
from reconcile.sandbox import Sandbox
from tests.demo import DEMO_IDS, ORG, TOKEN
from tests.guards import check_no_secret
from tests.helpers import write_state

OTHER = "a" * 32


@pytest.mark.parametrize("given", ["env", "flag"])
def test_an_organization_other_than_the_files_is_refused_naming_both(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"}, org_id=OTHER)
    args = ["plan", str(path)]
    if given == "flag":
        monkeypatch.delenv("TALLYFY_ORG_ID")
        args += ["--org", ORG]
    for command in (args, ["apply", *args[1:], "--auto-approve"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1
        source, undo = (
            ("--org", "drop --org")
            if given == "flag"
            else ("TALLYFY_ORG_ID", "unset TALLYFY_ORG_ID")
        )
        assert result.stderr == (
            f"Error: The organization given by {source}, {ORG}, is not the state file's org_id, "
            f"{OTHER}. A state file that names its organization is used only with that one: "
            f"{undo}, or change (or remove) org_id in the file's [tallyfy] table to use it with "
            "another.\n"
        )
    assert sandbox.requests == [], "refused before any request"


def test_the_organization_from_flag_or_environment_serves_a_file_without_org_id(
    sandbox: Sandbox, cli_env: str, tmp_path: Path
) -> None:
    bare = write_state(tmp_path / "bare.toml", {DEMO_IDS[0]: "active"})
    assert CliRunner().invoke(cli, ["plan", str(bare)]).exit_code == 0
    same = write_state(tmp_path / "same.toml", {DEMO_IDS[0]: "active"}, org_id=ORG)
    assert CliRunner().invoke(cli, ["plan", str(same), "--org", ORG]).exit_code == 0
    assert sandbox.writes == []


def reconcile(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        env={**os.environ, "TALLYFY_ORG_ID": ORG, "TALLYFY_ACCESS_TOKEN": TOKEN, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def refused_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_connection_error_names_the_host(refused_port: int, tmp_path: Path) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    done = reconcile("plan", str(path), "--api-url", f"http://127.0.0.1:{refused_port}/api")
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: No answer from the API at 127.0.0.1:{refused_port} (")
    assert "Traceback" not in done.stderr
    check_no_secret(done.stdout + done.stderr, "a connection error")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--debug", "plan"], {}),
        (["plan", "--debug"], {}),
        (["plan"], {"RECONCILE_DEBUG": "1"}),
    ],
)
def test_debug_before_or_after_the_command_or_from_the_environment(
    args: list[str], env: dict[str, str], refused_port: int, tmp_path: Path
) -> None:
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    url = f"http://127.0.0.1:{refused_port}/api"
    done = reconcile(*args, str(path), "--api-url", url, **env)
    assert done.returncode == 1
    traced = rf"debug: reconcile\.http: GET /organizations/{ORG}/runs\S* -> ConnectError"
    assert re.search(traced, done.stderr), done.stderr
    assert "Traceback (most recent call last)" in done.stderr
    check_no_secret(done.stdout + done.stderr, "--debug output")
    quiet = reconcile("plan", str(path), "--api-url", url, RECONCILE_DEBUG="0")
    assert "debug:" not in quiet.stderr


@pytest.mark.parametrize("args", [["--version"], ["validate", "STATE"]])
def test_commands_that_send_no_request_do_not_load_the_http_stack(
    args: list[str], tmp_path: Path
) -> None:
    """pre-commit runs validate on every commit: it and --version start without the pipeline,
    the HTTP client or the renderers (their start-up time is in bench --startup)."""
    path = write_state(tmp_path / "state.toml", {DEMO_IDS[0]: "active"})
    argv = ["reconcile", *(str(path) if arg == "STATE" else arg for arg in args)]
    code = (
        f"import sys\nsys.argv = {argv!r}\nfrom reconcile.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(done.stdout.split())
    for heavy in ("httpx", "anyio", "asyncio", "reconcile.pipeline", "reconcile.render.text"):
        assert heavy not in loaded, f"{' '.join(args)} loaded {heavy}"
    assert "reconcile.cli.planning" in loaded, "the command ran"

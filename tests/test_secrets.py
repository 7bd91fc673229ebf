"""Secrets and trust: the token never shows, TLS is always verified, plain http only on loopback,
only the two planned writes are ever sent, and 401/403 say what to do. The suite-wide guards in
conftest.py check every other test for a leaked token and for forbidden requests as well."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from reconcile.sandbox import Fault, Sandbox, serve
from tests.demo import DEMO_IDS, ORG, ROOT, TOKEN
from tests.guards import allowed_request, check_no_secret
from tests.helpers import run, sandbox_states
from tests.tls import self_signed, tls_in_front

EXAMPLE = ROOT / "state.example.toml"
SECRET = "tok-9f8e7d6c5b4a3f2e1d0c"  # a token the sandbox does not accept
RUN_PATHS = [f"/organizations/{ORG}/runs/{DEMO_IDS[n]}" for n in (0, 3)]


def reconcile(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m reconcile` in a real process, so --debug's logging reaches its stderr."""
    completed = subprocess.run(
        [sys.executable, "-m", "reconcile", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    check_no_secret(completed.stdout + completed.stderr, f"the output of reconcile {args}")
    return completed


def test_debug_trace_under_faults_never_shows_the_token(tmp_path: Path) -> None:
    sandbox = Sandbox.from_seed(ROOT / "examples" / "demo-org.toml")
    sandbox.inject(Fault("status", method="GET", status=503))
    sandbox.inject(Fault("status", status=429, retry_after=0, times=2))
    sandbox.inject(Fault("status", method="DELETE", status=500, after_effect=True))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with serve(sandbox) as running:
        env = {"TALLYFY_API_URL": running.url, "TALLYFY_ORG_ID": ORG}
        applied = reconcile(
            "--debug",
            "apply",
            str(EXAMPLE),
            "--auto-approve",
            "--token-file",
            str(token_file),
            env=env,
        )
        refused = reconcile(
            "--debug", "plan", str(EXAMPLE), env={**env, "TALLYFY_ACCESS_TOKEN": SECRET}
        )
    assert applied.returncode == 0, applied.stderr
    trace = applied.stderr.splitlines()
    listing = f"debug: reconcile.http: GET /organizations/{ORG}/runs?"
    assert any(line.startswith(listing) and line.endswith(" -> 503") for line in trace)
    archived = [f"debug: reconcile.http: DELETE {path} -> 500" for path in RUN_PATHS]
    assert any(line in trace for line in archived)
    assert sum(line.endswith("-> 429") for line in trace) == 2
    # --debug shows the traceback of an expected failure too; the token is not in it.
    assert refused.returncode == 1
    assert "Traceback (most recent call last)" in refused.stderr
    assert "reconcile.errors.AuthError: The API refused the access token." in refused.stderr
    assert SECRET not in refused.stderr + refused.stdout
    assert TOKEN not in applied.stdout + applied.stderr


def test_the_token_file_is_used_and_never_echoed(
    sandbox: Sandbox, cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", "not-the-token-at-all")
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    result = run("apply", str(EXAMPLE), "--auto-approve", "--token-file", str(token_file))
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    assert "not-the-token-at-all" not in result.output


def test_a_refused_token_says_how_to_get_a_new_one(
    sandbox: Sandbox, cli_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", SECRET)
    result = run("plan", str(EXAMPLE))
    assert result.exit_code == 1
    # Both listings' first pages are refused; either may be the one reported.
    assert re.fullmatch(
        re.escape(
            "Error: The API refused the access token. Personal access tokens expire after 6 "
            "months and stop working when their user logs out of the web app; create a new one "
            "under Settings > Integrations > REST API and set TALLYFY_ACCESS_TOKEN. (request: GET "
            f"/organizations/{ORG}/runs?"
        )
        + r"(archived=only&)?page=1&per_page=100, HTTP 401, X-Request-Id sandbox-\d+\) "
        + re.escape('The API said: "Unauthenticated.".\n'),
        result.stderr,
    )
    assert sandbox.writes == []


def test_a_light_user_is_told_whose_permission_is_missing(sandbox: Sandbox, cli_env: str) -> None:
    sandbox.behaviour = replace(sandbox.behaviour, can_archive=False)
    result = run("apply", str(EXAMPLE), "--auto-approve")
    assert result.exit_code == 1
    assert "Apply finished: 0 archived, 0 activated, 3 failed." in result.stdout
    assert (
        f"  failed: {DEMO_IDS[0]} (archive): The token's user lacks permission for run "
        f"{DEMO_IDS[0]}. Archiving and activating need a member or administrator (light users "
        "cannot archive)"
    ) in result.stdout
    assert "You don't have permission to archive this process." in result.stdout
    assert "You don't have permission to activate this process." in result.stdout
    assert [w.status for w in sandbox.writes] == [403, 403, 403]


@pytest.mark.parametrize(
    "url",
    [
        "http://go.tallyfy.com/api",
        "http://10.0.0.8:8080/api",
        "http://localhost.example.com/api",
        "http://127.0.0.1.nip.io/api",
        "http://[fe80::1]/api",
    ],
)
def test_plain_http_is_refused_off_loopback(sandbox: Sandbox, cli_env: str, url: str) -> None:
    result = run("apply", str(EXAMPLE), "--auto-approve", "--api-url", url)
    assert result.exit_code == 1
    assert "uses plain http to a host that is not loopback" in result.stderr
    assert sandbox.requests == []


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1."""
    return self_signed(tmp_path, "IP:127.0.0.1")


def test_tls_is_verified_and_a_ca_bundle_comes_from_ssl_cert_file(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    monkeypatch.setenv("TALLYFY_ORG_ID", ORG)
    monkeypatch.setenv("TALLYFY_ACCESS_TOKEN", TOKEN)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with serve(sandbox) as running, tls_in_front(running.port, cert, key) as port:
        monkeypatch.setenv("TALLYFY_API_URL", f"https://127.0.0.1:{port}/api")
        # One connection at a time: a refused certificate stops the read, and a connection
        # cancelled in the middle of its own handshake is left open by httpcore.
        untrusted = run("apply", str(EXAMPLE), "--auto-approve", "--parallelism", "1")
        assert untrusted.exit_code == 1
        assert untrusted.stderr.startswith(
            "Error: The API's TLS certificate was not accepted (self-signed certificate)."
        )
        assert "point SSL_CERT_FILE at a CA bundle" in untrusted.stderr
        assert sandbox.requests == [], "not one request may pass an unverified connection"

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = run("apply", str(EXAMPLE), "--auto-approve")
    assert trusted.exit_code == 0, trusted.output
    assert "Apply finished: 2 archived, 1 activated, 0 failed." in trusted.stdout
    assert sandbox_states(sandbox, (DEMO_IDS[0], DEMO_IDS[2])) == {
        DEMO_IDS[0]: "archived",
        DEMO_IDS[2]: "active",
    }


# --- the guards themselves --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", f"/organizations/{ORG}/runs", True),
        ("GET", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}", True),
        ("DELETE", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}", True),
        ("PUT", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}/activate", True),
        ("DELETE", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}/delete", False),
        ("PUT", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}", False),
        ("DELETE", f"/organizations/{ORG}/runs", False),
        ("POST", f"/organizations/{ORG}/runs", False),
        ("PATCH", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}", False),
        ("PUT", f"/organizations/{ORG}/runs/{DEMO_IDS[0]}/activate/x", False),
    ],
)
def test_the_request_guard_tells_planned_writes_from_forbidden_ones(
    method: str, path: str, allowed: bool
) -> None:
    assert allowed_request(method, path) is allowed
    assert allowed_request(method, "/api" + path) is allowed


def test_the_token_guard_catches_a_leak() -> None:
    check_no_secret("Error: nothing secret here", "a clean output")
    with pytest.raises(AssertionError, match="a leaky output contains an access token"):
        check_no_secret(f"Authorization: Bearer {TOKEN}", "a leaky output")


def test_the_guards_fail_the_test_that_leaks_or_sends_a_forbidden_request(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite-wide guards, loaded into a pytest run of six made-up tests. The forbidden requests
    are real ones, sent through httpx as any client would send them."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(
        "from tests.conftest import _session_guard, _test_guard, pytest_terminal_summary, sandbox\n"
    )
    pytester.makeini("[pytest]\nmarkers =\n    sends_forbidden_requests: on purpose\n")
    pytester.makepyfile(
        f"""
        import asyncio
        import click
        import httpx
        import pytest
        from click.testing import CliRunner

        @click.command()
        def leaky():
            click.echo("using {TOKEN}")

        def test_output_with_the_token():
            CliRunner().invoke(leaky, [])

        RUN = "https://api.test/api/organizations/{ORG}/runs/{DEMO_IDS[0]}"
        ANSWER = httpx.MockTransport(lambda request: httpx.Response(200))

        def test_permanent_delete():
            async def send():
                async with httpx.AsyncClient(transport=ANSWER) as client:
                    await client.delete(RUN + "/delete")

            asyncio.run(send())

        def test_put_to_a_run():
            with httpx.Client(transport=ANSWER) as client:
                client.put(RUN, json={{}})

        @pytest.mark.sends_forbidden_requests
        def test_a_forbidden_request_on_purpose():
            with httpx.Client(transport=ANSWER) as client:
                client.delete(RUN + "/delete")

        def test_sandbox_receives_a_put(sandbox):
            headers = {{"Authorization": "Bearer {TOKEN}", "X-Tallyfy-Client": "APIClient"}}
            path = "/api/organizations/{ORG}/runs/{DEMO_IDS[0]}"
            assert sandbox.dispatch("PUT", path, headers, b"{{}}").status == 200

        def test_clean():
            CliRunner().invoke(click.Command("quiet", callback=lambda: None), [])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1, errors=3)
    result.stdout.fnmatch_lines(
        [
            # pytest shows errors (here: at teardown) before failures
            f"*a forbidden request was sent: DELETE /api/organizations/{ORG}/runs/*/delete*",
            f"*a forbidden request was sent: PUT /api/organizations/{ORG}/runs/{DEMO_IDS[0]}",
            "*the sandbox received requests reconcile must never send: ?'PUT /organizations/*",
            "*the output of `reconcile ` contains an access token*",
            "guards: 4 requests checked*",
        ]
    )

"""Settings precedence and the checks that keep a token safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.config import (
    DEFAULT_API_URL,
    DEFAULT_PARALLELISM,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TIMEOUT,
    TOKEN_ENV,
    Flags,
    Pace,
    Target,
    Token,
    child_environment,
    read_token,
    resolve,
    resolve_target,
)
from reconcile.errors import ConfigError
from reconcile.state import SafetySettings, TallyfySettings

ORG_FLAG, ORG_ENV, ORG_FILE = "a" * 32, "b" * 32, "c" * 32


def test_flag_beats_environment_beats_file_beats_default() -> None:
    # The file names no organization: one it names must match (see the next test).
    settings = TallyfySettings(api_url="https://eu.tallyfy.com/api")
    env = {"TALLYFY_ORG_ID": ORG_ENV, "TALLYFY_API_URL": "https://env.example/api/"}
    assert resolve_target(
        api_url_flag="https://flag.example/api", org_flag=ORG_FLAG, environ=env, settings=settings
    ) == Target("https://flag.example/api", ORG_FLAG)
    assert resolve_target(
        api_url_flag=None, org_flag=None, environ=env, settings=settings
    ) == Target("https://env.example/api", ORG_ENV)
    assert resolve_target(
        api_url_flag=None,
        org_flag=None,
        environ={},
        settings=TallyfySettings(org_id=ORG_FILE, api_url="https://eu.tallyfy.com/api"),
    ) == Target("https://eu.tallyfy.com/api", ORG_FILE)
    assert resolve_target(
        api_url_flag=None, org_flag=None, environ={}, settings=TallyfySettings(org_id=ORG_FILE)
    ) == Target(DEFAULT_API_URL, ORG_FILE)


def test_an_organization_other_than_the_files_is_refused() -> None:
    settings = TallyfySettings(org_id=ORG_FILE)
    for flag, env, given in (
        (ORG_FLAG, {}, "--org"),
        (None, {"TALLYFY_ORG_ID": ORG_ENV}, "TALLYFY"),
    ):
        with pytest.raises(ConfigError, match=f"given by {given}") as caught:
            resolve_target(api_url_flag=None, org_flag=flag, environ=env, settings=settings)
        assert ORG_FILE in str(caught.value)
        assert (flag or ORG_ENV) in str(caught.value)
    same = resolve_target(api_url_flag=None, org_flag=ORG_FILE, environ={}, settings=settings)
    assert same.org_id == ORG_FILE


def test_resolve_takes_every_setting_from_the_first_place_that_gives_it() -> None:
    environ = {TOKEN_ENV: "env-token", "TALLYFY_ORG_ID": ORG_ENV}
    file = TallyfySettings(parallelism=3, rate_limit=0)
    limits = SafetySettings(max_archive_percent=10.0, max_activate_percent=20.0, min_runs=5)
    flags = Flags(org_id=ORG_FLAG, rate_limit=60, max_activate_percent=50.0, timeout=2.0)
    settings = resolve(flags, environ=environ, tallyfy=file, safety=limits)
    assert settings.target == Target(DEFAULT_API_URL, ORG_FLAG)
    assert settings.token == Token("env-token")
    assert settings.pace == Pace(parallelism=3, rate_limit=60)
    assert settings.timeout == 2.0
    assert settings.fetch == "auto"
    assert settings.limits == SafetySettings(10.0, 50.0, 5)

    defaults = resolve(None, environ=environ)
    assert defaults.target == Target(DEFAULT_API_URL, ORG_ENV)
    assert defaults.pace == Pace(DEFAULT_PARALLELISM, DEFAULT_RATE_LIMIT)
    assert defaults.timeout == DEFAULT_TIMEOUT
    assert defaults.limits == SafetySettings()
    # 0 is a setting, not "not given".
    assert resolve(Flags(gate_min_runs=0, max_archive_percent=0.0), environ=environ).limits == (
        SafetySettings(max_archive_percent=0.0, min_runs=0)
    )


def test_child_processes_get_the_environment_without_the_token() -> None:
    environ = {TOKEN_ENV: "secret-token", "PATH": "/usr/bin", "TALLYFY_ORG_ID": ORG_ENV}
    assert child_environment(environ) == {"PATH": "/usr/bin", "TALLYFY_ORG_ID": ORG_ENV}


def test_missing_or_bad_org() -> None:
    with pytest.raises(ConfigError, match=r"No organization ID\. Pass --org"):
        resolve_target(api_url_flag=None, org_flag=None, environ={}, settings=TallyfySettings())
    with pytest.raises(ConfigError, match="'ACME' is not 32 lowercase hex"):
        resolve_target(api_url_flag=None, org_flag="ACME", environ={}, settings=TallyfySettings())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api",
        "http://localhost/api",
        "http://[::1]:9/api",
        "https://go.tallyfy.com/api",
    ],
)
def test_loopback_http_and_any_https_are_accepted(url: str) -> None:
    target = resolve_target(
        api_url_flag=url, org_flag=ORG_FLAG, environ={}, settings=TallyfySettings()
    )
    assert target.api_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://go.tallyfy.com/api", "plain http to a host that is not loopback"),
        ("http://10.0.0.5/api", "plain http to a host that is not loopback"),
        ("ftp://go.tallyfy.com/api", "is not an http"),
        ("go.tallyfy.com/api", "is not an http"),
        ("https://go.tallyfy.com/api?x=1", "must not carry a query"),
    ],
)
def test_unsafe_or_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_target(api_url_flag=url, org_flag=ORG_FLAG, environ={}, settings=TallyfySettings())


def test_token_sources(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {"TALLYFY_ACCESS_TOKEN": "from-env"}
    assert read_token(token_file=token_file, environ=env).value == "from-file"
    assert read_token(token_file=None, environ=env).value == "from-env"
    with pytest.raises(ConfigError, match="TALLYFY_ACCESS_TOKEN is empty or unset"):
        read_token(token_file=None, environ={})
    with pytest.raises(ConfigError, match="Cannot read the token file"):
        read_token(token_file=tmp_path / "missing", environ={})
    with pytest.raises(ConfigError, match="contains white space"):
        read_token(token_file=None, environ={"TALLYFY_ACCESS_TOKEN": "two words"})


def test_token_never_shows_in_repr_or_str() -> None:
    token = Token("s3cret-value")
    assert "s3cret" not in repr(token)
    assert "s3cret" not in str(token)
    assert "s3cret" not in repr(Target("https://x", ORG_FLAG)) + repr([token])

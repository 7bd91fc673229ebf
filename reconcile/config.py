"""Settings: every value a command works with, resolved in one place (`resolve`) by one rule:
flag, then environment, then state file, then default. A library caller passes `Flags` as the
command line would."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from reconcile.domain import ID_PATTERN
from reconcile.errors import ConfigError
from reconcile.ratelimit import Window
from reconcile.state import SafetySettings, TallyfySettings

DEFAULT_API_URL = "https://go.tallyfy.com/api"
TOKEN_ENV = "TALLYFY_ACCESS_TOKEN"
ORG_ENV = "TALLYFY_ORG_ID"
API_URL_ENV = "TALLYFY_API_URL"
MAX_TOKEN_BYTES = 64 * 1024
DEFAULT_PARALLELISM = 8
DEFAULT_RATE_LIMIT = 600
"""Requests per rolling minute: the per-user limit Tallyfy's API docs state."""
DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for each answer."""

Fetch = Literal["auto", "get", "list"]
"""How runs are read: one GET each, through the listings, or whichever takes fewer requests."""


@dataclass(frozen=True)
class Flags:
    """What the command line gives (None: not given). A library caller builds one the same way;
    `resolve` fills in the rest from the environment, the state file and the defaults."""

    api_url: str | None = None
    org_id: str | None = None
    token_file: Path | None = None
    fetch: Fetch = "auto"
    parallelism: int | None = None
    rate_limit: int | None = None
    rate_window: tuple[Window, ...] | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_archive_percent: float | None = None
    max_activate_percent: float | None = None
    gate_min_runs: int | None = None


@dataclass(frozen=True)
class Token:
    """A bearer token. Its value never appears in repr() or str(), so it cannot leak into output."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "Token(***)"


@dataclass(frozen=True)
class Target:
    """The API and organization a command works on."""

    api_url: str
    org_id: str


def resolve_target(
    *,
    api_url_flag: str | None,
    org_flag: str | None,
    environ: Mapping[str, str],
    settings: TallyfySettings,
    bound: bool = True,
) -> Target:
    """Pick the API URL and organization by precedence and check both. With `bound`, the
    settings' org_id is a state file's own and nothing may replace it (see resolve)."""
    chosen = api_url_flag or environ.get(API_URL_ENV)
    if not chosen and settings.api_url:
        check_file_api_url(settings.api_url)
    api_url = chosen or settings.api_url or DEFAULT_API_URL
    org_id = org_flag or environ.get(ORG_ENV) or settings.org_id
    if bound and settings.org_id and org_id != settings.org_id:
        # A state file names its organization so that it is never applied to another by a
        # stray environment variable or flag: that takes editing the file.
        given, undo = ("--org", "drop --org") if org_flag else (ORG_ENV, f"unset {ORG_ENV}")
        raise ConfigError(
            f"The organization given by {given}, {org_id}, is not the state file's org_id, "
            f"{settings.org_id}. A state file that names its organization is used only with "
            f"that one: {undo}, or change (or remove) org_id in the file's [tallyfy] table to "
            "use it with another."
        )
    if not org_id:
        raise ConfigError(
            f"No organization ID. Pass --org, set {ORG_ENV}, or set org_id in the state file's "
            "[tallyfy] table. It is the path segment after https://go.tallyfy.com/ in the web app."
        )
    if not ID_PATTERN.fullmatch(org_id):
        raise ConfigError(
            f"Organization ID {org_id!r} is not 32 lowercase hex characters; copy it from the "
            "web app's URL (the segment after https://go.tallyfy.com/)."
        )
    return Target(api_url=check_api_url(api_url), org_id=org_id)


@dataclass(frozen=True)
class Pace:
    """How hard a command may drive the API."""

    parallelism: int
    rate_limit: int
    """Requests per rolling minute; 0 means no limit of our own."""
    windows: tuple[Window, ...] = ()
    """More windows of our own, kept besides `rate_limit`."""


def resolve_pace(
    *,
    parallelism_flag: int | None,
    rate_limit_flag: int | None,
    settings: TallyfySettings,
    windows_flag: tuple[Window, ...] | None = None,
) -> Pace:
    """Flag, then the state file, then the default. Unlike the connection settings these have no
    environment variables: they belong to the organization's state file or to one command."""
    parallelism = _first(parallelism_flag, settings.parallelism, DEFAULT_PARALLELISM)
    rate_limit = _first(rate_limit_flag, settings.rate_limit, DEFAULT_RATE_LIMIT)
    windows = windows_flag if windows_flag is not None else settings.rate_limits or ()
    return Pace(parallelism=parallelism, rate_limit=rate_limit, windows=windows)


def _first(*values: int | None) -> int:
    # Not `or`: 0 is a real setting (--rate-limit 0 turns the limit off).
    return next(value for value in values if value is not None)


def check_api_url(url: str) -> str:
    """Accept https anywhere and plain http only on loopback, so a token never crosses a network
    in clear text. Returns the URL without a trailing slash."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        # urlsplit would drop a line break silently, and httpx refuse it with a traceback.
        raise ConfigError(
            f"API URL {url!r} holds white space or a control character (a line break copied "
            f"with it?); give the URL alone, e.g. {DEFAULT_API_URL}."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(
            f"API URL {url!r} has a port that is not a number from 1 to 65535, or a malformed "
            f"[IPv6] address; e.g. {DEFAULT_API_URL} or http://127.0.0.1:8080/api."
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "The API URL carries a user name or password; give the URL without them (the token "
            f"goes in {TOKEN_ENV} or --token-file)."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"API URL {url!r} is not an http(s) URL, e.g. {DEFAULT_API_URL}.")
    if parts.query or parts.fragment:
        raise ConfigError(f"API URL {url!r} must not carry a query or fragment.")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"API URL {url!r} uses plain http to a host that is not loopback; the access token "
            "would cross the network unencrypted. Use https (plain http is allowed only for "
            "127.0.0.1, ::1 and localhost, e.g. the sandbox)."
        )
    return url.rstrip("/")


def check_file_api_url(url: str) -> None:
    """A state file's `api_url` may name only Tallyfy (https, tallyfy.com or a host below it) or
    loopback (the sandbox). A state file is edited in pull requests, and the token goes wherever
    the API URL points; any other API is chosen by whoever runs the command, with --api-url or
    TALLYFY_API_URL."""
    parts = urlsplit(check_api_url(url))
    host = parts.hostname or ""
    tallyfy = host == "tallyfy.com" or host.endswith(".tallyfy.com")
    if not ((parts.scheme == "https" and tallyfy) or is_loopback(host)):
        raise ConfigError(
            f"The state file's [tallyfy] api_url {url!r} is not a Tallyfy host (https://"
            "go.tallyfy.com or another host below tallyfy.com) nor loopback, so it was not used: "
            "the access token goes wherever the API URL points, and a state file is edited in "
            "pull requests. To use another API, give it with --api-url or TALLYFY_API_URL where "
            "the command is run. Nothing was sent."
        )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a host that traffic never leaves the machine for."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(*, token_file: Path | None, environ: Mapping[str, str]) -> Token:
    """The token from --token-file if given, else from the environment."""
    if token_file is not None:
        try:
            with token_file.open("rb") as stream:
                raw = stream.read(MAX_TOKEN_BYTES + 1)
            value = raw.decode("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            # The message of a decoding error quotes bytes of the file, which is the secret.
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise ConfigError(f"Cannot read the token file {token_file}: {reason}.") from None
        if len(raw) > MAX_TOKEN_BYTES:
            raise ConfigError(
                f"The token file {token_file} is larger than {MAX_TOKEN_BYTES} bytes; it holds "
                "something other than an access token."
            )
        where = f"the token file {token_file}"
    else:
        value = environ.get(TOKEN_ENV, "").strip()
        where = TOKEN_ENV
    if not value:
        raise ConfigError(
            f"No access token: {where} is empty or unset. Set {TOKEN_ENV} or pass --token-file. "
            "A personal access token is under Settings > Integrations > REST API in Tallyfy."
        )
    if any(ch.isspace() for ch in value):
        raise ConfigError(f"The access token in {where} contains white space; it cannot be valid.")
    if not (value.isascii() and value.isprintable()):
        raise ConfigError(
            f"The access token in {where} contains characters other than printable ASCII; it "
            "cannot be valid (copy it again from Settings > Integrations > REST API)."
        )
    return Token(value)


@dataclass(frozen=True)
class Settings:
    """Everything a command that talks to the API works with, resolved."""

    target: Target
    token: Token
    pace: Pace
    timeout: float
    fetch: Fetch
    limits: SafetySettings
    """The safety gates' limits: the file's [safety] table with the flags on top."""


def resolve(
    flags: Flags | None,
    *,
    environ: Mapping[str, str],
    tallyfy: TallyfySettings | None = None,
    safety: SafetySettings | None = None,
    bound: bool = True,
) -> Settings:
    """The settings of one command: each value from its flag, else the environment, else the
    state file's [tallyfy] and [safety] tables, else the default. Checked in this order: the
    organization and API URL, the token, then the rest. A state file's org_id is `bound`: a flag
    or the environment naming another organization is refused. Pass bound=False where `tallyfy`
    only offers a default (a saved plan, an import's existing file), checked by their own rules."""
    flags = flags or Flags()
    tallyfy = tallyfy or TallyfySettings()
    safety = safety or SafetySettings()
    target = resolve_target(
        api_url_flag=flags.api_url,
        org_flag=flags.org_id,
        environ=environ,
        settings=tallyfy,
        bound=bound,
    )
    token = read_token(token_file=flags.token_file, environ=environ)
    pace = resolve_pace(
        parallelism_flag=flags.parallelism,
        rate_limit_flag=flags.rate_limit,
        settings=tallyfy,
        windows_flag=flags.rate_window,
    )
    limits = SafetySettings(
        max_archive_percent=_first_number(flags.max_archive_percent, safety.max_archive_percent),
        max_activate_percent=_first_number(flags.max_activate_percent, safety.max_activate_percent),
        min_runs=_first(flags.gate_min_runs, safety.min_runs),
        gone=safety.gone,
    )
    return Settings(target, token, pace, flags.timeout, flags.fetch, limits)


def _first_number(flag: float | None, value: float) -> float:
    return value if flag is None else flag


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a process reconcile starts (git): the caller's, without the token, so
    that nothing the child runs (hooks, credential helpers, aliases) can read it."""
    return {key: value for key, value in environ.items() if key != TOKEN_ENV}

"""Which proxy a request to the API may cross. The client (client.py) applies the choice.

A request carries the access token, so it may cross a proxy only where the proxy cannot
read it: an https API URL goes through the proxy of `https_proxy` / `HTTPS_PROXY`, else
`all_proxy` / `ALL_PROXY` (lower case first, as curl and Python's urllib read them), always as a
CONNECT tunnel, so TLS runs end to end between reconcile and the API and the proxy sees only the
host name and port. A loopback API, and any host `no_proxy` / `NO_PROXY` names, is reached
directly. Plain http is only ever allowed to loopback (see config.check_api_url) and never goes
through a proxy: a forwarding proxy would read the token in clear text, so `http_proxy` and
`HTTP_PROXY` are not read at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from reconcile.config import is_loopback
from reconcile.errors import ConfigError

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
"""The variables that may name a proxy for the API, by precedence."""
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


@dataclass(frozen=True)
class Proxy:
    """A proxy URL and the variable that named it. Shown without its password."""

    url: str
    variable: str

    def __str__(self) -> str:
        scheme, sep, rest = self.url.partition("://")
        authority, slash, path = rest.partition("/")
        _, at, host = authority.rpartition("@")
        return f"{self.variable}={scheme}{sep}{'***@' if at else ''}{host}{slash}{path}"


def proxy_for(api_url: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy URL requests to `api_url` go through, or None to connect directly.

    Every variable of PROXY_VARIABLES that is set is checked, whether or not it applies to this
    URL, so a mistake in one is found on the first run rather than on the first run elsewhere.
    """
    proxies = [_checked_proxy(name, environ[name]) for name in PROXY_VARIABLES if environ.get(name)]
    parts = urlsplit(api_url)
    host = parts.hostname or ""
    if not proxies or parts.scheme != "https" or is_loopback(host):
        return None
    exempt = next((environ[name] for name in NO_PROXY_VARIABLES if environ.get(name)), "")
    if _exempt(host, parts.port or 443, exempt):
        return None
    return proxies[0]


def _checked_proxy(name: str, value: str) -> Proxy:
    """The proxy in variable `name`, or ConfigError. A bare `host:port` means http://, as curl
    reads it. The value is never quoted whole: it may hold the proxy's password."""
    proxy = Proxy(value.strip() if "://" in value else "http://" + value.strip(), name)
    url = proxy.url
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        raise ConfigError(
            f"The proxy variable {name} holds white space or a control character; set it to a "
            "URL such as http://proxy.example.com:3128."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number from 0 to 65535, or a broken [IPv6]
        parts, port = urlsplit(""), None
    if parts.scheme and parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"The proxy variable {name} names a {parts.scheme}:// proxy ({proxy}); reconcile "
            "reaches the API only through an http:// or https:// proxy that tunnels with "
            "CONNECT, so that TLS runs end to end. Unset it for reconcile or point it at such a "
            "proxy."
        )
    if not parts.hostname or port == 0:
        raise ConfigError(
            f"The proxy variable {name} is not a proxy URL with a host and a port from 1 to "
            f"65535 ({proxy}), e.g. http://proxy.example.com:3128."
        )
    return proxy


def _exempt(host: str, port: int, no_proxy: str) -> bool:
    """Whether `no_proxy` (comma-separated: `*`, host names that also cover their subdomains,
    optionally with `:port`, IP addresses and CIDR ranges) names this host."""
    for entry in no_proxy.replace(" ", ",").split(","):
        pattern, wanted_port = _split_port(entry.strip().lower())
        if pattern == "*":
            return True
        if wanted_port not in (None, port):
            continue
        pattern = pattern.removeprefix("*").lstrip(".")
        if pattern and (
            host == pattern or host.endswith("." + pattern) or _in_network(host, pattern)
        ):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, or an entry without a port (a bare IPv6 address included)."""
    if entry.startswith("["):
        address, _, rest = entry[1:].partition("]")
        return address, int(rest[1:]) if rest[1:].isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and entry.count(":") == 1 and port.isdigit():
        return name, int(port)
    return entry, None


def _in_network(host: str, pattern: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False

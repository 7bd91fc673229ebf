"""An emulator of the Tallyfy runs API, faithful to what Tallyfy documents, for tests and demos.

One core, `Sandbox.dispatch`, with two adapters:
- `Sandbox.transport()`: an httpx.MockTransport for httpx.AsyncClient, in-process and fast;
- `serve()` / `serve_forever()`: a real HTTP/1.1 server on loopback.

What the docs leave open is a `Behaviour` switch; `Fault`s inject failures; every request
lands in `Sandbox.requests`, so tests assert on what the server saw and on its final state.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconcile.sandbox.emulator import Sandbox
    from reconcile.sandbox.faults import Fault
    from reconcile.sandbox.model import Behaviour, LoggedRequest, SandboxRun
    from reconcile.sandbox.responses import SandboxResponse
    from reconcile.sandbox.seed import SeedError
    from reconcile.sandbox.server import RunningSandbox, serve, serve_forever

# Loaded on first use: the command line reads the switch table (reconcile.sandbox.switches) to
# build `reconcile sandbox`'s options, and every other command should not pay for the server.
_HOMES = {
    "Behaviour": "model",
    "Fault": "faults",
    "LoggedRequest": "model",
    "RunningSandbox": "server",
    "Sandbox": "emulator",
    "SandboxResponse": "responses",
    "SandboxRun": "model",
    "SeedError": "seed",
    "serve": "server",
    "serve_forever": "server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "Behaviour",
    "Fault",
    "LoggedRequest",
    "RunningSandbox",
    "Sandbox",
    "SandboxResponse",
    "SandboxRun",
    "SeedError",
    "serve",
    "serve_forever",
]

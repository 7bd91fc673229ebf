"""An emulator of the Tallyfy runs API, faithful to what Tallyfy documents, for tests and demos.

One core, `Sandbox.dispatch`, with two adapters:
- `Sandbox.transport()`: an httpx.MockTransport for httpx.AsyncClient, in-process and fast;
- `serve()` / `serve_forever()`: a real HTTP/1.1 server on loopback.

What the docs leave open is a `Behaviour` switch; `Fault`s inject failures; every request
lands in `Sandbox.requests`, so tests assert on what the server saw and on its final state.
"""

from reconcile.sandbox.emulator import Sandbox
from reconcile.sandbox.faults import Fault
from reconcile.sandbox.model import Behaviour, LoggedRequest, SandboxRun
from reconcile.sandbox.responses import SandboxResponse
from reconcile.sandbox.seed import SeedError
from reconcile.sandbox.server import RunningSandbox, serve, serve_forever

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

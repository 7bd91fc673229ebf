"""The in-process adapter: an httpx.MockTransport that answers from a Sandbox.

This is the only sandbox module that imports httpx.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from reconcile.sandbox.emulator import Sandbox


def make_transport(sandbox: Sandbox) -> httpx.AsyncBaseTransport:
    """A MockTransport for httpx.AsyncClient that applies latency, slow answers and drops.

    MockTransport itself ignores timeouts, so the handler honours the request's read timeout:
    an answer slower than it raises httpx.ReadTimeout after waiting that long, as a socket would.
    """

    async def handler(request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = sandbox.dispatch(request.method, str(request.url), request.headers, body)
        if answer.delay > 0:
            timeout = request.extensions.get("timeout", {}).get("read")
            if timeout is not None and answer.delay > timeout:
                await asyncio.sleep(timeout)
                raise httpx.ReadTimeout("The sandbox answered too slowly.", request=request)
            await asyncio.sleep(answer.delay)
        if answer.drop:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)

    return httpx.MockTransport(handler)

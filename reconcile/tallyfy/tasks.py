"""Running requests side by side without leaving any behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def gather(*awaitables: Awaitable[T]) -> list[T]:
    """Like asyncio.gather, but the first failure cancels the others and waits for them before it
    is raised: no request is left running, holding a connection of a client about to close."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

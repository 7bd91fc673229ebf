"""reconcile.tallyfy.tasks.gather: the first failure cancels the other requests and waits for
them, so none is left holding a connection when the error leaves."""

from __future__ import annotations

import asyncio

import pytest

from reconcile.tallyfy.tasks import gather


def test_the_first_failure_cancels_the_rest_before_it_is_raised() -> None:
    cancelled: list[int] = []

    async def slow(number: int) -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(number)
            raise
        return number

    async def fail() -> int:
        await asyncio.sleep(0)
        raise ValueError("an unusable answer")

    async def main() -> None:
        with pytest.raises(ValueError, match="an unusable answer"):
            await gather(slow(1), fail(), slow(2))
        assert sorted(cancelled) == [1, 2]
        assert await gather(asyncio.sleep(0, "a"), asyncio.sleep(0, "b")) == ["a", "b"]

    asyncio.run(asyncio.wait_for(main(), timeout=5))

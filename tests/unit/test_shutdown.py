"""Shutdown ends background tasks even when one of them swallows a cancellation.

Python 3.11's ``asyncio.wait_for`` returns the inner result instead of raising when the
cancellation arrives as the inner call completes; a loop around such a call outlived a single
``cancel()``, and ``stop()`` waited for it forever.
"""

from __future__ import annotations

import asyncio

from idverify.server import _cancelled


async def test_a_task_that_swallows_its_first_cancellation_still_ends() -> None:
    swallowed = 0

    async def stubborn_loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # as wait_for does when the awaited call has just finished
                raise

    task = asyncio.create_task(stubborn_loop())
    await asyncio.sleep(0)

    async with asyncio.timeout(10):
        await _cancelled(task)

    assert task.cancelled()
    assert swallowed == 2

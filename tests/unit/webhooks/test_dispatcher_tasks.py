"""A delivery task that dies says so in the log: a stall must never be silent."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from idverify.config import WebhookSettings
from idverify.webhooks.delivery import WebhookDispatcher


def dispatcher() -> WebhookDispatcher:
    unused: Any = None  # _finished touches none of the stores
    return WebhookDispatcher(
        unused, unused, unused, unused, unused, settings=WebhookSettings(), development=True
    )


async def ended(coroutine: Any) -> asyncio.Task[None]:
    task: asyncio.Task[None] = asyncio.create_task(coroutine)
    await asyncio.wait([task])
    return task


async def fails() -> None:
    raise KeyError("a field the delivery did not expect")


async def returns() -> None:
    return None


def test_a_task_ended_by_an_exception_is_logged_by_type(caplog: pytest.LogCaptureFixture) -> None:
    running = dispatcher()
    with caplog.at_level(logging.ERROR, logger="idverify.webhooks"):
        running._finished(("t1", "wh_1"), asyncio.run(ended(fails())))
    (record,) = caplog.records
    assert record.getMessage() == (
        "webhook wh_1: delivery stopped on KeyError; it resumes from the cursor at the next scan"
    )
    assert "did not expect" not in caplog.text  # the type only: a message could carry anything


def test_a_task_that_returned_or_was_cancelled_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    running = dispatcher()

    async def cancelled() -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(asyncio.sleep(60))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait([task])
        return task

    with caplog.at_level(logging.ERROR, logger="idverify.webhooks"):
        running._finished(("t1", "wh_1"), asyncio.run(ended(returns())))
        running._finished(("t1", "wh_1"), asyncio.run(cancelled()))
    assert caplog.records == []

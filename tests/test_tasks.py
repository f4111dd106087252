"""cancel_and_wait ends a task even when it swallowed a cancellation (as 3.11's wait_for can)."""

from __future__ import annotations

import asyncio

from praxis.bus.tasks import cancel_and_wait


async def test_a_task_that_swallows_the_first_cancel_still_ends() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # what a lost cancellation looks like from outside
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(task, retry=0.05)
    assert task.cancelled() and swallowed == 2


async def test_an_ended_task_is_left_as_it_was() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    await cancel_and_wait(task)
    assert isinstance(task.exception(), ValueError)

"""Ending tasks for certain.

Python 3.11's ``asyncio.wait_for`` (which nats-py uses for every request) can lose a
cancellation that arrives just as its future completes: the task goes on as if never
cancelled, and whoever awaits it after ``cancel()`` waits forever. Seen as a worker that
never finished draining because its heartbeat loop had swallowed the cancel.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any], *, retry: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again every ``retry`` seconds
    while it goes on. What it raised is left for the caller to read (or not)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry)
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit

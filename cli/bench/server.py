"""What a turn costs the NATS server, read from the server's own monitoring endpoint
(``/varz``, ``/subsz``) and the work queue's consumer around a load: messages and bytes in
and out, subscriptions made and removed, and deliveries of work (a redelivered trigger is
a second delivery)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from nats.js import JetStreamContext

Counts = dict[str, float]


def monitor(port: int, path: str) -> dict[str, Any]:
    """One of a nats-server's monitoring endpoints (``/varz``, ``/jsz``, ...) as JSON."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        found: dict[str, Any] = json.load(resp)
        return found


async def counts(
    monitor_port: int | None,
    js: JetStreamContext | None = None,
    streams: list[str] | None = None,
    consumer: str = "",
) -> Counts | None:
    """The server's totals so far (``None`` without a monitoring port: not our server)."""
    if monitor_port is None:
        return None
    varz = await asyncio.to_thread(monitor, monitor_port, "/varz")
    subsz = await asyncio.to_thread(monitor, monitor_port, "/subsz")
    found: Counts = {
        "msgs_in": varz["in_msgs"],
        "msgs_out": varz["out_msgs"],
        "bytes_in": varz["in_bytes"],
        "bytes_out": varz["out_bytes"],
        "sub_changes": subsz.get("num_inserts", 0) + subsz.get("num_removes", 0),
    }
    if js is not None and consumer:
        infos = [await js.consumer_info(stream, consumer) for stream in streams or []]
        found["deliveries"] = float(sum(info.delivered.consumer_seq or 0 for info in infos))
    return found


def per_turn(before: Counts | None, after: Counts | None, turns: int) -> dict[str, Any]:
    """``{"server_per_turn": {...}}`` between two readings (nothing if either is missing):
    messages in and out, KB in and out, subscription changes, and deliveries of work."""
    if not before or not after or not turns:
        return {}
    d = {k: (after[k] - before[k]) / turns for k in after if k in before}
    shown = {
        "msgs_in": d["msgs_in"],
        "msgs_out": d["msgs_out"],
        "kb_in": d["bytes_in"] / 1024,
        "kb_out": d["bytes_out"] / 1024,
        "sub_changes": d["sub_changes"],
    }
    if "deliveries" in d:
        shown["deliveries"] = d["deliveries"]
    return {"server_per_turn": shown}

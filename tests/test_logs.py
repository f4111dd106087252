"""Logs name the session and the task they are about: as JSON lines (PRAXIS_LOG_FORMAT=json)
from a real worker process, and in the text format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from praxis.bus import SessionClient, logs
from praxis.schemas import TurnFailed
from tests.conftest import WorkerProcess, fresh_env, live_workers, praxis, spawn_praxis


async def test_a_worker_logs_json_lines_with_the_session_and_task(
    client: SessionClient, worker_processes: Callable[..., list[WorkerProcess]]
) -> None:
    (proc,) = worker_processes(1, PRAXIS_LOG_FORMAT="json", PRAXIS_LOG_LEVEL="INFO")
    await live_workers(client, 1)
    record, receipt = await client.create("boom", task_id="task-logged")
    await client.wait(receipt)
    events = await client.wait(await client.send(record.session_id, "fail, please"))
    assert isinstance(events[-1], TurnFailed)
    lines = [json.loads(line) for line in proc.log.read_text().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    about = [line for line in lines if line["session_id"] == record.session_id]
    failed = next(line for line in about if "agent failed" in line["message"])
    assert failed["level"] == "ERROR" and failed["task_id"] == "task-logged"
    assert "RuntimeError: the model fell over" in failed["exception"]
    started = next(line for line in lines if "started with agents" in line["message"])
    assert started["session_id"] is None  # not about a session


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.Ids())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-logs-{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, out


async def test_lines_name_the_session_and_task_of_the_task_that_logs() -> None:
    logger, out = _logger(logging.Formatter(logs.TEXT))

    async def about(sid: str, tid: str) -> None:
        logs.about(sid, tid)  # each asyncio task has its own
        await asyncio.sleep(0)
        logger.info("working")

    await asyncio.gather(about("ses_a", "task_a"), about("ses_b", "task_b"))
    logger.info("no session here")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("working [session=ses_a task=task_a]")
    assert lines[1].endswith("working [session=ses_b task=task_b]")
    assert lines[2].endswith("no session here")

    as_json, out = _logger(logs.JsonLines())
    logs.about("ses_c", None)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        as_json.exception("it broke")
    logs.about(None)
    line = json.loads(out.getvalue())
    assert line["session_id"] == "ses_c" and line["task_id"] is None
    assert line["level"] == "ERROR" and "RuntimeError: boom" in line["exception"]


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    env = fresh_env(tmp_path) | {"PRAXIS_LOG_FORMAT": "xml"}
    ran = praxis(env, "agents")
    assert ran.returncode == 1
    assert "PRAXIS_LOG_FORMAT must be one of text, json, not 'xml'" in ran.stderr


def test_in_json_mode_every_line_a_server_prints_is_json(tmp_path: Path) -> None:
    """'praxis up' and 'praxis edge' with PRAXIS_LOG_FORMAT=json: their banners, warnings,
    the workers' and the edge's logs, on stdout and stderr, are all JSON lines."""
    for args in (("up", "--workers", "1", "--port", "0"), ("edge", "--port", "0")):
        env = fresh_env(tmp_path / args[0]) | {"PRAXIS_LOG_FORMAT": "json"}
        server = spawn_praxis(env, *args)
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            while "Praxis edge on" not in first and "Praxis is up" not in first:
                assert json.loads(first), first  # (e.g. "No dedicated worker ...")
                first = server.stdout.readline()
            url = re.search(r"http://127\.0\.0\.1:\d+", first)
            assert url is not None, first
            assert httpx.get(url[0] + "/healthz", timeout=10).status_code == 200
        finally:
            server.send_signal(signal.SIGINT)
            out, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
        lines = [first, *out.splitlines(), *err.splitlines()]
        parsed = [json.loads(line) for line in lines if line.strip()]
        assert all({"ts", "level", "message"} <= set(p) for p in parsed), lines
        messages = " ".join(p["message"] for p in parsed)
        assert "without authentication" in messages  # the warning, as JSON too
        if args[0] == "up":
            assert "Praxis stopped." in messages

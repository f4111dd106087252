"""A bounded property-based run of the edge's own OpenAPI document: schemathesis's command
line with every check it has (``--checks all``), as a user would run it.

Every operation gets generated requests, valid and invalid (about 800 in all, bounded by
``tests/schemathesis.toml``): every answer must be a documented status with a documented
content type and body (an SSE answer event by event), never a 5xx; invalid data must be
refused and valid data accepted (where validity does not depend on the bus: see the
config); ``OPTIONS`` must list the methods of a path. Messages go to a real session, so a
turn's stream is checked too.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile

from praxis.bus import SessionClient
from tests.conftest import ROOT, EdgeProcess, InProcessWorker, settled_session

CONFIG = ROOT / "tests" / "schemathesis.toml"


async def run_schemathesis(edge: EdgeProcess, session_id: str, *headers: str) -> str:
    """Run ``st run --checks all`` against ``edge``; fail with its report unless it passes.
    (In a folder of its own: schemathesis keeps a cache in its working directory.)"""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{edge.url}/schema/openapi.json",
        "--checks",
        "all",
        "--no-color",
        *(arg for header in headers for arg in ("--header", header)),
    ]
    env = {**os.environ, "PRAXIS_FUZZ_SESSION": session_id, "SCHEMATHESIS_HOOKS": ""}
    with tempfile.TemporaryDirectory() as workdir:
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    return done.stdout


async def test_generated_requests_pass_every_schemathesis_check(
    edge: EdgeProcess, worker: InProcessWorker, client: SessionClient
) -> None:
    # With a live worker: commands get their outcome (without one, a command waits for a
    # worker until PRAXIS_COMMAND_TIMEOUT and answers 504).
    report = await run_schemathesis(edge, await settled_session(client, "echo"))
    assert_thorough(report)


def assert_thorough(report: str) -> None:
    """The run reached every operation and made a good many requests, all of which passed."""
    tested = re.search(r"Tested: (\d+)", report)
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert tested and int(tested.group(1)) >= 18, report[-3000:]
    assert cases and int(cases.group(1)) >= 300 and cases.group(1) == cases.group(2), report

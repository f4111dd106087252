"""The openai npm package, from Node, against a real edge: a streamed response and a
conversation continued (``tests/node/client.mjs``). The package is installed by the test
(``npm ci`` from the committed lockfile, into ``tests/node/node_modules``). Without Node the
test is skipped, unless ``PRAXIS_REQUIRE_NODE=1`` (as in ``.ci/run``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import pytest

from tests.conftest import ROOT, EdgeProcess, InProcessWorker

NODE = ROOT / "tests" / "node"

if shutil.which("node") is None or shutil.which("npm") is None:
    if os.environ.get("PRAXIS_REQUIRE_NODE") == "1":
        raise RuntimeError("PRAXIS_REQUIRE_NODE=1 but there is no node and npm")
    pytest.skip("no Node.js: apt install nodejs npm", allow_module_level=True)


def install() -> None:
    """The lockfile's packages, unless they are there already."""
    if (NODE / "node_modules" / "openai" / "package.json").exists():
        return
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=NODE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_npm_client_streams_and_continues_a_conversation(
    edge: EdgeProcess, worker: InProcessWorker
) -> None:
    await asyncio.to_thread(install)
    done = await asyncio.to_thread(
        subprocess.run,
        ["node", "client.mjs"],
        cwd=NODE,
        env={**os.environ, "PRAXIS_EDGE_URL": edge.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["deltas"] == seen["streamed"] == "hello from node"
    assert seen["next"] == "and again" and seen["same"]
    assert seen["items"] == [
        ["user", "hello from node"],
        ["assistant", "hello from node"],
        ["user", "and again"],
        ["assistant", "and again"],
    ]

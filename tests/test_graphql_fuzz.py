"""Issue 9: property-based fuzzing of the GraphQL API (hypothesis-graphql): queries and
mutations generated from the schema, valid and invalid, sent to a real edge with a live
worker. Every answer is a GraphQL answer with no internal error, and never a 5xx."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import graphql
import httpx
import hypothesis_graphql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, EdgeProcess, InProcessWorker

SDL = (ROOT / "schemas" / "agent_session.graphql").read_text()
SCALARS = {
    "JSON": st.sampled_from(["{}", "[]", "null", "1", '"x"', '{a: [1, {b: "c"}]}']).map(
        graphql.parse_value
    ),
    "DateTime": st.sampled_from(["2026-01-01T00:00:00Z", "not a date", ""]).map(
        lambda text: graphql.StringValueNode(value=text)
    ),
}
EXAMPLES = 150


def _fuzz(url: str, mode: hypothesis_graphql.Mode) -> dict[str, int]:
    seen = {"sent": 0, "errors": 0}
    documents = st.one_of(
        hypothesis_graphql.queries(SDL, custom_scalars=SCALARS, mode=mode),
        hypothesis_graphql.mutations(SDL, custom_scalars=SCALARS, mode=mode),
    )

    @given(document=documents)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(document: Any) -> None:
        with httpx.Client(timeout=30) as http:
            r = http.post(url, json={"query": document})
        seen["sent"] += 1
        assert r.status_code < 500, (document, r.status_code, r.text)
        body = r.json()
        assert "data" in body or "errors" in body, body
        for error in body.get("errors") or []:
            seen["errors"] += 1
            code = (error.get("extensions") or {}).get("code")
            assert code != "INTERNAL", (document, json.dumps(error))
            assert "Traceback" not in json.dumps(error)

    check()
    return seen


async def test_generated_graphql_documents_get_graphql_answers_and_no_5xx(
    edge: EdgeProcess, worker: InProcessWorker
) -> None:
    url = f"{edge.url}/graphql"
    for mode in (hypothesis_graphql.Mode.POSITIVE, hypothesis_graphql.Mode.NEGATIVE):
        seen = await asyncio.to_thread(_fuzz, url, mode)  # the worker runs on this loop
        assert seen["sent"] >= EXAMPLES // 2

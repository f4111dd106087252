"""The SSE envelope of a token delta, written without pydantic on the relay's hot path, is
the envelope pydantic writes, whatever the text."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from praxis.schemas import Delivery, TokenDelta
from praxis.schemas.api import EventEnvelope, envelope_json

STAMP = re.compile(r'"timestamp":"[^"]*"')


def _same_but_the_time(fast: str, slow: str) -> None:
    assert STAMP.sub("T", fast) == STAMP.sub("T", slow)
    stamp = STAMP.search(fast)
    assert stamp is not None
    assert re.fullmatch(r'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z"', stamp[0])


@settings(max_examples=300, deadline=None)
@given(text=st.text(), turn_id=st.text(min_size=1, max_size=40), index=st.integers(1, 10**9))
def test_a_delta_envelope_is_the_one_pydantic_writes(text: str, turn_id: str, index: int) -> None:
    delta = TokenDelta(session_id="ses_01", turn_id=turn_id, index=index, text=text)
    item = Delivery(cursor=None, event=delta)
    fast = envelope_json(item)
    _same_but_the_time(fast, EventEnvelope.of(item).model_dump_json())
    assert json.loads(fast)["data"]["content"] == text


def test_awkward_texts() -> None:
    for text in ["", 'say "hi"\\', "é ✓ 😀", "\x00\x1f\x7f\n\t\r", "\u2028\u2029", "</script>"]:
        item = Delivery(
            cursor=None, event=TokenDelta(session_id="ses_01", turn_id="t", index=1, text=text)
        )
        _same_but_the_time(envelope_json(item), EventEnvelope.of(item).model_dump_json())

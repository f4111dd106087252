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


def _sse(message: bytes) -> tuple[str, object]:
    """The event name and the parsed data of one written SSE message."""
    lines = message.decode().split("\r\n")
    assert lines[-2:] == ["", ""], message  # one message, ended by a blank line
    fields = dict(line.split(": ", 1) for line in lines[:-2])
    return fields["event"], json.loads(fields["data"])


@settings(max_examples=300, deadline=None)
@given(piece=st.text(), item_id=st.text(max_size=60), seq=st.integers(0, 10**9))
def test_an_openai_text_delta_is_the_event_written_the_long_way(
    piece: str, item_id: str, seq: int
) -> None:
    from praxis.edge.openai_compat import _event, _text_delta

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    slow = _event("response.output_text.delta", seq, **where, delta=piece, logprobs=[])
    fast = _text_delta(seq, item_id, piece)
    assert _sse(fast) == _sse(slow.encode())
    assert list(_sse(fast)[1]) == list(_sse(slow.encode())[1])  # type: ignore[call-overload]


@settings(max_examples=300, deadline=None)
@given(piece=st.text(), model=st.text(max_size=40))
def test_a_chat_chunk_of_a_piece_is_the_message_written_the_long_way(
    piece: str, model: str
) -> None:
    from litestar.response import ServerSentEventMessage

    from praxis.edge.openai_compat import _MARK, _pieces_as

    def body(delta: dict[str, str]) -> str:  # a model may even be named as the mark
        choices = [{"index": 0, "delta": delta, "finish_reason": None}]
        return json.dumps({"id": "chatcmpl-1", "model": model or _MARK, "choices": choices})

    slow = ServerSentEventMessage(data=body({"content": piece})).encode()
    assert _pieces_as(body)(piece) == slow

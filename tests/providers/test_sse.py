"""The SSE decoder parses through what real gateways send, however the bytes are chunked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from regen.providers import ServerSentEvent, SSEDecoder

NOISY = (
    b": keep-alive\n\n"
    b"\n"
    b": OPENROUTER PROCESSING\r\n\r\n"
    b'data: {"a":1}\r\n\r\n'
    b"event: message\nid: 7\ndata: line one\ndata: line two\n\n"
    + "data: 你好\n\n".encode()
    + b"data: [DONE]\n\n"
)
EXPECTED = [
    ServerSentEvent('{"a":1}'),
    ServerSentEvent("line one\nline two", "message", "7"),
    # The last event id carries over to later events, as the SSE spec says.
    ServerSentEvent("你好", None, "7"),
    ServerSentEvent("[DONE]", None, "7"),
]


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_comments_blank_lines_and_crlf_are_parsed_through() -> None:
    assert decode([NOISY]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(NOISY)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [NOISY[a:b] for a, b in zip([0, *points], [*points, len(NOISY)], strict=True)]
    assert decode(chunks) == EXPECTED


def test_a_last_event_without_its_blank_line_is_still_dispatched() -> None:
    assert decode([b"data: x\n\ndata: [DONE]"]) == [ServerSentEvent("x"), ServerSentEvent("[DONE]")]


def test_a_field_without_a_space_after_the_colon_is_read() -> None:
    assert decode([b"data:{}\n\n"]) == [ServerSentEvent("{}")]

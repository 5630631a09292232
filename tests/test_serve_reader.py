"""The front reader's framing (zoo.serve.reader.Framing): where a request ends, whatever the reads' boundaries."""
from __future__ import annotations

import pytest

from zoo.serve.reader import Framing

HEAD = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"


def chunked(body: bytes, size: int) -> bytes:
    chunks = b"".join(b"%x\r\n" % len(body[i:i + size]) + body[i:i + size] + b"\r\n" for i in range(0, len(body), size))
    return HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\nX-Trailer: 1\r\n\r\n"


def fed_byte_by_byte(data: bytes, limit: int = 1000) -> tuple[str, int, int]:
    """(final state, request length, bytes fed when the state stopped being "headers"/"body")."""
    framing = Framing(limit)
    for n in range(1, len(data) + 1):
        if framing.feed(data[:n]) not in ("headers", "body"):
            return framing.state, framing.length, n
    return framing.state, framing.length, len(data)


@pytest.mark.parametrize("request_bytes", [
    HEAD + b"Content-Length: 11\r\n\r\nhello world",
    HEAD + b"\r\n",  # no body
    chunked(b"hello chunked world", 4),
    chunked(b"", 4),
])
def test_a_request_ends_exactly_where_it_ends(request_bytes):
    pipelined = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    state, length, fed = fed_byte_by_byte(request_bytes + pipelined)
    assert (state, length, fed) == ("complete", len(request_bytes), len(request_bytes))


def test_bodies_over_the_limit_and_ambiguous_framing():
    assert fed_byte_by_byte(HEAD + b"Content-Length: 1001\r\n\r\n")[0] == "too_large"  # declared: before the body
    assert fed_byte_by_byte(HEAD + b"Content-Length: 1000\r\n\r\n" + b"x" * 1000)[0] == "complete"
    state, _, fed = fed_byte_by_byte(chunked(b"x" * 1001, 100))
    assert state == "too_large" and fed < len(chunked(b"x" * 1001, 100))  # refused when the chunk that passes it starts
    assert fed_byte_by_byte(chunked(b"x" * 1000, 100))[0] == "complete"
    both = HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert fed_byte_by_byte(both)[0] == "malformed"  # a smuggling shape: gunicorn's parser answers 400
    assert fed_byte_by_byte(HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n")[0] == "malformed"
    assert fed_byte_by_byte(HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")[0] == "malformed"


def test_expect_continue_is_found_for_the_reader_to_answer():
    framing = Framing(1000)
    data = HEAD + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    assert framing.feed(data) == "body"
    start, end = framing.expect_continue
    assert data[start:end] == b"Expect: 100-continue\r\n"

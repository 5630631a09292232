"""The front reader: a request is read whole, in the worker's event loop, before a request thread sees it.

gunicorn's threaded worker hands a connection to one of its `--threads` as soon as bytes arrive, and that thread
then reads the headers and the body with blocking reads. A client that sends its headers and trickles the body
holds the thread for as long as it likes, so twenty such clients took all sixteen threads and `/health` with them.
Here the worker's main loop reads every connection without blocking (one `select` over all of them), checks the
framing as bytes come (headers, then Content-Length or chunked), and gives a thread only a complete request,
parsed by gunicorn from memory. So:

- a slow client costs a buffer, not a thread; it has `read_timeout` seconds for its whole request, then gets 408;
- a body declared (Content-Length) or sent (chunked) over the upload limit gets 413 before it is read any further;
- the buffers of all requests being read are bounded by `buffer_budget` bytes per worker: past it, 503;
- on SIGTERM the listening sockets are closed at once (new connections are refused), and what was accepted is
  finished within the graceful timeout.

This is what a reverse proxy such as nginx does in front of an application server (request buffering, header and
body timeouts); here it is built in, so the service is safe without one. These answers are written directly
(JSON, one line), with the headers every answer of the app has, and counted in the shared metrics.
"""
from __future__ import annotations

import errno
import json
import selectors
import socket
import time
from functools import partial

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}
MAX_HEADER_BYTES = 64 * 1024        # more without the blank line that ends headers: gunicorn's parser refuses it
RECV_BYTES = 256 * 1024
LINGER_S = 2.0                      # after an early answer, unread bytes are drained this long so the client reads it
REASONS = {408: "Request Timeout", 413: "Content Too Large", 503: "Service Unavailable"}


def too_large_message(limit_bytes: int) -> str:
    """The one wording of the upload limit (the reader's 413 and the app's)."""
    return f"upload larger than the limit of {limit_bytes} bytes ({limit_bytes / (1 << 20):g} MiB)"


class Framing:
    """How much of one HTTP/1.x request has arrived. `feed()` after each read; `state` is then one of
    "headers" (still reading them), "body", "complete" (`length` bytes are the request), "too_large" (body over
    `limit`), or "malformed" (gunicorn's own parser gives the 400)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.state = "headers"
        self.length = 0               # bytes of the complete request
        self._body_start = 0
        self._content_length = 0
        self._chunked = False
        self._pos = 0                 # chunked: where the next chunk-size line starts
        self._decoded = 0             # chunked: body bytes so far
        self._trailers = False
        self.expect_continue: tuple[int, int] | None = None  # where `Expect: 100-continue` is (start, end)

    def feed(self, data: bytes) -> str:
        if self.state == "headers":
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > MAX_HEADER_BYTES:
                    self._finish(len(data), "malformed")
                return self.state
            self._read_headers(bytes(data[:end]))
            self._body_start = self._pos = end + 4
            if self.state == "headers":
                self.state = "body"
        if self.state == "body":
            if self._chunked:
                self._read_chunks(data)
            elif len(data) - self._body_start >= self._content_length:
                self._finish(self._body_start + self._content_length)
        return self.state

    def _read_headers(self, head: bytes) -> None:
        lengths, chunked = set(), False
        start = head.find(b"\r\n") + 2  # after the request line
        for line in head[start:].split(b"\r\n"):
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"expect" and value.lower() == b"100-continue":
                self.expect_continue = (start, start + len(line) + 2)
            start += len(line) + 2
            if name == b"content-length":
                lengths.add(value)
            elif name == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
        if chunked and lengths or len(lengths) > 1 or lengths and not next(iter(lengths)).isdigit():
            return self._finish(0, "malformed")  # request smuggling shapes: gunicorn answers 400
        self._chunked = chunked
        self._content_length = int(next(iter(lengths))) if lengths else 0
        if self._content_length > self.limit:
            self.state = "too_large"

    def _read_chunks(self, data: bytes) -> None:
        """Walks the chunk headers only (data is skipped by its size), from where the last call stopped."""
        while True:
            line_end = data.find(b"\r\n", self._pos)
            if line_end < 0:
                if len(data) - self._pos > 1024:  # a chunk-size line cannot be this long
                    self._finish(len(data), "malformed")
                return
            line = data[self._pos:line_end]
            if self._trailers:  # after the last chunk: trailer lines up to an empty one
                self._pos = line_end + 2
                if not line:
                    return self._finish(self._pos)
                continue
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return self._finish(len(data), "malformed")
            if size == 0:
                self._trailers, self._pos = True, line_end + 2
                continue
            if self._decoded + size > self.limit:
                self.state = "too_large"
                return
            if len(data) < line_end + 2 + size + 2:
                return  # this chunk's data has not all arrived: counted when it has
            self._decoded += size
            self._pos = line_end + 2 + size + 2

    def _finish(self, length: int, state: str = "complete") -> None:
        self.length, self.state = length, state


class _Reading:
    """A connection whose request is being read: its bytes so far, their framing, its deadline."""

    def __init__(self, limit: int, deadline: float, data: bytes = b""):
        self.data = bytearray(data)
        self.framing = Framing(limit)
        self.deadline = deadline


class BufferedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker with the front reader described above. Settings come from the application
    (`self.app.settings`: max_upload_mb, read_timeout_s, buffer_budget_mb; `self.app.metrics`)."""

    def init_process(self):
        settings = self.app.settings
        self.upload_limit = int(settings.max_upload_mb * (1 << 20))
        self.read_timeout = settings.read_timeout_s
        self.buffer_budget = int(settings.buffer_budget_mb * (1 << 20))
        self.reading: dict = {}  # TConn -> _Reading
        self.buffered = 0
        self.lingering: set = set()  # connections answered early, drained briefly before closing
        super().init_process()

    # --- connections in: read by the main loop, not by a request thread
    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking from here
        self._start_reading(conn, b"")
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection has its next request coming: read it the same way."""
        self.keepalived_conns.remove(conn)
        self._start_reading(conn, getattr(conn, "leftover", b""))
        self.poller.modify(client, selectors.EVENT_READ, partial(self._on_readable, conn))
        if self.reading[conn].data:  # a pipelined request may be whole already: no read would announce it
            self._on_readable(conn, client, examine_only=True)

    def _start_reading(self, conn, leftover: bytes) -> None:
        self.reading[conn] = _Reading(self.upload_limit, time.monotonic() + self.read_timeout, leftover)
        self.buffered += len(leftover)

    def _on_readable(self, conn, client, examine_only: bool = False) -> None:
        try:
            if examine_only:
                self._examine(conn, self.reading[conn])
            else:
                self._read_more(conn)
        except Exception:  # noqa: BLE001 - one connection's trouble must not end the worker's loop
            self.log.exception("reading a request failed")
            if conn in self.reading:
                self._drop(conn)

    def _read_more(self, conn) -> None:
        state = self.reading[conn]
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            return self._drop(conn)
        state.data += data
        self.buffered += len(data)
        if self.buffered > self.buffer_budget:
            return self._answer(conn, 503, "server busy: too many uploads being received; retry later",
                                {"Retry-After": "1"})
        self._examine(conn, state)

    def _examine(self, conn, state: _Reading) -> None:
        """What the bytes so far make: wait for more, answer early, or hand the request to a thread."""
        was_reading_headers = state.framing.state == "headers"
        outcome = state.framing.feed(state.data)
        if was_reading_headers and outcome == "body" and state.framing.expect_continue:
            self._send_continue(conn)  # the client waits for it before sending its body
        if outcome == "too_large":
            self._answer(conn, 413, too_large_message(self.upload_limit))
        elif outcome in ("complete", "malformed"):
            self._dispatch(conn, state)

    def _dispatch(self, conn, state: _Reading) -> None:
        """A whole request in memory: gunicorn parses it from there in a request thread, which never waits."""
        self._stop_reading(conn)
        self.poller.unregister(conn.sock)
        framing = state.framing
        end = framing.length if framing.state == "complete" else len(state.data)
        conn.leftover = bytes(state.data[end:])  # a pipelined next request
        request = bytes(state.data[:end])
        if framing.expect_continue:  # answered here already: gunicorn must not send a second 100 Continue
            request = request[:framing.expect_continue[0]] + request[framing.expect_continue[1]:]
        conn.parser = http.get_parser(self.cfg, [request], conn.client)
        conn.data_ready = True
        self.enqueue_req(conn)

    def finish_request(self, conn, fs):
        super().finish_request(conn, fs)
        if conn in self.keepalived_conns and getattr(conn, "leftover", b""):
            self.on_client_socket_readable(conn, conn.sock)  # the next request may be here already

    def _send_continue(self, conn) -> None:
        try:
            conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        except OSError:
            pass  # the next read sees the closed connection

    # --- early answers, timeouts, stop
    def _answer(self, conn, status: int, message: str, headers: dict | None = None) -> None:
        """An answer without the app (timeout, too large, busy): written, then the connection is drained
        briefly and closed, so that the client reads the answer rather than a reset."""
        body = json.dumps({"error": message}).encode()
        head = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close",
                **SECURITY_HEADERS, **(headers or {})}
        raw = f"HTTP/1.1 {status} {REASONS[status]}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
        self._stop_reading(conn)
        self.poller.unregister(conn.sock)
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(1.0)
            conn.sock.sendall(raw.encode() + b"\r\n" + body)
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            conn.linger_until = time.monotonic() + LINGER_S
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger, conn))
            self.lingering.add(conn)
        except OSError:
            self._close(conn)
        metrics = getattr(self.app, "metrics", None)
        if metrics is not None:
            metrics.observe_request(status, 0.0)

    def _on_linger(self, conn, client) -> None:
        try:
            if conn.sock.recv(RECV_BYTES):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(conn)

    def _end_linger(self, conn) -> None:
        self.lingering.discard(conn)
        self.poller.unregister(conn.sock)
        self._close(conn)

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, state in self.reading.items() if state.deadline <= now]:
            self._answer(conn, 408, f"request not received in {self.read_timeout:g} s")
        for conn in [c for c in self.lingering if c.linger_until <= now]:
            self._end_linger(conn)

    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # stopping: close the listeners now, so new connections are refused instead of waiting in the
            # kernel's backlog until the graceful timeout (the master closed its copies already)
            for listener in self.sockets:
                listener.close()

    def _stop_reading(self, conn) -> None:
        state = self.reading.pop(conn, None)
        if state is not None:
            self.buffered -= len(state.data)

    def _drop(self, conn) -> None:
        self._stop_reading(conn)
        self.poller.unregister(conn.sock)
        self._close(conn)

    def _close(self, conn) -> None:
        self.nr_conns -= 1
        conn.close()

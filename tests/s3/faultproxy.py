"""A fault-injecting HTTP proxy on 127.0.0.1 for S3 tests: it sits between the client and moto.

Every client connection carries one request (the proxy answers with ``Connection: close``, so clients never
reuse a connection and their pools cannot hide a fault with a silent reconnect). For a seeded share of requests
it injects one fault:

- ``reset``: the request is read and dropped, the client connection is reset (RST); the server never sees it;
- ``lost_response``: the request reaches the server and runs, then the connection is reset before the response
  (the client cannot know the write happened: it must be safe to repeat);
- ``slowdown``: an S3 ``503 SlowDown`` error, the server never sees the request;
- ``delay``: the request is forwarded after a pause (slow, not failed).

A failing fault also hits the client's identical resend of that request (aiohttp resends an idempotent request
once, unseen by botocore, s3fs and the engine, when the connection drops): the fault is one broken moment of
the network, counted once, and the layer above aiohttp sees exactly one error per counted fault.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import threading
import time
from collections import Counter

FAULTS = ("reset", "lost_response", "slowdown", "delay")
FAILING_FAULTS = ("reset", "lost_response", "slowdown")  # the ones the client sees as an error

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>"
)


class FaultProxy:
    """A threaded TCP proxy that speaks just enough HTTP/1.1 to inject per-request faults.

    :param upstream: ``(host, port)`` of the real server.
    :param rate: the share of requests that get a fault, split evenly between ``faults``.
    :param seed: seeds the choice of requests and faults.
    :param faults: which faults to inject.
    :param delay: ``(min, max)`` seconds of a ``delay`` fault.

    ``script`` (a list of faults, settable at any time) overrides the draw for the next requests, one each
    (a scripted fault does not repeat on a resend).
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        rate: float = 0.2,
        seed: int = 0,
        faults: tuple[str, ...] = FAULTS,
        delay: tuple[float, float] = (0.05, 0.3),
    ) -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; use some of {FAULTS}")
        self.upstream = upstream
        self.rate = rate
        self.faults = faults
        self.delay = delay
        self.script: list[str] = []
        self.counts: Counter[str] = Counter()  # "requests", "forwarded", "resent" and one key per fault
        self._failed: dict[bytes, str] = {}  # digest of a request that got a failing fault -> the fault
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)  # the accept loop notices stop() (closing a socket does not wake accept)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="faultproxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        self._sock.close()

    # -- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(60)
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _choose(self, request: bytes) -> str | None:
        digest = hashlib.sha256(request).digest()
        with self._lock:
            self.counts["requests"] += 1
            if digest in self._failed:
                self.counts["resent"] += 1
                return self._failed.pop(digest)
            if self.script:
                fault = self.script.pop(0)
                self.counts[fault] += 1
                return fault
            if self._rng.random() >= self.rate:
                return None
            fault = self._rng.choice(self.faults)
            self.counts[fault] += 1
            if fault in FAILING_FAULTS:
                self._failed[digest] = fault
            return fault

    def _handle(self, client: socket.socket) -> None:
        try:
            with client:
                request = _read_request(client)
                if request is None:
                    return
                fault = self._choose(request)
                if fault == "reset":
                    _reset(client)
                    return
                if fault == "slowdown":
                    head = b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                    head += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(SLOWDOWN)
                    client.sendall(head if request.startswith(b"HEAD ") else head + SLOWDOWN)
                    return
                if fault == "delay":
                    time.sleep(self._rng.uniform(*self.delay))
                response = self._forward(request)
                with self._lock:
                    self.counts["forwarded"] += 1
                if fault == "lost_response":
                    _reset(client)
                    return
                client.sendall(response)
        except OSError:
            pass

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=60) as up:
            up.sendall(request)
            chunks = []
            while data := up.recv(65536):
                chunks.append(data)
        response = b"".join(chunks)
        head, sep, body = response.partition(b"\r\n\r\n")
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        return b"\r\n".join([*lines, b"Connection: close"]) + sep + body


def _reset(sock: socket.socket) -> None:
    """Close with an RST rather than a FIN: the client sees ``connection reset``."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Reader:
    """Buffered reads from a socket: lines and exact byte counts."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the client closed the connection mid-request")
        self.buf += data

    def until(self, marker: bytes) -> bytes:
        """Bytes up to and including ``marker``."""
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _read_request(client: socket.socket) -> bytes | None:
    """One request from the client, rewritten for a one-shot upstream connection; None if the client left."""
    reader = _Reader(client)
    try:
        head = reader.until(b"\r\n\r\n")[:-4]
    except ConnectionError:
        return None
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"expect", b"").lower() == b"100-continue":
        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:  # chunks, kept as sent: size line, data, CRLF; a zero-size chunk, trailers, an empty line
            size_line = reader.until(b"\r\n")
            body += size_line
            if int(size_line.split(b";")[0], 16) == 0:
                while (trailer := reader.until(b"\r\n")) != b"\r\n":
                    body += trailer
                body += b"\r\n"
                break
            body += reader.exactly(int(size_line.split(b";")[0], 16) + 2)
    else:
        body = reader.exactly(int(headers.get(b"content-length", b"0")))
    kept = [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() not in (b"connection", b"expect")]
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n" + body

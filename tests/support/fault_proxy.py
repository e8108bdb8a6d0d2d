"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for the reliability and interrupt tests.

It sits in front of a local Hub (``adapterhub.server.testing.running_hub``): point the client's
endpoint at ``proxy.url``. Every request is forwarded as is (one request per connection,
``Connection: close``), so the Hub's answers keep naming the proxy's address and every byte goes
through it. A test queues faults for the requests whose path contains a marker (``/resolve/`` by
default); each queued fault is used once, in order, and every request is logged.

Faults (``Fault.kind``):

* ``status``: answer ``status`` (500, 429, ...) at once, with ``Retry-After: retry_after`` if given
  (``echo``: the body repeats the request's headers, token included, as a careless server might);
* ``reset``: forward the head and ``at`` of the body, then reset the connection (TCP RST);
* ``truncate``: forward the head and ``at`` of the body, then close cleanly (FIN);
* ``length_long`` / ``length_short``: announce a Content-Length longer (+``extra`` bytes) or shorter
  (``at`` of it) than the body, send what was announced or the whole body, then close;
* ``stall``: forward the head and ``at`` of the body, then send nothing for ``seconds``;
* ``flip``: change one byte of the body (at ``at`` of it), as a hostile server or a broken link would;
* ``drop_range``: forward the request without its ``Range`` header (a server that ignores Range).

``throttle`` (bytes per second) slows every forwarded body (uploads too), for the Ctrl-C tests. Nothing here
reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 500
    retry_after: int | None = None
    at: float = 0.5  # fraction of the body before the fault strikes
    extra: int = 1000
    seconds: float = 30.0
    echo: bool = False


@dataclass
class Hit:
    """One request the proxy saw: what it asked for and what the proxy did to it."""

    method: str
    path: str
    range: str | None
    fault: str | None
    status: int | None = None
    sent: int = 0  # body bytes forwarded to the client


@dataclass
class _Queue:
    marker: str
    faults: list[Fault] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname in ("127.0.0.1", "localhost"), "the proxy only forwards to 127.0.0.1"
        self.upstream = ("127.0.0.1", parts.port or 80)
        self.hits: list[Hit] = []
        self.throttle: float | None = None  # bytes per second for forwarded bodies
        self._queues: list[_Queue] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)

    # -- control --------------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def add(self, *faults: Fault, marker: str = "/resolve/") -> None:
        """Queue ``faults`` for the next requests whose path contains ``marker`` (one each, in order)."""
        with self._lock:
            self._queues.append(_Queue(marker, list(faults)))

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
            self.hits.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(len(q.faults) for q in self._queues)

    def _next_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for queue in self._queues:
                if queue.faults and method == "GET" and queue.marker in path:
                    return queue.faults.pop(0)
        return None

    # -- serving --------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            with client:
                self._serve_one(client)
        except OSError:
            pass  # the client went away (or was reset on purpose)

    def _serve_one(self, client: socket.socket) -> None:
        client.settimeout(30)
        head, rest = _read_head(client)
        if head is None:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        length = next((int(v) for k, v in headers if k.strip().lower() == "content-length"), 0)
        body = rest
        started = time.monotonic()
        while len(body) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            body += chunk
            if self.throttle:  # an upload as slow as a download
                delay = len(body) / self.throttle - (time.monotonic() - started)
                if delay > 0 and self._stop.wait(delay):
                    return
        rng = next((v.strip() for k, v in headers if k.strip().lower() == "range"), None)
        fault = self._next_fault(method, target)
        hit = Hit(method, target, rng, fault.kind if fault else None)
        with self._lock:
            self.hits.append(hit)
        if fault is not None and fault.kind == "status":
            hit.status = fault.status
            extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after is not None else ""
            said = "; ".join(f"{k.strip()}: {v.strip()}" for k, v in headers) if fault.echo else ""
            payload = json.dumps({"error": f"injected fault {said}".strip()}).encode()
            client.sendall(
                f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
            )
            return
        dropped = {"connection", "keep-alive", "proxy-connection"} | ({"range"} if fault and fault.kind == "drop_range" else set())
        kept = [(k, v) for k, v in headers if k.strip().lower() not in dropped]
        request = lines[0] + "\r\n" + "".join(f"{k}:{v}\r\n" for k, v in kept) + "Connection: close\r\n\r\n"
        with socket.create_connection(self.upstream, timeout=30) as upstream:
            upstream.sendall(request.encode("latin-1") + body)
            up_head, up_rest = _read_head(upstream)
            if up_head is None:
                return
            self._relay(client, upstream, up_head, up_rest, fault, hit)

    def _relay(self, client: socket.socket, upstream: socket.socket, head: bytes, rest: bytes,
               fault: Fault | None, hit: Hit) -> None:
        lines = head.decode("latin-1").split("\r\n")
        hit.status = int(lines[0].split(" ", 2)[1])
        length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                       if line.lower().startswith("content-length:")), None)
        kind = fault.kind if fault else None
        if kind in ("length_long", "length_short") and length is not None:
            new = length + fault.extra if kind == "length_long" else int(length * fault.at)
            lines = [f"Content-Length: {new}" if line.lower().startswith("content-length:") else line for line in lines]
        cut = None
        if kind in ("reset", "truncate", "stall", "length_short") and length:
            cut = max(1, int(length * fault.at)) if length > 1 else 0
        flip_at = int((length or 0) * fault.at) if kind == "flip" else None
        client.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n")
        position = 0
        pending = rest
        started = time.monotonic()
        while True:
            if not pending:
                pending = upstream.recv(65536)
                if not pending:
                    break
            chunk, pending = pending[:16384], pending[16384:]
            if cut is not None and position + len(chunk) >= cut:
                chunk = chunk[: cut - position]
            if flip_at is not None and position <= flip_at < position + len(chunk):
                i = flip_at - position
                chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
            if self.throttle:
                delay = (position + len(chunk)) / self.throttle - (time.monotonic() - started)
                if delay > 0 and self._stop.wait(delay):
                    return
            client.sendall(chunk)
            position += len(chunk)
            hit.sent = position
            if cut is not None and position >= cut:
                break
        if kind == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == "stall":
            deadline = time.monotonic() + fault.seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                try:
                    client.settimeout(0.1)
                    if client.recv(1) == b"":  # the client gave up and closed
                        return
                except (TimeoutError, socket.timeout):
                    continue


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > _HEAD_LIMIT:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest

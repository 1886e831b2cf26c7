"""A raw-socket WebSocket server for hostile-network tests (not the library's own server).

Each accepted connection runs ``behave(conn, index)`` on its own thread; helpers below do the
HTTP upgrade and write unmasked server frames by hand, so a test can break the protocol in
exactly the way a broken proxy or peer does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
from typing import Any, Callable, List, Optional

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("client went away during the handshake")
        data += chunk
    return data


def upgrade(conn: socket.socket) -> None:
    """Answer the client's upgrade request with 101."""
    request = read_request(conn).decode("latin-1")
    key = ""
    for line in request.split("\r\n"):
        if line.lower().startswith("sec-websocket-key:"):
            key = line.split(":", 1)[1].strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    conn.sendall((
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode())


def refuse(conn: socket.socket, status: int, reason: str = "Nope",
           headers: Optional[dict] = None) -> None:
    """Answer the upgrade request with an HTTP error status."""
    read_request(conn)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    conn.sendall(f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n\r\n".encode())


def header(opcode: int, length: int, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    return header(opcode, len(payload), fin) + payload


def text(event: Any) -> bytes:
    return frame(0x1, json.dumps(event).encode())


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(0x8, struct.pack("!H", code) + reason.encode())


def session_created(n: int = 1) -> bytes:
    return text({"type": "session.created", "event_id": f"event_{n}",
                 "session": {"id": f"sess_{n}", "type": "realtime"}})


class RawServer:
    """Listens on 127.0.0.1; every connection runs ``behave(conn, index)`` (index from 1).

    ``rcvbuf`` shrinks the receive buffer of every connection (set on the listening socket,
    so the TCP window is small from the start; shrinking it later makes TCP drop and
    retransmit with a growing backoff)."""

    def __init__(self, behave: Callable[[socket.socket, int], None],
                 rcvbuf: Optional[int] = None) -> None:
        self.behave = behave
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # before listen(): a small window from the start, as a slow reader has
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/v1/realtime"
        self.accepted: List[float] = []
        self.conns: List[socket.socket] = []
        self.errors: List[BaseException] = []
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="hostile-accept",
                                          daemon=True)
        self._acceptor.start()

    @property
    def connection_count(self) -> int:
        return len(self.accepted)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            self.conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn, len(self.accepted)),
                                 name="hostile-conn", daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        try:
            self.behave(conn, index)
        except OSError:
            pass  # the client went away: expected in these tests
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.errors.append(exc)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` inside a behaviour; True when the server is stopping."""
        return self._stop.wait(seconds)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() (close alone does not)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(2)

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_exact(conn: socket.socket, n: int) -> bytes:
    data = bytearray(n)
    view = memoryview(data)
    got = 0
    while got < n:
        k = conn.recv_into(view[got:], n - got)
        if not k:
            raise ConnectionError("closed")
        got += k
    return bytes(data)


def read_frame(conn: socket.socket) -> tuple[int, bytes]:
    """One client frame (masked, as clients must send): (opcode, unmasked payload)."""
    b0, b1 = read_exact(conn, 2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", read_exact(conn, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", read_exact(conn, 8))[0]
    key = read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
    payload = read_exact(conn, length)
    return b0 & 0x0F, bytes(c ^ key[i % 4] for i, c in enumerate(payload)) if length < 256 \
        else payload

"""The local server as a network service: hostile peers written here, each on a raw socket.

Issue 20, items 3-8: credentials never in the ``--debug`` log; descriptor exhaustion survived
and ``max_connections`` answered 503; memory per connection bounded (no recording unless
asked, a capped input buffer); a client that stops reading is dropped; ``serve`` beyond
loopback needs a key; a 100,000-level nested frame is an ``error`` event, not a lost session.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from realtime_sync.server import RealtimeServer

pytestmark = pytest.mark.timeout(60)

SECRET = "sk-test-Zq8v1SECRETkey0042"


# ---- a raw WebSocket client: no library, so it can misbehave exactly as a test needs ------

class RawClient:
    """One TCP connection speaking just enough WebSocket (masked client frames)."""

    def __init__(self, port: int, path: str = "/v1/realtime?model=gpt-realtime",
                 headers: Optional[Dict[str, str]] = None, rcvbuf: Optional[int] = None,
                 handshake: bool = True) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect(), so the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.status = 0
        self._send_lock = threading.Lock()  # a pong from the reader vs. the sender's frames
        if handshake:
            self.handshake(port, path, headers)

    def handshake(self, port: int, path: str, headers: Optional[Dict[str, str]]) -> None:
        all_headers = {"Host": f"127.0.0.1:{port}", "Upgrade": "websocket",
                       "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
                       "Authorization": "Bearer sk-local"}
        all_headers.update(headers or {})
        request = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in all_headers.items()) + "\r\n"
        self.sock.sendall(request.encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.status = int(line.split()[1]) if line.startswith("HTTP/") else 0
        self.head = head.decode("latin-1")

    def send_text(self, text: str, opcode: int = 0x1) -> None:
        self.send_frame(text.encode(), opcode)

    def send_frame(self, payload: bytes, opcode: int) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        with self._send_lock:
            self.sock.sendall(head + b"\0\0\0\0" + payload)  # mask key 0: payload as is

    def send(self, event: Dict[str, Any]) -> None:
        self.send_text(json.dumps(event))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> Tuple[int, bytes]:
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return first & 0x0F, self._read(n)

    def events(self) -> Iterator[Dict[str, Any]]:
        """Server events until the close frame (pings answered)."""
        while True:
            opcode, payload = self.frame()
            if opcode == 0x8:
                return
            if opcode == 0x9:
                self.send_frame(payload, 0xA)
            if opcode == 0x1:
                yield json.loads(payload)

    def next_event(self, type_: str) -> Dict[str, Any]:
        for event in self.events():
            if event["type"] == type_:
                return event
        raise AssertionError(f"closed before {type_}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def srv() -> Iterator[RealtimeServer]:
    with RealtimeServer(api_key="sk-local") as s:
        yield s


# ---- item 3: no credential in the server's debug log --------------------------------------

def test_debug_log_of_a_handshake_never_shows_a_credential(caplog):
    caplog.set_level(logging.DEBUG, logger="realtime_sync.server")
    with RealtimeServer(api_key=SECRET) as server:
        client = RawClient(server.port, path=f"/v1/realtime?model=gpt-realtime&api-key={SECRET}",
                           headers={"Authorization": f"Bearer {SECRET}", "api-key": SECRET,
                                    "Sec-WebSocket-Protocol":
                                        f"realtime, openai-insecure-api-key.{SECRET}"})
        assert client.status == 101
        client.next_event("session.created")  # the key was accepted: it did reach the server
        client.close()
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "Authorization: [redacted]" in logged  # the handshake is still logged
    assert "openai-insecure-api-key.[redacted]" in logged
    assert SECRET not in logged
    assert SECRET[8:] not in logged


def test_serve_debug_prints_no_authorization_header(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime_sync", "serve", "--port", "0", "--debug",
         "--api-key", SECRET],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("ws://127.0.0.1:"), url
        port = int(url.split(":")[2].split("/")[0])
        client = RawClient(port, headers={"Authorization": f"Bearer {SECRET}"})
        client.next_event("session.created")
        client.close()
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "Authorization: [redacted]" in err
    assert SECRET not in err


# ---- item 4: descriptor exhaustion, max_connections -----------------------------------------

CHILD = textwrap.dedent("""
    import logging, os, resource, sys
    from realtime_sync.server import RealtimeServer
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    srv = RealtimeServer(api_key="sk-local", max_connections=None).start()
    in_use = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 12, hard))
    print(srv.port, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    srv.stop()
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_descriptor_exhaustion_is_logged_and_accepting_resumes_when_attackers_leave():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              daemon=True)  # type: ignore[union-attr]
    reader.start()
    attackers: List[socket.socket] = []
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        # half-open attackers: connect and never send a byte, until accept() runs dry
        deadline = time.monotonic() + 20
        while not any("out of resources" in line for line in lines):
            assert time.monotonic() < deadline, f"no EMFILE warning: {lines}"
            if len(attackers) < 60:
                attackers.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(0.02)
        assert any("Too many open files" in line for line in lines), lines
        for sock in attackers:
            sock.close()
        attackers.clear()
        # served again once descriptors free up (the library's fds close on EOF)
        deadline = time.monotonic() + 15
        while True:
            try:
                client = RawClient(port)
                client.next_event("session.created")
                client.close()
                break
            except (OSError, AssertionError):
                assert time.monotonic() < deadline, f"never served again: {lines}"
                time.sleep(0.1)
        deadline = time.monotonic() + 5
        while not any("accepting connections again" in line for line in lines):
            assert time.monotonic() < deadline, lines
            time.sleep(0.02)
        assert not any("Traceback" in line for line in lines), "".join(lines)
    finally:
        for sock in attackers:
            sock.close()
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=20)
        reader.join(5)


def test_connections_beyond_the_maximum_get_503_and_a_freed_slot_is_served_again():
    with RealtimeServer(api_key="sk-local", max_connections=2) as server:
        first, second = RawClient(server.port), RawClient(server.port)
        for client in (first, second):
            client.next_event("session.created")
        third = RawClient(server.port)
        assert third.status == 503
        assert "Retry-After" in third.head
        third.close()
        assert server.refused_count == 1
        first.close()  # a slot frees up when its handler ends
        deadline = time.monotonic() + 10
        while True:
            again = RawClient(server.port)
            if again.status == 101:
                break
            again.close()
            assert time.monotonic() < deadline, "the freed slot was never reused"
            time.sleep(0.05)
        again.next_event("session.created")
        again.close()
        second.close()


def test_the_library_client_reports_a_full_server_as_http_503():
    import realtime_sync as rs

    with RealtimeServer(api_key="sk-local", max_connections=1) as server:
        holder = RawClient(server.port)
        holder.next_event("session.created")
        client = rs.RealtimeClient(url=server.url, api_key="sk-local", reconnect=False)
        with pytest.raises(rs.RealtimeSyncError) as info:
            client.connect(timeout=5)
        assert "503" in str(info.value)
        client.close()
        holder.close()


# ---- item 5: memory per connection ----------------------------------------------------------

def _update(i: int) -> Dict[str, Any]:
    return {"type": "session.update", "event_id": f"e{i}",
            "session": {"type": "realtime", "instructions": f"be brief {i} " + "x" * 1500}}


def test_a_session_update_flood_does_not_grow_memory(srv):
    client = RawClient(srv.port)
    client.next_event("session.created")

    def flood(n: int, start: int) -> None:
        for i in range(start, start + n):
            client.send(_update(i))
        for _ in range(n):
            client.next_event("session.updated")

    flood(200, 0)  # warm-up: caches, ids, the socket buffers
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        flood(2000, 200)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert srv.connections[0].received == []  # nothing recorded unless asked
    assert grown < 1_000_000, f"grew {grown} bytes over 2000 updates"
    client.close()


def test_recording_of_events_is_opt_in():
    with RealtimeServer(api_key="sk-local", record=True) as server:
        client = RawClient(server.port)
        client.next_event("session.created")
        client.send(_update(1))
        client.next_event("session.updated")
        assert [e["event_id"] for e in server.connections[0].received] == ["e1"]
        client.close()


def _append(client: RawClient, ms: int, event_id: str) -> None:
    client.send({"type": "input_audio_buffer.append", "event_id": event_id,
                 "audio": base64.b64encode(b"\0" * (48 * ms)).decode()})


def test_the_uncommitted_input_buffer_is_capped_with_an_error_event():
    with RealtimeServer(api_key="sk-local", max_buffer_seconds=1.0) as server:
        client = RawClient(server.port, path="/v1/realtime?intent=transcription")
        client.next_event("session.created")
        client.send({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {
                "turn_detection": None, "transcription": {"model": "gpt-4o-transcribe"}}}}})
        client.next_event("session.updated")
        _append(client, 600, "a1")
        _append(client, 600, "a2")  # 1.2 s > 1 s: refused, not applied
        error = client.next_event("error")["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "input_audio_buffer_full"
        assert (error["param"], error["event_id"]) == ("audio", "a2")
        assert "1 s" in error["message"]
        client.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
        client.next_event("input_audio_buffer.committed")
        item = client.next_event("conversation.item.input_audio_transcription.completed")
        assert item["transcript"] == "600 ms of audio"  # only the accepted append
        _append(client, 900, "a3")  # the session goes on: after a commit there is room again
        client.send({"type": "input_audio_buffer.commit", "event_id": "c2"})
        item = client.next_event("conversation.item.input_audio_transcription.completed")
        assert item["transcript"] == "900 ms of audio"
        client.close()


def test_a_large_frame_is_handled_with_the_reader_held_and_the_next_frames_still_flow():
    """While a large append is handled, the connection's reader does not assemble the next
    (possibly 15 MiB) frame at the same time; small events are not held."""
    held: List[Tuple[str, bool]] = []

    def before(conn: Any, event: Dict[str, Any]) -> None:
        held.append((event["event_id"], conn._ws.recv_messages.paused))

    with RealtimeServer(api_key="sk-local", before=before) as server:
        client = RawClient(server.port, path="/v1/realtime?intent=transcription")
        client.next_event("session.created")
        client.send({"type": "session.update", "event_id": "u1", "session": {
            "type": "transcription", "audio": {"input": {
                "turn_detection": None, "transcription": {"model": "gpt-4o-transcribe"}}}}})
        client.next_event("session.updated")
        _append(client, 30_000, "big")  # 1.44 MB of PCM, 1.9 MB of text
        _append(client, 100, "small")
        client.send({"type": "input_audio_buffer.commit", "event_id": "c1"})
        item = client.next_event("conversation.item.input_audio_transcription.completed")
        assert item["transcript"] == "30100 ms of audio"
        assert held == [("u1", False), ("big", True), ("small", False), ("c1", False)]
        client.close()


@pytest.mark.parametrize("text", [
    "", "AAAA", "AAE=", "AA==", "3q2+7w==", "AA", "A", "AAA=A", "AA=A", "AA===",
    "AA AA", "AA\nAA", "AA-_", "AAA\u00e9", "=AAA",
])
def test_append_audio_is_decoded_exactly_as_strict_base64(text):
    import base64 as stdlib
    import binascii

    from realtime_sync.server._audio import b64decode_strict

    try:
        expected: Any = stdlib.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        expected = type(exc)
    try:
        got: Any = b64decode_strict(text)
    except (binascii.Error, ValueError) as exc:
        got = type(exc)
    assert got == expected


def test_default_buffer_limit_is_the_one_the_readme_documents():
    from realtime_sync.server._session import MAX_BUFFER_SECONDS

    with open(os.path.join(os.path.dirname(__file__), "..", "README.md"),
              encoding="utf-8") as f:
        readme = f.read()
    assert MAX_BUFFER_SECONDS == 600
    assert "input_audio_buffer_full" in readme and "10 minutes" in readme


# ---- item 6: a client that stops reading ----------------------------------------------------

def test_a_client_that_stops_reading_is_closed_after_the_send_timeout():
    with RealtimeServer(api_key="sk-local", send_timeout=0.5) as server:
        sleeper = RawClient(server.port, rcvbuf=4096)  # reads the handshake, then never again
        deadline = time.monotonic() + 10
        while not server.connections:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        conn = server.connections[0]
        big = "y" * 60_000  # each session.updated echoes it back
        sent = 0
        try:
            while not conn.closed and sent < 2000:
                sleeper.sock.settimeout(2)
                sleeper.send({"type": "session.update", "session": {
                    "type": "realtime", "instructions": big}})
                sent += 1
        except OSError:  # the server closed the socket under us: what we want
            pass
        assert conn.wait_closed(20), f"still open after {sent} unread updates"
        deadline = time.monotonic() + 10
        while server.connections:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # its threads are gone too (read loop, reader, keepalive)
        suffix = f"-{conn.number}"
        deadline = time.monotonic() + 10
        while [t for t in threading.enumerate()
               if t.name.startswith("rs-server-") and t.name.endswith(suffix)]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # and the server still serves others
        other = RawClient(server.port)
        other.next_event("session.created")
        other.close()
        sleeper.close()


# ---- item 7: beyond loopback only with a key ------------------------------------------------

def test_serve_beyond_loopback_without_a_key_is_refused(capsys):
    from realtime_sync.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--api-key" in err and "--allow-any-key" in err


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("192.168.1.10", False), ("10.0.0.1", False)])
def test_which_hosts_count_as_loopback(host, loopback):
    from realtime_sync.server._server import is_loopback

    assert is_loopback(host) is loopback


# ---- item 8: deeply nested JSON --------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/realtime?model=gpt-realtime",
                                  "/v1/realtime/translations?model=gpt-realtime-translate"])
@pytest.mark.parametrize("nested", [
    "[" * 100_000 + "]" * 100_000,
    '{"type":"session.update","session":' * 100_000 + "{}" + "}" * 100_000,
    json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [
        {"type": "function", "name": "f", "parameters": {"p": [[]]}}]}}).replace(
        "[[]]", "[" * 300 + "]" * 300),
], ids=["arrays-100k", "objects-100k", "tools-300"])
def test_deeply_nested_json_is_an_error_event_and_the_session_goes_on(path, nested, caplog):
    caplog.set_level(logging.WARNING, logger="realtime_sync")
    with RealtimeServer(api_key="sk-local") as server:
        client = RawClient(server.port, path=path)
        client.next_event("session.created")
        client.send_text(nested)
        error = client.next_event("error")["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "invalid_json"
        assert "nested" in error["message"]
        client.send({"type": "session.update", "event_id": "after",
                     "session": {"type": "realtime", "instructions": "still here"}})
        assert next(e for e in client.events()
                    if e["type"] in ("session.updated", "error")) is not None
        assert server.connections and not server.connections[0].closed
        client.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

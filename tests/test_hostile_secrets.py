"""Secrets against hostile servers and careless URLs (issue 20: items 1 and 2).

Each test runs its own raw-socket servers (tests/raw_hostile.py): one that answers the
upgrade with a redirect, and the place it redirects to, which records every byte it gets.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import threading
import time

import pytest
from raw_hostile import GUID, RawServer, read_request, session_created, upgrade

import realtime_sync as rs
from realtime_sync._core.transport import CloseCause

pytestmark = pytest.mark.timeout(60)

KEY = "sk-redirect-test-key-1234567890"


def redirect(conn: socket.socket, location: str, status: int = 302) -> bytes:
    """Answer the upgrade request with a redirect; returns the request."""
    request = read_request(conn)
    conn.sendall(f"HTTP/1.1 {status} Found\r\nLocation: {location}\r\n"
                 "Content-Length: 0\r\n\r\n".encode())
    return request


class Elsewhere:
    """The redirect target: records everything any client sends it, answers nothing."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lock = threading.Lock()
        self.server = RawServer(self._behave)
        self.url = self.server.url

    def _behave(self, conn: socket.socket, n: int) -> None:
        conn.settimeout(0.1)
        while not self.server.stopping:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            with self.lock:
                self.received += chunk

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def elsewhere():
    target = Elsewhere()
    yield target
    target.close()


def test_a_redirect_to_another_origin_is_refused_and_the_key_never_goes_there(elsewhere, caplog):
    requests = []

    def behave(conn, n):
        requests.append(redirect(conn, elsewhere.url))

    with caplog.at_level(logging.DEBUG), RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY,
                                   reconnect=rs.Backoff(initial=0.01, maximum=0.05))
        with pytest.raises(rs.ConnectError) as info:
            client.connect(timeout=10)
        client.close()
    assert b"Authorization: Bearer " + KEY.encode() in requests[0]  # the key went to the URL given
    message = str(info.value)
    assert "another origin" in message and elsewhere.url.split("/v1")[0] in message
    time.sleep(0.2)  # anything that was going to reach the redirect target has by now
    assert bytes(elsewhere.received) == b""  # not even the request line, let alone the key
    assert srv.connection_count == 1  # fatal: no retry of a redirect
    assert KEY not in caplog.text


def test_a_redirect_on_reconnect_to_cleartext_elsewhere_ends_the_session_without_a_retry(
        elsewhere):
    def behave(conn, n):
        if n == 1:
            upgrade(conn)
            conn.sendall(session_created(1))
            time.sleep(0.1)
            conn.close()  # no close frame: the client reconnects
        else:
            redirect(conn, elsewhere.url.replace("127.0.0.1", "localhost"), status=307)

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY,
                                   reconnect=rs.Backoff(initial=0.01, maximum=0.05))
        try:
            client.connect(timeout=10)
            gone = client.wait_for("client.disconnected", where=lambda e: not e.will_reconnect,
                                   timeout=10)
            time.sleep(0.2)
            assert srv.connection_count == 2
        finally:
            client.close()
    assert gone.cause == CloseCause.HANDSHAKE_REFUSED and "another origin" in gone.reason
    assert bytes(elsewhere.received) == b""


def upgrade_recording(conn: socket.socket) -> bytes:
    """Answer the upgrade request with 101; returns the request."""
    request = read_request(conn)
    key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    return request


def test_a_redirect_within_the_same_origin_is_followed_with_the_key():
    requests = []

    def behave(conn, n):
        if n == 1:
            requests.append(redirect(conn, srv.url.replace("/v1/realtime", "/v2/realtime"),
                                     status=301))
            return
        requests.append(upgrade_recording(conn))
        conn.sendall(session_created(1))
        conn.settimeout(5)
        while conn.recv(65536):
            pass

    with RawServer(behave) as srv, rs.RealtimeClient(url=srv.url, api_key=KEY) as client:
        assert client.connected
    assert requests[1].startswith(b"GET /v2/realtime ")
    assert b"Authorization: Bearer " + KEY.encode() in requests[1]


def test_url_user_info_is_masked_in_repr_url_errors_and_logs(caplog):
    secret = "sk-userinfo-key-0987654321"
    url = f"ws://someone:{secret}@127.0.0.1:9/v1/realtime?token=tok-0123456789"
    with caplog.at_level(logging.DEBUG):
        client = rs.RealtimeClient(url=url, api_key=KEY, reconnect=None)
        shown = [repr(client), client.url]
        with pytest.raises(rs.ConnectError) as info:  # nothing listens on port 9
            client.connect(timeout=5)
        shown += [str(info.value), repr(info.value)]
        client.close()
        translator = rs.Translator(to="es", url=url, api_key=KEY)
        shown += [translator.url, repr(translator)]
    shown.append(caplog.text)
    for text in shown:
        assert secret not in text and "tok-0123456789" not in text and KEY not in text
    assert client.url.startswith("ws://***@127.0.0.1:9/") and "token=***" in client.url
    assert "user info" in caplog.text  # it says the user info is not sent

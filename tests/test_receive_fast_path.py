"""The receive fast path and the grouped connection options, against raw hostile peers.

Whole text frames are parsed straight from the read buffer; everything else (control frames,
fragments, frames split over reads, oversized or masked frames) goes through
websocket-client's parser. A peer that mixes them all in ONE write must still get every event
in order, every ping answered, every protection applied. ``Keepalive`` and ``Proxy`` group
the flat keywords, which keep working.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from raw_hostile import RawServer, close_frame, frame, header, read_frame, session_created, upgrade

import realtime_sync as rs
from realtime_sync._core.transport import CloseCause

pytestmark = pytest.mark.timeout(60)

KEY = "sk-fastpath-test-key-1234567890"


def event(n, **extra):
    return json.dumps({"type": "x.n", "n": n, **extra}).encode()


def wait_until(condition, timeout=10.0):
    """A deadlock guard, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_text_pings_fragments_and_split_frames_in_one_write_arrive_whole_and_in_order():
    answered = []

    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        split = frame(0x1, event(2, pad="x" * 300))
        conn.sendall(b"".join([
            frame(0x1, event(0)),
            frame(0x9, b"p1"),  # a ping between two text frames
            frame(0x1, event(1)),
            split[:5],  # the start of a frame, the rest in the next write
        ]))
        srv.wait(0.05)
        fragmented = (frame(0x1, b'{"type":"x.n",', fin=False) + frame(0x9, b"p2")
                      + frame(0x0, b'"n":3}', fin=True))
        conn.sendall(split[5:] + fragmented + frame(0x1, event(4, key=KEY))
                     + frame(0x1, event(5)))
        conn.settimeout(5)
        while len(answered) < 2:
            opcode, payload = read_frame(conn)
            if opcode == 0xA:
                answered.append(payload)
        srv.wait(30)

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, reconnect=False)
        got = []
        client.on("x.n", got.append)
        try:
            client.connect(timeout=5)
            client.wait_for("x.n", timeout=10, where=lambda e: e.n == 5)
            assert client.flush(5)
            assert [e.n for e in got] == [0, 1, 2, 3, 4, 5]
            assert got[2].pad == "x" * 300
            assert KEY not in json.dumps(got[4])  # a key echoed in a fast-path frame is masked
            assert wait_until(lambda: len(answered) == 2)
        finally:
            client.close(timeout=3)
    assert answered == [b"p1", b"p2"]


def test_a_masked_server_frame_never_takes_the_fast_path():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        payload = event(0)
        key = b"\x01\x02\x03\x04"
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        conn.sendall(frame(0x1, event(9)) + bytes([0x81, 0x80 | len(payload)]) + key + masked)
        srv.wait(30)

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, reconnect=False)
        got = []
        client.on("x.n", got.append)
        try:
            client.connect(timeout=5)
            client.wait_for("x.n", timeout=10, where=lambda e: e.n == 0)
            client.flush(5)
            # websocket-client unmasks it; read as raw bytes it would be garbage (not JSON)
            assert [e.n for e in got] == [9, 0]
            assert client.stats()["protocol_errors"] == 0
        finally:
            client.close(timeout=3)


def test_an_oversized_frame_in_a_burst_is_refused_after_the_frames_before_it():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        big = event(1, pad="y" * 3000)
        conn.settimeout(5)
        read_frame(conn)  # the client's go-ahead (connect() has returned)
        conn.sendall(frame(0x1, event(0)) + header(0x1, len(big)) + big)
        srv.wait(30)

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, reconnect=False,
                                   max_frame_size=2048)
        got = []
        client.on("x.n", got.append)
        try:
            client.connect(timeout=5)
            client.send({"type": "response.cancel"})
            gone = client.wait_for("client.disconnected", timeout=10)
            assert gone.cause == CloseCause.PROTOCOL_ERROR
            client.flush(5)
            assert [e.n for e in got] == [0]
            assert client.stats()["protocol_errors"] == 1
        finally:
            client.close(timeout=3)


def test_keepalive_given_as_one_object_ends_a_silent_connection():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        conn.settimeout(0.1)
        while not srv.stopping:  # reads, never answers a ping, never sends a byte
            try:
                if not conn.recv(65536):
                    return
            except socket.timeout:
                continue

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, reconnect=False,
                                   keepalive=rs.Keepalive(ping_interval=0.2, ping_timeout=0.2))
        try:
            client.connect(timeout=5)
            gone = client.wait_for("client.disconnected", timeout=10)
            assert gone.cause == CloseCause.KEEPALIVE_TIMEOUT
        finally:
            client.close(timeout=3)


def test_grouped_and_flat_options_cannot_both_be_given():
    with pytest.raises(TypeError):
        rs.RealtimeClient(api_key=KEY, keepalive=rs.Keepalive(5), ping_interval=3)
    with pytest.raises(TypeError):
        rs.RealtimeClient(api_key=KEY, proxy=rs.Proxy("127.0.0.1", 3128),
                          http_proxy_host="127.0.0.1")
    with pytest.raises(ValueError):
        rs.Keepalive(ping_interval=-1)
    assert "secret-password" not in repr(rs.Proxy("h", 1, ("user", "secret-password")))


def test_a_close_frame_after_text_frames_in_one_write_is_seen_after_them():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        conn.settimeout(5)
        read_frame(conn)  # the client's go-ahead
        conn.sendall(frame(0x1, event(0)) + frame(0x1, event(1)) + close_frame(1000, "done"))
        srv.wait(30)

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, reconnect=False)
        got = []
        client.on("x.n", got.append)
        try:
            client.connect(timeout=5)
            client.send({"type": "response.cancel"})
            gone = client.wait_for("client.disconnected", timeout=10)
            assert gone.code == 1000 and gone.cause == CloseCause.SERVER_CLOSED
            client.flush(5)
            assert [e.n for e in got] == [0, 1]
        finally:
            client.close(timeout=3)

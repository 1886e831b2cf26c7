"""Hostile networks: each test runs its own small raw-socket server (tests/raw_hostile.py) that
behaves like a broken proxy, load balancer or peer, never the library's own server.

Every test runs under a deadlock guard; none asserts a wall time (figures go to the notes
and ``benchmarks/bench_hostile.py``).
"""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import pytest
import websocket
from raw_hostile import (
    RawServer,
    close_frame,
    frame,
    header,
    read_frame,
    refuse,
    session_created,
    text,
    upgrade,
)

import realtime_sync as rs
from realtime_sync._core.transport import CloseCause, parse_retry_after

pytestmark = pytest.mark.timeout(60)

KEY = "sk-hostile-test-key-1234567890"


def client_for(srv, **kwargs):
    kwargs.setdefault("api_key", KEY)
    return rs.RealtimeClient(url=srv.url, **kwargs)


def hold(srv, conn):
    """Keep a connection open, reading (and discarding) what the client sends."""
    conn.settimeout(0.1)
    while not srv.stopping:
        try:
            if not conn.recv(65536):
                return
        except socket.timeout:
            continue


def collect(client, *types):
    got = []
    for t in types:
        client.on(t, got.append)
    return got


# -- 1. transient HTTP statuses on the reconnect handshake --------------------------------------
TRANSIENT = [408, 425, 429, 500, 502, 503, 504]


def test_transient_statuses_on_reconnect_are_retried_with_backoff_and_reported():
    def behave(conn, n):
        if n == 1:
            upgrade(conn)
            conn.sendall(session_created(1))
            time.sleep(0.1)
            conn.close()  # drop: the client reconnects
        elif n - 2 < len(TRANSIENT):
            refuse(conn, TRANSIENT[n - 2], headers={"Retry-After": "0"})
            conn.close()
        else:
            upgrade(conn)
            conn.sendall(session_created(n))
            hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=rs.Backoff(initial=0.01, maximum=0.05, jitter=0.5))
        attempts = collect(client, "client.reconnecting")
        try:
            client.connect(timeout=5)
            client.wait_for("client.reconnected", timeout=20)
            assert client.flush(5)
            assert client.connected and client.session_generation == 2
            assert client.session_id == f"sess_{len(TRANSIENT) + 2}"
        finally:
            client.close()
    assert attempts[0].cause == CloseCause.CONNECTION_LOST
    refused = attempts[1:]
    assert [e.http_status for e in refused] == TRANSIENT
    assert all(e.cause == "handshake_refused" for e in refused)
    assert [e.attempt for e in attempts] == list(range(1, len(TRANSIENT) + 2))
    assert all(0 <= e.delay <= 0.05 * 1.5 for e in attempts)  # capped and jittered


def test_retry_after_is_honoured_up_to_the_backoff_maximum():
    retry_after = iter(["1", "3600"])

    def behave(conn, n):
        if n == 1:
            upgrade(conn)
            conn.sendall(session_created(1))
            time.sleep(0.1)
            conn.close()
        elif n in (2, 3):
            refuse(conn, 503, headers={"Retry-After": next(retry_after)})
            conn.close()
        else:
            upgrade(conn)
            conn.sendall(session_created(n))
            hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=rs.Backoff(initial=0.01, maximum=1.5, jitter=0))
        attempts = collect(client, "client.reconnecting")
        try:
            client.connect(timeout=5)
            client.wait_for("client.reconnected", timeout=20)
            assert client.flush(5)
        finally:
            client.close()
    delays = [e.delay for e in attempts]
    assert delays[1] == pytest.approx(1.0)  # Retry-After: 1 beats the 0.02 s backoff
    assert delays[2] == pytest.approx(1.5)  # Retry-After: 3600 is capped at the maximum
    assert attempts[1].retry_after == 1.0


def test_retry_after_accepts_seconds_and_http_dates():
    import email.utils

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < parse_retry_after(later) <= 121
    assert parse_retry_after("yesterday") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [401, 403])
def test_401_or_403_on_reconnect_stops_at_once_with_authentication_error(status):
    def behave(conn, n):
        if n == 1:
            upgrade(conn)
            conn.sendall(session_created(1))
            time.sleep(0.1)
            conn.close()
        else:
            refuse(conn, status, headers={"X-Echo": KEY})
            conn.close()

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=rs.Backoff(initial=0.01, maximum=0.05, jitter=0))
        try:
            client.connect(timeout=5)
            gone = client.wait_for("client.disconnected",
                                   where=lambda e: not e.will_reconnect, timeout=10)
            assert isinstance(gone.exception, rs.AuthenticationError)
            assert gone.exception.status == status and gone.http_status == status
            assert KEY not in str(gone.exception) and KEY not in repr(gone)
            assert client.state == "disconnected"
            time.sleep(0.3)  # would be several more attempts if it kept trying
            assert srv.connection_count == 2
            with pytest.raises(rs.NotConnectedError):
                client.send({"type": "response.create"})
        finally:
            client.close()


@pytest.mark.parametrize("status", [429, 503])
def test_first_connect_refused_with_a_transient_status_raises_a_clear_error(status):
    def behave(conn, n):
        refuse(conn, status, headers={"Retry-After": "7"})
        conn.close()

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=rs.Backoff(initial=0.01))
        with pytest.raises(rs.ConnectError) as info:
            client.connect(timeout=5)
        client.close()
    err = info.value
    assert err.status == status and err.retry_after == 7.0
    assert f"HTTP {status}" in str(err) and "try connect() again later" in str(err)
    assert srv.connection_count == 1  # no silent retry on the first connect()


def test_connection_refused_while_reconnecting_keeps_retrying():
    srv = RawServer(lambda conn, n: (upgrade(conn), conn.sendall(session_created(n)),
                                     hold(srv, conn)))
    client = rs.RealtimeClient(url=srv.url, api_key=KEY,
                               reconnect=rs.Backoff(initial=0.05, maximum=0.1, jitter=0))
    attempts = collect(client, "client.reconnecting")
    try:
        client.connect(timeout=5)
        srv.close()  # nothing listens now: connection refused
        deadline = time.monotonic() + 10
        while len(attempts) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.flush(5)
        assert len(attempts) >= 4
        assert attempts[0].cause == CloseCause.CONNECTION_LOST
        assert all(e.cause == CloseCause.HANDSHAKE_FAILED for e in attempts[1:])
        assert "refused" in attempts[-1].reason.lower()
        assert client.state == "reconnecting"
    finally:
        client.close()


# -- 2. a half frame followed by silence ---------------------------------------------------------
def test_a_half_frame_followed_by_silence_is_detected_and_reconnects():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        if n == 1:
            conn.sendall(header(0x1, 100) + b'{"type":"x.')  # 11 of 100 bytes, then nothing
        hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv, ping_interval=0.3, ping_timeout=0.3,
                            reconnect=rs.Backoff(initial=0.01, jitter=0))
        try:
            client.connect(timeout=5)
            started = time.monotonic()
            gone = client.wait_for("client.disconnected", timeout=10)
            detected = time.monotonic() - started
            assert gone.cause == CloseCause.KEEPALIVE_TIMEOUT and gone.will_reconnect
            client.wait_for("client.reconnected", timeout=10)
            assert client.session_generation == 2
        finally:
            client.close()
    print(f"half frame detected after {detected:.2f} s (ping_interval + ping_timeout = 0.6)")


# -- 3. a server that stops reading but keeps pinging --------------------------------------------
def _stop_reading_keep_pinging(srv, conn, n):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    upgrade(conn)
    conn.sendall(session_created(n))
    while not srv.wait(0.05):  # never reads again; pings every 50 ms
        conn.sendall(frame(0x9, b"hi"))


def _flood(client, errors):
    try:
        while True:
            client.input_audio_buffer.append(b"\x01\x00" * 24000)
    except rs.NotConnectedError as exc:
        errors.append(exc)


def test_a_stalled_send_is_detected_although_pings_keep_arriving():
    with RawServer(lambda conn, n: _stop_reading_keep_pinging(srv, conn, n)) as srv:
        client = client_for(srv, ping_interval=0.5, ping_timeout=0.5, reconnect=False)
        errors = []
        try:
            client.connect(timeout=5)
            sender = threading.Thread(target=_flood, args=(client, errors))
            sender.start()
            gone = client.wait_for("client.disconnected", timeout=20)
            sender.join(10)
            assert not sender.is_alive() and errors
            assert gone.cause == CloseCause.SEND_STALLED
            # the reader kept running: every ping was read, the pongs were dropped, not waited
            assert client.stats()["control_frames_dropped"] >= 1
        finally:
            assert client.close(timeout=3)


def test_close_is_bounded_while_a_send_is_stuck_and_pings_arrive():
    with RawServer(lambda conn, n: _stop_reading_keep_pinging(srv, conn, n)) as srv:
        client = client_for(srv, ping_interval=20)  # stall detection would take 30 s
        errors = []
        client.connect(timeout=5)
        sender = threading.Thread(target=_flood, args=(client, errors))
        sender.start()
        time.sleep(1.0)  # the socket buffers fill; the sender blocks
        assert client.close(timeout=3) is True
        sender.join(5)
        assert not sender.is_alive() and errors


def test_a_pong_delayed_by_a_stuck_send_is_sent_once_the_socket_frees_up():
    pongs = []

    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        time.sleep(1.0)  # not reading: the client's big append blocks meanwhile
        conn.sendall(frame(0x9, b"p1"))
        time.sleep(0.5)
        conn.settimeout(10)
        while not srv.stopping:  # read again: the append, then the pong
            opcode, payload = read_frame(conn)
            if opcode == 0xA:
                pongs.append(payload)
                return

    with RawServer(behave, rcvbuf=4096) as srv:
        client = client_for(srv, ping_interval=20)
        try:
            client.connect(timeout=5)
            client.input_audio_buffer.append(b"\x01\x00" * (2 * 1024 * 1024))  # 4 MiB
            deadline = time.monotonic() + 10
            while not pongs and time.monotonic() < deadline:
                time.sleep(0.02)
            assert pongs == [b"p1"]
            assert client.connected
        finally:
            client.close()


CTRL_C_CHILD = textwrap.dedent("""
    import sys, time
    import realtime_sync as rs
    client = rs.RealtimeClient(url=sys.argv[1], api_key="sk-x", ping_interval=20)
    client.connect(timeout=5)
    print("sending", flush=True)
    while True:
        client.input_audio_buffer.append(b"\\x01\\x00" * 24000)
""")


def test_ctrl_c_ends_a_process_whose_send_is_stuck():
    with RawServer(lambda conn, n: _stop_reading_keep_pinging(srv, conn, n)) as srv:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        child = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, srv.url],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            assert child.stdout.readline().strip() == b"sending"
            time.sleep(1.5)  # well into the stalled send
            assert child.poll() is None
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            child.wait(10)
            took = time.monotonic() - sent
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        stderr = child.stderr.read().decode()
        assert "KeyboardInterrupt" in stderr
    print(f"Ctrl-C ended the stalled process in {took:.2f} s")


# -- 5. reconnect storm -------------------------------------------------------------------------
def test_a_server_that_drops_every_session_at_once_gets_a_growing_backoff():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n) + close_frame(1011, "overloaded"))
        hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=rs.Backoff(initial=0.02, maximum=0.16, jitter=0))
        attempts = collect(client, "client.reconnecting")
        try:
            client.connect(timeout=5)
            deadline = time.monotonic() + 15
            while len(attempts) < 7 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.flush(5)
        finally:
            client.close()
    assert [e.attempt for e in attempts[:7]] == [1, 2, 3, 4, 5, 6, 7]
    assert [round(e.delay, 2) for e in attempts[:7]] == [0.02, 0.04, 0.08, 0.16, 0.16, 0.16,
                                                         0.16]
    assert all(e.cause == CloseCause.SERVER_CLOSED for e in attempts)


def test_a_completed_exchange_makes_a_session_healthy():
    def behave(conn, n):
        upgrade(conn)
        done = text({"type": "response.done", "event_id": "e",
                     "response": {"id": "r", "status": "completed", "output": []}})
        conn.sendall(session_created(n) + done + close_frame(1011, "bye"))
        hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=rs.Backoff(initial=0.02, maximum=0.16, jitter=0))
        attempts = collect(client, "client.reconnecting")
        try:
            client.connect(timeout=5)
            deadline = time.monotonic() + 10
            while len(attempts) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert client.flush(5)
        finally:
            client.close()
    assert [e.attempt for e in attempts[:3]] == [1, 1, 1]


# -- 6. slow handlers, the queue bound and close() ------------------------------------------------
def test_the_queue_never_exceeds_its_bound_and_no_handler_runs_after_close():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        burst = b"".join(text({"type": "x.flood", "n": i}) for i in range(500))
        while not srv.stopping:
            try:
                conn.sendall(burst)
            except OSError:
                return

    with RawServer(behave) as srv:
        client = client_for(srv, queue_size=64)
        closed = threading.Event()
        late = []

        def slow(event):
            if closed.is_set():
                late.append(event)
            time.sleep(0.001)

        client.on("x.flood", slow)
        client.connect(timeout=5)
        time.sleep(0.5)
        # library events from a thread that cannot wait are dropped and counted, not queued
        for i in range(200):
            client._emit({"type": "client.audio_dropped", "bytes": 0, "i": i})
        assert client.close(timeout=5) is True
        closed.set()
        time.sleep(0.2)
    stats = client.stats()
    assert not late
    assert stats["queue_high_water"] <= 64
    assert stats["events_dropped_on_close"] >= 0
    assert stats["events_dropped"] >= 1


def test_flush_waits_for_handlers_and_refuses_the_dispatcher_thread():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n) + b"".join(
            text({"type": "x.slow", "n": i}) for i in range(20)))
        hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv)
        seen, errors = [], []

        def slow(event):
            time.sleep(0.01)
            seen.append(event.n)
            if event.n == 19:
                try:
                    client.flush(1)
                except rs.DeadlockError as exc:
                    errors.append(exc)

        client.on("x.slow", slow)
        try:
            client.connect(timeout=5)
            client.wait_for("x.slow", where=lambda e: e.n == 19, timeout=5)
            assert client.flush(10) is True
            assert seen == list(range(20)) and errors
        finally:
            client.close()


# -- 7. frame-size cap ----------------------------------------------------------------------------
def test_a_frame_header_announcing_2_to_the_40_bytes_never_buffers_much():
    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        time.sleep(0.3)  # let connect() return first
        conn.sendall(header(0x1, 1 << 40))
        chunk = b"\x00" * 65536
        while not srv.stopping:
            conn.sendall(chunk)

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=False)
        errors = collect(client, "client.protocol_error")
        tracemalloc.start()
        try:
            client.connect(timeout=5)
            gone = client.wait_for("client.disconnected", timeout=10)
            _, peak = tracemalloc.get_traced_memory()
            assert client.flush(5)  # wait_for may return before the handlers ran
        finally:
            tracemalloc.stop()
            client.close()
    assert gone.cause == CloseCause.PROTOCOL_ERROR and not gone.will_reconnect
    assert len(errors) == 1 and "1099511627776" in errors[0].message
    assert errors[0].frame_length == 1 << 40
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    print(f"peak traced memory under the 2^40-byte frame: {peak / 2**20:.2f} MiB")


def test_a_fragmented_message_is_capped_as_a_whole():
    piece = b"x" * (256 * 1024)

    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        time.sleep(0.3)  # let connect() return first
        conn.sendall(frame(0x1, piece, fin=False))
        for _ in range(10):
            conn.sendall(frame(0x0, piece, fin=False))
        hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=False, max_frame_size=1024 * 1024)
        try:
            client.connect(timeout=5)
            err = client.wait_for("client.protocol_error", timeout=10)
            assert "max_frame_size is 1048576" in err.message
            assert client.wait_for("client.disconnected", timeout=10).cause == "protocol_error"
        finally:
            client.close()


def test_frames_up_to_max_frame_size_pass_and_the_cap_is_configurable():
    big = {"type": "x.big", "blob": "b" * (900 * 1024)}
    too_big = {"type": "x.big", "blob": "b" * (1100 * 1024)}

    def behave(conn, n):
        upgrade(conn)
        conn.sendall(session_created(n))
        time.sleep(0.3)  # let connect() return first
        conn.sendall(text(big) + text(too_big))
        hold(srv, conn)

    with RawServer(behave) as srv:
        client = client_for(srv, reconnect=False, max_frame_size=1024 * 1024)
        try:
            client.connect(timeout=5)
            assert len(client.wait_for("x.big", timeout=10).blob) == 900 * 1024
            assert client.wait_for("client.protocol_error", timeout=10)
        finally:
            client.close()
    with pytest.raises(ValueError):
        rs.RealtimeClient(url="ws://127.0.0.1:9/", api_key=KEY, max_frame_size=10)


# -- 11. connect(timeout) against a server that upgrades and says nothing -------------------------
def test_connect_timeout_is_kept_when_the_server_upgrades_and_stays_silent():
    with RawServer(lambda conn, n: (upgrade(conn), hold(srv, conn))) as srv:
        client = client_for(srv)
        started = time.monotonic()
        with pytest.raises(rs.TimeoutError):
            client.connect(timeout=1.0)
        took = time.monotonic() - started
        client.close()
    assert took < 1.0 + 2.0  # deadlock guard only; the overshoot is measured in benchmarks
    print(f"connect(timeout=1.0) returned after {took:.3f} s")


# -- websocket-client containment -----------------------------------------------------------------
def test_the_websocket_client_internals_the_transport_relies_on_are_still_there():
    """Fails loudly when an upgraded websocket-client changes what the transport patches."""
    from websocket import _abnf, _app, _core, _dispatcher

    version = tuple(int(p) for p in websocket.__version__.split(".")[:2])
    assert (1, 9) <= version < (1, 10), (
        f"websocket-client {websocket.__version__} is untested; check _transport.py")
    assert "dispatcher" in inspect.signature(_app.WebSocketApp.run_forever).parameters
    # its writes go through the dispatcher's buffwrite (our control-frame writer)
    assert "buffwrite" in inspect.getsource(_dispatcher.WrappedDispatcher.send)
    assert "self.dispatcher.send" in inspect.getsource(_core.WebSocket._send)
    # send_frame takes ``self.lock`` (we replace it with a no-op lock)
    assert "with self.lock" in inspect.getsource(_core.WebSocket.send_frame)
    fb = _abnf.frame_buffer(lambda n: b"", True)
    for name in ("recv", "recv_length", "recv_frame", "clear"):
        assert callable(getattr(fb, name)), name
    assert "self.recv_length()" in inspect.getsource(_abnf.frame_buffer.recv_frame)
    assert {"length", "header"} <= set(vars(fb))
    params = inspect.signature(websocket.WebSocketBadStatusException.__init__).parameters
    assert {"status_code", "resp_headers"} <= set(params)
    assert hasattr(_core.WebSocket(), "frame_buffer")

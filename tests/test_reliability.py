"""Reliability: reconnect with session replay, keepalive, backpressure, bad input, secrets."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import realtime_sync as rs
from realtime_sync.events import Event

FAST = rs.Backoff(initial=0.05, maximum=0.2, jitter=0)


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def collect(client, *types):
    got = []
    for t in types:
        client.on(t, got.append)
    return got


@pytest.mark.parametrize("fault", ["drop", 1001, 1011, 1012, 1013])
def test_an_unexpected_drop_reconnects_and_replays_the_session(make_client, server, fault):
    session = {"type": "transcription",
               "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
    client = make_client(intent="transcription", session=session, reconnect=FAST)
    got = collect(client, "client.disconnected", "client.reconnecting", "client.reconnected")
    client.connect()
    if fault == "drop":
        server.drop()
    else:
        server.close(fault, "going away")
    client.wait_for("client.reconnected", timeout=10)
    assert client.flush(5)
    kinds = [e.type for e in got]
    assert kinds[:3] == ["client.disconnected", "client.reconnecting", "client.reconnected"]
    disconnected, reconnecting = got[0], got[1]
    assert disconnected.will_reconnect is True
    assert disconnected.code == (None if fault == "drop" else fault)
    assert disconnected.reason
    assert reconnecting.attempt == 1 and reconnecting.delay >= 0
    assert disconnected.cause == reconnecting.cause == (
        "connection_lost" if fault == "drop" else "server_closed")
    assert disconnected.generation == 1 and client.session_generation == 2
    # the remembered session config was sent again on the new connection
    wait_until(lambda: len(server.received_on(-1)) >= 1)
    replayed = [e for e in server.received_on(-1) if e["type"] == "session.update"]
    assert replayed and replayed[0]["session"]["audio"]["input"]["transcription"]["model"] \
        == "whisper-1"
    assert client.connected and client.stats()["reconnects"] == 1


def test_session_expiry_reconnects(make_client, server):
    client = make_client(reconnect=FAST)
    client.connect()
    server.expire_after(0.2)
    disconnected = client.wait_for("client.disconnected", timeout=10)
    assert disconnected.code == 1001 and disconnected.error_code == "session_expired"
    client.wait_for("client.reconnected", timeout=10)


@pytest.mark.parametrize("code", [3000, 4000])
def test_never_reconnects_after_authentication_or_configuration_closes(make_client, server,
                                                                       code):
    client = make_client(reconnect=FAST)
    client.connect()
    server.close(code, "invalid_request_error")
    event = client.wait_for("client.disconnected", timeout=10)
    assert event.will_reconnect is False and event.code == code
    time.sleep(0.3)
    assert server.connection_count == 1
    assert client.state == "disconnected"
    with pytest.raises(rs.NotConnectedError):
        client.send({"type": "response.create"})


def test_close_stops_a_reconnect_loop_in_its_backoff_sleep(make_client, server):
    client = make_client(reconnect=rs.Backoff(initial=30, jitter=0))
    client.connect()
    server.drop()
    client.wait_for("client.reconnecting", timeout=10)
    started = time.monotonic()
    assert client.close(timeout=5) is True
    assert time.monotonic() - started < 5
    assert server.connection_count == 1


def test_backoff_resets_only_after_a_healthy_session(make_client, server):
    healthy = rs.Backoff(initial=0.05, maximum=0.2, jitter=0, healthy_after=0)
    client = make_client(reconnect=healthy)
    attempts = []
    client.on("client.reconnecting", lambda e: attempts.append(e.attempt))
    client.connect()
    for _ in range(3):
        server.drop()
        client.wait_for("client.reconnected", timeout=10)
    assert client.flush(5)
    assert attempts == [1, 1, 1]


def test_backoff_keeps_growing_while_sessions_die_young(make_client, server):
    client = make_client(reconnect=FAST)  # healthy_after defaults to 30 s
    attempts = []
    client.on("client.reconnecting", lambda e: attempts.append(e.attempt))
    client.connect()
    for _ in range(3):
        server.drop()
        client.wait_for("client.reconnected", timeout=10)
    assert client.flush(5)
    assert attempts == [1, 2, 3]


def test_backoff_policy_grows_caps_and_gives_up():
    b = rs.Backoff(initial=0.5, maximum=4, multiplier=2, jitter=0, max_attempts=3)
    assert [b.delay(n) for n in range(1, 6)] == [0.5, 1, 2, 4, 4]
    assert not b.gives_up(3) and b.gives_up(4)
    jittery = rs.Backoff(initial=1, jitter=0.2)
    assert all(0.8 <= jittery.delay(1) <= 1.2 for _ in range(50))
    with pytest.raises(ValueError):
        rs.Backoff(jitter=2)


def test_control_events_sent_while_reconnecting_are_flushed_in_order(make_client, server):
    client = make_client(reconnect=rs.Backoff(initial=0.5, jitter=0))
    client.connect()
    server.drop()
    client.wait_for("client.reconnecting", timeout=10)
    ids = [client.send({"type": "conversation.item.retrieve", "item_id": f"i{n}"})
           for n in range(5)]
    with pytest.raises(rs.NotConnectedError):
        client.input_audio_buffer.append(b"\x00\x00" * 100)  # audio is never queued here
    client.wait_for("client.reconnected", timeout=10)
    wait_until(lambda: len([e for e in server.received_on(-1)
                            if e["type"] == "conversation.item.retrieve"]) == 5)
    sent = [e for e in server.received_on(-1) if e["type"] == "conversation.item.retrieve"]
    assert [e["event_id"] for e in sent] == ids
    assert [e["item_id"] for e in sent] == [f"i{n}" for n in range(5)]


def test_key_and_headers_may_be_callables_evaluated_on_every_attempt(server):
    calls = {"key": 0, "headers": 0}

    def key():
        calls["key"] += 1
        return "sk-local"

    def headers():
        calls["headers"] += 1
        return {"X-Attempt": str(calls["headers"])}

    client = rs.RealtimeClient(url=server.url, api_key=key, headers=headers, reconnect=FAST)
    try:
        client.connect()
        server.drop()
        client.wait_for("client.reconnected", timeout=10)
        assert calls["headers"] == 2
        assert calls["key"] >= 2
        assert server.connections[-1].headers["X-Attempt"] == "2"
    finally:
        client.close()


def test_a_missing_pong_counts_as_a_drop(make_client, server):
    client = make_client(reconnect=FAST, ping_interval=0.3, ping_timeout=0.3)
    client.connect()
    server.stop_answering_pings()
    event = client.wait_for("client.disconnected", timeout=10)
    assert "ping" in event.reason
    client.wait_for("client.reconnected", timeout=10)


def test_a_stalled_server_is_detected_by_keepalive(make_client, server):
    client = make_client(reconnect=FAST, ping_interval=0.3, ping_timeout=0.5)
    client.connect()
    server.stall(3)
    event = client.wait_for("client.disconnected", timeout=10)
    assert "ping" in event.reason


def test_keepalive_pings_keep_an_idle_connection_open(make_client, server):
    client = make_client(ping_interval=0.2, ping_timeout=1)
    client.connect()
    time.sleep(1.2)
    assert client.connected


def test_frames_of_16_mib_are_received_whole(make_client, server):
    client = make_client()
    client.connect()
    big = "x" * (16 * 1024 * 1024)
    server.send_event({"type": "x.big", "blob": big})
    event = client.wait_for("x.big", timeout=30)
    assert len(event.blob) == len(big)


def test_a_slow_handler_causes_backpressure_not_loss(make_client, server):
    client = make_client(queue_size=32)
    got = []

    def slow(event):
        if event.n % 100 == 0:
            time.sleep(0.02)
        got.append(event.n)

    client.on("x.flood", slow)
    client.connect()
    for n in range(3000):
        server.send_event({"type": "x.flood", "n": n, "pad": "p" * 200})
    wait_until(lambda: len(got) == 3000, timeout=60)
    assert got == list(range(3000))
    stats = client.stats()
    assert stats["queue_high_water"] <= 32 + 2  # bounded (library events may overshoot)
    assert stats["events_dispatched"] >= 3000


def test_close_is_bounded_and_reports_a_thread_that_outlived_it(make_client, server, caplog):
    client = make_client()
    release = threading.Event()
    client.on("x.block", lambda e: release.wait(1.5))
    client.connect()
    server.send_event({"type": "x.block"})
    client.wait_for("x.block", timeout=5)
    time.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="realtime_sync"):
        started = time.monotonic()
        ok = client.close(timeout=0.3)
        elapsed = time.monotonic() - started
    assert ok is False
    assert elapsed < 1.2
    assert any("did not end" in r.getMessage() for r in caplog.records)
    release.set()


INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(
    st.one_of(
        st.text(max_size=60),
        st.binary(max_size=60),
        # integers within 64 bits: orjson (the ``fast`` extra) reads larger ones as floats, which
        # RFC 8259 allows and no Realtime event carries
        st.dictionaries(st.text(max_size=8), INT64, max_size=3).map(json.dumps),
        st.builds(lambda t, v: json.dumps({"type": t, "v": v}),
                  st.text(min_size=1, max_size=20).filter(lambda t: t not in (
                      "session.created", "error") and not t.startswith("client.")),
                  st.one_of(st.none(), INT64, st.text(max_size=10))),
    ),
    max_size=25,
))
def test_arbitrary_frames_never_break_parsing_and_every_well_formed_event_is_dispatched(frames):
    client = rs.RealtimeClient(url="ws://127.0.0.1:9/v1/realtime", api_key="sk-local")
    expected = []
    for f in frames:
        if isinstance(f, str):
            try:
                parsed = json.loads(f)
            except ValueError:
                continue
            if isinstance(parsed, dict) and isinstance(parsed.get("type"), str) \
                    and parsed["type"] and parsed["type"] not in ("session.created",):
                expected.append(parsed)
    got = []
    client.on("*", lambda e: got.append(e) if not e.type.startswith("client.") else None)
    client._router.start()
    try:
        for f in frames:
            client._on_frame(f, isinstance(f, bytes))  # must never raise
        wait_until(lambda: len(got) == len(expected), timeout=10)
        assert [dict(e) for e in got] == expected
    finally:
        client._router.stop(5)


def test_ephemeral_secrets_work_as_keys(server):
    server.server.api_key = None  # accept any key, as a server that minted ek_ keys would
    client = rs.RealtimeClient(url=server.url, api_key="ek_68af0123456789abcdef")
    try:
        client.connect()
        assert server.connections[-1].headers["Authorization"] == "Bearer ek_68af0123456789abcdef"
        assert "ek_68af0123456789abcdef" not in repr(client)
    finally:
        client.close()


def test_websocket_client_trace_logs_never_show_the_key(server, caplog):
    import websocket

    key = "sk-local"
    server.server.api_key = None
    secret = "sk-proj-trace-secret-000111222"
    websocket.enableTrace(False)
    logging.getLogger("websocket").setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            client = rs.RealtimeClient(url=server.url, api_key=secret)
            client.connect()
            client.close()
    finally:
        logging.getLogger("websocket").setLevel(logging.NOTSET)
    assert key  # the server accepted any key
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_tls_and_proxy_options_reach_websocket_client(monkeypatch):
    import websocket

    seen = {}

    def fake_run_forever(self, **kwargs):
        seen.update(kwargs)
        return False

    monkeypatch.setattr(websocket.WebSocketApp, "run_forever", fake_run_forever)
    client = rs.RealtimeClient(
        url="wss://realtime.example.test/v1/realtime", api_key="sk-x-123456",
        sslopt={"ca_certs": "/tmp/ca.pem", "certfile": "/tmp/c.pem"},
        http_proxy_host="proxy.local", http_proxy_port=3128, reconnect=False,
    )
    with pytest.raises(rs.ConnectError):
        client.connect(timeout=5)
    assert seen["sslopt"] == {"ca_certs": "/tmp/ca.pem", "certfile": "/tmp/c.pem"}
    assert seen["http_proxy_host"] == "proxy.local" and seen["http_proxy_port"] == 3128
    assert seen["skip_utf8_validation"] is True


def test_permessage_deflate_is_never_offered(make_client, server):
    client = make_client()
    client.connect()
    extensions = server.connections[-1].headers.get("Sec-WebSocket-Extensions")
    assert not extensions or "deflate" not in extensions


@pytest.mark.parametrize("call, error", [
    (lambda c: c.on("x", "not callable"), TypeError),
    (lambda c: c.on("", print), TypeError),
    (lambda c: c.wait_for("x", timeout=-1), ValueError),
    (lambda c: c.wait_for(5), TypeError),
    (lambda c: c.conversation.item.truncate("item", audio_end_ms=-5), ValueError),
    (lambda c: c.conversation.item.create({"no": "type"}), TypeError),
    (lambda c: c.session.update("not a dict"), TypeError),
])
def test_bad_arguments_raise_clear_errors(make_client, call, error):
    client = make_client()
    client.connect()
    with pytest.raises(error):
        call(client)


@pytest.mark.parametrize("kwargs, error", [
    ({"intent": "transcription", "model": "gpt-realtime"}, rs.ConfigurationError),
    ({"intent": "chat"}, rs.ConfigurationError),
    ({"url": "http://127.0.0.1/v1/realtime"}, rs.ConfigurationError),
    ({"reconnect": "yes"}, TypeError),
    ({"session": "transcription"}, TypeError),
    ({"marshal": 5}, TypeError),
    ({"azure_endpoint": "https://x.openai.azure.com"}, rs.ConfigurationError),
])
def test_bad_options_raise_at_construction(kwargs, error):
    kwargs.setdefault("api_key", "sk-local")
    with pytest.raises(error):
        rs.RealtimeClient(**kwargs)


def test_azure_ga_url_and_header():
    client = rs.RealtimeClient(azure_endpoint="https://res.openai.azure.com",
                               azure_deployment="my-realtime", api_key="azkey-123456")
    url, headers = client._endpoint.resolve()
    assert url == "wss://res.openai.azure.com/openai/v1/realtime?model=my-realtime"
    assert headers == ["api-key: azkey-123456"]
    assert "azkey-123456" not in repr(client)


def test_openai_default_url_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = rs.RealtimeClient(intent="transcription")
    assert client.url == "wss://api.openai.com/v1/realtime?intent=transcription"
    with pytest.raises(rs.ConfigurationError, match="OPENAI_API_KEY"):
        client.connect()


def test_event_is_a_dict_with_attribute_access():
    event = Event({"type": "x", "delta": "hi"})
    assert event.delta == "hi" and event["delta"] == "hi" and isinstance(event, dict)
    assert json.loads(json.dumps(event)) == {"type": "x", "delta": "hi"}


def test_close_from_a_handler_while_the_queue_is_full_ends_promptly(make_client, server):
    client = make_client(queue_size=2)
    results = []
    client.on("x.fill", lambda e: results.append(client.close(timeout=5))
              if e.n == 0 else None)
    client.connect()
    for n in range(50):
        server.send_event({"type": "x.fill", "n": n})
    wait_until(lambda: results, timeout=10)
    assert results == [True]


def test_close_is_bounded_when_a_send_is_stuck_because_the_server_stopped_reading(
        make_client, server):
    client = make_client()
    client.connect()
    server.stall(20)
    errors = []

    def flood():
        try:
            while True:
                client.input_audio_buffer.append(b"\x01\x00" * 24000)
        except rs.NotConnectedError as exc:
            errors.append(exc)

    sender = threading.Thread(target=flood)
    sender.start()
    time.sleep(1.0)  # the socket buffers fill up; sendall blocks
    started = time.monotonic()
    assert client.close(timeout=3) is True
    assert time.monotonic() - started < 3
    sender.join(5)
    assert not sender.is_alive() and errors


def test_a_session_update_sent_while_reconnecting_is_remembered_and_replayed(make_client,
                                                                            server):
    session = {"type": "transcription",
               "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
    client = make_client(intent="transcription", session=session,
                         reconnect=rs.Backoff(initial=0.5, jitter=0))
    client.connect()
    server.drop()
    client.wait_for("client.reconnecting", timeout=10)
    client.session.update({"type": "transcription", "audio": {"input": {"transcription": {
        "model": "gpt-4o-transcribe", "language": "fr"}}}})
    client.wait_for("client.reconnected", timeout=10)
    wait_until(lambda: client.session_config["audio"]["input"]["transcription"].get("language")
               == "fr")
    server.drop()
    client.wait_for("client.reconnected", timeout=10)
    wait_until(lambda: any(e["type"] == "session.update" for e in server.received_on(-1)))
    replayed = [e for e in server.received_on(-1) if e["type"] == "session.update"][0]
    assert replayed["session"]["audio"]["input"]["transcription"]["language"] == "fr"


def test_events_takes_one_type_as_a_string_and_refuses_a_zero_queue(make_client, server):
    client = make_client()
    client.connect()
    with pytest.raises(ValueError):
        client.events(maxsize=0)
    it = client.events(types="x.one", timeout=5)
    server.send_event({"type": "x.other"})
    server.send_event({"type": "x.one", "n": 1})
    assert next(it).n == 1


def test_websocket_clients_global_default_timeout_is_left_alone(make_client):
    import websocket

    before = websocket.getdefaulttimeout()
    client = make_client(open_timeout=7)
    client.connect()
    assert websocket.getdefaulttimeout() == before
    client.close()
    assert websocket.getdefaulttimeout() == before


def test_custom_credential_headers_are_redacted_from_logs(server, caplog):
    secret = "custom-header-secret-value-42"
    with caplog.at_level(logging.DEBUG):
        client = rs.RealtimeClient(url=server.url, api_key="sk-local",
                                   headers={"X-Api-Key": secret})
        client.connect()
        logging.getLogger("realtime_sync.client").debug("header was %s", secret)
        client.close()
    for record in caplog.records:
        assert secret not in record.getMessage()


def test_nan_is_refused_not_sent_as_null(make_client):
    client = make_client()
    client.connect()
    with pytest.raises(TypeError, match="JSON"):
        client.send({"type": "response.create", "response": {"metadata": {"x": float("nan")}}})


def test_close_breaks_off_a_handshake_the_server_never_answers():
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts TCP, never answers the upgrade
    url = f"ws://127.0.0.1:{listener.getsockname()[1]}/v1/realtime"
    client = rs.RealtimeClient(url=url, api_key="sk-local", open_timeout=30)
    errors = []

    def connect():
        try:
            client.connect(timeout=30)
        except rs.RealtimeSyncError as exc:
            errors.append(exc)

    t = threading.Thread(target=connect)
    t.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert client.close(timeout=5) is True
    assert time.monotonic() - started < 5
    t.join(10)
    listener.close()
    assert errors


def test_a_session_update_that_was_never_sent_is_not_remembered(make_client, server):
    client = make_client(session={"type": "realtime", "instructions": "base"})
    with pytest.raises(rs.NotConnectedError):
        client.session.update({"type": "realtime", "instructions": "never sent"})
    client.connect()
    updates = [e["session"] for e in server.received if e["type"] == "session.update"]
    assert updates == [{"type": "realtime", "instructions": "base"}]
    assert client.session_config["instructions"] == "base"


def test_an_update_the_server_refuses_is_not_replayed(make_client, server):
    client = make_client(session={"type": "realtime", "instructions": "base"},
                         reconnect=rs.Backoff(initial=0.05, jitter=0))
    client.connect()
    server.fail_next_session_update(message="refused")
    client.session.update({"type": "realtime", "max_output_tokens": 7})
    client.wait_for("error", timeout=5)
    server.drop()
    client.wait_for("client.reconnected", timeout=10)
    wait_until(lambda: any(e["type"] == "session.update" for e in server.received_on(-1)))
    replayed = [e["session"] for e in server.received_on(-1) if e["type"] == "session.update"]
    assert replayed == [{"type": "realtime", "instructions": "base"}]

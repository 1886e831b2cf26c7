"""RealtimeClient behaviour against the local server: lifecycle, dispatch, waits, sends."""

from __future__ import annotations

import base64
import builtins
import logging
import threading
import time

import pytest

import realtime_sync as rs
from realtime_sync.events import Event


def test_connect_blocks_until_session_created(make_client):
    client = make_client(intent="transcription")
    seen = []
    client.on("session.created", seen.append)
    client.connect(timeout=10)
    assert client.connected
    created = client.wait_for("client.connected", timeout=5)
    assert created.type == "client.connected"
    assert client.flush(5)  # wait_for can return before handlers ran; flush waits for them
    assert seen and seen[0].session["type"] == "transcription"


def test_session_config_is_sent_once_connected_and_applied(make_client, server):
    session = {"type": "transcription",
               "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
    client = make_client(intent="transcription", session=session)
    client.connect(timeout=10)  # waits for session.updated as well
    updates = [e for e in server.received if e["type"] == "session.update"]
    assert len(updates) == 1
    assert updates[0]["session"]["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"
    assert client.session_config["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"


def test_rejected_session_config_fails_connect_with_the_servers_message(make_client, server):
    server.fail_next_session_update(code="invalid_value", message="bad rate",
                                    param="session.audio.input.format.rate")
    client = make_client(intent="transcription", session={"type": "transcription"})
    with pytest.raises(rs.ConfigurationError, match="bad rate"):
        client.connect(timeout=10)
    assert client.state == "closed"


def test_handlers_run_in_registration_order_then_wildcard(make_client, server):
    client = make_client()
    calls = []
    client.on("x.test", lambda e: calls.append(("first", e.n)))
    client.on("*", lambda e: calls.append(("star", e.type)) if e.type == "x.test" else None)
    client.on("x.test", lambda e: calls.append(("second", e.n)))
    client.connect()
    server.send_event({"type": "x.test", "n": 1})
    client.wait_for("x.test", timeout=5)
    assert client.flush(5)
    assert calls == [("first", 1), ("second", 1), ("star", "x.test")]


def test_events_reach_handlers_one_at_a_time_in_arrival_order(make_client, server):
    client = make_client()
    got = []
    active = []
    overlap = []

    def slow(event):
        active.append(1)
        if len(active) > 1:
            overlap.append(event.n)
        if event.n % 50 == 0:
            time.sleep(0.005)
        got.append(event.n)
        active.pop()

    client.on("x.seq", slow)
    client.connect()
    for n in range(500):
        server.send_event({"type": "x.seq", "n": n})
    client.wait_for("x.seq", timeout=10, where=lambda e: e.n == 499)
    assert client.flush(10)
    assert got == list(range(500))
    assert overlap == []


def test_decorator_form_and_off(make_client, server):
    client = make_client()
    got = []

    @client.on("x.deco")
    def handler(event):
        got.append(event.n)

    client.connect()
    server.send_event({"type": "x.deco", "n": 1})
    client.wait_for("x.deco", timeout=5)
    assert client.flush(5)  # wait_for can return before handlers run
    assert client.off("x.deco", handler) is True
    assert client.off("x.deco", handler) is False
    server.send_event({"type": "x.deco", "n": 2})
    server.send_event({"type": "x.after"})
    client.wait_for("x.after", timeout=5)
    assert client.flush(5)
    assert got == [1]


def test_raising_handler_is_reported_and_dispatch_goes_on(make_client, server, caplog):
    client = make_client()
    got, errors = [], []

    def bad(event):
        raise RuntimeError("boom")

    client.on("x.boom", bad)
    client.on("x.boom", lambda e: got.append("after"))
    client.on("client.handler_error", errors.append)
    client.connect()
    with caplog.at_level(logging.ERROR, logger="realtime_sync"):
        server.send_event({"type": "x.boom"})
        server.send_event({"type": "x.next"})
        client.wait_for("x.next", timeout=5)
        assert client.flush(5)
    assert got == ["after"]
    assert errors and errors[0].event_type == "x.boom"
    assert "RuntimeError: boom" in errors[0].error
    assert "Traceback" in errors[0].traceback
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert client.stats()["handler_errors"] == 1


def test_strict_reraises_the_first_handler_error_in_the_callers_thread(make_client, server):
    client = make_client(strict=True)

    def bad(event):
        raise KeyError("first")

    client.on("x.boom", bad)
    client.connect()
    server.send_event({"type": "x.boom"})
    with pytest.raises(KeyError, match="first"):
        client.wait_for("never.comes", timeout=5)


def test_wait_for_times_out_with_a_builtin_compatible_timeout(make_client):
    client = make_client()
    client.connect()
    with pytest.raises(rs.TimeoutError) as info:
        client.wait_for("never.comes", timeout=0.2)
    assert isinstance(info.value, builtins.TimeoutError)


def test_wait_for_after_send_cannot_miss_a_fast_reply(make_client):
    client = make_client(intent="transcription")
    client.connect()
    client.session.update({"type": "transcription"})
    time.sleep(0.3)  # the reply has certainly arrived before we start waiting
    event = client.wait_for("session.updated", timeout=5)
    assert event.session["type"] == "transcription"


def test_wait_for_raises_server_error_for_this_threads_failed_event(make_client, server):
    client = make_client(intent="transcription")
    client.connect()
    server.fail_next_session_update(code="invalid_value", message="nope", param="session.x")
    event_id = client.session.update({"type": "transcription"})
    with pytest.raises(rs.ServerError) as info:
        client.wait_for("session.updated", timeout=5)
    assert info.value.code == "invalid_value"
    assert info.value.event_id == event_id
    assert info.value.param == "session.x"


def test_wait_for_where_filters(make_client, server):
    client = make_client()
    client.connect()
    for n in range(5):
        server.send_event({"type": "x.n", "n": n})
    event = client.wait_for("x.n", timeout=5, where=lambda e: e.n == 3)
    assert event.n == 3


def test_blocking_helpers_raise_deadlock_error_on_the_dispatcher_thread(make_client, server):
    client = make_client()
    errors = []

    def handler(event):
        try:
            client.wait_for("anything", timeout=1)
        except rs.DeadlockError as exc:
            errors.append(exc)

    client.on("x.dead", handler)
    client.connect()
    server.send_event({"type": "x.dead"})
    client.wait_for("x.dead", timeout=5)
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert errors and "dispatcher thread" in str(errors[0])


def test_events_iterator_sees_events_in_order_and_ends_on_timeout(make_client, server):
    client = make_client()
    client.connect()
    it = client.events(timeout=0.5, types=["x.it"])
    for n in range(3):
        server.send_event({"type": "x.it", "n": n})
    assert [e.n for e in it] == [0, 1, 2]


def test_events_iterator_ends_when_client_closes(make_client):
    client = make_client()
    client.connect()
    it = client.events()
    threading.Timer(0.3, client.close).start()
    got = [e.type for e in it]
    assert "client.disconnected" in got


def test_close_is_idempotent(make_client):
    client = make_client()
    client.connect()
    assert client.close() is True
    assert client.close() is True
    assert client.state == "closed"


def test_close_from_inside_a_handler(make_client, server):
    client = make_client()
    results = []
    client.on("x.close", lambda e: results.append(client.close(timeout=2)))
    client.connect()
    server.send_event({"type": "x.close"})
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results == [True]
    assert client.state == "closed"


def test_close_before_connect_starts_nothing():
    client = rs.RealtimeClient(url="ws://127.0.0.1:9/v1/realtime", api_key="sk-local")
    assert client.close() is True
    with pytest.raises(rs.NotConnectedError):
        client.connect()


def test_bad_key_raises_authentication_error(server):
    client = rs.RealtimeClient(url=server.url, api_key="sk-wrong-key-123456", reconnect=True)
    with pytest.raises(rs.AuthenticationError) as info:
        client.connect(timeout=10)
    assert "sk-wrong-key-123456" not in str(info.value)
    assert info.value.code == 3000
    assert client.state == "closed"


def test_send_before_connect_and_after_close_raises_not_connected(make_client):
    client = make_client()
    with pytest.raises(rs.NotConnectedError, match="connect"):
        client.send({"type": "response.create"})
    client.connect()
    client.close()
    with pytest.raises(rs.NotConnectedError, match="closed"):
        client.send({"type": "response.create"})


def test_connection_refused_is_a_connect_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = rs.RealtimeClient(url=f"ws://127.0.0.1:{port}/v1/realtime", api_key="sk-local")
    with pytest.raises(rs.ConnectError):
        client.connect(timeout=10)


@pytest.mark.parametrize("url", ["ws://example.com/v1/realtime", "ws://10.1.2.3:8080/v1/realtime"])
def test_a_key_over_cleartext_to_a_remote_host_is_refused_before_any_io(url):
    client = rs.RealtimeClient(url=url, api_key="sk-secret-value-123")
    with pytest.raises(rs.ConfigurationError, match="cleartext") as info:
        client.connect(timeout=1)
    assert "sk-secret-value-123" not in str(info.value)
    assert client.state == "idle"
    client.close()


def test_allow_insecure_is_the_explicit_escape_hatch():
    client = rs.RealtimeClient(url="ws://10.1.2.3:9/v1/realtime", api_key="sk-secret",
                               allow_insecure=True)
    client._endpoint.check()  # no error


def test_the_key_never_appears_in_repr_logs_or_errors(server, caplog):
    key = "sk-very-secret-key-0123456789"
    with caplog.at_level(logging.DEBUG):
        client = rs.RealtimeClient(url=server.url, api_key=key)
        assert key not in repr(client)
        with pytest.raises(rs.AuthenticationError) as info:
            client.connect(timeout=10)
        assert key not in str(info.value)
        assert key not in str(client.stats())
    for record in caplog.records:
        assert key not in record.getMessage()


def test_send_stamps_an_event_id_and_returns_it(make_client, server):
    client = make_client()
    client.connect()
    event = {"type": "response.cancel"}
    event_id = client.send(event)
    assert "event_id" not in event  # the caller's dict is not modified
    got = server.wait_received("response.cancel", timeout=5)
    assert got["event_id"] == event_id
    assert client.send({"type": "response.cancel", "event_id": "mine"}) == "mine"


@pytest.mark.parametrize(
    "event, error",
    [
        ({"no": "type"}, ValueError),
        ("response.create", TypeError),
        ({"type": "client.connected"}, ValueError),
        ({"type": "transcription_session.update", "session": {}}, ValueError),
        ({"type": "response.create", "response": {"metadata": object()}}, TypeError),
        ({"type": "response.create", "event_id": "x" * 513}, ValueError),
    ],
)
def test_bad_events_are_refused_before_anything_is_sent(make_client, server, event, error):
    client = make_client()
    client.connect()
    before = len(server.received)
    with pytest.raises(error):
        client.send(event)
    time.sleep(0.05)
    assert len(server.received) == before


def test_beta_client_event_names_the_ga_replacement(make_client):
    client = make_client()
    client.connect()
    with pytest.raises(ValueError, match="session.update"):
        client.send({"type": "transcription_session.update", "session": {}})


def test_registering_a_beta_event_name_warns_once_with_the_ga_name(make_client):
    client = make_client()
    with pytest.warns(DeprecationWarning, match="response.output_audio.delta"):
        client.on("response.audio.delta", lambda e: None)


def test_append_sends_base64_pcm(make_client, server):
    client = make_client(intent="transcription")
    client.connect()
    pcm = bytes(range(256)) * 10
    client.input_audio_buffer.append(pcm)
    got = server.wait_received("input_audio_buffer.append", timeout=5)
    assert base64.b64decode(got["audio"]) == pcm


@pytest.mark.parametrize("audio, error", [("text", TypeError), (b"\x00", ValueError),
                                          (b"", ValueError), ([1, 2], TypeError)])
def test_append_refuses_audio_that_is_not_pcm16_bytes(make_client, audio, error):
    client = make_client(intent="transcription")
    client.connect()
    with pytest.raises(error):
        client.input_audio_buffer.append(audio)


@pytest.mark.parametrize(
    "frame, problem",
    [("not json", "not JSON"), (b"\x00\x01binary", "binary"), ("[1, 2]", "not an object"),
     ('{"no_type": 1}', "no 'type'")],
)
def test_malformed_frames_are_reported_and_dispatch_goes_on(make_client, server, frame, problem):
    client = make_client()
    client.connect()
    server.send_raw(frame)
    server.send_event({"type": "x.after"})
    report = client.wait_for("client.protocol_error", timeout=5)
    assert problem in report.message
    assert client.wait_for("x.after", timeout=5)
    assert client.connected


def test_unknown_events_and_fields_pass_through_untouched(make_client, server):
    client = make_client()
    client.connect()
    server.send_event({"type": "brand.new.event", "obfuscation": "abc", "nested": {"k": [1]}})
    event = client.wait_for("brand.new.event", timeout=5)
    assert isinstance(event, Event)
    assert event.obfuscation == "abc" and event.nested == {"k": [1]}
    with pytest.raises(AttributeError, match="missing"):
        _ = event.missing


def test_eight_threads_sending_concurrently_arrive_whole(make_client, server):
    client = make_client()
    client.connect()

    def worker(t):
        for i in range(300):
            client.send({"type": "conversation.item.retrieve", "item_id": f"t{t}_{i}"})

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 20
    def count():
        return [e for e in server.received if e["type"] == "conversation.item.retrieve"]
    while len(count()) < 2400 and time.monotonic() < deadline:
        time.sleep(0.05)
    got = count()
    assert len(got) == 2400
    for t in range(8):
        ids = [e["item_id"] for e in got if e["item_id"].startswith(f"t{t}_")]
        assert ids == [f"t{t}_{i}" for i in range(300)]


def test_context_manager_connects_and_closes(server):
    with rs.RealtimeClient(url=server.url, api_key="sk-local") as client:
        assert client.connected
    assert client.state == "closed"


def test_stats_count_traffic(make_client, server):
    client = make_client()
    client.connect()
    client.send({"type": "conversation.item.retrieve", "item_id": "missing"})
    client.wait_for("error", timeout=5)  # the server answers the unknown item with an error
    server.send_event({"type": "x.s"})
    client.wait_for("x.s", timeout=5)
    stats = client.stats()
    assert stats["events_received"] >= 2 and stats["events_sent"] >= 1
    assert stats["bytes_sent"] > 0


def test_importing_realtime_sync_stays_light():
    import subprocess
    import sys

    code = ("import sys, realtime_sync\n"
            "heavy = [m for m in ('numpy', 'pyaudio', 'soxr', 'websockets', 'faster_whisper',"
            " 'openai', 'tkinter', 'PySide6') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_send_in_session_checks_and_stamps_events_as_send_does(make_client):
    client = make_client()
    client.connect(timeout=10)
    host = client.host
    event_id = host.send_in_session({"type": "input_audio_buffer.clear", "event_id": None},
                                    host.session_number)
    assert isinstance(event_id, str) and event_id != "None"  # stamped, never sent as null
    with pytest.raises(ValueError, match="library event"):
        host.send_in_session({"type": "client.connected"}, host.session_number)
    client.close()

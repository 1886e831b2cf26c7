"""rs.LiveSession (OpenAI's Live API, /v1/live/sessions) against the local server and against
small hostile Live servers written here: start/started ordering, audio format and framing,
transcript grouping (barge-in included), delegation to a Python tool, close with reason and
usage, errors, a dropped connection, bounded close(), Ctrl-C, and the SDK's schemas."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import realtime_sync as rs
from realtime_sync._features.live_transcript import PAIRING_MS, Grouping
from realtime_sync.server import RealtimeServer, ScriptedRecognizer
from tests.hostile import HostileServer, send
from tests.server_helpers import silence, tone

DATA = Path(__file__).parent / "data"
CLIENT_SCHEMA = json.loads((DATA / "live-events.schema.json").read_text())
SERVER_SCHEMA = json.loads((DATA / "live-server-events.schema.json").read_text())


def _validator(schema: Dict[str, Any]) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(schema)


def speech(ms: int = 700) -> bytes:
    """A voiced stretch and enough silence for the server's VAD to end the turn."""
    return tone(ms) + silence(800)


@pytest.fixture
def live_server():
    with RealtimeServer(recognizer=ScriptedRecognizer(["hello there"])) as srv:
        yield srv


def open_session(srv: Any, **kwargs: Any) -> rs.LiveSession:
    kwargs.setdefault("grouping", {"assistant_silence_ms": 200})
    return rs.LiveSession(url=srv.url, api_key="sk-local", **kwargs)


# -- the transcript grouping (the SDK grouper's policy) ---------------------------------------
def test_grouping_joins_a_speakers_fragments_and_closes_on_a_change_of_speaker():
    g = Grouping()
    out = g.push("e1", "user", "Hello", 0, 300, 0)
    out += g.push("e2", "user", " there", 300, 600, 10)
    assert [s.text for s in out] == ["Hello", "Hello there"]
    assert not any(s.final for s in out)
    assert g.push("e3", "assistant", "Hi!", 1500, 1800, 20) == []  # held 50 ms: paired?
    out = g.tick(20 + PAIRING_MS)
    assert [(s.speaker, s.text, s.final, s.reason) for s in out] == [
        ("user", "Hello there", True, "speaker_change"), ("assistant", "Hi!", False, None)]
    assert out[1].previous_id == out[0].id
    assert g.push("e3", "assistant", "Hi!", 1500, 1800, 30) == []  # a duplicate is ignored


def test_grouping_a_user_barge_in_ends_the_assistants_segment_at_once():
    g = Grouping()
    g.push("a1", "assistant", "Let me tell you a long story", 0, 2000, 0)
    g.tick(PAIRING_MS)
    out = g.push("u1", "user", "Stop", 1200, 1400, 60) + g.tick(60 + PAIRING_MS)
    assert [(s.speaker, s.final, s.reason) for s in out] == [
        ("assistant", True, "speaker_change"), ("user", False, None)]


def test_grouping_drops_an_assistant_backchannel_when_the_user_goes_on():
    g = Grouping()
    g.push("u1", "user", "So I was thinking", 0, 1000, 0)
    g.tick(PAIRING_MS)
    assert g.push("a1", "assistant", "mhm", 1100, 1300, 60) == []  # held: maybe a backchannel
    out = g.push("u2", "user", "about the trip", 1400, 2200, 70)
    assert [s.text for s in out] == ["So I was thinking about the trip"]
    out = g.finish(80, "manual")
    assert [(s.speaker, s.text, s.reason) for s in out] == [
        ("user", "So I was thinking about the trip", "manual")]


def test_grouping_ends_an_assistant_segment_after_silence():
    g = Grouping(assistant_silence_ms=500)
    g.push("a1", "assistant", "Done.", 0, 400, 1000.0)
    assert not any(s.final for s in g.tick(1000.0 + 400))
    out = g.tick(1000.0 + 600)
    assert [(s.text, s.reason) for s in out] == [("Done.", "inactivity")]


def test_grouping_takes_both_speakers_of_one_span_together_current_speaker_first():
    g = Grouping()
    g.push("u1", "user", "Hello", 0, 300, 0)
    g.tick(PAIRING_MS)
    assert g.push("a1", "assistant", "Hi", 1000, 1300, 100) == []
    out = g.push("u2", "user", " again", 1000, 1300, 110)  # the same span: taken at once
    assert [(s.speaker, s.text, s.final) for s in out] == [("user", "Hello again", False)]


def test_grouping_refuses_a_delta_without_a_valid_time_span():
    with pytest.raises(ValueError):
        Grouping().push("e", "user", "x", 10, 5, 0)


# -- against the local server ------------------------------------------------------------------
def test_a_turn_round_trip_with_reason_usage_and_grouped_transcript(live_server):
    finals: List[rs.LiveSegment] = []
    closed: List[rs.LiveResult] = []
    audio: List[bytes] = []
    with open_session(live_server, instructions="Be brief.", on_final=finals.append,
                      on_audio=audio.append, on_closed=closed.append) as live:
        assert live.started["model"] == "gpt-live-1.1"
        assert live.started["instructions"] == "Be brief."
        live.feed(speech())
        segs = iter(live.segments(timeout=10))
        assert next(segs).text == "hello there"
        assert next(segs).text == "You said: hello there"  # closed by its silence
        result = live.finish(timeout=10)
    assert result.reason == "close_requested"
    assert result.usage["seconds"] >= 1.0
    assert [(s.speaker, s.text) for s in result.segments] == [
        ("user", "hello there"), ("assistant", "You said: hello there")]
    assert [s.reason for s in result.segments] == ["speaker_change", "inactivity"]
    assert closed and closed[0].reason == "close_requested"
    assert [s.id for s in finals] == [s.id for s in result.segments]
    assert sum(len(a) for a in audio) > 0 and all(len(a) % 2 == 0 for a in audio)
    assert live.close_reason == "close_requested"


@pytest.mark.parametrize("fmt,bytes_per_ms", [("pcm", 48), ("pcm_16k", 32), ("pcmu", 8),
                                               ("pcma", 8)])
def test_audio_is_sent_in_the_session_format_in_frames_of_20_to_100_ms(live_server, fmt,
                                                                      bytes_per_ms):
    pytest.importorskip("soxr")
    with open_session(live_server, audio_format=fmt, frame_ms=60) as live:
        session = live_server.connections[0].session
        data = speech(600)
        for i in range(0, len(data), 1234):  # odd chunk sizes
            live.feed(data[i:i + 1234])
        for seg in live.segments(timeout=10):
            if seg.speaker == "assistant":
                break
        result = live.finish(timeout=10)
    assert result.session["audio"]["format"] == rs.live.AUDIO_FORMATS[fmt]
    frames = session.frames
    assert frames, "no audio frames reached the server"
    assert all(f == 60 * bytes_per_ms for f in frames[:-1])
    assert 20 * bytes_per_ms <= frames[-1] <= 60 * bytes_per_ms
    # the server heard the speech in that format: a user turn and the assistant's answer
    assert [s.speaker for s in result.segments] == ["user", "assistant"]


def test_audio_at_another_rate_is_resampled(live_server):
    pytest.importorskip("soxr")
    with open_session(live_server) as live:
        pcm16k = rs.audio.resample(speech(600), 24000, 16000)
        live.feed(pcm16k, rate=16000)
        result = live.finish(timeout=10)
    assert abs(live.sent_ms - 1400) <= 60
    assert result.segments[0].text == "hello there"


def test_delegation_round_trip_with_a_python_tool():
    asked: List[rs.LiveDelegation] = []
    with RealtimeServer(recognizer=ScriptedRecognizer(["what is the weather in Paris"]),
                        record=True) as srv:
        live = open_session(srv, on_delegation=asked.append)

        @live.tool
        def weather(task: rs.LiveDelegation) -> str:
            assert threading.current_thread().name == "realtime-sync-live-tools"
            return "It is sunny in Paris."

        with live:
            conn = srv.connections[0]
            live.feed(speech())
            texts = []
            for seg in live.segments(timeout=10):
                texts.append(seg.text)
                if "sunny" in seg.text:
                    break
            result = live.finish(timeout=10)
    sent = conn.received
    assert live.started is not None
    assert asked and asked[0].target == "client" and "weather" in asked[0].request
    commentary = [e for e in sent if e["type"] == "session.commentary.append"]
    assert commentary == [{"type": "session.commentary.append", "event_id": commentary[0][
        "event_id"], "content": "It is sunny in Paris.", "delegation_id": asked[0].id}]
    assert any("sunny" in s.text for s in result.segments if s.speaker == "assistant")
    assert result.segments[0].text == "what is the weather in Paris"


def test_a_tool_that_raises_sends_a_silent_note_and_reports_the_error():
    errors: List[BaseException] = []
    with RealtimeServer(recognizer=ScriptedRecognizer(["the weather please"]), record=True) as srv:
        def broken(task: rs.LiveDelegation) -> str:
            raise RuntimeError("backend down")

        with open_session(srv, tools=[broken], on_error=errors.append) as live:
            conn = srv.connections[0]
            live.feed(speech())
            deadline = time.monotonic() + 10
            while not errors and time.monotonic() < deadline:
                time.sleep(0.02)
            live.finish(timeout=10)
    sent = conn.received
    assert isinstance(errors[0], RuntimeError)
    notes = [e for e in sent if e["type"] == "session.thinking.append"]
    assert notes and "RuntimeError" in notes[0]["content"] and "backend" not in notes[0]["content"]


def test_start_raises_the_servers_error_for_an_unknown_model(live_server):
    live = open_session(live_server, model="gpt-live-0")
    with pytest.raises(rs.ServerError) as info:
        live.start(timeout=5)
    assert info.value.code == "model_not_found"
    assert live.started is None
    live.close()


def test_server_errors_reach_on_error_and_the_session_goes_on(live_server):
    errors: List[BaseException] = []
    with open_session(live_server, on_error=errors.append) as live:
        bad = live.send({"type": "session.update",
                         "session": {"audio": {"output": {"voice": "ash"}}}})
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(errors[0], rs.ServerError)
        assert errors[0].code == "immutable_parameter" and errors[0].event_id == bad
        live.mute()
        live.unmute()
        assert live.finish(timeout=5).reason == "close_requested"
    assert live.errors[0]["param"] == "session.audio"


def test_feed_before_start_raises_and_bad_options_fail_early(live_server):
    live = open_session(live_server)
    with pytest.raises(rs.NotConnectedError):
        live.feed(silence(40))
    with pytest.raises(ValueError):
        rs.LiveSession(frame_ms=10)
    with pytest.raises(rs.ConfigurationError):
        rs.LiveSession(audio_format="mp3")
    with pytest.raises(rs.ConfigurationError, match="conversation model"):
        rs.LiveSession(model="gpt-realtime-2.1")
    with pytest.raises(ValueError):
        rs.LiveSession(grouping={"assistant_silence_ms": -1})
    live.close()


# -- against hostile Live servers ---------------------------------------------------------------
def _started(ws: Any, server: HostileServer, **extra: Any) -> Dict[str, Any]:
    start = server.until(ws, "session.start")
    send(ws, {"type": "session.started", "event_id": "ev_1",
              "client_event_id": start.get("event_id"),
              "session": {"id": "sess_h", "expires_at": 2_000_000_000, "model":
                          start["session"]["model"], "status": "active", **extra}})
    return start


def hostile_url(server: HostileServer) -> str:
    return server.url.replace("/v1/realtime", "/v1/live/sessions")


def test_start_sends_session_start_first_and_blocks_until_session_started():
    order: List[str] = []

    def script(ws: Any, n: int, server: HostileServer) -> None:
        first = server.recv(ws)
        order.append(first["type"])
        time.sleep(0.3)  # start() must still be waiting
        order.append("started sent")
        send(ws, {"type": "session.started", "event_id": "e1", "session": {
            "id": "s", "expires_at": 1, "model": "gpt-live-1.1", "status": "active"}})
        event = server.recv(ws)
        order.append(event["type"])
        server.absorb(ws)

    with HostileServer(script) as server:
        live = rs.LiveSession(url=hostile_url(server), api_key="sk-x")
        live.start(timeout=5)
        order.append("start returned")
        live.feed(silence(40))
        server.wait(lambda: len(order) >= 4)
        live.close(timeout=1)
    assert order == ["session.start", "started sent", "start returned",
                     "session.input_audio.append"]


def test_a_user_barge_in_stops_playback_and_closes_the_assistant_segment():
    interrupts: List[int] = []
    segments: List[rs.LiveSegment] = []

    def script(ws: Any, n: int, server: HostileServer) -> None:
        _started(ws, server)
        for i, word in enumerate(["Once", " upon", " a", " time"]):
            send(ws, {"type": "session.output_transcript.delta", "event_id": f"a{i}",
                      "delta": word, "start_ms": 100 * i, "end_ms": 100 * (i + 1)})
            send(ws, {"type": "session.output_audio.delta",
                      "delta": base64.b64encode(tone(100)).decode()})
        send(ws, {"type": "session.input_transcript.delta", "event_id": "u1",
                  "delta": "wait", "start_ms": 350, "end_ms": 550})
        server.absorb(ws)

    with HostileServer(script) as server, \
            rs.LiveSession(url=hostile_url(server), api_key="sk-x",
                           on_interrupt=lambda: interrupts.append(1),
                           on_segment=segments.append) as live:
        deadline = time.monotonic() + 5
        while not (interrupts and any(s.final for s in segments)) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert live.barge_ins == 1
        closed = [s for s in segments if s.final]
        assert [(s.speaker, s.text, s.reason) for s in closed] == [
            ("assistant", "Once upon a time", "speaker_change")]
        assert segments[-1].speaker == "user" and not segments[-1].final
        live.close(timeout=1)


def test_every_server_event_type_of_the_sdk_union_is_parsed():
    samples = _server_event_samples()
    validator = _validator(SERVER_SCHEMA)
    for event in samples:
        validator.validate(event)
    assert sorted({e["type"] for e in samples}) == sorted(CLIENT_SCHEMA["x-server-event-types"])
    seen: List[str] = []
    problems: List[Any] = []

    def script(ws: Any, n: int, server: HostileServer) -> None:
        _started(ws, server)
        for event in samples:
            if event["type"] != "session.closed":
                send(ws, event)
        send(ws, next(e for e in samples if e["type"] == "session.closed"))
        server.absorb(ws)

    with HostileServer(script) as server:
        live = rs.LiveSession(url=hostile_url(server), api_key="sk-x",
                              on_error=lambda exc: None)
        live.on("*", lambda e: seen.append(e.type))
        live.on("client.protocol_error", problems.append)
        live.on("client.handler_error", problems.append)
        live.start(timeout=5)
        deadline = time.monotonic() + 5
        while live.close_reason is None and time.monotonic() < deadline:
            time.sleep(0.01)
        live.close(timeout=1)
    assert not problems
    assert set(CLIENT_SCHEMA["x-server-event-types"]) <= set(seen)
    assert live.close_reason == "remote_hangup" and live.usage == {"seconds": 3.0}


def test_a_dropped_connection_is_reported_and_never_replaced():
    errors: List[BaseException] = []

    def script(ws: Any, n: int, server: HostileServer) -> None:
        _started(ws, server)
        send(ws, {"type": "session.input_transcript.delta", "event_id": "u1", "delta": "hi",
                  "start_ms": 0, "end_ms": 200})
        time.sleep(0.2)
        ws.socket.close()  # no close frame, no session.closed

    with HostileServer(script) as server:
        with rs.LiveSession(url=hostile_url(server), api_key="sk-x",
                            on_error=errors.append) as live:
            deadline = time.monotonic() + 5
            while not errors and time.monotonic() < deadline:
                time.sleep(0.01)
            assert isinstance(errors[0], rs.ConnectionLostError)
            assert live.lost
            with pytest.raises(rs.NotConnectedError):
                live.feed(silence(40))
            with pytest.raises(rs.ConnectionLostError):
                live.finish(timeout=2)
            assert [(s.text, s.reason) for s in live.transcript] == [("hi", "connection_lost")]
            assert live.history() == [{"type": "message", "role": "user",
                                       "content": [{"type": "input_text", "text": "hi"}]}]
            time.sleep(0.3)
        assert server.connections == 1  # no silent new session


def test_close_is_bounded_when_the_server_never_sends_session_closed():
    def script(ws: Any, n: int, server: HostileServer) -> None:
        _started(ws, server)
        server.absorb(ws)  # reads session.close, never answers

    with HostileServer(script) as server:
        live = rs.LiveSession(url=hostile_url(server), api_key="sk-x").start(timeout=5)
        with pytest.raises(rs.TimeoutError):
            live.finish(timeout=0.5)
        began = time.monotonic()
        assert live.close(timeout=1.0) is True
        took = time.monotonic() - began
        server.wait(lambda: any(e["type"] == "session.close" for e in server.received))
    assert took < 5  # a generous deadlock guard, not a timing claim
    assert live.close_reason is None


def test_authentication_failure_is_an_authentication_error(live_server):
    live = rs.LiveSession(url=live_server.url, api_key="sk-wrong")
    with pytest.raises(rs.AuthenticationError):
        live.start(timeout=5)
    live.close()


# -- conformance with the SDK's schemas ---------------------------------------------------
def test_every_client_event_the_library_sends_validates_against_the_strict_schema():
    strict = _validator(CLIENT_SCHEMA)
    lenient = _validator(SERVER_SCHEMA)
    received: List[Dict[str, Any]] = []
    with RealtimeServer(recognizer=ScriptedRecognizer(["the weather today"]), record=True) as srv:
        live = rs.LiveSession(
            url=srv.url, api_key="sk-local", instructions="Be brief.", voice="cedar",
            audio_format="pcm_16k", input=[("user", "Hi"), ("assistant", "Hello!")],
            store=False, safety_identifier="user-1", tools=[lambda task: "Sunny."],
            grouping={"assistant_silence_ms": 200})
        live.on("*", lambda e: received.append(dict(e)))
        with live:
            conn = srv.connections[0]
            live.feed(speech())
            live.mute()
            live.unmute()
            live.append_instructions("Mention the date.")
            live.thinking("Looking it up.")
            live.commentary("Still here.")
            live.update(delegation={"type": "client", "acknowledgement_delay_ms": 200},
                        triggers=[])
            for seg in live.segments(timeout=10):
                if "Sunny" in seg.text:
                    break
            live.finish(timeout=10)
    sent = conn.received
    kinds = {e["type"] for e in sent}
    assert {"session.start", "session.input_audio.append", "session.input_audio.mute",
            "session.input_audio.unmute", "session.instructions.append",
            "session.thinking.append", "session.commentary.append", "session.update",
            "session.close"} <= kinds
    for event in sent:
        strict.validate(event)
    assert not [e for e in received if e["type"] == "error"]
    for event in received:
        if not event["type"].startswith("client."):
            lenient.validate(event)
    # the schema is strict: a field the SDK does not define fails
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        strict.validate({"type": "session.close", "reason": "bye"})


# -- Ctrl-C ------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("call", ["live.finish(timeout=60)", "list(live.segments())"])
def test_ctrl_c_ends_a_blocking_live_call(call):
    def script(ws: Any, n: int, server: HostileServer) -> None:
        _started(ws, server)
        server.absorb(ws)

    code = textwrap.dedent(f"""
    import sys, realtime_sync as rs
    live = rs.LiveSession(url=sys.argv[1], api_key="sk-x").start(timeout=10)
    print("ready", flush=True)
    try:
        {call}
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        live.close(timeout=1)
    """)
    with HostileServer(script) as server:
        proc = subprocess.Popen([sys.executable, "-c", code, hostile_url(server)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert "interrupted" in out, err
    assert proc.returncode == 0


# -- the real service (skipped without OPENAI_API_KEY) -------------------------------------
@pytest.mark.live
def test_live_service_round_trip():
    import os

    if not os.environ.get("OPENAI_API_KEY"):
        pytest.skip("needs OPENAI_API_KEY")
    import wave

    lenient = _validator(SERVER_SCHEMA)
    events: List[Dict[str, Any]] = []
    with wave.open(str(DATA / "speech" / "fox_24k_mono16.wav")) as w:
        pcm = w.readframes(w.getnframes())
    with rs.LiveSession(instructions="Repeat what the user says, briefly.") as live:
        live.on("*", lambda e: events.append(dict(e)))
        assert live.started["model"] == "gpt-live-1.1"
        for i in range(0, len(pcm), 4800):
            live.feed(pcm[i:i + 4800])
            time.sleep(0.1)
        live.feed(silence(1500))
        user = next(s for s in live.segments(timeout=30) if s.speaker == "user")
        assert "fox" in user.text.lower()
        result = live.finish(timeout=30)
    assert result.reason == "close_requested" and result.usage["seconds"] > 0
    for event in events:
        if not event["type"].startswith("client."):
            assert event["type"] in CLIENT_SCHEMA["x-server-event-types"]
            lenient.validate(event)


def _server_event_samples() -> List[Dict[str, Any]]:
    """One event of every type of the SDK's ServerEvent union (checked against its schema)."""
    resource = {"id": "sess_1", "expires_at": 2_000_000_000, "model": "gpt-live-1.1",
                "status": "active"}
    span = {"start_ms": 0, "end_ms": 10}
    b64 = base64.b64encode(silence(20)).decode()
    return [
        {"type": "session.started", "event_id": "e1", "session": resource},
        {"type": "session.updated", "event_id": "e2", "session": resource},
        {"type": "session.input_audio.muted", "event_id": "e3"},
        {"type": "session.input_audio.unmuted", "event_id": "e4"},
        {"type": "session.output_audio.fixture.playing", "event_id": "e5"},
        {"type": "session.output_audio.fixture.played", "event_id": "e6"},
        {"type": "session.instructions.appended", "event_id": "e7", **span},
        {"type": "session.thinking.appended", "event_id": "e8", **span},
        {"type": "session.commentary.appended", "event_id": "e9", **span},
        {"type": "session.input_audio.append", "audio": b64},
        {"type": "session.output_audio.delta", "delta": b64},
        {"type": "session.input_transcript.delta", "event_id": "e10", "delta": "hi", **span},
        {"type": "session.output_transcript.delta", "event_id": "e11", "delta": "yo",
         "start_ms": 20, "end_ms": 30},
        {"type": "session.delegation.created", "event_id": "e12", "offset_ms": 30,
         "delegation": {"id": "d1", "target": "responses", "type": "delegation",
                        "response_id": "resp_1"}},
        {"type": "decision.event", "event_id": "e13", "delegation_id": "d1",
         "event": {"type": "decision.completed", "decision": {
             "model": "gpt-decide", "answers": [],
             "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                       "input_tokens_details": {"cached_tokens": 0,
                                                "cache_write_tokens": 0},
                       "output_tokens_details": {"reasoning_tokens": 0}}}}},
        {"type": "decision.item.created", "event_id": "e14",
         "item": {"type": "function_call_output", "id": "it_1", "call_id": "c1",
                  "output": "ok"}},
        {"type": "decision.item.deleted", "event_id": "e15", "item_id": "i1"},
        {"type": "response.event", "event_id": "e16", "delegation_id": "d1",
         "event": {"type": "response.created"}},
        {"type": "session.usage.updated", "event_id": "e17", "usage": {"seconds": 2.0}},
        {"type": "session.closed", "event_id": "e18", "reason": "remote_hangup",
         "session": resource, "usage": {"seconds": 3.0}},
        {"type": "error", "event_id": "e19", "error": {
            "type": "invalid_request_error", "code": "unknown_parameter", "message": "x"}},
        {"type": "info", "event_id": "e20", "code": "data_channel_permissions",
         "message": "applied"},
        {"type": "transport.dtmf.received", "event_id": "e21", "event": "1"},
        {"type": "transport.dtmf.send", "event_id": "e22", "event": "2"},
        {"type": "transport.dtmf.sent", "event_id": "e23", "event": "3"},
        {"type": "transport.ringing", "event_id": "e24", "session_id": "sess_1"},
        {"type": "transport.answered", "event_id": "e25", "session_id": "sess_1"},
        {"type": "transport.failed", "event_id": "e26", "session_id": "sess_1",
         "error": {"type": "call_error", "code": "busy", "message": "busy"}},
    ]


def test_the_live_chat_example_runs_offline_with_a_wav_file():
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(root / "examples" / "live_chat.py"), "--local", "--wav",
         str(DATA / "speech" / "fox_24k_mono16.wav")],
        capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "user: what is the weather like",
        "assistant: One moment, let me check. It is sunny and 21 degrees (asked: 'what is the "
        "weather like').",
        "closed: close_requested, 4.0 s billed"]


def test_captions_writers_take_live_segments(tmp_path):
    segments = [rs.LiveSegment("seg_0", None, "user", "Hello there", 0, 900, True,
                               "speaker_change"),
                rs.LiveSegment("seg_1", "seg_0", "assistant", "Hi!", 1200, 1800, True,
                               "inactivity")]
    srt = rs.captions.render(segments, "srt")
    # two speakers: never merged; the short first cue is lengthened to 1 s (issue 22, item 10)
    assert "00:00:00,000 --> 00:00:01,000\nHello there" in srt
    path = tmp_path / "live.jsonl"
    with rs.captions.open_writer(str(path)) as out:
        for seg in segments:
            out.write(seg)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["item_id"], r["speaker"], r["text"]) for r in records] == [
        ("seg_0", "user", "Hello there"), ("seg_1", "assistant", "Hi!")]


def test_callbacks_and_handlers_run_through_marshal_on_the_ui_thread(live_server):
    from realtime_sync.gui import QueueMarshal

    marshal = QueueMarshal()
    threads: List[str] = []
    texts: List[str] = []

    def on_final(seg: rs.LiveSegment) -> None:
        threads.append(threading.current_thread().name)
        texts.append(seg.text)

    live = open_session(live_server, marshal=marshal, on_final=on_final)
    live.on("session.started", lambda e: threads.append(threading.current_thread().name))
    with live:
        live.feed(speech())
        deadline = time.monotonic() + 10
        while len(texts) < 2 and time.monotonic() < deadline:
            marshal.poll(timeout=0.05)  # the "UI loop"
        live.close()
    marshal.close()
    assert texts == ["hello there", "You said: hello there"]
    assert set(threads) == {threading.current_thread().name}


def test_malformed_server_events_are_reported_not_fatal():
    problems: List[Any] = []

    def script(ws: Any, n: int, server: HostileServer) -> None:
        _started(ws, server)
        ws.send("not json")
        send(ws, {"type": "session.input_transcript.delta", "event_id": "u1", "delta": "x",
                  "start_ms": 50, "end_ms": 10})  # end before start
        send(ws, {"type": "session.output_audio.delta", "delta": "%%%"})
        send(ws, {"type": "session.delegation.created", "event_id": "d", "offset_ms": 0})
        send(ws, {"type": "session.input_transcript.delta", "event_id": "u2", "delta": "fine",
                  "start_ms": 60, "end_ms": 90})
        server.absorb(ws)

    with HostileServer(script) as server:
        live = rs.LiveSession(url=hostile_url(server), api_key="sk-x")
        live.on("client.protocol_error", problems.append)
        with live:
            deadline = time.monotonic() + 5
            while not live.transcript and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [s.text for s in live.transcript] == ["fine"]
            assert len(problems) == 4
            live.close(timeout=1)


def test_an_expired_session_reports_its_reason_and_feed_then_raises():
    closed: List[rs.LiveResult] = []
    with RealtimeServer(session_duration=0.5) as srv, \
            open_session(srv, on_closed=closed.append) as live:
        deadline = time.monotonic() + 5
        while not closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert closed[0].reason == "expired" and live.close_reason == "expired"
        assert live.lost is None  # an end the server announced is no drop
        assert live.finish(timeout=2).reason == "expired"
        with pytest.raises(rs.NotConnectedError, match="expired"):
            live.feed(silence(40))

"""The local server's Live API (/v1/live/sessions), driven by a raw WebSocket client: it
refuses what the service refuses, with the Live error shape, and its events follow the SDK's
server-event schema."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import websocket

from realtime_sync.server import LiveScript, RealtimeServer, ScriptedRecognizer
from tests.server_helpers import silence, tone

SERVER_SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "live-server-events.schema.json").read_text())


class LivePeer:
    """A bare Live client: sends what a test says, returns what the server answers."""

    def __init__(self, srv: RealtimeServer, key: str = "sk-local") -> None:
        url = srv.url.replace("/v1/realtime", "/v1/live/sessions")
        self.ws = websocket.create_connection(url, header=[f"Authorization: Bearer {key}"],
                                              timeout=5)
        self.seen: List[Dict[str, Any]] = []

    def send(self, event: Dict[str, Any]) -> None:
        self.ws.send(json.dumps(event))

    def recv(self, timeout: float = 5.0) -> Dict[str, Any]:
        self.ws.settimeout(timeout)
        event = json.loads(self.ws.recv())
        self.seen.append(event)
        return event  # type: ignore[no-any-return]

    def until(self, type_: str, timeout: float = 5.0) -> Dict[str, Any]:
        while True:
            event = self.recv(timeout)
            if event["type"] == type_:
                return event

    def start(self, **session: Any) -> Dict[str, Any]:
        session.setdefault("model", "gpt-live-1.1")
        self.send({"type": "session.start", "event_id": "start_1", "session": session})
        return self.recv()

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def srv():
    with RealtimeServer(recognizer=ScriptedRecognizer(["hello"]),
                        live=LiveScript(replies=["Hi there."])) as server:
        yield server


@pytest.fixture
def peer(srv):
    p = LivePeer(srv)
    yield p
    p.close()


def _error(event: Dict[str, Any], code: str, client_event_id: Optional[str]) -> None:
    assert event["type"] == "error", event
    assert event["error"]["code"] == code, event
    assert event["error"]["client_event_id"] == client_event_id
    assert event["error"]["type"] == "invalid_request_error"


def test_session_start_is_answered_by_session_started_with_the_resolved_config(peer):
    started = peer.start(instructions="Be brief.", audio={"output": {"voice": "cedar"}})
    assert started["type"] == "session.started"
    assert started["client_event_id"] == "start_1"
    session = started["session"]
    assert session["model"] == "gpt-live-1.1" and session["status"] == "active"
    assert session["audio"] == {"format": {"type": "audio/pcm", "rate": 24000},
                                "output": {"voice": "cedar"}}


def test_audio_before_session_started_is_refused(peer):
    peer.send({"type": "session.input_audio.append", "event_id": "a1",
               "audio": base64.b64encode(silence(40)).decode()})
    _error(peer.recv(), "session_not_started", "a1")


def test_a_second_session_start_is_refused(peer):
    assert peer.start()["type"] == "session.started"
    peer.send({"type": "session.start", "event_id": "again",
               "session": {"model": "gpt-live-1.1"}})
    _error(peer.recv(), "session_already_started", "again")


def test_an_unknown_model_is_refused(peer):
    event = peer.start(model="gpt-realtime")
    _error(event, "model_not_found", "start_1")
    assert event["error"]["param"] == "session.model"
    assert peer.start()["type"] == "session.started"  # the socket is still usable


@pytest.mark.parametrize("change,param", [
    ({"audio": {"output": {"voice": "ash"}}}, "session.audio"),
    ({"audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}, "session.audio"),
    ({"model": "gpt-live-1"}, "session.model"),
    ({"instructions": "Be loud."}, "session.instructions"),
])
def test_immutable_settings_cannot_change_after_the_start(peer, change, param):
    peer.start()
    peer.send({"type": "session.update", "event_id": "u1", "session": change})
    event = peer.recv()
    _error(event, "immutable_parameter", "u1")
    assert event["error"]["param"] == param


def test_the_delegation_type_cannot_change_but_its_settings_can(peer):
    peer.start(delegation={"type": "client"})
    peer.send({"type": "session.update", "event_id": "u1", "session": {
        "delegation": {"type": "responses", "responses": {"model": "gpt-5"}}}})
    _error(peer.recv(), "invalid_value", "u1")
    peer.send({"type": "session.update", "event_id": "u2", "session": {
        "delegation": {"type": "client", "acknowledgement_delay_ms": 300}}})
    updated = peer.recv()
    assert updated["type"] == "session.updated"
    assert updated["session"]["delegation"] == {"type": "client", "acknowledgement_delay_ms": 300}


@pytest.mark.parametrize("event,code", [
    ({"type": "session.close", "reason": "bye"}, "unknown_parameter"),
    ({"type": "session.commentary.append", "content": "x"}, "missing_required_parameter"),
    ({"type": "session.thinking.append", "content": "", "delegation_id": None}, "invalid_value"),
    ({"type": "conversation.item.create", "item": {}}, "invalid_value"),
    ({"type": "session.input_audio.append", "audio": "%%%"}, "invalid_value"),
])
def test_malformed_events_are_refused_with_the_live_error_shape(peer, event, code):
    peer.start()
    peer.send({**event, "event_id": "bad"})
    _error(peer.recv(), code, "bad")


def test_a_formats_rate_is_checked_at_the_start(peer):
    event = peer.start(audio={"format": {"type": "audio/pcm", "rate": 44100}})
    _error(event, "invalid_value", "start_1")


def test_a_turn_mute_and_close_follow_the_sdk_schema(srv, peer):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(SERVER_SCHEMA)
    peer.start()
    audio = tone(600) + silence(900)
    for i in range(0, len(audio), 40 * 48):
        peer.send({"type": "session.input_audio.append",
                   "audio": base64.b64encode(audio[i:i + 40 * 48]).decode()})
    user = peer.until("session.input_transcript.delta")
    assert user["delta"] == "hello"
    peer.until("session.output_audio.delta")
    peer.until("session.usage.updated")
    peer.send({"type": "session.input_audio.mute", "event_id": "m"})
    assert peer.until("session.input_audio.muted")["client_event_id"] == "m"
    peer.send({"type": "session.close", "event_id": "c"})
    closed = peer.until("session.closed")
    assert closed["reason"] == "close_requested" and closed["usage"]["seconds"] >= 1.0
    assert closed["client_event_id"] == "c"
    said = "".join(e["delta"] for e in peer.seen if e["type"] == "session.output_transcript.delta")
    assert said == "Hi there."
    starts = [e["start_ms"] for e in peer.seen if e["type"].endswith("_transcript.delta")]
    assert starts == sorted(starts)  # one monotonic timeline
    for event in peer.seen:
        validator.validate(event)


def test_errors_follow_the_sdk_schema(peer):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(SERVER_SCHEMA)
    peer.send({"type": "session.close", "event_id": "x"})
    validator.validate(peer.recv())

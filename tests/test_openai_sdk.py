"""The official ``openai`` SDK, a real client nobody here wrote, against the local server.

The SDK connects (``websocket_base_url`` pointed at the local server), drives a transcription
session (manual commit, then server VAD) and a conversation (text, audio and function-call
responses, an error), and every event the server sends is parsed with the SDK's own pydantic
models, through a discriminated ``TypeAdapter`` so a failure names the event and the field.
Skipped when ``openai`` (or its ``websockets`` extra) is missing, except under CI.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable, Dict, List, Optional

import pytest
from conftest import skip_or_fail
from server_helpers import silence, tone

from realtime_sync.server import Audio, FunctionCall, ScriptedRecognizer, ScriptedResponder, Text
from realtime_sync.testing import FakeRealtimeServer

pytestmark = [
    pytest.mark.timeout(60),
    # the SDK (3.54) calls websockets.sync.client.connect() the pre-17 way; not our concern
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager"),
]

try:
    import openai  # noqa: F401
    import pydantic
    import websockets.sync.client  # noqa: F401 - the SDK's realtime extra
    from openai import OpenAI
    from openai.types.realtime import RealtimeServerEvent
except ImportError as exc:  # pragma: no cover - depends on the environment
    OpenAI = None  # type: ignore[assignment,misc]
    _missing: Optional[str] = f"openai SDK not importable: {exc}"
else:
    _missing = None


@pytest.fixture(scope="module")
def server_events() -> Any:
    """A TypeAdapter over the SDK's GA server-event union, discriminated on ``type``."""
    if _missing:
        skip_or_fail(_missing)
    from typing import get_args

    from typing_extensions import Annotated

    inner = get_args(RealtimeServerEvent)[0]  # Annotated[Union[...], PropertyInfo(...)]
    return pydantic.TypeAdapter(Annotated[inner, pydantic.Field(discriminator="type")])


def sdk_problem(adapter: Any, raw: Any) -> Optional[str]:
    """None when the SDK's models accept the raw event, else "<type>: <field>: <why>"."""
    try:
        adapter.validate_json(raw)
    except pydantic.ValidationError as exc:
        type_ = json.loads(raw).get("type")
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return f"SDK models reject server event {type_!r}: {fields}"
    return None


class Recorder:
    """Reads raw frames from an SDK connection and checks each against the SDK's models."""

    def __init__(self, conn: Any, adapter: Any) -> None:
        self.conn = conn
        self.adapter = adapter
        self.types: List[str] = []
        self.events: List[Dict[str, Any]] = []

    def next(self) -> Dict[str, Any]:
        raw = self.conn.recv_bytes()
        event = json.loads(raw)
        type_ = event.get("type")
        problem = sdk_problem(self.adapter, raw)
        if problem:
            pytest.fail(problem)
        parsed = self.conn.parse_event(raw)  # the SDK's own (unchecked) parse
        assert parsed.type == type_
        self.types.append(type_)
        self.events.append(event)
        return event

    def until(self, done: Callable[[Dict[str, Any]], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, f"not reached; got {self.types}"
            if done(self.next()):
                return


def sdk_client(fake: FakeRealtimeServer) -> Any:
    base = fake.url.rsplit("/realtime", 1)[0]  # ws://127.0.0.1:PORT/v1
    return OpenAI(api_key="sk-local", websocket_base_url=base, base_url="http://127.0.0.1:9/v1")


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def test_sdk_transcription_session_manual_commit(server_events):
    recognizer = ScriptedRecognizer(["hello from the SDK"])
    with FakeRealtimeServer(recognizer=recognizer) as fake:
        client = sdk_client(fake)
        with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            rec = Recorder(conn, server_events)
            assert rec.next()["type"] == "session.created"
            conn.session.update(session={
                "type": "transcription",
                "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "noise_reduction": {"type": "near_field"},
                    "turn_detection": None,
                }},
                "include": ["item.input_audio_transcription.logprobs"],
            })
            rec.until(lambda e: e["type"] == "session.updated")
            for _ in range(3):
                conn.input_audio_buffer.append(audio=b64(tone(100)))
            conn.input_audio_buffer.commit()
            rec.until(lambda e: e["type"].endswith("input_audio_transcription.completed"))
            conn.input_audio_buffer.clear()
            rec.until(lambda e: e["type"] == "input_audio_buffer.cleared")
        received = fake.received_types()
    completed = rec.events[rec.types.index(
        "conversation.item.input_audio_transcription.completed")]
    assert completed["transcript"] == "hello from the SDK"
    assert "conversation.item.input_audio_transcription.delta" in rec.types
    assert {"input_audio_buffer.committed", "conversation.item.added",
            "conversation.item.done"} <= set(rec.types)
    assert received[:2] == ["session.update", "input_audio_buffer.append"]
    assert "input_audio_buffer.commit" in received


def test_a_bad_event_is_reported_by_event_and_field(server_events):
    bad = json.dumps({"type": "conversation.item.input_audio_transcription.completed",
                      "event_id": "e1", "item_id": "item_1", "content_index": 0,
                      "transcript": 42})
    problem = sdk_problem(server_events, bad)
    assert problem is not None
    assert "conversation.item.input_audio_transcription.completed" in problem
    assert "transcript" in problem
    assert sdk_problem(server_events, json.dumps({"type": "response.audio.delta"}))


def test_sdk_transcription_with_server_vad(server_events):
    with FakeRealtimeServer(recognizer=ScriptedRecognizer(["one turn"])) as fake:
        client = sdk_client(fake)
        with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            rec = Recorder(conn, server_events)
            rec.next()
            conn.session.update(session={
                "type": "transcription",
                "audio": {"input": {
                    "transcription": {"model": "gpt-4o-mini-transcribe"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                }},
            })
            rec.until(lambda e: e["type"] == "session.updated")
            audio = silence(200) + tone(600) + silence(900)
            step = 4800  # 100 ms
            for i in range(0, len(audio), step):
                conn.input_audio_buffer.append(audio=b64(audio[i:i + step]))
            rec.until(lambda e: e["type"].endswith("input_audio_transcription.completed"))
    assert {"input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed"} <= set(rec.types)
    assert rec.events[-1]["transcript"] == "one turn"


def test_sdk_conversation_text_audio_function_call_and_error(server_events):
    responder = ScriptedResponder([
        Text("Hi there."),
        Audio(tone(300), "a beep"),
        [FunctionCall("lookup", '{"q": "weather"}', call_id="call_1")],
    ])
    with FakeRealtimeServer(responder=responder) as fake:
        client = sdk_client(fake)
        with client.realtime.connect(model="gpt-realtime") as conn:
            rec = Recorder(conn, server_events)
            assert rec.next()["type"] == "session.created"
            conn.session.update(session={
                "type": "realtime", "instructions": "Be brief.",
                "tools": [{"type": "function", "name": "lookup", "description": "Look up.",
                           "parameters": {"type": "object",
                                          "properties": {"q": {"type": "string"}}}}],
            })
            rec.until(lambda e: e["type"] == "session.updated")
            for _ in range(3):
                conn.conversation.item.create(item={
                    "type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "hello"}]})
                conn.response.create()
                rec.until(lambda e: e["type"] == "response.done")
            conn.conversation.item.delete(item_id="item_does_not_exist")
            rec.until(lambda e: e["type"] == "error")
    types = set(rec.types)
    assert {"response.output_text.delta", "response.output_audio.delta",
            "response.output_audio_transcript.delta", "response.function_call_arguments.done",
            "response.content_part.added", "response.output_item.done"} <= types
    error = rec.events[-1]["error"]
    assert error["message"]

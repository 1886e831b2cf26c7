"""Every event the local server emits validates against the GA server-event schemas.

A broad scenario (transcription with VAD, logprobs, failures, streaming, out-of-order
completions, every error path, expiry; conversations with text, audio, function calls,
cancellation and item operations) is recorded, then each event is checked against the
per-type schema found through ``x-event-index.ga.server`` of the lenient schema file.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from server_helpers import Peer, configure, noise, silence, tone

from realtime_sync.server import (
    Audio,
    FunctionCall,
    RealtimeServer,
    ScriptedRecognizer,
    ScriptedResponder,
    Text,
    TranscriptionError,
)

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

pytestmark = pytest.mark.timeout(120)

SCHEMA = Path(__file__).parent / "data" / "realtime-events.lenient.schema.json"


class Validators:
    def __init__(self) -> None:
        self.doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
        self.index: Dict[str, str] = self.doc["x-event-index"]["ga"]["server"]
        resource = referencing.Resource.from_contents(self.doc)
        self.registry = referencing.Registry().with_resource(self.doc["$id"], resource)
        self._cache: Dict[str, Any] = {}

    def problems(self, event: Dict[str, Any]) -> List[str]:
        pointer = self.index.get(event.get("type", ""))
        if pointer is None:
            return [f"{event.get('type')!r} is not a GA server event type"]
        validator = self._cache.get(pointer)
        if validator is None:
            validator = jsonschema.Draft202012Validator({"$ref": self.doc["$id"] + pointer},
                                                        registry=self.registry)
            self._cache[pointer] = validator
        return [f"{event['type']}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(event)]


@pytest.fixture(scope="module")
def validators() -> Validators:
    return Validators()


def test_validator_catches_bad_events(validators):
    """The check itself can fail: broken events are reported."""
    assert validators.problems({"type": "response.audio.delta", "event_id": "e"})  # beta name
    assert validators.problems({"type": "conversation.item.input_audio_transcription.completed",
                                "event_id": "e", "item_id": "i", "content_index": 0,
                                "transcript": "x"})  # usage is required
    assert validators.problems({"type": "error", "event_id": "e", "error": {"type": "x"}})
    assert not validators.problems({"type": "input_audio_buffer.cleared", "event_id": "e"})


def _transcription_scenario(events: List[Dict[str, Any]]) -> None:
    rec = ScriptedRecognizer(["hello world", TranscriptionError("bad audio", code="bad_audio"),
                              "third", "fourth"], delays={2: 0.3})
    with RealtimeServer(recognizer=rec) as srv:
        p = Peer(srv.url)
        p.recv()
        configure(p, turn_detection={"type": "server_vad", "silence_duration_ms": 300},
                  include=["item.input_audio_transcription.logprobs"])
        p.send({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"noise_reduction": {"type": "near_field"},
                      "transcription": {"model": "gpt-4o-transcribe", "language": "en",
                                        "prompt": "names"}}}}})
        p.expect("session.updated")
        # two VAD turns: the first transcribes, the second fails
        p.append(silence(300) + tone(500) + silence(500) + noise(400) + silence(500), 50)
        for end in ("failed", "completed"):  # either may come first
            if not any(e["type"].endswith("transcription." + end) for e in p.events):
                p.until("conversation.item.input_audio_transcription." + end)
        # manual commits (VAD off): the slow third completes after the fourth
        p.send({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}}}})
        p.expect("session.updated")
        configure(p, turn_detection=None)
        for _ in range(2):
            p.append(silence(150))
            p.send({"type": "input_audio_buffer.commit"})
        p.until("conversation.item.input_audio_transcription.completed",
                where=lambda e: e["transcript"] == "third")
        # every error path of a transcription session
        p.send({"type": "input_audio_buffer.commit", "event_id": "c"})
        p.ws.send("nope")
        p.ws.send_binary(b"\x00")
        p.send({"type": "what.ever"})
        p.send({"type": "input_audio_buffer.append", "audio": "%%%"})
        p.send({"type": "session.update", "session": {"type": "transcription", "x": 1}})
        p.send({"type": "session.update", "session": {"type": "realtime"}})
        p.send({"type": "response.create"})
        p.append(silence(100))
        p.send({"type": "input_audio_buffer.clear"})
        p.until("input_audio_buffer.cleared")
        srv.connections[0].expire_after(0)
        p.until_closed()
        events += p.events
        for headers, key, intent in [([], "sk-bad", "transcription"),
                                     (["OpenAI-Beta: realtime=v1"], "sk-local", "transcription"),
                                     ([], "sk-local", None)]:
            q = Peer(srv.url, headers=headers, key=key, intent=intent)
            q.until_closed()
            events += q.events

    streaming = ScriptedRecognizer(["streamed words arrive early"], streaming=True)
    with RealtimeServer(recognizer=streaming) as srv:
        p = Peer(srv.url)
        p.recv()
        configure(p, model="gpt-live-transcribe",
                  include=["item.input_audio_transcription.logprobs"])
        p.append(silence(500))
        p.until("conversation.item.input_audio_transcription.delta")
        p.send({"type": "input_audio_buffer.commit"})
        p.until("conversation.item.input_audio_transcription.completed")
        events += p.events
        p.close()


def _conversation_scenario(events: List[Dict[str, Any]]) -> None:
    responder = ScriptedResponder([
        Text("Hello there, friend"),
        Audio(tone(350), "a tone for you"),
        [FunctionCall("lookup", '{"q": "weather in Paris"}'), Text("calling a tool")],
        Text("this one will be cancelled before it is finished " * 3),
    ])
    with RealtimeServer(responder=responder) as srv:
        p = Peer(srv.url, intent=None, model="gpt-realtime")
        p.recv()
        p.send({"type": "session.update", "session": {
            "type": "realtime", "instructions": "be nice", "output_modalities": ["text"],
            "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
            "audio": {"input": {"transcription": {"model": "whisper-1"},
                                "turn_detection": None},
                      "output": {"voice": "cedar", "speed": 1.2}},
            "max_output_tokens": 1000}})
        p.expect("session.updated")
        p.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "hi"},
                {"type": "input_audio", "audio": base64.b64encode(silence(100)).decode()}]}})
        p.until("conversation.item.done")
        p.send({"type": "conversation.item.create", "previous_item_id": "root", "item": {
            "type": "message", "role": "system", "content": [
                {"type": "input_text", "text": "context"}]}})
        p.until("conversation.item.done")
        for _ in range(3):
            p.send({"type": "response.create"})
            p.until("rate_limits.updated")
        p.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": "call_x", "output": "sunny"}})
        p.until("conversation.item.done")
        # a slow response, cancelled
        responder.delta_interval = 0.05
        p.send({"type": "response.create"})
        p.until("response.output_text.delta")
        p.send({"type": "response.create"})  # already active -> error
        p.send({"type": "response.cancel"})
        p.until("rate_limits.updated")
        responder.delta_interval = 0.0
        p.send({"type": "response.cancel"})  # nothing active -> error
        p.until("error", where=lambda e: e["error"]["code"] == "response_cancel_not_active")
        # out of band, audio, via the echo fallback
        p.send({"type": "response.create", "response": {
            "conversation": "none", "output_modalities": ["audio"], "metadata": {"k": "v"}}})
        done = p.until("rate_limits.updated")
        audio_items = [e["item"]["id"] for e in p.events
                       if e["type"] == "conversation.item.done"
                       and e["item"].get("content", [{}])[0].get("type") == "output_audio"]
        assert done
        # item operations
        p.send({"type": "conversation.item.retrieve", "item_id": audio_items[0]})
        p.send({"type": "conversation.item.truncate", "item_id": audio_items[0],
                "content_index": 0, "audio_end_ms": 100})
        p.send({"type": "conversation.item.delete", "item_id": audio_items[0]})
        p.send({"type": "conversation.item.delete", "item_id": audio_items[0]})
        p.send({"type": "conversation.item.create", "item": {"type": "bogus"}})
        p.until("error", where=lambda e: e["error"]["param"] == "item.type")
        # a user audio turn with transcription and a VAD-made response
        p.send({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"turn_detection": {"type": "server_vad"}}}}})
        p.expect("session.updated")
        p.append(silence(300) + tone(400) + silence(400), 50)
        p.until("response.done")
        if not any(e["type"].endswith("transcription.completed") for e in p.events):
            p.until("conversation.item.input_audio_transcription.completed")
        events += p.events
        p.close()


def test_every_emitted_event_validates(validators):
    events: List[Dict[str, Any]] = []
    _transcription_scenario(events)
    _conversation_scenario(events)
    problems = [p for e in events for p in validators.problems(e)]
    assert problems == []
    seen = {e["type"] for e in events}
    expected = {
        "session.created", "session.updated", "error",
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed", "input_audio_buffer.cleared",
        "conversation.item.added", "conversation.item.done", "conversation.item.retrieved",
        "conversation.item.truncated", "conversation.item.deleted",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "response.created", "response.done", "response.output_item.added",
        "response.output_item.done", "response.content_part.added",
        "response.content_part.done", "response.output_text.delta",
        "response.output_text.done", "response.output_audio.delta",
        "response.output_audio.done", "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "rate_limits.updated",
    }
    assert expected <= seen, sorted(expected - seen)
    codes = {e["error"]["code"] for e in events if e["type"] == "error"}
    assert {"invalid_json", "invalid_event", "invalid_value", "unknown_parameter",
            "input_audio_buffer_commit_empty", "session_expired", "invalid_api_key",
            "beta_api_shape_disabled", "missing_model",
            "conversation_already_has_active_response", "response_cancel_not_active",
            "item_not_found"} <= codes
    statuses = {e["response"]["status"] for e in events if e["type"] == "response.done"}
    assert statuses == {"completed", "cancelled"}


def test_emitted_events_parse_with_the_official_sdk_models():
    """A second, independent check: the ``openai`` SDK's GA pydantic models accept them."""
    openai_rt = pytest.importorskip("openai.types.realtime")
    from typing import Annotated, get_args

    from pydantic import Field, TypeAdapter

    adapter = TypeAdapter(Annotated[get_args(openai_rt.RealtimeServerEvent)[0],
                                    Field(discriminator="type")])
    events: List[Dict[str, Any]] = []
    _transcription_scenario(events)
    _conversation_scenario(events)
    failures = []
    for event in events:
        try:
            adapter.validate_python(event)
        except Exception as exc:  # pydantic.ValidationError
            failures.append(f"{event['type']}: {str(exc).splitlines()[:3]}")
    assert failures == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # openai's use of websockets 17
def test_official_sdk_client_talks_to_the_server():
    openai = pytest.importorskip("openai")
    pytest.importorskip("websockets")
    rec = ScriptedRecognizer(["sdk works"])
    with RealtimeServer(recognizer=rec, responder=ScriptedResponder([Text("hi sdk")])) as srv:
        client = openai.OpenAI(api_key="sk-local",
                               websocket_base_url=f"ws://127.0.0.1:{srv.port}/v1")
        with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            assert conn.recv().type == "session.created"
            conn.session.update(session={"type": "transcription", "audio": {"input": {
                "transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": None}}})
            assert conn.recv().type == "session.updated"
            conn.input_audio_buffer.append(audio=base64.b64encode(silence(200)).decode())
            conn.input_audio_buffer.commit()
            for event in conn:
                if event.type.endswith("transcription.completed"):
                    assert event.transcript == "sdk works"
                    break
        with client.realtime.connect(model="gpt-realtime") as conn:
            assert conn.recv().type == "session.created"
            conn.response.create()
            for event in conn:
                if event.type == "response.done":
                    assert event.response.status == "completed"
                    assert event.response.output[0].content[0].text == "hi sdk"
                    break

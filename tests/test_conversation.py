"""Conversation state (rs.Conversation), text turns (send_text, ask) against the local server.

Every client event these features build is checked against the strict GA client-event schema
(``x-event-index.ga.client``) with no unknown fields at any level (:class:`ClientSchema`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import realtime_sync as rs
from realtime_sync.server import Audio, ScriptedRecognizer, ScriptedResponder, Text, tone
from realtime_sync.testing import FakeRealtimeServer

jsonschema = pytest.importorskip("jsonschema")

pytestmark = pytest.mark.timeout(60)

SCHEMA = Path(__file__).parent / "data" / "realtime-events.schema.json"
TEXT_ONLY = {"type": "realtime", "output_modalities": ["text"],
             "audio": {"input": {"turn_detection": None}}}


class ClientSchema:
    """Validates client events against the strict GA schema, and finds unknown fields."""

    def __init__(self) -> None:
        self.doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
        self.index: Dict[str, str] = self.doc["x-event-index"]["ga"]["client"]
        self.defs = self.doc["$defs"]

    def _root(self, schema: Dict[str, Any]) -> Dict[str, Any]:
        return dict(schema, **{"$defs": self.defs})

    def _resolve(self, schema: Dict[str, Any]) -> Dict[str, Any]:
        while "$ref" in schema:
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            target = self.defs[schema["$ref"].rsplit("/", 1)[-1]]
            schema = dict(target, **rest)
        return schema

    def _valid(self, schema: Dict[str, Any], instance: Any) -> bool:
        return jsonschema.Draft202012Validator(self._root(schema)).is_valid(instance)

    def unknown_fields(self, schema: Dict[str, Any], instance: Any, path: str = "") -> List[str]:
        schema = self._resolve(schema)
        out: List[str] = []
        props = schema.get("properties")
        if isinstance(instance, dict) and props is not None:
            for key, value in instance.items():
                if key not in props:
                    out.append(f"{path}/{key}")
                else:
                    out += self.unknown_fields(props[key], value, f"{path}/{key}")
        if isinstance(instance, list) and isinstance(schema.get("items"), dict):
            for i, value in enumerate(instance):
                out += self.unknown_fields(schema["items"], value, f"{path}/{i}")
        for key in ("oneOf", "anyOf"):
            branches = [b for b in schema.get(key, []) if self._valid(b, instance)]
            if branches:
                out += self.unknown_fields(branches[0], instance, path)
        for branch in schema.get("allOf", []):
            out += self.unknown_fields(branch, instance, path)
        return out

    def problems(self, event: Dict[str, Any]) -> List[str]:
        pointer = self.index.get(event.get("type", ""))
        if pointer is None:
            return [f"{event.get('type')!r} is not a GA client event"]
        schema = {"$ref": pointer}
        errors = [f"{event['type']}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft202012Validator(self._root(schema))
                  .iter_errors(event)]
        errors += [f"{event['type']}: unknown field {f}" for f in
                   self.unknown_fields(schema, event)]
        return errors


@pytest.fixture(scope="module")
def client_schema() -> ClientSchema:
    return ClientSchema()


def assert_valid_client_events(schema: ClientSchema, events: List[Dict[str, Any]]) -> None:
    problems = [p for e in events for p in schema.problems(e)]
    assert not problems, problems


@pytest.fixture
def fake():
    responder = ScriptedResponder()
    with FakeRealtimeServer(responder=responder) as srv:
        srv.responder = responder  # type: ignore[attr-defined]
        yield srv


@pytest.fixture
def client(fake):
    c = rs.RealtimeClient(url=fake.url, api_key="sk-local", model="gpt-realtime",
                          session=TEXT_ONLY, reconnect=False)
    yield c
    assert c.close(timeout=5)


def test_schema_check_can_fail(client_schema):
    assert client_schema.problems({"type": "response.create", "bogus": 1})
    assert client_schema.problems({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "c", "output": "x", "extra": True}})
    assert client_schema.problems({"type": "session.update", "session": {
        "type": "realtime", "tools": [{"type": "function", "name": "f", "parms": {}}]}})
    assert not client_schema.problems({"type": "response.create", "event_id": "e"})


def test_ask_returns_the_text_response_and_the_mirror_follows(fake, client, client_schema):
    fake.responder.add(Text("Paris is the capital of France."))
    conv = rs.Conversation(client)
    client.connect()
    answer = client.ask("What is the capital of France?", timeout=10)
    assert isinstance(answer, rs.Response)
    assert answer.text == "Paris is the capital of France."
    assert answer.status == "completed"
    assert answer.usage["output_tokens"] > 0
    assert [i.role for i in answer.items] == ["assistant"]
    # the mirror: user item then the assistant's, in server order, with their text
    assert conv.last_response is not None
    assert conv.last_response.wait(5)
    items = conv.items
    assert [(i.role, i.text) for i in items] == [
        ("user", "What is the capital of France?"),
        ("assistant", "Paris is the capital of France."),
    ]
    assert items[1].previous_item_id == items[0].id
    assert items[1].response_id == answer.id
    assert conv.response(answer.id).status == "completed"
    assert conv.text == ("user: What is the capital of France?\n"
                         "assistant: Paris is the capital of France.")
    sent = [e for e in fake.received if e["type"] != "session.update"]
    assert [e["type"] for e in sent] == ["conversation.item.create", "response.create"]
    assert_valid_client_events(client_schema, fake.received)


def test_send_text_without_response_only_adds_the_item(fake, client, client_schema):
    conv = rs.Conversation(client)
    client.connect()
    client.send_text("just a note", respond=False)
    client.wait_for("conversation.item.done")
    client.send_text("and answer this")
    client.wait_for("response.done", timeout=10)
    types = [e["type"] for e in fake.received if e["type"] != "session.update"]
    assert types == ["conversation.item.create", "conversation.item.create", "response.create"]
    # wait_for can return before the mirror's handlers have seen the same events
    conv.wait_until(lambda c: len(c.items) >= 2, timeout=5)
    assert [i.text for i in conv.items][:2] == ["just a note", "and answer this"]
    assert_valid_client_events(client_schema, fake.received)


def test_audio_response_text_is_its_transcript_and_audio_is_counted_not_kept(fake):
    pcm = tone(1500)
    fake.responder.add(Audio(pcm, "Bonjour tout le monde"))
    session = {"type": "realtime", "output_modalities": ["audio"],
               "audio": {"input": {"turn_detection": None}}}
    with rs.RealtimeClient(url=fake.url, api_key="sk-local", session=session,
                           reconnect=False) as client:
        conv = rs.Conversation(client)
        kept = rs.Conversation(client, keep_audio=True)
        answer = client.ask("say hello", timeout=10)
        assert answer.text == "Bonjour tout le monde"
        item = answer.items[0]
        assert item.transcript == "Bonjour tout le monde" and item.text == ""
        assert conv.last_response.wait(5) and kept.last_response.wait(5)
        mirrored = conv.get(item.id)
        assert mirrored.audio_ms == pytest.approx(1500)
        assert mirrored.audio is None  # bounded memory: only the duration
        assert bytes(kept.get(item.id).audio) == pcm
        # a barge-in truncation is mirrored: duration cut, marked truncated
        client.conversation.item.truncate(item_id=item.id, audio_end_ms=400)
        client.wait_for("conversation.item.truncated")
        for c in (conv, kept):
            assert c.wait_until(lambda c: c.get(item.id).truncated, timeout=5)
            assert c.get(item.id).truncated
            assert c.get(item.id).audio_ms == pytest.approx(400)
        assert len(kept.get(item.id).audio) == 400 * 48


def test_failed_response_raises_server_error(fake, client):
    def broken(request):
        raise RuntimeError("model exploded")

    fake.responder.add(broken)
    client.connect()
    with pytest.raises(rs.ServerError) as info:
        client.ask("hi", timeout=10)
    assert "model exploded" in info.value.message
    assert info.value.code == "responder_error"


def test_ask_waits_for_a_response_already_active_then_asks_again(fake, client):
    fake.responder.delta_interval = 0.05
    fake.responder.add(Text("one two three four five six"))
    fake.responder.add(Text("the second answer"))
    client.connect()
    client.send_text("first")  # a response is now active in the default conversation
    client.wait_for("response.created", timeout=5)
    answer = client.ask("second", timeout=20)
    assert answer.text == "the second answer"
    creates = [e for e in fake.received if e["type"] == "response.create"
               and e.get("response", {}).get("metadata")]
    assert len(creates) == 2  # ask()'s: refused while the first response ran, then again


def test_ask_raises_when_the_server_rejects_its_message(fake, client):
    client.connect()
    fake.reply("conversation.item.create", lambda event, conn: {"type": "error", "error": {
        "type": "invalid_request_error", "code": "invalid_value", "message": "bad item",
        "param": "item", "event_id": event.get("event_id")}}, replace=True, times=1)
    with pytest.raises(rs.ServerError):
        client.ask("hello", timeout=10)


def test_concurrent_asks_each_get_their_own_answer(fake, client):
    client.connect()
    answers = {}

    def ask(n):
        answers[n] = client.ask(f"question {n}", timeout=30).text

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == {n: f"You said: question {n}" for n in range(4)}


def test_ask_ignores_other_responses_and_picks_its_own(fake, client):
    """A response created by someone else (another thread, server VAD) is not mistaken for
    the one ask() requested: the request's metadata identifies it."""
    fake.responder.add(Text("the real answer"))
    other = {"object": "realtime.response", "id": "resp_other", "status": "in_progress",
             "output": [], "metadata": {"realtime_sync": "ask-someone-else"}}
    done = dict(other, status="completed", output=[{
        "id": "item_other", "object": "realtime.item", "type": "message", "role": "assistant",
        "status": "completed", "content": [{"type": "output_text", "text": "wrong answer"}]}])
    fake.reply("conversation.item.create", [{"type": "response.created", "response": other},
                                            {"type": "response.done", "response": done}],
               times=1)
    client.connect()
    answer = client.ask("question", timeout=10)
    assert answer.text == "the real answer"
    assert answer.id != "resp_other"


def test_ask_times_out(fake, client):
    fake.responder.delta_interval = 0.5
    fake.responder.add(Text("a b c d e f g h"))
    client.connect()
    with pytest.raises(rs.TimeoutError):
        client.ask("slow", timeout=0.5)
    client.response.cancel()


def test_ask_on_the_dispatcher_thread_raises_deadlock_error(fake, client):
    client.connect()
    caught: List[BaseException] = []
    done = threading.Event()

    def handler(event):
        try:
            client.ask("from a handler", timeout=1)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            caught.append(exc)
        done.set()

    client.on("client.ping_test", handler)
    client._emit({"type": "client.ping_test"})
    assert done.wait(5)
    assert isinstance(caught[0], rs.DeadlockError)


def test_items_deleted_and_input_transcription_are_mirrored(fake):
    with FakeRealtimeServer(recognizer=ScriptedRecognizer(["hello there"])) as srv:
        session = {"type": "realtime", "output_modalities": ["text"], "audio": {"input": {
            "turn_detection": None, "transcription": {"model": "gpt-4o-transcribe"}}}}
        with rs.RealtimeClient(url=srv.url, api_key="sk-local", session=session,
                               reconnect=False) as client:
            conv = rs.Conversation(client)
            client.input_audio_buffer.append(tone(500))
            client.input_audio_buffer.commit()
            done = client.wait_for(
                "conversation.item.input_audio_transcription.completed", timeout=10)
            client.send_text("typed", respond=False)
            added = client.wait_for("conversation.item.done",
                                    where=lambda e: e.item.get("role") == "user"
                                    and e.item["content"][0]["type"] == "input_text")
            assert conv.wait_until(lambda c: added.item["id"] in c, timeout=5)
            spoken = conv.get(done.item_id)
            assert spoken is not None and spoken.transcript == "hello there"
            assert [i.id for i in conv.items] == [done.item_id, added.item["id"]]
            client.conversation.item.delete(done.item_id)
            client.wait_for("conversation.item.deleted")
            assert conv.wait_until(lambda c: len(c) == 1, timeout=5)
            assert [i.text for i in conv.items] == ["typed"]
            assert done.item_id not in conv


def test_memory_is_bounded_on_long_sessions(fake, client):
    conv = rs.Conversation(client, max_responses=3, max_items=4)
    client.connect()
    ids = []
    for n in range(6):
        fake.responder.add(Text(f"answer {n}"))
        ids.append(client.ask(f"question {n}", timeout=10).id)
    assert conv.last_response is not None and conv.last_response.wait(5)
    assert [r.id for r in conv.responses] == ids[-3:]
    assert conv.response(ids[0]) is None
    assert [i.text for i in conv.items] == ["question 4", "answer 4", "question 5", "answer 5"]


def test_conversation_close_stops_following(fake, client):
    conv = rs.Conversation(client)
    client.connect()
    client.ask("one", timeout=10)
    conv.close()
    client.ask("two", timeout=10)
    assert [i.text for i in conv.items] == ["one", "You said: one"]


def test_conversation_can_be_fed_by_hand():
    """Without a client: apply() events yourself (e.g. recorded ones), in the GA shapes."""
    conv = rs.Conversation(None)
    events = [
        {"type": "conversation.item.added", "previous_item_id": None, "item": {
            "id": "a", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "hi"}]}},
        {"type": "conversation.item.added", "previous_item_id": None, "item": {
            "id": "root_item", "type": "message", "role": "system",
            "content": [{"type": "input_text", "text": "be brief"}]}},
        {"type": "response.created", "response": {"id": "r", "status": "in_progress",
                                                  "output": []}},
        {"type": "response.output_item.added", "response_id": "r", "output_index": 0,
         "item": {"id": "b", "type": "function_call", "name": "f", "call_id": "c",
                  "arguments": "", "status": "in_progress"}},
        {"type": "conversation.item.added", "previous_item_id": "a", "item": {
            "id": "b", "type": "function_call", "name": "f", "call_id": "c", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "response_id": "r", "item_id": "b",
         "output_index": 0, "call_id": "c", "delta": '{"x": '},
        {"type": "response.function_call_arguments.delta", "response_id": "r", "item_id": "b",
         "output_index": 0, "call_id": "c", "delta": "1}"},
        {"type": "response.done", "response": {"id": "r", "status": "completed", "output": [
            {"id": "b", "type": "function_call", "name": "f", "call_id": "c",
             "arguments": '{"x": 1}', "status": "completed"}], "usage": {"total_tokens": 3}}},
    ]
    for event in events:
        conv.apply(event)
    assert [i.id for i in conv.items] == ["root_item", "a", "b"]
    call = conv["b"]
    assert (call.name, call.call_id, call.arguments, call.status) == (
        "f", "c", '{"x": 1}', "completed")
    resp = conv.response("r")
    assert resp.done and resp.function_calls == [call] and resp.usage == {"total_tokens": 3}


def test_user_speech_duration_comes_from_server_vad_and_transcripts_stream():
    conv = rs.Conversation(None)
    for event in [
        {"type": "input_audio_buffer.speech_started", "audio_start_ms": 1200, "item_id": "u1"},
        {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 3450, "item_id": "u1"},
        {"type": "input_audio_buffer.committed", "previous_item_id": None, "item_id": "u1"},
        {"type": "conversation.item.added", "previous_item_id": None, "item": {
            "id": "u1", "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}]}},
        {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u1",
         "content_index": 0, "delta": "good "},
        {"type": "conversation.item.input_audio_transcription.delta", "item_id": "u1",
         "content_index": 0, "delta": "morning"},
    ]:
        conv.apply(event)
    item = conv["u1"]
    assert item.audio_ms == 2250
    assert item.transcript == "good morning"
    conv.apply({"type": "conversation.item.done", "previous_item_id": None, "item": {
        "id": "u1", "type": "message", "role": "user", "status": "completed",
        "content": [{"type": "input_audio", "transcript": None}]}})
    assert item.transcript == "good morning"  # an empty transcript in item.done keeps ours
    conv.apply({"type": "conversation.item.input_audio_transcription.completed",
                "item_id": "u1", "content_index": 0, "transcript": "Good morning.",
                "usage": {"type": "duration", "seconds": 3}})
    assert item.transcript == "Good morning."


def test_an_ask_that_times_out_waiting_for_another_leaves_no_event_tap(fake, client):
    fake.responder.delta_interval = 0.3
    fake.responder.add(Text("a slow answer with many words to stream"))
    client.connect()
    first = threading.Thread(target=lambda: client.ask("slow", timeout=30))
    first.start()
    time.sleep(0.2)
    with pytest.raises(rs.TimeoutError):
        client.ask("impatient", timeout=0.3)
    first.join(30)
    assert client._router.iterators == []

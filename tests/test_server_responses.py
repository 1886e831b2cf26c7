"""Conversation (realtime) sessions of the local server: items and the GA response cycle."""

from __future__ import annotations

import base64

import pytest
from server_helpers import Peer, silence, tone, types

from realtime_sync.server import (
    Audio,
    FunctionCall,
    RealtimeServer,
    ScriptedResponder,
    Text,
)

pytestmark = pytest.mark.timeout(60)

TEXT_CYCLE = [
    "response.created", "response.output_item.added", "conversation.item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "conversation.item.done",
    "response.output_item.done", "response.done", "rate_limits.updated",
]


def realtime(srv: RealtimeServer, **session) -> Peer:
    p = Peer(srv.url, intent=None, model="gpt-realtime")
    p.expect("session.created")
    session = dict({"type": "realtime", "audio": {"input": {"turn_detection": None}}}, **session)
    p.send({"type": "session.update", "session": session})
    p.expect("session.updated")
    return p


def user_text(p: Peer, text: str) -> str:
    p.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
    added = p.expect("conversation.item.added")
    p.expect("conversation.item.done")
    return str(added["item"]["id"])


def test_text_response_full_cycle():
    responder = ScriptedResponder([Text("Hi there")])
    with RealtimeServer(responder=responder) as srv:
        p = realtime(srv, output_modalities=["text"])
        user_id = user_text(p, "hello")
        p.send({"type": "response.create"})
        got = p.until("rate_limits.updated")
        assert types(got) == TEXT_CYCLE
        rid = got[0]["response"]["id"]
        assert got[0]["response"]["status"] == "in_progress"
        assert all(e.get("response_id", rid) == rid for e in got)
        item = got[1]["item"]
        assert (item["role"], item["status"], item["content"]) == ("assistant", "in_progress", [])
        assert got[2]["previous_item_id"] == user_id
        assert got[3]["part"] == {"type": "text", "text": ""}
        assert "".join(e["delta"] for e in got[4:6]) == "Hi there"
        assert got[6]["text"] == "Hi there"
        done_item = got[8]["item"]
        assert done_item["status"] == "completed"
        assert done_item["content"] == [{"type": "output_text", "text": "Hi there"}]
        resp = got[10]["response"]
        assert resp["status"] == "completed"
        assert [o["id"] for o in resp["output"]] == [item["id"]]
        assert resp["usage"]["output_tokens"] > 0
        assert {r["name"] for r in got[11]["rate_limits"]} == {"requests", "tokens"}
        # the responder saw the conversation
        assert responder.requests[0].last_user_text() == "hello"
        p.close()


def test_audio_response_streams_pcm_and_transcript():
    pcm = tone(450)
    with RealtimeServer(responder=ScriptedResponder([Audio(pcm, "a short beep")])) as srv:
        p = realtime(srv)
        p.send({"type": "response.create"})
        # up to the response's last event (rate_limits.updated, sent by the response worker
        # after response.done), so that it cannot arrive between the answers read below
        got = p.until("rate_limits.updated")
        audio = b"".join(base64.b64decode(e["delta"]) for e in got
                         if e["type"] == "response.output_audio.delta")
        assert audio == pcm
        words = [e["delta"] for e in got if e["type"] == "response.output_audio_transcript.delta"]
        assert "".join(words) == "a short beep"
        first_audio = types(got).index("response.output_audio.delta")
        assert types(got).index("response.output_audio_transcript.delta") < first_audio
        part = next(e for e in got if e["type"] == "response.content_part.added")["part"]
        assert part == {"type": "audio", "transcript": ""}
        assert next(e for e in got if e["type"] == "response.output_audio_transcript.done"
                    )["transcript"] == "a short beep"
        assert "response.output_audio.done" in types(got)
        item = next(e for e in got if e["type"] == "conversation.item.done")["item"]
        assert item["content"] == [{"type": "output_audio", "transcript": "a short beep"}]
        # retrieve returns the audio; truncate cuts it and forgets the transcript
        p.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
        retrieved = p.until("conversation.item.retrieved")[-1]["item"]
        assert base64.b64decode(retrieved["content"][0]["audio"]) == pcm
        p.send({"type": "conversation.item.truncate", "item_id": item["id"],
                "content_index": 0, "audio_end_ms": 200})
        assert p.expect("conversation.item.truncated")["audio_end_ms"] == 200
        p.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
        part = p.expect("conversation.item.retrieved")["item"]["content"][0]
        assert len(base64.b64decode(part["audio"])) == 200 * 48
        assert part["transcript"] == ""
        p.send({"type": "conversation.item.truncate", "item_id": item["id"],
                "content_index": 0, "audio_end_ms": 5000, "event_id": "t2"})
        err = p.expect("error")["error"]
        assert (err["param"], err["event_id"]) == ("audio_end_ms", "t2")
        p.close()


def test_function_call_response():
    call = FunctionCall("get_weather", '{"city": "Paris", "unit": "celsius"}', call_id="call_1")
    with RealtimeServer(responder=ScriptedResponder([call])) as srv:
        p = realtime(srv, tools=[{"type": "function", "name": "get_weather",
                                  "parameters": {"type": "object"}}])
        p.send({"type": "response.create"})
        got = p.until("response.done")
        deltas = [e for e in got if e["type"] == "response.function_call_arguments.delta"]
        assert len(deltas) > 1
        assert "".join(d["delta"] for d in deltas) == call.arguments
        assert all(d["call_id"] == "call_1" for d in deltas)
        done = next(e for e in got if e["type"] == "response.function_call_arguments.done")
        assert (done["name"], done["arguments"], done["call_id"]) == (
            "get_weather", call.arguments, "call_1")
        item = got[-1]["response"]["output"][0]
        assert (item["type"], item["name"], item["arguments"], item["status"]) == (
            "function_call", "get_weather", call.arguments, "completed")
        # the tool result goes back in and the default echo answers with it
        p.send({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": "call_1", "output": "18 C"}})
        p.until("conversation.item.done")
        p.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        text = p.until("response.output_text.done")[-1]["text"]
        assert text == "You said: 18 C"
        p.close()


def test_default_responder_echoes_the_last_user_text_as_audio():
    with RealtimeServer() as srv:
        p = realtime(srv)
        user_text(p, "ping pong")
        p.send({"type": "response.create"})
        got = p.until("response.done")
        assert got[-1]["response"]["output"][0]["content"][0]["transcript"] == \
            "You said: ping pong"
        assert any(e["type"] == "response.output_audio.delta" for e in got)
        p.close()


def test_cancel_stops_a_running_response():
    slow = ScriptedResponder([Text("one two three four five six seven eight")],
                             delta_interval=0.2)
    with RealtimeServer(responder=slow) as srv:
        p = realtime(srv)
        p.send({"type": "response.create"})
        p.until("response.output_text.delta")
        p.send({"type": "response.create", "event_id": "second"})
        got = p.until("error")
        assert got[-1]["error"]["code"] == "conversation_already_has_active_response"
        assert got[-1]["error"]["event_id"] == "second"
        p.send({"type": "response.cancel"})
        got = p.until("response.done")
        resp = got[-1]["response"]
        assert resp["status"] == "cancelled"
        assert resp["status_details"]["reason"] == "client_cancelled"
        assert resp["output"][0]["status"] == "incomplete"
        sent = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
        assert len(sent) < len("one two three four five six seven eight") - 10
        p.expect("rate_limits.updated")
        # nothing is running now
        p.send({"type": "response.cancel", "event_id": "c2"})
        err = p.expect("error")["error"]
        assert (err["code"], err["event_id"]) == ("response_cancel_not_active", "c2")
        p.close()


def test_out_of_band_response_does_not_touch_the_conversation():
    with RealtimeServer(responder=ScriptedResponder(["aside"])) as srv:
        p = realtime(srv)
        p.send({"type": "response.create", "response": {"conversation": "none",
                                                         "metadata": {"k": "v"}}})
        got = p.until("response.done")
        assert not [t for t in types(got) if t.startswith("conversation.")]
        assert got[-1]["response"]["conversation_id"] is None
        assert got[-1]["response"]["metadata"] == {"k": "v"}
        p.send({"type": "conversation.item.retrieve", "item_id": got[1]["item"]["id"]})
        assert p.until("error")[-1]["error"]["code"] == "item_not_found"
        p.close()


def test_item_create_delete_retrieve_and_ordering():
    with RealtimeServer() as srv:
        p = realtime(srv)
        a = user_text(p, "first")
        p.send({"type": "conversation.item.create", "previous_item_id": "root", "item": {
            "id": "item_custom", "type": "message", "role": "system",
            "content": [{"type": "input_text", "text": "be brief"}]}})
        added = p.expect("conversation.item.added")
        assert added["previous_item_id"] is None and added["item"]["id"] == "item_custom"
        p.expect("conversation.item.done")
        p.send({"type": "conversation.item.create", "previous_item_id": "item_custom", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}})
        assert p.expect("conversation.item.added")["previous_item_id"] == "item_custom"
        p.expect("conversation.item.done")
        p.send({"type": "conversation.item.retrieve", "item_id": a})
        assert p.expect("conversation.item.retrieved")["item"]["content"][0]["text"] == "first"
        p.send({"type": "conversation.item.delete", "item_id": a})
        assert p.expect("conversation.item.deleted")["item_id"] == a
        for bad, param in [({"item_id": a}, "item_id"), ({}, "item_id")]:
            p.send(dict({"type": "conversation.item.delete", "event_id": "d"}, **bad))
            err = p.expect("error")["error"]
            assert (err["param"], err["event_id"]) == (param, "d")
        p.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                              "content": [{"type": "output_text",
                                                                           "text": "no"}]}})
        assert p.expect("error")["error"]["param"] == "item.content[0].type"
        p.send({"type": "conversation.item.create", "item": {
            "id": "item_custom", "type": "message", "role": "user", "content": []}})
        assert p.expect("error")["error"]["code"] == "item_already_exists"
        p.close()


def test_vad_turn_in_a_realtime_session_triggers_a_response():
    with RealtimeServer(responder=ScriptedResponder([Text("heard you")])) as srv:
        p = Peer(srv.url, intent=None, model="gpt-realtime")
        p.expect("session.created")  # server_vad with create_response on by default
        p.append(silence(300) + tone(400) + silence(500), chunk_ms=50)
        got = p.until("response.done")
        committed = types(got).index("input_audio_buffer.committed")
        assert types(got).index("response.created") > committed
        assert got[-1]["response"]["output"][0]["content"][0]["text"] == "heard you"
        p.close()


def test_response_create_in_a_transcription_session_is_an_error():
    with RealtimeServer() as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        p.send({"type": "response.create", "event_id": "r"})
        err = p.expect("error")["error"]
        assert err["event_id"] == "r"
        p.close()


def test_user_audio_transcription_in_a_conversation():
    with RealtimeServer() as srv:
        p = realtime(srv, audio={"input": {"turn_detection": None,
                                           "transcription": {"model": "whisper-1"}}})
        p.append(silence(250))
        p.send({"type": "input_audio_buffer.commit"})
        got = p.until("conversation.item.input_audio_transcription.completed")
        assert got[-1]["transcript"] == "250 ms of audio"
        p.send({"type": "conversation.item.retrieve", "item_id": got[0]["item_id"]})
        part = p.expect("conversation.item.retrieved")["item"]["content"][0]
        assert part["transcript"] == "250 ms of audio"
        assert base64.b64decode(part["audio"]) == silence(250)
        p.close()

"""Features against hostile servers (issue 11: failures 4, 7, 8, 10, 11).

Each test runs its own small ``websockets`` server (:mod:`tests.hostile`) that sends exactly
the bad events of the failure; the library's own server is not involved.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import tracemalloc

import pytest

import realtime_sync as rs
from realtime_sync.conversation import Conversation
from tests.hostile import HostileServer, answer_update, created, send

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-0123456789abcdefSECRET"


def make_client(srv, **kw):
    kw.setdefault("reconnect", rs.Backoff(initial=0.05, maximum=0.2))
    return rs.RealtimeClient(url=srv.url, api_key=KEY, model="gpt-realtime", **kw)


def answer_ask(server, ws, n, text, *, finish=True, deltas=None, after_delta=None):
    """Answer one ask(): the user item, a response with one assistant message.

    ``deltas`` replaces the text deltas (a list of extra fields for each delta event);
    ``after_delta`` runs after them (e.g. to close the connection)."""
    item = server.until(ws, "conversation.item.create")
    create = server.until(ws, "response.create")
    user = dict(item["item"], id=f"item_u{n}")
    send(ws, {"type": "conversation.item.added", "event_id": f"e{n}a", "previous_item_id": None,
              "item": user})
    meta = (create.get("response") or {}).get("metadata")
    rid, aid = f"resp_{n}", f"item_a{n}"
    assistant = {"id": aid, "type": "message", "role": "assistant", "status": "in_progress",
                 "content": []}
    send(ws, {"type": "response.created", "event_id": f"e{n}b", "response": {
        "id": rid, "object": "realtime.response", "status": "in_progress", "output": [],
        "metadata": meta}})
    send(ws, {"type": "response.output_item.added", "event_id": f"e{n}c", "response_id": rid,
              "output_index": 0, "item": assistant})
    send(ws, {"type": "conversation.item.added", "event_id": f"e{n}d",
              "previous_item_id": user["id"], "item": assistant})
    send(ws, {"type": "response.content_part.added", "event_id": f"e{n}e", "response_id": rid,
              "item_id": aid, "output_index": 0, "content_index": 0,
              "part": {"type": "output_text", "text": ""}})
    for i, extra in enumerate(deltas if deltas is not None else [{"delta": text}]):
        send(ws, dict({"type": "response.output_text.delta", "event_id": f"e{n}f{i}",
                       "response_id": rid, "item_id": aid, "output_index": 0,
                       "content_index": 0}, **extra))
    if after_delta is not None:
        after_delta()
    if not finish:
        return
    done_item = dict(assistant, status="completed",
                     content=[{"type": "output_text", "text": text}])
    send(ws, {"type": "response.output_text.done", "event_id": f"e{n}g", "response_id": rid,
              "item_id": aid, "output_index": 0, "content_index": 0, "text": text})
    send(ws, {"type": "response.done", "event_id": f"e{n}h", "response": {
        "id": rid, "object": "realtime.response", "status": "completed",
        "output": [done_item], "metadata": meta}})


# -- failure 4: ask() across a drop -------------------------------------------------------------
def test_ask_fails_at_once_with_what_was_received_when_the_connection_drops():
    second_session = []

    def script(ws, n, server):
        created(ws, f"sess_{n + 1}")
        if n == 0:
            answer_ask(server, ws, 1, "", finish=False, deltas=[{"delta": "Partial ans"}],
                       after_delta=lambda: (time.sleep(0.2), ws.close(1011, "internal")))
            return
        answer_ask(server, ws, 2, "Paris")
        while True:
            second_session.append(server.recv(ws, None))

    with HostileServer(script) as srv:
        client = make_client(srv)
        conv = Conversation(client)
        with client:
            started = time.monotonic()
            with pytest.raises(rs.ConnectionLostError) as info:
                client.ask("What is the capital of France?", timeout=None)
            elapsed = time.monotonic() - started
            err = info.value
            assert isinstance(err, rs.NotConnectedError)  # old handlers still catch it
            assert err.text == "Partial ans"
            assert err.response.interrupted and err.response.status == "incomplete"
            assert err.response.status_details["reason"] == "connection_lost"
            print(f"ask() failed {elapsed:.3f} s after it started (drop 0.2 s after the delta)")
            client.wait_for("client.reconnected", timeout=10)
            answer = client.ask("Again: the capital of France?", timeout=10)
            assert answer.text == "Paris"
            assert client.flush(5)
        # the new session got the second question only, never the first one again
        assert [e["type"] for e in srv.received if e.get("type") != "session.update"].count(
            "conversation.item.create") == 2
        first, second = conv.sessions
        assert (first.id, second.id) == ("sess_1", "sess_2")
        assert [i.id for i in first.items] == ["item_u1", "item_a1"]
        assert [i.id for i in second.items] == ["item_u2", "item_a2"]
        assert [i.id for i in conv.items] == ["item_u1", "item_a1", "item_u2", "item_a2"]
        assert [i.session for i in conv.items] == [1, 1, 2, 2]
        interrupted = conv.response("resp_1")
        assert interrupted.interrupted and interrupted.done
        assert conv.get("item_a1").status == "incomplete"
        assert conv.get("item_a1").text == "Partial ans"


def test_a_tool_output_is_never_sent_into_another_session():
    release = threading.Event()
    calls = []

    def script(ws, n, server):
        created(ws, f"sess_{n + 1}")
        answer_update(server, ws)  # the tools
        if n == 0:
            server.until(ws, "conversation.item.create")
            create = server.until(ws, "response.create")
            meta = create["response"]["metadata"]
            call = {"id": "item_fc", "type": "function_call", "status": "completed",
                    "name": "lookup", "call_id": "call_1", "arguments": "{}"}
            send(ws, {"type": "response.created", "event_id": "a", "response": {
                "id": "resp_1", "status": "in_progress", "output": [], "metadata": meta}})
            send(ws, {"type": "response.function_call_arguments.done", "event_id": "b",
                      "response_id": "resp_1", "item_id": "item_fc", "output_index": 0,
                      "call_id": "call_1", "name": "lookup", "arguments": "{}"})
            send(ws, {"type": "response.done", "event_id": "c", "response": {
                "id": "resp_1", "status": "completed", "output": [call], "metadata": meta}})
            ws.close(1011, "internal")
            return
        server.absorb(ws)

    with HostileServer(script) as srv:
        client = make_client(srv)

        @client.tool
        def lookup() -> str:
            """Look something up."""
            calls.append(1)
            release.wait(10)
            return "the answer"

        with client:
            with pytest.raises(rs.ConnectionLostError):
                client.ask("Look it up", timeout=None)
            client.wait_for("client.reconnected", timeout=10)
            release.set()
            assert client.tools.wait_idle(10)
            time.sleep(0.2)  # anything wrongly sent would reach the server by now
        assert calls == [1]
        sent = [e["type"] for e in srv.received]
        assert "conversation.item.create" in sent  # the question, in the first session
        after_reconnect = sent[sent.index("response.create") + 1:]
        assert after_reconnect == ["session.update"]  # the tools replay, nothing else


# -- failures 7 and 8: field values --------------------------------------------------------------
def test_fields_of_the_wrong_type_are_reported_once_and_skipped_and_the_answer_survives():
    def script(ws, n, server):
        created(ws, "sess_1")
        answer_ask(server, ws, 1, "Good answer", deltas=[
            {"delta": "Good ", "content_index": "abc"},
            {"delta": "Good ", "content_index": -7},
            {"delta": "Good answer"},
        ])
        server.absorb(ws)

    with HostileServer(script) as srv:
        client = make_client(srv)
        conv = Conversation(client)
        errors = []
        client.on("client.protocol_error", errors.append)
        with client:
            answer = client.ask("Hello?", timeout=10)
            assert answer.text == "Good answer"
            assert client.flush(5)
            assert client.stats()["protocol_errors"] == 2  # once per bad event, not per reader
        assert len(errors) == 2
        assert "'abc'" in errors[0]["message"] and "-7" in errors[1]["message"]
        assert conv.get("item_a1").text == "Good answer"


def test_a_huge_content_index_allocates_nothing():
    def script(ws, n, server):
        created(ws, "sess_1")
        answer_ask(server, ws, 1, "fine", deltas=[
            {"delta": "x", "content_index": 10_000_000},
            {"delta": "fine"},
        ])
        server.absorb(ws)

    with HostileServer(script) as srv:
        client = make_client(srv)
        conv = Conversation(client)
        errors = []
        client.on("client.protocol_error", errors.append)
        with client:
            tracemalloc.start()
            try:
                answer = client.ask("Hello?", timeout=10)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert answer.text == "fine"
            assert client.flush(5)  # close() drops events still queued for handlers
        print(f"peak traced memory during the attack: {peak / 1e6:.2f} MB")
        # 10 million parts would be gigabytes; the bound leaves room for whatever other
        # threads of the test process allocate meanwhile (tracemalloc sees them all)
        assert peak < 64_000_000
        assert len(errors) == 1 and "10000000" in errors[0]["message"]
        assert len(conv.get("item_a1").content) == 1


# -- failure 10: a key echoed by the server -----------------------------------------------------
def test_a_key_echoed_by_the_server_never_leaks_through_errors_or_events(caplog):
    caplog.set_level(logging.DEBUG)

    def script(ws, n, server):
        created(ws, "sess_1")
        item = server.until(ws, "conversation.item.create")
        send(ws, {"type": "error", "event_id": "e1", "error": {
            "type": "invalid_request_error", "code": "invalid_api_key",
            "message": f"Incorrect API key provided: {KEY}.", "param": KEY,
            "event_id": item["event_id"]}})
        time.sleep(0.1)
        ws.close(1011, f"bye {KEY}"[:100])

    with HostileServer(script) as srv:
        client = make_client(srv, reconnect=False)
        seen = []
        client.on("*", seen.append)
        with client:
            with pytest.raises(rs.ServerError) as info:
                client.ask("Hello?", timeout=10)
            err = info.value
            for text in (str(err), repr(err), err.message, json.dumps(err.event), str(err.param)):
                assert KEY not in text
            assert "Incorrect API key provided" in err.message
            deadline = time.monotonic() + 5
            while client.state != "disconnected" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert client.flush(5)  # close() drops events still queued for handlers
        assert any(e.get("type") == "error" for e in seen)
        assert any(e.get("type") == "client.disconnected" for e in seen)
        for event in seen:
            assert KEY not in json.dumps(event), event
        ours = [r.getMessage() for r in caplog.records
                if r.name.startswith("realtime_sync") or r.name == "websocket"]
        # (the test server's own "websockets" logs show the handshake, key included)
        assert ours and all(KEY not in line for line in ours)


# -- failure 11: a turn that cannot be tracked ---------------------------------------------------
def test_committed_without_an_item_id_is_reported_and_finish_still_ends():
    def script(ws, n, server):
        created(ws, "sess_1", "transcription")
        answer_update(server, ws)
        server.until(ws, "input_audio_buffer.commit")
        send(ws, {"type": "input_audio_buffer.committed", "event_id": "e1",
                  "item_id": None, "previous_item_id": None})
        server.absorb(ws)

    with HostileServer(script) as srv:
        tr = rs.Transcriber(turn_detection=None, url=srv.url, api_key=KEY)
        errors = []
        tr.on("client.protocol_error", errors.append)
        with tr:
            tr.feed(bytes(48 * 1000))
            transcript = tr.finish()  # no timeout: must not hang
        assert len(transcript.segments) == 1
        assert transcript.segments[0].error["code"] == "untracked_turn"
        assert len(errors) == 1 and "item_id" in errors[0]["message"]


def test_carry_over_recreates_the_previous_sessions_messages_in_the_new_session():
    def script(ws, n, server):
        created(ws, f"sess_{n + 1}")
        if n == 0:
            for i, (role, kind, text) in enumerate([("user", "input_text", "My name is Ada."),
                                                    ("assistant", "output_text", "Hi Ada!")]):
                send(ws, {"type": "conversation.item.added", "event_id": f"i{i}",
                          "previous_item_id": None if i == 0 else "item_0",
                          "item": {"id": f"item_{i}", "type": "message", "role": role,
                                   "status": "completed",
                                   "content": [{"type": kind, "text": text}]}})
            server.until(ws, "response.cancel")  # the test's signal: drop now
            ws.close(1011, "internal")
            return
        server.absorb(ws)

    with HostileServer(script) as srv:
        client = make_client(srv)
        conv = Conversation(client)
        with client:
            conv.wait_until(lambda c: len(c) == 2, 5)
            client.response.cancel()
            client.wait_for("client.reconnected", timeout=10)
            assert client.flush(5)
            assert conv.carry_over() == 2
            srv.wait(lambda: [e["type"] for e in srv.received].count(
                "conversation.item.create") == 2)
        carried = [e["item"] for e in srv.received if e["type"] == "conversation.item.create"]
        assert [(i["role"], i["content"][0]["type"], i["content"][0]["text"]) for i in carried] \
            == [("user", "input_text", "My name is Ada."), ("assistant", "output_text", "Hi Ada!")]
        assert [s.id for s in conv.sessions] == ["sess_1", "sess_2"]


def test_ask_while_reconnecting_is_asked_in_the_new_session():
    reconnecting = threading.Event()

    def script(ws, n, server):
        if n == 0:
            created(ws, "sess_1")
            server.until(ws, "response.cancel")  # the test's signal: drop now
            ws.close(1011, "internal")
            return
        reconnecting.wait(10)  # hold the new session back until ask() has queued its events
        time.sleep(0.1)
        created(ws, "sess_2")
        answer_ask(server, ws, 2, "Paris")
        server.absorb(ws)

    with HostileServer(script) as srv:
        client = make_client(srv)
        with client:
            client.response.cancel()
            deadline = time.monotonic() + 10
            while client.state != "reconnecting" and time.monotonic() < deadline:
                time.sleep(0.005)
            threading.Timer(0.05, reconnecting.set).start()
            answer = client.ask("Capital of France?", timeout=10)
        assert answer.text == "Paris"

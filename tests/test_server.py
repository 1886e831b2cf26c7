"""The local Realtime server, specified through a plain websocket-client peer.

Transcription sessions, auth, request-shape errors, session.update, the input audio buffer,
transcription events, server VAD, expiry, and every fault switch of FakeRealtimeServer.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import websocket
from server_helpers import KEY, Peer, configure, noise, silence, tone, types

from realtime_sync.server import (
    EnergyVad,
    RealtimeServer,
    ScriptedRecognizer,
    TranscriptionError,
    split_words,
)
from realtime_sync.testing import FakeRealtimeServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake():
    with FakeRealtimeServer(api_key=KEY, recognizer=ScriptedRecognizer(
            ["hello world", "second turn", "third one"])) as srv:
        yield srv


@pytest.fixture
def peer(fake):
    p = Peer(fake.url)
    p.expect("session.created")
    yield p
    p.close()


# ---- connection, auth, session.created ----------------------------------------------------


def test_transcription_session_created_has_ga_defaults(fake):
    p = Peer(fake.url)
    ev = p.expect("session.created")
    s = ev["session"]
    assert ev["event_id"].startswith("event_")
    assert s["type"] == "transcription"
    assert s["object"] == "realtime.transcription_session"
    assert s["id"].startswith("sess_")
    assert abs(s["expires_at"] - (time.time() + 3600)) < 60
    assert s["audio"]["input"] == {
        "format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
        "noise_reduction": None,
        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                           "silence_duration_ms": 200}}
    assert s["include"] is None
    p.close()


def test_model_query_gives_a_realtime_session(fake):
    p = Peer(fake.url, intent=None, model="gpt-realtime-mini")
    s = p.expect("session.created")["session"]
    assert s["type"] == "realtime"
    assert s["object"] == "realtime.session"
    assert s["model"] == "gpt-realtime-mini"
    assert s["output_modalities"] == ["audio"]
    assert s["audio"]["input"]["turn_detection"]["create_response"] is True
    p.close()


@pytest.mark.parametrize("key", ["sk-wrong", None])
def test_bad_or_missing_key_gets_101_then_error_and_close_3000(fake, key):
    p = Peer(fake.url, key=key)  # the upgrade itself succeeds
    events = p.until_closed()
    assert types(events) == ["error"]
    err = events[0]["error"]
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_api_key"
    assert "sk-wrong" not in json.dumps(events)  # the key is never echoed
    assert p.close_code == 3000
    assert p.close_reason == "invalid_request_error.invalid_api_key"


def test_azure_api_key_header_is_accepted(fake):
    p = Peer(fake.url, key=None, headers=[f"api-key: {KEY}"])
    p.expect("session.created")
    p.close()


def test_api_key_none_accepts_any_nonempty_key():
    with RealtimeServer(api_key=None) as srv:
        p = Peer(srv.url, key="anything")
        p.expect("session.created")
        p.close()
        q = Peer(srv.url, key=None)
        assert types(q.until_closed()) == ["error"]
        assert q.close_code == 3000


def test_beta_header_is_refused_with_4000(fake):
    p = Peer(fake.url, headers=["OpenAI-Beta: realtime=v1"])
    events = p.until_closed()
    assert [e["error"]["code"] for e in events] == ["beta_api_shape_disabled"]
    assert p.close_code == 4000


def test_no_model_and_no_intent_is_missing_model_4000(fake):
    p = Peer(fake.url, intent=None)
    events = p.until_closed()
    assert [e["error"]["code"] for e in events] == ["missing_model"]
    assert p.close_code == 4000


def test_unknown_path_is_404(fake):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(fake.url.replace("/v1/realtime", "/nope"), timeout=5)
    assert info.value.status_code == 404


# ---- frames and event types ---------------------------------------------------------------


def test_bad_frames_get_errors_and_the_socket_stays_open(peer):
    peer.ws.send("{not json")
    assert peer.expect("error")["error"]["code"] == "invalid_json"
    peer.ws.send_binary(b"\x00\x01")
    assert peer.expect("error")["error"]["code"] == "invalid_event"
    peer.send({"type": "no.such.event", "event_id": "evt_x"})
    err = peer.expect("error")["error"]
    assert (err["code"], err["param"], err["event_id"]) == ("invalid_value", "type", "evt_x")
    peer.send({"type": "input_audio_buffer.clear"})
    peer.expect("input_audio_buffer.cleared")


def test_bad_base64_and_oversized_events_are_rejected(peer):
    peer.send({"type": "input_audio_buffer.append", "audio": "***", "event_id": "evt_b"})
    err = peer.expect("error")["error"]
    assert (err["param"], err["event_id"]) == ("audio", "evt_b")
    big = "A" * (15 * 1024 * 1024 + 100)  # valid base64, event over 15 MiB
    peer.send({"type": "input_audio_buffer.append", "audio": big})
    assert peer.expect("error")["error"]["code"] == "event_too_large"
    peer.send({"type": "input_audio_buffer.commit"})
    assert "0.00ms" in peer.expect("error")["error"]["message"]  # nothing was appended


def test_large_frames_under_the_limit_are_accepted(peer):
    configure(peer)
    audio = silence(60_000)  # 60 s = 2.88 MB raw, 3.84 MB base64 in one frame
    peer.append(audio, chunk_ms=60_000)
    peer.send({"type": "input_audio_buffer.commit"})
    done = peer.until("conversation.item.input_audio_transcription.completed")[-1]
    assert done["usage"] == {"type": "duration", "seconds": 60}


# ---- session.update -----------------------------------------------------------------------


def test_session_update_merges_and_echoes_the_full_session(peer):
    ev = configure(peer, model="whisper-1", turn_detection={"type": "server_vad",
                                                            "silence_duration_ms": 500},
                   include=["item.input_audio_transcription.logprobs"])
    inp = ev["session"]["audio"]["input"]
    assert inp["transcription"] == {"model": "whisper-1", "language": None, "prompt": None}
    assert inp["turn_detection"]["silence_duration_ms"] == 500
    assert inp["turn_detection"]["threshold"] == 0.5  # defaults filled in
    assert inp["format"] == {"type": "audio/pcm", "rate": 24000}  # untouched
    assert ev["session"]["include"] == ["item.input_audio_transcription.logprobs"]
    peer.send({"type": "session.update", "session": {
        "type": "transcription", "audio": {"input": {"noise_reduction": {"type": "far_field"}}}}})
    inp = peer.expect("session.updated")["session"]["audio"]["input"]
    assert inp["noise_reduction"] == {"type": "far_field"}
    assert inp["transcription"]["model"] == "whisper-1"  # kept from the first update


@pytest.mark.parametrize("session, code, param", [
    ({"audio": {}}, "missing_required_parameter", "session.type"),
    ({"type": "realtime"}, "invalid_value", "session.type"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm",
                                                               "rate": 16000}}}},
     "integer_below_min_value", "session.audio.input.format.rate"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/flac"}}}},
     "invalid_value", "session.audio.input.format.type"),
    ({"type": "transcription", "voice": "marin"}, "unknown_parameter", "session.voice"),
    ({"type": "transcription", "audio": {"input": {"transcription": {"model": ""}}}},
     "invalid_value", "session.audio.input.transcription.model"),
    ({"type": "transcription", "audio": {"input": {"transcription": {"model": "whisper-1",
                                                                      "delay": "soon"}}}},
     "invalid_value", "session.audio.input.transcription.delay"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "client_vad"}}}},
     "invalid_value", "session.audio.input.turn_detection.type"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {
        "type": "server_vad", "threshold": 1.5}}}},
     "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
])
def test_invalid_session_update_is_an_error_and_nothing_is_applied(peer, session, code, param):
    # valid parts in the same update must not be applied either
    session = json.loads(json.dumps(session))
    session.setdefault("include", ["item.input_audio_transcription.logprobs"])
    peer.send({"type": "session.update", "session": session, "event_id": "evt_upd"})
    err = peer.expect("error")["error"]
    assert (err["code"], err["param"], err["event_id"]) == (code, param, "evt_upd")
    peer.send({"type": "session.update", "session": {"type": "transcription"}})
    after = peer.expect("session.updated")["session"]
    assert after["include"] is None
    assert after["audio"]["input"]["transcription"] is None


def test_rejected_update_means_no_transcripts(peer):
    peer.send({"type": "session.update", "session": {"type": "transcription", "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 16000},
                  "transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": None}}}})
    peer.expect("error")
    peer.append(tone(300))
    peer.send({"type": "input_audio_buffer.commit"})
    got = peer.until("conversation.item.done")
    assert types(got) == ["input_audio_buffer.speech_started", "input_audio_buffer.committed",
                          "conversation.item.added", "conversation.item.done"]
    assert peer.quiet(0.3) == []  # no transcription events without a transcription model


# ---- input audio buffer -------------------------------------------------------------------


def test_commit_needs_100_ms_and_reports_the_real_amount(peer):
    configure(peer)
    peer.append(silence(50))
    peer.send({"type": "input_audio_buffer.commit", "event_id": "evt_c1"})
    err = peer.expect("error")["error"]
    assert err["code"] == "input_audio_buffer_commit_empty"
    assert err["event_id"] == "evt_c1"
    assert "50.00ms" in err["message"]
    peer.append(silence(50))  # 100 ms in total now
    peer.send({"type": "input_audio_buffer.commit"})
    peer.expect("input_audio_buffer.committed")


def test_clear_empties_the_buffer(peer):
    configure(peer)
    peer.append(silence(500))
    peer.send({"type": "input_audio_buffer.clear"})
    peer.expect("input_audio_buffer.cleared")
    peer.send({"type": "input_audio_buffer.commit"})
    assert "0.00ms" in peer.expect("error")["error"]["message"]


def test_commits_chain_previous_item_id_and_items_are_user_audio(peer):
    configure(peer)
    committed = []
    for _ in range(3):
        peer.append(silence(200))
        peer.send({"type": "input_audio_buffer.commit"})
        got = peer.until("conversation.item.input_audio_transcription.completed")
        assert types(got)[:3] == ["input_audio_buffer.committed", "conversation.item.added",
                                  "conversation.item.done"]
        committed.append(got[0])
        item = got[1]["item"]
        assert item["id"] == got[0]["item_id"]
        assert (item["type"], item["role"], item["status"]) == ("message", "user", "completed")
        assert item["content"] == [{"type": "input_audio", "transcript": None}]
        assert got[1]["previous_item_id"] == got[0]["previous_item_id"]
    assert committed[0]["previous_item_id"] is None
    assert committed[1]["previous_item_id"] == committed[0]["item_id"]
    assert committed[2]["previous_item_id"] == committed[1]["item_id"]
    assert len({c["item_id"] for c in committed}) == 3


# ---- transcription ------------------------------------------------------------------------


def test_deltas_then_completed_with_duration_usage(peer):
    configure(peer)
    peer.append(silence(1200))
    peer.send({"type": "input_audio_buffer.commit"})
    got = peer.until("conversation.item.input_audio_transcription.completed")
    item_id = got[0]["item_id"]
    deltas = [e for e in got if e["type"].endswith("transcription.delta")]
    assert [d["delta"] for d in deltas] == ["hello", " world"]
    assert all(d["item_id"] == item_id and d["content_index"] == 0 for d in deltas)
    done = got[-1]
    assert done["transcript"] == "hello world"
    assert done["usage"] == {"type": "duration", "seconds": 2}  # 1.2 s rounded up
    assert "logprobs" not in done


def test_logprobs_when_included(peer):
    configure(peer, include=["item.input_audio_transcription.logprobs"])
    peer.append(silence(200))
    peer.send({"type": "input_audio_buffer.commit"})
    got = peer.until("conversation.item.input_audio_transcription.completed")
    first = next(e for e in got if e["type"].endswith(".delta"))
    assert first["logprobs"][0]["token"] == "hello"
    assert first["logprobs"][0]["bytes"] == list(b"hello")
    assert [lp["token"] for lp in got[-1]["logprobs"]] == ["hello", " world"]


def test_default_recognizer_describes_any_audio():
    with RealtimeServer() as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p)
        p.append(noise(340))
        p.send({"type": "input_audio_buffer.commit"})
        done = p.until("conversation.item.input_audio_transcription.completed")[-1]
        assert done["transcript"] == "340 ms of audio"
        p.close()


def test_recognizer_failure_gives_failed_event():
    rec = ScriptedRecognizer(["ok", TranscriptionError("model overloaded", code="overloaded")],
                             failures=[2])
    with RealtimeServer(recognizer=rec) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p)
        results = []
        for end in ("completed", "failed", "failed"):
            p.append(silence(150))
            p.send({"type": "input_audio_buffer.commit"})
            results.append(p.until(f"conversation.item.input_audio_transcription.{end}"))
        assert results[0][-1]["transcript"] == "ok"
        err1 = results[1][-1]["error"]
        assert (err1["type"], err1["code"], err1["message"]) == (
            "transcription_error", "overloaded", "model overloaded")
        assert results[2][-1]["error"]["code"] == "transcription_failed"
        assert results[2][-1]["item_id"] == results[2][0]["item_id"]
        p.close()


def test_completions_can_arrive_out_of_order():
    rec = ScriptedRecognizer(["slow first", "quick second"], delays=[1.0, 0.0])
    with RealtimeServer(recognizer=rec) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p)
        for _ in range(2):
            p.append(silence(150))
            p.send({"type": "input_audio_buffer.commit"})
        got = p.until("conversation.item.input_audio_transcription.completed",
                      where=lambda e: e["transcript"] == "slow first")
        committed = [e["item_id"] for e in got if e["type"] == "input_audio_buffer.committed"]
        done = [(e["item_id"], e["transcript"]) for e in got
                if e["type"].endswith("transcription.completed")]
        assert done == [(committed[1], "quick second"), (committed[0], "slow first")]
        p.close()


def test_streaming_recognizer_sends_deltas_before_commit():
    rec = ScriptedRecognizer(["one two three four"], streaming=True)
    with RealtimeServer(recognizer=rec) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p, model="gpt-live-transcribe")
        p.append(silence(600))
        early = p.until("conversation.item.input_audio_transcription.delta",
                        where=lambda e: e["delta"] == " three")
        assert "input_audio_buffer.committed" not in types(early)
        p.send({"type": "input_audio_buffer.commit"})
        rest = p.until("conversation.item.input_audio_transcription.completed")
        item_id = rest[0]["item_id"]
        assert rest[0]["type"] == "input_audio_buffer.committed"
        deltas = [e for e in early + rest if e["type"].endswith(".delta")]
        assert {d["item_id"] for d in deltas} == {item_id}  # early deltas carry the item id
        assert "".join(d["delta"] for d in deltas) == "one two three four"
        assert [d["delta"] for d in rest if d["type"].endswith(".delta")] == [" four"]
        assert rest[-1]["transcript"] == "one two three four"
        p.close()


def test_split_words_keeps_text_intact():
    for text in ["", "a", " a b  c ", "hello, world!\n", "   "]:
        assert "".join(split_words(text)) == text


# ---- server VAD ---------------------------------------------------------------------------


def test_server_vad_gives_two_turns_from_speech_pause_speech():
    rec = ScriptedRecognizer(["first", "second"])
    with RealtimeServer(recognizer=rec) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p, turn_detection={"type": "server_vad", "silence_duration_ms": 300,
                                     "prefix_padding_ms": 100})
        audio = silence(500) + tone(700) + silence(600) + noise(500) + silence(600)
        p.append(audio, chunk_ms=40)
        got = p.until("conversation.item.input_audio_transcription.completed",
                      where=lambda e: e["transcript"] == "second")
        seq = [t for t in types(got) if t.startswith("input_audio_buffer.")]
        assert seq == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                       "input_audio_buffer.committed"] * 2
        starts = [e for e in got if e["type"] == "input_audio_buffer.speech_started"]
        stops = [e for e in got if e["type"] == "input_audio_buffer.speech_stopped"]
        commits = [e for e in got if e["type"] == "input_audio_buffer.committed"]
        for start, stop, commit in zip(starts, stops, commits):
            assert start["item_id"] == stop["item_id"] == commit["item_id"]
        # onsets at 500 and 1800 ms, minus 100 ms of prefix padding
        assert abs(starts[0]["audio_start_ms"] - 400) <= 40
        assert abs(starts[1]["audio_start_ms"] - 1700) <= 40
        # ends include the 300 ms of silence
        assert abs(stops[0]["audio_end_ms"] - 1500) <= 40
        assert abs(stops[1]["audio_end_ms"] - 2600) <= 40
        assert commits[1]["previous_item_id"] == commits[0]["item_id"]
        # each committed item holds the audio up to audio_end_ms; the rest stayed buffered
        assert len(rec.calls[0]) == stops[0]["audio_end_ms"] * 48
        assert len(rec.calls[1]) == (stops[1]["audio_end_ms"] - stops[0]["audio_end_ms"]) * 48
        p.close()


def test_manual_commit_during_speech_gives_no_speech_stopped():
    with RealtimeServer() as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p, turn_detection={"type": "server_vad"})
        p.append(tone(400))
        p.send({"type": "input_audio_buffer.commit"})
        got = p.until("conversation.item.input_audio_transcription.completed")
        assert types(got)[:2] == ["input_audio_buffer.speech_started",
                                  "input_audio_buffer.committed"]
        assert got[0]["item_id"] == got[1]["item_id"]
        assert "input_audio_buffer.speech_stopped" not in types(got)
        p.append(silence(500))
        assert "input_audio_buffer.speech_stopped" not in types(p.quiet(0.3))
        p.close()


def test_energy_vad_threshold_padding_and_silence():
    quiet_tone = tone(300, amplitude=0.003)  # about -53 dBFS
    vad = EnergyVad(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=200)
    assert vad.feed(silence(200) + quiet_tone + silence(300)) == []
    sensitive = EnergyVad(threshold=0.1, prefix_padding_ms=50, silence_duration_ms=200)
    assert sensitive.feed(silence(200) + quiet_tone + silence(300)) == [
        ("speech_started", 150), ("speech_stopped", 700)]
    # audio fed in odd-sized pieces gives the same answer
    odd = EnergyVad(threshold=0.5, prefix_padding_ms=0, silence_duration_ms=100)
    audio = silence(100) + tone(200) + silence(150)
    events = []
    for i in range(0, len(audio), 999):
        events += odd.feed(audio[i:i + 999])
    assert events == [("speech_started", 100), ("speech_stopped", 400)]
    # a pause shorter than silence_duration_ms does not end the turn
    long_pause = EnergyVad(silence_duration_ms=500, prefix_padding_ms=0)
    assert [k for k, _ in long_pause.feed(tone(200) + silence(300) + tone(200) + silence(600))
            ] == ["speech_started", "speech_stopped"]


def test_custom_vad_factory_is_used():
    seen = []

    class EveryChunkIsATurn:
        def __init__(self) -> None:
            self.ms = 0

        def feed(self, pcm16):
            start = self.ms
            self.ms += len(pcm16) // 48
            return [("speech_started", start), ("speech_stopped", self.ms)]

    def factory(td):
        seen.append(td)
        return EveryChunkIsATurn() if td else None

    with RealtimeServer(vad_factory=factory) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p, turn_detection={"type": "semantic_vad", "eagerness": "high"})
        p.append(silence(120), chunk_ms=120)
        got = p.until("conversation.item.input_audio_transcription.completed")
        assert got[-1]["transcript"] == "120 ms of audio"
        assert seen[-1] == {"type": "semantic_vad", "eagerness": "high"}
        p.close()


def test_g711_input_is_converted_to_pcm16_24k():
    rec = ScriptedRecognizer()
    with RealtimeServer(recognizer=rec) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        p.send({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": None,
                      "transcription": {"model": "whisper-1"}}}}})
        assert p.expect("session.updated")["session"]["audio"]["input"]["format"] == {
            "type": "audio/pcmu"}
        p.append(b"\xff" * 1600, chunk_ms=1000)  # 200 ms of mu-law silence at 8 kHz
        p.send({"type": "input_audio_buffer.commit"})
        done = p.until("conversation.item.input_audio_transcription.completed")[-1]
        assert done["transcript"] == "200 ms of audio"
        assert rec.calls[0] == bytes(200 * 48)
        p.close()


# ---- expiry -------------------------------------------------------------------------------


def test_session_expires_with_error_then_1001():
    with RealtimeServer(session_duration=1) as srv:
        p = Peer(srv.url)
        created = p.expect("session.created")
        assert abs(created["session"]["expires_at"] - (time.time() + 1)) <= 2
        events = p.until_closed(timeout=10)
        assert [e["error"]["code"] for e in events] == ["session_expired"]
        assert p.close_code == 1001
        assert p.close_reason == "Your session hit the maximum duration of 1 second."
        assert events[0]["error"]["message"] == p.close_reason


def test_default_expiry_message_is_openais():
    from realtime_sync.server import expiry_message

    assert expiry_message(3600) == "Your session hit the maximum duration of 60 minutes."


# ---- FakeRealtimeServer: recording, replies, fault switches -------------------------------


def test_received_records_every_client_event_in_order(fake):
    a = Peer(fake.url)
    a.expect("session.created")
    a.send({"type": "input_audio_buffer.clear", "event_id": "a1"})
    a.expect("input_audio_buffer.cleared")
    b = Peer(fake.url)
    b.expect("session.created")
    b.send({"type": "input_audio_buffer.clear", "event_id": "b1"})
    b.expect("input_audio_buffer.cleared")
    assert [e["event_id"] for e in fake.received] == ["a1", "b1"]
    assert fake.connection_count == 2
    assert len(fake.connections) == 2
    assert [e["event_id"] for e in fake.received_on(0)] == ["a1"]
    assert [e["event_id"] for e in fake.received_on(-1)] == ["b1"]
    a.close()
    b.close()


def test_wait_received_blocks_until_the_event_arrives(fake, peer):
    threading.Timer(0.1, peer.send, args=({"type": "input_audio_buffer.clear", "n": 1},)).start()
    got = fake.wait_received("input_audio_buffer.clear", timeout=5)
    assert got["n"] == 1
    with pytest.raises(TimeoutError):
        fake.wait_received("input_audio_buffer.clear", timeout=0.2, count=2)


def test_reply_adds_events_after_or_instead_of_the_default(fake, peer):
    fake.reply("input_audio_buffer.clear", {"type": "x.extra", "n": 1}, times=1)
    peer.send({"type": "input_audio_buffer.clear"})
    assert types(peer.until("x.extra")) == ["input_audio_buffer.cleared", "x.extra"]
    fake.reply("input_audio_buffer.clear",
               lambda ev, conn: [{"type": "x.instead", "echo": ev["event_id"]}], replace=True)
    peer.send({"type": "input_audio_buffer.clear", "event_id": "e9"})
    assert peer.expect("x.instead")["echo"] == "e9"
    assert peer.quiet(0.2) == []  # no cleared: the default was replaced
    fake.clear_replies()
    peer.send({"type": "input_audio_buffer.clear"})
    peer.expect("input_audio_buffer.cleared")


def test_fail_next_session_update(fake, peer):
    fake.fail_next_session_update(code="invalid_value", message="nope", param="session.x")
    peer.send({"type": "session.update", "event_id": "u1",
               "session": {"type": "transcription", "include": None}})
    err = peer.expect("error")["error"]
    assert (err["code"], err["message"], err["param"], err["event_id"]) == (
        "invalid_value", "nope", "session.x", "u1")
    peer.send({"type": "session.update", "session": {"type": "transcription"}})
    peer.expect("session.updated")  # only the next one fails


def test_send_event_and_send_raw(fake, peer):
    fake.send_event({"type": "x.custom", "n": 7})
    ev = peer.expect("x.custom")
    assert ev["n"] == 7 and ev["event_id"].startswith("event_")
    fake.send_raw("not json at all")
    peer.ws.settimeout(5)
    assert peer.ws.recv() == "not json at all"
    fake.send_raw(b"\x01\x02")
    opcode, data = peer.ws.recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"\x01\x02")


def test_close_with_code_and_reason(fake, peer):
    closer = threading.Thread(target=fake.close, args=(4001, "scripted close"))
    closer.start()  # close() waits for the client's answer, which comes from until_closed()
    assert peer.until_closed() == []
    closer.join(5)
    assert (peer.close_code, peer.close_reason) == (4001, "scripted close")
    deadline = time.monotonic() + 5
    while fake.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.connections == []


def test_drop_cuts_tcp_without_a_close_frame(fake, peer):
    fake.drop()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        peer.recv(5)
    assert peer.close_code is None


def test_stall_stops_reading_writing_and_pongs_then_resumes(fake, peer):
    fake.stall(1.5)
    peer.ws.ping(b"hb")
    peer.send({"type": "input_audio_buffer.clear"})
    peer.ws.settimeout(0.5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        peer.ws.recv_data_frame(control_frame=True)  # neither pong nor event while stalled
    peer.ws.settimeout(5)
    frames = [peer.ws.recv_data_frame(control_frame=True)[1] for _ in range(2)]
    opcodes = sorted(f.opcode for f in frames)
    assert opcodes == sorted([websocket.ABNF.OPCODE_PONG, websocket.ABNF.OPCODE_TEXT])


def test_pings_can_go_unanswered(fake, peer):
    fake.stop_answering_pings()
    peer.ws.ping(b"1")
    peer.ws.settimeout(0.4)
    with pytest.raises(websocket.WebSocketTimeoutException):
        peer.ws.recv_data_frame(control_frame=True)
    fake.answer_pings()
    peer.ws.ping(b"2")
    peer.ws.settimeout(5)
    opcode, frame = peer.ws.recv_data_frame(control_frame=True)
    assert (opcode, frame.data) == (websocket.ABNF.OPCODE_PONG, b"2")


def test_expire_after(fake, peer):
    fake.expire_after(0.2)
    events = peer.until_closed()
    assert [e["error"]["code"] for e in events] == ["session_expired"]
    assert peer.close_code == 1001
    assert peer.close_reason == "Your session hit the maximum duration of 60 minutes."


def test_wait_connections_sees_reconnects(fake):
    a = Peer(fake.url)
    a.expect("session.created")
    fake.drop()
    b = Peer(fake.url)
    conn = fake.wait_connections(2)
    assert conn.session is not None and fake.connection_count == 2
    b.close()
    a.close()


def test_stop_joins_every_server_thread():
    def server_threads():
        return [t for t in threading.enumerate() if t.name.startswith("rs-server-")]

    before = set(server_threads())
    srv = FakeRealtimeServer(recognizer=ScriptedRecognizer(delays=[0.2])).start()
    peers = [Peer(srv.url) for _ in range(3)]
    for p in peers:
        p.expect("session.created")
        configure(p)
        p.append(silence(150))
        p.send({"type": "input_audio_buffer.commit"})
    srv.stall(30)  # a stall must not hold up stop()
    srv.stop(timeout=10)
    assert [t.name for t in server_threads() if t not in before] == []
    for p in peers:
        p.close()


def test_importing_the_package_and_testing_does_not_import_websockets():
    import subprocess
    import sys

    code = ("import sys, realtime_sync, realtime_sync.testing; "
            "assert 'websockets' not in sys.modules, 'websockets imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

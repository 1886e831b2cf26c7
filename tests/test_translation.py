"""Live translation (:class:`realtime_sync.Translator`) against the local server's translation
protocol (``/v1/realtime/translations``), and the server's side of that protocol.

The scripted engine says one scripted phrase per run of voiced frames, a word per voiced 200 ms
frame and the rest at the first silent frame, with the frame's ``elapsed_ms``; so a tone fed at
a known place in the audio must come back as a cue starting there.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from server_helpers import Peer, b64

import realtime_sync as rs
from realtime_sync.server import RealtimeServer, ScriptedTranslator, tone
from realtime_sync.translation import FRAME_BYTES, build_translation_session

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")

pytestmark = pytest.mark.timeout(60)

SCHEMA = Path(__file__).parent / "data" / "realtime-translation.schema.json"
PHRASES = ["Hola mundo.", "Adiós amigos."]
SOURCES = ["Hello world.", "Goodbye friends."]
FAST = rs.Backoff(initial=0.05, jitter=0)


def silence(ms: int) -> bytes:
    return bytes(48 * ms)


class Schema:
    """The translation schema: per-type validation plus a check for undeclared fields (the real
    server refuses unknown parameters; the spec sets no additionalProperties)."""

    def __init__(self) -> None:
        self.doc = json.loads(SCHEMA.read_text(encoding="utf-8"))
        resource = referencing.Resource.from_contents(self.doc)
        self.registry = referencing.Registry().with_resource(self.doc["$id"], resource)

    def _node(self, pointer: str) -> Any:
        node: Any = self.doc
        for part in pointer.lstrip("#").split("/")[1:]:
            node = node[part]
        return node

    def _deref(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self._node(node["$ref"])
        return node

    def _unknown(self, value: Any, node: Any, path: str) -> List[str]:
        node = self._deref(node)
        if not isinstance(node, dict) or not isinstance(value, dict):
            return []
        if "anyOf" in node:
            return [p for n in node["anyOf"] if self._deref(n).get("type") == "object"
                    for p in self._unknown(value, n, path)]
        props = node.get("properties")
        if props is None:
            return []
        found = [f"{path}{k}" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                found += self._unknown(v, props[k], f"{path}{k}.")
        return found

    def problems(self, event: Dict[str, Any], side: str) -> List[str]:
        pointer = self.doc["x-event-index"][side].get(event.get("type"))
        if pointer is None:
            if side == "server" and event.get("type") == "error":
                pointer = "#/$defs/RealtimeServerEventError"
            else:
                return [f"{event.get('type')!r} is not a translation {side} event"]
        validator = jsonschema.Draft202012Validator({"$ref": self.doc["$id"] + pointer},
                                                    registry=self.registry)
        found = [e.message for e in validator.iter_errors(event)]
        if side == "client":
            found += [f"unknown field {f}" for f in self._unknown(event, self._node(pointer), "")]
        return found


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema()


@pytest.fixture
def engine() -> ScriptedTranslator:
    return ScriptedTranslator(PHRASES, SOURCES)


@pytest.fixture
def srv(engine):
    with RealtimeServer(translator=engine, record=True) as s:
        yield s


def translator(srv: RealtimeServer, **kw: Any) -> rs.Translator:
    kw.setdefault("reconnect", FAST)
    return rs.Translator(url=srv.url, api_key="sk-local", **kw)


def appended_ms(conn: Any) -> int:
    import base64
    return sum(len(base64.b64decode(e["audio"])) for e in conn.received
               if e.get("type") == "session.input_audio_buffer.append") // 48


# -- the client ---------------------------------------------------------------------------------
def test_translates_speech_into_timed_cues_and_every_event_conforms(srv, schema):
    seen: List[Dict[str, Any]] = []
    partial: List[rs.Cue] = []
    tr = translator(srv, to="es", source_transcript=True, on_text=partial.append)
    tr.on("*", seen.append)  # before start(): nothing is missed
    with tr:
        tr.feed(tone(600) + silence(400) + tone(400) + silence(200))
        result = tr.finish(timeout=10)
    assert result.text == "Hola mundo. Adiós amigos."
    assert result.source_text == "Hello world. Goodbye friends."
    # cues start where their speech is in the fed audio (elapsed_ms of 200 ms frames)
    assert [(c.text, c.start_ms) for c in result.cues] == [("Hola mundo.", 0),
                                                          ("Adiós amigos.", 1000)]
    assert all(c.end_ms > c.start_ms for c in result.cues)
    assert [c.start_ms for c in result.source_cues] == [0, 1000]
    # on_text: the growing cue, then the final one, in order
    assert [(c.text, c.final) for c in partial] == [
        ("Hola", False), ("Hola mundo.", True), ("Adiós", False), ("Adiós amigos.", True)]
    types = [e["type"] for e in seen if not e["type"].startswith("client.")]
    assert types[:2] == ["session.created", "session.updated"]
    assert types[-1] == "session.closed"
    assert {"session.output_transcript.delta", "session.input_transcript.delta",
            "session.output_audio.delta"} <= set(types)
    for event in seen:
        if not event["type"].startswith("client."):
            assert not schema.problems(dict(event), "server"), event
    conn_events = srv.connections[0].received if srv.connections else None
    del conn_events


def test_every_client_event_validates_against_the_translation_schema(srv, schema):
    received: List[Dict[str, Any]] = []
    srv.after = lambda conn, event: received.append(event)
    with translator(srv, to="fr", source_transcript="gpt-4o-transcribe",
                    noise_reduction="far_field") as tr:
        tr.feed(tone(300))  # not a whole frame: the tail goes out at finish()
        tr.finish(timeout=10)
    types = [e["type"] for e in received]
    assert types[0] == "session.update"
    assert types[-1] == "session.close"
    assert "session.input_audio_buffer.append" in types
    for event in received:
        assert not schema.problems(event, "client"), event
    assert received[0]["session"] == {"audio": {
        "input": {"transcription": {"model": "gpt-4o-transcribe"},
                  "noise_reduction": {"type": "far_field"}},
        "output": {"language": "fr"}}}
    # appends are 200 ms frames; only the last one (the flushed tail) is shorter
    import base64
    sizes = [len(base64.b64decode(e["audio"])) for e in received
             if e["type"] == "session.input_audio_buffer.append"]
    assert all(s == FRAME_BYTES for s in sizes[:-1]) and 0 < sizes[-1] <= FRAME_BYTES


def test_connects_to_the_translations_path_with_the_model(srv):
    with translator(srv, model="gpt-realtime-translate") as tr:
        assert "/v1/realtime/translations?model=gpt-realtime-translate" in tr.url
        assert tr.client.intent == "translation"
        path = srv.connections[0].path
        assert path.startswith("/v1/realtime/translations?") and "intent" not in path


def test_silence_keeps_the_stream_alive_while_idle(srv):
    conn_ms: List[int] = []
    with translator(srv, to="es") as tr:
        tr.feed(tone(400))
        time.sleep(1.6)  # nothing fed: the translator fills the gap with silence
        tr.feed(tone(400))
        result = tr.finish(timeout=10)
        conn_ms.append(appended_ms(srv.connections[0]) if srv.connections else -1)
    # the wall clock ran 1.6 s past the first 400 ms of tone (which it covered too)
    assert tr.silence_ms >= 1600 - 400 - 2 * tr.idle_slack_ms
    # the server's model time has no gap: the second phrase starts after the idle time
    assert result.cues[1].start_ms >= 1600 - 2 * tr.idle_slack_ms
    assert result.cues[1].start_ms == 400 + tr.silence_ms


def test_finish_flushes_speech_still_in_progress(srv):
    with translator(srv, to="es") as tr:
        tr.feed(tone(500))  # speech to the very end: no silent frame closes the phrase
        result = tr.finish(timeout=10)
        with pytest.raises(rs.NotConnectedError):
            tr.feed(tone(200))
    assert result.text == "Hola mundo."
    assert result.cues[0].final


def test_iterating_yields_the_translated_text_as_it_grows(srv):
    with translator(srv, to="es") as tr:
        tr.feed(tone(600) + silence(400) + tone(400))
        done = threading.Thread(target=tr.finish, kwargs={"timeout": 10})
        done.start()
        pieces = list(tr)
        done.join(10)
    assert "".join(pieces) == "Hola mundo. Adiós amigos."


def test_translated_speech_reaches_on_audio_and_the_result(srv):
    chunks: List[Any] = []
    with translator(srv, to="es", on_audio=lambda pcm, ms: chunks.append((len(pcm), ms)),
                    keep_audio=True) as tr:
        tr.feed(tone(600) + silence(200))
        result = tr.finish(timeout=10)
    assert [ms for _, ms in chunks] == [0, 200, 400]
    assert result.audio is not None and len(result.audio) == sum(n for n, _ in chunks)


def test_a_target_language_the_server_refuses_fails_start(engine):
    engine.languages = ["es"]
    with RealtimeServer(translator=engine) as srv:
        tr = translator(srv, to="de")
        with pytest.raises(rs.ConfigurationError, match="cannot translate into 'de'"):
            tr.start()
        tr.close()


def test_bad_arguments_are_refused():
    with pytest.raises(rs.ConfigurationError):
        rs.Translator(noise_reduction="loud")
    with pytest.raises(TypeError):
        rs.Translator(to="")
    with pytest.raises(TypeError):
        rs.Translator(on_text="print")
    with pytest.raises(rs.ConfigurationError):
        rs.Translator(url="wss://example.com/v1/other")
    with pytest.raises(rs.ConfigurationError, match="gpt-realtime-translate"):
        rs.Translator(model="gpt-4o-transcribe")
    with pytest.raises(rs.ConfigurationError, match="transcription model"):
        rs.Translator(source_transcript="gpt-realtime-translate")
    assert build_translation_session(to="es", source_transcript=True) == {
        "audio": {"input": {"transcription": {"model": "gpt-realtime-whisper"}},
                  "output": {"language": "es"}}}


# -- reconnects and the session limit -------------------------------------------------------------
def _drop_at(append_number: int, how: str):
    count = {"n": 0}

    def before(conn: Any, event: Dict[str, Any]) -> bool:
        if conn.number != 1:
            return False
        if count["n"] >= append_number:
            return True  # a dead socket's buffered frames: never handled
        if event.get("type") != "session.input_audio_buffer.append":
            return False
        count["n"] += 1
        if count["n"] == append_number:
            # everything before this frame is translated and on its way to the client
            conn.session.wait_idle()
            time.sleep(0.2)
            if how == "drop":
                conn.drop()
            else:
                conn.session.expire()
            return True
        return False
    return before


@pytest.mark.parametrize("how", ["drop", "expire"])
def test_a_lost_session_resumes_on_a_new_one_without_losing_audio(srv, how):
    srv.before = _drop_at(7, how)  # inside the second phrase (frames 5-7 are voiced)
    with translator(srv, to="es", source_transcript=True) as tr:
        tr.feed(tone(600) + silence(400) + tone(600) + silence(400))
        result = tr.finish(timeout=15)
    assert srv.connection_count == 2
    assert result.text == "Hola mundo. Adiós amigos."
    assert result.source_text == "Hello world. Goodbye friends."
    starts = [c.start_ms for c in result.cues]
    assert starts == sorted(starts) and starts[0] == 0 and starts[1] >= 1000
    ends = [c.end_ms for c in result.cues]
    assert all(a <= b for a, b in zip(ends, starts[1:]))


def test_the_session_moves_on_before_it_expires(engine):
    srv = RealtimeServer(translator=engine, session_duration=3600)
    # a margin close to the whole session: the rollover is due soon, at a cue boundary
    with srv, translator(srv.start(), to="es", rollover_margin=3599.5) as tr:
        srv.options.session_duration = 7200  # the next session is not due at once
        tr.feed(tone(600) + silence(400))
        deadline = time.monotonic() + 10
        while srv.connection_count < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        tr.feed(tone(400))
        result = tr.finish(timeout=10)
    assert srv.connection_count >= 2
    assert result.text == "Hola mundo. Adiós amigos."
    starts = [c.start_ms for c in result.cues]
    assert starts == sorted(starts)


# -- the server ----------------------------------------------------------------------------------
def _peer(srv: RealtimeServer) -> Peer:
    return Peer(srv.url + "/translations", intent=None, model="gpt-realtime-translate")


def _recv_until(peer: Peer, type_: str, timeout: float = 5.0) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = json.loads(peer.ws.recv())
        out.append(event)
        if event["type"] == type_:
            return out
    raise AssertionError(f"no {type_} in {[e['type'] for e in out]}")


def test_server_refuses_events_outside_the_translation_protocol(srv, schema):
    peer = _peer(srv)
    try:
        assert json.loads(peer.ws.recv())["type"] == "session.created"
        bad = [
            ({"type": "input_audio_buffer.append", "audio": ""}, "invalid_event"),
            ({"type": "session.input_audio_buffer.append", "audio": "%%%"}, "invalid_value"),
            ({"type": "session.input_audio_buffer.append"}, "missing_required_parameter"),
            ({"type": "session.update", "session": {"model": "x"}}, "invalid_value"),
            ({"type": "session.update", "session": {"audio": {"output": {"voice": "x"}}}},
             "unknown_parameter"),
            ({"type": "session.update", "session": {"audio": {"input": {
                "noise_reduction": {"type": "loud"}}}}}, "invalid_value"),
            ({"type": "session.close", "extra": 1}, "unknown_parameter"),
        ]
        for event, code in bad:
            if event.get("audio") != "%%%":  # the schema only says "string" for audio
                assert schema.problems(event, "client"), event  # the schema refuses them too
            peer.send(dict(event, event_id="evt_bad"))
            answer = json.loads(peer.ws.recv())
            assert answer["type"] == "error" and answer["error"]["code"] == code, (event, answer)
            assert answer["error"]["event_id"] == "evt_bad"
            assert not schema.problems(answer, "server")
    finally:
        peer.ws.close()


def test_server_answers_with_events_that_conform(srv, schema):
    peer = _peer(srv)
    try:
        peer.send({"type": "session.update", "session": {"audio": {
            "input": {"transcription": {"model": "gpt-realtime-whisper"}},
            "output": {"language": "es"}}}})
        peer.send({"type": "session.input_audio_buffer.append",
                   "audio": b64(tone(400) + silence(300))})
        peer.send({"type": "session.close"})
        events = _recv_until(peer, "session.closed")
    finally:
        peer.ws.close()
    types = [e["type"] for e in events]
    assert types[:2] == ["session.created", "session.updated"]
    for event in events:
        assert not schema.problems(event, "server"), event
    elapsed = [e["elapsed_ms"] for e in events if "elapsed_ms" in e]
    assert elapsed == sorted(elapsed) and all(ms % 200 == 0 for ms in elapsed)
    text = "".join(e["delta"] for e in events if e["type"] == "session.output_transcript.delta")
    assert text == "Hola mundo."


def test_server_needs_a_model_on_the_translations_path(srv):
    import websocket

    ws = websocket.create_connection(srv.url + "/translations",
                                     header=["Authorization: Bearer sk-local"], timeout=5)
    try:
        event = json.loads(ws.recv())
        assert event["type"] == "error" and event["error"]["code"] == "missing_model"
    finally:
        ws.close()


# -- a hostile peer ---------------------------------------------------------------------------
def test_a_peer_that_breaks_the_protocol_cannot_hang_finish():
    """A server that sends garbage audio, odd elapsed_ms and closes without session.closed."""
    from websockets.sync.server import serve

    def handler(ws: Any) -> None:
        ws.send(json.dumps({"type": "session.created", "event_id": "e1", "session": {
            "id": "s", "type": "translation", "expires_at": 0, "model": "m", "audio": {}}}))
        for message in ws:
            event = json.loads(message)
            if event["type"] == "session.update":
                ws.send(json.dumps({"type": "session.updated", "event_id": "e2",
                                    "session": {"id": "s", "type": "translation",
                                                "expires_at": 0, "model": "m", "audio": {}}}))
                ws.send(json.dumps({"type": "session.output_audio.delta", "event_id": "e3",
                                    "delta": "not base64!", "elapsed_ms": "soon"}))
                ws.send(json.dumps({"type": "session.output_transcript.delta",
                                    "event_id": "e4", "delta": "Hola.", "elapsed_ms": -5}))
                ws.send(json.dumps({"type": "session.future_event", "event_id": "e5"}))
            if event["type"] == "session.close":
                ws.close(1000)
                return

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        tr = rs.Translator(url=f"ws://127.0.0.1:{port}/v1/realtime", api_key="sk-local",
                           reconnect=False, keepalive=False)
        try:
            tr.start()
            deadline = time.monotonic() + 5
            while not tr.text and time.monotonic() < deadline:
                time.sleep(0.02)
            assert tr.text == "Hola."
            assert tr.client.stats()["protocol_errors"] >= 1  # the bad audio, counted
            with pytest.raises(rs.NotConnectedError, match="before session.closed"):
                tr.finish(timeout=10)
        finally:
            tr.close()
            server.shutdown()
            thread.join(5)


# -- the offline engine's plumbing (any recogniser with translate(); Whisper in test_engine) -----
class FakeWhisper:
    """Stands in for WhisperRecognizer: 'translates' a phrase into its length."""

    def __init__(self) -> None:
        self.phrases: List[int] = []

    def translate(self, pcm: bytes) -> str:
        self.phrases.append(len(pcm) // 48)
        return f"Phrase {len(self.phrases)}."

    def transcribe(self, pcm: bytes) -> Any:
        yield f"Frase {len(self.phrases)}."


def test_offline_engine_translates_each_phrase_when_it_ends():
    from realtime_sync.server import WhisperTranslator, default_vad_factory

    fake = FakeWhisper()
    srv = RealtimeServer(translator=WhisperTranslator(fake, default_vad_factory)).start()
    with srv, translator(srv, to="en", source_transcript=True) as tr:
        tr.feed(tone(1000) + silence(1200) + tone(800) + silence(300))
        result = tr.finish(timeout=10)
    assert result.text == "Phrase 1. Phrase 2."
    assert result.source_text == "Frase 1. Frase 2."
    # each phrase is translated when the VAD ends it, and its cue is timed by its speech
    # (0-1000 ms and 2200-3000 ms here): within a second of the speech it translates
    assert 0 <= result.cues[0].start_ms < 1000
    assert 1500 <= result.cues[1].start_ms < 3200  # (the VAD keeps 300 ms before speech)
    assert all(c.end_ms - c.start_ms >= 1000 for c in result.cues)  # long enough to read
    assert len(fake.phrases) == 2 and all(ms >= 800 for ms in fake.phrases)


def test_offline_engine_refuses_targets_other_than_english_naming_what_works():
    from realtime_sync.server import WhisperTranslator, default_vad_factory

    with RealtimeServer(translator=WhisperTranslator(FakeWhisper(), default_vad_factory)) as srv:
        tr = translator(srv, to="es")
        with pytest.raises(rs.ConfigurationError,
                           match="English only.*'en'.*gpt-realtime-translate"):
            tr.start()
        tr.close()


@pytest.mark.local_engine
@pytest.mark.timeout(300)
def test_offline_translates_real_spanish_speech_into_english(tmp_path):
    """Real human Spanish (two telephone prompts, tests/data/translation) through the local
    server's Whisper translate task: English text, Spanish source text, cues in order."""
    from realtime_sync.server import local_translator

    try:
        engine = local_translator(None, "en")
    except rs.ConfigurationError as exc:
        pytest.skip(f"no multilingual offline model in this install: {exc}")
    import wave

    data = Path(__file__).parent / "data" / "translation"
    clip = tmp_path / "es.wav"
    with wave.open(str(clip), "wb") as out:
        for i, name in enumerate(("es_conf-getpin.wav", "es_vm-intro.wav")):
            with wave.open(str(data / name), "rb") as w:
                if i == 0:
                    out.setparams(w.getparams())
                out.writeframes(w.readframes(w.getnframes()))
                out.writeframes(bytes(2 * w.getframerate()))  # a second of silence
    with RealtimeServer(translator=engine) as srv:
        result = rs.translate_file(clip, to="en", url=srv.url, api_key="sk-local",
                                   source_transcript=True, timeout=240)
    text = result.text.lower()
    assert "conference" in text and "message" in text and "tone" in text, result.text
    source = result.source_text.lower()
    assert "conferencia" in source and "mensaje" in source, result.source_text
    starts = [c.start_ms for c in result.cues]
    assert len(starts) >= 2 and starts == sorted(starts)
    assert starts[0] < 1500  # timed by the speech it translates, not by when it was sent


def test_a_phrase_sent_at_once_becomes_readable_cues_per_sentence():
    from realtime_sync.translation import MAX_CUE_CHARS, _Cues

    cues = _Cues(source=False)
    changed = cues.add("Please leave your message after the tone. When done, hang up.", 4600)
    assert [(c.text, c.final, c.start_ms) for c in changed] == [
        ("Please leave your message after the tone.", True, 4600),
        ("When done, hang up.", True, 4600)]
    # text that came in one frame still gets its reading time (bounded), not 200 ms
    assert changed[0].end_ms == 4600 + 50 * len("Please leave your message after the tone.")
    long = " ".join(["word"] * 60)
    parts = cues.add(" " + long, 9000)
    assert all(len(c.text) <= MAX_CUE_CHARS for c in parts)
    assert " ".join(c.text.strip() for c in parts) == long
    assert str(cues.text) == "Please leave your message after the tone. When done, hang up. " + long


def test_a_drop_while_finishing_resumes_and_closes_the_new_session(srv):
    """The socket dies right after session.close (before session.closed): finish() replays the
    untranslated audio into a new session and closes that one instead."""
    def before(conn: Any, event: Dict[str, Any]) -> bool:
        if conn.number == 1 and event.get("type") == "session.close":
            conn.session.wait_idle()
            conn.drop()
            return True
        return False

    srv.before = before
    with translator(srv, to="es") as tr:
        tr.feed(tone(600) + silence(400) + tone(600))  # the second phrase is still open
        result = tr.finish(timeout=15)
    assert srv.connection_count == 2
    assert result.text == "Hola mundo. Adiós amigos."
    assert [c.start_ms for c in result.cues] == [0, 1000]


class SpanishWhisper(FakeWhisper):
    """Writes Spanish back on the first try; ``english_on_retry`` says whether naming the
    language helps (as when Whisper took the speech for English)."""

    def __init__(self, english_on_retry: bool) -> None:
        super().__init__()
        self.english_on_retry = english_on_retry
        self.languages: List[Any] = []

    def translate(self, pcm: bytes, language: Any = None) -> str:  # type: ignore[override]
        self.languages.append(language)
        if language and self.english_on_retry:
            return "Please enter your password followed by the pound key."
        return "Por favor ingrese su contraseña. Seguida por la tecla de número."


@pytest.mark.parametrize("english_on_retry", [True, False])
def test_an_untranslated_phrase_is_translated_again_or_marked(english_on_retry):
    pytest.importorskip("py3langid")
    from realtime_sync.server import WhisperTranslator, default_vad_factory

    fake = SpanishWhisper(english_on_retry)
    srv = RealtimeServer(translator=WhisperTranslator(fake, default_vad_factory)).start()
    with srv, translator(srv, to="en") as tr:
        tr.feed(tone(1500) + silence(1200))
        result = tr.finish(timeout=10)
    assert fake.languages == [None, "es"]  # the second try names the language it is in
    if english_on_retry:
        assert result.text == "Please enter your password followed by the pound key."
    else:  # never passed off as a translation: every sentence (so every cue) is marked
        assert [c.text.split()[0] for c in result.cues] == ["[untranslated]"] * 2


def test_a_phrase_is_timed_word_by_word_over_its_speech():
    from realtime_sync.server import WhisperTranslator, default_vad_factory

    class Long(FakeWhisper):
        def translate(self, pcm: bytes) -> str:
            return "one two three four five six seven eight nine ten."

    srv = RealtimeServer(translator=WhisperTranslator(Long(), default_vad_factory)).start()
    times: List[int] = []
    with srv, translator(srv, to="en") as tr:
        tr.client.on("session.output_transcript.delta", lambda e: times.append(e.elapsed_ms))
        tr.feed(silence(1000) + tone(3000) + silence(1200))
        tr.finish(timeout=10)
    assert len(times) == 10 and times == sorted(times)  # never backwards
    assert 400 <= times[0] <= 1000 and times[-1] >= 3000  # the span of the speech
    assert all(t % 200 == 0 for t in times)  # on the 200 ms frame grid


def test_a_long_sentence_is_never_split_into_an_orphan_tail():
    from realtime_sync.translation import MAX_CUE_CHARS, ORPHAN_CHARS, _Cues

    sentence = ("Please enter the number of your conference room followed by the pound key "
                "and wait for the tone now.")
    assert MAX_CUE_CHARS < len(sentence) <= MAX_CUE_CHARS + ORPHAN_CHARS
    cues = _Cues(source=False)
    for i, word in enumerate(sentence.split(" ")):
        cues.add((" " if i else "") + word, 200 * i)
    assert [c.text for c in cues.done] == [sentence]

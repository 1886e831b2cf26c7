"""Against the real OpenAI service: run with ``OPENAI_API_KEY=... pytest -m live``.

Skipped without a key (and deselected by ``scripts/test.sh``: CI has no network)."""

from __future__ import annotations

import os
import time
from array import array
from pathlib import Path

import pytest

import realtime_sync as rs

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="needs OPENAI_API_KEY"),
]

HELLO = Path(__file__).resolve().parent.parent / "examples" / "audio" / "hello.wav"


def test_transcribe_a_file_with_openai():
    transcript = rs.transcribe_file(HELLO, model="gpt-4o-mini-transcribe", language="en",
                                    timeout=120)
    assert "hello" in transcript.text.lower()


def test_a_bad_key_is_an_authentication_error():
    client = rs.RealtimeClient(intent="transcription", api_key="sk-invalid-for-test-000000")
    with pytest.raises(rs.AuthenticationError):
        client.connect(timeout=30)


def test_ask_a_text_question():
    with rs.RealtimeClient(model="gpt-realtime",
                           session={"type": "realtime", "output_modalities": ["text"]}) as c:
        answer = c.ask("Reply with the single word: pong", timeout=60)
    assert "pong" in answer.text.lower()


def test_translate_a_file_into_spanish_with_openai():
    result = rs.translate_file(HELLO, to="es", source_transcript=True, speech=True, timeout=120)
    assert result.text, "no translated text"
    assert "hello" in result.source_text.lower()
    starts = [c.start_ms for c in result.cues]
    assert starts == sorted(starts)
    assert result.audio, "no translated speech"


def test_translator_keeps_an_idle_session_alive_with_silence():
    import time

    with rs.Translator(to="fr") as tr:
        time.sleep(3)  # nothing fed: the translator sends silence, the session stays open
        assert tr.client.connected and tr.silence_ms > 0
        result = tr.finish(timeout=60)
    assert result.language == "fr"


# -- the model catalogue against the real service (issue 10) ------------------------------------
# Each test states one rule of realtime_sync.models; a failure means the catalogue (or the local
# server that copies it) no longer matches OpenAI and must be updated.
def _live_models():
    from realtime_sync import models

    return [m for m in models.models("transcription", include_deprecated=False)]


def _options_for(info):
    from realtime_sync import models

    given = {"language": "en", "languages": ["en"], "keywords": ["hello"],
             "prompt": "a short greeting", "delay": "low"}
    options = {k: v for k, v in given.items() if models.takes_option(info.name, k)}
    if "language" in options and "languages" in options:
        del options["language"]
    return options


def test_the_defaults_work_and_have_no_announced_shutdown():
    transcript = rs.transcribe_file(HELLO, timeout=120)  # gpt-live-transcribe, client_vad
    assert "hello" in transcript.text.lower()
    with rs.RealtimeClient(session={"type": "realtime", "output_modalities": ["text"]}) as c:
        assert "model=gpt-realtime-2.1" in c.url
        answer = c.ask("Reply with the single word: pong", timeout=60)
    assert "pong" in answer.text.lower()


@pytest.mark.parametrize("info", _live_models(), ids=lambda m: m.name)
def test_each_model_accepts_every_option_the_catalogue_says_it_takes(info):
    tr = rs.Transcriber(model=info.name, turn_detection=None,
                        noise_reduction={"type": "near_field", "strength": 0.5},
                        include_logprobs=True, **_options_for(info))
    tr.start(timeout=30)  # ConfigurationError if the service refuses any of it
    tr.close()


@pytest.mark.parametrize("info", [m for m in _live_models() if not m.server_vad_allowed],
                         ids=lambda m: m.name)
def test_the_service_refuses_server_vad_where_the_catalogue_says_so(info):
    session = {"type": "transcription", "audio": {"input": {
        "transcription": {"model": info.name}, "turn_detection": {"type": "server_vad"}}}}
    client = rs.RealtimeClient(intent="transcription", session=session)
    try:
        with pytest.raises((rs.ConfigurationError, rs.ServerError)) as err:
            client.connect(timeout=30)
            client.wait_for("session.updated", timeout=30)
        assert "turn_detection" in str(err.value)  # the local server names the same param
    finally:
        client.close()


@pytest.mark.parametrize("info", _live_models(), ids=lambda m: m.name)
def test_usage_languages_and_early_text_follow_the_catalogue(info):
    import wave

    partials_before_commit = []
    with wave.open(str(HELLO)) as w:
        pcm = w.readframes(w.getnframes())
    with rs.Transcriber(model=info.name, turn_detection=None,
                        on_partial=lambda s: partials_before_commit.append(s)
                        if not s.committed else None, **_options_for(info)) as tr:
        for i in range(0, len(pcm), 4800):  # paced like a microphone: 100 ms per 100 ms
            tr.feed(pcm[i:i + 4800])
            time.sleep(0.1)
        tr.commit()
        seg = tr.finish(timeout=60).segments[0]
    assert "hello" in seg.text.lower()
    assert seg.usage["type"] == info.usage
    assert bool(seg.languages) == info.reports_languages
    assert bool(partials_before_commit) == info.streams_before_commit


def test_a_g711_file_goes_to_a_transcript(tmp_path):
    import wave

    from test_model_rules import ulaw, write_g711_wav

    with wave.open(str(HELLO)) as w:
        pcm = w.readframes(w.getnframes())
    samples = array("h", pcm)[::3]  # 24 kHz -> 8 kHz (speech survives)
    path = tmp_path / "hello_ulaw.wav"
    write_g711_wav(path, bytes(ulaw(s) for s in samples), 7)
    transcript = rs.transcribe_file(path, model="gpt-transcribe", timeout=120)
    assert "hello" in transcript.text.lower()


@pytest.mark.parametrize("model", ["gpt-live-transcribe", "gpt-realtime-whisper"])
def test_client_vad_gives_one_final_per_utterance_on_the_real_service(model):
    """The default turn detection of a model without server VAD is the client's: two
    utterances with a pause become two completed turns, text streams before each commit under
    the committed item's id, and nothing is refused (no commit of < 100 ms)."""
    import wave

    data = Path(__file__).resolve().parent / "data" / "engine"
    with wave.open(str(data / "weather.wav"), "rb") as w:
        speech = w.readframes(w.getnframes())
    early = {}
    errors = []
    with rs.Transcriber(model=model, language="en" if model == "gpt-realtime-whisper" else None,
                        on_partial=lambda s: early.setdefault(s.item_id, s.committed)) as tr:
        assert tr.client_vad
        tr.on("error", errors.append)
        pause = bytes(48 * 1200)
        for part in (pause, speech, pause, speech, pause):
            for i in range(0, len(part), 4800):
                tr.feed(part[i:i + 4800])
                time.sleep(0.1)
        transcript = tr.finish(timeout=60)
    assert len(transcript.segments) == 2, transcript.segments
    assert all("weather" in s.text.lower() for s in transcript.segments)
    assert not errors
    assert any(committed is False for committed in early.values())  # text before the commit

"""Against the real OpenAI service: run with ``OPENAI_API_KEY=... pytest -m live``.

Skipped without a key (and deselected by ``scripts/test.sh``: CI has no network)."""

from __future__ import annotations

import os
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

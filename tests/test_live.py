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

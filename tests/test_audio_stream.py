"""audio.stream(): the realtime-sync-audio thread, its backlog, drops, mute, errors, stop.

The unit tests use ``ContractClient``, a stand-in implementing exactly the client contract the
stream relies on (connected, input_audio_buffer.append, host: emit, count, adopt); the end-to-end
tests at the bottom use the real RealtimeClient and the local server.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from realtime_sync.audio import AudioStream, BytesSource, WavSource, resample, stream
from realtime_sync.audio._stream import MAX_APPEND_BYTES
from realtime_sync.errors import AudioError, NotConnectedError

ROOT = Path(__file__).resolve().parent.parent
FOX = ROOT / "tests" / "data" / "speech" / "fox_24k_mono16.wav"
CHUNK = 2400  # bytes in 50 ms


def wait_until(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def ramp(n_bytes: int) -> bytes:
    """Distinct, position-identifying PCM16 samples (0, 1, 2, ... wrapping at 2**15)."""
    return b"".join((i % 32768).to_bytes(2, "little") for i in range(n_bytes // 2))


class ContractClient:
    """The client contract used by audio.stream(), nothing more."""

    def __init__(self, connected: bool = True) -> None:
        self._connected = connected
        self.appends: List[bytes] = []
        self.events: List[Dict[str, Any]] = []
        self.counters: Dict[str, int] = {}
        self.adopted: List[Any] = []
        self.fail_sends = 0  # the next N appends raise NotConnectedError (drop mid-send)
        self.send_threads: set = set()
        self.input_audio_buffer = SimpleNamespace(append=self._append)
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self._connected

    def set_connected(self, value: bool) -> None:
        self._connected = value

    def _append(self, pcm16: bytes) -> str:
        with self._lock:
            self.send_threads.add(threading.current_thread().name)
            if self.fail_sends:
                self.fail_sends -= 1
                raise NotConnectedError("connection lost")
            if not self._connected:
                raise NotConnectedError("not connected")
            self.appends.append(bytes(pcm16))
            return f"evt_{len(self.appends)}"

    @property
    def received(self) -> bytes:
        with self._lock:
            return b"".join(self.appends)

    @property
    def host(self) -> ContractClient:
        """The fake is its own feature contract (realtime_sync._core.host.AudioHost)."""
        return self

    def emit(self, event: Dict[str, Any]) -> None:
        self.events.append(dict(event))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def adopt(self, resource: Any) -> None:
        self.adopted.append(resource)

    def disown(self, resource: Any) -> None:
        self.adopted.remove(resource)

    def of_type(self, type_: str) -> List[Dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]


class GatedSource:
    """A live source that yields ramp audio one chunk per ``release()``; ends after ``total``."""

    live = True

    def __init__(self, total_chunks: int, chunk_bytes: int = CHUNK) -> None:
        self.data = ramp(total_chunks * chunk_bytes)
        self.chunk_bytes = chunk_bytes
        self.pos = 0
        self.reads = 0
        self.gate = threading.Semaphore(0)
        self.closed = threading.Event()

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.release()

    def read(self, frames: int) -> bytes:
        if self.pos >= len(self.data):
            return b""
        while not self.gate.acquire(timeout=0.01):
            if self.closed.is_set():
                return b""
        if self.closed.is_set():
            return b""
        chunk = self.data[self.pos : self.pos + frames * 2]
        self.pos += len(chunk)
        self.reads += 1
        return chunk

    def close(self) -> None:
        self.closed.set()


def test_a_wav_file_arrives_exactly_in_chunk_sized_appends_then_the_thread_ends():
    client = ContractClient()
    with WavSource(FOX) as src:
        handle = stream(client, src, chunk_ms=50)
        assert isinstance(handle, AudioStream)
        assert client.adopted == [handle]
        assert handle.join(timeout=30)
    expected = WavSource(FOX).read(10**7)
    assert client.received == expected
    assert all(len(a) == CHUNK for a in client.appends[:-1])
    assert client.send_threads == {"realtime-sync-audio"}
    assert handle.bytes_sent == handle.bytes_read == len(expected)
    assert handle.bytes_dropped == 0 and not client.of_type("client.audio_dropped")
    assert not handle.is_alive()
    assert src.closed  # close_source=True by default


def test_disconnected_live_audio_keeps_the_newest_buffer_ms_and_reports_one_drop():
    client = ContractClient(connected=False)
    src = GatedSource(total_chunks=20)
    handle = stream(client, src, chunk_ms=50, buffer_ms=200)  # 4 chunks
    src.release(20)
    assert wait_until(lambda: src.pos == len(src.data))
    assert wait_until(lambda: handle.backlog_ms == pytest.approx(200.0))
    assert client.appends == []
    client.set_connected(True)
    assert handle.join(timeout=10)
    assert client.received == src.data[-4 * CHUNK :]  # the oldest audio was dropped
    dropped = 16 * CHUNK
    assert handle.bytes_dropped == dropped
    assert client.counters == {"audio_dropped": dropped}
    assert client.of_type("client.audio_dropped") == [
        {"type": "client.audio_dropped", "bytes": dropped, "ms": 800.0}
    ]


def test_each_drop_episode_is_reported_once_when_the_connection_is_back():
    client = ContractClient(connected=False)
    src = GatedSource(total_chunks=30)
    handle = stream(client, src, chunk_ms=50, buffer_ms=100)
    src.release(5)  # 5 chunks into a 2-chunk backlog: 3 dropped
    assert wait_until(lambda: src.reads == 5)
    client.set_connected(True)
    src.release(1)
    assert wait_until(lambda: len(client.of_type("client.audio_dropped")) == 1)
    client.set_connected(False)
    src.release(4)  # 4 more while disconnected: 2 dropped
    assert wait_until(lambda: src.reads == 10)
    assert len(client.of_type("client.audio_dropped")) == 1
    client.set_connected(True)
    src.release(1)
    assert wait_until(lambda: len(client.of_type("client.audio_dropped")) == 2)
    drops = client.of_type("client.audio_dropped")
    assert [d["bytes"] for d in drops] == [3 * CHUNK, 2 * CHUNK]
    assert handle.stop(timeout=5)


def test_a_send_that_fails_mid_flight_keeps_its_chunk_nothing_is_lost():
    client = ContractClient()
    client.fail_sends = 3
    src = BytesSource(ramp(40 * CHUNK))
    handle = stream(client, src, chunk_ms=50)
    assert handle.join(timeout=10)
    assert client.received == ramp(40 * CHUNK)
    assert handle.bytes_dropped == 0


def test_a_source_that_is_not_live_waits_for_the_connection_instead_of_dropping():
    client = ContractClient(connected=False)
    src = BytesSource(ramp(100 * CHUNK))  # realtime=False: not live
    handle = stream(client, src, chunk_ms=50, buffer_ms=200)
    assert wait_until(lambda: handle.backlog_ms >= 200)
    time.sleep(0.2)
    assert handle.bytes_read <= 4 * CHUNK  # reading paused at the bound
    client.set_connected(True)
    assert handle.join(timeout=10)
    assert client.received == ramp(100 * CHUNK)
    assert handle.bytes_dropped == 0 and not client.of_type("client.audio_dropped")


def test_audio_left_at_the_end_of_the_source_is_sent_after_a_reconnect():
    client = ContractClient(connected=False)
    handle = stream(client, BytesSource(ramp(3 * CHUNK)), chunk_ms=50)
    assert wait_until(lambda: handle.bytes_read == 3 * CHUNK)
    assert handle.is_alive()  # waiting to send
    client.set_connected(True)
    assert handle.join(timeout=10)
    assert client.received == ramp(3 * CHUNK)


def test_stop_ends_promptly_while_the_source_blocks_in_read():
    client = ContractClient()
    src = BytesSource(b"\0\0" * 24000 * 600, realtime=True)
    handle = stream(client, src, chunk_ms=20000)  # a 20 s blocking read
    assert wait_until(lambda: handle.is_alive())
    time.sleep(0.05)
    assert handle.stop(timeout=5)
    assert not handle.is_alive()
    assert src.closed
    assert handle.stop(timeout=1)  # idempotent


def test_muted_audio_is_discarded_and_counted_separately_from_drops():
    client = ContractClient()
    src = GatedSource(total_chunks=10)
    handle = stream(client, src, chunk_ms=50)
    src.release(2)
    assert wait_until(lambda: len(client.appends) == 2)
    handle.pause()
    assert handle.muted
    src.release(3)
    assert wait_until(lambda: src.reads == 5)
    handle.resume()
    src.release(5)
    assert handle.join(timeout=10)
    assert client.received == src.data[: 2 * CHUNK] + src.data[5 * CHUNK :]
    assert handle.bytes_muted == 3 * CHUNK
    assert handle.bytes_dropped == 0


def test_mute_when_callback_gates_sending_per_chunk():
    client = ContractClient()
    playing = threading.Event()
    src = GatedSource(total_chunks=6)
    handle = stream(client, src, chunk_ms=50, mute_when=playing.is_set)
    src.release(2)
    assert wait_until(lambda: len(client.appends) == 2)
    playing.set()
    src.release(2)
    assert wait_until(lambda: src.reads == 4)
    playing.clear()
    src.release(2)
    assert handle.join(timeout=10)
    assert client.received == src.data[: 2 * CHUNK] + src.data[4 * CHUNK :]
    assert handle.bytes_muted == 2 * CHUNK


class FlakyDevice:
    """A live source whose read fails once (device unplugged) and which can be reopened."""

    live = True

    def __init__(self, fail_at: int, reopen_failures: int, chunks: int) -> None:
        self.fail_at = fail_at
        self.reopen_failures = reopen_failures
        self.chunks = chunks
        self.reads = 0
        self.reopens = 0
        self.broken = False
        self.closed = False

    def read(self, frames: int) -> bytes:
        if self.broken:
            raise AudioError("Input device 'usb' stopped delivering audio: unplugged")
        self.reads += 1
        if self.reads == self.fail_at:
            self.broken = True
            raise AudioError("Input device 'usb' stopped delivering audio: unplugged")
        if self.reads > self.chunks:
            return b""
        return bytes([self.reads]) * frames * 2

    def reopen(self) -> None:
        self.reopens += 1
        if self.reopens <= self.reopen_failures:
            raise AudioError("Cannot open input device 'usb': no such device")
        self.broken = False

    def close(self) -> None:
        self.closed = True


def test_a_device_error_is_reported_and_the_device_reopened():
    client = ContractClient()
    dev = FlakyDevice(fail_at=3, reopen_failures=1, chunks=6)
    handle = stream(client, dev, chunk_ms=50)
    assert handle.join(timeout=20)
    errors = client.of_type("client.audio_error")
    assert len(errors) == 1
    assert errors[0]["retrying"] is True and "unplugged" in errors[0]["message"]
    assert dev.reopens == 2
    got = [a[0] for a in client.appends]
    assert got == [1, 2, 4, 5, 6]
    assert isinstance(handle.error, AudioError)  # the last error stays readable
    assert [e["attempts"] for e in client.of_type("client.audio_recovered")] == [2]


def test_a_source_error_without_reopen_ends_the_stream_with_one_report():
    class Broken:
        def __init__(self) -> None:
            self.closed = False

        def read(self, frames: int) -> bytes:
            raise AudioError("the file vanished")

        def close(self) -> None:
            self.closed = True

    client = ContractClient()
    src = Broken()
    handle = stream(client, src)
    assert handle.join(timeout=10)
    errors = client.of_type("client.audio_error")
    assert [(e["message"], e["retrying"]) for e in errors] == [("the file vanished", False)]
    assert src.closed


def test_stop_during_reopen_attempts_ends_the_stream():
    client = ContractClient()
    dev = FlakyDevice(fail_at=1, reopen_failures=10**6, chunks=5)
    handle = stream(client, dev)
    assert wait_until(lambda: dev.reopens >= 1)
    assert handle.stop(timeout=5)


def test_no_append_event_exceeds_15_mib():
    client = ContractClient()
    n = 24000 * 2 * 300  # 300 s of audio read as one chunk
    src = BytesSource(b"\x01\x02" * (n // 2))
    handle = stream(client, src, chunk_ms=300000)
    assert handle.join(timeout=60)
    assert len(client.appends) == 2
    for chunk in client.appends:
        frame = {"type": "input_audio_buffer.append", "event_id": "evt_x" * 20}
        frame["audio"] = base64.b64encode(chunk).decode()
        assert len(json.dumps(frame)) <= 15 * 1024 * 1024
        assert len(chunk) <= MAX_APPEND_BYTES
    assert sum(map(len, client.appends)) == n


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        stream(ContractClient(), BytesSource(b""), chunk_ms=0)
    with pytest.raises(ValueError):
        AudioStream(ContractClient(), BytesSource(b""), buffer_ms=-1)


# -- end to end: the real client and the local server --------------------------------------------


class AppendRecorder:
    """Server hook that keeps the decoded audio of every input_audio_buffer.append received."""

    def __init__(self) -> None:
        self._parts: List[bytes] = []
        self._lock = threading.Lock()

    def __call__(self, connection: Any, event: Dict[str, Any]) -> None:
        if event.get("type") == "input_audio_buffer.append":
            with self._lock:
                self._parts.append(base64.b64decode(event["audio"]))

    def audio(self) -> bytes:
        with self._lock:
            return b"".join(self._parts)


@pytest.fixture
def local():
    """A local server recording appended audio, and a factory of clients connected to it."""
    import realtime_sync as rs
    from realtime_sync.server import RealtimeServer

    recorder = AppendRecorder()
    clients: List[Any] = []
    with RealtimeServer(api_key="sk-local", after=recorder) as srv:

        def connect(**kwargs: Any) -> Any:
            kwargs.setdefault("reconnect", False)
            client = rs.RealtimeClient(url=srv.url, api_key="sk-local", **kwargs)
            clients.append(client)
            client.connect(timeout=10)
            return client

        yield SimpleNamespace(server=srv, recorder=recorder, connect=connect)
        for client in clients:
            assert client.close(timeout=5)


def test_end_to_end_a_wav_reaches_the_server_byte_exact(local):
    # no server VAD: the whole file stays in one input buffer
    client = local.connect(intent="transcription")
    with WavSource(FOX) as src:
        handle = stream(client, src, chunk_ms=50)
        assert handle.join(timeout=30)
    expected = WavSource(FOX).read(10**7)
    assert wait_until(lambda: len(local.recorder.audio()) >= len(expected), timeout=10)
    assert local.recorder.audio() == expected
    assert handle.bytes_sent == len(expected)


def test_end_to_end_a_resampled_wav_reaches_the_server_as_converted(local, tmp_path):
    import wave

    speech = WavSource(FOX).read(10**7)
    path = tmp_path / "stereo48k.wav"
    stereo48 = resample(speech, 24000, 48000)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(b"".join(stereo48[i : i + 2] * 2 for i in range(0, len(stereo48), 2)))
    client = local.connect(intent="transcription")
    handle = stream(client, WavSource(path), chunk_ms=100)
    assert handle.join(timeout=30)
    expected = WavSource(path).read(10**7)
    assert wait_until(lambda: len(local.recorder.audio()) >= len(expected), timeout=10)
    assert local.recorder.audio() == expected


def test_end_to_end_client_close_stops_the_streams_it_owns(local):
    client = local.connect(intent="transcription")
    src = BytesSource(b"\0\0" * 24000 * 600, realtime=True)
    handle = stream(client, src, chunk_ms=50)
    assert wait_until(lambda: handle.bytes_sent > 0)
    assert client.close(timeout=5)
    assert not handle.is_alive()
    assert src.closed

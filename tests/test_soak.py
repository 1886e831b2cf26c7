"""Soak: stream a long recording through the local server, unpaced, reconnecting every few
minutes of audio, and check that every appended byte arrived exactly once and memory stays flat.

The full hour runs in CI (about 10 s here); ``RS_SOAK_MINUTES`` changes the length.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import tracemalloc

import pytest

import realtime_sync as rs
from realtime_sync.audio import stream
from realtime_sync.server import RealtimeServer

BYTES_PER_MIN = 24000 * 2 * 60
MINUTES = int(os.environ.get("RS_SOAK_MINUTES", "60"))
RECONNECT_EVERY_MIN = 5


class PatternSource:
    """An endless-looking recording whose bytes are a function of their position (no storage)."""

    live = False  # a recording: the stream waits for a reconnect instead of dropping audio

    def __init__(self, total: int) -> None:
        self.total = total
        self.pos = 0
        self._block = bytes(range(256)) * 4096  # 1 MiB; positions are checked by hashing

    def read(self, frames: int) -> bytes:
        n = min(frames * 2, self.total - self.pos)
        if n <= 0:
            return b""
        start = self.pos % len(self._block)
        out = (self._block[start:] + self._block)[:n]
        self.pos += n
        return out

    def close(self) -> None:
        pass


def expected_digest(total: int) -> str:
    src = PatternSource(total)
    h = hashlib.sha256()
    while True:
        chunk = src.read(12000)
        if not chunk:
            return h.hexdigest()
        h.update(chunk)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_long_stream_with_reconnects_delivers_every_byte_exactly_once_in_flat_memory():
    total = MINUTES * BYTES_PER_MIN
    digest = hashlib.sha256()
    received = {"bytes": 0, "events": 0}
    lock = threading.Lock()

    def before(conn, event):
        if event.get("type") == "input_audio_buffer.append":
            audio = base64.b64decode(event["audio"])
            with lock:
                digest.update(audio)
                received["bytes"] += len(audio)
                received["events"] += 1
            event["audio"] = ""  # keep the server's own record small
            conn.received.clear()
            return True  # skip the server's buffer: nothing is committed here
        return False

    with RealtimeServer(api_key="sk-local", before=before) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                                   reconnect=rs.Backoff(initial=0.05, jitter=0))
        reconnects = []
        client.on("client.reconnected", reconnects.append)
        client.connect()
        source = PatternSource(total)
        tracemalloc.start()
        handle = stream(client, source, chunk_ms=500)
        next_reconnect = RECONNECT_EVERY_MIN * BYTES_PER_MIN
        samples = []
        started = time.monotonic()
        while handle.is_alive():
            time.sleep(0.02)
            if handle.bytes_sent >= next_reconnect:
                next_reconnect += RECONNECT_EVERY_MIN * BYTES_PER_MIN
                client._restart()  # a planned reconnect mid-stream
            if int(time.monotonic() - started) > len(samples):
                samples.append(tracemalloc.get_traced_memory()[0])
        handle.stop(5)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        deadline = time.monotonic() + 30
        while received["bytes"] < total and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = client.stats()
        assert client.close(timeout=5)
    print(f"\nsoak: {MINUTES} min of audio in {elapsed:.1f} s, {received['events']} appends, "
          f"{received['bytes']} bytes, {len(reconnects)} reconnects, traced memory "
          f"first {samples[0] if samples else 0} B, last {samples[-1] if samples else 0} B, "
          f"peak {peak} B, dropped {handle.bytes_dropped} B")
    assert handle.bytes_dropped == 0
    assert received["bytes"] == total
    assert digest.hexdigest() == expected_digest(total)
    assert len(reconnects) >= MINUTES // RECONNECT_EVERY_MIN - 1
    assert stats["audio_dropped"] == 0
    # flat memory: the client holds at most its 10 s backlog plus a few chunks
    assert peak < 12 * 1024 * 1024
    if len(samples) >= 4:
        assert samples[-1] < samples[1] + 4 * 1024 * 1024

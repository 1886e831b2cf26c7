"""Audio benchmarks: streaming CPU cost, resampling throughput, mic-to-socket latency.

    python benchmarks/bench_audio.py [--seconds 10]

* CPU of the ``realtime-sync-audio`` thread per second of live microphone audio streamed
  (24 kHz, 50 ms chunks) into a local server over loopback (target: under 1 % of one core);
  also the client's network thread. Needs the virtual sound card
  (``eval "$(scripts/virtual-audio.sh start)"``) or a real microphone; without one the
  microphone is replaced by a real-time paced WavSource and the output says so.
* Resampling throughput 48 kHz -> 24 kHz (soxr HQ), streaming in 50 ms chunks and one-shot,
  as a multiple of real time.
* Latency from a microphone read returning a chunk to the server receiving its append
  (p50/p99, loopback, server in this process so both ends share one clock).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

import realtime_sync as rs
from realtime_sync import audio
from realtime_sync.server import RealtimeServer

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "examples" / "audio" / "hello.wav"
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu(native_id: Optional[int]) -> float:
    """CPU seconds (user + system) used by one thread of this process (Linux)."""
    if native_id is None:
        return 0.0
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class Timed:
    """Wraps a source; records when each chunk was returned by read()."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.live = True
        self.times: List[float] = []

    def read(self, frames: int) -> bytes:
        data = self.source.read(frames)
        if data:
            self.times.append(time.monotonic())
        return data

    def close(self) -> None:
        self.source.close()


def open_source() -> Any:
    try:
        return audio.Microphone(chunk_ms=50), "microphone"
    except rs.AudioError as exc:
        print(f"  (no microphone: {exc}; using a real-time paced WavSource instead)")
        pcm = audio.WavSource(SPEECH).read(10**8)
        return audio.BytesSource(pcm * 100, realtime=True), "paced file"


def bench_streaming(seconds: float) -> None:
    arrivals: List[float] = []

    def before(conn: Any, event: Dict[str, Any]) -> bool:
        if event.get("type") == "input_audio_buffer.append":
            arrivals.append(time.monotonic())
        return False

    with RealtimeServer(api_key="sk-local", before=before) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                                   reconnect=False)
        client.connect(timeout=10)
        source, kind = open_source()
        timed = Timed(source)
        handle = audio.stream(client, timed, chunk_ms=50)
        time.sleep(1.0)  # warm-up
        threads = {t.name: t.native_id for t in threading.enumerate()}
        audio_tid = threads.get("realtime-sync-audio")
        net_tid = threads.get("realtime-sync-net")
        a0, n0, w0 = thread_cpu(audio_tid), thread_cpu(net_tid), time.monotonic()
        sent0 = handle.bytes_sent
        time.sleep(seconds)
        a1, n1, w1 = thread_cpu(audio_tid), thread_cpu(net_tid), time.monotonic()
        sent1 = handle.bytes_sent
        handle.stop(timeout=5)
        deadline = time.monotonic() + 5
        while len(arrivals) < len(timed.times) and time.monotonic() < deadline:
            time.sleep(0.01)
        client.close(timeout=5)
    audio_s = (sent1 - sent0) / 48000
    wall = w1 - w0
    print(f"streaming {kind}, 24 kHz, 50 ms chunks, {wall:.1f} s:")
    print(f"  audio streamed            {audio_s:.2f} s in {wall:.2f} s wall")
    print(f"  realtime-sync-audio CPU   {100 * (a1 - a0) / max(audio_s, 1e-9):.2f} % of one core"
          f" per second of audio (clock tick {1000 / TICK:.0f} ms)")
    print(f"  realtime-sync-net CPU     {100 * (n1 - n0) / max(audio_s, 1e-9):.2f} % of one core")
    n = min(len(arrivals), len(timed.times))
    if n:
        lat = (np.array(arrivals[:n]) - np.array(timed.times[:n])) * 1000
        print(f"  mic read -> server recv   p50 {np.percentile(lat, 50):.2f} ms, "
              f"p99 {np.percentile(lat, 99):.2f} ms, max {lat.max():.2f} ms ({n} chunks)")


def bench_resampling() -> None:
    rate, secs = 48000, 60
    t = np.arange(rate * secs) / rate
    x = np.rint(8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    conv = audio.StreamConverter(rate)
    chunk = rate // 20 * 2
    start = time.perf_counter()
    for i in range(0, len(x), chunk):
        conv.process(x[i : i + chunk])
    conv.flush()
    streaming = time.perf_counter() - start
    start = time.perf_counter()
    audio.resample(x, rate, 24000)
    one_shot = time.perf_counter() - start
    print("resampling 48 kHz -> 24 kHz (soxr HQ), 60 s of audio:")
    print(f"  streaming, 50 ms chunks   {secs / streaming:,.0f} x realtime")
    print(f"  one shot                  {secs / one_shot:,.0f} x realtime")


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="realtime_sync audio benchmarks")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_resampling()
    bench_streaming(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Send cost: ``input_audio_buffer.append`` of 100 ms of audio, from PCM bytes to the socket.

    python benchmarks/bench_send.py [--rounds 3]

* ``realtime_sync``: ``client.input_audio_buffer.append(pcm)`` (base64 and framing inside).
* ``sdk``: ``conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())`` -- the
  SDK takes base64 text, so the encoding is part of its cost from PCM bytes.

Both send to the same benchmark server (another process), which drops the frames.
Per-call time is the wall time of ``n`` back-to-back calls divided by ``n``.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._servers import BenchServer  # noqa: E402

PCM_100MS = bytes((i * 13) & 0xFF for i in range(4800))
N = 3000


def run_rs(srv: BenchServer, n: int) -> float:
    """Microseconds per append for realtime_sync."""
    import realtime_sync as rs

    client = rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                               reconnect=False)
    client.connect(timeout=10)
    try:
        append = client.input_audio_buffer.append
        pcm = PCM_100MS
        for _ in range(200):
            append(pcm)
        t0 = time.perf_counter()
        for _ in range(n):
            append(pcm)
        t1 = time.perf_counter()
    finally:
        client.close()
    return (t1 - t0) / n * 1e6


def run_sdk(srv: BenchServer, n: int) -> float:
    """Microseconds per append for the openai SDK (base64 included)."""
    from openai import OpenAI

    client = OpenAI(api_key="sk-local", websocket_base_url=srv.base_url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        manager = client.realtime.connect(extra_query={"intent": "transcription"})
        conn = manager.enter()
    try:
        conn.recv()  # session.created
        append = conn.input_audio_buffer.append
        pcm = PCM_100MS
        b64 = base64.b64encode
        for _ in range(200):
            append(audio=b64(pcm).decode("ascii"))
        t0 = time.perf_counter()
        for _ in range(n):
            append(audio=b64(pcm).decode("ascii"))
        t1 = time.perf_counter()
    finally:
        conn.close()
    return (t1 - t0) / n * 1e6


CLIENTS: Dict[str, Callable[[BenchServer, int], float]] = {"sdk": run_sdk, "realtime_sync": run_rs}


def measure(srv: BenchServer, rounds: int = 3, n: int = N,
            log: Callable[[str], None] = print) -> Dict[str, List[float]]:
    """Interleaved rounds; per client, microseconds per call."""
    out: Dict[str, List[float]] = {c: [] for c in CLIENTS}
    for fn in CLIENTS.values():  # warm-up round, discarded
        fn(srv, n // 5)
    for r in range(rounds):
        order = list(CLIENTS.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            us = fn(srv, n)
            out[name].append(us)
            log(f"  send round {r + 1} {name:13s} {us:7.1f} us/append")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with BenchServer() as srv:
        res = measure(srv, rounds=args.rounds)
    med = {c: statistics.median(v) for c, v in res.items()}
    print("  ".join(f"{c}={v:.1f} us" for c, v in med.items()),
          f" sdk/realtime_sync = {med['sdk'] / med['realtime_sync']:.2f}x")


if __name__ == "__main__":
    main()

"""Latency from the server sending an event to the user's handler running, on loopback.

    python benchmarks/bench_latency.py

The benchmark server (another process) sends ``n`` small deltas, one every 2 ms, each stamped
with ``time.perf_counter_ns()`` (CLOCK_MONOTONIC: one clock for every process on Linux); the
handler subtracts the stamp from its own clock. Measured idle and with a CPU-bound thread in
the client's process (the GIL: a thread that never blocks holds it for up to the switch
interval, 5 ms by default, each time another thread wants it), and with
``sys.setswitchinterval(0.001)``.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._servers import BenchServer  # noqa: E402

N = 1000
INTERVAL_MS = 2


def rs_latencies(srv: BenchServer, n: int = N) -> List[float]:
    """Milliseconds from server send to realtime_sync handler, per event."""
    import realtime_sync as rs

    out: List[float] = []
    done = threading.Event()

    def handler(event: rs.Event) -> None:
        out.append((time.perf_counter_ns() - event["t"]) / 1e6)
        if len(out) == n:
            done.set()

    client = rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                               reconnect=False)
    client.on("conversation.item.input_audio_transcription.delta", handler)
    client.connect(timeout=10)
    try:
        client.conversation.item.retrieve(f"pace:{n}:{INTERVAL_MS}")
        if not done.wait(60):
            raise RuntimeError("latency run did not finish")
    finally:
        client.close()
    return out


def bare_latencies(srv: BenchServer, n: int = N) -> List[float]:
    """Same for a bare WebSocketApp (json.loads in on_message)."""
    import json

    import websocket

    out: List[float] = []
    done = threading.Event()

    def on_open(ws: websocket.WebSocketApp) -> None:
        ws.send(json.dumps({"type": "conversation.item.retrieve",
                            "item_id": f"pace:{n}:{INTERVAL_MS}"}))

    def on_message(ws: websocket.WebSocketApp, message: bytes) -> None:
        ev = json.loads(message)
        if "t" in ev:
            out.append((time.perf_counter_ns() - ev["t"]) / 1e6)
            if len(out) == n:
                done.set()
                ws.close()

    app = websocket.WebSocketApp(srv.url, on_open=on_open, on_message=on_message)
    t = threading.Thread(target=app.run_forever, kwargs={"skip_utf8_validation": True},
                         daemon=True)
    t.start()
    if not done.wait(60):
        raise RuntimeError("latency run did not finish")
    t.join(10)
    return out


class Burner:
    """A CPU-bound Python thread (never blocks, so it holds the GIL whenever it can)."""

    def __init__(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-burner")

    def _run(self) -> None:
        x = 0
        while not self._stop:
            x += 1

    def __enter__(self) -> Burner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()


def pct(values: List[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def measure(srv: BenchServer, log: Callable[[str], None] = print) -> Dict[str, Dict[str, float]]:
    """p50/p99 (ms) per scenario."""
    rs_latencies(srv, 100)  # warm-up
    scenarios: Dict[str, Callable[[], List[float]]] = {}
    old = sys.getswitchinterval()

    def with_burner(fn: Callable[[], List[float]], interval: float) -> Callable[[], List[float]]:
        def run() -> List[float]:
            sys.setswitchinterval(interval)
            try:
                with Burner():
                    return fn()
            finally:
                sys.setswitchinterval(old)
        return run

    scenarios["bare, idle"] = lambda: bare_latencies(srv)
    scenarios["realtime_sync, idle"] = lambda: rs_latencies(srv)
    scenarios["bare, CPU-bound thread"] = with_burner(lambda: bare_latencies(srv), old)
    scenarios["realtime_sync, CPU-bound thread"] = with_burner(lambda: rs_latencies(srv), old)
    scenarios["realtime_sync, CPU-bound thread, switchinterval 1 ms"] = with_burner(
        lambda: rs_latencies(srv), 0.001)
    out: Dict[str, Dict[str, float]] = {}
    for name, fn in scenarios.items():
        lat = fn()
        out[name] = {"p50": statistics.median(lat), "p99": pct(lat, 99), "max": max(lat)}
        log(f"  latency {name:55s} p50 {out[name]['p50']:6.2f} ms  p99 {out[name]['p99']:6.2f} ms")
    return out


def main() -> None:
    with BenchServer() as srv:
        measure(srv)


if __name__ == "__main__":
    main()

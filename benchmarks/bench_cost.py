"""The cost of live sessions: CPU, memory, many sessions at once, import time.

    python benchmarks/bench_cost.py [cpu|memory|many|import]   (default: all, each in a fresh
                                                                 process; prints JSON)

* ``cpu``: CPU time of this whole process (``time.process_time``) while one live transcription
  session runs for 8 s: 10 appends of 100 ms per second out, a transcription delta back for
  each, handled by a handler. Reported as percent of one core.
* ``memory``: 50 idle connected clients; RSS delta (``/proc/self/statm``) and Python heap
  delta (``tracemalloc``) per client.
* ``many``: 100 clients in this process, each appending 100 ms every 100 ms for 10 s (one pacer
  thread, absolute schedule) and receiving a delta per append; lag = handler time of the
  delta minus the scheduled time of its append. Real-time pace holds when the lag stays
  flat (p99 reported, and the p99 of the last second against the first).
* ``import``: ``import realtime_sync`` after ``import websocket`` in a fresh interpreter
  (median of 7).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._install import FAST_MODULES  # noqa: E402
from benchmarks._servers import BenchServer  # noqa: E402

PCM_100MS = bytes((i * 13) & 0xFF for i in range(4800))
DELTA = "conversation.item.input_audio_transcription.delta"


def _client(srv: BenchServer) -> Any:
    import realtime_sync as rs

    return rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                             reconnect=False)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu(seconds: float = 8.0) -> Dict[str, float]:
    with BenchServer() as srv:
        client = _client(srv)
        got = [0]
        client.on(DELTA, lambda ev: got.__setitem__(0, got[0] + 1))
        client.connect()
        client.conversation.item.retrieve("echo")
        time.sleep(0.5)
        ticks = int(seconds * 10)
        c0, w0 = time.process_time(), time.perf_counter()
        start = time.monotonic()
        for i in range(ticks):
            client.input_audio_buffer.append(PCM_100MS)
            delay = start + (i + 1) * 0.1 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        c1, w1 = time.process_time(), time.perf_counter()
        client.close()
    return {"cpu_percent": 100 * (c1 - c0) / (w1 - w0), "appends": ticks, "deltas": got[0]}


def memory(n: int = 50) -> Dict[str, float]:
    import tracemalloc

    import realtime_sync  # noqa: F401 - imports are not per-client cost

    with BenchServer() as srv:
        warm = _client(srv)
        warm.connect()
        warm.close()
        time.sleep(0.2)
        tracemalloc.start()
        r0 = rss_bytes()
        h0 = tracemalloc.get_traced_memory()[0]
        clients = []
        for _ in range(n):
            c = _client(srv)
            c.connect()
            clients.append(c)
        time.sleep(0.5)
        r1 = rss_bytes()
        h1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        for c in clients:
            c.close()
    return {"clients": n, "rss_kib_per_client": (r1 - r0) / n / 1024,
            "heap_kib_per_client": (h1 - h0) / n / 1024}


def many(n: int = 100, seconds: float = 10.0) -> Dict[str, float]:
    with BenchServer() as srv:
        clients = []
        scheduled: Dict[str, float] = {}
        arrivals: List[tuple] = []
        lock = threading.Lock()

        def on_delta(ev: Any) -> None:
            now = time.monotonic()
            with lock:
                arrivals.append((ev["item_id"], now))

        for _ in range(n):
            c = _client(srv)
            c.on(DELTA, on_delta)
            c.connect()
            c.conversation.item.retrieve("echo")
            clients.append(c)
        time.sleep(0.5)
        c0, w0 = time.process_time(), time.perf_counter()
        start = time.monotonic() + 0.05
        ticks = int(seconds * 10)
        behind = 0.0
        for i in range(ticks):
            due = start + i * 0.1
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            behind = max(behind, time.monotonic() - due)
            for c in clients:
                eid = c.input_audio_buffer.append(PCM_100MS)
                scheduled[eid] = due
        time.sleep(1.0)
        c1, w1 = time.process_time(), time.perf_counter()
        for c in clients:
            c.close()
    lags = [(scheduled[eid], now - scheduled[eid]) for eid, now in arrivals if eid in scheduled]
    values = [lag for _, lag in lags]
    first = [lag for t, lag in lags if t < start + 1.0]
    last = [lag for t, lag in lags if t >= start + seconds - 1.0]

    def p(vals: List[float], q: float) -> float:
        s = sorted(vals)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000 if s else float("nan")

    return {"sessions": n, "appends": ticks * n, "deltas": len(values),
            "lag_p50_ms": p(values, 0.5), "lag_p99_ms": p(values, 0.99),
            "lag_max_ms": max(values) * 1000 if values else float("nan"),
            "lag_p99_first_s_ms": p(first, 0.99), "lag_p99_last_s_ms": p(last, 0.99),
            "pacer_behind_max_ms": behind * 1000,
            "cpu_percent": 100 * (c1 - c0) / (w1 - w0)}


def import_time(runs: int = 7) -> Dict[str, float]:
    """``import realtime_sync`` after ``import websocket``, fresh interpreters, medians; with
    bytecode written (what an installed package has: one discarded run writes it), for the
    core install (``orjson``/``wsaccel`` blocked) and for the environment as installed."""
    block = f"import sys; sys.modules.update(dict.fromkeys({FAST_MODULES!r})); "
    timing = ("import time; t0 = time.perf_counter(); import websocket; "
              "t1 = time.perf_counter(); import realtime_sync; t2 = time.perf_counter(); "
              "print(t1 - t0, t2 - t1)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out: Dict[str, float] = {}
    for label, code in (("", timing), ("core_", block + timing)):
        ws, rs = [], []
        for i in range(runs + 1):
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True, cwd=str(ROOT), env=env).stdout.split()
            if i:  # the first run writes the bytecode
                ws.append(float(res[0]) * 1000)
                rs.append(float(res[1]) * 1000)
        out[f"{label}websocket_ms"] = statistics.median(ws)
        out[f"{label}realtime_sync_added_ms"] = statistics.median(rs)
    return out


JOBS = {"cpu": cpu, "memory": memory, "many": many, "import": import_time}


def run_isolated(job: str) -> Dict[str, float]:
    """Run one job in a fresh interpreter (so earlier work cannot skew it); its result."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), job],
                         capture_output=True, text=True, check=True, cwd=str(ROOT))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(JOBS[sys.argv[1]]()))
        return
    for job in JOBS:
        print(job, json.dumps(run_isolated(job)))


if __name__ == "__main__":
    main()

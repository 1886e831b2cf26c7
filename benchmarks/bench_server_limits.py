"""The local server under hostile load (issue 20, "How it is checked"), before against after.

    python benchmarks/bench_server_limits.py [--before PATH] [--update-seconds 60] [--quick]

Each scenario runs the server in its own process (``python -c``, ``PYTHONPATH`` = the tree
measured) and the hostile clients in this one, all on 127.0.0.1:

- append flood: 100 MB of PCM appended on one socket (1 MiB, then 10 MiB per append) and
  never committed; the server's RSS growth over its idle size (peak, sampled every 20 ms)
  -- target: within 64 MB;
- session.update flood: ``--update-seconds`` (60) of ``session.update`` events as fast as the
  server answers them; RSS growth -- target: within 64 MB;
- descriptors: the server limited to 1024 descriptors (``RLIMIT_NOFILE``), 1000 half-open
  attackers (connect, never send; ``connect_s`` to open them all, the server's 10 s
  handshake timeout drops the earliest meanwhile), then they leave; seconds until a
  legitimate client is served again -- target: within 15 s (None = not within 30 s);
- 200 concurrent clients: each opens a transcription session, appends 200 ms, commits and
  waits for its transcript while all 200 are open; how many are served -- target: all.

``--before PATH`` also measures another checkout (e.g. ``git worktree add /tmp/before
<commit>``) in the same run, scenario by scenario. Every loop is bounded (count or time).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_server_hardening import RawClient  # noqa: E402

SERVER = """
import inspect, json, logging, resource, sys
cfg = json.loads(sys.argv[1])
if cfg.get("nofile"):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg["nofile"], hard))
logging.basicConfig(level=logging.WARNING, format="server %(levelname)s %(message)s")
from realtime_sync.server import RealtimeServer
wanted = {"api_key": "sk-local", **cfg.get("kwargs", {})}
known = inspect.signature(RealtimeServer).parameters
srv = RealtimeServer(**{k: v for k, v in wanted.items() if k in known}).start()
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""

MB = 1024 * 1024


class ServerProcess:
    """The server of one tree in its own process; RSS read from /proc."""

    def __init__(self, tree: Path, nofile: Optional[int] = None,
                 kwargs: Optional[Dict[str, Any]] = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(tree))
        cfg = json.dumps({"nofile": nofile, "kwargs": kwargs or {}})
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, cfg], cwd=str(tree),
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.port = int(self.proc.stdout.readline())  # type: ignore[union-attr]

    def rss(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class PeakSampler:
    """Samples a process's RSS every 20 ms on a thread; ``peak`` is the highest seen."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.peak = server.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.server.rss())
            except OSError:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def drain(client: RawClient, until: Callable[[Dict[str, Any]], bool], found: threading.Event,
          seen: Dict[str, int]) -> None:
    """Read every server event; count types; set ``found`` at the first ``until(event)``."""
    try:
        for event in client.events():
            seen[event["type"]] = seen.get(event["type"], 0) + 1
            if until(event):
                found.set()
                return
    except (OSError, ConnectionError, ValueError):
        pass
    found.set()


def transcription_client(port: int) -> RawClient:
    client = RawClient(port, path="/v1/realtime?intent=transcription")
    client.sock.settimeout(120)
    client.next_event("session.created")
    client.send({"type": "session.update", "session": {"type": "transcription", "audio": {
        "input": {"turn_detection": None,
                  "transcription": {"model": "gpt-4o-transcribe"}}}}})
    client.next_event("session.updated")
    return client


def append_flood(tree: Path, total_mb: int = 100, chunk_mb: int = 1) -> Dict[str, Any]:
    server = ServerProcess(tree)
    try:
        client = transcription_client(server.port)
        time.sleep(0.5)
        idle = server.rss()
        sampler = PeakSampler(server)
        seen: Dict[str, int] = {}
        done = threading.Event()
        reader = threading.Thread(target=drain, args=(
            client, lambda e: e["type"] == "input_audio_buffer.cleared", done, seen),
            daemon=True)
        reader.start()
        chunk = base64.b64encode(b"\0" * (chunk_mb * MB)).decode()  # PCM per append
        started = time.monotonic()
        for i in range(total_mb // chunk_mb):
            client.send_text('{"type":"input_audio_buffer.append","event_id":"a'
                             + str(i) + '","audio":"' + chunk + '"}')
        client.send({"type": "input_audio_buffer.clear"})  # the end marker (after the peak)
        done.wait(300)
        elapsed = time.monotonic() - started
        time.sleep(0.3)
        peak = sampler.stop()
        client.close()
        return {"idle_mb": idle / MB, "peak_growth_mb": (peak - idle) / MB,
                "seconds": elapsed, "errors": seen.get("error", 0)}
    finally:
        server.close()


def update_flood(tree: Path, seconds: float) -> Dict[str, Any]:
    server = ServerProcess(tree)
    try:
        client = RawClient(server.port)
        client.sock.settimeout(120)
        client.next_event("session.created")
        time.sleep(0.5)
        idle = server.rss()
        sampler = PeakSampler(server)
        seen: Dict[str, int] = {}
        done = threading.Event()
        reader = threading.Thread(target=drain, args=(
            client, lambda e: (e.get("session") or {}).get("instructions") == "update-done",
            done, seen), daemon=True)
        reader.start()
        pad = "x" * 1500
        deadline = time.monotonic() + seconds
        sent = 0
        while time.monotonic() < deadline:
            for _ in range(50):  # a batch, then the clock
                client.send({"type": "session.update", "event_id": f"u{sent}", "session": {
                    "type": "realtime", "instructions": f"update {sent} {pad}"}})
                sent += 1
            while sent - seen.get("session.updated", 0) > 2000:  # stay within 2000 in flight
                time.sleep(0.005)
                if time.monotonic() > deadline + 30:
                    break
        client.send({"type": "session.update", "session": {
            "type": "realtime", "instructions": "update-done"}})
        done.wait(120)
        time.sleep(0.3)
        peak = sampler.stop()
        end = server.rss()
        client.close()
        return {"idle_mb": idle / MB, "peak_growth_mb": (peak - idle) / MB,
                "end_growth_mb": (end - idle) / MB, "updates": sent,
                "per_update_bytes": (end - idle) / max(sent, 1)}
    finally:
        server.close()


def served(port: int, timeout: float = 5.0) -> bool:
    """One legitimate client: handshake, ``session.created``."""
    try:
        client = RawClient(port)
        client.sock.settimeout(timeout)
        ok = client.status == 101 and client.next_event("session.created") is not None
        client.close()
        return ok
    except (OSError, AssertionError, ConnectionError, ValueError):
        return False


def descriptors(tree: Path, kwargs: Dict[str, Any], attackers: int = 1000,
                give_up: float = 30.0) -> Dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    server = ServerProcess(tree, nofile=1024, kwargs=kwargs)
    socks: List[socket.socket] = []
    try:
        started = time.monotonic()
        for _ in range(attackers):
            try:
                sock = socket.socket()
                sock.settimeout(2)
                sock.connect(("127.0.0.1", server.port))
                socks.append(sock)
            except OSError:
                break
        connect_s = time.monotonic() - started
        time.sleep(2.0)  # let the server run into the limit
        during = served(server.port, timeout=2)
        for sock in socks:
            sock.close()
        left = time.monotonic()
        again: Optional[float] = None
        while time.monotonic() - left < give_up:
            if served(server.port, timeout=2):
                again = time.monotonic() - left
                break
            time.sleep(0.1)
        return {"attackers": len(socks), "connect_s": connect_s,
                "served_with_attackers_connected": during,
                "served_again_after_s": again}
    finally:
        for sock in socks:
            sock.close()
        server.close()


def concurrent(tree: Path, clients: int = 200) -> Dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    server = ServerProcess(tree, nofile=1024)
    ok: List[int] = []
    lock = threading.Lock()
    opened = threading.Barrier(clients + 1, timeout=120)

    def one(i: int) -> None:
        client = None
        try:
            client = transcription_client(server.port)
            opened.wait()  # all open at once before any of them speaks
            client.send({"type": "input_audio_buffer.append",
                         "audio": base64.b64encode(b"\0" * 9600).decode()})
            client.send({"type": "input_audio_buffer.commit"})
            done = client.next_event("conversation.item.input_audio_transcription.completed")
            if done["transcript"] == "200 ms of audio":
                with lock:
                    ok.append(i)
        except Exception:  # noqa: BLE001 - a failed client is counted, not raised
            try:
                opened.abort()
            except threading.BrokenBarrierError:
                pass
        finally:
            if client is not None:
                client.close()

    try:
        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            opened.wait()
        except threading.BrokenBarrierError:
            pass
        for thread in threads:
            thread.join(120)
        return {"clients": clients, "served": len(ok), "seconds": time.monotonic() - started}
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout to measure in the same run (the previous tree)")
    parser.add_argument("--update-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="10 s update flood, 20 MB appends")
    args = parser.parse_args()
    trees = [("after", ROOT)] + ([("before", args.before)] if args.before else [])
    seconds = 10.0 if args.quick else args.update_seconds
    append_mb = 20 if args.quick else 100
    print(f"load average {os.getloadavg()[0]:.1f} / {os.cpu_count()} cores")
    scenarios: List[tuple[str, Callable[[Path], Dict[str, Any]]]] = [
        (f"append flood {append_mb} MB, 1 MiB appends", lambda t: append_flood(t, append_mb)),
        (f"append flood {append_mb} MB, 10 MiB appends",
         lambda t: append_flood(t, append_mb, 10)),
        (f"session.update flood {seconds:g} s", lambda t: update_flood(t, seconds)),
        ("1024 fds, 1000 half-open attackers, no cap",
         lambda t: descriptors(t, {"max_connections": None})),
        ("1024 fds, 1000 half-open attackers, max_connections=240",  # serve's default there
         lambda t: descriptors(t, {"max_connections": 240})),
        ("200 concurrent clients", concurrent),
    ]
    for title, run in scenarios:
        for label, tree in trees:
            result = run(tree)
            shown = ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in result.items())
            print(f"{title:58s} {label:6s} {shown}", flush=True)


if __name__ == "__main__":
    main()

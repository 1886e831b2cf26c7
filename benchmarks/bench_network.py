"""Figures for the transport's hostile-network fixes (issue 11, failures 2, 3, 5, 7, 11).

    python benchmarks/bench_network.py [--rounds 3] [--storm-seconds 20] [--before DIR]

- time to detect a half frame followed by silence (``ping_interval + ping_timeout`` = 2 s);
- time for ``close()`` while a send is stuck on a server that stopped reading (pinging);
- time for Ctrl-C to end a process whose send is stuck;
- peak traced memory while a server streams a frame announcing 2^40 bytes;
- reconnects in a storm (every session closed with 1011 right after ``session.created``)
  with the default ``Backoff``; ``--before DIR`` runs the same storm with another
  ``realtime_sync`` tree (e.g. the first round's) in a subprocess, for the ratio;
- ``connect(timeout=T)`` against a server that upgrades and stays silent: the overshoot.

Standalone, with the raw-socket servers of ``tests/raw_hostile.py``; about a minute.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from raw_hostile import (  # noqa: E402
    RawServer,
    close_frame,
    frame,
    header,
    session_created,
    upgrade,
)

import realtime_sync as rs  # noqa: E402

KEY = "sk-bench-network-000000"


def hold(srv: RawServer, conn: socket.socket) -> None:
    conn.settimeout(0.1)
    while not srv.stopping:
        try:
            if not conn.recv(65536):
                return
        except socket.timeout:
            continue


def half_frame() -> float:
    def behave(conn: socket.socket, n: int) -> None:
        upgrade(conn)
        conn.sendall(session_created(n))
        time.sleep(0.2)
        conn.sendall(header(0x1, 100) + b'{"type":"x.')
        hold(srv, conn)

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, ping_interval=1.0,
                                   ping_timeout=1.0, reconnect=False)
        client.connect(timeout=5)
        time.sleep(0.25)
        started = time.monotonic()
        client.wait_for("client.disconnected", timeout=30)
        took = time.monotonic() - started
        client.close()
    return took


def stalled(srv: RawServer, conn: socket.socket, n: int) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    upgrade(conn)
    conn.sendall(session_created(n))
    while not srv.wait(0.05):
        conn.sendall(frame(0x9, b"hi"))


def close_stalled() -> float:
    with RawServer(lambda c, n: stalled(srv, c, n)) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, ping_interval=20)
        client.connect(timeout=5)

        def flood() -> None:
            try:
                while True:
                    client.input_audio_buffer.append(b"\x01\x00" * 24000)
            except rs.NotConnectedError:
                pass

        t = threading.Thread(target=flood)
        t.start()
        time.sleep(1.0)
        started = time.monotonic()
        ok = client.close(timeout=5)
        took = time.monotonic() - started
        t.join(5)
        assert ok
    return took


CHILD = """
import sys
import realtime_sync as rs
client = rs.RealtimeClient(url=sys.argv[1], api_key="sk-x", ping_interval=20)
client.connect(timeout=5)
print("sending", flush=True)
while True:
    client.input_audio_buffer.append(b"\\x01\\x00" * 24000)
"""


def ctrl_c() -> float:
    with RawServer(lambda c, n: stalled(srv, c, n)) as srv:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = subprocess.Popen([sys.executable, "-c", CHILD, srv.url],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert child.stdout is not None
        child.stdout.readline()
        time.sleep(1.5)
        started = time.monotonic()
        child.send_signal(signal.SIGINT)
        child.wait(30)
        return time.monotonic() - started


def frame_bomb() -> float:
    def behave(conn: socket.socket, n: int) -> None:
        upgrade(conn)
        conn.sendall(session_created(n))
        time.sleep(0.3)
        conn.sendall(header(0x1, 1 << 40))
        chunk = b"\x00" * 65536
        while not srv.stopping:
            conn.sendall(chunk)

    with RawServer(behave) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, reconnect=False)
        client.connect(timeout=5)
        tracemalloc.start()
        tracemalloc.reset_peak()
        client.wait_for("client.disconnected", timeout=30)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        client.close()
    return peak / 2**20


STORM_CHILD = """
import sys, time
import realtime_sync as rs
print(rs.__file__, file=sys.stderr)
url, seconds = sys.argv[1], float(sys.argv[2])
client = rs.RealtimeClient(url=url, api_key="sk-x")
client.connect(timeout=5)
time.sleep(seconds)
print(client.stats()["reconnects"], flush=True)
client.close(timeout=2)
"""


def storm(seconds: float, tree: str) -> int:
    def behave(conn: socket.socket, n: int) -> None:
        upgrade(conn)
        conn.sendall(session_created(n) + close_frame(1011, "overloaded"))
        hold(srv, conn)

    with RawServer(behave) as srv:
        subprocess.run([sys.executable, "-c", STORM_CHILD, srv.url, str(seconds)],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=tree),
                       timeout=seconds + 60, cwd=tree)  # cwd: "-c" puts it first on sys.path
        return srv.connection_count - 1


def connect_overshoot(t: float) -> float:
    with RawServer(lambda c, n: (upgrade(c), hold(srv, c))) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY)
        started = time.monotonic()
        try:
            client.connect(timeout=t)
        except rs.TimeoutError:
            pass
        took = time.monotonic() - started
        client.close()
    return took - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storm-seconds", type=float, default=20.0)
    parser.add_argument("--before", help="another realtime_sync tree for the storm ratio")
    args = parser.parse_args()

    def med(fn, *a):  # type: ignore[no-untyped-def]
        values = [fn(*a) for _ in range(args.rounds)]
        return statistics.median(values), max(values)

    m, worst = med(half_frame)
    print(f"half frame + silence detected after {m:.2f} s (worst {worst:.2f} s; "
          "ping_interval + ping_timeout = 2.0 s)")
    m, worst = med(close_stalled)
    print(f"close() with a send stuck on a stalled, pinging peer: {m:.3f} s (worst {worst:.3f})")
    m, worst = med(ctrl_c)
    print(f"Ctrl-C ends a process with a stuck send in {m:.3f} s (worst {worst:.3f})")
    m, worst = med(frame_bomb)
    print(f"peak traced memory under a 2^40-byte frame header: {m:.2f} MiB (worst {worst:.2f})")
    for t in (1.0, 3.0):
        m, worst = med(connect_overshoot, t)
        print(f"connect(timeout={t:g}) against a silent 101: overshoot {m * 1000:.0f} ms "
              f"(worst {worst * 1000:.0f} ms)")
    after = storm(args.storm_seconds, str(ROOT))
    line = (f"storm (1011 after every session.created), default Backoff, "
            f"{args.storm_seconds:g} s: {after} reconnects")
    if args.before:
        before = storm(args.storm_seconds, args.before)
        line += f"; before: {before} ({before / max(after, 1):.1f}x as many)"
    print(line)
    print("   steady state: one attempt per Backoff.maximum (30 s) = 2 per minute")


if __name__ == "__main__":
    main()

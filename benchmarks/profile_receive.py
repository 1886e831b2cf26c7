"""Per-frame profile of the receive path (network thread and dispatcher thread).

    python benchmarks/profile_receive.py [--core] [--kind small|audio] [--n 20000] [--tree DIR]

Runs one ``realtime_sync`` client against the benchmark server (``blast``), with
``cProfile`` on the network thread (socket read, framing, parsing, routing) and on the
dispatcher thread (handlers), and prints each thread's top functions in microseconds of own
time per event. ``--core`` blocks ``orjson`` and ``wsaccel`` (the core install). Profiling
inflates Python-level calls, so read it for where the time goes, not for absolute speed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._install import core_install  # noqa: E402

KIND_TYPES = {
    "small": "conversation.item.input_audio_transcription.delta",
    "audio": "response.output_audio.delta",
}


def _profiled(target: Callable[..., Any], profiles: List[cProfile.Profile]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        prof = cProfile.Profile()
        profiles.append(prof)
        return prof.runcall(target, *args, **kwargs)

    return run


WAITS = ("select.select", "poll' of 'select.epoll", "acquire' of '_thread.lock",
         "method 'wait'")
"""Calls that block (waiting for bytes, or for the other thread): not CPU of this thread."""


def report(prof: cProfile.Profile, n: int, title: str, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    rows = []
    busy = waiting = 0.0
    for (file, line, name), (_cc, nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({name})"
        if any(w in where for w in WAITS):
            waiting += tt
            continue
        busy += tt
        rows.append((tt, nc, where))
    rows.sort(reverse=True)
    print(f"{title}: {busy / n * 1e6:.2f} us per event running (profiled), "
          f"{waiting / n * 1e6:.2f} us waiting in select/locks")
    for tt, nc, where in rows[:top]:
        print(f"  {tt / n * 1e6:7.2f} us  {nc / n:6.2f} calls/event  {where}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--core", action="store_true", help="block orjson and wsaccel")
    parser.add_argument("--kind", choices=sorted(KIND_TYPES), default="small")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--tree", type=Path, help="import realtime_sync from this checkout")
    args = parser.parse_args()
    if args.core:
        core_install()
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
    import realtime_sync as rs
    from benchmarks._servers import BenchServer
    from realtime_sync._core import dispatch, transport

    net: List[cProfile.Profile] = []
    disp: List[cProfile.Profile] = []
    transport.Transport._run = _profiled(transport.Transport._run, net)  # type: ignore[method-assign]
    dispatch.Router._run = _profiled(dispatch.Router._run, disp)  # type: ignore[method-assign]
    done = threading.Event()
    count = [0]

    def handler(event: rs.Event) -> None:
        count[0] += 1
        if count[0] == args.n:
            done.set()

    with BenchServer() as srv:
        client = rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                                   reconnect=False)
        client.on(KIND_TYPES[args.kind], handler)
        client.connect(timeout=10)
        t0 = time.perf_counter()
        client.conversation.item.retrieve(f"blast:{args.kind}:{args.n}")
        if not done.wait(300):
            raise SystemExit(f"only {count[0]} of {args.n} events")
        elapsed = time.perf_counter() - t0
        client.close()
    print(f"{args.n} {args.kind} events in {elapsed:.2f} s under the profiler "
          f"({'core install' if args.core else 'as installed'})")
    report(net[0], args.n, "network thread", args.top)
    report(disp[0], args.n, "dispatcher thread", args.top)


if __name__ == "__main__":
    main()

"""Receive and dispatch throughput: server event to user handler, three clients, one server.

    python benchmarks/bench_receive.py [--rounds 3] [--core] [--tree DIR] [--json]

The benchmark server (another process) blasts ``n`` pre-serialised events as fast as the socket
takes them; each client counts events in its handler until ``n``. The clock starts just
before the client sends the command and stops when the ``n``-th event reaches the handler.

* ``bare``: ``websocket.WebSocketApp`` whose ``on_message`` only does ``json.loads`` (with
  ``skip_utf8_validation=True``) -- the floor of what any websocket-client program costs.
* ``sdk``: the official ``openai`` SDK's sync connection, ``for event in conn``.
* ``realtime_sync``: a handler registered with ``client.on(type, handler)``; events travel
  network thread -> dispatch queue -> dispatcher thread.

``--core`` measures the core install (``orjson`` and ``wsaccel`` blocked for every client);
``--tree DIR`` imports ``realtime_sync`` from another checkout (e.g. the previous release, from
``git worktree add``), so two trees can be compared in alternating runs against the same kind
of server (``benchmarks/bench_trees.py``); ``--json`` prints the rates as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._install import core_install, install_name  # noqa: E402
from benchmarks._servers import BenchServer  # noqa: E402

KIND_TYPES = {
    "small": "conversation.item.input_audio_transcription.delta",
    "audio": "response.output_audio.delta",
}
DEFAULT_N = {"small": 40000, "audio": 15000}


def _retrieve(item_id: str) -> str:
    return json.dumps({"type": "conversation.item.retrieve", "item_id": item_id})


def run_bare(srv: BenchServer, kind: str, n: int) -> float:
    """Events/s for a bare WebSocketApp that only json.loads each message."""
    import websocket

    done = threading.Event()
    state = {"count": 0, "t0": 0.0, "t1": 0.0}
    loads = json.loads

    def on_open(ws: websocket.WebSocketApp) -> None:
        state["t0"] = time.perf_counter()
        ws.send(_retrieve(f"blast:{kind}:{n}"))

    def on_message(ws: websocket.WebSocketApp, message: bytes) -> None:
        loads(message)
        state["count"] += 1
        if state["count"] == n:
            state["t1"] = time.perf_counter()
            done.set()
            ws.close()

    app = websocket.WebSocketApp(srv.url, header=["Authorization: Bearer sk-local"],
                                 on_open=on_open, on_message=on_message)
    t = threading.Thread(target=app.run_forever, kwargs={"skip_utf8_validation": True},
                         daemon=True)
    t.start()
    if not done.wait(120):
        raise RuntimeError(f"bare: only {state['count']} of {n} events")
    t.join(10)
    return n / (state["t1"] - state["t0"])


def run_sdk(srv: BenchServer, kind: str, n: int) -> float:
    """Events/s for the openai SDK's sync realtime connection iterating events."""
    from openai import OpenAI

    client = OpenAI(api_key="sk-local", websocket_base_url=srv.base_url)
    with client.realtime.connect(model="gpt-realtime") as conn:
        first = conn.recv()
        assert first.type == "session.created", first.type
        t0 = time.perf_counter()
        conn.conversation.item.retrieve(item_id=f"blast:{kind}:{n}")
        for count, _event in enumerate(conn, 1):
            if count == n:
                break
        t1 = time.perf_counter()
    return n / (t1 - t0)


def run_rs(srv: BenchServer, kind: str, n: int) -> float:
    """Events/s for realtime_sync: a handler on the dispatcher thread."""
    import realtime_sync as rs

    done = threading.Event()
    state = {"count": 0, "t1": 0.0}

    def handler(event: rs.Event) -> None:
        state["count"] += 1
        if state["count"] == n:
            state["t1"] = time.perf_counter()
            done.set()

    client = rs.RealtimeClient(url=srv.url, api_key="sk-local", intent="transcription",
                               reconnect=False)
    client.on(KIND_TYPES[kind], handler)
    client.connect(timeout=10)
    try:
        t0 = time.perf_counter()
        client.conversation.item.retrieve(f"blast:{kind}:{n}")
        if not done.wait(120):
            raise RuntimeError(f"realtime_sync: only {state['count']} of {n} events")
    finally:
        client.close()
    return n / (state["t1"] - t0)


CLIENTS: Dict[str, Callable[[BenchServer, str, int], float]] = {
    "bare": run_bare,
    "sdk": run_sdk,
    "realtime_sync": run_rs,
}


def measure(srv: BenchServer, rounds: int = 3, n: Dict[str, int] = DEFAULT_N,
            clients: Dict[str, Callable[[BenchServer, str, int], float]] = CLIENTS,
            log: Callable[[str], None] = print) -> Dict[str, Dict[str, List[float]]]:
    """Interleaved rounds (a warm-up round is discarded); per kind and client, events/s."""
    out: Dict[str, Dict[str, List[float]]] = {k: {c: [] for c in clients} for k in n}
    for kind, count in n.items():
        for fn in clients.values():  # warm-up: imports, caches, TCP
            fn(srv, kind, count // 5)
        for r in range(rounds):
            order = list(clients.items())
            if r % 2:
                order.reverse()
            for name, fn in order:
                rate = fn(srv, kind, count)
                out[kind][name].append(rate)
                log(f"  receive {kind:5s} round {r + 1} {name:13s} {rate:10,.0f} events/s")
    return out


def run_isolated(rounds: int = 3, core: bool = True, tree: Optional[Path] = None,
                 scale: float = 1.0) -> Dict[str, Dict[str, List[float]]]:
    """:func:`measure` in a fresh interpreter (``--core``: the core install; ``tree``: another
    checkout's ``realtime_sync``), against its own benchmark server."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json", "--rounds", str(rounds),
           "--scale", str(scale)]
    if core:
        cmd.append("--core")
    if tree is not None:
        cmd += ["--tree", str(tree)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])["rates"]  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(CLIENTS), action="append")
    parser.add_argument("--core", action="store_true", help="block orjson and wsaccel")
    parser.add_argument("--tree", type=Path, help="import realtime_sync from this checkout")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the event counts")
    parser.add_argument("--json", action="store_true", help="print one JSON line of rates")
    args = parser.parse_args()
    if args.core:
        core_install()
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
    clients = {k: v for k, v in CLIENTS.items() if not args.only or k in args.only}
    counts = {k: max(1000, int(v * args.scale)) for k, v in DEFAULT_N.items()}
    log: Callable[[str], None] = (lambda line: None) if args.json else print
    with BenchServer() as srv:
        res = measure(srv, rounds=args.rounds, n=counts, clients=clients, log=log)
    if args.json:
        import realtime_sync

        print(json.dumps({"install": install_name(), "tree": str(Path(realtime_sync.__file__)
                                                                  .resolve().parent.parent),
                          "rates": res}))
        return
    for kind, per in res.items():
        med = {c: statistics.median(v) for c, v in per.items()}
        line = "  ".join(f"{c}={r:,.0f}/s" for c, r in med.items())
        print(f"{kind}: {line}")
        if "realtime_sync" in med:
            for other in ("bare", "sdk"):
                if other in med:
                    print(f"   realtime_sync / {other} = {med['realtime_sync'] / med[other]:.2f}x")


if __name__ == "__main__":
    main()

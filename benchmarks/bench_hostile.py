"""Figures for the hostile-server fixes of the features (issue 11, failures 4 and 7).

    python benchmarks/bench_hostile.py [--rounds 20]

- how long ``ask()`` takes to fail with ``ConnectionLostError`` after the server drops the
  connection mid-response (close 1011 right after a text delta);
- peak traced memory of an ``ask()`` answered with one ``content_index: 10000000`` delta,
  beside the same answer without it (ratio);
- the cost of masking a registered key in every received frame (a 100 ms audio delta).

Standalone (its own small ``websockets`` server from the tests), a few seconds.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
import timeit
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import realtime_sync as rs  # noqa: E402
from realtime_sync._core import credentials as _secrets  # noqa: E402
from tests.hostile import HostileServer, created, send  # noqa: E402

KEY = "sk-bench-0123456789abcdef"


def answer(server, ws, n, deltas):
    server.until(ws, "conversation.item.create")
    create = server.until(ws, "response.create")
    meta = create["response"]["metadata"]
    rid, aid = f"resp_{n}", f"item_{n}"
    send(ws, {"type": "response.created", "event_id": "a", "response": {
        "id": rid, "status": "in_progress", "output": [], "metadata": meta}})
    send(ws, {"type": "response.output_item.added", "event_id": "b", "response_id": rid,
              "output_index": 0, "item": {"id": aid, "type": "message", "role": "assistant",
                                          "status": "in_progress", "content": []}})
    for i, extra in enumerate(deltas):
        send(ws, dict({"type": "response.output_text.delta", "event_id": f"c{i}",
                       "response_id": rid, "item_id": aid, "output_index": 0,
                       "content_index": 0, "delta": "x"}, **extra))
    return rid, aid, meta


def ask_drop_latency(rounds: int) -> list:
    closed_at = {}

    def script(ws, n, server):
        created(ws, f"sess_{n}")
        if n % 2 == 0:  # every other connection: answer partly, then drop
            answer(server, ws, n, [{}])
            time.sleep(0.05)
            closed_at[n] = time.monotonic()
            ws.close(1011, "internal")
            return
        server.absorb(ws)

    out = []
    with HostileServer(script) as srv:
        client = rs.RealtimeClient(url=srv.url, api_key=KEY, model="gpt-realtime-2.1",
                                   reconnect=rs.Backoff(initial=0.01, maximum=0.05))
        with client:
            for _ in range(rounds):
                n = srv.connections - 1
                try:
                    client.ask("hi", timeout=None)
                except rs.ConnectionLostError:
                    out.append(time.monotonic() - closed_at[n])
                client.wait_for("client.reconnected", timeout=10)
                # the next connection only listens: have it drop so the following round
                # meets an answering one
                client.host.restart()
                client.wait_for("client.reconnected", timeout=10)
    return out


def attack_peak(index) -> float:
    def script(ws, n, server):
        created(ws, "sess")
        rid, aid, meta = answer(server, ws, 1, [{"content_index": index}] if index else [{}])
        item = {"id": aid, "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "x"}]}
        send(ws, {"type": "response.done", "event_id": "d", "response": {
            "id": rid, "status": "completed", "output": [item], "metadata": meta}})
        server.absorb(ws)

    with HostileServer(script) as srv, \
            rs.RealtimeClient(url=srv.url, api_key=KEY, model="gpt-realtime-2.1") as client:
        conv = rs.Conversation(client)
        tracemalloc.start()
        try:
            client.ask("hi", timeout=30)
            client.flush(5)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        conv.close()
    return peak / 1e6


def redaction_cost() -> float:
    _secrets.register(KEY)
    frame = json.dumps({"type": "response.output_audio.delta", "event_id": "e",
                        "delta": base64.b64encode(bytes(4800)).decode()}).encode()
    n = 20000
    seconds = timeit.timeit(lambda: _secrets.redact_frame(frame), number=n)
    return seconds / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    lat = ask_drop_latency(args.rounds)
    print(f"ask() fails after a drop: median {statistics.median(lat) * 1000:.1f} ms, "
          f"max {max(lat) * 1000:.1f} ms over {len(lat)} drops")
    benign = attack_peak(None)
    attack = attack_peak(10_000_000)
    print(f"peak traced memory of ask(): benign {benign:.2f} MB, content_index 10000000 "
          f"{attack:.2f} MB (ratio {attack / benign:.2f})")
    print(f"masking a key in a 100 ms audio delta frame: {redaction_cost():.2f} µs per frame")


if __name__ == "__main__":
    main()

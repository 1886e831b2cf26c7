"""Run every realtime_sync benchmark, print a table, write docs/benchmarks.md and a chart.

    python benchmarks/run.py [--rounds 3] [--no-write]

Needs ``openai`` (the SDK is a contender) and ``matplotlib`` (the chart). Takes a few
minutes on a 2-core machine. Receive and send compare three clients side by side against
ONE benchmark server (``benchmarks/_servers.py``, its own process), in interleaved rounds
(a warm-up round discarded, the order alternating), reporting medians and ratios. The cost
benchmarks run each in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    bench_cost,
    bench_latency,
    bench_receive,
    bench_send,
    bench_vad,
)
from benchmarks._servers import BenchServer  # noqa: E402

DOCS = ROOT / "docs"

# (label, value, target text, passed) rows of the summary
Row = Tuple[str, str, str, bool]


def environment() -> str:
    import orjson  # noqa: F401 - the fast extra is part of the measured setup
    import websocket

    try:
        import openai

        sdk = openai.__version__
    except ImportError:  # pragma: no cover
        sdk = "not installed"
    import realtime_sync as rs
    from realtime_sync._core import json_codec as _json

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
            f"{os.cpu_count()} cores ({cpu}); realtime_sync {rs.__version__} "
            f"(JSON: {_json.BACKEND}), websocket-client {websocket.__version__}, "
            f"openai {sdk}; load average at start {os.getloadavg()[0]:.2f}")


def chart(ratios: List[Tuple[str, float, float]], path: Path) -> None:
    """Horizontal bars of realtime_sync's ratios, with each target marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r[0] for r in ratios]
    values = [r[1] for r in ratios]
    targets = [r[2] for r in ratios]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(ratios) + 1.2), dpi=110)
    y = list(range(len(ratios)))[::-1]
    colors = ["#2a7ab0" if v >= t else "#c0392b" for v, t in zip(values, targets)]
    ax.barh(y, values, color=colors, height=0.6)
    for yi, v, t in zip(y, values, targets):
        ax.plot([t, t], [yi - 0.4, yi + 0.4], color="black", linewidth=2)
        ax.text(v + 0.05, yi, f"{v:.2f}x", va="center", fontsize=9)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=9)
    ax.set_xlabel("speed relative to the other client (higher is better; black tick: target)",
                  fontsize=9)
    ax.set_title("realtime_sync vs bare websocket-client and the openai SDK\n"
                 "(same server, same run)", fontsize=10)
    ax.set_xlim(0, max(values + targets) * 1.18)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--speech", action="store_true",
                        help="also run the offline engine on real speech (bench_speech.py; "
                             "fetches the recordings first; 20-40 min on 2 cores)")
    parser.add_argument("--live", action="store_true",
                        help="also run the offline engine live on real speech (bench_live.py: "
                             "default setting, 24 English prompts fed in real time; ~4 min)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    t_start = time.monotonic()
    env = environment()
    print(env)

    print("receive, core install (no orjson, no wsaccel; fresh interpreter): events/s")
    recv_core = bench_receive.run_isolated(rounds=args.rounds, core=True)
    for kind, per in recv_core.items():
        print("  " + kind + ": " + "  ".join(f"{c}={statistics.median(v):,.0f}"
                                             for c, v in per.items()))
    print("receive, fast extra (orjson, wsaccel): server event -> handler (events/s)")
    with BenchServer() as srv:
        recv = bench_receive.measure(srv, rounds=args.rounds)
        print("send: input_audio_buffer.append of 100 ms (us per call)")
        send = bench_send.measure(srv, rounds=args.rounds)
        print("latency: server send -> handler (ms)")
        lat = bench_latency.measure(srv)
    print("cost: fresh interpreters")
    cost = {job: bench_cost.run_isolated(job) for job in bench_cost.JOBS}
    for job, res in cost.items():
        print(f"  {job}: {res}")
    print("client_vad: CPU per second of audio, end of speech -> committed (real time)")
    vad = bench_vad.measure()
    print(f"  {vad}")

    speech = None
    if args.speech:
        from benchmarks import bench_speech, fetch_speech

        if not (bench_speech.DATA / "manifest.json").exists():
            fetch_speech.main([])
        print("offline engine on real speech (WER, RTF, partial and final latency)")
        speech = bench_speech.table(bench_speech.main(["--silence-ms", "200"]))

    live = None
    if args.live:
        from benchmarks import bench_live, fetch_speech

        if not (bench_live.DATA / "manifest.json").exists():
            fetch_speech.main([])
        print("offline engine live on real speech (first partial, end of speech -> final)")
        live = bench_live.main(["--settings", "default", "--prompts", "24"])[0]

    send_med = {c: statistics.median(v) for c, v in send.items()}
    rows: List[Row] = []
    ratios: List[Tuple[str, float, float]] = []
    names = {"small": "small transcription deltas", "audio": "100 ms audio deltas"}
    sdk_target = {"small": 5.0, "audio": 4.0}
    for install, results in (("core install", recv_core), ("fast extra", recv)):
        med = {k: {c: statistics.median(v) for c, v in per.items()}
               for k, per in results.items()}
        for kind in ("small", "audio"):
            m = med[kind]
            rb = m["realtime_sync"] / m["bare"]
            rsdk = m["realtime_sync"] / m["sdk"]
            rows.append((f"receive {names[kind]} ({install}): realtime_sync / bare WebSocketApp",
                         f"{rb:.2f}x ({m['realtime_sync']:,.0f} vs {m['bare']:,.0f} events/s)",
                         ">= 1.2x", rb >= 1.2))
            rows.append((f"receive {names[kind]} ({install}): realtime_sync / openai SDK",
                         f"{rsdk:.2f}x ({m['realtime_sync']:,.0f} vs {m['sdk']:,.0f} events/s)",
                         f">= {sdk_target[kind]:.0f}x", rsdk >= sdk_target[kind]))
            ratios.append((f"receive {kind} ({install}): vs bare WebSocketApp", rb, 1.2))
            ratios.append((f"receive {kind} ({install}): vs openai SDK", rsdk,
                           sdk_target[kind]))
    us = send_med["realtime_sync"]
    sr = send_med["sdk"] / us
    rows.append(("send: append of 100 ms, PCM bytes to socket", f"{us:.1f} us per call",
                 "<= 35 us", us <= 35))
    rows.append(("send: openai SDK time / realtime_sync time",
                 f"{sr:.2f}x ({send_med['sdk']:.1f} vs {us:.1f} us)", ">= 2x", sr >= 2))
    ratios.append(("send append: vs openai SDK", sr, 2.0))
    c = cost
    rows.append(("CPU of one live transcription session (10 appends/s + deltas)",
                 f"{c['cpu']['cpu_percent']:.2f} % of a core", "<= 0.7 %",
                 c["cpu"]["cpu_percent"] <= 0.7))
    rows.append(("memory per idle connected client (RSS; Python heap)",
                 f"{c['memory']['rss_kib_per_client']:.0f} KiB; "
                 f"{c['memory']['heap_kib_per_client']:.0f} KiB", "<= 100 KiB",
                 c["memory"]["rss_kib_per_client"] <= 100))
    m = c["many"]
    steady = m["lag_p99_last_s_ms"] <= max(2 * m["lag_p99_first_s_ms"], 100)
    complete = m["deltas"] >= m["appends"]
    rows.append((f"{m['sessions']:.0f} live sessions in one process, 10 s: lag p50 / p99 / max",
                 f"{m['lag_p50_ms']:.1f} / {m['lag_p99_ms']:.1f} / {m['lag_max_ms']:.1f} ms "
                 f"(p99 first s {m['lag_p99_first_s_ms']:.1f}, last s "
                 f"{m['lag_p99_last_s_ms']:.1f}; {m['cpu_percent']:.0f} % CPU)",
                 "real-time pace (flat lag)", steady and complete))
    imp = c["import"]
    rows.append(("import realtime_sync, added over import websocket (core install)",
                 f"{imp['core_realtime_sync_added_ms']:.1f} ms (websocket: "
                 f"{imp['core_websocket_ms']:.1f}; fast extra: "
                 f"{imp['realtime_sync_added_ms']:.1f} ms)",
                 "<= 30 ms", imp["core_realtime_sync_added_ms"] <= 30))
    rows.append(("client_vad (Silero VAD in the client): CPU per second of audio",
                 f"{vad['cpu_s_per_s'] * 1000:.1f} ms", "<= 50 ms",
                 vad["cpu_s_per_s"] <= 0.05))
    rows.append((f"client_vad: end of speech -> committed, p50 / p95 ({vad['utterances']} "
                 "utterances, 500 ms pause setting)",
                 f"{vad['p50_ms']:.0f} / {vad['p95_ms']:.0f} ms", "p95 <= 750 ms",
                 vad["p95_ms"] <= 750 and vad["commits"] == vad["utterances"]))
    rows.append(("client_vad on real human speech (beckett_16k.wav): turns per sentence",
                 f"{vad['human_turns']} turns for {vad['human_sentences']} sentences "
                 f"({vad['human_cpu_s_per_s'] * 1000:.1f} ms CPU per s)", "one per sentence",
                 vad["human_turns"] == vad["human_sentences"]))
    if live is not None:
        lv = live
        rows.append((f"offline engine live, default models ({lv['prompts']} English prompts "
                     "in real time): first partial after speech onset, p50 / p95",
                     f"{lv['first_p50'] or 0:.2f} / {lv['first_p95'] or 0:.2f} s",
                     "<= 1.0 / 1.6 s", (lv["first_p50"] or 99) <= 1.0
                     and (lv["first_p95"] or 99) <= 1.6))
        rows.append(("offline engine live: end of speech -> final, p50 / p95; WER of finals",
                     f"{lv['final_p50'] or 0:.2f} / {lv['final_p95'] or 0:.2f} s; "
                     f"{lv['wer']:.1%}", "<= 0.7 / 1.2 s; <= 4 %",
                     (lv["final_p50"] or 99) <= 0.7 and (lv["final_p95"] or 99) <= 1.2
                     and lv["wer"] <= 0.04))
    lat_rows = [(name, v["p50"], v["p99"]) for name, v in lat.items()]

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure'.ljust(width)}  {'result':<60} target      ok")
    for label, value, target, ok in rows:
        print(f"{label.ljust(width)}  {value:<60} {target:<11} {'yes' if ok else 'NO'}")
    print()
    for name, p50, p99 in lat_rows:
        print(f"latency {name:<55} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    elapsed = time.monotonic() - t_start
    print(f"\n(total {elapsed:.0f} s)")
    if args.no_write:
        return

    DOCS.mkdir(exist_ok=True)
    chart(ratios, DOCS / "benchmarks.png")
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/run.py` on "
        f"{datetime.date.today().isoformat()} ({elapsed:.0f} s). Do not edit by hand.",
        "",
        f"Setup: {env}.",
        "",
        "All clients talk to the same benchmark server (`benchmarks/_servers.py`, a minimal "
        "RFC 6455 server in its own process that sends pre-built frames) in one run; receive "
        f"and send use {args.rounds} interleaved rounds after a discarded warm-up, and the "
        "medians (`python benchmarks/bench_trees.py OTHER_CHECKOUT --core` compares two "
        "trees the same way, alternating runs). `bare` is a `websocket.WebSocketApp` whose "
        "`on_message` only calls "
        "`json.loads` (`skip_utf8_validation=True`); `sdk` is the official `openai` SDK's sync "
        "connection (`OpenAI(websocket_base_url=...).realtime.connect(...)`, iterating events, "
        "`conn.input_audio_buffer.append(audio=base64)`).",
        "",
        "![ratios](benchmarks.png)",
        "",
        "| measure | result | target | met |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {t} | {'yes' if ok else '**no**'} |" for a, b, t, ok in rows]
    lines += [
        "",
        "## Receive throughput (events/s, every round)",
        "",
        "The core install (`pip install realtime-sync`: stdlib `json`, no wsaccel) is measured "
        "in a fresh interpreter with `orjson` and `wsaccel` blocked for every client; the fast "
        "extra with both.",
        "",
        "| install | events | client | rounds | median |",
        "| --- | --- | --- | --- | --- |",
    ]
    for install, results in (("core", recv_core), ("fast", recv)):
        for kind, per in results.items():
            for client, vals in per.items():
                lines.append(f"| {install} | {names[kind]} | {client} | "
                             f"{', '.join(f'{v:,.0f}' for v in vals)} | "
                             f"{statistics.median(vals):,.0f} |")
    lines += [
        "",
        "## Send (us per `input_audio_buffer.append` of 100 ms, every round)",
        "",
        "| client | rounds | median |",
        "| --- | --- | --- |",
    ]
    for client, vals in send.items():
        lines.append(f"| {client} | {', '.join(f'{v:.1f}' for v in vals)} | "
                     f"{statistics.median(vals):.1f} |")
    lines += [
        "",
        "## Latency, server event to handler, loopback",
        "",
        f"{bench_latency.N} small deltas, one every {bench_latency.INTERVAL_MS} ms; stamps "
        "from one monotonic clock.",
        "",
        "| scenario | p50 | p99 |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {n} | {p50:.2f} ms | {p99:.2f} ms |" for n, p50, p99 in lat_rows]
    lines += [
        "",
        "A CPU-bound Python thread in the same process holds the GIL for up to the switch "
        "interval (`sys.getswitchinterval()`, 5 ms) each time another thread wants it. "
        "realtime_sync needs the GIL twice per event (network thread, then dispatcher) and "
        "reads the socket in 256 KiB chunks, so a burst costs one hand-over, not one per "
        "frame; a bare loop that does 2-3 `recv` calls per frame falls behind. If your "
        "process runs CPU-heavy Python threads, `sys.setswitchinterval(0.001)` cuts the "
        "added latency about fivefold at a small throughput cost; better still, move the "
        "heavy work to a process.",
        "",
        "## Client-side turn detection",
        "",
        f"`benchmarks/bench_vad.py`: {vad['audio_s']:.0f} s of espeak-ng speech with 0.8-1.5 s "
        "pauses (`tests/data/engine`) fed in real time in 20 ms chunks to a Transcriber with "
        "`turn_detection=\"client_vad\"` on the local server. The delay runs from feeding the "
        "end of an utterance's speech to `input_audio_buffer.committed`; the 500 ms pause "
        "that defines the end of a turn is part of it. The VAD package was chosen with "
        "`benchmarks/bench_vad_candidates.py` (accuracy on human and espeak speech, CPU).",
        "",
        "## Reproduce",
        "",
        "```",
        "pip install -e .[fast] openai matplotlib",
        "python benchmarks/run.py",
        "```",
        "",
        "The machine is shared and its absolute figures vary from run to run; the ratios, "
        "measured side by side in one run, are what the targets are about.",
        "",
    ]
    if speech is not None:
        lines += ["## Offline engine on real speech", "",
                  "`python benchmarks/bench_speech.py` (see its docstring for the paths and the "
                  "text normalisation); recordings from `benchmarks/fetch_speech.py`.", "",
                  speech, ""]
    (DOCS / "benchmarks.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'benchmarks.png'}")


if __name__ == "__main__":
    main()

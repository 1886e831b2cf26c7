"""``realtime-sync serve --local`` (own process) against ``transcribe --local`` (in-process).

    python benchmarks/bench_serve.py [--file F.wav] [--rounds 2] [--load 2] [--model base]

Under a parallel CPU load (``--load`` busy processes, default one per core), it times the CLI
transcribing the same file both ways, in alternating rounds, and prints the RTF (wall time /
audio duration) of each and their ratio. The decoder's OpenMP threads used to spin while
waiting, which starved the client process of ``serve --local`` (5-8x slower); the engine now
sets ``OMP_WAIT_POLICY=PASSIVE`` before CTranslate2 loads. Goal: the two within 20 %.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "realtime_sync"]
DEFAULT_FILE = ROOT / "tests" / "data" / "engine" / "meeting.wav"


def _spin(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _env() -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    env.pop("OMP_WAIT_POLICY", None)  # measure what the engine configures itself
    env.pop("GOMP_SPINCOUNT", None)
    return env


def in_process(path: Path, model: str) -> float:
    t0 = time.monotonic()
    subprocess.run(CLI + ["transcribe", "--local", "--model", model, str(path)], env=_env(),
                   check=True, capture_output=True, timeout=600)
    return time.monotonic() - t0


def served(path: Path, model: str) -> float:
    server = subprocess.Popen(CLI + ["serve", "--local", "--model", model, "--port", "0"],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        t0 = time.monotonic()
        subprocess.run(CLI + ["transcribe", "--url", url, str(path)], env=_env(), check=True,
                       capture_output=True, timeout=600)
        return time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(30)


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--model", default="base")
    args = parser.parse_args(argv)
    with wave.open(str(args.file)) as w:
        seconds = w.getnframes() / w.getframerate()
    stop = multiprocessing.Event()
    busy = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True)
            for _ in range(args.load)]
    for p in busy:
        p.start()
    times: Dict[str, List[float]] = {"in-process": [], "serve --local": []}
    try:
        for n in range(args.rounds):
            order = [("in-process", in_process), ("serve --local", served)]
            for name, run in (order if n % 2 == 0 else order[::-1]):
                times[name].append(run(args.file, args.model))
                print(f"round {n + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    finally:
        stop.set()
        for p in busy:
            p.join(5)
    # The in-process time includes the model load (the server's process loads it before
    # the timer starts), so it is an upper bound for the in-process side.
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["serve --local"] / med["in-process"]
    print(f"{args.file.name} ({seconds:.1f} s audio), model {args.model}, {args.load} busy "
          f"processes: RTF in-process {med['in-process'] / seconds:.2f} (with start-up), "
          f"serve --local {med['serve --local'] / seconds:.2f}; ratio {ratio:.2f}")
    return {"in_process_s": med["in-process"], "served_s": med["serve --local"],
            "ratio": ratio, "audio_s": seconds}


if __name__ == "__main__":
    main()

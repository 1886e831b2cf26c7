"""Start-up of ``realtime-sync transcribe --local FILE``: process start to the first decode.

    python benchmarks/bench_startup.py [--model base] [--runs 3] [--file F.wav]

Each run starts a fresh interpreter that runs the CLI's ``main()`` with faster-whisper's
``WhisperModel.transcribe`` wrapped to stamp its first call; the parent notes the time just
before starting the process. Reported apart: start-up (process start to first decode) and the
rest (decoding and output) as RTF over the file's duration. The model's SHA-256 check is cached
(see ``realtime_sync/server/_models.py``), so the first run after an install is slower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = ROOT / "tests" / "data" / "engine" / "meeting.wav"
PROBE = r"""
import os, sys, time
t0 = float(os.environ["RS_BENCH_T0"])
from realtime_sync.server import _models
_models.configure_threads()  # what the engine does before loading CTranslate2
import faster_whisper.transcribe as fwt
real = fwt.WhisperModel.transcribe
seen = []
def stamped(self, *a, **k):
    if not seen:
        seen.append(1)
        sys.stderr.write("FIRST_DECODE %.3f\n" % (time.time() - t0))
    return real(self, *a, **k)
fwt.WhisperModel.transcribe = stamped
from realtime_sync.cli import main
rc = main(sys.argv[1:])
sys.stderr.write("END %.3f\n" % (time.time() - t0))
sys.exit(rc)
"""


def run_once(path: Path, model: str) -> Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
               RS_BENCH_T0=f"{time.time():.6f}")
    out = subprocess.run([sys.executable, "-c", PROBE, "transcribe", "--local", "--model", model,
                          str(path)], env=env, capture_output=True, text=True, timeout=600,
                         check=True)
    stamps = {}
    for line in out.stderr.splitlines():
        key, _, value = line.partition(" ")
        if key in ("FIRST_DECODE", "END"):
            stamps[key] = float(value)
    return stamps


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--model", default="base")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with wave.open(str(args.file)) as w:
        seconds = w.getnframes() / w.getframerate()
    runs = [run_once(args.file, args.model) for _ in range(args.runs)]
    start = statistics.median(r["FIRST_DECODE"] for r in runs)
    rest = statistics.median(r["END"] - r["FIRST_DECODE"] for r in runs)
    each = ", ".join(f"{r['FIRST_DECODE']:.2f}" for r in runs)
    print(f"{args.model}, {args.file.name} ({seconds:.1f} s): start-up (process start -> first "
          f"decode) median {start:.2f} s (runs: {each}); after it RTF {rest / seconds:.2f}")
    return {"startup_s": start, "rtf_after_startup": rest / seconds}


if __name__ == "__main__":
    main()

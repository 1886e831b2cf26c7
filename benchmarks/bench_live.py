"""Live benchmark of the offline engine: real human speech fed in real time to a Transcriber.

    python benchmarks/fetch_speech.py        # once: the recordings (Debian, CC-BY-SA-3.0)
    python benchmarks/bench_live.py [--settings default tiny.en base] [--prompts 20]
                                    [--chunk-ms 20] [--sessions 1] [--json out.json]

Each English prompt of ``benchmarks/.cache/speech`` (human voice talent; see
``fetch_speech.py``) is fed to a default :class:`realtime_sync.Transcriber` (client turn
detection, as ``transcribe_file(realtime=True)`` and ``transcribe --mic`` do) connected to
the local server with the offline engine in this process, in real time (``--chunk-ms``
every ``--chunk-ms``), with 0.5 s of silence before the prompt's recording and 1.5 s after
it. The speech onset and end come from a reference VAD (Silero, through faster-whisper's
``get_speech_timestamps``) run on the clean recording. Per model setting:

* first partial: the first non-empty partial text after the onset (p50/p95, s);
* first correct word: the first partial or final text holding one of the reference's first
  five words (p50/p95, s after the onset);
* end of speech -> final: the end of speech to the prompt's last ``completed`` (p50/p95);
* WER of the finals (normalised as :func:`~realtime_sync.server._engine.normalize_transcript`);
* contradicted: draft words (the last partial text of each turn) that its final does not
  contain, per 100 final words;
* CPU per audio second: the process's CPU time (client, server and engine) over the audio
  fed (1.0 = one core).

Settings: ``default`` (``local_engine()``: base for finals, tiny.en drafts), ``tiny.en``
(tiny.en for both), ``base`` (base for both), ``default-full`` (the default with
``short_finals=False``: finals over Whisper's 30 s window); ``X+agreement`` uses the
agreement rule for stable words instead of the confidence rule. ``--sessions 2`` feeds two
prompts at once (two live sessions on one engine). The machine's load average is printed
with the table: numbers from a loaded machine are not comparable with a quiet one's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = ROOT / "benchmarks" / ".cache" / "speech"
RATE = 24000
LEAD_S, TAIL_S = 0.5, 1.5
SETTINGS = {
    "default": {"model": None, "partial_model": "auto"},
    "tiny.en": {"model": "tiny.en", "partial_model": "tiny.en"},
    "base": {"model": "base", "partial_model": "base"},
    # the default with every final decoded over Whisper's 30 s window (before short finals)
    "default-full": {"model": None, "partial_model": "auto", "short_finals": False},
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prompts(lang: str, limit: int) -> List[Tuple[str, bytes, float, float]]:
    """``(reference, pcm, onset_s, end_s)`` of the first ``limit`` prompts of ``lang``;
    onset and end are positions in ``pcm`` (lead silence included)."""
    from realtime_sync.server._models import configure_threads

    configure_threads()  # before CTranslate2 loads: its OpenMP threads must not spin
    import numpy as np
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    from realtime_sync.server._engine import pcm16_to_whisper

    manifest = json.loads((DATA / "manifest.json").read_text("utf-8"))
    out = []
    for name in sorted(manifest):
        if manifest[name]["language"] != lang:
            continue
        with wave.open(str(DATA / name), "rb") as w:
            pcm = w.readframes(w.getnframes())
        for seg in manifest[name]["segments"]:
            clip = pcm[int(seg["start"] * RATE) * 2:int(seg["end"] * RATE) * 2]
            samples = pcm16_to_whisper(clip)
            spans = get_speech_timestamps(np.asarray(samples), VadOptions(
                min_silence_duration_ms=300, speech_pad_ms=0))
            if not spans:
                continue
            onset = LEAD_S + spans[0]["start"] / 16000
            end = LEAD_S + spans[-1]["end"] / 16000
            audio = bytes(int(LEAD_S * RATE) * 2) + clip + bytes(int(TAIL_S * RATE) * 2)
            out.append((seg["text"], audio, onset, end))
            if len(out) >= limit:
                return out
    return out


class _Run:
    """One prompt fed live: what arrived when (seconds after the feed started)."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self.partials: List[Tuple[float, str, str]] = []  # (t, item_id, text)
        self.finals: List[Tuple[float, str, str]] = []
        self.t0 = 0.0

    def on_partial(self, seg: Any) -> None:
        self.partials.append((time.monotonic() - self.t0, seg.item_id, seg.text))

    def on_final(self, seg: Any) -> None:
        self.finals.append((time.monotonic() - self.t0, seg.item_id, seg.text))


def feed_one(url: str, reference: str, pcm: bytes, chunk_ms: int, language: str) -> _Run:
    """Feed ``pcm`` in real time to a default Transcriber; return what it reported."""
    import realtime_sync as rs

    run = _Run(reference)
    step = chunk_ms * RATE // 1000 * 2
    hint = {} if language == "auto" else {"languages": [language]}
    with rs.Transcriber(url=url, api_key="sk-local", **hint,
                        on_partial=run.on_partial, on_final=run.on_final) as tr:
        run.t0 = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), step)):
            tr.feed(pcm[i:i + step])
            time.sleep(max(0.0, run.t0 + (n + 1) * chunk_ms / 1000 - time.monotonic()))
        tr.finish(timeout=120)
    return run


def _pct(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def score(runs: List[Tuple[_Run, float, float]]) -> Dict[str, Any]:
    """The setting's figures from its runs ``(run, onset_s, end_s)``."""
    import difflib

    from realtime_sync.server._engine import normalize_transcript, word_error_rate

    first, correct, final_lag = [], [], []
    errors = words = contradicted = final_words = no_partial = 0
    for run, onset, end in runs:
        ref = normalize_transcript(run.reference)
        texts = [(t, text) for t, _, text in run.partials if text.strip()]
        if texts:
            first.append(max(texts[0][0] - onset, 0.0))
        else:
            no_partial += 1
        hits = [t for t, text in texts + [(t, x) for t, _, x in run.finals]
                if set(normalize_transcript(text)) & set(ref[:5])]
        if hits:
            correct.append(max(min(hits) - onset, 0.0))
        if run.finals:
            final_lag.append(max(t for t, _, _ in run.finals) - end)
        hyp = " ".join(text for _, _, text in run.finals)
        _, e, n = word_error_rate(run.reference, hyp)
        errors, words = errors + e, words + n
        for _, item, text in run.finals:
            drafts = [x for _, i, x in run.partials if i == item]
            draft = normalize_transcript(drafts[-1]) if drafts else []
            fin = normalize_transcript(text)
            final_words += len(fin)
            if draft:
                m = difflib.SequenceMatcher(a=fin, b=draft, autojunk=False)
                contradicted += len(draft) - sum(b.size for b in m.get_matching_blocks())
    return {
        "prompts": len(runs), "no_partial": no_partial,
        "first_p50": _pct(first, 0.5), "first_p95": _pct(first, 0.95),
        "correct_p50": _pct(correct, 0.5), "correct_p95": _pct(correct, 0.95),
        "final_p50": _pct(final_lag, 0.5), "final_p95": _pct(final_lag, 0.95),
        "wer": errors / max(words, 1),
        "contradicted_per_100": 100.0 * contradicted / max(final_words, 1),
    }


def run_setting(name: str, items: List[Tuple[str, bytes, float, float]], chunk_ms: int,
                sessions: int, language: str) -> Dict[str, Any]:
    """Load the setting's engine once, feed every prompt live, return its figures."""
    from realtime_sync.server import RealtimeServer, local_engine

    base, _, rule = name.partition("+")
    options: Dict[str, Any] = dict(SETTINGS[base])
    model = options.pop("model")
    if rule:
        options["stable_rule"] = rule
    try:
        rec, vad_factory = local_engine(model, **options)
    except TypeError:  # an engine from before the two tiers: its own partials
        rec, vad_factory = local_engine(model)
    rec.load()
    runs: List[Tuple[_Run, float, float]] = []
    lock = threading.Lock()
    with RealtimeServer(api_key="sk-local", recognizer=rec, vad_factory=vad_factory) as srv:
        # warm-up: the first decode of each model pays one-time costs
        feed_one(srv.url, items[0][0], items[0][1], chunk_ms, language)
        cpu0, t0 = _cpu(), time.monotonic()
        audio_s = 0.0

        def worker(part: List[Tuple[str, bytes, float, float]]) -> None:
            nonlocal audio_s
            for reference, pcm, onset, end in part:
                run = feed_one(srv.url, reference, pcm, chunk_ms, language)
                with lock:
                    runs.append((run, onset, end))
                    audio_s += len(pcm) / (2 * RATE)

        threads = [threading.Thread(target=worker, args=(items[k::sessions],))
                   for k in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu = _cpu() - cpu0
        wall = time.monotonic() - t0
    result = score(runs)
    result.update(setting=name, cpu_per_audio_s=cpu / max(audio_s, 1e-9), wall_s=wall,
                  sessions=sessions, scheduler=dict(getattr(rec, "scheduler", None).stats)
                  if getattr(rec, "scheduler", None) is not None else None)
    return result


def table(results: List[Dict[str, Any]]) -> str:
    """A Markdown table of :func:`run_setting` results."""

    def s(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = ["| setting | prompts | first partial p50/p95 (s) | first correct word p50/p95 "
             "(s) | end of speech -> final p50/p95 (s) | WER finals | contradicted draft "
             "words /100 | CPU per audio s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['setting']} (x{r['sessions']}) | {r['prompts']} | {s(r['first_p50'])} / "
            f"{s(r['first_p95'])} | {s(r['correct_p50'])} / {s(r['correct_p95'])} | "
            f"{s(r['final_p50'])} / {s(r['final_p95'])} | {r['wer']:.1%} | "
            f"{r['contradicted_per_100']:.1f} | {r['cpu_per_audio_s']:.2f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=["default", "tiny.en", "base"])
    parser.add_argument("--prompts", type=int, default=1000, help="at most this many prompts")
    parser.add_argument("--chunk-ms", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--lang", default="en", help="the prompts' language")
    parser.add_argument("--hint", default="auto",
                        help="language told to the Transcriber (default: none, as a new user)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not (DATA / "manifest.json").exists():
        sys.exit("no recordings: run `python benchmarks/fetch_speech.py` first")
    for name in args.settings:
        if name.partition("+")[0] not in SETTINGS:
            sys.exit(f"unknown setting {name!r}: choose from {', '.join(SETTINGS)} (+agreement)")
    items = prompts(args.lang, args.prompts)
    print(f"{len(items)} prompts, {sum(len(p) for _, p, _, _ in items) / 2 / RATE:.0f} s of "
          f"audio per setting; load average {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    for name in args.settings:
        result = run_setting(name, items, args.chunk_ms, args.sessions, args.hint)
        result["load_average"] = os.getloadavg()[0]
        print(json.dumps(result), flush=True)
        results.append(result)
    print(table(results))
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return results


if __name__ == "__main__":
    main()

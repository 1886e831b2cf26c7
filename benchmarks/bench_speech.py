"""Real-speech benchmark of the offline engine: WER, RTF, partial and final latency per model.

    python benchmarks/fetch_speech.py            # once: the recordings (Debian, CC-BY-SA-3.0)
    python benchmarks/bench_speech.py [--models base tiny.en] [--live-files 1] [--langs ...]

Three ways of transcribing each file of ``benchmarks/.cache/speech`` are measured:

* ``direct``: faster-whisper called on the whole file (beam 5, its own VAD and segmentation,
  previous text as context): the accuracy to match;
* ``file``: the offline path of ``realtime-sync transcribe --local FILE``: the local server
  in this process with the engine and server VAD, the file fed as fast as the socket takes it,
  one item per utterance. RTF = wall time from the first append to the last ``completed``
  divided by the audio duration;
* ``live``: the same server fed in real time (100 ms every 100 ms) with partials on:
  first delta after the onset of each prompt, end of the prompt to its ``completed``, and
  the CPU time of the whole process (client, server and engine) per second of audio.

Text normalisation for WER (the same for every path): lower case, diacritics removed (the
Spanish reference texts are written without accents; Russian й/ё become и/е likewise), Unicode
NFKC, apostrophes unified and contractions expanded (English), punctuation removed (Unicode
categories P and S; hyphens split words), digits 0-20 spelled out in the file's language
(English spelled out fully by :func:`realtime_sync.server._engine.normalize_transcript`).
The reference is the prompt text shipped with the recordings. Prompts whose text contains a
bracket are excluded.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import unicodedata
import wave
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from realtime_sync.server._engine import normalize_transcript  # noqa: E402

DATA = ROOT / "benchmarks" / ".cache" / "speech"
BYTES_PER_MS = 48
_NUMBERS = {
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce "
          "quince dieciséis diecisiete dieciocho diecinueve veinte",
    "fr": "zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze "
          "quinze seize dix-sept dix-huit dix-neuf vingt",
    "it": "zero uno due tre quattro cinque sei sette otto nove dieci undici dodici tredici "
          "quattordici quindici sedici diciassette diciotto diciannove venti",
    "ru": "ноль один два три четыре пять шесть семь восемь девять десять одиннадцать "
          "двенадцать тринадцать четырнадцать пятнадцать шестнадцать семнадцать восемнадцать "
          "девятнадцать двадцать",
}
_CONTRACTIONS = {"n't": " not", "'re": " are", "'ll": " will", "'ve": " have", "'m": " am",
                 "'d": " would"}


def normalize(text: str, lang: str) -> List[str]:
    """Words of ``text`` for scoring (see the module docstring)."""
    text = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    # diacritics dropped: the Spanish reference texts are written without accents
    text = unicodedata.normalize("NFKC", "".join(ch for ch in text
                                                  if unicodedata.category(ch) != "Mn"))
    if lang == "en":
        text = text.replace("can't", "can not").replace("won't", "will not")
        for short, full in _CONTRACTIONS.items():
            text = text.replace(short, full)
        return normalize_transcript(text.replace("-", " "))
    numbers = _NUMBERS.get(lang, "").split()
    out: List[str] = []
    cleaned = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in text)
    for word in cleaned.split():
        if word.isdigit() and int(word) < len(numbers):
            out.extend(numbers[int(word)].replace("-", " ").split())
        else:
            out.append(word)
    return out


def edits(ref: List[str], hyp: List[str]) -> int:
    """Word-level edit distance."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def read_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def pct(values: List[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


# --------------------------------------------------------------------------- paths


def direct(model: Any, pcm: bytes, lang: Optional[str]) -> Tuple[str, float]:
    from realtime_sync.server._engine import pcm16_to_whisper

    t0 = time.monotonic()
    segments, _ = model.transcribe(pcm16_to_whisper(pcm), language=lang, beam_size=5,
                                   vad_filter=True)
    text = " ".join(s.text.strip() for s in segments)
    return text, time.monotonic() - t0


class Client:
    """A raw WebSocket transcription session on the local server (events stamped)."""

    def __init__(self, url: str, language: Optional[str], silence_ms: int = 500) -> None:
        import websocket

        self.ws = websocket.create_connection(url + "?intent=transcription", timeout=120,
                                              header=["Authorization: Bearer sk-local"])
        self.events: List[Tuple[float, Dict[str, Any]]] = []
        self.cond = threading.Condition()
        assert json.loads(self.ws.recv())["type"] == "session.created"
        tr: Dict[str, Any] = {"model": "gpt-4o-transcribe"}
        if language:
            tr["language"] = language
        self.ws.send(json.dumps({"type": "session.update", "session": {
            "type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000}, "transcription": tr,
                "turn_detection": {"type": "server_vad",
                                   "silence_duration_ms": silence_ms}}}}}))
        self.reader = threading.Thread(target=self._read, name="bench-read", daemon=True)
        self.reader.start()
        self.wait(lambda: any(e["type"] == "session.updated" for _, e in self.events))

    def _read(self) -> None:
        while True:
            try:
                event = json.loads(self.ws.recv())
            except Exception:
                return
            with self.cond:
                self.events.append((time.monotonic(), event))
                self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float = 600) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise TimeoutError("no answer from the local server")

    def of(self, kind: str) -> List[Tuple[float, Dict[str, Any]]]:
        return [(t, e) for t, e in self.events if e["type"] == kind]

    def append(self, chunk: bytes) -> None:
        self.ws.send(json.dumps({"type": "input_audio_buffer.append",
                                 "audio": base64.b64encode(chunk).decode()}))

    def finish(self) -> None:
        """Wait until the server has taken all the audio and every item is transcribed."""
        self.ws.send(json.dumps({"type": "input_audio_buffer.clear"}))  # answered in order
        self.wait(lambda: any(e["type"] == "input_audio_buffer.cleared" for _, e in self.events))

        def done() -> bool:
            items = {e["item_id"] for _, e in self.events
                     if e["type"] == "input_audio_buffer.committed"}
            ended = {e["item_id"] for _, e in self.events
                     if e["type"].endswith(("transcription.completed", "transcription.failed"))}
            speaking = (len(self.of("input_audio_buffer.speech_started"))
                        > len(self.of("input_audio_buffer.speech_stopped")))
            return items <= ended and not speaking
        self.wait(done)

    def transcript(self) -> str:
        texts = {e["item_id"]: e["transcript"] for _, e in
                 self.of("conversation.item.input_audio_transcription.completed")}
        order = [e["item_id"] for _, e in self.of("input_audio_buffer.committed")]
        return " ".join(texts.get(i, "") for i in order)

    def close(self) -> None:
        self.ws.close()


SILENCE_MS = 500


def served(url: str, pcm: bytes, lang: Optional[str], live: bool) -> Tuple[Client, float]:
    client = Client(url, lang, SILENCE_MS)
    step = 100 * BYTES_PER_MS
    t0 = time.monotonic()
    for n, i in enumerate(range(0, len(pcm), step)):
        if live:
            time.sleep(max(0.0, t0 + n * 0.1 - time.monotonic()))
        client.append(pcm[i:i + step])
    client.append(bytes(step * 10))  # 1 s of trailing silence ends the last turn
    client.finish()
    client.t0 = t0  # type: ignore[attr-defined]
    return client, time.monotonic() - t0


def live_latencies(client: Client, segments: List[Dict[str, Any]]
                   ) -> Tuple[List[float], List[float]]:
    """(first delta after onset, end of speech to completed) per prompt, in seconds."""
    t0 = client.t0  # type: ignore[attr-defined]
    starts = {e["item_id"]: e["audio_start_ms"] / 1000
              for _, e in client.of("input_audio_buffer.speech_started")}
    ends = {e["item_id"]: e["audio_end_ms"] / 1000
            for _, e in client.of("input_audio_buffer.speech_stopped")}
    first: List[float] = []
    final: List[float] = []
    for seg in segments:
        items = [i for i, s in starts.items()
                 if s <= seg["end"] and ends.get(i, 1e9) >= seg["start"] + 0.1]
        if not items:
            continue
        deltas = [t for t, e in client.of("conversation.item.input_audio_transcription.delta")
                  if e["item_id"] in items]
        if deltas:
            first.append(min(deltas) - (t0 + seg["start"]))
        last_item = max(items, key=lambda i: starts[i])
        done = [t for t, e in client.of("conversation.item.input_audio_transcription.completed")
                if e["item_id"] == last_item]
        if done and ends.get(last_item, 0) <= seg["end"] + 1.5:
            final.append(done[0] - (t0 + seg["end"]))
    return first, final


# --------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["base", "tiny.en"])
    parser.add_argument("--langs", nargs="+", default=None)
    parser.add_argument("--paths", nargs="+", default=["direct", "file", "live"])
    parser.add_argument("--live-files", type=int, default=1,
                        help="files per language fed in real time (live path)")
    parser.add_argument("--live-langs", nargs="+", default=["en", "es"],
                        help="languages measured live (real time: slow)")
    parser.add_argument("--max-files", type=int, default=99, help="files per language")
    parser.add_argument("--silence-ms", type=int, default=500,
                        help="server VAD silence_duration_ms (the CLI's files: see README)")
    parser.add_argument("--use-context", action="store_true",
                        help="give Whisper the previous transcript (WhisperRecognizer option)")
    parser.add_argument("--full-finals", action="store_true",
                        help="decode every final over Whisper's 30 s window "
                             "(WhisperRecognizer short_finals=False)")
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON")
    args = parser.parse_args(argv)
    global SILENCE_MS
    SILENCE_MS = args.silence_ms
    manifest = json.loads((DATA / "manifest.json").read_text("utf-8"))

    from realtime_sync.server import RealtimeServer
    from realtime_sync.server._engine import local_engine

    results: Dict[str, Any] = {}
    for model_name in args.models:
        t0 = time.monotonic()
        rec, vad_factory = local_engine(model_name)
        if args.use_context:
            rec.use_context = True
        if args.full_finals:
            rec.short_finals = False
        wm = rec.load()
        load_s = time.monotonic() - t0
        langs = args.langs or sorted({m["language"] for m in manifest.values()})
        english_only = not wm.model.is_multilingual
        if english_only:
            langs = [lang for lang in langs if lang == "en"]
        per: Dict[str, Any] = {"load_s": load_s}
        with RealtimeServer(api_key="sk-local", recognizer=rec, vad_factory=vad_factory) as srv:
            for lang in langs:
                files = sorted(n for n, m in manifest.items()
                               if m["language"] == lang)[:args.max_files]
                row: Dict[str, Any] = {"audio_s": 0.0, "words": 0}
                first_all: List[float] = []
                final_all: List[float] = []
                for n, name in enumerate(files):
                    pcm = read_pcm(DATA / name)
                    segs = manifest[name]["segments"]
                    ref = [w for s in segs for w in normalize(s["text"], lang)]
                    row["audio_s"] += len(pcm) / (1000 * BYTES_PER_MS)
                    row["words"] += len(ref)
                    ask = "en" if english_only else None  # multilingual: detect
                    if "direct" in args.paths:
                        text, secs = direct(wm, pcm, ask)
                        row["direct_err"] = row.get("direct_err", 0) + edits(
                            ref, normalize(text, lang))
                        row.setdefault("direct_text", []).append(text)
                        row["direct_s"] = row.get("direct_s", 0.0) + secs
                    if "file" in args.paths:
                        client, secs = served(srv.url, pcm, ask, live=False)
                        row["file_err"] = row.get("file_err", 0) + edits(
                            ref, normalize(client.transcript(), lang))
                        row.setdefault("file_text", []).append(client.transcript())
                        row["file_s"] = row.get("file_s", 0.0) + secs
                        row["languages"] = sorted(
                            {c["code"] for _, e in client.of(
                                "conversation.item.input_audio_transcription.completed")
                             for c in e.get("languages") or ()} | set(row.get("languages", ())))
                        client.close()
                    if ("live" in args.paths and n < args.live_files
                            and lang in args.live_langs):
                        cpu0 = time.process_time()
                        client, secs = served(srv.url, pcm, ask, live=True)
                        row["live_cpu"] = (time.process_time() - cpu0) / secs
                        first, final = live_latencies(client, segs)
                        first_all += first
                        final_all += final
                        row["live_err"] = row.get("live_err", 0) + edits(
                            ref, normalize(client.transcript(), lang))
                        row.setdefault("live_text", []).append(client.transcript())
                        row["live_words"] = row.get("live_words", 0) + len(ref)
                        client.close()
                    print(f"  {model_name} {name} done", flush=True)
                if first_all:
                    row["first_p50"], row["first_p95"] = pct(first_all, .5), pct(first_all, .95)
                    row["first_n"] = len(first_all)
                if final_all:
                    row["final_p50"], row["final_p95"] = pct(final_all, .5), pct(final_all, .95)
                per[lang] = row
                print(f"{model_name} {lang}: {summary(row)}", flush=True)
        results[model_name] = per
    print()
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return results


def summary(row: Dict[str, Any]) -> str:
    parts = [f"{row['audio_s']:.0f} s, {row['words']} words"]
    for path in ("direct", "file"):
        if f"{path}_err" in row:
            parts.append(f"{path} WER {row[f'{path}_err'] / row['words']:.1%} "
                         f"RTF {row[f'{path}_s'] / row['audio_s']:.2f}")
    if "live_err" in row:
        parts.append(f"live WER {row['live_err'] / row['live_words']:.1%} "
                     f"CPU {row['live_cpu']:.0%}")
    if "first_p50" in row:
        parts.append(f"first partial p50/p95 {row['first_p50']:.2f}/{row['first_p95']:.2f} s")
    if "final_p50" in row:
        parts.append(f"end->final p50/p95 {row['final_p50']:.2f}/{row['final_p95']:.2f} s")
    return "; ".join(parts)


def table(results: Dict[str, Any]) -> str:
    lines = ["| model | lang | audio | WER direct | WER file | RTF direct | RTF file | "
             "WER live | first partial p50/p95 | end->final p50/p95 | CPU live |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model, per in results.items():
        for lang, r in per.items():
            if lang == "load_s":
                continue

            def f(key: str, den: str, fmt: str = "{:.1%}", r: Dict[str, Any] = r) -> str:
                return fmt.format(r[key] / r[den]) if key in r and r.get(den) else "-"

            lat = (f"{r['first_p50']:.2f} / {r['first_p95']:.2f} s" if "first_p50" in r
                   else "-")
            fin = (f"{r['final_p50']:.2f} / {r['final_p95']:.2f} s" if "final_p50" in r
                   else "-")
            cpu = f"{r['live_cpu']:.0%}" if "live_cpu" in r else "-"
            lines.append(f"| {model} | {lang} | {r['audio_s']:.0f} s | {f('direct_err', 'words')} "
                         f"| {f('file_err', 'words')} | {f('direct_s', 'audio_s', '{:.2f}')} | "
                         f"{f('file_s', 'audio_s', '{:.2f}')} | "
                         f"{f('live_err', 'live_words')} | {lat} | {fin} | {cpu} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

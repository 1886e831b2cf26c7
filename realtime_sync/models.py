"""The model catalogue: what each known Realtime model is and what it accepts.

Data, not code paths: every place in the library that depends on the model (defaults, which
transcription options are sent, whether server VAD may be asked for, what the local server
does) reads :data:`CATALOGUE` through the functions below instead of comparing names.

Unknown model names pass through untouched: :func:`lookup` returns ``None`` and every rule
answers "allowed" for them, so a model newer than the library is never blocked.

Sources (kept in sync by hand): the official SDK ``openai`` 3.57 ``types/realtime/`` (model
lists, per-option support, shutdown dates) and PROTOCOL.md section 5.2 (observed behaviour).
Where they differ, what either says the service accepts is accepted (``delay`` is documented
for ``gpt-realtime-whisper`` in the SDK and for ``gpt-live-transcribe`` in PROTOCOL.md).

Threads: everything here is immutable data or thread-safe (any thread).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, FrozenSet, Iterator, Mapping, Optional, Set

from .errors import ConfigurationError

__all__ = [
    "ModelInfo",
    "CATALOGUE",
    "CONVERSATION",
    "TRANSCRIPTION",
    "TRANSLATION",
    "TRANSCRIPTION_OPTIONS",
    "DELAYS",
    "DEFAULT_CONVERSATION_MODEL",
    "DEFAULT_TRANSCRIPTION_MODEL",
    "DEFAULT_INPUT_TRANSCRIPTION_MODEL",
    "DEFAULT_TRANSLATION_MODEL",
    "lookup",
    "models",
    "kind_of",
    "server_vad_allowed",
    "streams_before_commit",
    "takes_option",
    "usage_type",
    "reports_languages",
    "replacement_for",
    "check_transcription_options",
    "check_turn_detection",
    "warn_if_deprecated",
]

logger = logging.getLogger(__name__)

CONVERSATION = "conversation"
TRANSCRIPTION = "transcription"
TRANSLATION = "translation"
LIVE = "live"

TRANSCRIPTION_OPTIONS = ("language", "languages", "keywords", "prompt", "delay")
"""The per-model options of ``session.audio.input.transcription`` (besides ``model``)."""

DELAYS = ("minimal", "low", "medium", "high", "xhigh")
"""Values of ``transcription.delay``: how early partial text appears vs accuracy."""


@dataclass(frozen=True)
class ModelInfo:
    """What the library knows about one model.

    Attributes:
        name: the model name as sent on the wire.
        kind: ``"conversation"``, ``"transcription"``, ``"translation"`` or ``"live"``.
        streams_before_commit: transcript deltas arrive while audio arrives, before any
            ``input_audio_buffer.commit`` (PROTOCOL.md 5.3 C).
        server_vad_allowed: ``turn_detection`` may be server/semantic VAD (else it must be null).
        options: which of :data:`TRANSCRIPTION_OPTIONS` the model takes.
        usage: ``"tokens"`` or ``"duration"`` (the ``usage.type`` of ``completed``), or None.
        reports_languages: ``completed.languages`` carries the detected languages.
        shutdown: announced shutdown date (ISO ``YYYY-MM-DD``), or None.
        replacement: the model to move to before ``shutdown``.
        note: one line for people (shown by ``realtime-sync models``-style listings).
    """

    name: str
    kind: str
    streams_before_commit: bool = False
    server_vad_allowed: bool = True
    options: FrozenSet[str] = frozenset()
    usage: Optional[str] = None
    reports_languages: bool = False
    shutdown: Optional[str] = None
    replacement: Optional[str] = None
    note: str = ""

    @property
    def deprecated(self) -> bool:
        """True when a shutdown date is announced."""
        return self.shutdown is not None


def _conv(name: str, shutdown: Optional[str] = None, replacement: Optional[str] = None,
          note: str = "") -> ModelInfo:
    return ModelInfo(name, CONVERSATION, usage="tokens", shutdown=shutdown,
                     replacement=replacement, note=note)


_GPT4O_OPTIONS = frozenset({"language", "prompt"})
_REALTIME_SHUTDOWN = "2027-01-20"
_TRANSCRIBE_SHUTDOWN = "2027-02-26"

_ENTRIES = [
    # conversation (the SDK's RealtimeSessionCreateRequest.model list)
    _conv("gpt-realtime-2.1", note="newest full conversation model; the library's default"),
    _conv("gpt-realtime-2.1-mini", note="smaller, cheaper"),
    _conv("gpt-realtime-2"),
    _conv("gpt-realtime-1.5"),
    _conv("gpt-realtime-mini-2025-10-06"),
    _conv("gpt-audio-1.5"),
    _conv("gpt-realtime", _REALTIME_SHUTDOWN, "gpt-realtime-2.1"),
    _conv("gpt-realtime-2025-08-28", _REALTIME_SHUTDOWN, "gpt-realtime-2.1"),
    _conv("gpt-realtime-mini", _REALTIME_SHUTDOWN, "gpt-realtime-2.1-mini"),
    _conv("gpt-realtime-mini-2025-12-15", _REALTIME_SHUTDOWN, "gpt-realtime-2.1-mini"),
    _conv("gpt-audio-mini", _REALTIME_SHUTDOWN, "gpt-audio-1.5"),
    _conv("gpt-audio-mini-2025-12-15", _REALTIME_SHUTDOWN, "gpt-audio-1.5"),
    _conv("gpt-audio-mini-2025-10-06"),
    _conv("gpt-4o-realtime-preview", note="preview"),
    _conv("gpt-4o-realtime-preview-2024-10-01", note="preview"),
    _conv("gpt-4o-realtime-preview-2024-12-17", note="preview"),
    _conv("gpt-4o-realtime-preview-2025-06-03", note="preview"),
    _conv("gpt-4o-mini-realtime-preview", note="preview"),
    _conv("gpt-4o-mini-realtime-preview-2024-12-17", note="preview"),
    # transcription (the SDK's AudioTranscription.model list; PROTOCOL.md 5.2)
    ModelInfo("gpt-live-transcribe", TRANSCRIPTION, streams_before_commit=True,
              server_vad_allowed=False,
              options=frozenset({"languages", "keywords", "prompt", "delay"}),
              usage="duration", reports_languages=True,
              note="recommended for live transcription: text streams while you speak"),
    ModelInfo("gpt-realtime-whisper", TRANSCRIPTION, streams_before_commit=True,
              server_vad_allowed=False, options=frozenset({"language", "delay"}),
              usage="duration", note="streaming, lowest latency; no prompt"),
    ModelInfo("gpt-transcribe", TRANSCRIPTION,
              options=frozenset({"languages", "keywords", "prompt"}),
              usage="duration", reports_languages=True,
              note="after each commit; uses earlier turns as context"),
    ModelInfo("gpt-4o-transcribe", TRANSCRIPTION, options=_GPT4O_OPTIONS, usage="tokens",
              shutdown=_TRANSCRIBE_SHUTDOWN, replacement="gpt-transcribe"),
    ModelInfo("gpt-4o-mini-transcribe", TRANSCRIPTION, options=_GPT4O_OPTIONS,
              usage="tokens", shutdown=_TRANSCRIBE_SHUTDOWN, replacement="gpt-transcribe"),
    ModelInfo("gpt-4o-mini-transcribe-2025-12-15", TRANSCRIPTION, options=_GPT4O_OPTIONS,
              usage="tokens", shutdown=_TRANSCRIBE_SHUTDOWN, replacement="gpt-transcribe"),
    ModelInfo("gpt-4o-transcribe-diarize", TRANSCRIPTION, options=frozenset({"language"}),
              usage="tokens", shutdown=_TRANSCRIBE_SHUTDOWN, replacement="gpt-transcribe",
              note="speaker labels"),
    ModelInfo("whisper-1", TRANSCRIPTION, options=_GPT4O_OPTIONS, usage="duration",
              shutdown=_TRANSCRIBE_SHUTDOWN, replacement="gpt-transcribe",
              note="legacy; one delta per turn; prompt is a keyword list"),
    # translation (realtime-translation.schema.json)
    ModelInfo("gpt-realtime-translate", TRANSLATION, server_vad_allowed=False,
              note="speech-to-speech translation sessions (/v1/realtime/translations)"),
    # the Live API (/v1/live/sessions; openai-python 3.63.0 types/live SessionConfig.model)
    ModelInfo("gpt-live-1.1", LIVE, usage="duration",
              note="Live API sessions (LiveSession, chat --live); the default"),
    ModelInfo("gpt-live-1", LIVE, usage="duration", note="Live API sessions"),
]

CATALOGUE: Mapping[str, ModelInfo] = {m.name: m for m in _ENTRIES}
"""Every known model by name."""

DEFAULT_CONVERSATION_MODEL = "gpt-realtime-2.1"
"""Conversation sessions (``RealtimeClient``, voice chat, CLI ``chat``): newest full model
without an announced shutdown."""

DEFAULT_TRANSCRIPTION_MODEL = "gpt-live-transcribe"
"""``Transcriber``, ``transcribe_file`` and the CLI: OpenAI's recommendation for live
transcription (text while audio arrives; no server VAD, turns are ended by the client)."""

DEFAULT_INPUT_TRANSCRIPTION_MODEL = "gpt-transcribe"
"""The user's side of a voice chat (``audio.input.transcription`` of a conversation session):
transcribes each turn the conversation's VAD commits, like the models it replaces."""

DEFAULT_TRANSLATION_MODEL = "gpt-realtime-translate"
"""Translation sessions."""

DEFAULT_LIVE_MODEL = "gpt-live-1.1"
"""Live API sessions (:class:`~realtime_sync.LiveSession`, ``chat --live``)."""


def lookup(name: Any) -> Optional[ModelInfo]:
    """The catalogue entry of ``name``, or None for an unknown (or non-string) name."""
    if not isinstance(name, str):
        return None
    return CATALOGUE.get(name)


def models(kind: Optional[str] = None, include_deprecated: bool = True) -> Iterator[ModelInfo]:
    """Catalogue entries, optionally of one ``kind``, in catalogue order."""
    for info in _ENTRIES:
        if kind is not None and info.kind != kind:
            continue
        if not include_deprecated and info.deprecated:
            continue
        yield info


def kind_of(name: Any) -> Optional[str]:
    """``"conversation"``, ``"transcription"``, ``"translation"``, ``"live"``, or None when
    unknown."""
    info = lookup(name)
    return info.kind if info else None


def server_vad_allowed(name: Any) -> bool:
    """May ``turn_detection`` be server/semantic VAD with this model? (True when unknown.)"""
    info = lookup(name)
    return info.server_vad_allowed if info else True


def streams_before_commit(name: Any) -> bool:
    """Does text arrive before the commit with this model? (False when unknown.)"""
    info = lookup(name)
    return info.streams_before_commit if info else False


def takes_option(name: Any, option: str) -> bool:
    """Does the transcription model take ``option`` (one of :data:`TRANSCRIPTION_OPTIONS`)?

    True for an unknown model or a non-transcription model (nothing to check against).
    """
    info = lookup(name)
    if info is None or info.kind != TRANSCRIPTION:
        return True
    return option in info.options


def usage_type(name: Any) -> Optional[str]:
    """``"tokens"``, ``"duration"`` or None (unknown)."""
    info = lookup(name)
    return info.usage if info else None


def reports_languages(name: Any) -> bool:
    """Does ``completed`` carry ``languages`` for this model? (False when unknown.)"""
    info = lookup(name)
    return info.reports_languages if info else False


def replacement_for(name: Any) -> Optional[str]:
    """The recommended replacement of a model with an announced shutdown, else None."""
    info = lookup(name)
    return info.replacement if info and info.deprecated else None


def _hint(model: str, option: str) -> str:
    if option == "language" and takes_option(model, "languages"):
        return "; use languages=[...] instead"
    if option == "languages" and takes_option(model, "language"):
        return "; use language='..' (one code) instead"
    takers = [m.name for m in models(TRANSCRIPTION, include_deprecated=False)
              if option in m.options]
    return f"; models that take it: {', '.join(takers)}" if takers else ""


def check_transcription_options(model: str, **options: Any) -> None:
    """Refuse transcription options ``model`` does not take (None values are ignored).

    Raises:
        ConfigurationError: naming the model and the option, with what to use instead.
    """
    for option, value in options.items():
        if value is None or takes_option(model, option):
            continue
        raise ConfigurationError(
            f"transcription model {model!r} does not take {option!r}{_hint(model, option)}"
        )


def check_turn_detection(model: str, turn_detection: Any) -> None:
    """Refuse server/semantic VAD for a model that requires ``turn_detection: null``.

    ``turn_detection`` is the value about to be sent (None, or a dict/str with a ``type``).
    Non-server values (None, ``"client_vad"``) always pass.

    Raises:
        ConfigurationError: naming the model and saying what to use instead.
    """
    if turn_detection is None or server_vad_allowed(model):
        return
    kind = turn_detection.get("type") if isinstance(turn_detection, Mapping) else turn_detection
    if kind in ("server_vad", "semantic_vad"):
        raise ConfigurationError(
            f"transcription model {model!r} does not allow server VAD "
            f"(turn_detection={kind!r}); use turn_detection='client_vad' (the client ends "
            "turns) or None (you call commit())"
        )


_warned: Set[str] = set()
_warned_lock = threading.Lock()


def warn_if_deprecated(name: Any) -> bool:
    """Log one warning per process per model when ``name`` has an announced shutdown.

    Returns True when the warning was logged by this call.
    """
    info = lookup(name)
    if info is None or not info.deprecated:
        return False
    with _warned_lock:
        if info.name in _warned:
            return False
        _warned.add(info.name)
    logger.warning(
        "model %r shuts down on %s (announced by OpenAI); move to %r", info.name,
        info.shutdown, info.replacement,
    )
    return True



PROMPT_REFERENCES_SHUTDOWN = "2026-11-30"
"""OpenAI shut down saved prompt references (``prompt`` objects in a session or response)."""

CONNECTOR_ID_DEPRECATED_AFTER = "2026-09-01"
"""MCP ``connector_id`` is deprecated for models released after this date."""


def _warn_once(key: str, message: str, *args: Any) -> bool:
    with _warned_lock:
        if key in _warned:
            return False
        _warned.add(key)
    logger.warning(message, *args)
    return True


def warn_if_retired_options(config: Any) -> bool:
    """Log one warning per process for retired options in a session or response config.

    ``config`` is the ``session`` object of ``session.update`` or the ``response`` object of
    ``response.create``. Looks for a saved prompt reference (``prompt``) and MCP tools with a
    ``connector_id``. Nothing is changed or refused: the server decides. Any thread.

    Returns True when this call logged a warning.
    """
    if not isinstance(config, Mapping):
        return False
    warned = False
    if isinstance(config.get("prompt"), Mapping):
        warned |= _warn_once(
            "option:prompt",
            "saved prompt references ('prompt') were shut down by OpenAI on %s; put the"
            " instructions in 'instructions' instead", PROMPT_REFERENCES_SHUTDOWN)
    tools = config.get("tools")
    if isinstance(tools, (list, tuple)) and any(
            isinstance(t, Mapping) and t.get("type") == "mcp" and t.get("connector_id")
            for t in tools):
        warned |= _warn_once(
            "option:connector_id",
            "MCP 'connector_id' is deprecated for models released after %s; use"
            " 'server_url' for a remote MCP server", CONNECTOR_ID_DEPRECATED_AFTER)
    return warned

"""One Realtime session of the local server: the GA protocol state machine of one socket.

The connection's read loop (an ``rs-server-conn-*`` thread) calls :meth:`Session.parse` and
:meth:`Session.dispatch` for every frame; transcriptions and responses run on the session's
worker pools (``rs-server-worker-*``, ``rs-server-response-*``). Every public method is safe
to call from any thread; events go out through ``send_text`` (thread-safe, may block while
the connection is stalled).
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import json
import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import models
from . import _mcp
from ._audio import BYTES_PER_MS, b64decode_strict, to_pcm24k
from ._config import LOGPROBS_INCLUDE, SessionError, apply_update, default_session
from ._jobs import WorkerPool
from ._recognizer import Recognizer, ScriptedRecognizer, split_words
from ._responses import (
    OUTPUT_TYPES,
    EchoResponder,
    Responder,
    ResponseRequest,
    run_response,
)
from ._vad import Vad, default_vad_factory

log = logging.getLogger(__name__)

__all__ = ["ServerOptions", "Session", "expiry_message", "new_id", "parse_frame"]

MIN_COMMIT_BYTES = 100 * BYTES_PER_MS
MAX_EVENT_BYTES = 15 * 1024 * 1024
MAX_BUFFER_SECONDS = 600.0  # uncommitted input audio a session holds (README: limits)
MAX_JSON_DEPTH = 128  # nesting of a client event (objects and arrays)
ACCEPTED_TYPES = (
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
    "input_audio_buffer.clear", "conversation.item.create", "conversation.item.truncate",
    "conversation.item.delete", "conversation.item.retrieve", "response.create",
    "response.cancel",
)

_SALT = secrets.token_hex(4)
_COUNTER = itertools.count(1)


def new_id(prefix: str) -> str:
    """A fresh, unique id such as ``item_1a2b3c4d000017`` (any thread)."""
    return f"{prefix}_{_SALT}{next(_COUNTER):06d}"


def parse_frame(data: Any, max_bytes: int,
                error: Callable[[str, str], None]) -> Optional[Dict[str, Any]]:
    """Decode one client frame into an event; answer a bad frame with ``error(code, message)``
    and return None (read loop)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        error("invalid_event",
              "Expected a text WebSocket message; binary frames are not supported.")
        return None
    if len(data) > max_bytes:
        error("event_too_large",
              f"The event is {len(data)} bytes; the maximum is {max_bytes} bytes.")
        return None
    try:
        event = json.loads(data)
        too_deep = _too_deep(event)
    except ValueError as exc:
        error("invalid_json", f"The server could not parse the JSON event: {exc}")
        return None
    except RecursionError:  # e.g. 100,000 nested arrays: Python's stack, not the input
        too_deep = True
    if too_deep:
        error("invalid_json", "The server could not parse the JSON event: it is nested more "
                              f"than {MAX_JSON_DEPTH} levels deep.")
        return None
    if not isinstance(event, dict):
        error("invalid_json", "Expected a JSON object as the event.")
        return None
    return event


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Does ``value`` nest objects/arrays more than ``limit`` deep? (no recursion)"""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


def expiry_message(seconds: float) -> str:
    """OpenAI's close reason for an expired session, for a maximum of ``seconds``."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"Your session hit the maximum duration of {minutes} minute" \
               f"{'' if minutes == 1 else 's'}."
    return f"Your session hit the maximum duration of {seconds:g} second" \
           f"{'' if seconds == 1 else 's'}."


@dataclass
class ServerOptions:
    """Behaviour shared by all sessions of one server."""

    recognizer: Recognizer = field(default_factory=ScriptedRecognizer)
    vad_factory: Callable[[Optional[Dict[str, Any]]], Optional[Vad]] = default_vad_factory
    responder: Responder = field(default_factory=EchoResponder)
    session_duration: float = 3600.0
    max_event_bytes: int = MAX_EVENT_BYTES
    max_buffer_seconds: float = MAX_BUFFER_SECONDS
    partial_interval_ms: int = 200
    obfuscation: bool = True
    mcp_tools: Optional[Dict[str, List[Dict[str, Any]]]] = None
    """Scripted tools per MCP ``server_label`` (default: :data:`_mcp.DEFAULT_TOOLS`)."""


class _Stream:
    """Transcription progress of one item (text already sent as deltas)."""

    __slots__ = ("lock", "sent", "done", "queued", "partial_at")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = ""
        self.done = False
        self.queued = False
        self.partial_at = 0


class _Active:
    """The response currently writing to the default conversation."""

    __slots__ = ("id", "cancelled", "reason")

    def __init__(self, response_id: str) -> None:
        self.id = response_id
        self.cancelled = threading.Event()
        self.reason = "client_cancelled"



def _close_vad(vad: Any) -> None:
    """Release a VAD's native resources (e.g. SileroVad's soxr resampler), when it has any."""
    close = getattr(vad, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing must not break the session's shutdown
            log.exception("closing the VAD failed")

class BaseSession:
    """What every session of the server (:class:`Session`, a translation session) does the
    same way on its socket: its id and expiry, and sending events, errors,
    ``session.created`` and ``session_expired``."""

    _obf: Optional[str] = None
    """The ``obfuscation`` value put on every ``*.delta`` event (None: not put)."""
    config: Dict[str, Any]

    def __init__(self, duration: float, send_text: Callable[[str], None],
                 close: Callable[[int, str], None]) -> None:
        self._send_text = send_text
        self.close_socket = close
        self.id = new_id("sess")
        self.duration = float(duration)
        self.deadline = time.monotonic() + self.duration

    def emit(self, event: Dict[str, Any]) -> None:
        """Send one server event, adding its ``event_id`` (any thread)."""
        if "event_id" not in event:
            event["event_id"] = new_id("event")
        if self._obf is not None and event["type"].endswith(".delta"):
            event["obfuscation"] = self._obf
        self._send_text(json.dumps(event, separators=(",", ":")))

    def error(self, code: Optional[str], message: str, param: Optional[str] = None,
              event_id: Optional[str] = None, type_: str = "invalid_request_error") -> None:
        """Send an ``error`` event (any thread)."""
        self.emit({"type": "error", "error": {"type": type_, "code": code, "message": message,
                                              "param": param, "event_id": event_id}})

    def start(self) -> None:
        """Send ``session.created`` (read loop, once)."""
        self.emit({"type": "session.created", "session": copy.deepcopy(self.config)})

    def expire(self) -> None:
        """Send ``session_expired`` and close with 1001 (read loop or a fault switch)."""
        message = expiry_message(self.duration)
        self.error("session_expired", message)
        self.close_socket(1001, message)


class Session(BaseSession):
    """The state of one socket: session config, input buffer, items, VAD, responses."""

    def __init__(self, kind: str, model: Optional[str], options: ServerOptions,
                 send_text: Callable[[str], None], close: Callable[[int, str], None]) -> None:
        self.kind = kind
        self.options = options
        super().__init__(options.session_duration, send_text, close)
        self.config = default_session(kind, self.id, int(time.time() + self.duration), model)
        self._lock = threading.RLock()
        self._closed = False
        self._buffer = bytearray()
        self._total_bytes = 0  # audio ever appended (PCM16 24 kHz)
        self._buffer_start_ms = 0
        self._pending_id: Optional[str] = None
        self._items: Dict[str, Dict[str, Any]] = {}
        self._order: List[str] = []
        self._audio: Dict[str, bytes] = {}
        self._streams: Dict[str, _Stream] = {}
        self._transcribing: Dict[str, _Stream] = {}  # user items of a conversation (realtime)
        self._vad: Optional[Vad] = None
        self._vad_offset_ms = 0
        self._active: Optional[_Active] = None
        self._obf = secrets.token_hex(3) if options.obfuscation else None
        rec = options.recognizer
        self._asr = WorkerPool("worker", getattr(rec, "concurrency", 4))
        # A recogniser that schedules its own decodes (``parallel_partials``) gets its
        # partials on a pool of their own, so a final never waits behind a partial; others
        # get them in commit order with the finals (a scripted one numbers items that way).
        self._partials = WorkerPool("partial", 1) \
            if getattr(rec, "parallel_partials", False) else self._asr
        self._speech_from_ms = 0  # audio_start_ms of the turn being spoken (server VAD)
        self._responses = WorkerPool("response", 1)
        self._reset_vad()

    def preset(self, update: Dict[str, Any]) -> None:
        """Start from ``update`` (a validated ``session.update`` body: an ephemeral key's or an
        accepted call's config) instead of the defaults; call before :meth:`start`."""
        with self._lock:
            self.config = apply_update(self.config, update)
            self._reset_vad()

    # ---- output (emit, error, start, expire: BaseSession) ---------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop background work and join its threads (bounded by ``timeout``)."""
        with self._lock:
            self._closed = True
            if self._active is not None:
                self._active.cancelled.set()
            vad, self._vad = self._vad, None
        _close_vad(vad)  # its soxr resampler goes now, not at interpreter exit
        deadline = time.monotonic() + timeout
        self._responses.close(timeout / 2)
        if self._partials is not self._asr:
            self._partials.close(max(deadline - time.monotonic(), 0.1) / 2)
        self._asr.close(max(deadline - time.monotonic(), 0.1))

    # ---- input --------------------------------------------------------------------------

    def parse(self, data: Any) -> Optional[Dict[str, Any]]:
        """Decode one frame; answer bad frames with an ``error`` and return None."""
        return parse_frame(data, self.options.max_event_bytes, self.error)

    def dispatch(self, event: Dict[str, Any]) -> None:
        """Handle one client event (read loop)."""
        type_ = event.get("type")
        event_id = event.get("event_id")
        if event_id is not None and (not isinstance(event_id, str) or len(event_id) > 512):
            self.error("string_above_max_length" if isinstance(event_id, str) else "invalid_type",
                       "Invalid 'event_id': expected a string of at most 512 characters.",
                       "event_id", None)
            return
        handler = _HANDLERS.get(type_) if isinstance(type_, str) else None
        if handler is None:
            self.error("invalid_value",
                       f"Invalid value: '{type_}'. Supported values are: "
                       + ", ".join(f"'{t}'" for t in ACCEPTED_TYPES) + ".", "type", event_id)
            return
        handler(self, event, event_id)

    # ---- session.update -----------------------------------------------------------------

    def _on_session_update(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            try:
                new = apply_update(self.config, event.get("session"))
            except SessionError as exc:
                self.error(exc.code, exc.message, exc.param, event_id)
                return
            old_td = self._input().get("turn_detection")
            old_mcp = _mcp.mcp_tools(self.config)
            self.config = new
            if self._input().get("turn_detection") != old_td:
                self._reset_vad()
            self.emit({"type": "session.updated", "session": copy.deepcopy(new)})
            for label, tool in _mcp.mcp_tools(new).items():
                if label not in old_mcp:
                    self._list_mcp_tools(label, tool)

    def _list_mcp_tools(self, label: str, config: Dict[str, Any]) -> None:
        """A new MCP server in the session: list its (scripted) tools as OpenAI does, as an
        ``mcp_list_tools`` item framed by ``mcp_list_tools.in_progress``/``completed``
        (lock held)."""
        scripted = (self.options.mcp_tools or {}).get(label)
        item: Dict[str, Any] = {"id": new_id("item"), "object": "realtime.item",
                                "type": "mcp_list_tools", "server_label": label, "tools": []}
        prev = self._order[-1] if self._order else None
        self._items[item["id"]] = item
        self._order.append(item["id"])
        self.emit({"type": "conversation.item.added", "previous_item_id": prev,
                   "item": copy.deepcopy(item)})
        self.emit({"type": "mcp_list_tools.in_progress", "item_id": item["id"]})
        item["tools"] = _mcp.listed_tools(config, scripted)
        self.emit({"type": "mcp_list_tools.completed", "item_id": item["id"]})
        self.emit({"type": "conversation.item.done", "previous_item_id": prev,
                   "item": copy.deepcopy(item)})

    def _input(self) -> Dict[str, Any]:
        return self.config.get("audio", {}).get("input", {})  # type: ignore[no-any-return]

    def _reset_vad(self) -> None:
        old = self._vad
        self._vad = self.options.vad_factory(self._input().get("turn_detection"))
        _close_vad(old)
        self._vad_offset_ms = self._total_bytes // BYTES_PER_MS
        self._speaking = False
        self._idle_since_ms = self._vad_offset_ms

    # ---- input audio buffer -------------------------------------------------------------

    def _on_append(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            code = "missing_required_parameter" if audio is None else "invalid_type"
            self.error(code, "Missing or invalid 'audio': expected a base64 string.", "audio",
                       event_id)
            return
        fmt = self._input().get("format", {}).get("type", "audio/pcm")
        # refuse before decoding: a flood of refused appends costs no decoded copies
        pad = 2 if audio.endswith("==") else 1 if audio.endswith("=") else 0
        expected = (len(audio) * 3 // 4 - pad) * len(to_pcm24k(b"\0", fmt))
        if self._buffer_full(expected, event_id):
            return
        try:
            raw = b64decode_strict(audio)
        except (binascii.Error, ValueError):
            self.error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio data.",
                       "audio", event_id)
            return
        with self._lock:
            pcm = to_pcm24k(raw, fmt)
            del raw
            if self._buffer_full(len(pcm), event_id):
                return
            self._buffer += pcm
            self._total_bytes += len(pcm)
            if self._vad is not None and pcm:
                for kind, ms in self._vad.feed(pcm):
                    ms += self._vad_offset_ms
                    if kind == "speech_started":
                        self._speech_started(ms)
                    elif kind == "speech_stopped":
                        self._speech_stopped(ms)
                self._maybe_idle_timeout()
            self._maybe_partial()

    def _buffer_full(self, more: int, event_id: Optional[str]) -> bool:
        """Would ``more`` bytes of PCM overfill the input buffer? Then say so (read loop)."""
        with self._lock:
            held = len(self._buffer)
        if held + more <= int(self.options.max_buffer_seconds * 1000) * BYTES_PER_MS:
            return False
        self.error("input_audio_buffer_full",
                   "The input audio buffer is full: it holds at most "
                   f"{self.options.max_buffer_seconds:g} s of uncommitted audio "
                   f"({held // BYTES_PER_MS} ms now); commit or clear it "
                   "before appending more. This append was not applied.",
                   "audio", event_id)
        return True

    def _maybe_idle_timeout(self) -> None:
        """``turn_detection.idle_timeout_ms`` of audio without speech (on the audio clock):
        ``input_audio_buffer.timeout_triggered``, the buffer is committed and, in a
        conversation, a response starts (lock held)."""
        idle = (self._input().get("turn_detection") or {}).get("idle_timeout_ms")
        now_ms = self._total_bytes // BYTES_PER_MS
        if not idle or self._speaking or now_ms - self._idle_since_ms < idle:
            return
        item_id = self._item_id()
        self.emit({"type": "input_audio_buffer.timeout_triggered",
                   "audio_start_ms": self._idle_since_ms, "audio_end_ms": now_ms,
                   "item_id": item_id})
        self._idle_since_ms = now_ms
        audio = bytes(self._buffer)
        self._drop_buffer()
        self._commit_item(audio)
        if self.kind == "realtime":
            self._start_response({}, None)

    def _item_id(self) -> str:
        if self._pending_id is None:
            self._pending_id = new_id("item")
        return self._pending_id

    def _speech_started(self, ms: int) -> None:
        self._speaking = True
        self._speech_from_ms = ms
        self.emit({"type": "input_audio_buffer.speech_started", "audio_start_ms": ms,
                   "item_id": self._item_id()})
        td = self._input().get("turn_detection") or {}
        if self.kind == "realtime" and td.get("interrupt_response", False) and self._active:
            self._active.reason = "turn_detected"
            self._active.cancelled.set()

    def _speech_stopped(self, ms: int) -> None:
        self._speaking = False
        self._idle_since_ms = ms
        item_id = self._item_id()
        self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": ms,
                   "item_id": item_id})
        cut = min(max(ms - self._buffer_start_ms, 0) * BYTES_PER_MS, len(self._buffer))
        audio = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        self._buffer_start_ms += cut // BYTES_PER_MS
        self._commit_item(audio)
        td = self._input().get("turn_detection") or {}
        if self.kind == "realtime" and td.get("create_response", False):
            self._start_response({}, None)

    def _on_commit(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            if len(self._buffer) < MIN_COMMIT_BYTES:
                ms = len(self._buffer) / BYTES_PER_MS
                self.error("input_audio_buffer_commit_empty",
                           "Error committing input audio buffer: buffer too small. Expected at "
                           f"least 100ms of audio, but buffer only has {ms:.2f}ms of audio.",
                           None, event_id)
                return
            audio = bytes(self._buffer)
            self._drop_buffer()
            self._commit_item(audio)

    def _drop_buffer(self) -> None:
        self._buffer = bytearray()
        self._buffer_start_ms = self._total_bytes // BYTES_PER_MS
        self._reset_vad()

    def _on_clear(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            self._drop_buffer()
            if self._pending_id is not None:
                stream = self._streams.pop(self._pending_id, None)
                if stream is not None:
                    stream.done = True
                self._pending_id = None
            self.emit({"type": "input_audio_buffer.cleared"})

    def _commit_item(self, audio: bytes) -> None:
        """Turn ``audio`` into a committed user item (lock held)."""
        item_id = self._item_id()
        self._pending_id = None
        prev = self._order[-1] if self._order else None
        item = {"id": item_id, "object": "realtime.item", "type": "message",
                "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        self._items[item_id] = item
        self._order.append(item_id)
        self._audio[item_id] = audio
        self.emit({"type": "input_audio_buffer.committed", "previous_item_id": prev,
                   "item_id": item_id})
        self.emit({"type": "conversation.item.added", "previous_item_id": prev,
                   "item": copy.deepcopy(item)})
        self.emit({"type": "conversation.item.done", "previous_item_id": prev,
                   "item": copy.deepcopy(item)})
        tr = self._input().get("transcription")
        if tr:
            stream = self._streams.pop(item_id, None) or _Stream()
            if self.kind == "realtime":  # a response to this turn waits for its transcript
                self._transcribing[item_id] = stream
            self._asr.submit(self._transcription_job(item_id, audio, dict(tr), stream,
                                                     self._logprobs()))

    def _logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.config.get("include") or ())

    # ---- transcription (worker threads) -------------------------------------------------

    def _maybe_partial(self) -> None:
        """Schedule a streaming hypothesis of the item being spoken (lock held)."""
        rec = self.options.recognizer
        tr = self._input().get("transcription")
        if not tr or not self._buffer or not _streams_partials(rec, tr.get("model")):
            return
        extra: Dict[str, Any] = {}
        if self._vad is not None:
            if not self._speaking:
                return  # drafts only while the VAD hears speech
            if getattr(rec, "speech_start", False):
                offset = max(self._speech_from_ms - self._buffer_start_ms, 0) * BYTES_PER_MS
                extra["speech_start"] = min(offset, len(self._buffer))
        item_id = self._item_id()
        stream = self._streams.setdefault(item_id, _Stream())
        have_ms = len(self._buffer) // BYTES_PER_MS
        if stream.queued or have_ms - stream.partial_at < self.options.partial_interval_ms:
            return
        stream.queued = True
        stream.partial_at = have_ms
        audio = bytes(self._buffer)
        logprobs = self._logprobs()

        def start() -> Optional[Callable[[], None]]:
            stream.queued = False
            if stream.done or self._closed:
                return None
            try:
                hyp = rec.partial(audio, model=tr["model"],  # type: ignore[attr-defined]
                                  language=_language_hint(tr), prompt=tr.get("prompt"),
                                  **self._context_kwargs(item_id), **extra)
            except Exception:
                log.exception("streaming recogniser failed on a partial")
                return None

            def send() -> None:
                with stream.lock:
                    if stream.done or self._closed or not hyp.startswith(stream.sent):
                        return
                    for word in split_words(hyp[len(stream.sent):]):
                        self._delta(item_id, word, logprobs)
                    stream.sent = hyp
            return send

        self._partials.submit(start)

    def _context_kwargs(self, item_id: str) -> Dict[str, Any]:
        """``{"context": previous transcript}`` for a recogniser that reads context.

        The transcript of the last transcribed user item before ``item_id`` (worker thread;
        with ``concurrency = 1`` it is complete before the next item starts).
        """
        if not getattr(self.options.recognizer, "context", False):
            return {}
        with self._lock:
            order = self._order
            end = order.index(item_id) if item_id in self._items else len(order)
            for previous in reversed(order[:end]):
                item = self._items.get(previous) or {}
                for part in item.get("content") or ():
                    text = part.get("transcript") if isinstance(part, dict) else None
                    if part.get("type") == "input_audio" and text:
                        return {"context": text}
        return {"context": None}

    def _delta(self, item_id: str, text: str, logprobs: bool) -> None:
        event: Dict[str, Any] = {"type": "conversation.item.input_audio_transcription.delta",
                                 "item_id": item_id, "content_index": 0, "delta": text}
        if logprobs:
            event["logprobs"] = _fake_logprobs(text)
        self.emit(event)

    def _transcription_job(self, item_id: str, audio: bytes, tr: Dict[str, Any],
                           stream: _Stream, logprobs: bool) -> Callable[[], Any]:
        rec = self.options.recognizer

        def start() -> Optional[Callable[[], None]]:
            if self._closed:
                return None
            try:
                result = rec.transcribe(audio, model=tr["model"], language=_language_hint(tr),
                                        prompt=tr.get("prompt"),
                                        **self._context_kwargs(item_id))
                languages = list(getattr(result, "languages", None) or ())
                deltas = iter(result)
            except Exception as exc:
                error = exc
                return lambda: self._failed(item_id, error, stream)

            def finish() -> None:
                with stream.lock:
                    text = ""
                    try:
                        for delta in deltas:
                            if self._closed:
                                return
                            text += str(delta)
                            if len(text) > len(stream.sent) and text.startswith(stream.sent):
                                self._delta(item_id, text[len(stream.sent):], logprobs)
                                stream.sent = text
                    except Exception as exc:
                        self._failed(item_id, exc, stream)
                        return
                    stream.done = True
                    event: Dict[str, Any] = {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "item_id": item_id, "content_index": 0, "transcript": text,
                        "usage": _usage(tr.get("model"), audio, text),
                    }
                    if models.reports_languages(tr.get("model")):
                        event["languages"] = [{"code": _detected_language(tr)}]
                    if logprobs:
                        event["logprobs"] = _fake_logprobs(text)
                    if languages:
                        event["languages"] = [{"code": code} for code in languages]
                    with self._lock:
                        item = self._items.get(item_id)
                        if item is not None:
                            item["content"][0]["transcript"] = text
                    self.emit(event)
            return finish

        return start

    def _failed(self, item_id: str, exc: BaseException, stream: _Stream) -> None:
        stream.done = True
        self.emit({"type": "conversation.item.input_audio_transcription.failed",
                   "item_id": item_id, "content_index": 0,
                   "error": {"type": "transcription_error",
                             "code": getattr(exc, "code", None) or "transcription_failed",
                             "message": str(exc) or type(exc).__name__,
                             "param": getattr(exc, "param", None)}})

    # ---- conversation items -------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        """A fresh id (any thread)."""
        return new_id(prefix)

    def insert_item(self, item: Dict[str, Any]) -> Optional[str]:
        """Append ``item`` to the conversation; return its previous_item_id (any thread)."""
        with self._lock:
            prev = self._order[-1] if self._order else None
            self._items[item["id"]] = item
            self._order.append(item["id"])
            return prev

    def update_item(self, item: Dict[str, Any], audio: Optional[bytes] = None) -> None:
        """Store the final form of an item already inserted (any thread)."""
        with self._lock:
            if item["id"] in self._items:
                self._items[item["id"]] = item
                if audio is not None:
                    self._audio[item["id"]] = audio

    def items(self) -> List[Dict[str, Any]]:
        """A copy of the conversation, in order (any thread)."""
        with self._lock:
            return [copy.deepcopy(self._items[i]) for i in self._order]

    def _find(self, event: Dict[str, Any], event_id: Optional[str],
              action: str) -> Optional[str]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            self.error("missing_required_parameter", "Missing required parameter: 'item_id'.",
                       "item_id", event_id)
            return None
        if item_id not in self._items:
            self.error("item_not_found",
                       f"Error {action} item: the item with id '{item_id}' does not exist.",
                       "item_id", event_id)
            return None
        return item_id

    def _on_item_create(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        item = event.get("item")
        try:
            item, audio = _check_item(item)
        except SessionError as exc:
            self.error(exc.code, exc.message, exc.param, event_id)
            return
        with self._lock:
            if item.get("id") in self._items:
                self.error("item_already_exists",
                           f"Item with id '{item['id']}' already exists.", "item.id", event_id)
                return
            item.setdefault("id", new_id("item"))
            if "previous_item_id" in event and event["previous_item_id"] is not None:
                prev_req = event["previous_item_id"]
                if prev_req == "root":
                    index = 0
                elif prev_req in self._items:
                    index = self._order.index(prev_req) + 1
                else:
                    self.error("item_not_found",
                               f"Previous item with id '{prev_req}' does not exist.",
                               "previous_item_id", event_id)
                    return
            else:
                index = len(self._order)
            prev = self._order[index - 1] if index > 0 else None
            self._items[item["id"]] = item
            self._order.insert(index, item["id"])
            if audio is not None:
                self._audio[item["id"]] = audio
            self.emit({"type": "conversation.item.added", "previous_item_id": prev,
                       "item": copy.deepcopy(item)})
            self.emit({"type": "conversation.item.done", "previous_item_id": prev,
                       "item": copy.deepcopy(item)})

    def _on_item_retrieve(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            item_id = self._find(event, event_id, "retrieving")
            if item_id is None:
                return
            item = copy.deepcopy(self._items[item_id])
            audio = self._audio.get(item_id)
            if audio is not None:
                for part in item.get("content") or []:
                    if part.get("type") in ("input_audio", "output_audio"):
                        part["audio"] = base64.b64encode(audio).decode("ascii")
            self.emit({"type": "conversation.item.retrieved", "item": item})

    def _on_item_delete(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            item_id = self._find(event, event_id, "deleting")
            if item_id is None:
                return
            del self._items[item_id]
            self._order.remove(item_id)
            self._audio.pop(item_id, None)
            self.emit({"type": "conversation.item.deleted", "item_id": item_id})

    def _on_item_truncate(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            item_id = self._find(event, event_id, "truncating")
            if item_id is None:
                return
            item = self._items[item_id]
            index = event.get("content_index", 0)
            parts = item.get("content") or []
            if item.get("role") != "assistant" or not isinstance(index, int) \
                    or not 0 <= index < len(parts) or parts[index].get("type") != "output_audio":
                self.error("invalid_value", "Only assistant audio content can be truncated.",
                           "content_index", event_id)
                return
            end = event.get("audio_end_ms")
            audio = self._audio.get(item_id, b"")
            length_ms = len(audio) // BYTES_PER_MS
            if not isinstance(end, int) or isinstance(end, bool) or end < 0:
                self.error("invalid_value", "Invalid 'audio_end_ms': expected an integer >= 0.",
                           "audio_end_ms", event_id)
                return
            if end > length_ms:
                self.error("invalid_value",
                           f"Audio content of {length_ms}ms is already shorter than "
                           f"{end}ms", "audio_end_ms", event_id)
                return
            self._audio[item_id] = audio[:end * BYTES_PER_MS]
            parts[index]["transcript"] = ""
            self.emit({"type": "conversation.item.truncated", "item_id": item_id,
                       "content_index": index, "audio_end_ms": end})

    # ---- responses ----------------------------------------------------------------------

    def _on_response_create(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        if self.kind != "realtime":
            self.error("invalid_value",
                       "response.create is not supported in transcription sessions.", "type",
                       event_id)
            return
        params = event.get("response")
        if params is not None and not isinstance(params, dict):
            self.error("invalid_type", "Invalid type for 'response': expected an object.",
                       "response", event_id)
            return
        with self._lock:
            self._start_response(params or {}, event_id)

    def _start_response(self, params: Dict[str, Any], event_id: Optional[str]) -> None:
        """Announce a response and queue its generation (lock held)."""
        in_conversation = params.get("conversation", "auto") != "none"
        if in_conversation and self._active is not None:
            self.error("conversation_already_has_active_response",
                       "Conversation already has an active response in progress: "
                       f"{self._active.id}. Wait until the response is finished before "
                       "creating a new one.", None, event_id)
            return
        rid = new_id("resp")
        cfg = self.config
        mods = params.get("output_modalities") or cfg.get("output_modalities") or ["audio"]
        out_audio = dict(cfg.get("audio", {}).get("output", {}))
        response: Dict[str, Any] = {
            "object": "realtime.response", "id": rid, "status": "in_progress",
            "status_details": None, "output": [],
            "conversation_id": "conv_" + self.id[5:] if in_conversation else None,
            "output_modalities": list(mods),
            "max_output_tokens": params.get("max_output_tokens",
                                            cfg.get("max_output_tokens", "inf")),
            "audio": {"output": {"format": out_audio.get("format"),
                                 "voice": out_audio.get("voice")}},
            "usage": None, "metadata": params.get("metadata"),
        }
        active = _Active(rid)
        if in_conversation:
            self._active = active
        request = ResponseRequest(items=self.items() if in_conversation or "input" not in params
                                  else copy.deepcopy(params.get("input") or []),
                                  session=copy.deepcopy(cfg), response=copy.deepcopy(params))
        input_chars = sum(len(json.dumps(i.get("content", ""))) for i in request.items)
        input_ms = sum(len(self._audio.get(i.get("id", ""), b"")) for i in request.items) \
            // BYTES_PER_MS
        self.emit({"type": "response.created", "response": copy.deepcopy(response)})
        responder = self.options.responder

        def finish_active() -> str:
            with self._lock:
                if self._active is active:
                    self._active = None
            return active.reason

        def generate() -> None:
            try:
                if in_conversation and "input" not in params:
                    self._await_transcripts(request, active.cancelled)
                outputs = list(responder.respond(request))
                bad = [o for o in outputs if not isinstance(o, OUTPUT_TYPES)]
                if bad:
                    raise TypeError(f"responder returned {type(bad[0]).__name__}, not an Output")
            except Exception as exc:
                log.exception("responder failed")
                finish_active()
                response["status"] = "failed"
                response["status_details"] = {
                    "type": "failed", "reason": None,
                    "error": {"type": "server_error", "code": "responder_error",
                              "message": str(exc) or type(exc).__name__}}
                self.emit({"type": "response.done", "response": response})
                return
            try:
                run_response(self, response, outputs, active.cancelled,
                             in_conversation=in_conversation, input_chars=input_chars,
                             input_audio_ms=input_ms,
                             delta_interval=float(getattr(responder, "delta_interval", 0.0)),
                             before_done=finish_active, request=request)
            finally:
                finish_active()

        if not self._responses.submit(lambda: generate):
            finish_active()

    def _await_transcripts(self, request: ResponseRequest, cancelled: threading.Event,
                           timeout: float = 30.0) -> None:
        """A response to speech answers what was said, as OpenAI's does: wait (at most
        ``timeout``) until the user audio items of ``request`` are transcribed, then give the
        request their transcripts (response worker thread)."""
        waiting: List[Tuple[Dict[str, Any], _Stream]] = []
        with self._lock:
            for item in request.items:
                stream = self._transcribing.get(str(item.get("id")))
                if stream is not None and item.get("role") == "user":
                    waiting.append((item, stream))
        if not waiting:
            return
        deadline = time.monotonic() + timeout
        while (not all(stream.done for _, stream in waiting) and not cancelled.is_set()
               and not self._closed and time.monotonic() < deadline):
            cancelled.wait(0.02)
        with self._lock:
            for item, stream in waiting:
                live = self._items.get(str(item.get("id")))
                if live is not None:
                    item["content"] = copy.deepcopy(live.get("content"))
                if stream.done:
                    self._transcribing.pop(str(item.get("id")), None)

    def _on_response_cancel(self, event: Dict[str, Any], event_id: Optional[str]) -> None:
        with self._lock:
            active = self._active
            wanted = event.get("response_id")
            if active is None or (wanted is not None and wanted != active.id):
                self.error("response_cancel_not_active",
                           "Cancellation failed: no active response found.", None, event_id)
                return
            active.reason = "client_cancelled"
            active.cancelled.set()


def _streams_partials(rec: Any, model: Any) -> bool:
    """Does the recogniser send deltas before the commit for ``model``? A recogniser's
    ``streaming`` of True/False decides; None (the scripted one's default) follows the
    model catalogue (``gpt-live-transcribe``, ``gpt-realtime-whisper`` stream)."""
    streaming = getattr(rec, "streaming", False)
    if streaming is None:
        return models.streams_before_commit(model) and hasattr(rec, "partial")
    return bool(streaming)


def _usage(model: Any, audio: bytes, text: str) -> Dict[str, Any]:
    """``completed.usage``: tokens for the gpt-4o transcription family, else duration."""
    ms = len(audio) // BYTES_PER_MS
    if models.usage_type(model) == "tokens":
        audio_tokens = max(1, math.ceil(ms / 100))  # ~10 audio tokens per second
        out_tokens = max(1, math.ceil(len(text) / 4)) if text else 0
        return {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                "total_tokens": audio_tokens + out_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens}}
    # billed in whole seconds, at least one (PROTOCOL.md 5.5: silence bills >= 1 s)
    return {"type": "duration", "seconds": max(1, int(math.ceil(ms / 1000)))}


def _language_hint(tr: Dict[str, Any]) -> Optional[str]:
    """The language a recogniser is told: ``language``, else the first of ``languages``."""
    if tr.get("language"):
        return str(tr["language"])
    langs = tr.get("languages")
    return str(langs[0]) if langs else None


def _detected_language(tr: Dict[str, Any]) -> str:
    """What the local server "detects": the first configured language, else English."""
    langs = tr.get("languages") or ([tr["language"]] if tr.get("language") else ["en"])
    return str(langs[0])


def _fake_logprobs(text: str) -> List[Dict[str, Any]]:
    """Valid-looking logprobs for a scripted delta: one token per word."""
    return [{"token": w, "logprob": -0.01 * (1 + len(w) % 5), "bytes": list(w.encode("utf-8"))}
            for w in split_words(text)]


_USER_PARTS = {"input_text", "input_audio", "input_image"}
_ASSISTANT_PARTS = {"output_text", "output_audio"}


_MCP_ITEM_FIELDS: Dict[str, Tuple[Tuple[str, Any], ...]] = {
    "mcp_approval_response": (("approval_request_id", str), ("approve", bool)),
    "mcp_approval_request": (("server_label", str), ("name", str), ("arguments", str)),
    "mcp_call": (("server_label", str), ("name", str), ("arguments", str)),
    "mcp_list_tools": (("server_label", str), ("tools", list)),
}
"""The MCP conversation items a client may create, with their required fields."""


def _check_item(item: Any) -> Any:
    """Validate a client-made item; return (stored item, input audio bytes or None)."""
    if not isinstance(item, dict):
        raise SessionError("missing_required_parameter", "Missing required parameter: 'item'.",
                           "item")
    item = copy.deepcopy(item)
    kind = item.get("type")
    audio: Optional[bytes] = None
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "assistant", "system"):
            raise SessionError("invalid_value", f"Invalid value: '{role}'. Supported values are: "
                               "'user', 'assistant' and 'system'.", "item.role")
        content = item.get("content")
        if not isinstance(content, list):
            raise SessionError("missing_required_parameter",
                               "Missing required parameter: 'item.content'.", "item.content")
        allowed = _ASSISTANT_PARTS if role == "assistant" else \
            {"input_text"} if role == "system" else _USER_PARTS
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in allowed:
                got = part.get("type") if isinstance(part, dict) else part
                raise SessionError("invalid_value",
                                   f"Invalid value: '{got}'. Supported values are: "
                                   + ", ".join(f"'{a}'" for a in sorted(allowed)) + ".",
                                   f"item.content[{i}].type")
            if part["type"] in ("input_audio", "output_audio"):
                if part.get("audio") is not None:
                    try:
                        audio = base64.b64decode(part.pop("audio"), validate=True)
                    except (binascii.Error, ValueError, TypeError):
                        raise SessionError("invalid_value", "Invalid base64 audio.",
                                           f"item.content[{i}].audio")
                part.setdefault("transcript", None)
    elif kind == "function_call":
        for name in ("name", "call_id"):
            if not isinstance(item.get(name), str):
                raise SessionError("missing_required_parameter",
                                   f"Missing required parameter: 'item.{name}'.", f"item.{name}")
        item.setdefault("arguments", "")
    elif kind == "function_call_output":
        for name in ("call_id", "output"):
            if not isinstance(item.get(name), str):
                raise SessionError("missing_required_parameter",
                                   f"Missing required parameter: 'item.{name}'.", f"item.{name}")
    elif kind in _MCP_ITEM_FIELDS:
        for name, type_ in _MCP_ITEM_FIELDS[kind]:
            if not isinstance(item.get(name), type_):
                raise SessionError("missing_required_parameter",
                                   f"Missing required parameter: 'item.{name}'.", f"item.{name}")
    else:
        raise SessionError("invalid_value",
                           f"Invalid value: '{kind}'. Supported values are: 'message', "
                           "'function_call', 'function_call_output', "
                           + ", ".join(f"'{k}'" for k in _MCP_ITEM_FIELDS) + ".", "item.type")
    if "id" in item and not isinstance(item["id"], str):
        raise SessionError("invalid_type", "Invalid type for 'item.id': expected a string.",
                           "item.id")
    item["object"] = "realtime.item"
    if kind not in _MCP_ITEM_FIELDS:  # OpenAI's MCP items have no status
        item["status"] = "completed"
    return item, audio


_HANDLERS: Dict[str, Callable[[Session, Dict[str, Any], Optional[str]], None]] = {
    "session.update": Session._on_session_update,
    "input_audio_buffer.append": Session._on_append,
    "input_audio_buffer.commit": Session._on_commit,
    "input_audio_buffer.clear": Session._on_clear,
    "conversation.item.create": Session._on_item_create,
    "conversation.item.retrieve": Session._on_item_retrieve,
    "conversation.item.delete": Session._on_item_delete,
    "conversation.item.truncate": Session._on_item_truncate,
    "response.create": Session._on_response_create,
    "response.cancel": Session._on_response_cancel,
}

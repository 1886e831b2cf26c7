"""The Live API of the local server (``/v1/live/sessions``): a scripted full-duplex model.

A :class:`LiveServerSession` is the state of one Live socket. It checks every client event
against the Live protocol (the SDK's ``ClientEventParam`` shapes: unknown fields are refused
with ``unknown_parameter``, like the service), and refuses what the service refuses: any
command before ``session.start``, a second ``session.start``, an unknown model, a change of
voice, audio format, model, instructions or input after the start, a delegation type change.
Errors have the Live shape (``error.client_event_id``).

The model (:class:`LiveScript`): input audio (any session format, converted to PCM16 24 kHz)
goes through the server's VAD; each finished user turn is transcribed by the server's
recogniser (the offline engine with ``--local``, else scripted) and sent as
``session.input_transcript.delta`` on the session timeline (ms of input audio), then the
assistant answers with ``session.output_transcript.delta`` and ``session.output_audio.delta``
(a tone in the session's format). A user turn containing one of ``delegate_on`` makes the
assistant say an acknowledgement and emit ``session.delegation.created`` (client delegation);
a ``session.commentary.append`` with that id is then spoken. The user speaking over the
assistant stops its reply (barge-in). ``session.close`` ends with ``session.closed``
(``close_requested``, the usage in seconds of input audio) and a normal close.

Threads: the connection's read loop calls :meth:`dispatch`; turns run on one
``rs-server-live-*`` worker.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from .. import models as _models
from ._audio import b64decode_strict
from ._jobs import WorkerPool
from ._recognizer import Recognizer
from ._responses import tone
from ._session import MAX_EVENT_BYTES, BaseSession, new_id, parse_frame
from ._vad import Vad

log = logging.getLogger(__name__)

__all__ = ["LiveScript", "LiveServerSession", "LIVE_MODELS", "validate_live_event"]

LIVE_MODELS = tuple(m.name for m in _models.models(_models.LIVE))
BUILT_IN_VOICES = (
    "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo",
    "gleam", "marin", "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone",
    "tempo", "verse", "vesper", "willow",
)
_NULLABLE_ID = ("content", "delegation_id")
_EVENTS: Dict[str, Sequence[str]] = {  # required keys (event_id and type are always allowed)
    "session.start": ("session",),
    "session.update": ("session",),
    "session.input_audio.append": ("audio",),
    "session.input_audio.mute": (),
    "session.input_audio.unmute": (),
    "session.output_audio.fixture.play": ("audio",),
    "session.instructions.append": _NULLABLE_ID,
    "session.thinking.append": _NULLABLE_ID,
    "session.commentary.append": _NULLABLE_ID,
    "decision.create": ("event_id",),
    "decision.item.create": ("item",),
    "decision.item.delete": ("item_id",),
    "response.item.create": ("item",),
    "response.create": (),
    "session.close": (),
}
_START_KEYS = ("model", "audio", "client", "delegation", "input", "instructions",
               "safety_identifier", "store", "triggers")
_UPDATE_KEYS = ("delegation", "triggers")
_IMMUTABLE = ("model", "audio", "client", "input", "instructions", "safety_identifier",
              "store")
_DELEGATION_KEYS = {"client": ("type", "acknowledgement_delay_ms"),
                    "responses": ("type", "acknowledgement_delay_ms", "responses"),
                    "decisions": ("type", "acknowledgement_delay_ms", "decisions")}
_FORMATS = {"audio/pcm": (16000, 24000), "audio/pcmu": (8000,), "audio/pcma": (8000,)}


class LiveError(Exception):
    def __init__(self, code: str, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _only(obj: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise LiveError("unknown_parameter", f"Unknown parameter: '{where}{key}'.",
                            f"{where}{key}")


def _obj(value: Any, where: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        raise LiveError("invalid_type", f"Invalid type for '{where}': expected an object.",
                        where)
    return value


def _check_delegation(value: Any, where: str, update: bool) -> None:
    if value is None:
        return
    d = _obj(value, where)
    kind = d.get("type")
    if kind not in _DELEGATION_KEYS:
        raise LiveError("invalid_value", f"Invalid value for '{where}.type': expected "
                        "'client', 'responses' or 'decisions'.", f"{where}.type")
    _only(d, _DELEGATION_KEYS[kind], where + ".")
    if kind != "client" and not update and kind not in d:
        raise LiveError("missing_required_parameter",
                        f"Missing required parameter: '{where}.{kind}'.", f"{where}.{kind}")
    delay = d.get("acknowledgement_delay_ms")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int)):
        raise LiveError("invalid_type", f"Invalid type for '{where}.acknowledgement_delay_ms'."
                        , f"{where}.acknowledgement_delay_ms")


def _check_start(session: Any) -> Dict[str, Any]:
    s = _obj(session, "session")
    _only(s, _START_KEYS, "session.")
    if not isinstance(s.get("model"), str):
        raise LiveError("missing_required_parameter", "Missing required parameter: "
                        "'session.model'.", "session.model")
    audio = s.get("audio")
    if audio is not None:
        audio = _obj(audio, "session.audio")
        _only(audio, ("format", "output"), "session.audio.")
        fmt = audio.get("format")
        if fmt is not None:
            fmt = _obj(fmt, "session.audio.format")
            _only(fmt, ("type", "rate"), "session.audio.format.")
            rates = _FORMATS.get(fmt.get("type"))  # type: ignore[arg-type]
            if rates is None or fmt.get("rate") not in rates:
                raise LiveError("invalid_value", "Invalid value for 'session.audio.format': "
                                "audio/pcm at 16000 or 24000 Hz, audio/pcmu or audio/pcma at "
                                "8000 Hz.", "session.audio.format")
        out = audio.get("output")
        if out is not None:
            out = _obj(out, "session.audio.output")
            _only(out, ("voice",), "session.audio.output.")
            voice = out.get("voice")
            if isinstance(voice, dict):
                _only(voice, ("id",), "session.audio.output.voice.")
            elif voice is not None and not isinstance(voice, str):
                raise LiveError("invalid_type", "Invalid type for 'session.audio.output.voice'.",
                                "session.audio.output.voice")
    _check_delegation(s.get("delegation"), "session.delegation", False)
    items = s.get("input")
    if items is not None:
        if not isinstance(items, list) or len(items) > 128:
            raise LiveError("invalid_value", "'session.input' is a list of at most 128 "
                            "messages.", "session.input")
        for i, item in enumerate(items):
            item = _obj(item, f"session.input[{i}]")
            _only(item, ("content", "role", "id", "status", "type"), f"session.input[{i}].")
            if item.get("role") not in ("developer", "user", "assistant") or \
                    not isinstance(item.get("content"), list) or len(item["content"]) != 1:
                raise LiveError("invalid_value", f"Invalid value for 'session.input[{i}]': a "
                                "developer, user or assistant message with one text part.",
                                f"session.input[{i}]")
    for key, kind in (("instructions", str), ("safety_identifier", str), ("store", bool)):
        if s.get(key) is not None and not isinstance(s[key], kind):
            raise LiveError("invalid_type", f"Invalid type for 'session.{key}'.",
                            f"session.{key}")
    return s


def validate_live_event(event: Dict[str, Any]) -> None:
    """Check one Live client event's shape; raises :class:`LiveError` (Live error codes)."""
    type_ = event.get("type")
    if not isinstance(type_, str):
        raise LiveError("missing_required_parameter", "Missing required parameter: 'type'.",
                        "type")
    required = _EVENTS.get(type_)
    if required is None:
        raise LiveError("invalid_value", f"Invalid value: '{type_}'. Supported values are: "
                        + ", ".join(f"'{t}'" for t in _EVENTS) + ".", "type")
    event_id = event.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise LiveError("invalid_type", "Invalid type for 'event_id': expected a string.",
                        "event_id")
    _only(event, ("type", "event_id") + tuple(required), "")
    for key in required:
        if key not in event:
            raise LiveError("missing_required_parameter",
                            f"Missing required parameter: '{key}'.", key)
    if type_ == "session.start":
        _check_start(event["session"])
    elif type_ == "session.update":
        s = _obj(event["session"], "session")
        for key in s:
            if key in _IMMUTABLE:
                raise LiveError("immutable_parameter", f"'session.{key}' cannot change after "
                                "the session has started.", f"session.{key}")
        _only(s, _UPDATE_KEYS, "session.")
        _check_delegation(s.get("delegation"), "session.delegation", True)
    elif type_ in ("session.instructions.append", "session.thinking.append",
                   "session.commentary.append"):
        if not isinstance(event["content"], str) or not event["content"]:
            raise LiveError("invalid_value", "'content' must be a non-empty string.", "content")
        if event["delegation_id"] is not None and not isinstance(event["delegation_id"], str):
            raise LiveError("invalid_type", "'delegation_id' must be a string or null.",
                            "delegation_id")
    elif type_ in ("session.input_audio.append", "session.output_audio.fixture.play"):
        if not isinstance(event["audio"], str):
            raise LiveError("invalid_type", "'audio' must be a base64 string.", "audio")
    elif type_ in ("decision.item.create", "response.item.create"):
        _obj(event["item"], "item")


class LiveScript:
    """What the local Live model says (shared by every Live socket of a server).

    Args:
        replies: the assistant's answers, in order, or ``callable(user_text) -> str``; past
            the end (and by default) ``"You said: <user text>"``.
        delegate_on: words that make a user turn a client delegation (case-insensitive).
        acknowledgement: what the assistant says when it delegates.
        ms_per_word: assistant speech per word (the tone's length and the transcript times).
        pace: seconds to wait between two words (0: as fast as the socket takes them).
        silence_ms: end of a user turn after this much silence (the VAD's setting).
    """

    def __init__(self, replies: Union[Sequence[str], Callable[[str], str], None] = None, *,
                 delegate_on: Sequence[str] = ("weather",),
                 acknowledgement: str = "One moment, let me check.",
                 ms_per_word: int = 240, pace: float = 0.0, silence_ms: int = 500) -> None:
        self.replies = replies
        self.delegate_on = tuple(w.lower() for w in delegate_on)
        self.acknowledgement = acknowledgement
        self.ms_per_word = int(ms_per_word)
        self.pace = float(pace)
        self.silence_ms = int(silence_ms)
        self._count = 0
        self._lock = threading.Lock()

    def reply(self, user_text: str) -> str:
        with self._lock:
            n = self._count
            self._count += 1
        if callable(self.replies):
            return str(self.replies(user_text))
        if self.replies is not None and n < len(self.replies):
            return self.replies[n]
        return f"You said: {user_text.strip()}"

    def delegates(self, user_text: str) -> bool:
        text = user_text.lower()
        return any(w in text for w in self.delegate_on)


class LiveServerSession(BaseSession):
    """One Live socket (for the read loop: ``start``, ``parse``, ``dispatch``, ``expire``,
    ``close``, ``deadline``)."""

    kind = "live"

    def __init__(self, script: LiveScript, recognizer: Recognizer,
                 vad_factory: Callable[[Optional[Dict[str, Any]]], Optional[Vad]],
                 duration: float, send_text: Callable[[str], None],
                 close: Callable[[int, str], None]) -> None:
        super().__init__(duration, send_text, close)
        self.deadline = time.monotonic() + 10 * 365 * 86400.0  # no clock before the start
        self.script = script
        self.recognizer = recognizer
        self.config: Dict[str, Any] = {}
        self._vad = vad_factory({"type": "server_vad", "silence_duration_ms": script.silence_ms,
                                 "prefix_padding_ms": 0})
        self._lock = threading.RLock()
        self._worker = WorkerPool("live", 1)
        self._started = False
        self._closing = False
        self._muted = False
        self._audio = bytearray()  # PCM16 24 kHz of everything received (the timeline)
        self._speech_start: Optional[int] = None
        self._speaking: Optional[threading.Event] = None  # set to cut the assistant's reply
        self._pending: Dict[str, threading.Event] = {}
        self._commentary: Dict[str, str] = {}
        self._converter: Any = None
        self._last_start = 0  # transcript starts never go back (the timeline is monotonic)
        self._last_end = 0
        self._assistant_last = False  # the latest transcript delta was the assistant's
        self.frames: List[int] = []
        """Bytes of every input audio frame received (tests check the framing)."""

    # ---- output ---------------------------------------------------------------------------
    def start(self) -> None:
        """Nothing: a Live client speaks first (``session.start``)."""

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closing = True
            if self._speaking is not None:
                self._speaking.set()
            for ev in self._pending.values():
                ev.set()
        self._worker.close(timeout)
        conv, self._converter = self._converter, None
        if conv is not None:
            conv.close()

    def live_error(self, code: str, message: str, param: Optional[str],
                   client_event_id: Optional[str], type_: str = "invalid_request_error") -> None:
        event: Dict[str, Any] = {"type": "error", "error": {
            "type": type_, "code": code, "message": message, "param": param,
            "client_event_id": client_event_id}}
        if client_event_id is not None:
            event["client_event_id"] = client_event_id
        self.emit(event)

    def error(self, code: Optional[str], message: str, param: Optional[str] = None,
              event_id: Optional[str] = None, type_: str = "invalid_request_error") -> None:
        self.live_error(code or "server_error", message, param, event_id, type_)

    def expire(self) -> None:
        """The session's time is up: ``session.closed`` (``expired``), then close 1000."""
        self._end("expired", None)

    def parse(self, data: Any) -> Optional[Dict[str, Any]]:
        return parse_frame(data, MAX_EVENT_BYTES, lambda c, m: self.live_error(c, m, None, None))

    @property
    def now_ms(self) -> int:
        """The session timeline: ms of input audio received."""
        return len(self._audio) // 48

    def resource(self) -> Dict[str, Any]:
        return copy.deepcopy(self.config)

    # ---- input ----------------------------------------------------------------------------
    def dispatch(self, event: Dict[str, Any]) -> None:
        eid = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        try:
            validate_live_event(event)
            self._handle(event, eid)
        except LiveError as exc:
            self.live_error(exc.code, exc.message, exc.param, eid)

    def _handle(self, event: Dict[str, Any], eid: Optional[str]) -> None:
        type_ = event["type"]
        if type_ == "session.start":
            if self._started:
                raise LiveError("session_already_started", "The session has already started; "
                                "send session.start once per connection.")
            self._start(event["session"], eid)
            return
        if not self._started:
            raise LiveError("session_not_started", f"Send session.start and wait for "
                            f"session.started before {type_}.")
        if self._closing:
            raise LiveError("session_closing", f"The session is closing; {type_} was ignored.")
        if type_ == "session.input_audio.append":
            self._append(event["audio"])
        elif type_ in ("session.input_audio.mute", "session.input_audio.unmute"):
            self._muted = type_.endswith(".mute")
            self.emit({"type": "session.input_audio." + ("muted" if self._muted else "unmuted"),
                       "client_event_id": eid})
        elif type_ == "session.update":
            self._update(event["session"], eid)
        elif type_ in ("session.instructions.append", "session.thinking.append",
                       "session.commentary.append"):
            self._appended(type_, event, eid)
        elif type_ == "session.output_audio.fixture.play":
            self._fixture(event["audio"], eid)
        elif type_ == "session.close":
            with self._lock:
                self._closing = True
                if self._speaking is not None:
                    self._speaking.set()
                for waiter in self._pending.values():
                    waiter.set()
            self._worker.submit(lambda: self._end("close_requested", eid))
        else:
            owner = "responses" if type_.startswith("response.") else "decisions"
            delegation = self.config.get("delegation") or {}
            if delegation.get("type") != owner:
                raise LiveError("invalid_request", f"{type_} requires {owner} delegation.")
            raise LiveError("unsupported_locally", f"The local server does not run the "
                            f"{owner.title()} API; {type_} was not carried out.")

    def _start(self, session: Dict[str, Any], eid: Optional[str]) -> None:
        model = session["model"]
        if model not in LIVE_MODELS:
            raise LiveError("model_not_found", f"The model '{model}' does not exist or you do "
                            "not have access to it.", "session.model")
        audio = copy.deepcopy(session.get("audio") or {})
        audio.setdefault("format", {"type": "audio/pcm", "rate": 24000})
        audio.setdefault("output", {"voice": "marin"})
        voice = audio["output"].get("voice", "marin")
        if isinstance(voice, str) and voice not in BUILT_IN_VOICES:
            raise LiveError("invalid_value", f"Invalid value for 'session.audio.output.voice': "
                            f"'{voice}'.", "session.audio.output.voice")
        self.config = {
            "id": self.id, "expires_at": int(time.time() + self.duration), "model": model,
            "status": "active", "audio": audio,
            "delegation": copy.deepcopy(session.get("delegation")),
            "input": copy.deepcopy(session.get("input") or []),
            "instructions": session.get("instructions") or "",
            "safety_identifier": session.get("safety_identifier"),
            "store": bool(session.get("store", False)),
            "triggers": copy.deepcopy(session.get("triggers") or []),
        }
        fmt = audio["format"]
        self._format = (str(fmt["type"]).split("/")[1], int(fmt["rate"]))
        self._started = True
        self.deadline = time.monotonic() + self.duration
        self.emit({"type": "session.started", "session": self.resource(),
                   "client_event_id": eid})

    def _update(self, session: Dict[str, Any], eid: Optional[str]) -> None:
        delegation = session.get("delegation")
        if delegation is not None:
            current = (self.config.get("delegation") or {}).get("type", "client")
            if delegation.get("type") != current:
                raise LiveError("invalid_value", "The delegation type cannot change after the "
                                "session has started.", "session.delegation.type")
            merged = dict(self.config.get("delegation") or {})
            merged.update(delegation)
            self.config["delegation"] = merged
        if "triggers" in session:
            self.config["triggers"] = copy.deepcopy(session["triggers"])
        self.emit({"type": "session.updated", "session": self.resource(),
                   "client_event_id": eid})

    def _appended(self, type_: str, event: Dict[str, Any], eid: Optional[str]) -> None:
        did = event["delegation_id"]
        if did is not None:
            if (self.config.get("delegation") or {}).get("type") == "responses":
                raise LiveError("invalid_value", "delegation_id is not accepted with Responses "
                                "delegation.", "delegation_id")
            if did not in self._pending and did not in self._commentary:
                raise LiveError("invalid_value", f"Unknown delegation_id '{did}'.",
                                "delegation_id")
        now = self.now_ms
        self.emit({"type": type_.replace(".append", ".appended"), "start_ms": now,
                   "end_ms": now, "client_event_id": eid})
        if type_ == "session.commentary.append" and did is not None:
            with self._lock:
                self._commentary[did] = event["content"]
                waiter = self._pending.get(did)
            if waiter is not None:
                waiter.set()

    def _decode(self, data: str) -> bytes:
        try:
            raw = b64decode_strict(data)
        except (binascii.Error, ValueError):
            raise LiveError("invalid_value", "'audio' is not valid base64.", "audio") from None
        kind, rate = self._format
        if kind == "pcm" and len(raw) % 2:
            raise LiveError("invalid_value", "PCM16 audio has an even number of bytes.",
                            "audio")
        return raw

    def _to_24k(self, raw: bytes) -> bytes:
        kind, rate = self._format
        if kind != "pcm":
            import sys

            from ..audio._g711 import decode

            samples = decode(raw, kind)
            if sys.byteorder == "big":
                samples.byteswap()
            raw = samples.tobytes()
        if rate == 24000:
            return raw
        if self._converter is None:
            from ..audio._convert import StreamConverter

            self._converter = StreamConverter(rate, 1, 2, to_rate=24000)
        return bytes(self._converter.process(raw))

    def _from_24k(self, pcm: bytes) -> bytes:
        kind, rate = self._format
        if rate != 24000:
            from ..audio._convert import resample

            pcm = resample(pcm, 24000, rate)
        if kind != "pcm":
            from ..audio._g711 import encode

            pcm = encode(pcm, kind)
        return pcm

    def _append(self, data: str) -> None:
        raw = self._decode(data)
        self.frames.append(len(raw))
        pcm = self._to_24k(raw)
        if self._muted:
            pcm = bytes(len(pcm))
        with self._lock:
            self._audio += pcm
        if self._vad is None:
            return
        for kind, ms in self._vad.feed(pcm):
            if kind == "speech_started":
                self._speech_start = ms
                with self._lock:
                    cut = self._speaking
                if cut is not None:
                    cut.set()  # barge-in: the assistant stops
            elif kind == "speech_stopped" and self._speech_start is not None:
                start, self._speech_start = self._speech_start, None
                end = max(start, ms - self.script.silence_ms)
                with self._lock:
                    audio = bytes(self._audio[start * 48:end * 48])
                self._worker.submit(self._turn_job(audio, start, end))

    # ---- the model (worker thread) ---------------------------------------------------------
    def _turn_job(self, audio: bytes, start: int, end: int) -> Callable[[], None]:
        return lambda: self._turn(audio, start, end)

    def _turn(self, audio: bytes, start: int, end: int) -> None:
        try:
            text = "".join(self.recognizer.transcribe(
                audio, model=self.config.get("model", ""), language=None, prompt=None))
        except Exception as exc:  # noqa: BLE001 - a recogniser failure is the model's error
            log.warning("live transcription failed: %s", exc)
            self.live_error("transcription_failed", "The user's speech could not be "
                            "transcribed.", None, None, "server_error")
            return
        words = text.split()
        if not words:
            return
        step = max((end - start) // len(words), 1)
        start = max(start, self._last_start)
        for i, word in enumerate(words):
            self._timed({"type": "session.input_transcript.delta",
                         "delta": word if i == 0 else " " + word},
                        start + i * step, start + (i + 1) * step)
        if self._closing:  # finalizing: the user's words are kept, nobody answers
            return
        delegation = self.config.get("delegation") or {}
        if delegation.get("type") == "client" and self.script.delegates(text):
            self._delegate(text)
        else:
            self._say(self.script.reply(text))
        self.emit({"type": "session.usage.updated",
                   "usage": {"seconds": float(self.now_ms // 1000)}})

    def _timed(self, event: Dict[str, Any], start: int, end: int) -> None:
        with self._lock:
            self._assistant_last = event["type"] == "session.output_transcript.delta"
            self._last_start = max(self._last_start, start)
            self._last_end = max(self._last_end, end)
        event.update(start_ms=start, end_ms=end)
        self.emit(event)

    def _delegate(self, text: str) -> None:
        did = new_id("deleg")
        waiter = threading.Event()
        with self._lock:
            self._pending[did] = waiter
        self._say(self.script.acknowledgement)
        self.emit({"type": "session.delegation.created", "offset_ms": self._last_end,
                   "delegation": {"id": did, "target": "client", "type": "delegation"}})
        waiter.wait(30.0)
        with self._lock:
            self._pending.pop(did, None)
            content = self._commentary.get(did)
        if content and not self._closing:
            self._say(content)

    def _say(self, text: str) -> bool:
        """Speak ``text``: transcript deltas and audio per word; False when cut off."""
        cut = threading.Event()
        with self._lock:
            self._speaking = cut
        try:
            at = max(self.now_ms, self._last_end)
            ms = self.script.ms_per_word
            for i, word in enumerate(text.split()):
                if cut.is_set() or self._closing:
                    return False
                self._timed({"type": "session.output_transcript.delta",
                             "delta": word if i == 0 and not self._assistant_last else " " + word},
                            at + i * ms, at + (i + 1) * ms)
                audio = self._from_24k(tone(ms, 330.0 + 40 * (i % 3), 0.2))
                self.emit({"type": "session.output_audio.delta",
                           "delta": base64.b64encode(audio).decode("ascii")})
                if self.script.pace:
                    cut.wait(self.script.pace)
            return True
        finally:
            with self._lock:
                if self._speaking is cut:
                    self._speaking = None

    def _fixture(self, data: str, eid: Optional[str]) -> None:
        try:
            raw = b64decode_strict(data)
        except (binascii.Error, ValueError):
            raise LiveError("invalid_value", "'audio' is not valid base64.", "audio") from None
        if len(raw) % 2 or len(raw) > 30 * 48000:
            raise LiveError("invalid_value", "A fixture is PCM16 24 kHz, at most 30 seconds.",
                            "audio")
        self.emit({"type": "session.output_audio.fixture.playing", "client_event_id": eid})

        def play() -> None:
            self.emit({"type": "session.output_audio.delta",
                       "delta": base64.b64encode(self._from_24k(raw)).decode("ascii")})
            self.emit({"type": "session.output_audio.fixture.played", "client_event_id": eid})

        self._worker.submit(play)

    def _end(self, reason: str, eid: Optional[str]) -> None:
        event: Dict[str, Any] = {"type": "session.closed", "reason": reason,
                                 "session": self.resource(),
                                 "usage": {"seconds": float(self.now_ms // 1000)}}
        if eid is not None:
            event["client_event_id"] = eid
        self.emit(event)
        self.close_socket(1000, "session closed")


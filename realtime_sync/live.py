"""OpenAI's Live API (``/v1/live/sessions``, ``gpt-live-1.1``) in the library's synchronous,
threaded style: :class:`LiveSession`, :class:`LiveSegment`, :class:`LiveDelegation`,
:class:`LiveResult`.

::

    import realtime_sync as rs

    with rs.LiveSession(instructions="Be brief.", speak=True,
                        on_segment=lambda s: print(s.speaker, s.text, s.final)) as live:
        live.listen()                       # microphone thread; the speaker plays the replies
        input("press Enter to stop\\n")
        result = live.finish()              # session.close -> session.closed
    print(result.reason, result.usage)

A Live session is full duplex: audio goes up as ``session.input_audio.append`` frames of
20-100 ms in the session's format, the model's speech comes back as
``session.output_audio.delta``, and both sides' words as timed transcript deltas, grouped here
into speaker segments (:mod:`realtime_sync._features.live_transcript`). When the model hands a
task to the application (``session.delegation.created``), ``on_delegation`` runs and the
registered tools answer with the delegation's id.

Connection life: the session lives in its socket. Like the official SDK (which reconnects only
when the application supplies an ``on_reconnecting`` callback and warns that a new socket does
not restore the session), a :class:`LiveSession` never reconnects on its own: a drop is
reported (``on_error`` with :class:`~realtime_sync.ConnectionLostError`, the transcript closed
with ``connection_lost``), and :meth:`LiveSession.history` gives the conversation so far as
``input=`` items for a new session the application chooses to start.
"""

from __future__ import annotations

import base64
import binascii
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import models as _models
from ._core.dispatch import Marshal
from ._core.endpoint import HeaderSource, KeySource
from ._core.wait import Deadline, wait_until
from ._features.feed import FeedSink
from ._features.live_connection import LiveConnection
from ._features.live_transcript import Grouping, LiveSegment
from .errors import (
    ConfigurationError,
    ConnectionLostError,
    NotConnectedError,
    ServerError,
    TimeoutError,
)
from .events import Event, LibraryEvents, append_frame, new_event_id

__all__ = ["LiveSession", "LiveSegment", "LiveDelegation", "LiveResult", "DEFAULT_MODEL",
           "MODELS", "AUDIO_FORMATS"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = _models.DEFAULT_LIVE_MODEL
MODELS = tuple(m.name for m in _models.models(_models.LIVE))
"""The Live models of the catalogue (unknown names pass through: the server decides)."""

AUDIO_FORMATS: Dict[str, Dict[str, Any]] = {
    "pcm": {"type": "audio/pcm", "rate": 24000},
    "pcm_24k": {"type": "audio/pcm", "rate": 24000},
    "pcm_16k": {"type": "audio/pcm", "rate": 16000},
    "pcmu": {"type": "audio/pcmu", "rate": 8000},
    "pcma": {"type": "audio/pcma", "rate": 8000},
}
"""``audio_format`` names and their ``session.audio.format`` objects."""

MIN_FRAME_MS, MAX_FRAME_MS = 20, 100
TICK = "client.live_tick"  # the clock thread's wake-up for the transcript timeouts (internal)
_APPEND = "session.input_audio.append"
_USER_DELTA = "session.input_transcript.delta"
_ASSISTANT_DELTA = "session.output_transcript.delta"


@dataclass(frozen=True)
class LiveDelegation:
    """A task the Live model handed over (``session.delegation.created``).

    Attributes:
        id: the delegation id (answer with ``commentary(text, delegation_id=id)``).
        target: ``"client"`` (the application), ``"responses"`` or ``"decisions"``.
        offset_ms: where on the session timeline it was created.
        response_id: the Responses API response of a ``responses`` delegation.
        request: the user's words that led to it (the latest user segment's text).
        transcript: the segments up to then (a snapshot).
        event: the whole server event.
    """

    id: str
    target: str
    offset_ms: int
    response_id: Optional[str] = None
    request: str = ""
    transcript: Tuple[LiveSegment, ...] = ()
    event: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class LiveResult:
    """How a Live session ended (:meth:`LiveSession.finish`).

    Attributes:
        reason: ``session.closed``'s ``reason`` (``close_requested``, ``expired``, ``content``,
            ``remote_hangup``, ``connection_lost``).
        usage: its cumulative ``usage`` (``seconds``, maybe ``active_seconds``...).
        session: its final session snapshot.
        segments: the final transcript segments, in order.
        errors: the server's ``error`` objects received during the session.
    """

    reason: Optional[str]
    usage: Dict[str, Any]
    session: Dict[str, Any]
    segments: List[LiveSegment]
    errors: List[Dict[str, Any]]

    @property
    def text(self) -> str:
        """The conversation as lines ``user: ...`` / ``assistant: ...``."""
        return "\n".join(f"{s.speaker}: {s.text.strip()}" for s in self.segments)


def audio_format_config(audio_format: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """The ``session.audio.format`` object for ``audio_format`` (a name of
    :data:`AUDIO_FORMATS` or such an object).

    Raises:
        ConfigurationError: an unknown name, or a rate the format does not have.
    """
    if isinstance(audio_format, str):
        try:
            return dict(AUDIO_FORMATS[audio_format])
        except KeyError:
            raise ConfigurationError(
                f"audio_format must be one of {', '.join(AUDIO_FORMATS)} or a dict, "
                f"not {audio_format!r}") from None
    if not isinstance(audio_format, Mapping):
        raise TypeError("audio_format must be a name such as 'pcm' or a dict")
    fmt = dict(audio_format)
    kind, rate = fmt.get("type"), fmt.get("rate")
    if kind == "audio/pcm" and rate in (16000, 24000):
        return fmt
    if kind in ("audio/pcmu", "audio/pcma") and rate == 8000:
        return fmt
    raise ConfigurationError(f"unsupported Live audio format {fmt!r}: audio/pcm at 16000 or "
                             "24000 Hz, audio/pcmu or audio/pcma at 8000 Hz")


class _Codec:
    """PCM16 24 kHz <-> the session's wire format (any thread, under the owner's locks)."""

    def __init__(self, fmt: Mapping[str, Any]) -> None:
        self.kind = {"audio/pcm": "pcm", "audio/pcmu": "pcmu", "audio/pcma": "pcma"}[
            str(fmt["type"])]
        self.rate = int(fmt["rate"])
        self.bytes_per_ms = self.rate // 1000 * (2 if self.kind == "pcm" else 1)
        self._up: Any = None  # session rate -> 24 kHz (assistant audio)
        self._down: Dict[int, Any] = {}  # fed rate -> session rate

    def to_wire(self, pcm16: bytes, rate: int) -> bytes:
        if rate != self.rate:
            conv = self._down.get(rate)
            if conv is None:
                from .audio import StreamConverter

                conv = self._down[rate] = StreamConverter(rate, 1, 2, to_rate=self.rate)
            pcm16 = conv.process(pcm16)
        if self.kind != "pcm":
            from .audio._g711 import encode

            return encode(pcm16, self.kind)
        return pcm16

    def from_wire(self, data: bytes) -> bytes:
        if self.kind != "pcm":
            from .audio._g711 import decode

            samples = decode(data, self.kind)
            import sys

            if sys.byteorder == "big":
                samples.byteswap()
            data = samples.tobytes()
        if self.rate == 24000:
            return data
        if self._up is None:
            from .audio import StreamConverter

            self._up = StreamConverter(self.rate, 1, 2, to_rate=24000)
        return bytes(self._up.process(data))

    def close(self) -> None:
        for conv in [self._up, *self._down.values()]:
            if conv is not None:
                conv.close()
        self._up, self._down = None, {}


def _no_count(name: str, n: int) -> None:
    """A Live connection keeps no stream counters."""


def _start_config(model: str, audio_format: Mapping[str, Any],
                  voice: Union[str, Mapping[str, Any], None], instructions: Optional[str],
                  input: Optional[Sequence[Any]],  # noqa: A002 - the config's name
                  delegation: Optional[Mapping[str, Any]], has_tools: bool,
                  store: Optional[bool], safety_identifier: Optional[str],
                  session: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``session`` object of ``session.start`` (see :class:`LiveSession`'s arguments).

    Raises:
        TypeError: a value of the wrong type, or a key given twice.
    """
    config: Dict[str, Any] = {"model": model}
    audio: Dict[str, Any] = {"format": dict(audio_format)}
    if voice is not None:
        if not isinstance(voice, (str, Mapping)):
            raise TypeError("voice must be a voice name or {'id': ...}")
        audio["output"] = {"voice": voice if isinstance(voice, str) else dict(voice)}
    config["audio"] = audio
    if instructions is not None:
        config["instructions"] = instructions
    if input is not None:
        config["input"] = _history_items(input)
    if delegation is None and has_tools:
        delegation = {"type": "client"}
    if delegation is not None:
        if not isinstance(delegation, Mapping) or not isinstance(delegation.get("type"), str):
            raise TypeError("delegation must be a dict with a 'type' ('client', "
                            "'responses' or 'decisions')")
        config["delegation"] = dict(delegation)
    if store is not None:
        config["store"] = bool(store)
    if safety_identifier is not None:
        config["safety_identifier"] = safety_identifier
    for key, value in session.items():
        if key in config:
            raise TypeError(f"{key} given twice")
        config[key] = value
    return config


class LiveSession:
    """One Live API session: speech in, speech and grouped transcripts out, delegation.

    Threads: :meth:`start` opens the socket (``realtime-sync-net``, ``realtime-sync-dispatch``)
    and starts ``realtime-sync-live-clock`` (the transcript's inactivity timeouts);
    :meth:`listen` adds ``realtime-sync-audio``, ``speak=True`` ``realtime-sync-speaker``,
    registered tools ``realtime-sync-live-tools``. :meth:`close` joins them all. ``on_segment``,
    ``on_final``, ``on_delegation``, ``on_audio``, ``on_interrupt``, ``on_closed``,
    ``on_error`` and raw handlers (:meth:`on`) run on the dispatcher thread in arrival order,
    or through ``marshal`` (a GUI's thread). ``feed``, ``mute``, ``commentary``... may be
    called from any thread; the blocking calls (``start``, ``finish``, ``segments``) from any
    thread but the dispatcher's.

    Args:
        model: the Live model (default ``gpt-live-1.1``).
        instructions: the frontend instructions (immutable after start).
        voice: a built-in voice name (``"marin"``...) or ``{"id": ...}`` for a custom voice.
        audio_format: ``"pcm"`` (24 kHz, default), ``"pcm_16k"``, ``"pcmu"``, ``"pcma"``, or
            a ``session.audio.format`` dict. ``feed()`` takes PCM16 at any rate and converts.
        input: text history before the start (``[{"role": "user", "content": [...]}]``, or
            ``(role, text)`` pairs; see :meth:`history`).
        delegation: ``{"type": "client"}`` (the application; the default when tools are
            registered), or a ``responses``/``decisions`` config, passed through untouched.
        store, safety_identifier: as in the Live session config.
        on_segment: ``on_segment(segment)`` for every change of a transcript segment.
        on_final: ``on_final(segment)`` once per closed segment (captions writers'
            ``write`` fits here).
        on_delegation: ``on_delegation(delegation)`` for every ``session.delegation.created``.
        on_audio: ``on_audio(pcm16)``: the assistant's speech as PCM16 24 kHz mono.
        on_interrupt: ``on_interrupt()`` when the user barges in on the assistant's speech.
        on_closed: ``on_closed(result)`` when ``session.closed`` arrives.
        on_error: ``on_error(exception)`` for every server ``error`` (a
            :class:`~realtime_sync.ServerError`) and a lost connection (a
            :class:`~realtime_sync.ConnectionLostError`); without it they are logged.
        speak: play the assistant's speech on a :class:`realtime_sync.audio.Speaker`
            (``True``, or an output device index/name); playback stops at once on barge-in.
        tools: functions answering client delegations (see :meth:`tool`).
        frame_ms: audio per ``session.input_audio.append`` (20-100 ms, default 40).
        grouping: options of the transcript grouping (``min_turn_separation_ms``,
            ``assistant_silence_ms``, ``backchannel_max_duration_ms``,
            ``backchannel_isolation_ms``, ``extra_acknowledgements``).
        url, api_key, headers: where to connect (a Live URL, or the Realtime URL of the same
            server, e.g. a local ``ws://127.0.0.1:8765/v1/realtime``) and the key (default
            ``$OPENAI_API_KEY``).
        marshal: run the callbacks on another thread (see :mod:`realtime_sync.gui`).
        **session: anything else goes into the ``session.start`` config as given
            (``triggers``, ``client``, ...).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        instructions: Optional[str] = None,
        voice: Union[str, Mapping[str, Any], None] = None,
        audio_format: Union[str, Mapping[str, Any]] = "pcm",
        input: Optional[Sequence[Any]] = None,  # noqa: A002 - the config's name
        delegation: Optional[Mapping[str, Any]] = None,
        store: Optional[bool] = None,
        safety_identifier: Optional[str] = None,
        *,
        on_segment: Optional[Callable[[LiveSegment], Any]] = None,
        on_final: Optional[Callable[[LiveSegment], Any]] = None,
        on_delegation: Optional[Callable[[LiveDelegation], Any]] = None,
        on_audio: Optional[Callable[[bytes], Any]] = None,
        on_interrupt: Optional[Callable[[], Any]] = None,
        on_closed: Optional[Callable[[LiveResult], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
        speak: Union[bool, int, str] = False,
        tools: Sequence[Callable[..., Any]] = (),
        frame_ms: int = 40,
        grouping: Optional[Mapping[str, Any]] = None,
        url: Optional[str] = None,
        api_key: KeySource = None,
        headers: HeaderSource = None,
        marshal: Optional[Marshal] = None,
        strict: bool = False,
        ping_interval: Optional[float] = 20.0,
        open_timeout: float = 10.0,
        allow_insecure: bool = False,
        **session: Any,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise TypeError("model must be a non-empty string such as 'gpt-live-1.1'")
        kind = _models.kind_of(model)
        if kind not in (None, _models.LIVE):
            raise ConfigurationError(f"{model} is a {kind} model; Live sessions need a Live "
                                     f"model such as {DEFAULT_MODEL}")
        for name, cb in (("on_segment", on_segment), ("on_final", on_final),
                         ("on_delegation", on_delegation), ("on_audio", on_audio),
                         ("on_interrupt", on_interrupt), ("on_closed", on_closed),
                         ("on_error", on_error), ("marshal", marshal)):
            if cb is not None and not callable(cb):
                raise TypeError(f"{name} must be callable")
        if isinstance(frame_ms, bool) or not isinstance(frame_ms, int) \
                or not MIN_FRAME_MS <= frame_ms <= MAX_FRAME_MS:
            raise ValueError(f"frame_ms must be an integer from {MIN_FRAME_MS} to "
                             f"{MAX_FRAME_MS}, not {frame_ms!r}")
        if instructions is not None and not isinstance(instructions, str):
            raise TypeError("instructions must be a string")
        self.model = model
        self.audio_format = audio_format_config(audio_format)
        self.config = _start_config(model, self.audio_format, voice, instructions, input,
                                    delegation, bool(tools), store, safety_identifier, session)
        """The ``session`` object sent in ``session.start``."""
        self._grouping_options = dict(grouping or {})
        Grouping(**self._grouping_options)  # bad options fail here, not at start()
        self._on_segment, self._on_final = on_segment, on_final
        self._on_delegation, self._on_audio = on_delegation, on_audio
        self._on_interrupt, self._on_closed, self._on_error = on_interrupt, on_closed, on_error
        self._marshal = marshal
        self._speak = speak
        self._frame_ms = frame_ms
        self._tools: List[Callable[..., Any]] = []
        for fn in tools:
            self.tool(fn)
        self._conn_options: Dict[str, Any] = dict(
            url=url, api_key=api_key, headers=headers, marshal=marshal, strict=strict,
            ping_interval=ping_interval, open_timeout=open_timeout,
            allow_insecure=allow_insecure)
        self._conn: Optional[LiveConnection] = None
        self._codec = _Codec(self.audio_format)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._feed_lock = threading.Lock()
        self._pending = bytearray()  # wire audio not yet sent (less than a frame)
        self._user_handlers: List[Tuple[str, Callable[[Event], Any]]] = []
        self._streams: List[Any] = []
        self._speaker: Any = None
        self._out_item = 0
        self._out_active = False  # assistant audio received since the user last spoke
        self._grouping = Grouping(**self._grouping_options)
        self._segments: Dict[str, LiveSegment] = {}
        self._order: List[str] = []
        self._final_ids: List[str] = []
        self._errors: List[Dict[str, Any]] = []
        self._started: Optional[Dict[str, Any]] = None
        self._closed_event: Optional[Event] = None
        self._usage: Dict[str, Any] = {}
        self._closing = False  # session.close sent
        self._closed = False  # close() called
        self._lost: Optional[str] = None  # the connection ended without session.closed
        self.barge_ins = 0
        self.delegations: List[LiveDelegation] = []
        self._clock: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._tool_queue: queue.Queue[Optional[LiveDelegation]] = queue.Queue()
        self._tool_thread: Optional[threading.Thread] = None
        self._audio_ms_sent = 0.0

    def __repr__(self) -> str:
        state = self._conn.state if self._conn is not None else "idle"
        return f"<LiveSession model={self.model!r} {state}>"

    def __enter__(self) -> LiveSession:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- handlers and tools ---------------------------------------------------------------------
    def on(self, type: str, handler: Callable[[Event], Any]) -> Callable[[Event], Any]:  # noqa: A002
        """Register ``handler(event)`` for raw Live events (``"*"``: all, library events
        included). Works before ``start()``; runs on the dispatcher thread (or ``marshal``).
        Any thread."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        wrapped = self._wrap(handler)
        if type == "*":
            inner = wrapped

            def wrapped(event: Event) -> None:
                if event.get("type") != TICK:
                    inner(event)

        self._user_handlers.append((type, wrapped))
        if self._conn is not None:
            self._conn.on(type, wrapped)
        return handler

    def tool(self, fn: Optional[Callable[..., Any]] = None, *,
             name: Optional[str] = None) -> Any:
        """Register ``fn(delegation)`` as a tool answering client delegations (a decorator
        or a call). Any thread.

        On ``session.delegation.created`` with target ``client`` the tools run in
        registration order on the ``realtime-sync-live-tools`` thread (never the
        dispatcher) with the :class:`LiveDelegation`; the first that returns a string has it
        sent as ``session.commentary.append`` with the delegation's id (the model says it);
        ``None`` passes to the next tool. A tool that raises sends a silent
        ``session.thinking.append`` saying the task failed (with the exception's type only),
        and ``on_error`` gets the exception. Each finished delegation is reported as a
        ``client.tool_call`` event (``name``, ``delegation_id``, ``output``, ``error``).
        """
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(f):
                raise TypeError("a tool must be callable")
            if name is not None:
                try:
                    f.__live_tool_name__ = name  # type: ignore[attr-defined]
                except AttributeError:
                    pass
            self._tools.append(f)
            if "delegation" not in self.config and self._conn is None:
                self.config["delegation"] = {"type": "client"}
            return f

        return register(fn) if fn is not None else register

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: Optional[float] = 15) -> LiveSession:
        """Connect, send ``session.start`` and block until ``session.started``.

        Thread: any but a dispatcher thread. Idempotent once started.

        Raises:
            ServerError: the server answered ``session.start`` with an ``error`` (its code
                and message), e.g. an unknown model.
            AuthenticationError, ConfigurationError, ConnectError: the socket did not open.
            TimeoutError: no ``session.started`` within ``timeout`` (the socket is closed).
            NotConnectedError: closed, or the connection ended before ``session.started``.
        """
        if self._started is not None:
            return self
        if self._closed:
            raise NotConnectedError("this Live session is closed; create a new one")
        conn = LiveConnection(**self._conn_options)
        for type_, handler in self._user_handlers:
            conn.on(type_, handler)
        for type_, handler in (
                ("session.started", self._h_started),
                (_USER_DELTA, self._h_transcript), (_ASSISTANT_DELTA, self._h_transcript),
                ("session.output_audio.delta", self._h_audio),
                ("session.delegation.created", self._h_delegation),
                ("session.usage.updated", self._h_usage),
                ("session.closed", self._h_closed), ("error", self._h_error),
                (LibraryEvents.DISCONNECTED, self._h_disconnected), (TICK, self._h_tick)):
            conn.on(type_, handler)
        self._conn = conn
        deadline = Deadline(timeout)
        try:
            conn.open(deadline.remaining())
            if self._speak is not False and self._speak is not None:
                from .audio import Speaker

                device = None if self._speak is True else self._speak
                self._speaker = Speaker(device, truncate=False).start()
            after = conn.seq
            try:
                start_id = conn.send({"type": "session.start", "session": self.config})
                event = conn.wait(("session.started", "error"),
                                  lambda e: e.get("type") == "session.started"
                                  or _answers(e, start_id), deadline.remaining(), after)
            except NotConnectedError:
                conn.wait_ended(2.0)  # the network thread may still be reading the close
                if conn.end_exception is not None:  # refused key or configuration
                    raise conn.end_exception from None
                raise
            if event.get("type") == "error":
                raise _server_error(event)
            with self._changed:  # the handler may not have run yet
                self._started = dict(event.get("session") or {})
            self._clock = threading.Thread(target=self._run_clock,
                                           name="realtime-sync-live-clock", daemon=True)
            self._clock.start()
        except BaseException:
            self._conn = None
            conn.close(2.0)
            if self._speaker is not None:
                self._speaker.stop(1.0)
                self._speaker = None
            raise
        return self

    def close(self, timeout: float = 5.0) -> bool:
        """End the session and join every thread. Idempotent; any thread.

        When the session is running, ``session.close`` is sent and ``session.closed`` awaited
        for up to half of ``timeout`` (its ``reason`` and ``usage`` then end up in
        :attr:`close_reason` / :attr:`usage`); a server that never answers cannot hold it
        longer. Audio not yet sent (less than a frame) is dropped; use :meth:`finish` to
        send it. Returns True when every thread ended in time.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        for s in list(self._streams):
            try:
                s.stop(max(0.0, deadline - time.monotonic()) / 4)
            except Exception:  # noqa: BLE001
                logger.exception("stopping the audio stream failed")
        self._streams.clear()
        conn = self._conn
        with self._changed:
            already = self._closed
            self._closed = True
        if conn is not None and not already and self._started is not None \
                and not conn.on_handler_thread():
            try:
                self._request_close()
                with self._changed:
                    wait_until(self._changed,
                               lambda: self._closed_event is not None or self._lost
                               or conn.state in ("disconnected", "closed"),
                               Deadline(max(0.0, deadline - time.monotonic()) / 2))
                if self._closed_event is None:
                    logger.warning("close(): no session.closed within %.1f s; closing the "
                                   "socket anyway", timeout / 2)
            except NotConnectedError:
                pass
        self._stop.set()
        self._wake.set()
        self._tool_queue.put(None)
        ok = True
        for thread in (self._clock, self._tool_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.05, deadline - time.monotonic()) / 2)
                ok = ok and not thread.is_alive()
        speaker, self._speaker = self._speaker, None
        if speaker is not None:
            ok = bool(speaker.stop(max(0.05, deadline - time.monotonic()) / 2)) and ok
        if conn is not None:
            ok = conn.close(max(0.05, deadline - time.monotonic())) and ok
        self._codec.close()
        with self._changed:
            self._changed.notify_all()
        return ok

    def finish(self, timeout: Optional[float] = 15) -> LiveResult:
        """Send the audio left (padded to one 20 ms frame), then ``session.close``; wait for
        ``session.closed`` and return the :class:`LiveResult` (reason, usage, transcript).

        Thread: any but the dispatcher's. After it, ``feed`` raises; call :meth:`close` (or
        leave the ``with`` block).

        Raises:
            TimeoutError: no ``session.closed`` within ``timeout`` (call ``close()``).
            ConnectionLostError: the connection ended before ``session.closed``.
        """
        conn = self._require()
        conn.check_blocking_call("LiveSession.finish()")
        deadline = Deadline(timeout)
        for s in list(self._streams):
            s.stop(2.0)
        if self._lost and self._closed_event is None:
            raise ConnectionLostError(f"the Live session ended before session.closed: "
                                      f"{self._lost}")
        self._flush_audio(conn)
        self._request_close()
        with self._changed:
            wait_until(self._changed, lambda: self._closed_event is not None or self._lost,
                       deadline, check=conn.router.raise_strict)
            if self._closed_event is not None:
                return self._result()
            if self._lost:
                raise ConnectionLostError(f"the Live session ended before session.closed: "
                                          f"{self._lost}")
        raise TimeoutError(f"no session.closed within {timeout} s")

    def _request_close(self) -> None:
        conn = self._require()
        with self._changed:
            if self._closing or self._closed_event is not None:
                return
            self._closing = True
        conn.send({"type": "session.close"})

    def _require(self) -> LiveConnection:
        conn = self._conn
        if conn is None or self._started is None:
            raise NotConnectedError("the Live session is not started: call start() or use "
                                    "`with`")
        return conn

    # -- audio in -------------------------------------------------------------------------------
    def feed(self, pcm16: bytes, rate: int = 24000) -> None:
        """Feed PCM16 mono speech at ``rate`` Hz (default 24000); it is converted to the
        session's format and sent in frames of ``frame_ms``. Any thread.

        Raises:
            TypeError, ValueError: not PCM16 bytes.
            NotConnectedError: not started, finishing, closed, or the connection ended.
        """
        if isinstance(pcm16, memoryview):
            pcm16 = pcm16.tobytes()
        if not isinstance(pcm16, (bytes, bytearray)):
            raise TypeError(f"audio must be bytes of PCM16 samples, not {type(pcm16).__name__}")
        if len(pcm16) % 2:
            raise ValueError(f"PCM16 audio has an even number of bytes; got {len(pcm16)}")
        conn = self._require()
        if self._closing or self._closed:
            raise NotConnectedError("the Live session is finishing; no more audio is sent")
        if self._lost:
            raise NotConnectedError(f"the Live connection ended: {self._lost}")
        if self._closed_event is not None:
            raise NotConnectedError(f"the Live session has ended ({self.close_reason})")
        with self._feed_lock:
            self._pending += self._codec.to_wire(bytes(pcm16), int(rate))
            self._send_frames(conn, final=False)

    def _send_frames(self, conn: LiveConnection, final: bool) -> None:
        """Send whole frames (feed lock held); with ``final`` the rest, padded to 20 ms."""
        size = self._frame_ms * self._codec.bytes_per_ms
        while len(self._pending) >= size or (final and self._pending):
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            least = MIN_FRAME_MS * self._codec.bytes_per_ms
            if len(chunk) < least:
                silence = b"\xff" if self._codec.kind == "pcmu" else \
                    b"\xd5" if self._codec.kind == "pcma" else b"\x00"
                chunk += silence * (least - len(chunk))
            frame = append_frame(chunk, new_event_id(), _APPEND)
            conn.send_data(frame, len(chunk))
            self._audio_ms_sent += len(chunk) / self._codec.bytes_per_ms

    def _flush_audio(self, conn: LiveConnection) -> None:
        with self._feed_lock:
            if self._pending and conn.connected and not self._closing:
                self._send_frames(conn, final=True)

    def listen(self, device: Union[int, str, None] = None, chunk_ms: int = 40,
               mute_when: Optional[Callable[[], bool]] = None) -> Any:
        """Stream a microphone into the session on the ``realtime-sync-audio`` thread;
        returns the :class:`realtime_sync.audio.AudioStream` (stopped by ``close()``).
        ``mute_when`` (checked per chunk on the audio thread) discards the microphone while
        it returns True (half-duplex with loudspeakers).

        Raises:
            AudioError: no usable input device (the message says how to list devices).
        """
        from .audio import Microphone, stream

        self._require()
        mic = Microphone(device=device, chunk_ms=chunk_ms)
        return stream(self._sink(), mic, chunk_ms=chunk_ms, mute_when=mute_when)

    def stream_source(self, source: Any, chunk_ms: int = 40) -> Any:
        """Stream any :class:`realtime_sync.audio.AudioSource` (24 kHz PCM16) into it."""
        from .audio import stream

        self._require()
        return stream(self._sink(), source, chunk_ms=chunk_ms)

    def _sink(self) -> FeedSink:
        """What :func:`realtime_sync.audio.stream` feeds: :meth:`feed`; its events go to the
        connection, and the stream is owned (stopped by :meth:`close`)."""
        return FeedSink(self.feed, self._streams, self._emit_event, _no_count)

    def _emit_event(self, event: Mapping[str, Any]) -> None:
        conn = self._conn
        if conn is not None:
            conn.emit(event)

    @property
    def sent_ms(self) -> float:
        """Audio sent so far, in ms of the session's format."""
        return self._audio_ms_sent

    # -- commands -------------------------------------------------------------------------------
    def mute(self) -> str:
        """``session.input_audio.mute``: the model hears silence (the microphone may go on).
        Returns the event id. Any thread."""
        return self._require().send({"type": "session.input_audio.mute"})

    def unmute(self) -> str:
        """``session.input_audio.unmute``. Returns the event id. Any thread."""
        return self._require().send({"type": "session.input_audio.unmute"})

    def append_instructions(self, text: str, delegation_id: Optional[str] = None) -> str:
        """``session.instructions.append``: developer instructions added while running."""
        return self._append("session.instructions.append", text, delegation_id)

    def commentary(self, text: str, delegation_id: Optional[str] = None) -> str:
        """``session.commentary.append``: context the model may say to the user (a
        delegation's result when ``delegation_id`` is given)."""
        return self._append("session.commentary.append", text, delegation_id)

    def thinking(self, text: str, delegation_id: Optional[str] = None) -> str:
        """``session.thinking.append``: silent context or progress for the model."""
        return self._append("session.thinking.append", text, delegation_id)

    def update(self, delegation: Optional[Mapping[str, Any]] = None,
               triggers: Optional[Sequence[Mapping[str, Any]]] = None) -> str:
        """``session.update``: change the delegation settings or the transcript triggers
        (the only mutable parts). Returns the event id; ``session.updated`` confirms."""
        session: Dict[str, Any] = {}
        if delegation is not None:
            session["delegation"] = dict(delegation)
        if triggers is not None:
            session["triggers"] = [dict(t) for t in triggers]
        return self._require().send({"type": "session.update", "session": session})

    def send(self, event: Mapping[str, Any]) -> str:
        """Send any Live client event as given (decisions, responses...). Any thread."""
        return self._require().send(event)

    def _append(self, type_: str, text: str, delegation_id: Optional[str]) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("the text must be a non-empty string")
        if delegation_id is not None and not isinstance(delegation_id, str):
            raise TypeError("delegation_id must be a string or None")
        return self._require().send({"type": type_, "content": text,
                                     "delegation_id": delegation_id})

    # -- results --------------------------------------------------------------------------------
    @property
    def started(self) -> Optional[Dict[str, Any]]:
        """The session resource of ``session.started`` (None before)."""
        return self._started

    @property
    def session_id(self) -> Optional[str]:
        return (self._started or {}).get("id")

    @property
    def transcript(self) -> List[LiveSegment]:
        """Every segment shown so far (final ones and the open one), in order; any thread."""
        with self._lock:
            return [self._segments[i] for i in self._order]

    @property
    def text(self) -> str:
        """The transcript as ``speaker: text`` lines."""
        return "\n".join(f"{s.speaker}: {s.text.strip()}" for s in self.transcript)

    @property
    def close_reason(self) -> Optional[str]:
        """``session.closed``'s reason (None until then)."""
        event = self._closed_event
        return event.get("reason") if event is not None else None

    @property
    def usage(self) -> Dict[str, Any]:
        """The latest cumulative usage (``session.usage.updated`` / ``session.closed``)."""
        with self._lock:
            return dict(self._usage)

    @property
    def errors(self) -> List[Dict[str, Any]]:
        """The server's ``error`` objects so far."""
        with self._lock:
            return list(self._errors)

    @property
    def lost(self) -> Optional[str]:
        """Why the connection ended without ``session.closed`` (None if it did not)."""
        return self._lost

    @property
    def speaker(self) -> Any:
        """The :class:`realtime_sync.audio.Speaker` when ``speak`` was set (after start)."""
        return self._speaker

    def history(self) -> List[Dict[str, Any]]:
        """The final segments as ``input`` items (user and assistant text messages, the last
        128) to start a new session with the conversation so far, after a drop."""
        items = [(s.speaker, s.text.strip()) for s in self.transcript if s.final and
                 s.text.strip()]
        return _history_items(items[-128:])

    def segments(self, timeout: Optional[float] = None) -> Iterator[LiveSegment]:
        """A blocking iterator of final segments in order; ends after ``session.closed``,
        a drop or ``close()``, or when none comes for ``timeout`` s. Not on the dispatcher."""
        conn = self._require()
        conn.check_blocking_call("LiveSession.segments()")
        seen = 0
        while True:
            with self._changed:
                deadline = Deadline(timeout)
                while len(self._final_ids) <= seen:
                    if self._closed_event is not None or self._lost or self._closed:
                        return
                    if deadline.expired():
                        return
                    self._changed.wait(deadline.slice())
                seg = self._segments[self._final_ids[seen]]
                seen += 1
            yield seg

    def stats(self) -> Dict[str, Any]:
        """Counters of the connection plus ``barge_ins`` and ``audio_ms_sent``."""
        out: Dict[str, Any] = self._conn.stats() if self._conn is not None else {}
        out.update(barge_ins=self.barge_ins, audio_ms_sent=int(self._audio_ms_sent))
        return out

    def _result(self) -> LiveResult:
        event = self._closed_event or Event()
        finals = [self._segments[i] for i in self._final_ids]
        return LiveResult(reason=event.get("reason"), usage=dict(self._usage),
                          session=dict(event.get("session") or {}), segments=finals,
                          errors=list(self._errors))

    # -- dispatcher thread ----------------------------------------------------------------------
    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        marshal = self._marshal
        if marshal is None:
            return fn

        def through(*args: Any) -> None:
            marshal(lambda: fn(*args))

        return through

    def _call(self, fn: Optional[Callable[..., Any]], *args: Any) -> None:
        if fn is None:
            return
        self._wrap(fn)(*args)

    def _h_started(self, event: Event) -> None:
        with self._changed:
            self._started = dict(event.get("session") or {})
            self._changed.notify_all()

    def _h_transcript(self, event: Event) -> None:
        user = event.get("type") == _USER_DELTA
        conn = self._conn
        with self._changed:
            try:
                changed = self._grouping.push(
                    event.get("event_id"), "user" if user else "assistant",  # type: ignore[arg-type]
                    event.get("delta"), event.get("start_ms"), event.get("end_ms"),  # type: ignore[arg-type]
                    time.monotonic() * 1000)
            except ValueError as exc:
                if conn is not None:
                    conn.protocol_error(str(exc), event)
                return
            barge = user and self._out_active and bool(event.get("delta"))
            if barge:
                self._out_active = False
                self.barge_ins += 1
                self._out_item += 1
            self._record(changed)
        if barge:
            logger.info("barge-in: the user speaks over the assistant; playback stops")
            if self._speaker is not None:
                self._speaker.interrupt()
            self._call(self._on_interrupt)
        self._deliver(changed)
        self._wake.set()

    def _h_tick(self, event: Event) -> None:
        with self._changed:
            changed = self._grouping.tick(time.monotonic() * 1000)
            self._record(changed)
        self._deliver(changed)

    def _record(self, changed: List[LiveSegment]) -> None:
        for seg in changed:
            if seg.id not in self._segments:
                self._order.append(seg.id)
            self._segments[seg.id] = seg
            if seg.final:
                self._final_ids.append(seg.id)
        if changed:
            self._changed.notify_all()

    def _deliver(self, changed: List[LiveSegment]) -> None:
        for seg in changed:
            self._call(self._on_segment, seg)
            if seg.final:
                self._call(self._on_final, seg)

    def _h_audio(self, event: Event) -> None:
        data = event.get("delta")
        if not isinstance(data, str):
            return
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            if self._conn is not None:
                self._conn.protocol_error("output audio delta is not base64", event)
            return
        pcm = self._codec.from_wire(raw)
        with self._lock:
            self._out_active = True
            item = f"live-{self._out_item}"
        if self._speaker is not None:
            self._speaker.feed(pcm, item)
        self._call(self._on_audio, pcm)

    def _h_delegation(self, event: Event) -> None:
        raw = event.get("delegation")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            if self._conn is not None:
                self._conn.protocol_error("session.delegation.created without a delegation id",
                                          event)
            return
        with self._lock:
            transcript = tuple(self._segments[i] for i in self._order)
        request = next((s.text.strip() for s in reversed(transcript) if s.speaker == "user"), "")
        offset = event.get("offset_ms")
        delegation = LiveDelegation(
            id=raw["id"], target=str(raw.get("target") or "client"),
            offset_ms=int(offset) if isinstance(offset, (int, float)) else 0,
            response_id=raw.get("response_id"), request=request, transcript=transcript,
            event=dict(event))
        self.delegations.append(delegation)
        self._call(self._on_delegation, delegation)
        if delegation.target == "client" and self._tools:
            if self._tool_thread is None:
                self._tool_thread = threading.Thread(target=self._run_tools,
                                                     name="realtime-sync-live-tools",
                                                     daemon=True)
                self._tool_thread.start()
            self._tool_queue.put(delegation)

    def _h_usage(self, event: Event) -> None:
        usage = event.get("usage")
        if isinstance(usage, Mapping):
            with self._lock:
                self._usage = dict(usage)

    def _h_closed(self, event: Event) -> None:
        with self._changed:
            usage = event.get("usage")
            if isinstance(usage, Mapping):
                self._usage = dict(usage)
            changed = self._grouping.finish(time.monotonic() * 1000, "session_closed")
            self._record(changed)
        self._deliver(changed)  # the last segments reach the callbacks before finish() returns
        with self._changed:
            self._closed_event = event
            self._changed.notify_all()
        logger.info("Live session closed: %s", event.get("reason"))
        self._call(self._on_closed, self._result())

    def _h_error(self, event: Event) -> None:
        err = event.get("error")
        with self._changed:
            self._errors.append(dict(err) if isinstance(err, Mapping) else {"message": str(err)})
            self._changed.notify_all()
        exc = _server_error(event)
        if self._on_error is None:
            logger.warning("Live server error: %s", exc)
        self._call(self._on_error, exc)

    def _h_disconnected(self, event: Event) -> None:
        if event.get("session_closed") or self._closed_event is not None:
            return
        conn = self._conn
        if conn is not None and conn.state == "closed" and self._closed:
            reason = "closed by the application before session.closed"
        else:
            reason = str(event.get("reason") or "connection lost")
        with self._changed:
            self._lost = reason
            changed = self._grouping.finish(time.monotonic() * 1000, "connection_lost")
            self._record(changed)
            self._changed.notify_all()
        self._deliver(changed)
        if self._closed:
            return
        exc = ConnectionLostError(
            f"the Live connection was lost ({event.get('cause')}): {reason}. The session is "
            "gone with it; start a new LiveSession (input=session.history() carries the "
            "conversation over)")
        if self._on_error is None:
            logger.warning("%s", exc)
        self._call(self._on_error, exc)

    # -- the clock and the tools ----------------------------------------------------------------
    def _run_clock(self) -> None:
        """Wake the dispatcher when the transcript's next timeout is due."""
        while not self._stop.is_set():
            with self._lock:
                due = self._grouping.due_in(time.monotonic() * 1000)
            self._wake.clear()
            if due is None:
                self._wake.wait(0.5)
                continue
            if due > 0 and self._wake.wait(due / 1000):
                continue
            conn = self._conn
            if conn is None or self._stop.is_set():
                return
            conn.emit({"type": TICK})
            self._wake.wait(0.05)  # let the dispatcher apply it before looking again

    def _run_tools(self) -> None:
        while True:
            delegation = self._tool_queue.get()
            if delegation is None or self._stop.is_set():
                return
            self._answer(delegation)

    def _answer(self, delegation: LiveDelegation) -> None:
        output: Optional[str] = None
        error: Optional[BaseException] = None
        name = ""
        for fn in list(self._tools):
            name = str(getattr(fn, "__live_tool_name__", None) or getattr(fn, "__name__", "tool"))
            try:
                result = fn(delegation)
            except Exception as exc:  # noqa: BLE001 - reported, the worker goes on
                logger.exception("Live tool %s failed on delegation %s", name, delegation.id)
                error = exc
                break
            if result is not None:
                output = result if isinstance(result, str) else str(result)
                break
        try:
            if error is not None:
                self.thinking(f"The application could not complete this task "
                              f"({type(error).__name__}).", delegation_id=delegation.id)
            elif output is not None and output.strip():
                self.commentary(output, delegation_id=delegation.id)
        except NotConnectedError as exc:
            logger.warning("the result of delegation %s was not sent: %s", delegation.id, exc)
        conn = self._conn
        if conn is not None:
            conn.emit({"type": LibraryEvents.TOOL_CALL, "name": name,
                       "delegation_id": delegation.id, "output": output,
                       "error": f"{type(error).__name__}: {error}" if error else None})
        if error is not None:
            self._call(self._on_error, error)


def _answers(event: Mapping[str, Any], event_id: str) -> bool:
    err = event.get("error")
    ids = {event.get("client_event_id")}
    if isinstance(err, Mapping):
        ids.add(err.get("client_event_id"))
    return event_id in ids


def _server_error(event: Mapping[str, Any]) -> ServerError:
    exc = ServerError(event)
    err = event.get("error")
    if isinstance(err, Mapping):
        exc.event_id = err.get("client_event_id") or event.get("client_event_id")
    return exc


def _history_items(items: Sequence[Any]) -> List[Dict[str, Any]]:
    """``input`` items from items (dicts pass through) or ``(role, text)`` pairs."""
    out: List[Dict[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(dict(item))
            continue
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError("input items are dicts or (role, text) pairs")
        role, text = item
        if role not in ("user", "assistant", "developer"):
            raise ValueError(f"role must be user, assistant or developer, not {role!r}")
        part = "output_text" if role == "assistant" else "input_text"
        out.append({"type": "message", "role": role,
                    "content": [{"type": part, "text": str(text)}]})
    return out

"""One Live API WebSocket (``/v1/live/sessions``) on the library's shared transport and
dispatcher: the network thread (``realtime-sync-net``), the ordered dispatcher thread
(``realtime-sync-dispatch``, or ``marshal``), handlers, waits and bounded closing.

It is the Live counterpart of :class:`~realtime_sync.RealtimeClient`'s connection part, without
anything of the Realtime protocol: it sends nothing on its own (no ``session.update``), waits
for no ``session.created``, and never reconnects. A Live session lives in its socket: a new
socket is a new, empty session, so a lost connection is reported (``client.disconnected``
with its cause) and the decision to start again is the application's.

Every method may be called from any thread unless its docstring says otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._core import credentials as _secrets
from .._core import json_codec as _json
from .._core.dispatch import Handler, Marshal, Registry, Router
from .._core.endpoint import Endpoint, HeaderSource, KeySource
from .._core.transport import AUTH_HTTP_STATUSES, CloseCause, Closed, Transport
from .._core.wait import Deadline, wait_until
from .._core.wire import MAX_FRAME_BYTES
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    NotConnectedError,
    TimeoutError,
)
from ..events import MAX_EVENT_ID_LENGTH, Event, LibraryEvents, new_event_id

__all__ = ["LiveConnection", "live_url", "DEFAULT_LIVE_URL"]

logger = logging.getLogger(__name__)

DEFAULT_LIVE_URL = "wss://api.openai.com/v1/live/sessions"
IDLE, CONNECTING, OPEN, DISCONNECTED, CLOSED = "idle", "connecting", "open", "disconnected", \
    "closed"


def live_url(url: Optional[str] = None) -> str:
    """The Live WebSocket URL for ``url``: a Live URL (``.../v1/live/sessions``) is kept; a
    Realtime URL of the same server (``.../v1/realtime``, e.g. the local server's) or its
    ``.../v1`` base is turned into the Live one. ``model``/``intent`` query parameters are
    dropped: the Live model goes in ``session.start``, never in the URL.

    Raises:
        ConfigurationError: a path that is none of these.
    """
    parts = urlsplit(url or DEFAULT_LIVE_URL)
    path = parts.path.rstrip("/")
    if path.endswith("/live/sessions"):
        pass
    elif path.endswith("/realtime/translations"):
        path = path[: -len("/realtime/translations")] + "/live/sessions"
    elif path.endswith("/realtime"):
        path = path[: -len("/realtime")] + "/live/sessions"
    elif path.endswith("/v1") or path == "":
        path += "/live/sessions" if path else "/v1/live/sessions"
    else:
        raise ConfigurationError(
            f"a Live URL ends in /v1/live/sessions (or /v1/realtime, /v1), not {path!r}")
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("intent", "model")]
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


class LiveConnection:
    """The socket of one Live session with its threads, handlers and waits (no reconnect).

    Library events (the ``client.`` prefix): ``client.connected`` once the socket is open;
    ``client.disconnected`` (``reason``, ``code``, ``cause``, ``session_closed``: whether
    ``session.closed`` came first, ``exception``) once it ended; ``client.handler_error`` and
    ``client.protocol_error`` as for :class:`~realtime_sync.RealtimeClient`.
    """

    def __init__(
        self,
        *,
        url: Optional[str] = None,
        api_key: KeySource = None,
        headers: HeaderSource = None,
        marshal: Optional[Marshal] = None,
        strict: bool = False,
        queue_size: int = 4096,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = None,
        open_timeout: float = 10.0,
        allow_insecure: bool = False,
        sslopt: Optional[Dict[str, Any]] = None,
        max_frame_size: int = MAX_FRAME_BYTES,
    ) -> None:
        if marshal is not None and not callable(marshal):
            raise TypeError("marshal must be callable: marshal(fn) runs fn on another thread")
        url = live_url(url)
        self._endpoint = Endpoint(url=url, api_key=api_key, headers=headers,
                                  allow_insecure=allow_insecure)
        self._endpoint.url = url  # the shared key, header and cleartext rules; no ?model=
        self._transport_options: Dict[str, Any] = dict(
            backoff=None, ping_interval=ping_interval, ping_timeout=ping_timeout,
            sslopt=sslopt, open_timeout=open_timeout, max_frame_size=max_frame_size)
        self.registry = Registry()
        self.router = Router(self.registry, emit_handler_error=self._emit_handler_error,
                             marshal=marshal, queue_size=queue_size, strict=strict)
        self.marshal = marshal
        self._state = IDLE
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._transport: Optional[Transport] = None
        self._connect_error: Optional[BaseException] = None
        self._last_error: Optional[Event] = None
        self.session_closed = False
        """True once the network thread has read ``session.closed``."""
        self.ended: Optional[Closed] = None
        """How the socket ended (after it did)."""
        self.end_reason: Optional[str] = None
        self.end_exception: Optional[BaseException] = None
        self._close_result: Optional[bool] = None
        self.counters: Dict[str, int] = {"events_sent": 0, "audio_bytes_sent": 0,
                                         "protocol_errors": 0}
        self._counter_lock = threading.Lock()

    # -- state ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The Live URL (never contains a key)."""
        return self._endpoint.url

    @property
    def state(self) -> str:
        """idle, connecting, open, disconnected (ended by the server or the network) or
        closed (``close()`` was called)."""
        return self._state

    @property
    def connected(self) -> bool:
        return self._state == OPEN

    def masked_key(self) -> str:
        return _secrets.mask(self._endpoint.key())

    # -- handlers ---------------------------------------------------------------------------
    def on(self, type_: str, handler: Handler) -> None:
        if not isinstance(type_, str) or not type_:
            raise TypeError(f"event type must be a non-empty string, not {type_!r}")
        if not callable(handler):
            raise TypeError("handler must be callable")
        self.registry.add(type_, handler)

    def off(self, type_: str, handler: Optional[Handler] = None) -> bool:
        return self.registry.remove(type_, handler)

    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue a library event for the handlers; never blocks (counted when full)."""
        self.router.deliver(Event(event), block=False)

    def check_blocking_call(self, what: str) -> None:
        self.router.check_blocking_call(what)

    def on_handler_thread(self) -> bool:
        return self.router.on_handler_thread()

    # -- lifecycle --------------------------------------------------------------------------
    def open(self, timeout: Optional[float]) -> None:
        """Open the socket; blocks until the WebSocket upgrade succeeded. Not on the
        dispatcher thread.

        Raises:
            AuthenticationError: the server refused the key (HTTP 401/403 or close 3000).
            ConfigurationError: no key for OpenAI, a key over cleartext, or close 4000.
            ConnectError: the upgrade failed; TimeoutError: nothing within ``timeout``.
        """
        self.router.check_blocking_call("LiveSession.start()")
        with self._lock:
            if self._state != IDLE:
                raise NotConnectedError("a Live connection opens once; create a new session")
            self._endpoint.check()
            _secrets.protect_loggers()
            self._state = CONNECTING
            self._transport = Transport(
                resolve=self._endpoint.resolve, on_open=self._on_open,
                on_frame=self._on_frame, on_closed=self._on_closed,
                on_reconnecting=lambda attempt, delay, info: None,
                on_stopped=self._on_stopped, on_protocol_error=self._on_frame_refused,
                **self._transport_options)
            self.router.start()
            self._transport.start()
        deadline = Deadline(timeout)
        with self._changed:
            wait_until(self._changed, lambda: self._state != CONNECTING, deadline)
            state = self._state
        if state == CONNECTING:
            self.close(1.0)
            raise TimeoutError(f"no WebSocket upgrade from {self.url} within {timeout} s")
        if state != OPEN:
            error = self._connect_error or ConnectError(
                f"could not connect to {self.url}: {self.end_reason or 'closed'}")
            self.close(1.0)
            raise error

    def close(self, timeout: float = 5.0) -> bool:
        """Close the socket and join the threads; idempotent, any thread (a handler too).
        Events still queued are dropped (counted by the router). True when every thread
        ended in time."""
        with self._lock:
            if self._close_result is not None:
                return self._close_result
            was = self._state
            self._state = CLOSED
            self._changed.notify_all()
            transport = self._transport
        deadline = time.monotonic() + max(0.0, timeout)
        self.router.shut()
        ok = True
        if transport is not None:
            ok = transport.close(max(0.0, deadline - time.monotonic()))
        if was != IDLE or transport is not None:
            ok = self.router.stop(max(0.0, deadline - time.monotonic())) and ok
        self.router.finish()
        if not ok:
            logger.warning("close(): a realtime-sync thread did not end within %.1f s", timeout)
        self._close_result = ok
        return ok

    # -- sending ----------------------------------------------------------------------------
    def encode(self, event: Mapping[str, Any]) -> Tuple[str, str, Union[str, bytes]]:
        """(type, event_id, JSON) of a client event; adds an ``event_id`` when missing.

        Raises:
            TypeError: not a dict with a string ``type``, or not JSON-serialisable.
            ValueError: an ``event_id`` that is not a short string.
        """
        if not isinstance(event, Mapping):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        type_ = event.get("type")
        if not isinstance(type_, str) or not type_:
            raise TypeError("event must have a string 'type'")
        body = dict(event)
        event_id = body.get("event_id")
        if event_id is None:
            event_id = body["event_id"] = new_event_id()
        elif not isinstance(event_id, str) or not event_id \
                or len(event_id) > MAX_EVENT_ID_LENGTH:
            raise ValueError(f"event_id must be a string of 1..{MAX_EVENT_ID_LENGTH} characters")
        return type_, event_id, _json.dumps(body)

    def send(self, event: Mapping[str, Any]) -> str:
        """Send one client event; returns its ``event_id``. Never queued.

        Raises:
            NotConnectedError: the socket is not open (its end reason said).
        """
        self.router.raise_strict()
        type_, event_id, data = self.encode(event)
        self.send_data(data)
        return event_id

    def send_data(self, data: Union[str, bytes], audio_bytes: int = 0) -> None:
        """Send one prebuilt JSON frame (audio appends). Raises NotConnectedError."""
        transport = self._transport
        if self._state != OPEN or transport is None:
            raise NotConnectedError(self.not_connected_message())
        try:
            transport.send(data)
        except NotConnectedError:
            raise NotConnectedError(self.not_connected_message()) from None
        with self._counter_lock:
            self.counters["events_sent"] += 1
            self.counters["audio_bytes_sent"] += audio_bytes

    def not_connected_message(self) -> str:
        if self._state == IDLE:
            return "the Live session is not started: call start()"
        if self._state == CLOSED:
            return "the Live session is closed"
        if self._state == CONNECTING:
            return "the Live session is still connecting"
        if self._state == OPEN:
            return "the connection was lost while sending"
        return f"the Live connection ended: {self.end_reason or 'closed'}"

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, types: Tuple[str, ...], where: Optional[Callable[[Event], bool]],
             timeout: Optional[float], after: int = 0) -> Event:
        """The first event of ``types`` numbered after ``after`` (recent ones included) for
        which ``where`` holds. Not on the dispatcher thread.

        Raises:
            TimeoutError: none within ``timeout``; NotConnectedError: the socket ended first.
        """
        self.router.check_blocking_call("waiting for a Live event")

        def ended() -> Optional[str]:
            if self._state in (DISCONNECTED, CLOSED):
                return self.not_connected_message()
            return None

        return self.router.wait(types, where, timeout, after, None, ended)[1]

    def wait_ended(self, timeout: float) -> bool:
        """Wait until the socket has ended (its end reason is known); True when it has."""
        with self._changed:
            return bool(wait_until(self._changed, lambda: self._state in (DISCONNECTED, CLOSED),
                                   Deadline(timeout)))

    @property
    def seq(self) -> int:
        """The number of the last event delivered (pass it as ``after`` to a later wait)."""
        return self.router.seq

    # -- network thread ---------------------------------------------------------------------
    def _on_open(self) -> None:
        with self._changed:
            if self._state == CONNECTING:
                self._state = OPEN
            self._changed.notify_all()
        logger.debug("Live socket open: %s", self.url)
        self.router.deliver(Event(type=LibraryEvents.CONNECTED, url=self.url))
        transport = self._transport
        if transport is not None:
            transport.mark_established()

    def _on_frame(self, data: Union[str, bytes], binary: bool = False) -> None:
        data = _secrets.redact_frame(data)
        if binary:
            self._protocol_error("binary frame (the Live API sends JSON text frames)", data)
            return
        try:
            parsed = _json.loads(data)
        except ValueError as exc:
            self._protocol_error(f"frame is not JSON: {exc}", data)
            return
        if not isinstance(parsed, dict):
            self._protocol_error(f"frame is JSON {type(parsed).__name__}, not an object", data)
            return
        type_ = parsed.get("type")
        if not isinstance(type_, str) or not type_:
            self._protocol_error("event has no 'type'", data)
            return
        if type_.startswith("client."):
            self._protocol_error(f"a server event may not use the library's prefix: {type_}",
                                 data)
            return
        event = Event(parsed)
        if type_ == "error":
            self._last_error = event
        elif type_ == "session.closed":
            self.session_closed = True
        self.router.deliver(event)

    def _protocol_error(self, problem: str, data: Union[str, bytes]) -> None:
        sample: Any = data[:200]
        if isinstance(sample, (bytes, bytearray)):
            sample = sample.decode("utf-8", "replace")
        sample = _secrets.redact(str(sample))
        logger.warning("protocol error from the Live server: %s; frame starts %r",
                       _secrets.redact(problem), sample)
        self._report_protocol_error(problem, sample, len(data))

    def _on_frame_refused(self, problem: str, length: int) -> None:
        self._report_protocol_error(problem, "", length)

    def _report_protocol_error(self, problem: str, sample: str, length: int) -> None:
        with self._counter_lock:
            self.counters["protocol_errors"] += 1
        self.router.deliver(Event(type=LibraryEvents.PROTOCOL_ERROR,
                                  message=_secrets.redact(problem), frame=sample,
                                  frame_length=length))

    def protocol_error(self, problem: str, event: Mapping[str, Any]) -> None:
        """Report a server event the session could not use (dispatcher thread)."""
        self._report_protocol_error(problem, _secrets.redact(str(dict(event))[:200]), 0)

    def _on_closed(self, info: Closed) -> bool:
        err = self._last_error
        err_obj = err.get("error") if err is not None else None
        err_msg = err_obj.get("message") if isinstance(err_obj, Mapping) else None
        cause = info.final_cause()
        status = info.http_status
        reason = info.describe()
        if status is not None:
            reason = f"the server answered the upgrade with HTTP {status}"
        if err_msg and not info.by_client and info.code in (3000, 4000, None):
            reason = _secrets.redact(str(err_msg))
        exception: Optional[BaseException] = None
        if info.code == 3000 or status in AUTH_HTTP_STATUSES:
            exception = AuthenticationError(f"authentication failed: {reason}",
                                            code=info.code, reason=reason, status=status)
        elif info.code == 4000 or isinstance(info.error, ConfigurationError):
            exception = info.error if isinstance(info.error, ConfigurationError) else \
                ConfigurationError(f"the server refused the session: {reason}")
        with self._changed:
            was = self._state
            self.ended = info
            self.end_reason = reason
            if was == CONNECTING:
                self._connect_error = exception or ConnectError(
                    f"could not connect to {self.url}: {reason}", code=info.code,
                    reason=reason, status=status, retry_after=info.retry_after)
            if was != CLOSED:
                self._state = DISCONNECTED
            self.end_exception = exception
            self._changed.notify_all()
        if was == OPEN or (info.by_client and info.established):
            self.router.deliver(Event(
                type=LibraryEvents.DISCONNECTED, reason=reason, code=info.code,
                cause=cause, will_reconnect=False, session_closed=self.session_closed,
                http_status=status, exception=exception), block=not info.by_client)
            if was == OPEN and not self.session_closed and cause is not CloseCause.CLIENT_CLOSED:
                logger.warning("Live connection lost before session.closed: %s", reason)
        self.router.wake_waiters()
        return False

    def _on_stopped(self, info: Closed) -> None:
        with self._changed:
            if self._state in (CONNECTING, OPEN):
                if self._state == CONNECTING and self._connect_error is None:
                    self._connect_error = ConnectError(
                        f"could not connect to {self.url}: {info.describe()}")
                self._state = DISCONNECTED
            self._changed.notify_all()
        self.router.wake_waiters()

    def _emit_handler_error(self, event: Event) -> None:
        if self.router.on_handler_thread():
            self.router.run_inline(event)
        else:
            self.router.deliver(event, block=False)

    def stats(self) -> Dict[str, int]:
        """Counters: events and audio sent, protocol errors, dispatch figures."""
        with self._counter_lock:
            out = dict(self.counters)
        r = self.router
        out.update(events_received=r.received, events_dispatched=r.dispatched,
                   handler_errors=r.handler_errors, events_dropped_on_close=r.dropped_on_close,
                   queue_high_water=r.high_water)
        return out


"""RealtimeClient: lifecycle, sends that mirror the wire, handlers, and blocking waits."""

from __future__ import annotations

import atexit
import copy
import logging
import threading
import time
import weakref
from collections import deque
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from ._core import credentials as _secrets
from ._core import json_codec as _json
from ._core.backoff import Backoff
from ._core.dispatch import EventIterator, Handler, Marshal, Registry, Router
from ._core.endpoint import Endpoint, HeaderSource, KeySource
from ._core.host import ClientHost
from ._core.resources import (
    ConversationResource,
    InputAudioBufferResource,
    OutputAudioBufferResource,
    ResponseResource,
    SessionResource,
)
from ._core.transport import (
    AUTH_HTTP_STATUSES,
    FATAL_CODES,
    RECONNECT_CODES,
    TRANSIENT_HTTP_STATUSES,
    CloseCause,
    Closed,
    Transport,
)
from ._core.wait import Deadline, wait_until
from ._core.wire import MAX_FRAME_BYTES
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    NotConnectedError,
    ServerError,
    TimeoutError,
)
from .events import (
    BETA_CLIENT_TO_GA,
    MAX_EVENT_BYTES,
    MAX_EVENT_ID_LENGTH,
    Event,
    LibraryEvents,
    new_event_id,
)
from .models import warn_if_retired_options

__all__ = ["RealtimeClient"]

logger = logging.getLogger(__name__)

_live_clients: weakref.WeakSet[RealtimeClient] = weakref.WeakSet()

_RETRY_CAUSES = frozenset({
    CloseCause.CONNECTION_LOST, CloseCause.KEEPALIVE_TIMEOUT, CloseCause.SEND_STALLED,
    CloseCause.PROTOCOL_ERROR, CloseCause.HANDSHAKE_FAILED, CloseCause.RESTART,
})
"""Causes that always reconnect (unless fatal); server closes and HTTP refusals depend on
their code."""


def _http_reason(status: int, retry_after: Optional[float]) -> str:
    if status < 400 or status in (400, 404, 405):
        # a web page, a redirect, a wrong path: not a Realtime server (one line, no headers)
        return (f"the server answered HTTP {status}, not a WebSocket upgrade: "
                "is the URL right?")
    text = f"the server answered the upgrade with HTTP {status}"
    if retry_after is not None:
        text += f" (Retry-After {retry_after:.0f} s)"
    return text


_EXCHANGE_DONE = frozenset({
    "response.done",
    "conversation.item.input_audio_transcription.completed",
})
"""Server events that end an exchange: a session that got one is healthy (backoff resets)."""

IDLE, CONNECTING, CONNECTED, RECONNECTING, DISCONNECTED, CLOSED = (
    "idle", "connecting", "connected", "reconnecting", "disconnected", "closed",
)


def _close_all_at_exit() -> None:
    for client in list(_live_clients):
        try:
            client.close(timeout=0.5)  # Ctrl-C must end the process within a second
        except Exception:  # noqa: BLE001 - interpreter is exiting
            pass


atexit.register(_close_all_at_exit)


def _deep_merge(base: Dict[str, Any], update: Mapping[str, Any]) -> Dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class RealtimeClient:
    """A synchronous client for one Realtime session over WebSocket.

    Threads: ``connect()`` starts ``realtime-sync-net`` (the socket: reads, parses, enqueues;
    keepalive; reconnects) and ``realtime-sync-dispatch`` (runs handlers one at a time in
    arrival order, or hands them to ``marshal``). ``close()`` joins both. Nothing starts in the
    constructor. Every method may be called from any thread unless its docstring says otherwise.

    Args:
        url: WebSocket URL (default ``wss://api.openai.com/v1/realtime``).
        api_key: key or ephemeral secret (``ek_...``), or a callable returning one (evaluated on
            every connection attempt); defaults to ``$OPENAI_API_KEY``.
        model: conversation model, sent as ``?model=`` (default ``gpt-realtime-2.1`` when
            neither ``model`` nor ``intent`` is given; see :mod:`realtime_sync.models`). A model
            with an announced shutdown logs one warning per process naming the replacement.
        intent: ``"transcription"`` for a transcription session (no model in the URL).
        call_id: join the session of an incoming SIP call that was accepted with the
            ``openai`` SDK's ``client.realtime.calls.accept(call_id, ...)`` (sent as
            ``?call_id=``; no model in the URL unless ``model`` is given).
        session: a session config sent as ``session.update`` once connected, remembered and
            re-sent after every reconnect.
        headers: extra handshake headers, or a callable returning them (per attempt).
        azure_endpoint: ``https://<resource>.openai.azure.com`` (GA Azure, ``api-key`` header).
        azure_deployment: the Azure deployment name (becomes ``?model=``).
        ping_interval: seconds of silence before a keepalive ping (None or 0: off); a missing
            pong within ``ping_timeout`` counts as a dropped connection.
        ping_timeout: seconds to wait for a pong (default ``min(10, ping_interval)``).
        reconnect: ``True`` (default policy :class:`Backoff()`), a :class:`Backoff`, or ``False``.
        strict: re-raise the first handler exception in the caller's thread at its next
            blocking call or send.
        marshal: a callable taking a zero-argument function and running it on another thread
            (a GUI's; see :mod:`realtime_sync.gui`); handlers then run there, in order.
        queue_size: capacity of the dispatch queue (events); when full, reading the socket waits.
        allow_insecure: allow sending a key over ``ws://`` to a non-loopback host.
        sslopt: options for ``ssl`` (``{"ca_certs": path, "certfile": path, "keyfile": path}``).
        http_proxy_host, http_proxy_port, http_proxy_auth, proxy_type: HTTP/SOCKS proxy.
        open_timeout: seconds allowed for the TCP/TLS/HTTP handshake of one attempt.
        max_frame_size: the largest server frame (or fragmented message) accepted, in bytes
            (default 32 MiB, above the protocol's largest event); a bigger one closes the
            connection with ``client.protocol_error`` before its payload is buffered.
    """

    def __init__(
        self,
        *,
        url: Optional[str] = None,
        api_key: KeySource = None,
        model: Optional[str] = None,
        intent: Optional[str] = None,
        session: Optional[Mapping[str, Any]] = None,
        headers: HeaderSource = None,
        azure_endpoint: Optional[str] = None,
        azure_deployment: Optional[str] = None,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = None,
        reconnect: Union[bool, Backoff] = True,
        strict: bool = False,
        marshal: Optional[Marshal] = None,
        queue_size: int = 4096,
        allow_insecure: bool = False,
        sslopt: Optional[Dict[str, Any]] = None,
        http_proxy_host: Optional[str] = None,
        http_proxy_port: Optional[int] = None,
        http_proxy_auth: Optional[Tuple[str, str]] = None,
        proxy_type: Optional[str] = None,
        open_timeout: float = 10.0,
        max_frame_size: int = MAX_FRAME_BYTES,
        call_id: Optional[str] = None,
    ) -> None:
        if session is not None and not isinstance(session, Mapping):
            raise TypeError("session must be a dict (the session object of session.update)")
        warn_if_retired_options(session)
        if marshal is not None and not callable(marshal):
            raise TypeError("marshal must be callable: marshal(fn) runs fn on another thread")
        if isinstance(reconnect, Backoff):
            backoff: Optional[Backoff] = reconnect
        elif reconnect is True:
            backoff = Backoff()
        elif reconnect is False or reconnect is None:
            backoff = None
        else:
            raise TypeError("reconnect must be True, False or a realtime_sync.Backoff")
        for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout),
                            ("open_timeout", open_timeout)):
            if value is not None and (not isinstance(value, (int, float))
                                      or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1, not {queue_size!r}")
        if (not isinstance(max_frame_size, int) or isinstance(max_frame_size, bool)
                or max_frame_size < 1024):
            raise ValueError(f"max_frame_size must be an integer >= 1024, not {max_frame_size!r}")
        self._endpoint = Endpoint(
            url=url, api_key=api_key, model=model, intent=intent, headers=headers,
            azure_endpoint=azure_endpoint, azure_deployment=azure_deployment,
            allow_insecure=allow_insecure, call_id=call_id,
        )
        proxy: Dict[str, Any] = {}
        if http_proxy_host:
            proxy.update(http_proxy_host=http_proxy_host, http_proxy_port=http_proxy_port,
                         http_proxy_auth=http_proxy_auth, proxy_type=proxy_type)
        self._backoff = backoff
        self._transport_options = dict(
            backoff=backoff, ping_interval=ping_interval, ping_timeout=ping_timeout,
            sslopt=sslopt, proxy=proxy, open_timeout=open_timeout,
            max_frame_size=max_frame_size,
        )
        self._session_config: Optional[Dict[str, Any]] = (
            copy.deepcopy(dict(session)) if session is not None else None
        )
        # session.update events sent (or queued) and not yet answered: (event_id, session, data)
        self._pending_updates: Deque[Tuple[str, Dict[str, Any], Union[str, bytes]]] = deque()
        self._registry = Registry()
        self._router = Router(
            self._registry, emit_handler_error=self._emit_handler_error,
            marshal=marshal, queue_size=queue_size, strict=strict,
        )
        self._marshal = marshal
        self._state = IDLE
        self._state_lock = threading.RLock()
        self._state_changed = threading.Condition(self._state_lock)
        self._transport: Optional[Transport] = None
        self._connect_error: Optional[BaseException] = None
        self._disconnect_reason: Optional[str] = None
        self._last_error_event: Optional[Event] = None
        self._sessions_created = 0
        self._session_id: Optional[str] = None
        self._initial_update_id: Optional[str] = None
        self._session_created_seq = 0
        self._resources: List[Any] = []
        self._local = threading.local()
        self._counter_lock = threading.Lock()
        self._counters: Dict[str, int] = {
            "events_sent": 0, "audio_bytes_sent": 0, "audio_dropped": 0,
            "protocol_errors": 0,
        }
        self._close_result: Optional[bool] = None
        self._ui_warned = False
        # a translation session ended by the server's session.closed (after our session.close):
        # the close that follows is the normal end, never a reason to reconnect
        self._session_ended = False
        self._host = _Host(self)
        self.session = SessionResource(self)
        self.input_audio_buffer = InputAudioBufferResource(self)
        self.conversation = ConversationResource(self)
        self.response = ResponseResource(self)
        self.output_audio_buffer = OutputAudioBufferResource(self)

    # -- properties -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The URL of the session (never contains the key)."""
        return self._endpoint.url

    @property
    def intent(self) -> str:
        """``"transcription"`` or ``"realtime"``."""
        return self._endpoint.intent

    @property
    def connected(self) -> bool:
        """True between ``session.created`` and the next disconnect (any thread)."""
        return self._state == CONNECTED

    @property
    def state(self) -> str:
        """One of idle, connecting, connected, reconnecting, disconnected, closed."""
        return self._state

    @property
    def session_generation(self) -> int:
        """How many sessions this client has had: 0 before the first ``session.created``, then
        one more on every reconnect. Events and replies belong to the generation current when
        they arrived; compare it before and after a blocking step to tell whether the session
        changed in between. Any thread."""
        return self._sessions_created

    @property
    def session_id(self) -> Optional[str]:
        """The server's id of the current session (``session.created``'s ``session.id``), kept
        after a disconnect until the next session starts. Any thread."""
        return self._session_id

    @property
    def session_config(self) -> Optional[Dict[str, Any]]:
        """A copy of the remembered session config (what a reconnect re-sends)."""
        with self._state_lock:
            return copy.deepcopy(self._session_config)

    def __repr__(self) -> str:
        return (
            f"<RealtimeClient url={self.url!r} state={self._state} "
            f"key={_secrets.mask(self._endpoint.key())}>"
        )

    # -- handlers ---------------------------------------------------------------------------------
    def on(self, type: str, handler: Optional[Handler] = None) -> Any:  # noqa: A002
        """Register ``handler(event)`` for an event type (``"*"``: every event).

        Usable as a method or a decorator (``@client.on("error")``). Several handlers for one
        type run in registration order, type-specific before wildcard. Any thread.
        Handlers run on the dispatcher thread (or the ``marshal`` thread), one at a time.
        """
        if handler is None:
            def decorator(fn: Handler) -> Handler:
                self._registry.add(type, fn)
                return fn
            if not isinstance(type, str) or not type:
                raise TypeError(f"event type must be a non-empty string, not {type!r}")
            return decorator
        self._registry.add(type, handler)
        return handler

    def off(self, type: str, handler: Optional[Handler] = None) -> bool:  # noqa: A002
        """Unregister a handler (all handlers of the type when omitted). Any thread.

        Returns:
            True when something was removed.
        """
        return self._registry.remove(type, handler)

    # -- lifecycle --------------------------------------------------------------------------------
    def connect(self, timeout: Optional[float] = 10) -> RealtimeClient:
        """Open the connection and block until ``session.created`` (and, when a ``session``
        config was given, until the server applied it with ``session.updated``).

        Thread: any but the dispatcher thread (a GUI thread works; a one-time warning says how
        not to freeze the UI). Ctrl-C interrupts it.

        Raises:
            AuthenticationError: the server refused the key (``error`` + close 3000).
            ConfigurationError: bad options, a refused configuration (close 4000), or an
                ``error`` answering the session config.
            ConnectError: the connection failed or closed before ``session.created``.
            TimeoutError: nothing within ``timeout`` seconds (the client is then closed).
            NotConnectedError: the client was already closed.
        """
        self._router.check_blocking_call("connect()")
        self._warn_if_ui_thread("connect()")
        with self._state_lock:
            if self._state == CLOSED:
                raise NotConnectedError("this client is closed; create a new RealtimeClient")
            if self._state in (CONNECTED, RECONNECTING):
                return self
            if self._state == CONNECTING:
                raise ConnectError("connect() is already in progress on another thread")
            self._endpoint.check()  # before any I/O
            _secrets.protect_loggers()
            self._state = CONNECTING
            self._connect_error = None
            self._local.mark = self._router.seq  # wait_for on this thread sees what follows
            _live_clients.add(self)
            self._transport = Transport(
                resolve=self._endpoint.resolve,
                on_open=self._on_open,
                on_frame=self._on_redacted_frame,
                on_closed=self._on_closed,
                on_reconnecting=self._on_reconnecting,
                on_stopped=self._on_stopped,
                on_protocol_error=self._on_frame_refused,
                **self._transport_options,  # type: ignore[arg-type]
            )
            self._router.start()
            self._transport.start()
        deadline = Deadline(timeout)
        try:
            with self._state_changed:
                wait_until(self._state_changed, lambda: self._state != CONNECTING, deadline)
                if self._state == CONNECTING:
                    raise TimeoutError(f"no session.created from {self.url} within {timeout} s")
                # a session was created and already dropped: the client is reconnecting, as
                # it would be had connect() returned a moment earlier
                if self._state != CONNECTED and not (
                        self._state == RECONNECTING and self._sessions_created > 0):
                    if self._connect_error is not None:
                        raise self._connect_error
                    if self._state == CLOSED:
                        raise ConnectError("close() was called while connecting")
                    raise ConnectError("connection closed before session.created: "
                                       f"{self._disconnect_reason or 'no reason given'}")
                update_id = self._initial_update_id
                after = self._session_created_seq
            if update_id is not None:
                try:
                    self._wait(("session.updated",), None, deadline.remaining(), after,
                               {update_id})
                except ServerError as exc:
                    raise ConfigurationError(
                        f"the server rejected the session config: {exc.message}"
                        + (f" (param {exc.param})" if exc.param else "")
                    ) from exc
            self._router.raise_strict()
        except BaseException:
            # bounded: connect(timeout=T) returns within T plus this budget; the threads,
            # told to stop, end on their own shortly after (a later close() joins them)
            self._close(timeout=0.15, quiet=True)
            raise
        return self

    def close(self, timeout: float = 5) -> bool:
        """Close the connection and end every thread the client started. Idempotent.

        Thread: any, including a handler (the dispatcher then ends right after that handler).
        Audio streams the client owns are stopped first; from then on no handler starts (one
        already running finishes): events still queued are dropped and counted in
        ``stats()["events_dropped_on_close"]``. To have them handled first,
        call :meth:`flush` before ``close()``. A send blocked by a server that stopped reading
        is broken off (the socket is shut down), so ``close()`` stays bounded.

        Returns:
            True when every thread ended within ``timeout``; False (with a warning) otherwise.
        """
        return self._close(timeout)

    def _close(self, timeout: float, quiet: bool = False) -> bool:
        with self._state_lock:
            if self._close_result is not None and self._state == CLOSED:
                if not self._close_result:  # a thread outlived the last close: join again
                    self._close_result = self._join_threads(timeout)
                return self._close_result
            was = self._state
            self._state = CLOSED
            self._state_changed.notify_all()
            resources, self._resources = self._resources, []
            transport_ = self._transport
            pending = transport_.send_queue.discard() if transport_ is not None else 0
        if pending:
            logger.warning("close(): %d queued events were never sent (not connected)", pending)
        deadline = time.monotonic() + max(0.0, timeout)
        ok = True
        for resource in resources:
            try:
                ok = bool(resource.stop(max(0.0, deadline - time.monotonic()) / 2)) and ok
            except Exception:  # noqa: BLE001 - closing must go on
                logger.exception("stopping %r failed", resource)
                ok = False
        self._router.shut()  # no handler starts from now on; producers stop waiting
        transport = self._transport
        if transport is not None:
            ok = transport.close(max(0.0, deadline - time.monotonic())) and ok
        if was == IDLE and transport is None:
            self._router.finish()
            self._close_result = True
            return True
        ok = self._router.stop(max(0.0, deadline - time.monotonic())) and ok
        self._router.finish()
        _live_clients.discard(self)
        if not ok and not quiet:
            logger.warning("close(): a realtime-sync thread did not end within %.1f s", timeout)
        self._close_result = ok
        return ok

    def _join_threads(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        ok = True
        for t in (self._transport.thread if self._transport else None, self._router.thread):
            if t is not None and t.ident != threading.get_ident():
                t.join(max(0.0, deadline - time.monotonic()))
                ok = ok and not t.is_alive()
        return ok

    def __enter__(self) -> RealtimeClient:
        if self._state == IDLE:
            self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------------
    def send(self, event: Mapping[str, Any]) -> str:
        """Send one client event; stamps an ``event_id`` when absent and returns it.

        Thread-safe: events from several threads are sent whole, each thread's in order.
        While reconnecting, control events wait in a bounded queue (1000) and are sent in order
        after the next ``session.created``; ``input_audio_buffer.append`` is not queued.

        Raises:
            TypeError: not a dict, or not JSON-serialisable.
            ValueError: no ``type``, a library (``client.*``) or beta-only type, an event over
                15 MiB, or an ``event_id`` over 512 characters.
            NotConnectedError: not connected (and not reconnecting).
        """
        self._router.raise_strict()
        type_, event_id, event, data = self._encode(event)
        if type_ == "response.create":
            warn_if_retired_options(event.get("response"))
        elif type_ == "session.update":
            session = event.get("session")
            if not isinstance(session, Mapping):
                raise ValueError("session.update needs a 'session' object")
            warn_if_retired_options(session)
            # recorded before sending (the answer may come first); remembered for the
            # reconnect replay only once the server applied it (session.updated)
            entry = (event_id, copy.deepcopy(dict(session)), data)
            with self._state_lock:
                self._pending_updates.append(entry)
            try:
                self._send_data(type_, event_id, data, queue_ok=True)
            except BaseException:
                with self._state_lock:
                    try:
                        self._pending_updates.remove(entry)
                    except ValueError:
                        pass
                raise
            return event_id
        self._send_data(type_, event_id, data, queue_ok=True)
        return event_id

    @staticmethod
    def _encode(event: Mapping[str, Any]) -> Tuple[str, str, Mapping[str, Any], Union[str, bytes]]:
        """Check a client event and serialise it: (type, event_id, the event with its id,
        JSON). Raises what :meth:`send` documents (TypeError, ValueError). Any thread."""
        if not isinstance(event, Mapping):
            raise TypeError(f"event must be a dict, not {type(event).__name__}")
        type_ = event.get("type")
        if not isinstance(type_, str) or not type_:
            raise ValueError("event has no 'type' (e.g. {'type': 'response.create'})")
        if type_.startswith("client."):
            raise ValueError(f"{type_!r} is a library event name; it cannot be sent")
        if type_ in BETA_CLIENT_TO_GA:
            raise ValueError(
                f"{type_!r} is a retired beta client event; use {BETA_CLIENT_TO_GA[type_]}"
            )
        event_id = event.get("event_id")
        if event_id is None:
            event_id = new_event_id()
            event = dict(event)
            event["event_id"] = event_id
        elif not isinstance(event_id, str) or len(event_id) > MAX_EVENT_ID_LENGTH:
            raise ValueError("event_id must be a string of at most 512 characters")
        data = _json.dumps(event)
        if len(data) > MAX_EVENT_BYTES:
            raise ValueError(
                f"{type_} is {len(data)} bytes; the server accepts at most {MAX_EVENT_BYTES}"
                " per event (split audio into smaller appends)"
            )
        return type_, event_id, event, data

    def _send_data(self, type_: str, event_id: str, data: Union[str, bytes],
                   queue_ok: bool) -> None:
        self._mark_sent(event_id)
        transport = self._transport
        give_up = time.monotonic() + 5.0
        while True:
            if self._state == CONNECTED and transport is not None:
                try:
                    with transport.send_lock:
                        if self._state == CONNECTED:
                            transport.send_locked(data)
                            self._count("events_sent")
                            return
                except NotConnectedError:
                    if not (queue_ok and self._backoff is not None and not transport.closing):
                        raise
                    time.sleep(0.01)  # the network thread is noticing the drop
            with self._state_lock:
                state = self._state
                if state == CONNECTED:
                    # connected again (or the drop is not noticed yet): send, never park it
                    if time.monotonic() < give_up:
                        continue
                    raise NotConnectedError("the connection is not usable; nothing was sent")
                if (queue_ok and self._backoff is not None and state == RECONNECTING
                        and transport is not None):
                    transport.send_queue.park(type_, event_id, data)
                    return
            raise NotConnectedError(self._not_connected_message())

    def _not_connected_message(self) -> str:
        state = self._state
        if state == IDLE:
            return "not connected: call connect() first"
        if state == CLOSED:
            return "the client is closed"
        if state == RECONNECTING:
            return "the connection dropped and the client is reconnecting"
        reason = self._disconnect_reason or "connection lost"
        return f"not connected ({reason})"

    def _send_append(self, frame: bytes, event_id: str, audio_bytes: int) -> str:
        """Send a prebuilt ``input_audio_buffer.append`` frame (never queued)."""
        self._router.raise_strict()
        self._send_data("input_audio_buffer.append", event_id, frame, queue_ok=False)
        self._count("audio_bytes_sent", audio_bytes)
        return event_id

    def _mark_sent(self, event_id: str) -> None:
        local = self._local
        local.mark = self._router.seq
        ids = getattr(local, "ids", None)
        if ids is None or getattr(local, "ids_mark", -1) != local.mark:
            ids = local.ids = deque(maxlen=64)
        ids.append(event_id)
        local.ids_mark = local.mark

    # -- waiting ----------------------------------------------------------------------------------
    def wait_for(
        self,
        type: Union[str, Iterable[str]],  # noqa: A002
        timeout: Optional[float] = None,
        where: Optional[Callable[[Event], bool]] = None,
    ) -> Event:
        """Block until an event of ``type`` (a name or several) arrives and ``where(event)``.

        Race-free for the natural pattern: it also matches events that arrived after this
        thread's last ``send()`` (kept in a small ring of recent events), so
        ``client.session.update(...)`` then ``client.wait_for("session.updated")`` cannot miss a
        fast reply. An ``error`` event answering an event this thread sent since then raises
        :class:`ServerError` (unless you wait for ``"error"`` itself). ``where`` runs on the
        calling thread.

        Thread: any but the dispatcher thread (raises :class:`DeadlockError` there). Ctrl-C
        interrupts it.

        Raises:
            TimeoutError: nothing within ``timeout`` seconds.
            ServerError: the server answered this thread's event with ``error``.
            NotConnectedError: the connection ended for good (closed, or not reconnecting).
        """
        self._router.check_blocking_call("wait_for()")
        self._warn_if_ui_thread("wait_for()")
        if self._state == IDLE:
            raise NotConnectedError("not connected: call connect() first")
        if timeout is not None and not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
        if isinstance(type, str):
            types: Tuple[str, ...] = (type,)
        else:
            types = tuple(type)
            if not types or not all(isinstance(t, str) for t in types):
                raise TypeError("type must be an event type or an iterable of them")
        if where is not None and not callable(where):
            raise TypeError("where must be callable")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        local = self._local
        after = getattr(local, "mark", None)
        errors = None
        if after is None:
            after = self._router.seq
        elif "error" not in types:
            errors = set(getattr(local, "ids", ()) or ())
        return self._wait(types, where, timeout, after, errors)

    def _wait(
        self,
        types: Tuple[str, ...],
        where: Optional[Callable[[Event], bool]],
        timeout: Optional[float],
        after: int,
        error_ids: Optional[set],
    ) -> Event:
        def ended() -> Optional[str]:
            if self._state in (CLOSED, DISCONNECTED):
                return self._not_connected_message()
            return None

        local = self._local
        try:
            seq, event = self._router.wait(types, where, timeout, after, error_ids, ended)
        except ServerError as exc:
            local.mark = getattr(exc, "_seq", local.mark)
            raise
        local.mark = seq
        return event

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until every event received so far has been through its handlers.

        Events that arrive after the call are not waited for. Use it instead of sleeping
        before reading what handlers recorded, or before :meth:`close` to have queued events
        handled rather than dropped.

        Thread: any but the one that runs handlers (the dispatcher thread, or the ``marshal``
        GUI thread): :class:`DeadlockError` there. Ctrl-C interrupts it.

        Returns:
            True when done within ``timeout`` seconds (None: wait for ever); False otherwise.
        """
        self._router.check_blocking_call("flush()")
        ui = getattr(self._marshal, "ui_thread", None) if self._marshal is not None else None
        if self._router.on_handler_thread() or (
                ui is not None and getattr(ui, "ident", ui) == threading.get_ident()):
            from .errors import DeadlockError

            raise DeadlockError("flush() was called on the thread that runs the handlers it"
                                " would wait for")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError("timeout must be a number of seconds >= 0, or None")
        return self._router.flush(timeout)

    def events(
        self,
        timeout: Optional[float] = None,
        types: Optional[Iterable[str]] = None,
        maxsize: int = 10000,
    ) -> EventIterator:
        """An iterator over every event from now on (or only ``types``), with its own queue.

        Create it before the events it should see. Iteration ends when the client closes or
        when no event arrives for ``timeout`` seconds. Thread: iterate on any thread but the
        dispatcher's; ``close()`` it (or use ``with``) when done.
        """
        self._router.check_blocking_call("events()")
        if isinstance(types, str):
            types = (types,)
        selected = tuple(types) if types is not None else None
        if selected is not None and not all(isinstance(t, str) and t for t in selected):
            raise TypeError("types must be event type names")
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError("maxsize must be an integer >= 1")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError("timeout must be a number of seconds >= 0, or None")
        it = EventIterator(self._router, timeout, selected, maxsize)
        with self._router.lock:
            self._router.iterators.append(it)
        return it

    # -- conversations (realtime sessions) ---------------------------------------------------------
    def send_text(self, text: str, respond: bool = True) -> str:
        """Add a user text message to the conversation and (by default) ask for a response.

        Any thread. Returns the ``event_id`` of the ``conversation.item.create``.
        """
        from .conversation import send_text

        return send_text(self, text, respond=respond)

    def ask(self, text: str, timeout: Optional[float] = 60) -> Any:
        """Send ``text`` and block until the model's response is done; returns a
        :class:`realtime_sync.conversation.Response` (``.text``, ``.items``, ``.status``,
        ``.usage``). Thread: not the dispatcher's.

        Raises:
            ServerError: the response failed, or the server answered with ``error``.
            TimeoutError: no ``response.done`` within ``timeout`` seconds.
            ConnectionLostError: the connection dropped while the answer was on its way
                (``.response``: what had arrived); the new session cannot answer it.
        """
        from .conversation import ask

        return ask(self, text, timeout=timeout)

    @property
    def tools(self) -> Any:
        """The :class:`realtime_sync.tools.Tools` registry of this client (function calling)."""
        from .tools import tools_of

        return tools_of(self)

    @property
    def host(self) -> ClientHost:
        """The contract the library's features (audio, transcription, conversation, tools)
        use to talk to this client (see :mod:`realtime_sync._core.host`); for extensions. Any
        thread."""
        return self._host

    def tool(self, fn: Optional[Callable[..., Any]] = None, *, name: Optional[str] = None,
             description: Optional[str] = None, timeout: Optional[float] = None) -> Any:
        """Register a Python function as a tool the model may call (decorator or method).

        The JSON schema comes from the signature, type hints and docstring; the function runs
        off the dispatcher thread and its result is sent back as ``function_call_output``.
        A call running longer than ``timeout`` (default 60 s) is answered with an error.
        """
        if fn is None:
            return lambda f: self.tools.register(f, name=name, description=description,
                                                 timeout=timeout)
        return self.tools.register(fn, name=name, description=description, timeout=timeout)

    # -- stats ------------------------------------------------------------------------------------
    def stats(self) -> Dict[str, int]:
        """Counters (never a secret): events received/dispatched/sent, queue high-water mark,
        bytes sent, audio bytes dropped, reconnects, protocol and handler errors. Any thread."""
        r = self._router
        t = self._transport
        with self._counter_lock:
            out = dict(self._counters)
        out.update(
            events_received=r.received,
            events_dispatched=r.dispatched,
            queue_high_water=r.high_water,
            handler_errors=r.handler_errors,
            marshal_dropped=r.marshal_dropped,
            events_dropped=r.queue_dropped,
            events_dropped_on_close=r.dropped_on_close,
            bytes_sent=t.bytes_sent if t else 0,
            reconnects=t.reconnects if t else 0,
            control_frames_dropped=t.control_frames_dropped if t else 0,
            pending_sends=len(t.send_queue) if t else 0,
        )
        return out

    # -- package-private hooks ---------------------------------------------------------------
    def _emit(self, event: Mapping[str, Any]) -> None:
        """Queue a library-made event (``client.*``) for handlers and waiters. Any thread."""
        ev = event if isinstance(event, Event) else Event(event)
        self._router.deliver(ev, block=False)

    def _remember_session(self, update: Mapping[str, Any]) -> None:
        """Merge ``update`` into the remembered session config (sent at the next
        ``session.created``); used before ``connect()`` by tools. Any thread."""
        with self._state_lock:
            if self._session_config is None:
                self._session_config = {"type": self.intent}
            _deep_merge(self._session_config, update)

    def _adopt(self, resource: Any) -> None:
        """Have ``close()`` call ``resource.stop(timeout)`` first (audio streams, speakers)."""
        with self._state_lock:
            if resource not in self._resources:
                self._resources.append(resource)

    def _disown(self, resource: Any) -> None:
        with self._state_lock:
            try:
                self._resources.remove(resource)
            except ValueError:
                pass

    def _restart(self) -> bool:
        """Open a new session now (a planned rollover); False when not connected."""
        transport = self._transport
        if transport is None or self._state != CONNECTED or self._backoff is None:
            return False
        transport.restart()
        return True

    @property
    def _session_generation(self) -> int:
        """Deprecated private alias of :attr:`session_generation`."""
        return self._sessions_created

    def _count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a :meth:`stats` counter (any thread)."""
        with self._counter_lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def _emit_handler_error(self, event: Event) -> None:
        if self._router.on_handler_thread():
            self._router.run_inline(event)
        else:
            self._router.deliver(event, block=False)

    def _warn_if_ui_thread(self, what: str) -> None:
        marshal = self._marshal
        if marshal is None or self._ui_warned:
            return
        ui = getattr(marshal, "ui_thread", None)
        ident = getattr(ui, "ident", ui)
        if ident is not None and ident == threading.get_ident():
            self._ui_warned = True
            logger.warning(
                "%s blocks the GUI thread; the window freezes until it returns. Call it before"
                " the main loop starts, or from a worker thread, and react to events in handlers.",
                what,
            )

    # -- network-thread callbacks -------------------------------------------------------------
    def _on_open(self) -> None:
        logger.debug("upgraded: %s", self.url)

    def _on_frame(self, data: Union[str, bytes], binary: bool = False) -> None:
        """One received frame (network thread): its secrets masked, then parsed and routed."""
        self._on_redacted_frame(_secrets.redact_frame(data), binary)

    def _on_redacted_frame(self, data: Union[str, bytes], binary: bool = False) -> None:
        """A frame in which the transport already masked every registered secret (a key the
        server echoes never reaches anyone): parse and route it (network thread)."""
        if binary:
            self._protocol_error("binary frame (the protocol sends JSON text frames)", data)
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
        event = Event(parsed)
        if type_ == "session.created":
            self._on_session_created(event)
            return
        if type_ in _EXCHANGE_DONE:
            transport = self._transport
            if transport is not None:
                transport.mark_exchanged()
        if type_ == "error":
            self._last_error_event = event
        elif type_ == "session.closed":
            self._session_ended = True
        elif type_ == "session.updated":
            with self._state_lock:
                if self._pending_updates:
                    _, update, _ = self._pending_updates.popleft()
                    if self._session_config is None:
                        self._session_config = {}
                    _deep_merge(self._session_config, update)
        if type_ == "error":
            self._forget_failed_update(event)
        self._router.deliver(event)

    def _forget_failed_update(self, event: Event) -> None:
        err = event.get("error")
        if not isinstance(err, Mapping):
            return
        event_id = err.get("event_id")
        if not event_id:
            return
        with self._state_lock:
            for i, (eid, _, _) in enumerate(self._pending_updates):
                if eid == event_id:
                    del self._pending_updates[i]
                    break

    def _protocol_error(self, problem: str, data: Union[str, bytes]) -> None:
        sample = data[:200] if isinstance(data, (str, bytes, bytearray)) else repr(data)[:200]
        if isinstance(sample, (bytes, bytearray)):
            sample = sample.decode("utf-8", "replace")
        sample = _secrets.redact(sample)
        problem = _secrets.redact(problem)
        logger.warning("protocol error from server: %s; frame starts %r", problem, sample)
        self._report_protocol_error(problem, sample, len(data))

    def _on_frame_refused(self, problem: str, length: int) -> None:
        """The transport refused a frame (network thread; it logged it already): one
        ``client.protocol_error``."""
        self._report_protocol_error(problem, "", length)

    def _report_protocol_error(self, problem: str, sample: str, length: int) -> None:
        """Count one protocol error and deliver its ``client.protocol_error`` event."""
        self._count("protocol_errors")
        self._router.deliver(Event(
            type=LibraryEvents.PROTOCOL_ERROR, message=problem, frame=sample,
            frame_length=length,
        ))

    def _on_session_created(self, event: Event) -> None:
        """A new session (network thread): replay the config, re-send session updates the old
        connection never answered, flush what was queued, then let everyone send.

        The send lock is held throughout, so no other send can overtake the replay; the state
        lock only briefly (a stuck send must never block ``close()`` or ``connect()``)."""
        transport = self._transport
        assert transport is not None
        transport.mark_established()
        flushed = 0
        with transport.send_lock:
            with self._state_lock:
                if self._state == CLOSED:
                    self._router.deliver(event)
                    return
                self._sessions_created += 1
                first = self._sessions_created == 1
                session = event.get("session")
                sid = session.get("id") if isinstance(session, Mapping) else None
                self._session_id = sid if isinstance(sid, str) else None
                queued_ids = transport.send_queue.event_ids()
                unanswered = [u for u in self._pending_updates if u[0] not in queued_ids]
                queued_updates = [u for u in self._pending_updates if u[0] in queued_ids]
                self._pending_updates.clear()
                outgoing: List[Tuple[bool, Any]] = []  # (is a queued send, payload)
                update_id: Optional[str] = None
                if self._session_config is not None:
                    update_id = new_event_id()
                    config = copy.deepcopy(self._session_config)
                    data = _json.dumps({"type": "session.update", "event_id": update_id,
                                        "session": config})
                    self._pending_updates.append((update_id, config, data))
                    outgoing.append((False, data))
                for update in unanswered:  # in order, each on its own: a refusal stays its own
                    self._pending_updates.append(update)
                    outgoing.append((False, update[2]))
                self._pending_updates.extend(queued_updates)
                outgoing.extend((True, item) for item in transport.send_queue.take())
                self._state = CONNECTED
                self._disconnect_reason = None
                if first:
                    self._initial_update_id = update_id
                self._state_changed.notify_all()
            for index, (queued, payload) in enumerate(outgoing):
                try:
                    transport.send_locked(payload[2] if queued else payload)
                except NotConnectedError:
                    # lost again: queued events wait for the next session, in order
                    rest = [p for q, p in outgoing[index:] if q]
                    with self._state_lock:
                        transport.send_queue.put_back(rest)
                    break
                flushed += int(queued)
        self._router.deliver(event)
        with self._router.lock:
            seq = self._router.seq
        with self._state_lock:
            self._session_created_seq = seq
        if flushed:
            logger.info("sent %d events queued while reconnecting", flushed)
        self._router.deliver(Event(
            type=LibraryEvents.CONNECTED if first else LibraryEvents.RECONNECTED,
            url=self.url, session_id=self._session_id, generation=self._sessions_created,
        ))

    def _on_closed(self, info: Closed) -> bool:
        """After one connection (or attempt) ended (network thread). Returns whether to
        reconnect."""
        err = self._last_error_event
        self._last_error_event = None
        code = info.code
        cause = info.final_cause()
        status = info.http_status
        err_obj = err.get("error") if err is not None else None
        err_code = err_obj.get("code") if isinstance(err_obj, Mapping) else None
        err_msg = err_obj.get("message") if isinstance(err_obj, Mapping) else None
        reason = info.describe()  # already redacted
        if status is not None:
            reason = _http_reason(status, info.retry_after)
        if err_msg and not info.by_client and code in FATAL_CODES | {1001, None}:
            reason = _secrets.redact(str(err_msg))
        auth = code == 3000 or status in AUTH_HTTP_STATUSES or bool(info.extra.get("auth"))
        fatal = code in FATAL_CODES or bool(info.extra.get("fatal")) or auth
        exception: Optional[BaseException] = None
        if auth:
            exception = AuthenticationError(f"authentication failed: {reason}", code=code,
                                            reason=reason, status=status)
        with self._state_lock:
            self._disconnect_reason = reason
            was = self._state
            generation = self._sessions_created
            if was == CONNECTING and not info.established:
                # the first connection never got a session: connect() fails, no retry
                if exception is not None:
                    self._connect_error = exception
                elif code == 4000:
                    self._connect_error = ConfigurationError(
                        f"the server refused the connection: {reason}")
                elif isinstance(info.error, ConfigurationError):
                    self._connect_error = info.error
                else:
                    hint = ""
                    if status in TRANSIENT_HTTP_STATUSES:
                        hint = " (a temporary condition: try connect() again later)"
                    self._connect_error = ConnectError(
                        f"could not connect to {self.url}: {reason}{hint}", code=code,
                        reason=reason, status=status, retry_after=info.retry_after)
                self._state = DISCONNECTED
                self._state_changed.notify_all()
                return False
            ended = self._session_ended
            retryable = (
                cause in _RETRY_CAUSES
                or (cause is CloseCause.SERVER_CLOSED
                    and (code in RECONNECT_CODES or err_code == "session_expired"))
                or (cause is CloseCause.HANDSHAKE_REFUSED and status in TRANSIENT_HTTP_STATUSES)
            )
            reconnect = (
                not info.by_client
                and not ended
                and not fatal
                and self._backoff is not None
                and was != CLOSED
                and retryable
            )
            if was != CLOSED:
                self._state = RECONNECTING if reconnect else DISCONNECTED
            self._state_changed.notify_all()
        if ((was in (CONNECTED, RECONNECTING) or info.by_client)
                and (info.established or was == CONNECTED or info.by_client)) or (
                was == RECONNECTING and not reconnect):
            self._router.deliver(Event(
                type=LibraryEvents.DISCONNECTED, reason=reason, code=code,
                will_reconnect=reconnect, error_code=err_code, cause=cause,
                http_status=status, generation=generation, exception=exception,
            ), block=not info.by_client)
        self._router.wake_waiters()
        if not reconnect and was != CLOSED and not info.by_client and not ended:
            logger.warning("disconnected: %s", reason)
        return reconnect

    def _on_reconnecting(self, attempt: int, delay: float, info: Closed) -> None:
        cause = info.final_cause()
        logger.info("reconnecting in %.2f s (attempt %d, %s)", delay, attempt, cause.value)
        self._router.deliver(Event(
            type=LibraryEvents.RECONNECTING, attempt=attempt, delay=delay, cause=cause,
            http_status=info.http_status, retry_after=info.retry_after,
            reason=self._disconnect_reason,
        ))

    def _on_stopped(self, info: Closed) -> None:
        with self._state_lock:
            if self._state not in (CLOSED, DISCONNECTED):
                if self._state == CONNECTING and self._connect_error is None:
                    self._connect_error = ConnectError(
                        f"could not connect to {self.url}: {info.describe()}")
                self._state = DISCONNECTED
                if info.extra.get("gave_up"):
                    self._disconnect_reason = "gave up reconnecting"
            self._state_changed.notify_all()
        self._router.wake_waiters()


# -- the feature contract (realtime_sync._core.host.ClientHost) ----------------------------------
_T = TypeVar("_T")


class _Host:
    """The client's side of :class:`realtime_sync._core.host.ClientHost`: what features may use.

    Lives here because it reads the client's own state; features only see the protocol."""

    def __init__(self, client: RealtimeClient) -> None:
        self._client = client
        self._features: Dict[str, Any] = {}
        self._features_lock = threading.Lock()
        self._reported_lock = threading.Lock()
        self._reported: Deque[Mapping[str, Any]] = deque(maxlen=64)  # events already reported

    def emit(self, event: Mapping[str, Any]) -> None:
        self._client._emit(event)

    def count(self, name: str, n: int = 1) -> None:
        self._client._count(name, n)

    def adopt(self, resource: Any) -> None:
        self._client._adopt(resource)

    def disown(self, resource: Any) -> None:
        self._client._disown(resource)

    @property
    def session_ended(self) -> bool:
        return self._client._session_ended

    @property
    def session_number(self) -> int:
        return self._client.session_generation

    @property
    def marshal(self) -> Optional[Marshal]:
        return self._client._marshal

    def protocol_error(self, problem: str, event: Mapping[str, Any]) -> None:
        with self._reported_lock:
            if any(seen is event for seen in self._reported):
                return
            self._reported.append(event)
        data = _json.dumps(dict(event)) if isinstance(event, Mapping) else repr(event)
        self._client._protocol_error(f"{event.get('type')}: {problem}", data)

    def send_in_session(self, event: Mapping[str, Any], session_number: int) -> str:
        client = self._client
        type_, event_id, _, data = client._encode(event)  # the checks send() makes
        transport = client._transport
        if transport is not None:
            with transport.send_lock:  # a new session starts under this lock: no race
                if client._state == CONNECTED and client._sessions_created == session_number:
                    client._mark_sent(event_id)
                    try:
                        transport.send_locked(data)
                    except NotConnectedError as exc:
                        raise ConnectionLostError(
                            f"the session ended; {type_} was not sent") from exc
                    self.count("events_sent")
                    return event_id
        raise ConnectionLostError(
            f"session {session_number} has ended; {type_} was not sent into "
            "another session")

    def send_prebuilt(self, type_: str, event_id: str, frame: bytes) -> None:
        self._client._send_data(type_, event_id, frame, queue_ok=False)

    def restart(self) -> bool:
        return self._client._restart()

    def check_blocking_call(self, what: str) -> None:
        self._client._router.check_blocking_call(what)

    def remember_session(self, update: Mapping[str, Any]) -> None:
        self._client._remember_session(update)

    def not_connected_message(self) -> str:
        return self._client._not_connected_message()

    def feature(self, key: str, factory: Callable[[], _T]) -> _T:
        with self._features_lock:
            value = self._features.get(key)
            if value is None:
                value = self._features[key] = factory()
            return value  # type: ignore[no-any-return]

    def peek_feature(self, key: str) -> Any:
        with self._features_lock:
            return self._features.get(key)


def _check_host(client: RealtimeClient) -> ClientHost:
    return _Host(client)  # mypy: _Host implements the whole ClientHost protocol

"""RealtimeClient: a facade over the connection state machine, the session-config replayer,
the sender, the transport and the router.

* :mod:`realtime_sync._core.connection`: the state (idle, connecting, connected, ...) and its
  transitions; :mod:`realtime_sync._core.closing` decides what follows a closed connection.
* :mod:`realtime_sync._core.replay`: the session config re-sent after every reconnect.
* :mod:`realtime_sync._core.sender`: checks, serialises and writes client events.
* :mod:`realtime_sync._core.transport` (the network thread) and
  :mod:`realtime_sync._core.dispatch` (handlers, waits) do the I/O and the threads.
"""

from __future__ import annotations

import atexit
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
    Mapping,
    Optional,
    Set,
    Tuple,
    TypeVar,
    Union,
)

from ._core import credentials as _secrets
from ._core import json_codec as _json
from ._core.backoff import Backoff
from ._core.closing import (
    CLOSED,
    CONNECTED,
    DISCONNECTED,
    IDLE,
)
from ._core.connection import Connection
from ._core.dispatch import EventIterator, Handler, Registry, Router
from ._core.endpoint import Endpoint, HeaderSource, KeySource
from ._core.host import ClientHost, Marshal, marshal_thread_ident
from ._core.options import ConnectionOptions, Keepalive, Proxy, reconnect_policy
from ._core.receiver import Receiver
from ._core.replay import SessionReplayer
from ._core.resources import (
    ConversationResource,
    InputAudioBufferResource,
    OutputAudioBufferResource,
    ResponseResource,
    SessionResource,
)
from ._core.sender import Counters, Sender, encode
from ._core.transport import Transport
from ._core.wait import Deadline
from ._core.wire import MAX_FRAME_BYTES
from .errors import (
    ConfigurationError,
    DeadlockError,
    NotConnectedError,
    ServerError,
)
from .events import Event
from .models import warn_if_retired_options

__all__ = ["RealtimeClient"]

logger = logging.getLogger(__name__)

_live_clients: weakref.WeakSet[RealtimeClient] = weakref.WeakSet()

def _close_all_at_exit() -> None:
    for client in list(_live_clients):
        try:
            client.close(timeout=0.5)  # Ctrl-C must end the process within a second
        except Exception:  # noqa: BLE001 - interpreter is exiting
            pass


atexit.register(_close_all_at_exit)


def _options(keepalive: Optional[Keepalive], ping_interval: Optional[float],
             ping_timeout: Optional[float], proxy: Optional[Proxy],
             flat_proxy: Tuple[Any, ...], **rest: Any) -> ConnectionOptions:
    """The grouped options from the constructor's keywords (grouped or flat, not both)."""
    if keepalive is None:
        keepalive = Keepalive(ping_interval, ping_timeout)
    elif ping_interval != 20.0 or ping_timeout is not None:
        raise TypeError("give keepalive= or ping_interval=/ping_timeout=, not both")
    if proxy is None:
        proxy = Proxy(*flat_proxy)
    elif any(value is not None for value in flat_proxy):
        raise TypeError("give proxy= or http_proxy_host=/port/auth/proxy_type=, not both")
    return ConnectionOptions(keepalive=keepalive, proxy=proxy, **rest)


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
        keepalive: ``ping_interval`` and ``ping_timeout`` as one :class:`Keepalive` (give one
            form or the other).
        proxy: the ``http_proxy_*``/``proxy_type`` options as one :class:`Proxy`.
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
        keepalive: Optional[Keepalive] = None,
        proxy: Optional[Proxy] = None,
    ) -> None:
        if session is not None and not isinstance(session, Mapping):
            raise TypeError("session must be a dict (the session object of session.update)")
        warn_if_retired_options(session)
        if marshal is not None and not callable(marshal):
            raise TypeError("marshal must be callable: marshal(fn) runs fn on another thread")
        self._options = _options(
            keepalive, ping_interval, ping_timeout, proxy,
            (http_proxy_host, http_proxy_port, http_proxy_auth, proxy_type),
            backoff=reconnect_policy(reconnect), sslopt=sslopt, open_timeout=open_timeout,
            max_frame_size=max_frame_size)
        if not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1, not {queue_size!r}")
        self._endpoint = Endpoint(
            url=url, api_key=api_key, model=model, intent=intent, headers=headers,
            azure_endpoint=azure_endpoint, azure_deployment=azure_deployment,
            allow_insecure=allow_insecure, call_id=call_id,
        )
        self._registry = Registry()
        self._router = Router(self._registry, emit_handler_error=self._emit_handler_error,
                              marshal=marshal, queue_size=queue_size, strict=strict)
        self._marshal = marshal
        self._ui_warned = False
        self._conn = Connection()
        self._replayer = SessionReplayer(session)
        self._counters = Counters()
        self._sender = Sender(self._conn, self._router, self._replayer, self._counters,
                              reconnects=self._options.backoff is not None)
        self._transport: Optional[Transport] = None
        self._receiver = Receiver(conn=self._conn, replayer=self._replayer, router=self._router,
                                  counters=self._counters, endpoint=self._endpoint,
                                  reconnects=self._options.backoff is not None)
        self._resources: list = []
        self._host = _Host(self)
        self.session = SessionResource(self)
        self.input_audio_buffer = InputAudioBufferResource(self, self._sender)
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
        return self._conn.state == CONNECTED

    @property
    def state(self) -> str:
        """One of idle, connecting, connected, reconnecting, disconnected, closed."""
        return self._conn.state

    @property
    def session_generation(self) -> int:
        """How many sessions this client has had: 0 before the first ``session.created``, then
        one more on every reconnect. Events and replies belong to the generation current when
        they arrived; compare it before and after a blocking step to tell whether the session
        changed in between. Any thread."""
        return self._conn.sessions

    @property
    def session_id(self) -> Optional[str]:
        """The server's id of the current session (``session.created``'s ``session.id``), kept
        after a disconnect until the next session starts. Any thread."""
        return self._conn.session_id

    @property
    def session_config(self) -> Optional[Dict[str, Any]]:
        """A copy of the remembered session config (what a reconnect re-sends)."""
        with self._conn.lock:
            return self._replayer.snapshot()

    def __repr__(self) -> str:
        return (
            f"<RealtimeClient url={self.url!r} state={self._conn.state} "
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
        with self._conn.lock:
            if not self._conn.start_connecting(check=self._endpoint.check):  # before any I/O
                return self
            _secrets.protect_loggers()
            self._sender.set_mark(self._router.seq)  # wait_for on this thread sees what follows
            _live_clients.add(self)
            self._transport = self._sender.transport = self._new_transport()
            self._router.start()
            self._transport.start()
        deadline = Deadline(timeout)
        try:
            update_id, after = self._conn.wait_connected(deadline, self.url, timeout)
            if update_id is not None:
                self._await_config(update_id, after, deadline)
            self._router.raise_strict()
        except BaseException:
            # bounded: connect(timeout=T) returns within T plus this budget; the threads,
            # told to stop, end on their own shortly after (a later close() joins them)
            self._close(timeout=0.15, quiet=True)
            raise
        return self

    def _new_transport(self) -> Transport:
        receiver = self._receiver
        transport = Transport(
            resolve=self._endpoint.resolve,
            on_open=receiver.on_open,
            on_frame=receiver.on_redacted_frame,
            on_closed=receiver.on_closed,
            on_reconnecting=receiver.on_reconnecting,
            on_stopped=receiver.on_stopped,
            on_protocol_error=receiver.on_frame_refused,
            **self._options.transport_kwargs(),
        )
        receiver.attach(transport)
        return transport

    def _await_config(self, update_id: str, after: int, deadline: Deadline) -> None:
        """Wait for the ``session.updated`` answering the initial config (``connect()``)."""
        try:
            self._wait(("session.updated",), None, deadline.remaining(), after, {update_id})
        except ServerError as exc:
            raise ConfigurationError(
                f"the server rejected the session config: {exc.message}"
                + (f" (param {exc.param})" if exc.param else "")
            ) from exc

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
        conn = self._conn
        with conn.lock:
            if conn.close_result is not None and conn.state == CLOSED:
                if not conn.close_result:  # a thread outlived the last close: join again
                    conn.close_result = self._join_threads(timeout)
                return conn.close_result
            was = conn.state
            conn.set(CLOSED)
            resources, self._resources = self._resources, []
            transport = self._transport
            pending = transport.send_queue.discard() if transport is not None else 0
        if pending:
            logger.warning("close(): %d queued events were never sent (not connected)", pending)
        deadline = time.monotonic() + max(0.0, timeout)
        ok = self._stop_resources(resources, deadline)
        self._router.shut()  # no handler starts from now on; producers stop waiting
        if transport is not None:
            ok = transport.close(max(0.0, deadline - time.monotonic())) and ok
        if was == IDLE and transport is None:
            self._router.finish()
            conn.close_result = True
            return True
        ok = self._router.stop(max(0.0, deadline - time.monotonic())) and ok
        self._router.finish()
        _live_clients.discard(self)
        if not ok and not quiet:
            logger.warning("close(): a realtime-sync thread did not end within %.1f s", timeout)
        conn.close_result = ok
        return ok

    @staticmethod
    def _stop_resources(resources: Iterable[Any], deadline: float) -> bool:
        ok = True
        for resource in resources:
            try:
                ok = bool(resource.stop(max(0.0, deadline - time.monotonic()) / 2)) and ok
            except Exception:  # noqa: BLE001 - closing must go on
                logger.exception("stopping %r failed", resource)
                ok = False
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
        if self._conn.state == IDLE:
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
        encoded = encode(event)
        type_, _, event, _ = encoded
        if type_ == "response.create":
            warn_if_retired_options(event.get("response"))
        elif type_ == "session.update" and isinstance(event.get("session"), Mapping):
            warn_if_retired_options(event.get("session"))
        return self._sender.send(encoded)

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
        if self._conn.state == IDLE:
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
        after = self._sender.mark()
        errors = None
        if after is None:
            after = self._router.seq
        elif "error" not in types:
            errors = self._sender.sent_ids()
        return self._wait(types, where, timeout, after, errors)

    def _wait(self, types: Tuple[str, ...], where: Optional[Callable[[Event], bool]],
              timeout: Optional[float], after: int, error_ids: Optional[Set[str]]) -> Event:
        conn = self._conn

        def ended() -> Optional[str]:
            if conn.state in (CLOSED, DISCONNECTED):
                return conn.not_connected_message()
            return None

        _, event = self._router.wait(types, where, timeout, after, error_ids, ended,
                                     seen=self._sender.set_mark)
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
        if self._router.on_handler_thread() or self._on_ui_thread():
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
        out = self._counters.snapshot()
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
        with self._conn.lock:
            self._replayer.remember(update, self.intent)

    def _adopt(self, resource: Any) -> None:
        """Have ``close()`` call ``resource.stop(timeout)`` first (audio streams, speakers)."""
        with self._conn.lock:
            if resource not in self._resources:
                self._resources.append(resource)

    def _disown(self, resource: Any) -> None:
        with self._conn.lock:
            try:
                self._resources.remove(resource)
            except ValueError:
                pass

    def _restart(self) -> bool:
        """Open a new session now (a planned rollover); False when not connected."""
        transport = self._transport
        if (transport is None or self._conn.state != CONNECTED
                or self._options.backoff is None):
            return False
        transport.restart()
        return True

    @property
    def _session_generation(self) -> int:
        """Deprecated private alias of :attr:`session_generation`."""
        return self._conn.sessions

    def _count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a :meth:`stats` counter (any thread)."""
        self._counters.count(name, n)

    def _emit_handler_error(self, event: Event) -> None:
        if self._router.on_handler_thread():
            self._router.run_inline(event)
        else:
            self._router.deliver(event, block=False)

    def _on_frame(self, data: Union[str, bytes], binary: bool = False) -> None:
        """One received frame as the network thread would hand it over (secrets masked here)."""
        self._receiver.on_frame(data, binary)

    def _on_ui_thread(self) -> bool:
        """True on the thread the ``marshal`` runs handlers on (when it says which)."""
        ident = marshal_thread_ident(self._marshal)  # read now: the thread may start later
        return ident is not None and ident == threading.get_ident()

    def _warn_if_ui_thread(self, what: str) -> None:
        if self._ui_warned or not self._on_ui_thread():
            return
        self._ui_warned = True
        logger.warning(
            "%s blocks the GUI thread; the window freezes until it returns. Call it before"
            " the main loop starts, or from a worker thread, and react to events in handlers.",
            what,
        )

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
        self._client._counters.count(name, n)

    def adopt(self, resource: Any) -> None:
        self._client._adopt(resource)

    def disown(self, resource: Any) -> None:
        self._client._disown(resource)

    @property
    def session_ended(self) -> bool:
        return self._client._conn.session_ended

    @property
    def session_number(self) -> int:
        return self._client._conn.sessions

    @property
    def marshal(self) -> Optional[Marshal]:
        return self._client._marshal

    def protocol_error(self, problem: str, event: Mapping[str, Any]) -> None:
        with self._reported_lock:
            if any(seen is event for seen in self._reported):
                return
            self._reported.append(event)
        data = _json.dumps(dict(event)) if isinstance(event, Mapping) else repr(event)
        self._client._receiver.protocol_error(f"{event.get('type')}: {problem}", data)

    def send_in_session(self, event: Mapping[str, Any], session_number: int) -> str:
        return self._client._sender.send_in_session(event, session_number)

    def send_prebuilt(self, type_: str, event_id: str, frame: bytes) -> None:
        self._client._sender.send_data(type_, event_id, frame, queue_ok=False)

    def restart(self) -> bool:
        return self._client._restart()

    def check_blocking_call(self, what: str) -> None:
        self._client._router.check_blocking_call(what)

    def remember_session(self, update: Mapping[str, Any]) -> None:
        self._client._remember_session(update)

    def not_connected_message(self) -> str:
        return self._client._conn.not_connected_message()

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

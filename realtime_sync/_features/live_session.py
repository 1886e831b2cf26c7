"""What a live object (a ``Transcriber``, a ``Translator``, a ``LiveSession``) does the same
way around its connection.

* :class:`LiveParts`, for any connection with ``on(type, handler)``: the state lock and its
  condition, the marshal the callbacks go through, the raw-event handlers registered before
  or after ``start()``, the audio streams the object owns (and the sink they feed through),
  and the closed flag.
* :class:`SessionLink`, for a :class:`~realtime_sync.RealtimeClient` session: adds
  connecting, the session number the object works in, sending the audio of an
  :class:`~realtime_sync._features.ring.AudioRing` to the current session, the session's
  expiry and rollover, and drop reports.

A live object composes one of them (and usually one ring); its own event handlers keep only
what is its own (segments, cues, ...).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generic,
    Iterable,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from .._core.wait import Deadline, wait_until
from ..errors import NotConnectedError
from ..events import Event, LibraryEvents
from .feed import FeedSink
from .ring import AudioRing

if TYPE_CHECKING:
    from ..client import RealtimeClient

__all__ = ["LiveParts", "SessionLink", "check_options"]

Handler = Callable[[Event], Any]
C = TypeVar("C")


def check_options(callbacks: Mapping[str, Any], marshal: Any, rollover_margin: Any,
                  max_buffer_s: Any) -> None:
    """A live object's constructor checks: each of ``callbacks`` (by parameter name) and
    ``marshal`` is None or callable (else TypeError); ``rollover_margin`` and
    ``max_buffer_s`` are numbers of seconds >= 0 (else ValueError)."""
    for name, cb in callbacks.items():
        if cb is not None and not callable(cb):
            raise TypeError(f"{name} must be callable")
    if marshal is not None and not callable(marshal):
        raise TypeError("marshal must be callable")
    for name, value in (("rollover_margin", rollover_margin), ("max_buffer_s", max_buffer_s)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")


class LiveParts(Generic[C]):
    """A live object's lock, marshal, raw-event handlers, streams and connection (any
    connection ``C`` with ``on(type, handler)``).

    Args:
        what: the object in messages (``"transcriber"``, ``"translator"``, ...).
        marshal: runs the object's callbacks and the user's handlers (None: directly).
        log: where the object logs.
    """

    def __init__(self, what: str, marshal: Optional[Callable[[Callable[[], Any]], Any]],
                 log: logging.Logger) -> None:
        self.what = what
        self.marshal = marshal
        self.log = log
        self.client: Optional[C] = None
        """The connection, once started (None before, and after a failed start)."""
        self.lock = threading.RLock()
        """The object's state lock (event handlers, feeders and readers)."""
        self.changed = threading.Condition(self.lock)
        """Notified whenever the object's state changes."""
        self.streams: List[Any] = []
        """Audio streams the object owns (stopped by :meth:`stop_streams`)."""
        self.closed = False
        """Set by the object's ``close()``."""
        self.handlers: List[Tuple[str, Handler]] = []
        """The user's raw-event handlers (through :attr:`marshal`), for every connection."""

    def require(self) -> C:
        """The connection; NotConnectedError before ``start()``."""
        client = self.client
        if client is None:
            raise NotConnectedError(
                f"the {self.what} is not started: call start() or use `with`")
        return client

    def on(self, type_: str, handler: Handler) -> Handler:
        """The object's ``on()``: keep ``handler`` (through :attr:`marshal`) for every
        connection it starts, and register it on the current one. Any thread."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        wrapped = handler
        if self.marshal is not None:
            marshal = self.marshal

            def wrapped(event: Event) -> None:
                marshal(lambda: handler(event))

        self.handlers.append((type_, wrapped))
        client: Any = self.client
        if client is not None:
            client.on(type_, wrapped)
        return handler

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` through :attr:`marshal`, or here (no lock held)."""
        if self.marshal is not None:
            self.marshal(lambda: fn(*args))
        else:
            fn(*args)

    def wake(self, event: Optional[Event] = None) -> None:
        """Notify every waiter (e.g. on ``client.disconnected``)."""
        with self.changed:
            self.changed.notify_all()

    # -- audio streams ------------------------------------------------------------------------
    def sink(self, feed: Callable[[bytes], None]) -> FeedSink:
        """The audio host an :func:`realtime_sync.audio.stream` feeds through ``feed``;
        its events go to the connection's ``emit()`` (counters are the subclass's)."""
        return FeedSink(feed, self.streams, self._emit, self._count)

    def _emit(self, event: Mapping[str, Any]) -> None:
        client: Any = self.client
        if client is not None:
            client.emit(event)

    def _count(self, name: str, n: int) -> None:
        """No counters on a plain connection."""

    def listen(self, feed: Callable[[bytes], None], device: Union[int, str, None],
               chunk_ms: int, **options: Any) -> Any:
        """Stream a microphone into ``feed`` on the ``realtime-sync-audio`` thread; returns
        the :class:`realtime_sync.audio.AudioStream` (owned: stopped by
        :meth:`stop_streams`). ``options`` go to :func:`realtime_sync.audio.stream`.

        Raises:
            AudioError: no usable input device (the message says how to list devices).
        """
        from ..audio import Microphone, stream

        mic = Microphone(device=device, chunk_ms=chunk_ms)
        return stream(self.sink(feed), mic, chunk_ms=chunk_ms, **options)

    def stream(self, feed: Callable[[bytes], None], source: Any, chunk_ms: int,
               **options: Any) -> Any:
        """Stream any :class:`realtime_sync.audio.AudioSource` into ``feed`` (as
        :meth:`listen`)."""
        from ..audio import stream

        return stream(self.sink(feed), source, chunk_ms=chunk_ms, **options)

    def stop_streams(self, timeout: float) -> None:
        """Stop every audio stream the object owns (a copy is walked); a failure is logged,
        never raised."""
        for s in list(self.streams):
            try:
                s.stop(timeout)
            except Exception:  # noqa: BLE001
                self.log.exception("stopping the audio stream failed")


class SessionLink(LiveParts["RealtimeClient"]):
    """A live object's :class:`~realtime_sync.RealtimeClient` session: :class:`LiveParts`
    plus connecting, the session number, sending, expiry and rollover.

    Args:
        what, marshal, log: as :class:`LiveParts`.
        rollover_margin: seconds before ``expires_at`` at which the object moves to a new
            session at its next quiet moment.
    """

    def __init__(self, what: str, marshal: Optional[Callable[[Callable[[], Any]], Any]],
                 rollover_margin: float, log: logging.Logger) -> None:
        super().__init__(what, marshal, log)
        self.rollover_margin = rollover_margin
        self.send_lock = threading.Lock()
        """Held while sending, so that appends and commits keep their order."""
        self.generation = -1
        """The session number (``client.host.session_number``) the object works in."""
        self.expires_at: Optional[float] = None
        self.rollover_due: Optional[float] = None

    def open(self, client: RealtimeClient, handlers: Iterable[Tuple[str, Handler]],
             timeout: Optional[float], then: Optional[Callable[[], None]] = None) -> None:
        """Register the user's handlers, then the object's, connect, and wait (up to
        ``timeout``, at least 1 s; 10 s without one) until the object's handler of
        ``client.connected`` has switched :attr:`generation` to the session, so that the
        first ``feed()`` sends at once. ``then()`` runs last.

        On any failure (``then()`` included) the client is closed and the link is left
        unstarted (:attr:`client` None); the exception propagates.
        """
        for type_, handler in self.handlers:
            client.on(type_, handler)
        for type_, handler in handlers:
            client.on(type_, handler)
        self.client = client
        try:
            client.connect(timeout=timeout)
            deadline = Deadline(10.0 if timeout is None else max(timeout, 1.0))
            with self.changed:
                wait_until(self.changed,
                           lambda: (self.generation == client.host.session_number
                                    or not client.connected),
                           deadline, longest=0.05)
            if then is not None:
                then()
        except BaseException:
            self.client = None
            client.close()
            raise

    def new_session(self) -> Optional[int]:
        """``client.connected`` / ``client.reconnected`` (dispatcher thread, lock held): the
        client's session number when it differs from :attr:`generation` (the object then
        switches to it and sets :attr:`generation`), else None."""
        client = self.client
        if client is None:
            return None
        gen = client.host.session_number
        return gen if gen != self.generation else None

    def sending(self, client: RealtimeClient) -> Optional[int]:
        """The session number audio may be sent in now (lock held): None while disconnected,
        or while the dispatcher has not switched the object to a new session yet (it first
        handles every event of the old one, then ``client.(re)connected``)."""
        if not client.connected:
            return None
        gen = client.host.session_number
        return gen if gen == self.generation else None

    def pump(self, client: RealtimeClient, ring: AudioRing,
             send: Callable[[RealtimeClient, bytes], Any], most: int,
             least: Callable[[], int] = lambda: 1) -> None:
        """Send what the current session has not had of ``ring``, ``most`` bytes per
        ``send(client, chunk)`` at most, while at least ``least()`` bytes wait. Sending
        happens outside the state lock (handlers never wait for the network), under
        :attr:`send_lock`. Any thread but the dispatcher."""
        with self.send_lock:
            while True:
                with self.lock:
                    gen = self.sending(client)
                    if gen is None:
                        return
                    available = ring.unsent
                    if available <= 0 or available < least():
                        return
                    pos = ring.sent
                    chunk = ring.read(pos, min(available, most))
                try:
                    send(client, chunk)
                except NotConnectedError:
                    return
                with self.lock:
                    if self.generation == gen:
                        ring.advance(pos, len(chunk))

    # -- expiry and rollover -------------------------------------------------------------------
    def note_expiry(self, event: Event) -> None:
        """``session.created`` (dispatcher thread): when the session expires, and when the
        object rolls over to a new one (:attr:`rollover_margin` seconds before)."""
        session = event.get("session") or {}
        expires = session.get("expires_at") if isinstance(session, Mapping) else None
        with self.lock:
            if isinstance(expires, (int, float)) and expires > 0:
                self.expires_at = float(expires)
                self.rollover_due = float(expires) - self.rollover_margin
            else:
                self.expires_at = self.rollover_due = None

    def maybe_rollover(self, client: RealtimeClient, quiet: Callable[[], bool],
                       message: str) -> None:
        """Once the rollover is due, move ``client`` to a new session when the object is
        ``quiet()`` (called with the lock held) or its session expires within 5 s;
        ``message`` is logged (info) first. Any thread but the dispatcher."""
        due = self.rollover_due
        if due is None or time.time() < due:
            return
        with self.lock:
            quiet_now = quiet()
            hard = self.expires_at is not None and time.time() >= self.expires_at - 5
            if not (quiet_now or hard):
                return
            self.rollover_due = None
        self.log.info(message)
        client.host.restart()

    # -- drops and the stream's events ---------------------------------------------------------
    def report_drop(self, nbytes: int, bytes_per_ms: int) -> None:
        """Audio that will never be used (lock held): ``stats()["audio_dropped"]`` and one
        ``client.audio_dropped`` event (``source`` is :attr:`what`)."""
        client = self.client
        if client is not None:
            client.host.count("audio_dropped", nbytes)
            client.host.emit({"type": LibraryEvents.AUDIO_DROPPED, "bytes": nbytes,
                              "ms": nbytes // bytes_per_ms, "source": self.what})

    def _emit(self, event: Mapping[str, Any]) -> None:
        client = self.client
        if client is not None:
            client.host.emit(event)

    def _count(self, name: str, n: int) -> None:
        client = self.client
        if client is not None:
            client.host.count(name, n)

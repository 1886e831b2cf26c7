"""Handler registry, event taps (waiters and iterators) and the ordered dispatcher thread.

The network thread calls :meth:`Router.deliver` for every event. Under one lock it numbers the
event, keeps it in a small ``recent`` ring (so ``wait_for`` after a ``send`` cannot miss a fast
reply), hands it to matching waiters and iterators, and appends it to the bounded dispatch queue.
When the queue is full the network thread waits (backpressure through TCP): no server event is
ever dropped. The queue never holds more than its bound: an event delivered without waiting
(library events from the audio or a handler thread) while it is full is dropped and counted.
The dispatcher thread takes the whole queue at once (batching under load: one wake-up per
burst, not per event) and runs handlers one at a time, in arrival order, or passes each batch
to a ``marshal`` callable (a GUI's thread) that runs it in order. Once the client closes
(:meth:`Router.shut`) no handler starts again: what is still queued is dropped and counted.

This module owns waiting: ``wait_for`` taps (:class:`Waiter`), :class:`EventIterator` and
:meth:`Router.flush`.
"""

from __future__ import annotations

import logging
import threading
import traceback
import warnings
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Set, Tuple

from ..events import BETA_TO_GA, Event, LibraryEvents
from .host import ClosableMarshal, Marshal
from .wait import Deadline, wait_until

__all__ = ["Registry", "Router", "Waiter", "EventIterator", "Handler"]

logger = logging.getLogger(__name__)

Handler = Callable[[Event], Any]

DISPATCH_THREAD = "realtime-sync-dispatch"


class Registry:
    """Handlers by event type; ``"*"`` receives every event. Copy-on-write, so registering
    from any thread (a handler included) never disturbs a dispatch in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_type: Dict[str, Tuple[Handler, ...]] = {}
        self._wildcard: Tuple[Handler, ...] = ()
        self._warned: Set[str] = set()

    def add(self, type_: str, handler: Handler) -> None:
        """Register ``handler`` for ``type_`` (any thread)."""
        if not isinstance(type_, str) or not type_:
            raise TypeError(f"event type must be a non-empty string, not {type_!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        ga = BETA_TO_GA.get(type_)
        if ga and type_ not in self._warned:
            self._warned.add(type_)
            warnings.warn(
                f"{type_!r} is a retired beta event name that GA servers never send;"
                f" use {ga!r}",
                DeprecationWarning,
                stacklevel=3,
            )
            logger.warning("handler registered for retired beta event %r; GA name is %r", type_, ga)
        with self._lock:
            if type_ == "*":
                self._wildcard = self._wildcard + (handler,)
            else:
                self._by_type[type_] = self._by_type.get(type_, ()) + (handler,)

    def remove(self, type_: str, handler: Optional[Handler] = None) -> bool:
        """Unregister one handler (or all for the type when ``handler`` is None)."""
        with self._lock:
            current = self._wildcard if type_ == "*" else self._by_type.get(type_, ())
            if handler is None:
                kept: Tuple[Handler, ...] = ()
            else:
                items = list(current)
                for i, h in enumerate(items):
                    if h == handler:
                        del items[i]
                        break
                kept = tuple(items)
            if type_ == "*":
                self._wildcard = kept
            elif kept:
                self._by_type[type_] = kept
            else:
                self._by_type.pop(type_, None)
            return len(kept) != len(current)

    def handlers_for(self, type_: str) -> Tuple[Handler, ...]:
        """The handlers for one event, type-specific first, then wildcard."""
        specific = self._by_type.get(type_)
        if specific:
            return specific + self._wildcard if self._wildcard else specific
        return self._wildcard


class Waiter:
    """A pending ``wait_for``: receives candidate events (matching types and ``error``)."""

    __slots__ = ("types", "errors", "items", "cond")

    def __init__(self, types: Tuple[str, ...], errors: bool, lock: threading.Lock) -> None:
        self.types = types
        self.errors = errors
        self.items: Deque[Tuple[int, Event]] = deque()
        self.cond = threading.Condition(lock)

    def wants(self, type_: str) -> bool:
        return type_ in self.types or (self.errors and type_ == "error")


class EventIterator:
    """An iterator over events with its own queue, registered when it is created.

    Thread: iterate from any thread but the dispatcher's. Iteration ends when the client closes
    or when no event arrives within ``timeout`` seconds (``None``: wait for ever). The queue
    holds up to ``maxsize`` events; beyond that the oldest are dropped and counted in
    :attr:`dropped` (with a warning), so a forgotten iterator cannot stall the connection.
    """

    def __init__(
        self,
        router: Router,
        timeout: Optional[float],
        types: Optional[Tuple[str, ...]],
        maxsize: int,
    ) -> None:
        self._router = router
        self._timeout = timeout
        self._types = types
        self._maxsize = maxsize
        self._items: Deque[Event] = deque()
        self._cond = threading.Condition(router.lock)
        self.dropped = 0
        self.closed = False

    def _offer(self, event: Event) -> None:  # called with the router lock held
        if self._types is not None and event.type not in self._types:
            return
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("events() iterator is not being read: %d events dropped",
                               self.dropped)
        self._items.append(event)
        self._cond.notify()

    def __iter__(self) -> EventIterator:
        return self

    def __next__(self) -> Event:
        event = self._next(self._timeout, end_on_timeout=True)
        if event is None:
            raise StopIteration
        return event

    def next(self, timeout: Optional[float] = None) -> Optional[Event]:  # noqa: A003
        """The next event within ``timeout`` seconds (None: wait for ever), or None when the
        time ran out or the client closed; a timeout here never ends the iterator. Thread:
        any but the dispatcher's."""
        return self._next(timeout, end_on_timeout=False)

    def _next(self, timeout: Optional[float], end_on_timeout: bool) -> Optional[Event]:
        self._router.check_blocking_call("events()")
        deadline = Deadline(timeout)
        with self._cond:
            wait_until(self._cond,
                       lambda: self._items or self.closed or self._router.finished,
                       deadline, check=self._router.raise_strict)
            if self._items:
                return self._items.popleft()
            if self.closed or self._router.finished or end_on_timeout:
                self._close_locked()  # closed, or the iterator's idle timeout ends it
            return None

    def _close_locked(self) -> None:
        self.closed = True
        try:
            self._router.iterators.remove(self)
        except ValueError:
            pass

    def close(self) -> None:
        """Stop receiving events (any thread)."""
        with self._cond:
            self._close_locked()
            self._cond.notify_all()

    def __enter__(self) -> EventIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Router:
    """Numbering, taps and the bounded dispatch queue, with the dispatcher thread."""

    RECENT = 256
    CONTROL = frozenset({"session.created", "session.updated", "session.closed", "error"})
    """Event types also kept in a history of their own, so that a burst of other events
    (more than :attr:`RECENT`) cannot push the answer to a session config out of reach of
    the ``wait`` that ``connect()`` starts after it."""

    def __init__(
        self,
        registry: Registry,
        *,
        emit_handler_error: Callable[[Event], None],
        marshal: Optional[Marshal] = None,
        queue_size: int = 4096,
        strict: bool = False,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.registry = registry
        self.lock = threading.Lock()
        self._not_empty = threading.Condition(self.lock)
        self._not_full = threading.Condition(self.lock)
        self._queue: Deque[Event] = deque()
        self._queue_size = queue_size
        self._dispatcher_waiting = False
        self._stopping = False
        self._releasing = False
        self._shut = False  # closing: no handler starts again
        self.finished = False  # the client is closed for good: waits and iterators end
        self.seq = 0
        self.recent: Deque[Tuple[int, Event]] = deque(maxlen=self.RECENT)
        self.recent_control: Deque[Tuple[int, Event]] = deque(maxlen=self.RECENT)
        self.waiters: List[Waiter] = []
        self.iterators: List[EventIterator] = []
        self.marshal = marshal
        self._closable: Optional[ClosableMarshal] = (
            marshal if isinstance(marshal, ClosableMarshal) else None)
        self.strict = strict
        self._strict_error: Optional[BaseException] = None
        self._emit_handler_error = emit_handler_error
        self._in_flight = 0
        self._in_flight_done = threading.Condition(threading.Lock())
        self.thread: Optional[threading.Thread] = None
        self.current_handler_thread: Optional[int] = None
        self._flushed = threading.Condition(self.lock)
        self._flush_waiters = 0
        self.done = 0  # events that went through their handlers or were dropped (in order)
        self.received = 0
        self.dispatched = 0
        self.high_water = 0
        self.handler_errors = 0
        self.marshal_dropped = 0
        self.queue_dropped = 0  # queue full for a caller that could not wait
        self.dropped_on_close = 0

    # -- producer side (network thread, or any thread for library events) ------------------
    def deliver(self, event: Event, block: bool = True) -> None:
        """Number, tap and enqueue one event; waits while the queue is full (backpressure)."""
        type_ = event.get("type")
        with self.lock:
            self.seq += 1
            seq = self.seq
            self.received += 1
            self.recent.append((seq, event))
            if type_ in self.CONTROL:
                self.recent_control.append((seq, event))
            if self.waiters:
                for w in self.waiters:
                    if w.wants(type_):  # type: ignore[arg-type]
                        w.items.append((seq, event))
                        w.cond.notify()
            if self.iterators:
                for it in self.iterators:
                    try:
                        it._offer(event)
                    except Exception:  # noqa: BLE001 - a tap must never cost handlers an event
                        logger.exception("events() iterator failed to take an event")
            if self._shut:
                self._drop_locked(1, closing=True)
                return
            if len(self._queue) >= self._queue_size and not self._wait_for_room(block):
                self._drop_locked(1, closing=self._releasing or self._stopping)
                return
            queue = self._queue  # (the dispatcher swaps in a new one while we wait for room)
            queue.append(event)
            size = len(queue)
            if size > self.high_water:
                self.high_water = size
            if self._dispatcher_waiting:
                self._dispatcher_waiting = False  # one wake-up per batch, not one per event
                self._not_empty.notify()

    def _wait_for_room(self, block: bool) -> bool:
        """The queue is full: wait for room (backpressure) unless ``block`` is False, this is
        the dispatcher thread, or the client is closing. True when there is room now. Router
        lock held."""
        if block and threading.get_ident() != self._dispatcher_ident():
            while (len(self._queue) >= self._queue_size and not self._stopping
                   and not self._releasing):
                self._not_full.wait(0.25)
        return len(self._queue) < self._queue_size

    def _drop_locked(self, n: int, closing: bool) -> None:
        """Count ``n`` events that will never reach handlers (router lock held)."""
        if closing:
            self.dropped_on_close += n
        else:
            self.queue_dropped += n
            if self.queue_dropped == n or self.queue_dropped % 1000 == 0:
                logger.warning("dispatch queue full (%d): %d events dropped so far (slow"
                               " handlers?)", self._queue_size, self.queue_dropped)
        self._progress_locked(n)

    def _progress_locked(self, n: int) -> None:
        self.done += n
        if self._flush_waiters:
            self._flushed.notify_all()

    def release_producers(self) -> None:
        """Stop making producers wait for queue space (closing: the thread that would drain
        the queue may be the one closing). Any thread."""
        with self.lock:
            self._releasing = True
            self._not_full.notify_all()

    def shut(self) -> None:
        """Closing: no handler starts from now on, events still queued (and any delivered
        later) are dropped and counted, producers stop waiting. Any thread."""
        with self.lock:
            self._shut = True
            self._releasing = True
            if self._queue:
                n = len(self._queue)
                self._queue = deque()
                self._drop_locked(n, closing=True)
            self._not_full.notify_all()
            self._not_empty.notify_all()

    def wait(
        self,
        types: Tuple[str, ...],
        where: Optional[Callable[[Event], bool]],
        timeout: Optional[float],
        after: int,
        error_ids: Optional[Set[str]],
        ended: Callable[[], Optional[str]],
        seen: Optional[Callable[[int], None]] = None,
    ) -> Tuple[int, Event]:
        """The first event numbered after ``after`` of one of ``types`` for which ``where``
        holds (recent events included), with its number: ``wait_for``'s engine.

        An ``error`` answering one of ``error_ids`` raises :class:`ServerError`; ``seen`` gets
        the number of the event returned or raised for. ``ended()`` returning a reason raises
        :class:`NotConnectedError`.
        """
        from ..errors import NotConnectedError, ServerError, TimeoutError

        deadline = Deadline(timeout)
        waiter = Waiter(types, bool(error_ids), self.lock)
        with self.lock:
            oldest = self.recent[0][0] if self.recent else self.seq + 1
            for seq, ev in self.recent_control:  # those that left the general history
                if after < seq < oldest and waiter.wants(ev.get("type", "")):
                    waiter.items.append((seq, ev))
            for seq, ev in self.recent:
                if seq > after and waiter.wants(ev.get("type", "")):
                    waiter.items.append((seq, ev))
            self.waiters.append(waiter)
        try:
            while True:
                self.raise_strict()
                with self.lock:
                    items = list(waiter.items)
                    waiter.items.clear()
                for seq, ev in items:
                    type_ = ev.get("type")
                    if type_ == "error" and error_ids and "error" not in types:
                        err = ev.get("error") or {}
                        if isinstance(err, Mapping) and err.get("event_id") in error_ids:
                            if seen is not None:
                                seen(seq)
                            raise ServerError(ev)
                        continue
                    if type_ in types and (where is None or where(ev)):
                        if seen is not None:
                            seen(seq)
                        return seq, ev
                with self.lock:
                    wait_until(waiter.cond,
                               lambda: waiter.items or self.finished or ended() is not None,
                               deadline, check=self.raise_strict)
                    if waiter.items:
                        continue
                    reason = ended()
                    if reason is not None or self.finished:
                        raise NotConnectedError(
                            f"stopped waiting for {'/'.join(types)}: {reason or 'closed'}")
                    raise TimeoutError(f"no {'/'.join(types)} within {timeout} s")
        finally:
            with self.lock:
                try:
                    self.waiters.remove(waiter)
                except ValueError:
                    pass

    def flush(self, timeout: Optional[float]) -> bool:
        """Wait until every event delivered before this call went through its handlers (or
        was dropped); True when that happened within ``timeout``. Not on a handler thread."""
        with self.lock:
            target = self.seq
            self._flush_waiters += 1
            try:
                return bool(wait_until(self._flushed, lambda: self.done >= target,
                                       Deadline(timeout), check=self.raise_strict))
            finally:
                self._flush_waiters -= 1

    def _dispatcher_ident(self) -> Optional[int]:
        t = self.thread
        return t.ident if t is not None else None

    # -- consumer side (dispatcher thread) ------------------------------------------------------
    def start(self) -> None:
        """Start the dispatcher thread (once)."""
        if self.thread is not None:
            return
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name=DISPATCH_THREAD, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self._queue and not self._stopping:
                    self._dispatcher_waiting = True
                    self._not_empty.wait()
                self._dispatcher_waiting = False
                if not self._queue and self._stopping:
                    return
                batch = self._queue
                self._queue = deque()
                self._not_full.notify_all()
            if self.marshal is None:
                self._run_batch(batch)
            else:
                self._marshal_batch(batch)

    def _marshal_batch(self, batch: Deque[Event]) -> None:
        marshal = self.marshal
        assert marshal is not None
        closable = self._closable
        if closable is not None and closable.closed:
            self._marshal_dropped(len(batch))
            return
        if self._shut:
            with self.lock:
                self._drop_locked(len(batch), closing=True)
            return
        cond = self._in_flight_done
        with cond:
            while (self._in_flight >= 4 and not self._stopping
                   and not (closable is not None and closable.closed)):
                cond.wait(0.25)
            self._in_flight += 1

        def release() -> None:
            with cond:
                self._in_flight -= 1
                cond.notify_all()

        def run() -> None:
            try:
                self._run_batch(batch)
            finally:
                release()

        try:
            queued = marshal(run)
        except Exception:  # noqa: BLE001 - a broken marshal must not kill dispatch
            logger.exception("marshal callable failed; running handlers on the dispatcher thread")
            run()
            return
        if queued is False:  # the marshal refused it (its window is gone): never runs
            release()
            self._marshal_dropped(len(batch))

    def _marshal_dropped(self, n: int) -> None:
        with self.lock:
            self.marshal_dropped += n
            self._progress_locked(n)
        if self.marshal_dropped == n:
            logger.warning("the GUI marshal is closed (window destroyed?): events are no longer"
                           " delivered to handlers; close the client")

    def _run_batch(self, batch: Deque[Event]) -> None:
        handlers_for = self.registry.handlers_for
        self.current_handler_thread = threading.get_ident()
        ran = 0
        try:
            for event in batch:
                if self._shut:
                    break  # closed: no handler starts again
                for handler in handlers_for(event.get("type", "")):
                    try:
                        handler(event)
                    except Exception as exc:  # noqa: BLE001 - reported, dispatch goes on
                        self._handler_failed(handler, event, exc)
                ran += 1
                self.dispatched += 1
        finally:
            self.current_handler_thread = None
            with self.lock:
                self._progress_locked(ran)
                if ran < len(batch):
                    self._drop_locked(len(batch) - ran, closing=True)

    def _handler_failed(self, handler: Handler, event: Event, exc: BaseException) -> None:
        self.handler_errors += 1
        name = getattr(handler, "__qualname__", repr(handler))
        logger.error("handler %s raised on %r", name, event.get("type"), exc_info=exc)
        if self.strict and self._strict_error is None:
            self._strict_error = exc
        if event.get("type") == LibraryEvents.HANDLER_ERROR:
            return  # never recurse
        report = Event(
            type=LibraryEvents.HANDLER_ERROR,
            handler=name,
            event_type=event.get("type"),
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            exception=exc,
        )
        self._emit_handler_error(report)

    def run_inline(self, event: Event) -> None:
        """Run the handlers of a library event right now, on the calling handler thread."""
        for handler in self.registry.handlers_for(event.get("type", "")):
            try:
                handler(event)
            except Exception as exc:  # noqa: BLE001
                self._handler_failed(handler, event, exc)

    # -- strict mode and thread checks -------------------------------------------------------
    def raise_strict(self) -> None:
        """Re-raise (once) the first handler exception in the caller's thread (strict mode)."""
        exc = self._strict_error
        if exc is not None:
            self._strict_error = None
            raise exc

    def on_handler_thread(self) -> bool:
        """True when called from the thread that runs handlers right now."""
        ident = threading.get_ident()
        return ident == self._dispatcher_ident() or ident == self.current_handler_thread

    def check_blocking_call(self, what: str) -> None:
        """Raise :class:`DeadlockError` when a blocking helper runs on the dispatcher thread."""
        from ..errors import DeadlockError

        if threading.get_ident() == self._dispatcher_ident():
            raise DeadlockError(
                f"{what} was called from a handler on the dispatcher thread; it would wait for"
                " events that only this thread can deliver. Do the blocking work in another"
                " thread, or react to the event in a handler instead."
            )

    # -- shutdown ---------------------------------------------------------------------------------
    def stop(self, timeout: float) -> bool:
        """End the dispatcher thread (after :meth:`shut`, nothing queued runs); True when it
        ended in time."""
        with self.lock:
            self._stopping = True
            self._not_empty.notify_all()
            self._not_full.notify_all()
        with self._in_flight_done:
            self._in_flight_done.notify_all()
        t = self.thread
        if t is None or t.ident == threading.get_ident():
            return True
        t.join(max(0.0, timeout))
        return not t.is_alive()

    def finish(self) -> None:
        """Mark the client finished: wake every waiter and iterator so they can end."""
        with self.lock:
            self.finished = True
            for w in self.waiters:
                w.cond.notify_all()
            for it in self.iterators:
                it._cond.notify_all()

    def wake_waiters(self) -> None:
        """Wake all waiters so they re-check the connection state."""
        with self.lock:
            for w in self.waiters:
                w.cond.notify_all()

"""Marshals: run realtime_sync handler calls on a GUI toolkit's UI thread, in order.

A *marshal* is any callable ``marshal(fn)`` that takes a zero-argument function and arranges
for it to run soon on the UI thread, in FIFO order with every other call. It is safe to call
from any thread and never blocks the caller. Pass one as ``marshal=`` to
:class:`~realtime_sync.RealtimeClient` or :class:`~realtime_sync.Transcriber` and every handler
then runs on the UI thread, so handlers may touch widgets directly::

    root = tkinter.Tk()
    client = rs.RealtimeClient(..., marshal=rs.gui.tk(root))

Three marshals ship here:

* :func:`tk` (:class:`TkMarshal`) for Tkinter,
* :func:`qt` (:class:`QtMarshal`) for Qt 6 through PySide6 or PyQt6,
* :class:`QueueMarshal` for any other toolkit: call :meth:`QueueMarshal.poll` from its loop
  (or give it ``notify=`` to be told when work arrives, e.g. ``wx.CallAfter``).

Every marshal has ``ui_thread`` (the :class:`threading.Thread` it delivers on),
``close()`` (stop accepting; pending calls are discarded and counted), and the counters
``delivered``, ``pending``, ``dropped`` and ``errors``. :func:`is_ui_thread` and
:func:`warn_if_blocking` let the client warn, once, when a blocking helper is called on the UI
thread. Delivery is batched: a burst of calls costs one wake-up of the UI loop, and one tick
runs at most ``max_calls`` calls or ``max_ms`` milliseconds before yielding to the toolkit, so
the window stays responsive under a flood of events.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any, Callable, Deque, Optional

__all__ = [
    "Marshal",
    "QueueMarshal",
    "TkMarshal",
    "QtMarshal",
    "tk",
    "qt",
    "is_ui_thread",
    "warn_if_blocking",
]

logger = logging.getLogger(__name__)

Call = Callable[[], Any]

DEFAULT_MAX_CALLS = 500
"""Calls run per UI-loop tick before yielding back to the toolkit."""

DEFAULT_MAX_MS = 20.0
"""Milliseconds spent per UI-loop tick before yielding back to the toolkit."""


class Marshal:
    """Base of the shipped marshals: a locked FIFO of calls plus counters.

    Subclasses decide how the UI thread is woken (:meth:`_wake`) and run :meth:`_drain` there.

    Attributes:
        ui_thread: the thread the calls are delivered on.
        delivered: calls run so far (including calls that raised).
        dropped: calls discarded because the marshal was closed (or its UI went away).
        errors: calls that raised; each is logged with its traceback and delivery goes on.
    """

    def __init__(
        self,
        ui_thread: Optional[threading.Thread] = None,
        *,
        max_calls: Optional[int] = DEFAULT_MAX_CALLS,
        max_ms: Optional[float] = DEFAULT_MAX_MS,
    ) -> None:
        self.ui_thread: threading.Thread = ui_thread or threading.current_thread()
        self.max_calls = max_calls
        self.max_ms = max_ms
        self.delivered = 0
        self.dropped = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._queue: Deque[Call] = collections.deque()
        self._closed = False
        self._woken = False  # a wake-up of the UI thread is on its way (guarded by _lock)
        self._draining = False  # UI thread only: guards against nested event loops

    # -- producer side: any thread -------------------------------------------------------

    def __call__(self, fn: Call) -> None:
        """Queue ``fn`` to run on the UI thread after every call queued before it.

        Any thread may call this; it never blocks on the UI thread and never raises because
        the UI is gone: after :meth:`close` (or the window's destruction) ``fn`` is dropped
        and counted in ``dropped``.
        """
        with self._lock:
            if self._closed:
                self.dropped += 1
                return
            self._queue.append(fn)
            if self._woken:
                return
            self._woken = True
        try:
            self._wake()
        except Exception:  # the UI went away under us: never raise into the dispatcher
            logger.debug("marshal wake-up failed; closing", exc_info=True)
            self._shutdown()

    @property
    def pending(self) -> int:
        """Calls queued and not yet run (any thread may read it)."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        """True once the marshal stopped accepting calls."""
        return self._closed

    def on_ui_thread(self) -> bool:
        """True when the calling thread is the one calls are delivered on (any thread)."""
        return threading.current_thread() is self.ui_thread

    def stats(self) -> dict:
        """The counters as a dict: delivered, pending, dropped, errors (any thread)."""
        return {
            "delivered": self.delivered,
            "pending": self.pending,
            "dropped": self.dropped,
            "errors": self.errors,
        }

    def close(self) -> None:
        """Stop accepting calls; pending calls are discarded and counted in ``dropped``.

        Idempotent; any thread may call it. A call already running finishes.
        """
        self._shutdown()

    # -- consumer side: the UI thread ----------------------------------------------------

    def _shutdown(self) -> int:
        with self._lock:
            self._closed = True
            n = len(self._queue)
            self._queue.clear()
            self.dropped += n
        if n:
            logger.debug("marshal closed: %d pending call(s) dropped", n)
        return n

    def _drain(self, max_calls: Optional[int], max_ms: Optional[float]) -> bool:
        """Run pending calls on this thread; return True when some are left over.

        Stops after ``max_calls`` calls or ``max_ms`` milliseconds (None: no limit). Re-arms the
        wake-up flag before looking at the queue, so a call queued meanwhile wakes us again.
        Not re-entrant: a call that runs a nested event loop (a modal dialog) holds back the
        calls after it until it returns, so calls never overlap.
        """
        if self._draining:
            return False
        self._draining = True
        try:
            return self._drain_loop(max_calls, max_ms)
        finally:
            self._draining = False

    def _drain_loop(self, max_calls: Optional[int], max_ms: Optional[float]) -> bool:
        with self._lock:
            self._woken = False
        deadline = None if max_ms is None else time.monotonic() + max_ms / 1000.0
        ran = 0
        while True:
            with self._lock:
                if not self._queue:
                    return False
                if (max_calls is not None and ran >= max_calls) or (
                    deadline is not None and ran and time.monotonic() >= deadline
                ):
                    return True
                fn = self._queue.popleft()
            ran += 1
            try:
                fn()
            except Exception:
                self.errors += 1
                logger.exception("realtime_sync: a marshalled call raised")
            finally:
                self.delivered += 1

    def _wake(self) -> None:
        """Make the UI thread call :meth:`_drain` soon. Runs on the producer's thread."""


class QueueMarshal(Marshal):
    """A marshal for any toolkit: calls wait in a queue until the UI loop calls :meth:`poll`.

    Args:
        ui_thread: the thread that will call :meth:`poll` (default: the constructing thread).
        notify: optional zero-argument callable run on the producer's thread whenever the queue
            turns from idle to busy (once per burst, not once per call), e.g.
            ``lambda: wx.CallAfter(m.poll)`` or ``lambda: GLib.idle_add(m.poll)``. It must not
            block; an exception it raises is logged and ignored.

    Example::

        m = rs.gui.QueueMarshal()
        client = rs.RealtimeClient(..., marshal=m)
        while running:            # the UI loop
            m.poll()
    """

    def __init__(
        self,
        ui_thread: Optional[threading.Thread] = None,
        *,
        notify: Optional[Callable[[], Any]] = None,
    ) -> None:
        super().__init__(ui_thread, max_calls=None, max_ms=None)
        self._notify = notify
        self._ready = threading.Condition(self._lock)

    def _wake(self) -> None:
        with self._ready:
            self._ready.notify_all()
        if self._notify is not None:
            try:
                self._notify()
            except Exception:
                logger.exception("realtime_sync: QueueMarshal notify callback raised")

    def poll(self, max_calls: Optional[int] = None, timeout: float = 0) -> int:
        """Run pending calls on the calling thread (normally :attr:`ui_thread`), in order.

        Args:
            max_calls: run at most this many (None: everything pending).
            timeout: when nothing is pending, wait up to this many seconds for a call
                (0: don't wait; None: wait until one arrives or the marshal is closed).

        Returns:
            The number of calls run (calls that raised are logged and counted too).
        """
        with self._ready:
            if not self._queue and not self._closed and (timeout is None or timeout > 0):
                self._ready.wait_for(lambda: bool(self._queue) or self._closed, timeout)
        before = self.delivered
        more = self._drain(max_calls, None)
        if more:  # left over by max_calls: the next poll must not wait for a new wake-up
            with self._lock:
                self._woken = True
        return self.delivered - before

    def close(self) -> None:
        """Stop accepting calls, drop (and count) pending ones, wake a waiting :meth:`poll`."""
        self._shutdown()
        with self._ready:
            self._ready.notify_all()


class TkMarshal(Marshal):
    """Deliver calls on a Tkinter root's thread (create it with :func:`tk`).

    Why this design: Tkinter calls made from another thread (``after``, ``event_generate``)
    are forwarded to the Tcl thread and *wait* for it; they fail with "main thread is not in
    main loop" while the UI thread is busy, e.g. blocked in ``connect()`` before ``mainloop``.
    A marshal must never block its caller, so producers never touch Tcl: they append to a
    locked queue and, once per burst, write one byte to a pipe that Tk watches with
    ``createfilehandler`` (POSIX). The UI loop wakes at once, with no idle polling. Where file
    handlers don't exist (Windows) a cheap ``after(interval_ms)`` poll on the Tk thread checks
    the queue instead. Either way one tick runs at most ``max_calls`` calls or ``max_ms`` ms,
    then yields to Tk with ``after(0)``.

    When the widget is destroyed the marshal closes itself: pending and later calls are
    dropped and counted, never raised.
    """

    def __init__(
        self,
        widget: Any,
        *,
        interval_ms: int = 10,
        max_calls: Optional[int] = DEFAULT_MAX_CALLS,
        max_ms: Optional[float] = DEFAULT_MAX_MS,
        use_filehandler: Optional[bool] = None,
    ) -> None:
        super().__init__(threading.current_thread(), max_calls=max_calls, max_ms=max_ms)
        import tkinter

        self._widget = widget
        self._tk = widget.tk
        self.interval_ms = max(1, int(interval_ms))
        self._after_id: Optional[str] = None
        self._rfd = self._wfd = -1
        self._torn_down = False
        self._cmd = widget.register(self._tick)
        self._destroy_bind = widget.bind("<Destroy>", self._on_destroy, "+")
        if use_filehandler is None:
            use_filehandler = hasattr(self._tk, "createfilehandler") and os.name == "posix"
        if use_filehandler:
            rfd, wfd = os.pipe()
            os.set_blocking(rfd, False)
            os.set_blocking(wfd, False)
            self._tk.createfilehandler(rfd, tkinter.READABLE, self._on_readable)
            self._rfd, self._wfd = rfd, wfd
        else:
            self._schedule(self.interval_ms)
        self.mode = "filehandler" if use_filehandler else "poll"

    def _wake(self) -> None:
        if self._wfd >= 0:
            try:
                os.write(self._wfd, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already: the UI thread will wake
        # poll mode: the periodic tick finds the call

    # -- Tk thread ------------------------------------------------------------------------

    def _schedule(self, ms: int) -> None:
        self._after_id = str(self._tk.call("after", ms, self._cmd))

    def _on_readable(self, fd: int, mask: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        if self._after_id is None:  # no tick already scheduled to continue a bounded drain
            self._tick()

    def _tick(self) -> None:
        self._after_id = None
        if self._closed:
            self._teardown()
            return
        more = False
        try:
            more = self._drain(self.max_calls, self.max_ms)
        finally:
            if self._closed:
                self._teardown()
            elif more:
                self._schedule(0)
            elif self._rfd < 0:
                self._schedule(self.interval_ms)

    def _on_destroy(self, event: Any) -> None:
        if event.widget is not self._widget and str(event.widget) != str(self._widget):
            return  # a child of the widget was destroyed
        n = self._shutdown()
        if n:
            logger.debug("Tk widget destroyed with %d marshalled call(s) pending", n)
        self._teardown()

    def _teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        if self._after_id is not None:
            try:
                self._tk.call("after", "cancel", self._after_id)
            except Exception:
                pass
            self._after_id = None
        if self._rfd >= 0:
            try:
                self._tk.deletefilehandler(self._rfd)
            except Exception:
                pass
            for fd in (self._rfd, self._wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._rfd = self._wfd = -1

    def close(self) -> None:
        """Stop accepting calls; pending calls are dropped and counted (any thread).

        Called on the Tk thread it also releases the Tk timer and pipe at once; from another
        thread they are released on the Tk thread's next tick.
        """
        self._shutdown()
        if self.on_ui_thread():
            self._teardown()
        else:
            self._wake()


def tk(
    widget: Any,
    *,
    interval_ms: int = 10,
    max_calls: Optional[int] = DEFAULT_MAX_CALLS,
    max_ms: Optional[float] = DEFAULT_MAX_MS,
) -> TkMarshal:
    """Make a marshal that runs calls on the Tk thread of ``widget`` (usually the root).

    Call it on the thread that created the Tk root. Calls queued before ``mainloop()``
    starts run once it does.

    Args:
        widget: a ``tkinter.Tk`` root (or any widget: its destruction closes the marshal).
        interval_ms: poll period where Tk file handlers are unavailable (Windows).
        max_calls: calls run per Tk event-loop tick before yielding to Tk.
        max_ms: milliseconds spent per tick before yielding to Tk.
    """
    return TkMarshal(widget, interval_ms=interval_ms, max_calls=max_calls, max_ms=max_ms)


def _import_qt() -> Any:
    try:
        from PySide6 import QtCore

        return QtCore, QtCore.Signal
    except ImportError:
        pass
    try:
        from PyQt6 import QtCore  # type: ignore[no-redef]

        return QtCore, QtCore.pyqtSignal  # type: ignore[attr-defined]
    except ImportError:
        raise ImportError(
            "realtime_sync.gui.qt() needs Qt 6 for Python: pip install PySide6 "
            "(or PyQt6)"
        ) from None


_QT_CLASSES: dict = {}


def _qt_bridge_class() -> Any:
    if "bridge" not in _QT_CLASSES:
        QtCore, Signal = _import_qt()

        class _Bridge(QtCore.QObject):  # type: ignore[misc,name-defined]
            wake = Signal()

        _QT_CLASSES["bridge"] = _Bridge
        _QT_CLASSES["QtCore"] = QtCore
    return _QT_CLASSES["bridge"]


class QtMarshal(Marshal):
    """Deliver calls on the Qt GUI thread (create it with :func:`qt`).

    A small QObject living on the GUI thread has a ``wake`` signal connected to the drain with
    ``Qt.QueuedConnection``; producers emit it once per burst (Qt posts one event to the GUI
    thread's queue), and the drain runs everything pending, bounded per tick by ``max_calls``
    and ``max_ms``, re-emitting to continue. If the QObject or the application is gone, calls
    are dropped and counted.
    """

    def __init__(
        self,
        *,
        max_calls: Optional[int] = DEFAULT_MAX_CALLS,
        max_ms: Optional[float] = DEFAULT_MAX_MS,
    ) -> None:
        bridge_cls = _qt_bridge_class()
        QtCore = _QT_CLASSES["QtCore"]
        app = QtCore.QCoreApplication.instance()
        if app is None:
            from .errors import ConfigurationError

            raise ConfigurationError(
                "rs.gui.qt() needs a QApplication: create it before the marshal"
            )
        gui_qthread = app.thread()
        if QtCore.QThread.currentThread() == gui_qthread:
            ui_thread = threading.current_thread()
        else:  # Qt's GUI thread is the main thread in practice (macOS requires it)
            ui_thread = threading.main_thread()
        super().__init__(ui_thread, max_calls=max_calls, max_ms=max_ms)
        self._bridge = bridge_cls()
        if self._bridge.thread() != gui_qthread:
            self._bridge.moveToThread(gui_qthread)
        self._bridge.wake.connect(self._on_wake, QtCore.Qt.ConnectionType.QueuedConnection)
        self._bridge.destroyed.connect(self._on_gone)

    def _wake(self) -> None:
        self._bridge.wake.emit()  # RuntimeError when the C++ object is gone -> closed

    def _on_gone(self, *args: Any) -> None:
        self._shutdown()

    def _on_wake(self) -> None:
        if self._closed:
            return
        if self._drain(self.max_calls, self.max_ms):
            with self._lock:
                self._woken = True
            self._bridge.wake.emit()  # yield to Qt, continue on the next event


def qt(
    *,
    max_calls: Optional[int] = DEFAULT_MAX_CALLS,
    max_ms: Optional[float] = DEFAULT_MAX_MS,
) -> QtMarshal:
    """Make a marshal that runs calls on the Qt GUI thread (PySide6, else PyQt6).

    Create the ``QApplication`` first; call this from any thread (normally the GUI thread).

    Raises:
        ImportError: neither PySide6 nor PyQt6 is installed (the message says what to install).
        ConfigurationError: no QApplication/QCoreApplication exists yet.
    """
    return QtMarshal(max_calls=max_calls, max_ms=max_ms)


def is_ui_thread(marshal: Any) -> Optional[bool]:
    """Whether the calling thread is ``marshal``'s UI thread; None when that is unknown.

    Any thread may call it. Works with any object that has a ``ui_thread`` attribute (a
    :class:`threading.Thread` or a thread ident); a plain function marshal gives None.
    """
    ui = getattr(marshal, "ui_thread", None)
    if ui is None:
        return None
    if isinstance(ui, threading.Thread):
        return ui is threading.current_thread()
    return ui == threading.get_ident()


_warned_lock = threading.Lock()


def warn_if_blocking(marshal: Any, what: str) -> bool:
    """Log a one-time warning when blocking helper ``what`` runs on ``marshal``'s UI thread.

    The helper still works (connecting before ``mainloop`` is normal); this never raises.
    Returns True when the calling thread is the UI thread. Any thread may call it; the
    warning is logged at most once per marshal object.
    """
    if not is_ui_thread(marshal):
        return False
    with _warned_lock:
        if getattr(marshal, "_rs_blocking_warned", False):
            return True
        try:
            marshal._rs_blocking_warned = True
        except AttributeError:  # e.g. a bound method: warn every time rather than never
            pass
    logger.warning(
        "realtime_sync: %s was called on the GUI thread; the window freezes until it "
        "returns and handler calls wait until then. To keep the UI responsive, call it "
        "before the main loop starts, from a worker thread, or react to events with "
        "client.on(...) handlers instead.",
        what,
    )
    return True

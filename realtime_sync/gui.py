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
import weakref
from typing import Any, Callable, Deque, Dict, Optional

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

    Subclasses decide how the UI thread is woken (:meth:`_wake_locked`) and run
    :meth:`_drain` there.

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

    def __call__(self, fn: Call) -> bool:
        """Queue ``fn`` to run on the UI thread after every call queued before it.

        Any thread may call this; it never blocks on the UI thread and never raises because
        the UI is gone: after :meth:`close` (or the window's destruction) ``fn`` is dropped
        and counted in ``dropped``.

        Returns:
            True when ``fn`` was queued, False when it was dropped (the marshal is closed).
            A queued call can still be dropped later, if the marshal closes before it runs;
            check :attr:`closed`.
        """
        failed = False
        with self._lock:
            if self._closed:
                self.dropped += 1
                return False
            self._queue.append(fn)
            if self._woken:
                return True
            self._woken = True
            try:
                self._wake_locked()
            except Exception:  # the UI went away under us: never raise into the dispatcher
                logger.debug("marshal wake-up failed; closing", exc_info=True)
                failed = True
        if failed:
            self._shutdown()  # counts fn in dropped
            return False
        self._after_wake()
        return True

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

    def _wake_locked(self) -> None:
        """Make the UI thread call :meth:`_drain` soon (producer's thread, lock held).

        Must not block and must not call back into the marshal.
        """

    def _after_wake(self) -> None:
        """Hook run on the producer's thread after a wake-up, without the lock."""


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

    def _wake_locked(self) -> None:
        self._ready.notify_all()  # _ready shares self._lock, which the caller holds

    def _after_wake(self) -> None:
        if self._notify is not None:
            try:
                self._notify()
            except Exception:
                logger.exception("realtime_sync: QueueMarshal notify callback raised")

    def poll(self, max_calls: Optional[int] = None, timeout: Optional[float] = 0) -> int:
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

    The marshal itself holds no Tk object: the Tk side lives in a helper referenced only by
    Tcl (and weakly by the marshal), so the last reference to a Tk interpreter is never
    dropped on a producer thread (Tcl aborts the process when an interpreter is freed on the
    wrong thread).

    When the widget is destroyed the marshal closes itself: pending and later calls are
    dropped and counted, never raised.

    Attributes:
        mode: ``"filehandler"`` or ``"poll"``.
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
        if use_filehandler is None:
            use_filehandler = hasattr(widget.tk, "createfilehandler") and os.name == "posix"
        self.mode = "filehandler" if use_filehandler else "poll"
        self.interval_ms = max(1, int(interval_ms))
        self._wfd = -1  # write end of the wake-up pipe (guarded by _lock)
        pump = _TkPump(self, widget, use_filehandler)
        self._pump = weakref.ref(pump)

    def _wake_locked(self) -> None:
        if self._wfd >= 0:
            try:
                os.write(self._wfd, b"\0")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already: the UI thread will wake
        # poll mode: the periodic tick finds the call

    def close(self) -> None:
        """Stop accepting calls; pending calls are dropped and counted (any thread).

        Called on the Tk thread it also releases the Tk timer and pipe at once; from another
        thread they are released on the Tk thread's next tick.
        """
        self._shutdown()
        pump = self._pump()
        if pump is not None and self.on_ui_thread():
            pump.teardown()
        else:
            with self._lock:
                self._wake_locked()


class _TkPump:
    """The Tk-thread half of a :class:`TkMarshal`; only Tcl holds it (its callbacks)."""

    def __init__(self, marshal: TkMarshal, widget: Any, use_filehandler: bool) -> None:
        import tkinter

        self.marshal = marshal
        self.widget = widget
        self.tk = widget.tk
        self.after_id: Optional[str] = None
        self.rfd = -1
        self.torn_down = False
        self.cmd = widget.register(self.tick)
        widget.bind("<Destroy>", self.on_destroy, "+")
        if use_filehandler:
            rfd, wfd = os.pipe()
            os.set_blocking(rfd, False)
            os.set_blocking(wfd, False)
            self.rfd = rfd
            self.tk.createfilehandler(rfd, tkinter.READABLE, self.on_readable)
            marshal._wfd = wfd
        else:
            self.schedule(marshal.interval_ms)

    def schedule(self, ms: int) -> None:
        self.after_id = str(self.tk.call("after", ms, self.cmd))

    def on_readable(self, fd: int, mask: int) -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:  # BlockingIOError: drained
            pass
        if self.after_id is None:  # else a tick is already scheduled to continue a drain
            self.tick()

    def tick(self) -> None:
        self.after_id = None
        m = self.marshal
        if m._closed:
            self.teardown()
            return
        more = False
        try:
            more = m._drain(m.max_calls, m.max_ms)
        finally:
            if m._closed:
                self.teardown()
            elif more:
                self.schedule(0)
            elif self.rfd < 0:
                self.schedule(m.interval_ms)

    def on_destroy(self, event: Any) -> None:
        if event.widget is not self.widget and str(event.widget) != str(self.widget):
            return  # a child of the widget was destroyed
        n = self.marshal._shutdown()
        if n:
            logger.debug("Tk widget destroyed with %d marshalled call(s) pending", n)
        self.teardown()

    def teardown(self) -> None:
        if self.torn_down:
            return
        self.torn_down = True
        if self.after_id is not None:
            try:
                self.tk.call("after", "cancel", self.after_id)
            except Exception:
                pass
            self.after_id = None
        if self.rfd >= 0:
            try:
                self.tk.deletefilehandler(self.rfd)
            except Exception:
                pass
            with self.marshal._lock:  # no producer can write to a closed (or reused) fd
                wfd, self.marshal._wfd = self.marshal._wfd, -1
            for fd in (self.rfd, wfd):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.rfd = -1


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
    """Return (QtCore, Slot) from PySide6, else PyQt6."""
    try:
        from PySide6 import QtCore

        return QtCore, QtCore.Slot
    except ImportError:
        pass
    try:
        from PyQt6 import QtCore  # type: ignore[no-redef]

        return QtCore, QtCore.pyqtSlot  # type: ignore[attr-defined]
    except ImportError:
        raise ImportError(
            "realtime_sync.gui.qt() needs Qt 6 for Python: pip install PySide6 "
            "(or PyQt6)"
        ) from None


_QT: Dict[str, Any] = {}


def _qt_bridge_class() -> Any:
    """Define (once) the QObject that receives wake-ups on the GUI thread."""
    if "bridge" not in _QT:
        QtCore, Slot = _import_qt()
        queued = QtCore.Qt.ConnectionType.QueuedConnection

        class _Bridge(QtCore.QObject):  # type: ignore[misc,name-defined]
            def __init__(self, callback: Callable[[], None], parent: Any = None) -> None:
                super().__init__(parent)
                self.callback = callback

            def post(self) -> None:
                """Any thread: have Qt call :meth:`drain` on this object's thread, soon."""
                QtCore.QMetaObject.invokeMethod(self, "drain", queued)

            @Slot()
            def drain(self) -> None:
                self.callback()

        _QT["bridge"] = _Bridge
        _QT["QtCore"] = QtCore
    return _QT["bridge"]


class QtMarshal(Marshal):
    """Deliver calls on the Qt GUI thread (create it with :func:`qt`).

    A small QObject lives on the GUI thread (a child of the application, which owns it).
    Producers ask Qt, once per burst, to call its ``drain`` slot with
    ``QMetaObject.invokeMethod(..., Qt.QueuedConnection)`` (thread safe: Qt posts one event
    to the GUI thread's queue). The drain runs everything pending, bounded per tick by
    ``max_calls`` and ``max_ms``, and queues itself again to continue after Qt had its turn.
    Neither ``Signal.emit()`` nor ``QCoreApplication.postEvent()`` is used: in PySide6 6.12
    each call drops a reference to ``True`` / ``None``, which aborts Python 3.11 and older
    after a few hundred calls. When the QObject or the application goes away the marshal
    closes: calls are dropped and counted.
    """

    def __init__(
        self,
        *,
        max_calls: Optional[int] = DEFAULT_MAX_CALLS,
        max_ms: Optional[float] = DEFAULT_MAX_MS,
    ) -> None:
        bridge_cls = _qt_bridge_class()
        QtCore = _QT["QtCore"]
        app = QtCore.QCoreApplication.instance()
        if app is None:
            from .errors import ConfigurationError

            raise ConfigurationError(
                "rs.gui.qt() needs a QApplication: create it before the marshal"
            )
        gui_qthread = app.thread()
        on_gui = QtCore.QThread.currentThread() == gui_qthread
        # Qt's GUI thread is the main thread in practice (macOS requires it)
        ui_thread = threading.current_thread() if on_gui else threading.main_thread()
        super().__init__(ui_thread, max_calls=max_calls, max_ms=max_ms)
        if on_gui:
            self._bridge = bridge_cls(self._on_wake, app)
        else:
            self._bridge = bridge_cls(self._on_wake)
            self._bridge.moveToThread(gui_qthread)
        self._bridge.destroyed.connect(self._on_gone)

    def _wake_locked(self) -> None:
        self._bridge.post()  # RuntimeError if the QObject is gone -> the marshal closes

    def _on_gone(self, *args: Any) -> None:
        self._shutdown()

    def _on_wake(self) -> None:
        if self._drain(self.max_calls, self.max_ms):
            with self._lock:
                if not self._closed:
                    self._woken = True
                    self._bridge.post()  # yield to Qt, continue on the next event

    def close(self) -> None:
        """Stop accepting calls; pending calls are dropped and counted (any thread).

        The QObject is released with ``deleteLater()`` on the GUI thread.
        """
        self._shutdown()
        with self._lock:
            bridge, self._bridge = self._bridge, None
        if bridge is not None:
            try:
                bridge.destroyed.disconnect(self._on_gone)
                bridge.deleteLater()
            except (RuntimeError, TypeError):
                pass  # already deleted


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
_warned: weakref.WeakSet[Any] = weakref.WeakSet()  # marshals warned about (warn_if_blocking)


def warn_if_blocking(marshal: Any, what: str) -> bool:
    """Log a one-time warning when blocking helper ``what`` runs on ``marshal``'s UI thread.

    The helper still works (connecting before ``mainloop`` is normal); this never raises.
    Returns True when the calling thread is the UI thread. Any thread may call it; the
    warning is logged at most once per marshal object.
    """
    if not is_ui_thread(marshal):
        return False
    with _warned_lock:
        try:
            if marshal in _warned:
                return True
            _warned.add(marshal)
        except TypeError:  # not weakly referable: warn every time rather than never
            pass
    logger.warning(
        "realtime_sync: %s was called on the GUI thread; the window freezes until it "
        "returns and handler calls wait until then. To keep the UI responsive, call it "
        "before the main loop starts, from a worker thread, or react to events with "
        "client.on(...) handlers instead.",
        what,
    )
    return True

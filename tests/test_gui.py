"""GUI marshals: every call runs on the UI thread, in order, and never raises into producers.

Tk tests run a real Tk. When DISPLAY is unset they start their own Xvfb (Debian ``xvfb``) for
the session and stop it afterwards. Qt tests use PySide6 with ``QT_QPA_PLATFORM=offscreen``.
Without a display (or PySide6) the GUI tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Tuple

import pytest

from realtime_sync import gui

THREADS = 4
CALLS = 200
GUARD_MS = 60_000  # deadlock guard only: the loop is stopped as soon as the work is done


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"GUI test cannot run under CI: {reason}")
    pytest.skip(reason)


def _die_with_parent() -> None:
    """In the Xvfb child: get SIGTERM when pytest dies, even if it crashes (Linux prctl)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def display() -> Iterator[str]:
    """A usable X display: $DISPLAY if set, else a private Xvfb stopped after the session."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        _unavailable("no DISPLAY and no Xvfb (apt-get install xvfb)")
    rfd, wfd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(wfd), "-nolisten", "tcp", "-screen", "0", "800x600x24"],
        pass_fds=(wfd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    os.close(wfd)
    with os.fdopen(rfd) as f:
        number = f.readline().strip()  # Xvfb writes the display number once it is ready
    if not number:
        proc.kill()
        proc.wait()
        _unavailable("Xvfb did not start")
    os.environ["DISPLAY"] = ":" + number
    try:
        yield os.environ["DISPLAY"]
    finally:
        del os.environ["DISPLAY"]
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def root(display: str) -> Iterator[Any]:
    tkinter = pytest.importorskip("tkinter")
    try:
        r = tkinter.Tk()
    except tkinter.TclError as exc:
        _unavailable(f"Tk cannot open display {display}: {exc}")
    r.withdraw()
    yield r
    try:
        r.destroy()
    except tkinter.TclError:
        pass  # the test destroyed it
    # Free garbage cycles that reach the Tk interpreter here, on its own thread: Tcl aborts
    # the process when an interpreter is freed by a garbage collection on another thread.
    gc.collect()


def _producers(
    marshal: Callable[[Callable[[], Any]], Any],
    record: Callable[[int, int], None],
    threads: int = THREADS,
    calls: int = CALLS,
) -> List[threading.Thread]:
    """Start ``threads`` threads that each marshal ``calls`` calls of record(thread, seq)."""
    start = threading.Barrier(threads)

    def produce(t: int) -> None:
        start.wait()
        for i in range(calls):
            marshal(functools.partial(record, t, i))

    workers = [
        threading.Thread(target=produce, args=(t,), name=f"realtime-sync-test-{t}", daemon=True)
        for t in range(threads)
    ]
    for w in workers:
        w.start()
    return workers


def _check_ordered(log: List[Tuple[int, int, int]], ui_ident: int) -> None:
    assert len(log) == THREADS * CALLS
    assert {ident for _, _, ident in log} == {ui_ident}
    per_thread: Dict[int, List[int]] = {}
    for t, i, _ in log:
        per_thread.setdefault(t, []).append(i)
    assert per_thread == {t: list(range(CALLS)) for t in range(THREADS)}


# -- QueueMarshal ---------------------------------------------------------------------------


def test_queue_marshal_runs_calls_on_polling_thread_in_fifo_order() -> None:
    m = gui.QueueMarshal()
    log: List[Tuple[int, int, int]] = []
    workers = _producers(m, lambda t, i: log.append((t, i, threading.get_ident())))
    while len(log) < THREADS * CALLS:
        m.poll(timeout=5)
    for w in workers:
        w.join()
    _check_ordered(log, threading.get_ident())
    assert (m.delivered, m.pending, m.dropped, m.errors) == (THREADS * CALLS, 0, 0, 0)


def test_queue_marshal_poll_limits_and_timeout() -> None:
    m = gui.QueueMarshal()
    out: List[int] = []
    for i in range(10):
        m(functools.partial(out.append, i))
    assert m.pending == 10 and out == []
    assert m.poll(max_calls=3) == 3
    assert out == [0, 1, 2] and m.pending == 7
    assert m.poll(max_calls=0) == 0
    assert m.poll() == 7
    assert out == list(range(10))
    assert m.poll() == 0  # nothing pending, no wait

    timer = threading.Timer(0.05, lambda: m(lambda: out.append(99)))
    timer.start()
    assert m.poll(timeout=30) == 1  # woken by the call from the timer thread
    timer.join()
    assert out[-1] == 99


def test_queue_marshal_notify_once_per_burst() -> None:
    m = gui.QueueMarshal(notify=lambda: wakes.append(1))
    wakes: List[int] = []
    for _ in range(50):
        m(lambda: None)
    assert len(wakes) == 1
    m.poll(max_calls=10)
    m(lambda: None)  # still busy from the first burst: the UI loop has not been told idle
    assert len(wakes) == 1
    m.poll()
    m(lambda: None)  # a new burst after the queue went idle
    assert len(wakes) == 2


def test_queue_marshal_close_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    m = gui.QueueMarshal()
    out: List[int] = []
    for i in range(5):
        assert m(functools.partial(out.append, i)) is True
    m.close()
    assert m.closed and m.pending == 0 and m.dropped == 5
    assert m(lambda: out.append(100)) is False  # never raises; tells the caller it dropped
    assert m.dropped == 6
    assert m.poll(timeout=None) == 0  # a closed marshal doesn't wait forever
    assert out == []


def test_a_raising_call_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = gui.QueueMarshal()
    out: List[str] = []

    def boom() -> None:
        raise ValueError("handler bug")

    m(boom)
    m(lambda: out.append("after"))
    with caplog.at_level(logging.ERROR, logger="realtime_sync.gui"):
        assert m.poll() == 2
    assert out == ["after"]
    assert m.errors == 1 and m.delivered == 2
    assert "handler bug" in caplog.text


def test_calls_never_overlap_even_with_nested_polls() -> None:
    m = gui.QueueMarshal()
    log: List[str] = []

    def first() -> None:
        log.append("first-start")
        m.poll()  # a modal dialog's nested event loop
        log.append("first-end")

    m(first)
    m(lambda: log.append("second"))
    m.poll()
    assert log == ["first-start", "first-end", "second"]


def test_is_ui_thread_and_one_time_blocking_warning(caplog: pytest.LogCaptureFixture) -> None:
    m = gui.QueueMarshal()
    assert gui.is_ui_thread(m) is True and m.on_ui_thread()
    assert gui.is_ui_thread(lambda fn: fn()) is None
    elsewhere: List[Optional[bool]] = []
    t = threading.Thread(target=lambda: elsewhere.append(gui.is_ui_thread(m)))
    t.start()
    t.join()
    assert elsewhere == [False]

    with caplog.at_level(logging.WARNING, logger="realtime_sync.gui"):
        assert gui.warn_if_blocking(m, "RealtimeClient.connect()") is True
        assert gui.warn_if_blocking(m, "RealtimeClient.wait_for()") is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "connect()" in warnings[0].getMessage()
    assert "worker thread" in warnings[0].getMessage()

    other = gui.QueueMarshal(ui_thread=t)  # another thread's marshal: no warning
    caplog.clear()
    assert gui.warn_if_blocking(other, "RealtimeClient.connect()") is False
    assert not caplog.records


# -- Tk -------------------------------------------------------------------------------------


class _Until:
    """Quits the Tk main loop once done() is true (a class, not a closure: no ref cycle)."""

    def __init__(self, root: Any, done: Callable[[], bool]) -> None:
        self.root = root
        self.done = done

    def __call__(self) -> None:
        if self.done():
            self.root.quit()
        else:
            self.root.after(5, self)


def _run_until(root: Any, done: Callable[[], bool]) -> None:
    """Run root.mainloop() until done() (checked on the Tk thread) or the deadlock guard."""
    root.after(5, _Until(root, done))
    guard = root.after(GUARD_MS, root.quit)
    root.mainloop()
    root.after_cancel(guard)


@pytest.mark.gui
@pytest.mark.parametrize("use_filehandler", [True, False], ids=["filehandler", "poll"])
def test_tk_calls_from_four_threads_run_on_main_thread_in_order(
    root: Any, use_filehandler: bool
) -> None:
    m = gui.TkMarshal(root, use_filehandler=use_filehandler)
    assert m.mode == ("filehandler" if use_filehandler else "poll")
    assert m.ui_thread is threading.main_thread()
    log: List[Tuple[int, int, int]] = []
    workers: List[threading.Thread] = []
    # producers start once the main loop runs, as the dispatcher thread would
    root.after(0, lambda: workers.extend(_producers(m, lambda t, i: log.append(
        (t, i, threading.get_ident())))))
    _run_until(root, lambda: len(log) >= THREADS * CALLS)
    for w in workers:
        w.join()
    _check_ordered(log, threading.main_thread().ident or 0)
    assert (m.delivered, m.pending, m.dropped, m.errors) == (THREADS * CALLS, 0, 0, 0)


@pytest.mark.gui
def test_tk_calls_queued_before_mainloop_run_once_it_starts(root: Any) -> None:
    m = gui.tk(root)
    out: List[int] = []
    def produce() -> None:
        for i in range(20):
            m(functools.partial(out.append, i))

    t = threading.Thread(target=produce)
    t.start()  # the UI thread is not in mainloop (e.g. still in connect()): must not block
    t.join(timeout=30)
    assert not t.is_alive()
    assert out == [] and m.pending == 20
    _run_until(root, lambda: len(out) == 20)
    assert out == list(range(20))


@pytest.mark.gui
def test_tk_ticks_are_bounded_so_other_events_interleave(root: Any) -> None:
    m = gui.tk(root, max_calls=10)
    log: List[str] = []

    def first() -> None:
        log.append("call")
        root.after(0, lambda: log.append("other"))  # another Tk event queued meanwhile

    m(first)
    for _ in range(99):
        m(lambda: log.append("call"))
    _run_until(root, lambda: log.count("call") == 100 and "other" in log)
    assert log.index("other") < 20  # it ran after the first tick, not after all 100 calls
    assert m.delivered == 100


@pytest.mark.gui
def test_tk_nested_event_loop_does_not_run_later_calls_early(root: Any) -> None:
    m = gui.tk(root)
    log: List[str] = []

    def modal() -> None:
        log.append("modal-start")
        for _ in range(20):
            root.update()  # what a modal dialog does
        log.append("modal-end")

    m(modal)
    m(lambda: log.append("next"))
    _run_until(root, lambda: "next" in log)
    assert log == ["modal-start", "modal-end", "next"]


@pytest.mark.gui
def test_tk_root_destroyed_drops_and_counts_later_calls(root: Any) -> None:
    m = gui.tk(root)
    out: List[int] = []
    m(lambda: out.append(1))
    _run_until(root, lambda: out == [1])
    for i in range(5):
        m(functools.partial(out.append, i))  # pending when the window goes away
    root.destroy()
    assert m.closed and m.dropped == 5 and m.pending == 0
    errors: List[BaseException] = []

    def late() -> None:
        try:
            for i in range(100):
                m(functools.partial(out.append, i))
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    t = threading.Thread(target=late)
    t.start()
    t.join(timeout=30)
    assert errors == [] and m.dropped == 105 and out == [1]


@pytest.mark.gui
def test_tk_close_from_another_thread(root: Any) -> None:
    m = gui.tk(root)
    out: List[int] = []
    m(lambda: out.append(1))
    t = threading.Thread(target=m.close)
    t.start()
    t.join(timeout=30)
    m(lambda: out.append(2))
    root.update()
    assert out == [] and m.dropped == 2 and m.closed
    root.update()  # the Tk side was released without errors


# -- Qt -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qapp() -> Any:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    QtWidgets = pytest.importorskip("PySide6.QtWidgets")
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def _qt_run_until(qapp: Any, done: Callable[[], bool]) -> None:
    from PySide6 import QtCore

    timer = QtCore.QTimer()
    timer.setInterval(5)
    def check() -> None:
        if done():
            qapp.quit()

    timer.timeout.connect(check)
    guard = QtCore.QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(qapp.quit)
    timer.start()
    guard.start(GUARD_MS)
    qapp.exec()
    timer.stop()
    guard.stop()


@pytest.mark.gui
def test_qt_calls_from_four_threads_run_on_gui_thread_in_order(qapp: Any) -> None:
    m = gui.qt()
    assert m.ui_thread is threading.main_thread()
    log: List[Tuple[int, int, int]] = []
    workers = _producers(m, lambda t, i: log.append((t, i, threading.get_ident())))
    _qt_run_until(qapp, lambda: len(log) >= THREADS * CALLS)
    for w in workers:
        w.join()
    _check_ordered(log, threading.main_thread().ident or 0)
    assert (m.delivered, m.pending, m.dropped) == (THREADS * CALLS, 0, 0)
    m.close()


@pytest.mark.gui
def test_qt_marshal_made_on_a_worker_thread_still_delivers_on_gui_thread(qapp: Any) -> None:
    made: List[gui.QtMarshal] = []
    t = threading.Thread(target=lambda: made.append(gui.qt()))
    t.start()
    t.join(timeout=30)
    m = made[0]
    assert m.ui_thread is threading.main_thread()
    idents: List[int] = []
    m(lambda: idents.append(threading.get_ident()))
    _qt_run_until(qapp, lambda: bool(idents))
    assert idents == [threading.main_thread().ident]


@pytest.mark.gui
def test_qt_bounded_ticks_and_close(qapp: Any) -> None:
    m = gui.qt(max_calls=7)
    out: List[int] = []
    for i in range(50):
        m(functools.partial(out.append, i))
    _qt_run_until(qapp, lambda: len(out) == 50)
    assert out == list(range(50))
    for i in range(3):
        m(functools.partial(out.append, i))
    m.close()
    m(lambda: out.append(-1))
    qapp.processEvents()
    assert len(out) == 50 and m.dropped == 4


@pytest.mark.gui
def test_qt_deleted_bridge_drops_calls_without_raising(qapp: Any) -> None:
    import shiboken6

    m = gui.qt()
    out: List[int] = []
    m(lambda: out.append(1))
    shiboken6.delete(m._bridge)  # what tearing down the application does to its QObjects
    assert m.closed and m.dropped == 1
    m(lambda: out.append(2))
    qapp.processEvents()
    assert out == [] and m.dropped == 2


@pytest.mark.gui
def test_qt_many_wakeups_leak_no_references(qapp: Any) -> None:
    """Each wake-up must not drop a reference to None/True/False (PySide6's emit() and
    postEvent() do, which aborts Python < 3.12 after a few hundred wake-ups)."""
    m = gui.qt(max_calls=2)

    def bursts(k: int) -> None:
        def produce() -> None:
            for _ in range(k):
                ran = threading.Event()
                m(lambda: None)
                m(lambda: None)
                m(ran.set)  # a third call: one bounded tick continues in the next
                ran.wait(30)
            m(qapp.quit)

        t = threading.Thread(target=produce, name="realtime-sync-test-bursts")
        t.start()
        guard = _qt_guard(qapp)
        qapp.exec()
        guard.stop()
        t.join(timeout=30)

    bursts(5)
    before = [sys.getrefcount(x) for x in (None, True, False)]
    bursts(1500)
    after = [sys.getrefcount(x) for x in (None, True, False)]
    assert m.delivered == 3 * 1505 + 2
    assert all(abs(a - b) < 50 for a, b in zip(after, before)), (before, after)
    m.close()


def _qt_guard(qapp: Any) -> Any:
    from PySide6 import QtCore

    guard = QtCore.QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(qapp.quit)
    guard.start(GUARD_MS)
    return guard


def test_qt_import_error_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_qt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(("PySide6", "PyQt6")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_qt)
    with pytest.raises(ImportError, match="pip install PySide6"):
        gui._import_qt()


# -- end to end: RealtimeClient against the fake server -------------------------------------


@pytest.mark.gui
def test_client_handlers_run_on_tk_main_thread_in_arrival_order(
    root: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("websockets")
    import realtime_sync as rs
    from realtime_sync.testing import FakeRealtimeServer

    n = 300
    seen: List[Tuple[str, str, int]] = []
    m = rs.gui.tk(root)
    with FakeRealtimeServer() as fake:
        client = rs.RealtimeClient(
            url=fake.url, api_key="sk-local", intent="transcription", marshal=m
        )
        client.on("*", lambda ev: seen.append(
            (ev.type, str(ev.get("delta", "")), threading.get_ident())))
        try:
            with caplog.at_level(logging.WARNING):
                client.connect(timeout=10)  # on the GUI thread, before mainloop: allowed
                client.connect(timeout=10)  # warned once, not twice
            ui_warnings = [r for r in caplog.records if "GUI thread" in r.getMessage()]
            assert len(ui_warnings) == 1

            def serve() -> None:
                for i in range(n):
                    fake.send_event({
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": "item_1", "content_index": 0, "delta": str(i),
                    })

            sender = threading.Thread(target=serve, name="realtime-sync-test-sender")
            sender.start()
            deltas = [s for s in seen if s[0].endswith(".delta")]

            def all_seen() -> bool:
                deltas[:] = [s for s in seen if s[0].endswith(".delta")]
                return len(deltas) >= n

            _run_until(root, all_seen)
            sender.join(timeout=30)
        finally:
            assert client.close(timeout=10)
    assert [d for _, d, _ in deltas] == [str(i) for i in range(n)]
    assert {ident for _, _, ident in seen} == {threading.main_thread().ident}
    types = [t for t, _, _ in seen]
    assert types.index("session.created") < types.index(
        "conversation.item.input_audio_transcription.delta")
    assert m.errors == 0


@pytest.mark.gui
def test_live_captions_example_transcribes_stops_and_renders_srt(root: Any) -> None:
    """examples/live_captions_tk.py against the fake server: finals in the window, SRT out."""
    pytest.importorskip("websockets")
    import argparse
    import importlib.util
    import pathlib

    from realtime_sync.testing import FakeRealtimeServer

    here = pathlib.Path(__file__).resolve().parent.parent / "examples"
    spec = importlib.util.spec_from_file_location("live_captions_tk", here / "live_captions_tk.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with FakeRealtimeServer() as fake:
        args = argparse.Namespace(url=fake.url, local=False, model=None, language="en",
                                  wav=str(here / "audio" / "hello.wav"), autostart=True)
        app = example.CaptionsApp(root, args)
        _run_until(root, lambda: len(app.finals) >= 1 and not app.busy)
        app.stop()
        _run_until(root, lambda: app.tr is None and not app.busy)
    assert "ms of audio" in app.text.get("1.0", "end")
    assert "input_audio_buffer.committed" in app.log.get("1.0", "end")
    srt = rs_render(app.finals)
    assert srt.startswith("1\n00:00:") and "ms of audio" in srt
    assert app.status.cget("text") == "stopped"


def rs_render(segments: List[Any]) -> str:
    from realtime_sync import captions

    return captions.render(segments, "srt")


@pytest.mark.gui
@pytest.mark.local_engine
def test_captions_app_offline_screenshot_shows_the_transcript(root: Any, tmp_path: Any) -> None:
    """The captions app with --local (local server + offline engine) on a two-sentence WAV:
    the transcript lands in the widget, and a screenshot of the window is taken."""
    import argparse
    import importlib.util
    import pathlib
    import shutil
    import subprocess

    try:
        from realtime_sync.server import local_engine

        local_engine()
    except Exception as exc:  # noqa: BLE001 - engine missing
        _unavailable(f"offline engine not installed: {exc}")
    here = pathlib.Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location(
        "live_captions_tk_local", here / "examples" / "live_captions_tk.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = argparse.Namespace(url=None, local=True, model=None, language="en",
                              wav=str(here / "tests" / "data" / "engine" / "two_turns.wav"),
                              autostart=True)
    root.deiconify()  # the fixture hides the root; the screenshot needs it mapped
    app = example.CaptionsApp(root, args)
    try:
        _run_until(root, lambda: len(app.finals) >= 2)
        text = app.text.get("1.0", "end").lower()
        root.update()
        shot = tmp_path / "captions.png"
        if shutil.which("import"):
            subprocess.run(["import", "-window", "root", str(shot)],
                           check=True, timeout=30, env=dict(os.environ))
            assert shot.stat().st_size > 2000  # not a blank screen
    finally:
        app.stop()
        _run_until(root, lambda: app.tr is None and not app.busy)
        if getattr(app, "server", None) is not None:
            app.server.stop()
    assert "hello world" in text and "first turn" in text
    assert "oranges" in text

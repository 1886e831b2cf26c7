"""The accept loop of the local server: a connection cap, descriptor exhaustion, send timeouts.

:class:`Listener` replaces ``websockets``' ``Server.serve_forever`` (which ends for good on
the first failed ``accept()``, e.g. ``EMFILE``). It runs on the ``rs-server-accept-<port>``
thread and hands each accepted socket to the library's per-socket handler on an
``rs-server-open-<n>`` thread (renamed ``rs-server-conn-<n>`` once the handshake is done).

* ``accept()`` failing for want of resources (``EMFILE``, ``ENFILE``, ``ENOBUFS``,
  ``ENOMEM``, no thread) logs one warning, backs off (50 ms doubling to 1 s) and keeps
  accepting; a line says when it accepts again. A socket accepted while the descriptors its
  connection needs are lacking (``websockets`` would drop it without a word) is answered
  ``HTTP 503`` the same way.
* Beyond ``max_connections`` open sockets a new one is answered ``HTTP 503`` and closed,
  without a thread.
* Every accepted socket gets a kernel send timeout (``SO_SNDTIMEO``): a send to a client that
  stopped reading fails after ``send_timeout`` seconds, and ``websockets`` then closes it.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import selectors
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

__all__ = ["Listener", "REFUSAL_503"]

REFUSAL_503 = (b"HTTP/1.1 503 Service Unavailable\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n"
               b"Retry-After: 1\r\n"
               b"Connection: close\r\n"
               b"Content-Length: 58\r\n\r\n"
               b"Too many connections to this server; try again shortly.\r\n\r\n")
"""What a socket beyond ``max_connections`` receives before it is closed."""

_SCARCE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_TRANSIENT = {errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN,
              errno.EWOULDBLOCK, errno.ECONNRESET, errno.EPERM}
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
LINGER_SECONDS = 1.0  # a refused socket is drained this long before it is closed
LINGER_MAX = 64  # refused sockets drained at once; more are closed at once
SPARE_FDS = 4  # descriptors probed per new connection (websockets 17 needs 3 besides the
# socket); more would refuse every client of a process that runs with little headroom


def default_max_connections(cap: int = 256, reserve: int = 64) -> int:
    """``cap``, or fewer when the descriptor limit cannot hold that many connections (each
    takes its socket plus :data:`SPARE_FDS` - 1 more, and ``reserve`` stay free), so that
    the cap answers 503 before the process runs out of descriptors (any thread)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):  # pragma: no cover - Windows
        return cap
    if soft == resource.RLIM_INFINITY:
        return cap
    return max(1, min(cap, (soft - reserve) // SPARE_FDS))


def set_send_timeout(sock: socket.socket, seconds: Optional[float]) -> None:
    """Make a blocking ``send`` on ``sock`` fail after ``seconds`` (``SO_SNDTIMEO``); the
    Python-level timeout stays as it is (the reader thread blocks in ``recv`` without one)."""
    if seconds is None or seconds <= 0 or sys.platform == "win32":
        return
    whole = int(seconds)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", whole, int((seconds - whole) * 1e6)))
    except (OSError, struct.error) as exc:  # pragma: no cover - platform without it
        log.debug("SO_SNDTIMEO not set: %s", exc)


class Listener:
    """Accepts connections on ``sock`` and runs ``handler(sock, addr)`` for each one.

    Args:
        sock: the listening socket (``websockets``' ``Server.socket``).
        handler: the per-socket handler (``websockets``' ``Server.handler``); it closes the
            socket before it returns.
        max_connections: open sockets at most (None: no cap); the excess gets HTTP 503.
        send_timeout: seconds a send may block (None: forever).

    :meth:`start` and :meth:`close` may be called from any thread.
    """

    def __init__(self, sock: socket.socket, handler: Callable[[socket.socket, Any], None], *,
                 max_connections: Optional[int] = None,
                 send_timeout: Optional[float] = None) -> None:
        self._sock = sock
        self._handler = handler
        self.max_connections = max_connections
        self.send_timeout = send_timeout
        self._lock = threading.Lock()
        self._open: Dict[int, socket.socket] = {}  # accepted, handler still running
        self._threads: Dict[int, threading.Thread] = {}
        self._numbers = itertools.count(1)
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.refused = 0
        """Sockets answered 503 since start (any thread may read it)."""
        self.accept_failures = 0
        """``accept()`` calls that failed for want of descriptors or memory."""

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Run the accept loop on a daemon thread called ``name``."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop accepting (the listening socket is closed) and join the accept thread."""
        self._closing.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for end in (self._wake_r, self._wake_w):
            end.close()

    def abort_pending(self) -> None:
        """Cut every socket whose handler still runs (after the sessions were closed)."""
        with self._lock:
            socks = list(self._open.values())
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join(self, deadline: float) -> None:
        """Join the handler threads until ``deadline`` (``time.monotonic()``)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.05))

    @property
    def open_count(self) -> int:
        """Sockets accepted whose handler has not ended yet (any thread)."""
        with self._lock:
            return len(self._open)

    # ---- the accept thread --------------------------------------------------------------

    def _run(self) -> None:
        poller = selectors.DefaultSelector()
        lingering: List[Tuple[float, socket.socket]] = []
        try:
            self._sock.setblocking(False)  # accept() after a wake-up must not block
            poller.register(self._sock, selectors.EVENT_READ)
            poller.register(self._wake_r, selectors.EVENT_READ)
        except (OSError, ValueError):  # closed before we started
            poller.close()
            return
        backoff = 0.0
        failing_since: Optional[float] = None
        try:
            while not self._closing.is_set():
                if backoff:  # let descriptors free up before the next accept()
                    self._closing.wait(backoff)
                    wait: Optional[float] = 0.0
                else:
                    wait = LINGER_SECONDS if lingering else None
                for key, _ in poller.select(wait):
                    if key.fileobj is not self._sock and key.fileobj is not self._wake_r:
                        self._drain(poller, key.fileobj, lingering)  # type: ignore[arg-type]
                if self._closing.is_set():
                    break
                lingering = self._expire(poller, lingering)
                try:
                    sock, addr = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    backoff = 0.0  # nothing waiting: sleep in select() until a client comes
                    continue
                except OSError as exc:
                    if self._closing.is_set() or exc.errno in (errno.EBADF, errno.EINVAL):
                        break
                    if exc.errno in _TRANSIENT:
                        continue
                    backoff, failing_since = self._scarce(exc, backoff, failing_since)
                    continue
                short = _lacking_descriptors(sock)
                if short is not None:  # the handler could not set the connection up
                    _refuse_now(sock)
                    backoff, failing_since = self._scarce(short, backoff, failing_since)
                    continue
                if failing_since is not None:
                    log.warning("accepting connections again after %.1f s",
                                time.monotonic() - failing_since)
                    failing_since, backoff = None, 0.0
                if (self.max_connections is not None
                        and self.open_count >= self.max_connections):
                    self._refuse(poller, sock, lingering)
                    continue
                if not self._spawn(sock, addr):
                    backoff, failing_since = self._scarce(
                        OSError(errno.EAGAIN, "cannot start a thread"), backoff, failing_since)
        except Exception:  # never end silently: the server would stop accepting for good
            log.exception("the accept loop failed; the server no longer accepts connections")
        finally:
            for _, sock in lingering:
                sock.close()
            poller.close()

    def _scarce(self, exc: OSError, backoff: float,
                failing_since: Optional[float]) -> Tuple[float, float]:
        self.accept_failures += 1
        if failing_since is None:
            log.warning("out of resources for new connections (%s) with %d open; backing off "
                        "and accepting again when they free up", exc, self.open_count)
            failing_since = time.monotonic()
        else:
            log.debug("still out of resources for new connections: %s", exc)
        return min(max(backoff * 2, BACKOFF_MIN), BACKOFF_MAX), failing_since

    def _spawn(self, sock: socket.socket, addr: Any) -> bool:
        set_send_timeout(sock, self.send_timeout)
        number = next(self._numbers)

        def run() -> None:
            try:
                self._handler(sock, addr)
            except Exception:  # the library logs its own; this is a safety net
                log.exception("connection handler failed")
                sock.close()
            finally:
                with self._lock:
                    self._open.pop(number, None)
                    self._threads.pop(number, None)

        thread = threading.Thread(target=run, name=f"rs-server-open-{number}", daemon=True)
        with self._lock:
            self._open[number] = sock
            self._threads[number] = thread
        try:
            thread.start()
        except RuntimeError:  # no more threads: like EMFILE, back off
            with self._lock:
                self._open.pop(number, None)
                self._threads.pop(number, None)
            sock.close()
            return False
        return True

    def _refuse(self, poller: selectors.BaseSelector, sock: socket.socket,
                lingering: List[Tuple[float, socket.socket]]) -> None:
        """Answer 503 and close; drain the request for a moment first, so that the client
        reads the answer instead of a reset."""
        self.refused += 1
        if self.refused == 1 or self.refused % 100 == 0:
            log.warning("refused a connection with 503: %d open, the maximum is %s "
                        "(%d refused so far)", self.open_count, self.max_connections,
                        self.refused)
        try:
            sock.setblocking(False)
            sock.send(REFUSAL_503)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(lingering) >= LINGER_MAX:
            sock.close()
            return
        try:
            poller.register(sock, selectors.EVENT_READ)
        except (OSError, ValueError):
            sock.close()
            return
        lingering.append((time.monotonic() + LINGER_SECONDS, sock))

    @staticmethod
    def _drain(poller: selectors.BaseSelector, sock: socket.socket,
               lingering: List[Tuple[float, socket.socket]]) -> None:
        try:
            more = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            more = b""
        if not more:
            poller.unregister(sock)
            sock.close()
            lingering[:] = [(t, s) for t, s in lingering if s is not sock]

    @staticmethod
    def _expire(poller: selectors.BaseSelector,
                lingering: List[Tuple[float, socket.socket]]
                ) -> List[Tuple[float, socket.socket]]:
        now = time.monotonic()
        keep = []
        for deadline, sock in lingering:
            if deadline > now:
                keep.append((deadline, sock))
                continue
            poller.unregister(sock)
            sock.close()
        return keep


def _lacking_descriptors(sock: socket.socket) -> Optional[OSError]:
    """The error when the process cannot open the descriptors a connection needs, else None
    (accept thread; probes with ``dup`` and closes them at once)."""
    spare: List[int] = []
    try:
        for _ in range(SPARE_FDS):
            spare.append(os.dup(sock.fileno()))
    except OSError as exc:
        return exc
    finally:
        for fd in spare:
            os.close(fd)
    return None


def _refuse_now(sock: socket.socket) -> None:
    """Answer 503 and close at once (no descriptor to spare for draining)."""
    try:
        sock.setblocking(False)
        sock.send(REFUSAL_503)
    except OSError:
        pass
    sock.close()

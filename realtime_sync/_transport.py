"""The network thread: owns ``websocket.WebSocketApp``, keepalive pings and the reconnect loop.

``WebSocketApp.run_forever`` runs on the ``realtime-sync-net`` thread with a small custom
read loop (websocket-client's ``dispatcher`` hook) so that one thread does everything network:
it reads frames, sends keepalive pings, notices a missing pong, wakes up at once for
``close()``, and sleeps between reconnect attempts (every sleep interruptible). No extra ping
thread is started. Frames are handed to the client's ``on_frame`` callback unparsed.
"""

from __future__ import annotations

import logging
import os
import select
import selectors
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import websocket

from . import _secrets
from ._backoff import Backoff
from .errors import NotConnectedError

__all__ = ["Transport", "Closed", "NET_THREAD", "RECONNECT_CODES", "FATAL_CODES"]

logger = logging.getLogger(__name__)

NET_THREAD = "realtime-sync-net"


class _QuietCloses(logging.Filter):
    """websocket-client logs every close at ERROR ("... - goodbye"); this client reports closes
    itself (``client.disconnected`` and its own log lines), so those records become DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            msg = str(record.msg)
            if msg.endswith(" - goodbye") or msg.endswith(" - reconnect"):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger("websocket").isEnabledFor(logging.DEBUG)
        return True


_ws_logger = logging.getLogger("websocket")
if not any(isinstance(f, _QuietCloses) for f in _ws_logger.filters):
    _ws_logger.addFilter(_QuietCloses())
RECONNECT_CODES = frozenset({None, 1001, 1005, 1006, 1011, 1012, 1013, 1014})
"""Close codes (``None``: no close frame, e.g. a TCP reset) that mean "try again"."""
FATAL_CODES = frozenset({3000, 4000})
"""Authentication (3000) and configuration (4000) failures: never reconnect."""


@dataclass
class Closed:
    """How one connection ended."""

    code: Optional[int] = None
    reason: str = ""
    error: Optional[BaseException] = None
    by_client: bool = False
    established: bool = False
    opened: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A one-line description (never contains a secret)."""
        if self.by_client:
            return "closed by client"
        if self.reason:
            text = self.reason
        elif self.error is not None:
            text = f"{type(self.error).__name__}: {self.error}"
        elif self.code is not None:
            text = f"closed by server with code {self.code}"
        else:
            text = "connection lost"
        return _secrets.redact(text)


RX_CHUNK = 262144
"""Bytes asked of the kernel per ``recv``: one system call serves many small frames."""


_ONES: Dict[int, int] = {}

try:  # the ``fast`` extra: a C XOR masker (websocket-client uses it too when installed)
    from wsaccel.xormask import XorMaskerSimple as _XorMasker
except ImportError:  # pragma: no cover - depends on the environment
    _XorMasker = None


def _mask_int(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``key`` using big integers (pure Python).

    The repeated key is ``key * 0x00000001_00000001...`` (one multiply, cached per length),
    so masking costs one conversion each way.
    """
    n = len(data)
    words = (n + 3) >> 2
    ones = _ONES.get(words)
    if ones is None:
        ones = int.from_bytes(b"\x01\x00\x00\x00" * words, "little")
        if len(_ONES) < 64:
            _ONES[words] = ones
    masked = (int.from_bytes(data, "little") ^ (int.from_bytes(key, "little") * ones)
              ).to_bytes(4 * words, "little")
    return masked[:n] if n & 3 else masked


def text_frame(data: Union[str, bytes]) -> bytes:
    """One masked client text frame (RFC 6455: FIN, opcode 1, a fresh random 4-byte key).

    Same bytes as websocket-client's ``ABNF.format`` with the same key, built in one pass.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    n = len(data)
    key = os.urandom(4)
    masked = _XorMasker(key).process(data) if _XorMasker is not None else _mask_int(data, key)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0xFE, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0xFF, n)
    return b"".join((head, key, masked))


def _PING_FRAME() -> bytes:  # noqa: N802 - a frame factory
    """A masked client ping frame (payload ``rs``)."""
    return websocket.ABNF.create_frame(b"rs", websocket.ABNF.OPCODE_PING).format()


class _HandshakeTimeout:
    """websocket-client reads its connect timeout from a process-wide default. Clients set it
    only while one of them is in a handshake (counted), and the caller's own value comes back
    when the last handshake ends: other websocket-client users are left as they were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: Optional[float] = None

    def acquire(self, seconds: float) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = websocket.getdefaulttimeout()
            self._users += 1
            current = websocket.getdefaulttimeout()
            if self._users == 1 or current is None or seconds > current:
                websocket.setdefaulttimeout(seconds)

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                websocket.setdefaulttimeout(self._saved)


_handshake_timeout = _HandshakeTimeout()


class _RxBuffer:
    """Buffered reads for websocket-client's frame parser (installed as ``frame_buffer.recv``).

    websocket-client reads each frame with two or three ``recv`` calls sized to the header and
    payload; this reads up to :data:`RX_CHUNK` bytes at once and serves those calls from memory,
    so a burst of events costs one system call (and one GIL release) per chunk, not per frame.
    """

    __slots__ = ("_recv", "_buf", "_pos")

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv
        self._buf = b""
        self._pos = 0

    def pending(self) -> bool:
        """True when bytes are buffered (the next frame may be parsed without waiting)."""
        return self._pos < len(self._buf)

    def __call__(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._recv(RX_CHUNK)  # raises on EOF / errors, like websocket-client's recv
            if len(buf) <= bufsize:
                self._buf, self._pos = b"", 0
                return buf
            self._buf, self._pos = buf, bufsize
            return buf[:bufsize]
        end = pos + bufsize
        self._pos = end
        return buf[pos:end]


class _ReadLoop:
    """websocket-client's custom ``dispatcher`` hook: our read loop on the network thread."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport

    # hooks websocket-client calls ---------------------------------------------------------------
    def signal(self, sig: int, handler: Any) -> None:
        """Never install signal handlers (Ctrl-C stays with the main thread)."""

    def abort(self) -> None:
        """Unused: Ctrl-C is handled by the main thread."""

    def timeout(self, seconds: Optional[float], callback: Callable[..., Any], *args: Any) -> None:
        callback(*args)

    def buffwrite(self, sock: Any, data: Union[str, bytes], send: Callable[..., int],
                  handle_disconnect: Any) -> int:
        return send(sock, data)

    def read(self, sock: Any, read_callback: Callable[[], bool]) -> None:
        t = self.t
        app = t._app
        if app is None:
            return
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ)
        sel.register(t._wake_r, selectors.EVENT_READ)
        pending = getattr(sock, "pending", None)
        rx = t._rx
        try:
            while app.keep_running:
                if rx is not None and rx.pending():
                    # a burst: parse what is buffered; ticks run when the buffer drains
                    if not read_callback():
                        return
                    continue
                now = time.monotonic()
                wait = t._next_deadline(now) - now
                if pending is not None and pending():
                    ready = True
                else:
                    ready = False
                    for key, _ in sel.select(max(0.0, min(wait, 1.0))):
                        if key.fileobj is t._wake_r:
                            t._drain_wake()
                        else:
                            ready = True
                if ready and not read_callback():
                    return
                reason = t._tick(time.monotonic())
                if reason is not None:
                    t._note(reason=reason)
                    app.keep_running = False
                    read_callback()  # runs websocket-client's teardown
                    return
        finally:
            sel.close()


class Transport:
    """Runs the connection on ``realtime-sync-net``; reconnects by the given policy.

    Callbacks (all run on the network thread): ``resolve()`` → (url, header lines) per attempt;
    ``on_open()``; ``on_frame(data, is_binary)`` for every data frame; ``on_closed(Closed) ->
    Optional[bool]`` after each connection (return False to stop reconnecting);
    ``on_reconnecting(attempt, delay)``; ``on_stopped(Closed)`` once at the end.
    """

    def __init__(
        self,
        *,
        resolve: Callable[[], Tuple[str, List[str]]],
        on_open: Callable[[], None],
        on_frame: Callable[[Union[str, bytes], bool], None],
        on_closed: Callable[[Closed], bool],
        on_reconnecting: Callable[[int, float], None],
        on_stopped: Callable[[Closed], None],
        backoff: Optional[Backoff],
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = None,
        sslopt: Optional[Dict[str, Any]] = None,
        proxy: Optional[Dict[str, Any]] = None,
        open_timeout: float = 10.0,
    ) -> None:
        self._resolve = resolve
        self._on_open_cb = on_open
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._on_reconnecting = on_reconnecting
        self._on_stopped = on_stopped
        self.backoff = backoff
        self.ping_interval = ping_interval if ping_interval and ping_interval > 0 else None
        if ping_timeout is None and self.ping_interval:
            ping_timeout = min(10.0, self.ping_interval)
        self.ping_timeout = ping_timeout
        self.sslopt = dict(sslopt or {})
        self.proxy = dict(proxy or {})
        self.open_timeout = open_timeout
        self._send_lock = threading.Lock()
        self._app: Optional[websocket.WebSocketApp] = None
        self._ws: Optional[websocket.WebSocket] = None
        self._rx: Optional[_RxBuffer] = None
        self._closing = threading.Event()
        self._close_deadline: Optional[float] = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._last_ping = 0.0
        self._last_pong = 0.0
        self._last_rx = 0.0
        self._closed_info = Closed()
        self._restart = threading.Event()
        self._restart_deadline: Optional[float] = None
        self._send_started: Optional[float] = None
        self._handshake_timeout_set = False
        self.stall_timeout = max(10.0, self.ping_timeout or 0.0, self.ping_interval or 0.0)
        self.thread: Optional[threading.Thread] = None
        self.bytes_sent = 0
        self.frames_sent = 0
        self.reconnects = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the network thread (once)."""
        if self.thread is not None:
            return
        self.thread = threading.Thread(target=self._run, name=NET_THREAD, daemon=True)
        self.thread.start()

    def close(self, timeout: float) -> bool:
        """Send a close frame, end the network thread, join it; True when it ended in time."""
        self._closing.set()
        self._close_deadline = time.monotonic() + min(1.0, max(0.05, timeout / 2))
        if self._send_lock.acquire(timeout=min(0.5, max(0.0, timeout / 4))):
            try:
                ws = self._ws
                if ws is not None and ws.connected:
                    try:
                        ws.send_close(websocket.STATUS_NORMAL, b"")
                    except Exception:  # noqa: BLE001 - the socket may already be gone
                        pass
            finally:
                self._send_lock.release()
        else:  # a send is stuck (the peer stopped reading): break the socket to free it
            self._abort_socket()
        if self._ws is None:  # still in the HTTP handshake: break it off
            app = self._app
            handshaking = getattr(getattr(app, "sock", None), "sock", None)
            if handshaking is not None:
                try:
                    handshaking.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._wake()
        t = self.thread
        ok = True
        if t is not None and t.ident != threading.get_ident():
            t.join(max(0.0, timeout))
            ok = not t.is_alive()
        if ok:
            for s in (self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass
        return ok

    def restart(self) -> None:
        """Drop the current connection and open a new one at once (any thread)."""
        self._restart.set()
        self._wake()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    # -- sending --------------------------------------------------------------------------------
    def send(self, data: Union[str, bytes]) -> int:
        """Send one text frame (any thread). Raises NotConnectedError when there is no socket."""
        with self._send_lock:
            return self.send_locked(data)

    def send_locked(self, data: Union[str, bytes]) -> int:
        """Send with the send lock already held (used to flush in order)."""
        ws = self._ws
        if ws is None or not ws.connected:
            raise NotConnectedError("not connected")
        frame = text_frame(data)
        try:
            with ws.lock:  # websocket-client's own writer lock (its pongs and close frames)
                sock = ws.sock
                if sock is None:
                    raise OSError("socket closed")
                self._send_started = time.monotonic()
                try:
                    sock.sendall(frame)
                finally:
                    self._send_started = None
        except (OSError, websocket.WebSocketException) as exc:
            raise NotConnectedError(f"connection lost while sending: {exc}") from None
        self.bytes_sent += len(data)
        self.frames_sent += 1
        return len(frame)

    @property
    def send_lock(self) -> threading.Lock:
        return self._send_lock

    # -- the network thread ---------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        final = Closed()
        try:
            while not self._closing.is_set():
                info = self._connect_once()
                final = info
                if self._closing.is_set():
                    info.by_client = True
                    self._on_closed(info)
                    break
                keep_going = self._on_closed(info)
                if not keep_going or self.backoff is None:
                    break
                if info.established:
                    attempt = 0
                if info.extra.get("restart"):
                    self._on_reconnecting(1, 0.0)
                    self.reconnects += 1
                    continue
                attempt += 1
                if self.backoff.gives_up(attempt):
                    final.extra["gave_up"] = True
                    break
                delay = self.backoff.delay(attempt)
                self._on_reconnecting(attempt, delay)
                if self._sleep(delay):
                    final = Closed(by_client=True)
                    break
                self.reconnects += 1
        except Exception as exc:  # noqa: BLE001 - the network thread must never die silently
            logger.exception("network thread failed")
            final = Closed(error=exc, reason=_secrets.redact(f"internal error: {exc}"))
        finally:
            self._ws = None
            self._on_stopped(final)

    def _sleep(self, delay: float) -> bool:
        """Sleep up to ``delay`` s; True when close() interrupted it."""
        return self._closing.wait(delay)

    def _connect_once(self) -> Closed:
        self._closed_info = info = Closed()
        try:
            url, headers = self._resolve()
        except Exception as exc:  # noqa: BLE001 - reported through on_closed
            info.error = exc
            info.reason = _secrets.redact(f"{type(exc).__name__}: {exc}")
            info.extra["fatal"] = True
            return info
        app = websocket.WebSocketApp(
            url,
            header=headers,
            on_open=self._cb_open,
            on_data=self._cb_data,
            on_error=self._cb_error,
            on_close=self._cb_close,
            on_pong=self._cb_pong,
        )
        self._app = app
        self._restart_deadline = None
        now = time.monotonic()
        self._last_ping = self._last_pong = self._last_rx = now
        kwargs: Dict[str, Any] = dict(
            sslopt=self.sslopt or None,
            skip_utf8_validation=True,  # json parsing validates the text anyway
            dispatcher=_ReadLoop(self),
            suppress_origin=True,
        )
        kwargs.update(self.proxy)
        self._handshake_timeout_set = True
        _handshake_timeout.acquire(self.open_timeout)
        try:
            app.run_forever(**kwargs)
        finally:
            if self._handshake_timeout_set:  # the handshake failed before on_open
                self._handshake_timeout_set = False
                _handshake_timeout.release()
            ws, self._ws = self._ws, None
            if ws is not None:
                try:
                    ws.shutdown()
                except Exception:  # noqa: BLE001
                    pass
            self._app = None
        return info

    def _note(self, **fields: Any) -> None:
        info = self._closed_info
        for k, v in fields.items():
            if k == "reason" and info.reason:
                continue
            setattr(info, k, v)

    # websocket-client callbacks (network thread) --------------------------------------------------
    def _cb_open(self, app: websocket.WebSocketApp) -> None:
        if self._handshake_timeout_set:
            self._handshake_timeout_set = False
            _handshake_timeout.release()
        ws = app.sock
        self._rx = None
        if ws is not None:
            ws.settimeout(None)
            fb = getattr(ws, "frame_buffer", None)
            if fb is not None and callable(getattr(fb, "recv", None)):
                self._rx = fb.recv = _RxBuffer(fb.recv)
        self._ws = ws
        self._closed_info.opened = True
        self._on_open_cb()

    def _cb_data(self, app: websocket.WebSocketApp, data: Union[str, bytes], opcode: int,
                 fin: Any) -> None:
        self._last_rx = time.monotonic()
        self._on_frame(data, opcode == websocket.ABNF.OPCODE_BINARY)

    def _cb_error(self, app: websocket.WebSocketApp, error: Any) -> None:
        info = self._closed_info
        if isinstance(error, websocket.ABNF):
            # websocket-client < 1.9.1 reports the server's close frame itself as the "error"
            if error.opcode == websocket.ABNF.OPCODE_CLOSE:
                raw = error.data or b""
                data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
                if len(data) >= 2 and info.code is None:
                    info.code = struct.unpack("!H", data[:2])[0]
                if len(data) > 2 and not info.reason:
                    info.reason = _secrets.redact(data[2:].decode("utf-8", "replace"))
            return
        if info.error is None:
            info.error = error
        code = getattr(error, "status_code", None)
        if code is not None and info.code is None:
            info.code = code
        if isinstance(error, (ssl.SSLError, ssl.CertificateError)):
            info.extra["fatal"] = True
        if isinstance(error, websocket.WebSocketBadStatusException):
            info.extra["http_status"] = error.status_code
            if error.status_code in (401, 403):
                info.extra["auth"] = True
            elif not info.reason:
                # not a Realtime server (a web page, a proxy): one line, not raw headers
                info.reason = (f"the server answered HTTP {error.status_code}, not a WebSocket "
                               "upgrade: is the URL right?")
        logger.debug("connection error: %s", _secrets.redact(str(error)))

    def _cb_close(self, app: websocket.WebSocketApp, code: Optional[int], reason: Any) -> None:
        info = self._closed_info
        if code is not None:
            info.code = code
        if reason and not info.reason:
            info.reason = _secrets.redact(str(reason))

    def _cb_pong(self, app: websocket.WebSocketApp, data: Any) -> None:
        self._last_pong = time.monotonic()

    def mark_established(self) -> None:
        """The client saw ``session.created`` on this connection (network thread)."""
        self._closed_info.established = True

    # keepalive and closing, inside the read loop ------------------------------------------------
    def _next_deadline(self, now: float) -> float:
        deadlines = [now + 1.0]
        if self._restart_deadline is not None:
            deadlines.append(self._restart_deadline)
        if self._close_deadline is not None and self._closing.is_set():
            deadlines.append(self._close_deadline)
        if self.ping_interval:
            if self._last_ping > self._last_pong:
                deadlines.append(self._last_ping + (self.ping_timeout or self.ping_interval))
            else:
                deadlines.append(max(self._last_rx, self._last_ping) + self.ping_interval)
        return min(deadlines)

    def _tick(self, now: float) -> Optional[str]:
        """Keepalive and close bookkeeping; a reason string means "tear down now"."""
        if self._closing.is_set():
            if self._close_deadline is not None and now >= self._close_deadline:
                return "closed by client"
            ws = self._ws
            if ws is not None and ws.connected:
                with self._send_lock:
                    try:
                        ws.send_close(websocket.STATUS_NORMAL, b"")
                    except Exception:  # noqa: BLE001
                        return "closed by client"
            return None
        started = self._send_started
        if started is not None and now - started >= self.stall_timeout:
            logger.warning("a send has been blocked for %.0f s: the server stopped reading",
                           now - started)
            self._abort_socket()
            return "send stalled: the server stopped reading"
        if self._restart.is_set():
            # a planned reconnect: send our close frame under the send lock, so every event
            # sent before it reaches the server, then wait briefly for the echo
            self._restart.clear()
            info = self._closed_info
            info.extra["restart"] = True
            info.reason = "session rollover: reconnecting on purpose"
            ws = self._ws
            with self._send_lock:
                try:
                    if ws is not None and ws.connected:
                        ws.send_close(websocket.STATUS_NORMAL, b"")
                except Exception:  # noqa: BLE001 - the read side notices a dead socket
                    pass
            self._restart_deadline = now + 2.0
            return None
        if self._restart_deadline is not None and now >= self._restart_deadline:
            return "session rollover: reconnecting on purpose"
        if not self.ping_interval:
            return None
        if self._last_ping > self._last_pong:
            if now - self._last_ping >= (self.ping_timeout or self.ping_interval):
                logger.warning("no pong within %.1f s: treating the connection as lost",
                               self.ping_timeout or self.ping_interval)
                return "ping timeout: the server stopped answering"
            return None
        if now - max(self._last_rx, self._last_ping) >= self.ping_interval:
            ws = self._ws
            if ws is not None and ws.connected and ws.lock.acquire(blocking=False):
                # never wait for the writer lock here: a stuck send must not stall reading
                try:
                    sock = ws.sock
                    # only when the kernel has room: a ping must never block this thread
                    if sock is not None and select.select([], [sock], [], 0)[1]:
                        sock.sendall(_PING_FRAME())
                        self._last_ping = now
                except OSError:
                    return None  # the read side notices the loss
                finally:
                    ws.lock.release()
        return None

    def _abort_socket(self) -> None:
        """Shut the TCP socket down so a blocked ``sendall`` or ``recv`` returns (any thread)."""
        ws = self._ws
        sock = getattr(ws, "sock", None) if ws is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

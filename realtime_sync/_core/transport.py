"""The transport: the network thread, sending, liveness, the frame-size cap, reconnects.

``WebSocketApp.run_forever`` runs on the ``realtime-sync-net`` thread with a small custom
read loop (websocket-client's ``dispatcher`` hook) so that one thread does everything network:
it reads frames, sends keepalive pings, judges liveness, wakes up at once for ``close()``, and
sleeps between reconnect attempts (every sleep interruptible). No extra ping thread is started.
Frames are handed to the client's ``on_frame`` callback unparsed, every registered secret
masked.

The socket is read 256 KiB at a time (:class:`_RxBuffer`). Whole, unfragmented, unmasked text
frames within that buffer are cut out of it directly (the fast path: a few byte comparisons per
frame, the frame-size cap checked from the header); control frames, fragments, masked frames,
oversized frames and a frame split across two reads go through websocket-client's own parser,
which reads from the same buffer. A buffer is searched once for a registered secret; only
frames from a buffer that holds one are searched again. Liveness is stamped per read, not per
frame. What happens after a close (whether and when to reconnect) is decided by
:mod:`realtime_sync._core.closing`.

This module owns every write to the socket: one send lock (:attr:`Transport.send_lock`)
serialises the client's frames and websocket-client's own control frames (its pong and close
replies come through :meth:`_ReadLoop.buffwrite`; its internal writer lock is replaced by a
no-op). The reader never waits for a writer: a control frame that cannot be written at once
(a send is in progress or the socket is full) is dropped and counted.

Liveness is judged by the time since the last *byte* received, whatever the frame state: a
ping goes out after ``ping_interval`` s of silence, and ``ping_interval + ping_timeout`` s
without a byte ends the connection, even in the middle of a frame. A send that makes no
progress for as long (the server stopped reading) ends it too. How a connection ended is
reported as a :class:`CloseCause`.

websocket-client internals relied on (checked by ``tests/test_hostile_network.py``): the
``dispatcher`` hook of ``run_forever`` (``read``/``buffwrite``), ``WebSocket.lock``,
``WebSocket.frame_buffer`` with ``recv``/``recv_length``/``length``/``header``,
``WebSocketBadStatusException.status_code``/``resp_headers``, and the handshake reading the
``header`` option by iteration once per request it writes, redirects included, after setting
``WebSocket.handshake_response`` (checked by ``tests/test_hostile_secrets.py``).
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
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple, Union

import websocket

from ..errors import NotConnectedError
from . import credentials as _secrets
from . import wire as _wire
from .backoff import Backoff
from .closing import (  # noqa: F401 - re-exported: the transport reports closes with them
    AUTH_HTTP_STATUSES,
    FATAL_CODES,
    RECONNECT_CODES,
    TRANSIENT_HTTP_STATUSES,
    CloseCause,
    Closed,
    parse_retry_after,
    schedule,
)
from .endpoint import same_origin

__all__ = ["Transport", "Closed", "CloseCause", "SendQueue", "NET_THREAD", "RECONNECT_CODES",
           "FATAL_CODES", "TRANSIENT_HTTP_STATUSES"]

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
class FrameTooLarge(websocket.WebSocketProtocolException):
    """A frame (or a fragmented message) announced more bytes than ``max_frame_size``."""


class RedirectRefused(websocket.WebSocketException):
    """The server redirected the handshake to another origin (fatal: never followed)."""


class _HandshakeHeaders:
    """The header lines of one connection attempt, as websocket-client reads them for each
    request it makes: the first request, and each redirect it follows (3xx + ``Location``).

    A redirect is followed only to the same origin (scheme, host and port), where the
    cleartext and host rules already checked still hold; one to any other origin raises
    :class:`RedirectRefused` before the request is written, so the key never goes there.
    Costs nothing per frame: it is read during the handshake only.
    """

    def __init__(self, lines: List[str], same_origin: Callable[[str], bool],
                 response: Callable[[], Any]) -> None:
        self._lines = lines
        self._same_origin = same_origin
        self._response = response  # the WebSocket's last handshake response (the 3xx)
        self._requests = 0

    def __bool__(self) -> bool:
        return bool(self._lines)

    def __contains__(self, item: object) -> bool:
        return item in self._lines

    def __iter__(self) -> Any:
        self._requests += 1
        if self._requests > 1:  # websocket-client is following a redirect
            response = self._response()
            status = getattr(response, "status", None)
            location = str((getattr(response, "headers", None) or {}).get("location", ""))
            if not self._same_origin(location):
                raise RedirectRefused(
                    f"the server redirected the handshake (HTTP {status}) to "
                    f"{_secrets.mask_url(location) or 'nowhere'}, another origin: redirects "
                    "are followed only within the same scheme, host and port, so that the "
                    "key never goes elsewhere (connect to that URL directly if you trust it)")
        return iter(self._lines)


class _NoLock:
    """Replaces websocket-client's writer lock: the transport's send lock serialises writes
    (websocket-client's own writes arrive through :meth:`_ReadLoop.buffwrite`)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

    def acquire(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def release(self) -> None:
        return None


Parked = Tuple[str, str, Union[str, bytes]]
"""A client event waiting for the next session: (type, event_id, JSON)."""


class SendQueue:
    """Client events sent while reconnecting, waiting (in order) for the next session.

    The client decides when an event may be parked and when the queue is flushed (both under
    its state lock, so a send can never slip between the flush and the state change); this
    holds them, bounds them and keeps their order.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._items: Deque[Parked] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def park(self, type_: str, event_id: str, data: Union[str, bytes]) -> None:
        """Queue one event; raises :class:`NotConnectedError` when ``limit`` are waiting."""
        if len(self._items) >= self.limit:
            raise NotConnectedError(
                f"reconnecting, and {self.limit} events already wait to be sent;"
                f" {type_} was not sent")
        self._items.append((type_, event_id, data))

    def event_ids(self) -> Set[str]:
        return {eid for _, eid, _ in self._items}

    def take(self) -> List[Parked]:
        """Everything waiting, oldest first; the queue is left empty."""
        items = list(self._items)
        self._items.clear()
        return items

    def put_back(self, items: List[Parked]) -> None:
        """Return events that could not be sent to the front, in their order."""
        self._items.extendleft(reversed(items))

    def discard(self) -> int:
        """Drop everything (closing); returns how many were dropped."""
        n = len(self._items)
        self._items.clear()
        return n


PING_RETRY = 0.1
"""Seconds before retrying a keepalive ping that could not be written without waiting."""

SEND_SLICE = 65536
"""Bytes written per ``send`` call: each slice written counts as progress (stall detection)."""

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
    """Buffered reads for websocket-client's frame parser (installed as ``frame_buffer.recv``),
    and the fast path that parses whole text frames out of the buffer itself.

    websocket-client reads each frame with two or three ``recv`` calls sized to the header and
    payload; this reads up to :data:`RX_CHUNK` bytes at once and serves those calls from memory,
    so a burst of events costs one system call (and one GIL release) per chunk, not per frame.
    Each chunk is searched once for a registered secret (``clean``): frames that lie inside a
    clean chunk need no search of their own.
    """

    __slots__ = ("_recv", "_buf", "_pos", "_t", "clean")

    def __init__(self, recv: Callable[[int], bytes], transport: Transport) -> None:
        self._recv = recv
        self._buf = b""
        self._pos = 0
        self._t = transport
        self.clean = True

    def pending(self) -> bool:
        """True when bytes are buffered (the next frame may be parsed without waiting)."""
        return self._pos < len(self._buf)

    def __call__(self, bufsize: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            t = self._t
            if t._readable:
                t._readable = False  # the read loop just saw the socket readable
            else:
                t._await_bytes()  # mid-frame: keep liveness and close() working while waiting
            buf = self._recv(RX_CHUNK)  # raises on EOF / errors, like websocket-client's recv
            t._last_rx = time.monotonic()
            if len(buf) <= bufsize:
                self._buf, self._pos = b"", 0
                return buf
            self.clean = not _secrets.contains_secret(buf)
            self._buf, self._pos = buf, bufsize
            return buf[:bufsize]
        end = pos + bufsize
        self._pos = end
        return buf[pos:end]

    def take_text_frames(self, deliver: Callable[[bytes, bool], None], limit: int) -> None:
        """Hand each whole, unfragmented, unmasked text frame at the head of the buffer to
        ``deliver(payload, clean)``, oldest first; stop at anything else (a control frame, a
        fragment, a frame over ``limit`` or one that is not complete yet), which is left for
        websocket-client's parser. Network thread, between frames only."""
        buf, pos = self._buf, self._pos
        end = len(buf)
        clean = self.clean
        while pos + 2 <= end and buf[pos] == 0x81:  # FIN, no RSV bits, text
            n = buf[pos + 1]
            if n < 126:
                start = pos + 2
            elif n == 126:
                start = pos + 4
                if start > end:
                    return
                n = (buf[pos + 2] << 8) | buf[pos + 3]
            elif n == 127:
                start = pos + 10
                if start > end:
                    return
                n = int.from_bytes(buf[pos + 2:start], "big")
            else:  # masked: a protocol error websocket-client reports
                return
            stop = start + n
            if stop > end or n > limit:
                return
            self._pos = pos = stop
            deliver(buf[start:stop], clean)


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
        """websocket-client's own writes (pong and close replies): never block the reader."""
        self.t._write_control(sock, data)
        return len(data)

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
        deliver = t._deliver_text
        limit = t.max_frame_size
        burst = 0
        try:
            while app.keep_running:
                if rx is not None and rx.pending():
                    # a burst: whole text frames straight from the buffer, anything else through
                    # websocket-client's parser; ticks run when the buffer drains, and every 64
                    # passes of an endless stream (close() and stall checks)
                    if not t._in_message:
                        rx.take_text_frames(deliver, limit)
                    if rx.pending() and not read_callback():
                        return
                    burst += 1
                    if burst & 63 == 0 and self._teardown_due(time.monotonic(), read_callback):
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
                if ready:
                    t._readable = True
                    alive = read_callback()
                    t._readable = False
                    if not alive:
                        return
                if self._teardown_due(time.monotonic(), read_callback):
                    return
        finally:
            sel.close()

    def _teardown_due(self, now: float, read_callback: Callable[[], bool]) -> bool:
        """Run the transport's tick; when it says so, tear the connection down (True)."""
        t = self.t
        reason = t._tick(now)
        if reason is None:
            return False
        t._note(reason=reason)
        app = t._app
        if app is not None:
            app.keep_running = False
        read_callback()  # runs websocket-client's teardown
        return True


class Transport:
    """Runs the connection on ``realtime-sync-net``; reconnects by the given policy.

    Callbacks (all run on the network thread): ``resolve()`` → (url, header lines) per attempt;
    ``on_open()``; ``on_frame(data, is_binary)`` for every data frame (every registered secret
    already masked in it); ``on_closed(Closed) ->
    bool`` after each connection (return False to stop reconnecting);
    ``on_reconnecting(attempt, delay, Closed)``; ``on_stopped(Closed)`` once at the end;
    ``on_protocol_error(message, length)`` when the server broke the framing rules.
    """

    def __init__(
        self,
        *,
        resolve: Callable[[], Tuple[str, List[str]]],
        on_open: Callable[[], None],
        on_frame: Callable[[Union[str, bytes], bool], None],
        on_closed: Callable[[Closed], bool],
        on_reconnecting: Callable[[int, float, Closed], None],
        on_stopped: Callable[[Closed], None],
        backoff: Optional[Backoff],
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = None,
        sslopt: Optional[Dict[str, Any]] = None,
        proxy: Optional[Dict[str, Any]] = None,
        open_timeout: float = 10.0,
        max_frame_size: int = _wire.MAX_FRAME_BYTES,
        on_protocol_error: Optional[Callable[[str, int], None]] = None,
    ) -> None:
        self._resolve = resolve
        self._on_open_cb = on_open
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._on_reconnecting = on_reconnecting
        self._on_stopped = on_stopped
        self._on_protocol_error = on_protocol_error
        self.backoff = backoff
        self.ping_interval = ping_interval if ping_interval and ping_interval > 0 else None
        if ping_timeout is None and self.ping_interval:
            ping_timeout = min(10.0, self.ping_interval)
        self.ping_timeout = ping_timeout
        self.sslopt = dict(sslopt or {})
        self.proxy = dict(proxy or {})
        self.open_timeout = open_timeout
        self.max_frame_size = int(max_frame_size)
        self.send_queue = SendQueue()  # sends made while reconnecting (see SendQueue)
        # one writer at a time; re-entrant so that close()/restart can send websocket-client's
        # close frame (it comes back through buffwrite) while holding it
        self._send_lock = threading.RLock()
        self._app: Optional[websocket.WebSocketApp] = None
        self._ws: Optional[websocket.WebSocket] = None
        self._rx: Optional[_RxBuffer] = None
        self._readable = False
        self._closing = threading.Event()
        self._close_deadline: Optional[float] = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._last_ping = 0.0
        self._last_rx = 0.0
        self._ping_retry = 0.0
        self._pending_pong: Optional[bytes] = None
        self._pong_retry = 0.0
        self._closed_info = Closed()
        self._restart = threading.Event()
        self._restart_deadline: Optional[float] = None
        self._send_progress: Optional[float] = None
        self._message_bytes = 0
        self._in_message = False
        self._handshake_timeout_set = False
        # silence allowed before the connection counts as dead (a ping goes out half-way)
        self.liveness_timeout: Optional[float] = (
            self.ping_interval + (self.ping_timeout or self.ping_interval)
            if self.ping_interval else None
        )
        self.stall_timeout = self.liveness_timeout or 30.0
        self.thread: Optional[threading.Thread] = None
        self._counter_lock = threading.Lock()
        self.bytes_sent = 0
        self.frames_sent = 0
        self.reconnects = 0
        self.control_frames_dropped = 0

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
        """Send with the send lock already held (used to flush in order).

        The frame goes out in slices; each slice written is progress, so a slow link is never
        taken for a stalled one, while a peer that stops reading is detected by the network
        thread after :attr:`stall_timeout` s without progress (it then shuts the socket down,
        which ends this call with :class:`NotConnectedError`).
        """
        ws = self._ws
        if ws is None or not ws.connected:
            raise NotConnectedError("not connected")
        frame = text_frame(data)
        sock = ws.sock
        try:
            if sock is None:
                raise OSError("socket closed")
            self._send_progress = time.monotonic()
            try:
                if len(frame) <= SEND_SLICE:
                    sock.sendall(frame)
                else:
                    view = memoryview(frame)
                    for start in range(0, len(frame), SEND_SLICE):
                        sock.sendall(view[start:start + SEND_SLICE])
                        self._send_progress = time.monotonic()
            finally:
                self._send_progress = None
        except (OSError, websocket.WebSocketException) as exc:
            raise NotConnectedError(f"connection lost while sending: {exc}") from None
        with self._counter_lock:
            self.bytes_sent += len(data)
            self.frames_sent += 1
        return len(frame)

    def _write_control(self, sock: Any, data: Union[str, bytes]) -> bool:
        """Write a small control frame if that cannot block: the send lock is free (or held by
        this thread) and the socket has room. Otherwise drop it (counted). Any thread.

        Returns:
            True when the frame was written.
        """
        if not self._send_lock.acquire(blocking=False):
            self._drop_control(data)
            return False
        try:
            if sock is None:
                raise websocket.WebSocketConnectionClosedException("socket is already closed.")
            if select.select([], [sock], [], 0)[1]:
                sock.sendall(data)
                return True
            self._drop_control(data)
        except OSError:
            pass  # the read side notices a dead socket
        finally:
            self._send_lock.release()
        return False

    def _drop_control(self, data: Union[str, bytes]) -> None:
        if isinstance(data, bytes) and data and data[0] & 0x0F == websocket.ABNF.OPCODE_PONG:
            # answered later, from the read loop, once the socket frees up (RFC 6455 5.5.3: a
            # pong for the most recent ping is enough, so an older pending one is dropped)
            replaced = self._pending_pong is not None
            self._pending_pong = data
            if not replaced:
                return
        with self._counter_lock:
            self.control_frames_dropped += 1
        logger.debug("a control frame was dropped (a send is in progress or the socket is full)")

    def _retry_pong(self, now: float) -> None:
        """Send a pong that could not be written when its ping arrived (network thread)."""
        pong, self._pending_pong = self._pending_pong, None
        ws = self._ws
        if pong is None or ws is None or not ws.connected:
            return
        if not self._write_control(ws.sock, pong):  # stored again when it still cannot go
            self._pong_retry = now + PING_RETRY

    @property
    def send_lock(self) -> threading.RLock:
        """The lock every socket write takes (hold it to send several frames in order)."""
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
                    info.cause = CloseCause.CLIENT_CLOSED
                    self._on_closed(info)
                    break
                if info.cause is None:
                    info.cause = info.final_cause()
                keep_going = self._on_closed(info)
                if not keep_going or self.backoff is None:
                    break
                retry = schedule(info, attempt, self.backoff, time.monotonic())
                if retry is None:
                    final.gave_up = True
                    break
                attempt = retry.count
                self._on_reconnecting(retry.attempt, retry.delay, info)
                if not retry.planned and self._sleep(retry.delay):
                    final = Closed(by_client=True, cause=CloseCause.CLIENT_CLOSED)
                    break
                self._count_reconnect()
        except Exception as exc:  # noqa: BLE001 - the network thread must never die silently
            logger.exception("network thread failed")
            final = Closed(error=exc, reason=_secrets.redact(f"internal error: {exc}"),
                           cause=CloseCause.INTERNAL_ERROR)
        finally:
            self._ws = None
            self._on_stopped(final)

    def _count_reconnect(self) -> None:
        with self._counter_lock:
            self.reconnects += 1

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
            info.unresolvable = True
            info.cause = CloseCause.HANDSHAKE_FAILED
            return info
        app: websocket.WebSocketApp
        guarded = _HandshakeHeaders(
            headers, lambda location: same_origin(location, url),
            lambda: getattr(getattr(app, "sock", None), "handshake_response", None))
        app = websocket.WebSocketApp(
            url,
            header=guarded,  # type: ignore[arg-type]  # an iterable of lines, read per request
            on_open=self._cb_open,
            on_data=self._cb_data,
            on_error=self._cb_error,
            on_close=self._cb_close,
            on_pong=self._cb_pong,
        )
        self._app = app
        self._restart_deadline = None
        now = time.monotonic()
        self._last_ping = self._last_rx = now
        self._message_bytes = 0
        self._in_message = False
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
            ws.lock = _NoLock()  # type: ignore[assignment]  # our send lock serialises writes (see buffwrite)
            fb = ws.frame_buffer
            self._rx = fb.recv = _RxBuffer(fb.recv, self)
            fb.recv_length = self._length_guard(fb)  # type: ignore[method-assign]
        self._last_rx = time.monotonic()
        self._ws = ws
        self._closed_info.opened = True
        self._on_open_cb()

    def _length_guard(self, fb: Any) -> Callable[[], None]:
        """Wrap ``frame_buffer.recv_length``: refuse a frame (or a fragmented message) over
        ``max_frame_size`` before one byte of its payload is buffered."""
        recv_length = fb.recv_length
        limit = self.max_frame_size

        def guarded() -> None:
            recv_length()
            length = fb.length or 0
            fin, opcode = fb.header[0], fb.header[4]
            if opcode >= 8:  # control frames: at most 125 bytes (RFC 6455 5.5)
                if length > 125:
                    self._too_large(f"a control frame of {length} bytes (the limit is 125)",
                                    length)
                return
            total = length if opcode != websocket.ABNF.OPCODE_CONT else (
                self._message_bytes + length)
            if total > limit:
                self._too_large(f"a frame announcing {total} bytes (max_frame_size is {limit})",
                                total)
            self._message_bytes = 0 if fin else total
            self._in_message = not fin  # a fragmented message: no fast path until its end

        return guarded

    def _too_large(self, what: str, length: int) -> None:
        message = f"protocol error from server: {what}; closing the connection"
        logger.warning("%s", message)
        self._note(cause=CloseCause.PROTOCOL_ERROR, reason=f"protocol error: {what}")
        ws = self._ws
        if ws is not None:  # tell the server why (1009: message too big), if that cannot block
            try:
                self._write_control(ws.sock, websocket.ABNF.create_frame(
                    struct.pack("!H", 1009), websocket.ABNF.OPCODE_CLOSE).format())
            except Exception:  # noqa: BLE001
                pass
            ws.connected = False  # no closing handshake: the rest of that frame is never read
        self._abort_socket()
        if self._on_protocol_error is not None:
            try:
                self._on_protocol_error(what, length)
            except Exception:  # noqa: BLE001 - reporting must not change the outcome
                logger.exception("reporting a protocol error failed")
        raise FrameTooLarge(what)

    def _cb_data(self, app: websocket.WebSocketApp, data: Union[str, bytes], opcode: int,
                 fin: Any) -> None:
        """A frame websocket-client parsed (the slow path: control frames around it, a
        fragmented message, a frame split over two reads)."""
        self._on_frame(_secrets.redact_frame(data), opcode == websocket.ABNF.OPCODE_BINARY)

    def _deliver_text(self, payload: bytes, clean: bool) -> None:
        """A text frame from the fast path (network thread); ``clean``: its read buffer holds
        no registered secret."""
        self._on_frame(payload if clean else _secrets.redact_frame(payload), False)

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
            info.tls_failed = True
        if isinstance(error, RedirectRefused):  # following it again would redirect again
            info.redirect_refused = True
            info.cause = CloseCause.HANDSHAKE_REFUSED
            info.reason = str(error)
        if isinstance(error, websocket.WebSocketBadStatusException):
            status = error.status_code
            info.http_status = status
            info.cause = CloseCause.HANDSHAKE_REFUSED
            headers = {str(k).lower(): v for k, v in (error.resp_headers or {}).items()}
            info.retry_after = parse_retry_after(headers.get("retry-after"))
        logger.debug("connection error: %s", _secrets.redact(str(error)))

    def _cb_close(self, app: websocket.WebSocketApp, code: Optional[int], reason: Any) -> None:
        info = self._closed_info
        if code is not None:
            info.code = code
        if reason and not info.reason:
            info.reason = _secrets.redact(str(reason))

    def _cb_pong(self, app: websocket.WebSocketApp, data: Any) -> None:
        """Pongs need no bookkeeping: every byte received counts as a sign of life."""

    def mark_established(self) -> None:
        """The client saw ``session.created`` on this connection (network thread)."""
        info = self._closed_info
        info.established = True
        info.established_at = time.monotonic()

    def mark_exchanged(self) -> None:
        """The session completed an exchange (e.g. ``response.done``): it is healthy, so the
        next reconnect starts its backoff over (network thread)."""
        self._closed_info.exchanged = True

    # keepalive and closing, inside the read loop ------------------------------------------------
    def _next_deadline(self, now: float) -> float:
        deadlines = [now + 1.0]
        if self._restart_deadline is not None:
            deadlines.append(self._restart_deadline)
        if self._close_deadline is not None and self._closing.is_set():
            deadlines.append(self._close_deadline)
        if self.ping_interval and self.liveness_timeout:
            if self._last_ping > self._last_rx:  # a ping is out: wait for any byte
                deadlines.append(self._last_rx + self.liveness_timeout)
            else:  # (a ping that could not be written is retried a little later, no spin)
                deadlines.append(max(self._last_rx + self.ping_interval, self._ping_retry))
                deadlines.append(self._last_rx + self.liveness_timeout)
        if self._send_progress is not None:
            deadlines.append(self._send_progress + self.stall_timeout)
        if self._pending_pong is not None:
            deadlines.append(self._pong_retry)
        return min(deadlines)

    def _await_bytes(self) -> None:
        """Wait until the socket is readable, running keepalive and close bookkeeping meanwhile
        (network thread, called by the frame parser in the middle of a frame)."""
        ws = self._ws
        sock = getattr(ws, "sock", None)
        if sock is None:
            raise websocket.WebSocketConnectionClosedException("socket is already closed.")
        pending = getattr(sock, "pending", None)
        while True:
            if pending is not None and pending():
                return
            now = time.monotonic()
            wait = max(0.0, min(self._next_deadline(now) - now, 1.0))
            readable, _, _ = select.select([sock, self._wake_r], [], [], wait)
            if sock in readable:
                return
            if self._wake_r in readable:
                self._drain_wake()
            reason = self._tick(time.monotonic())
            if reason is not None:
                self._note(reason=reason)
                raise websocket.WebSocketTimeoutException(reason)

    def _tick(self, now: float) -> Optional[str]:
        """Keepalive and close bookkeeping; a reason string means "tear down now"."""
        if self._closing.is_set():
            if self._close_deadline is not None and now >= self._close_deadline:
                return "closed by client"
            ws = self._ws
            if ws is not None and ws.connected:
                try:
                    ws.send_close(websocket.STATUS_NORMAL, b"")
                except Exception:  # noqa: BLE001
                    return "closed by client"
            return None
        progress = self._send_progress
        if progress is not None and now - progress >= self.stall_timeout:
            logger.warning("a send made no progress for %.0f s: the server stopped reading",
                           now - progress)
            self._note(cause=CloseCause.SEND_STALLED)
            self._abort_socket()
            return "send stalled: the server stopped reading"
        if self._restart.is_set():
            # a planned reconnect: send our close frame under the send lock, so every event
            # sent before it reaches the server, then wait briefly for the echo
            self._restart.clear()
            info = self._closed_info
            info.cause = CloseCause.RESTART
            info.reason = "session rollover: reconnecting on purpose"
            ws = self._ws
            if self._send_lock.acquire(timeout=1.0):
                try:
                    if ws is not None and ws.connected:
                        ws.send_close(websocket.STATUS_NORMAL, b"")
                except Exception:  # noqa: BLE001 - the read side notices a dead socket
                    pass
                finally:
                    self._send_lock.release()
            self._restart_deadline = now + 2.0
            return None
        if self._restart_deadline is not None and now >= self._restart_deadline:
            return "session rollover: reconnecting on purpose"
        if self._pending_pong is not None and now >= self._pong_retry:
            self._retry_pong(now)
        if not self.ping_interval or not self.liveness_timeout:
            return None
        silent = now - self._last_rx
        if silent >= self.liveness_timeout:
            logger.warning("nothing received for %.1f s: treating the connection as lost", silent)
            self._note(cause=CloseCause.KEEPALIVE_TIMEOUT)
            return f"ping timeout: nothing received for {silent:.1f} s"
        if silent >= self.ping_interval and self._last_ping <= self._last_rx:
            ws = self._ws
            # never waits: skipped while a send is in progress or the socket is full (the
            # silence deadline still applies)
            if ws is not None and ws.connected and now >= self._ping_retry:
                if self._write_control(ws.sock, _PING_FRAME()):
                    self._last_ping = now
                else:
                    self._ping_retry = now + PING_RETRY
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

"""The local Realtime server: a threaded WebSocket server (``websockets.sync.server``).

Threads: ``rs-server-accept-<port>`` runs the accept loop (:mod:`._listener`: connection
cap, descriptor exhaustion, send timeouts); each socket gets a handler thread
(``rs-server-open-<n>`` during the handshake, then ``rs-server-conn-<n>``: the read loop) plus
the library's reader and keepalive threads (renamed ``rs-server-recv-<n>`` /
``rs-server-ping-<n>``) and its session's worker pools. :meth:`RealtimeServer.stop` ends and
joins all of them.
"""

from __future__ import annotations

import inspect
import ipaddress
import itertools
import json
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Union
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode
from websockets.sync.server import Server, ServerConnection, serve

from ._listener import Listener
from ._live import LiveScript, LiveServerSession
from ._memory import fix_mmap_threshold, hold_reader
from ._recognizer import Recognizer, ScriptedRecognizer
from ._redact import QuietHandshakeFailures, RedactSecrets
from ._responses import EchoResponder, Responder
from ._rest import RestApi, RestFront
from ._session import MAX_BUFFER_SECONDS, ServerOptions, Session, new_id
from ._translation import ScriptedTranslator, TranslationEngine, TranslationSession
from ._vad import Vad, default_vad_factory

log = logging.getLogger(__name__)
_ws_log = logging.getLogger(__name__ + ".websockets")  # websockets' own log (handshakes)
_ws_log.addFilter(QuietHandshakeFailures())  # half-open attackers: no traceback each
for _logger in (log, _ws_log):
    _logger.addFilter(RedactSecrets())  # no Authorization header in a --debug log

__all__ = ["RealtimeServer", "Connection", "is_loopback"]

SEND_TIMEOUT = 10.0  # seconds a send may block on a client that stopped reading

TICK = 0.2  # read-loop wake-up period (expiry checks)
Hook = Callable[["Connection", Dict[str, Any]], Any]


def _error_text(code: str, message: str, type_: str = "invalid_request_error") -> str:
    return json.dumps({"type": "error", "event_id": new_id("event"),
                       "error": {"type": type_, "code": code, "message": message,
                                 "param": None, "event_id": None}}, separators=(",", ":"))


class Connection:
    """One client socket of a :class:`RealtimeServer`, with fault switches.

    All methods may be called from any thread and return within a bounded time.
    """

    def __init__(self, server: RealtimeServer, ws: ServerConnection, number: int) -> None:
        self.server = server
        self.number = number
        self.session: Any = None
        """The :class:`Session` (or :class:`TranslationSession`) of this socket."""
        self.received: List[Dict[str, Any]] = []
        """Every client event parsed on this socket, in order, when the server was made with
        ``record=True`` (as :class:`~realtime_sync.testing.FakeRealtimeServer` does); else
        empty, so that a long session's memory stays flat."""
        self.path = ws.request.path if ws.request is not None else ""
        self.headers = ws.request.headers if ws.request is not None else None
        self._ws = ws
        self._pongs = True
        self._closed = threading.Event()
        self._stall_lock = threading.Lock()
        protocol = ws.protocol
        original = protocol.send_frame

        def send_frame(frame: Any) -> None:
            if frame.opcode is Opcode.PONG and not self._pongs:
                return
            original(frame)

        protocol.send_frame = send_frame  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<Connection #{self.number} {self.path.split('?')[0]}>"

    @property
    def closed(self) -> bool:
        """True once the socket is closed (or dropped)."""
        return self._closed.is_set()

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block until the socket is closed; False on timeout."""
        return self._closed.wait(timeout)

    def _send_text(self, text: str) -> None:
        try:
            self._ws.send(text)
        except ConnectionClosed:
            pass
        except OSError as exc:
            log.debug("send on connection #%d failed: %s", self.number, exc)

    def send_event(self, event: Dict[str, Any]) -> None:
        """Send one server event (an ``event_id`` is added when missing)."""
        if "event_id" not in event:
            event = dict(event, event_id=new_id("event"))
        self._send_text(json.dumps(event, separators=(",", ":")))

    def send_raw(self, data: Union[str, bytes]) -> None:
        """Send one frame exactly as given: ``str`` -> text frame, ``bytes`` -> binary frame."""
        try:
            self._ws.send(data)
        except (ConnectionClosed, OSError):
            pass

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame (``code`` 1000-1014 or 3000-4999); waits for the handshake
        for at most the server's ``close_timeout``."""
        try:
            self._ws.close(code, reason)
        except Exception as exc:  # e.g. an invalid code
            log.debug("close of connection #%d failed: %s", self.number, exc)
            self.drop()

    def drop(self) -> None:
        """Cut the TCP connection without a close frame (the client sees 1006)."""
        try:
            self._ws.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._ws.close_socket()

    def stall(self, seconds: float) -> None:
        """Stop reading and writing (pongs included) for ``seconds``; returns as soon as the
        stall is in effect (at most 2 s).

        Implemented by holding the connection's protocol lock on an ``rs-server-stall-*``
        thread; :meth:`RealtimeServer.stop` ends a stall early.
        """
        self.server._stall(self, seconds)

    def answer_pings(self, on: bool = True) -> None:
        """Answer (default) or ignore the client's WebSocket pings."""
        self._pongs = on

    def expire_after(self, seconds: float) -> None:
        """Expire the session ``seconds`` from now: ``session_expired`` error, close 1001."""
        if self.session is not None:
            self.session.deadline = time.monotonic() + seconds


class RealtimeServer:
    """A local server speaking the GA Realtime protocol on ``ws://host:port/v1/realtime``.

    Args:
        host, port: where to listen (port 0 = any free port; see :attr:`url`).
        api_key: the key clients must present (``Authorization: Bearer`` or ``api-key``);
            None accepts any non-empty key.
        recognizer: speech recogniser for transcription (default :class:`ScriptedRecognizer`).
        vad_factory: ``callable(turn_detection) -> Vad | None`` (default :class:`EnergyVad`).
        responder: decides conversation responses (default: echo the last user text).
        session_duration: maximum session length in seconds (``expires_at``; 3600).
        ping_interval, ping_timeout: server keepalive pings (OpenAI pings about every 20 s).
        max_size: largest client frame accepted (default 32 MiB).
        compression: ``"deflate"`` to offer permessage-deflate like OpenAI; None (default) is
            faster on loopback.
        before: ``hook(connection, event) -> bool`` run on the read loop for every client
            event before the default handling; returning True skips the default handling.
        after: ``hook(connection, event)`` run after the default handling.
        translator: the engine of the translation protocol at ``/v1/realtime/translations``
            (default :class:`ScriptedTranslator`).
        max_connections: open sockets at most (None: no cap); beyond it a new socket is
            answered ``HTTP 503`` without a thread.
        send_timeout: seconds a send to a client may block (a client that stopped reading);
            then the connection is closed. None waits forever.
        max_buffer_seconds: uncommitted input audio a session holds at most (default 600 s,
            28.8 MB of PCM16 24 kHz); an append beyond it is refused with an ``error`` event
            (code ``input_audio_buffer_full``) and not applied.
        record: keep every parsed client event in :attr:`Connection.received` (tests; off
            by default so that memory does not grow with the events of a long session).
        live: the scripted model of the Live API at ``/v1/live/sessions`` (default
            :class:`LiveScript`; user transcripts come from ``recognizer``).
        rest: also serve the REST endpoints the ``openai`` SDK calls for client secrets and
            SIP calls, on :attr:`http_url` (a second port); :meth:`ring` makes a SIP call ring.

    Listening beyond loopback with ``api_key=None`` (any key) logs a warning at start-up.
    ``start()``/``stop()`` may be called from any thread; use it as a context manager.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: Optional[str] = "sk-local",
        recognizer: Optional[Recognizer] = None,
        vad_factory: Optional[Callable[[Optional[Dict[str, Any]]], Optional[Vad]]] = None,
        responder: Optional[Responder] = None,
        *,
        session_duration: Optional[float] = None,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = 20.0,
        close_timeout: float = 2.0,
        max_size: Optional[int] = 32 * 1024 * 1024,
        compression: Optional[str] = None,
        before: Optional[Hook] = None,
        after: Optional[Hook] = None,
        translator: Optional[TranslationEngine] = None,
        max_connections: Optional[int] = None,
        send_timeout: Optional[float] = SEND_TIMEOUT,
        max_buffer_seconds: float = MAX_BUFFER_SECONDS,
        record: bool = False,
        live: Optional[LiveScript] = None,
        rest: bool = False,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, not {max_connections}")
        if not max_buffer_seconds > 0:
            raise ValueError(f"max_buffer_seconds must be > 0, not {max_buffer_seconds}")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.options = ServerOptions(
            recognizer=recognizer if recognizer is not None else ScriptedRecognizer(),
            vad_factory=vad_factory or default_vad_factory,
            responder=responder if responder is not None else EchoResponder(),
            session_duration=float(session_duration or 3600.0),
            max_buffer_seconds=float(max_buffer_seconds),
        )
        self.max_connections = max_connections
        self.send_timeout = send_timeout
        self.record = record
        self.before = before
        self.after = after
        self.translator: TranslationEngine = (translator if translator is not None
                                              else ScriptedTranslator())
        self.live: LiveScript = live if live is not None else LiveScript()
        self._ws_args: Dict[str, Any] = dict(ping_interval=ping_interval,
                                             ping_timeout=ping_timeout,
                                             close_timeout=close_timeout, max_size=max_size,
                                             compression=compression)
        self._server: Optional[Server] = None
        self._listener: Optional[Listener] = None
        self._lock = threading.Lock()
        self._conns: Dict[int, Connection] = {}
        self._numbers = itertools.count(1)
        self._accepted = 0
        self._stalls: List[threading.Thread] = []
        self._handlers: List[threading.Thread] = []  # connection threads, joined by stop()
        self._stopping = threading.Event()
        self.rest: Optional[RestApi] = RestApi(api_key) if rest else None
        self._rest_front: Optional[RestFront] = None

    def __repr__(self) -> str:
        return f"<RealtimeServer {self.url if self._server else 'stopped'}>"

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> RealtimeServer:
        """Bind and start serving on an ``rs-server-accept-<port>`` thread; returns self.

        On glibc this fixes the process's mmap threshold at 4 MiB (``mallopt``), so that the
        copies of large client frames go back to the OS once freed (see :mod:`._memory`).
        """
        if self._server is not None:
            return self
        self._stopping.clear()
        fix_mmap_threshold()  # large frames' blocks go back to the OS once freed (glibc)
        accepted = inspect.signature(serve).parameters
        ws_args = {k: v for k, v in self._ws_args.items() if k in accepted}  # websockets < 15
        self._server = serve(self._handle, self.host, self.port,
                             process_request=self._process_request,
                             select_subprotocol=self._select_subprotocol,
                             logger=_ws_log, **ws_args)
        self.port = self._server.socket.getsockname()[1]
        # our own accept loop, not serve_forever(): that one ends on the first EMFILE
        self._listener = Listener(self._server.socket, self._server.handler,
                                  max_connections=self.max_connections,
                                  send_timeout=self.send_timeout)
        self._listener.start(f"rs-server-accept-{self.port}")
        if self.rest is not None:
            self._rest_front = RestFront(self.rest, self.host)
        log.info("local realtime server listening on %s", self.url)
        if self.api_key is None and not is_loopback(self.host):
            log.warning("listening on %s beyond loopback and accepting ANY API key: anyone "
                        "who can reach this port can use the server", self.host)
        return self

    @property
    def http_url(self) -> str:
        """``http://host:port/v1``, the REST base URL for ``openai.OpenAI(base_url=...)``
        (a server made with ``rest=True``, after :meth:`start`)."""
        if self._rest_front is None:
            raise RuntimeError("no REST endpoints on this server: use RealtimeServer(rest=True)")
        return self._rest_front.url

    def ring(self) -> str:
        """An incoming SIP call, as OpenAI's ``realtime.call.incoming`` webhook announces one;
        returns its ``call_id`` for ``calls.accept`` (``rest=True`` servers; any thread)."""
        if self.rest is None:
            raise RuntimeError("SIP calls need RealtimeServer(rest=True)")
        return self.rest.ring()

    @property
    def url(self) -> str:
        """``ws://host:port/v1/realtime`` (valid after :meth:`start`)."""
        return f"ws://{self.host}:{self.port}/v1/realtime"

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (1001), stop accepting, join all threads. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        front, self._rest_front = self._rest_front, None
        if front is not None:
            front.stop(timeout)
        with self._lock:
            stalls = list(self._stalls)
        for thread in stalls:
            thread.join(max(deadline - time.monotonic(), 0.1))
        listener, self._listener = self._listener, None
        if listener is not None:  # no new connections while we close the open ones
            listener.close(max(deadline - time.monotonic(), 0.1))
        server.socket.close()
        closers = []
        for conn in self.connections:  # close them all at once: each may wait for its client
            closer = threading.Thread(target=conn.close, args=(1001, "server stopping"),
                                      name=f"rs-server-close-{conn.number}", daemon=True)
            closer.start()
            closers.append((conn, closer))
        for conn, closer in closers:
            closer.join(max(deadline - time.monotonic(), 0.1))
            if closer.is_alive():
                conn.drop()
                closer.join(1.0)
        if listener is not None:
            listener.abort_pending()  # sockets still in their handshake
        _release(server)
        with self._lock:
            handlers = list(self._handlers)
        for thread in handlers:  # each ends its session (and joins its workers) on the way out
            if thread is not threading.current_thread():
                thread.join(max(deadline - time.monotonic(), 0.1))
        if listener is not None:
            listener.join(deadline)

    def __enter__(self) -> RealtimeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- inspection ---------------------------------------------------------------------

    @property
    def connections(self) -> List[Connection]:
        """The open connections, oldest first (any thread)."""
        with self._lock:
            return [c for _, c in sorted(self._conns.items())]

    @property
    def connection_count(self) -> int:
        """How many sockets completed the handshake since start (any thread)."""
        with self._lock:
            return self._accepted

    @property
    def refused_count(self) -> int:
        """How many sockets were answered 503 (``max_connections`` reached) since start."""
        listener = self._listener
        return listener.refused if listener is not None else 0

    # ---- websockets callbacks -----------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Any) -> Any:
        path = urlsplit(request.path).path.rstrip("/")
        if not path.endswith(("/realtime", "/realtime/translations", "/live/sessions")):
            return ws.respond(404, "Not Found: the Realtime API lives at /v1/realtime\n")
        return None

    @staticmethod
    def _select_subprotocol(ws: ServerConnection, offered: Any) -> Any:
        return "realtime" if "realtime" in offered else None

    def _stall(self, conn: Connection, seconds: float) -> None:
        holding = threading.Event()

        def hold() -> None:
            mutex = conn._ws.protocol_mutex
            if not mutex.acquire(timeout=max(seconds, 0.0) + 1.0):
                return
            holding.set()
            try:
                self._stopping.wait(seconds)
            finally:
                mutex.release()

        thread = threading.Thread(target=hold, name=f"rs-server-stall-{conn.number}",
                                  daemon=True)
        with self._lock:
            self._stalls = [t for t in self._stalls if t.is_alive()]
            self._stalls.append(thread)
        thread.start()
        holding.wait(min(max(seconds, 0.0), 2.0))  # return once the stall is in effect

    def _handle(self, ws: ServerConnection) -> None:
        number = next(self._numbers)
        threading.current_thread().name = f"rs-server-conn-{number}"
        ws.recv_events_thread.name = f"rs-server-recv-{number}"
        keepalive = getattr(ws, "keepalive_thread", None)
        if keepalive is not None:
            keepalive.name = f"rs-server-ping-{number}"
        conn = Connection(self, ws, number)
        with self._lock:
            self._conns[number] = conn
            self._accepted += 1
            self._handlers = [t for t in self._handlers if t.is_alive()]
            self._handlers.append(threading.current_thread())
        try:
            session = self._open(conn, ws)
            if session is not None:
                self._read_loop(conn, ws, session)
        except Exception:
            log.exception("connection #%d failed", number)
        finally:
            if conn.session is not None:
                conn.session.close()
            conn._closed.set()
            with self._lock:
                self._conns.pop(number, None)
            if keepalive is not None:  # it ends with the reader: stop() joins this thread
                keepalive.join(2.0)

    def _refuse(self, ws: ServerConnection, close_code: int, code: str, message: str) -> None:
        try:
            ws.send(_error_text(code, message))
            ws.close(close_code, f"invalid_request_error.{code}")
        except ConnectionClosed:
            pass

    def _open(self, conn: Connection, ws: ServerConnection) -> Optional[Session]:
        request = ws.request
        assert request is not None
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        headers = request.headers
        key: Optional[str] = None
        auth = headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        key = key or headers.get("api-key") or query.get("api-key")
        for proto in headers.get_all("Sec-WebSocket-Protocol"):
            for item in proto.split(","):
                item = item.strip()
                if item.startswith("openai-insecure-api-key."):
                    key = key or item[len("openai-insecure-api-key."):]
        if not key:
            self._refuse(ws, 3000, "invalid_api_key",
                         "You didn't provide an API key. You need to provide your API key in an "
                         "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                         "YOUR_KEY).")
            return None
        secret = self.rest.secret(key) if self.rest is not None else None
        if self.api_key is not None and key != self.api_key and secret is None:
            self._refuse(ws, 3000, "invalid_api_key", "Incorrect API key provided.")
            return None
        if "realtime=v1" in headers.get("OpenAI-Beta", "") or any(
                "openai-beta.realtime-v1" in p for p in headers.get_all("Sec-WebSocket-Protocol")):
            self._refuse(ws, 4000, "beta_api_shape_disabled",
                         "The Realtime Beta API is no longer supported. Please use /v1/realtime "
                         "for the GA API.")
            return None
        if urlsplit(request.path).path.rstrip("/").endswith("/live/sessions"):
            live = LiveServerSession(self.live, self.options.recognizer,
                                     self.options.vad_factory, self.options.session_duration,
                                     conn._send_text, conn.close)
            conn.session = live
            return live  # type: ignore[return-value]
        intent = query.get("intent")
        model = query.get("model") or query.get("deployment")
        preset = secret.update if secret is not None else None
        if secret is not None:
            model = model or secret.session.get("model")
            intent = intent or ("transcription" if secret.session.get("type") == "transcription"
                                else None)
        if "call_id" in query:
            call = self.rest.call(query["call_id"]) if self.rest is not None else None
            if call is None or call.status != "accepted" or call.session is None:
                self._refuse(ws, 4000, "call_not_active",
                             f"Call '{query['call_id'][:128]}' is not an accepted call.")
                return None
            preset, model, intent = call.session, model or call.session.get("model"), None
            call.on_end.append(lambda: conn.close(1000, "call ended"))
        if urlsplit(request.path).path.rstrip("/").endswith("/translations"):
            if not model:
                self._refuse(ws, 4000, "missing_model", "Missing required parameter: 'model'.")
                return None
            translation = TranslationSession(model, self.translator,
                                             self.options.session_duration,
                                             conn._send_text, conn.close)
            conn.session = translation
            if preset is not None and secret is not None \
                    and secret.session.get("type") == "translation":
                translation.preset(preset)
            translation.start()
            return translation  # type: ignore[return-value]
        if intent not in (None, "realtime", "transcription"):
            self._refuse(ws, 4000, "invalid_intent",
                         f"Invalid intent '{intent}'. Supported: 'realtime', 'transcription'.")
            return None
        if intent == "transcription":
            kind = "transcription"
        elif model:
            kind = "realtime"
        else:
            self._refuse(ws, 4000, "missing_model",
                         "Missing required parameter: 'model'.")
            return None
        session = Session(kind, model, self.options, conn._send_text, conn.close)
        conn.session = session
        if preset is not None and preset.get("type", kind) == kind:
            session.preset(preset)
        session.start()
        return session

    def _read_loop(self, conn: Connection, ws: ServerConnection, session: Any) -> None:
        # a large frame is handled with the reader held: it does not assemble the next one
        expired = False
        while True:
            remaining = session.deadline - time.monotonic()
            if remaining <= 0 and not expired:
                expired = True
                session.expire()
                continue
            try:
                data = ws.recv(timeout=min(max(remaining, 0.0), TICK) if not expired else TICK)
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            size = len(data)
            with hold_reader(ws, size):
                event = session.parse(data)
                del data  # a 15 MiB frame's text is not held while its event is handled
                if event is not None:
                    self._handle_event(conn, session, event)
                del event

    def _handle_event(self, conn: Connection, session: Any, event: Dict[str, Any]) -> None:
        if self.record:
            conn.received.append(event)
        try:
            if self.before is not None and self.before(conn, event):
                return
            session.dispatch(event)
            if self.after is not None:
                self.after(conn, event)
        except Exception:
            log.exception("handling %r failed", event.get("type"))
            session.error(None, "The server had an error while processing your request.",
                          type_="server_error", event_id=event.get("event_id"))


def _release(server: Server) -> None:
    """Let go of what ``websockets``' ``Server`` holds besides the listening socket (its
    shutdown pipe), without waiting for a ``serve_forever`` that never ran."""
    closed = getattr(server, "socket_closed", None)  # websockets >= 16 waits for it
    if closed is not None:
        closed.set()
    try:
        server.shutdown(close_connections=False)  # websockets >= 16
    except TypeError:  # older websockets: shutdown() takes no arguments
        server.shutdown()
    except OSError:
        pass
    for name in ("shutdown_watcher", "shutdown_notifier"):
        end = getattr(server, name, None)
        try:
            if isinstance(end, int):  # websockets < 16: an os.pipe() it never closes
                os.close(end)
            elif end is not None:
                end.close()
        except OSError:
            pass


def is_loopback(host: Optional[str]) -> bool:
    """True when ``host`` (an address or name to listen on) only reaches this machine.

    ``""``, ``0.0.0.0`` and ``::`` (every interface) are not loopback; a name counts as
    loopback only when every address it resolves to is (any thread; may resolve a name).
    """
    if not host:
        return False
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    if name.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)

"""Test helpers: :class:`FakeRealtimeServer`, a local Realtime server with fault switches.

Needs ``websockets`` (imported when a server is created, not when this module is imported).

    from realtime_sync.testing import FakeRealtimeServer
    with FakeRealtimeServer(recognizer=ScriptedRecognizer(["hi"])) as fake:
        client = rs.RealtimeClient(url=fake.url, api_key="sk-local", intent="transcription")
        ...
        fake.wait_received("input_audio_buffer.commit")
        fake.drop()                     # cut the TCP connection, no close frame

Every method may be called from any thread and returns within a bounded time; callbacks
given to :meth:`FakeRealtimeServer.reply` run on the server's read-loop thread of the
connection (``rs-server-conn-*``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    from .server import Connection, RealtimeServer, Recognizer, Responder

__all__ = ["FakeRealtimeServer"]

Events = Union[Dict[str, Any], Sequence[Dict[str, Any]]]
ReplyFn = Callable[[Dict[str, Any], "Connection"], Optional[Events]]


class _Rule:
    __slots__ = ("type", "events", "replace", "times")

    def __init__(self, type_: str, events: Union[Events, ReplyFn], replace: bool,
                 times: Optional[int]) -> None:
        self.type = type_
        self.events = events
        self.replace = replace
        self.times = times


class FakeRealtimeServer:
    """A :class:`~realtime_sync.server.RealtimeServer` plus recording and fault injection.

    Args:
        api_key: key clients must present (None accepts any non-empty key).
        recognizer: speech recogniser (default: scripted, ``"<N> ms of audio"``).
        responder: conversation responder (default: echo the last user text).
        session_duration: maximum session length in seconds (default 3600).
        vad_factory, host, port, and any other keyword: passed to ``RealtimeServer``.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(self, api_key: Optional[str] = "sk-local",
                 recognizer: Optional[Recognizer] = None,
                 responder: Optional[Responder] = None,
                 session_duration: Optional[float] = None, **server_kwargs: Any) -> None:
        from .server import RealtimeServer

        self._cond = threading.Condition()
        self._received: List[Dict[str, Any]] = []
        self._rules: List[_Rule] = []
        self._fail_updates: List[Dict[str, Any]] = []
        server_kwargs.setdefault("record", True)  # Connection.received, for received_on()
        self.server: RealtimeServer = RealtimeServer(
            api_key=api_key, recognizer=recognizer, responder=responder,
            session_duration=session_duration, before=self._before, after=self._after,
            **server_kwargs)

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeRealtimeServer:
        """Start listening (any thread); returns self."""
        self.server.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close all connections and join every server thread (any thread)."""
        self.server.stop(timeout)

    def __enter__(self) -> FakeRealtimeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/v1/realtime``."""
        return self.server.url

    # ---- what the server saw ------------------------------------------------------------

    @property
    def received(self) -> List[Dict[str, Any]]:
        """A snapshot of every client event received, in order, across connections."""
        with self._cond:
            return list(self._received)

    def received_types(self) -> List[str]:
        """The ``type`` of every received client event, in order."""
        return [str(e.get("type")) for e in self.received]

    def received_on(self, connection: int = -1) -> List[Dict[str, Any]]:
        """Client events received on one open connection (index into :attr:`connections`)."""
        return list(self.connections[connection].received)

    def wait_received(self, type_: str, timeout: float = 5.0, *, count: int = 1,
                      where: Optional[Callable[[Dict[str, Any]], bool]] = None
                      ) -> Dict[str, Any]:
        """Block until ``count`` client events of ``type_`` (matching ``where``) arrived, and
        return the ``count``-th; raise ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [e for e in self._received
                        if e.get("type") == type_ and (where is None or where(e))]
                if len(hits) >= count:
                    return hits[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {count} x {type_!r} received in {timeout} s "
                                       f"(got {len(hits)})")
                self._cond.wait(remaining)

    @property
    def connections(self) -> List[Connection]:
        """The open connections, oldest first (``len()`` gives how many are open)."""
        return self.server.connections

    @property
    def connection_count(self) -> int:
        """How many sockets were accepted since start (reconnects included)."""
        return self.server.connection_count

    def wait_connections(self, count: int, timeout: float = 5.0) -> Connection:
        """Block until ``count`` sockets were accepted in total and one is open; return the
        newest open connection. Raise ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            conns = self.connections
            if self.connection_count >= count and conns and conns[-1].session is not None:
                return conns[-1]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.connection_count} connection(s), wanted {count}")
            time.sleep(0.01)

    # ---- scripted behaviour -------------------------------------------------------------

    def reply(self, to_type: str, events: Union[Events, ReplyFn], *, replace: bool = False,
              times: Optional[int] = None) -> None:
        """Answer each client event of type ``to_type`` with ``events``.

        ``events`` is an event dict, a list of them, or ``callable(event, connection)``
        returning those (or None). They are sent after the default handling, or instead of
        it with ``replace=True``. ``times`` limits how often the rule fires.
        """
        with self._cond:
            self._rules.append(_Rule(to_type, events, replace, times))

    def clear_replies(self) -> None:
        """Forget every :meth:`reply` rule."""
        with self._cond:
            self._rules.clear()

    def fail_next_session_update(self, code: str = "invalid_value",
                                 message: str = "Invalid value: scripted failure.",
                                 param: Optional[str] = "session") -> None:
        """Reject the next ``session.update`` (any connection) with this ``error``; nothing of
        it is applied."""
        with self._cond:
            self._fail_updates.append({"code": code, "message": message, "param": param})

    def _take_rules(self, type_: Any, replace: bool) -> List[_Rule]:
        with self._cond:
            hits = [r for r in self._rules if r.type == type_ and r.replace == replace]
            for rule in hits:
                if rule.times is not None:
                    rule.times -= 1
            self._rules = [r for r in self._rules if r.times is None or r.times > 0]
            return hits

    @staticmethod
    def _fire(rules: List[_Rule], event: Dict[str, Any], conn: Connection) -> None:
        for rule in rules:
            out = rule.events(event, conn) if callable(rule.events) else rule.events
            if out is None:
                continue
            for item in [out] if isinstance(out, dict) else out:
                conn.send_event(dict(item))

    def _before(self, conn: Connection, event: Dict[str, Any]) -> bool:
        with self._cond:
            self._received.append(event)
            self._cond.notify_all()
            failure = None
            if event.get("type") == "session.update" and self._fail_updates:
                failure = self._fail_updates.pop(0)
        if failure is not None:
            conn.send_event({"type": "error", "error": {
                "type": "invalid_request_error", "code": failure["code"],
                "message": failure["message"], "param": failure["param"],
                "event_id": event.get("event_id")}})
            return True
        rules = self._take_rules(event.get("type"), True)
        self._fire(rules, event, conn)
        return bool(rules)

    def _after(self, conn: Connection, event: Dict[str, Any]) -> None:
        self._fire(self._take_rules(event.get("type"), False), event, conn)

    # ---- fault switches (act on the open connections) -----------------------------------

    def drop(self) -> None:
        """Cut every open connection's TCP socket without a close frame (client sees 1006)."""
        for conn in self.connections:
            conn.drop()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close every open connection with ``code`` / ``reason`` (1000-1014, 3000-4999)."""
        for conn in self.connections:
            conn.close(code, reason)

    def send_raw(self, data: Union[str, bytes]) -> None:
        """Send one frame as is (``str`` text, ``bytes`` binary) on every open connection."""
        for conn in self.connections:
            conn.send_raw(data)

    def send_event(self, event: Dict[str, Any]) -> None:
        """Send one server event (``event_id`` added if missing) on every open connection."""
        for conn in self.connections:
            conn.send_event(event)

    def stall(self, seconds: float) -> None:
        """Stop reading and writing, pongs included, on the open connections for ``seconds``.
        Returns once the stall is in effect."""
        for conn in self.connections:
            conn.stall(seconds)

    def stop_answering_pings(self) -> None:
        """Ignore the client's WebSocket pings on the open connections."""
        for conn in self.connections:
            conn.answer_pings(False)

    def answer_pings(self) -> None:
        """Answer the client's pings again on the open connections."""
        for conn in self.connections:
            conn.answer_pings(True)

    def expire_after(self, seconds: float) -> None:
        """Expire the open sessions after ``seconds``: ``session_expired`` error, close 1001."""
        for conn in self.connections:
            conn.expire_after(seconds)

"""The client's sender: checks and serialises client events, writes them, parks them while
reconnecting, and keeps each thread's "last sent" mark for ``wait_for``.

Every method may be called from any thread. Writes go through the transport's send lock, so
events from several threads are sent whole, each thread's in order.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Mapping, Optional, Set, Tuple, Union

from ..errors import ConnectionLostError, NotConnectedError
from ..events import BETA_CLIENT_TO_GA, MAX_EVENT_BYTES, MAX_EVENT_ID_LENGTH, new_event_id
from . import json_codec as _json
from .closing import CONNECTED, RECONNECTING
from .connection import Connection
from .dispatch import Router
from .replay import SessionReplayer
from .transport import Transport

__all__ = ["Sender", "Counters", "encode"]

Encoded = Tuple[str, str, Mapping[str, Any], Union[str, bytes]]


def encode(event: Mapping[str, Any]) -> Encoded:
    """Check a client event and serialise it: (type, event_id, the event with its id, JSON).

    Raises:
        TypeError: not a dict, or not JSON-serialisable.
        ValueError: no ``type``, a library (``client.*``) or beta-only type, an event over
            15 MiB, or an ``event_id`` over 512 characters.
    """
    if not isinstance(event, Mapping):
        raise TypeError(f"event must be a dict, not {type(event).__name__}")
    type_ = event.get("type")
    if not isinstance(type_, str) or not type_:
        raise ValueError("event has no 'type' (e.g. {'type': 'response.create'})")
    if type_.startswith("client."):
        raise ValueError(f"{type_!r} is a library event name; it cannot be sent")
    if type_ in BETA_CLIENT_TO_GA:
        raise ValueError(
            f"{type_!r} is a retired beta client event; use {BETA_CLIENT_TO_GA[type_]}")
    event_id = event.get("event_id")
    if event_id is None:
        event_id = new_event_id()
        event = dict(event)
        event["event_id"] = event_id
    elif not isinstance(event_id, str) or len(event_id) > MAX_EVENT_ID_LENGTH:
        raise ValueError("event_id must be a string of at most 512 characters")
    data = _json.dumps(event)
    if len(data) > MAX_EVENT_BYTES:
        raise ValueError(
            f"{type_} is {len(data)} bytes; the server accepts at most {MAX_EVENT_BYTES}"
            " per event (split audio into smaller appends)")
    return type_, event_id, event, data


class Counters:
    """The client's own ``stats()`` counters (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[str, int] = {
            "events_sent": 0, "audio_bytes_sent": 0, "audio_dropped": 0, "protocol_errors": 0,
        }

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._values)


class Sender:
    """Writes client events for one client (see the module docstring)."""

    RETRY_CONNECTED = 5.0
    """Seconds a send keeps retrying while the state still says connected but the socket
    is gone (the network thread is noticing the drop)."""

    def __init__(self, conn: Connection, router: Router, replayer: SessionReplayer,
                 counters: Counters, reconnects: bool) -> None:
        self._conn = conn
        self._router = router
        self._replayer = replayer
        self._counters = counters
        self._reconnects = reconnects
        self._local = threading.local()
        self.transport: Optional[Transport] = None
        """The current transport (set by ``connect()``)."""

    # -- what the client sends ------------------------------------------------------------------
    def send(self, encoded: Encoded) -> str:
        """Send an :func:`encode`-d event (queued while reconnecting); a ``session.update`` is
        tracked for the replay before it is written (its answer may come first)."""
        type_, event_id, event, data = encoded
        if type_ != "session.update":
            self.send_data(type_, event_id, data, queue_ok=True)
            return event_id
        session = event.get("session")
        if not isinstance(session, Mapping):
            raise ValueError("session.update needs a 'session' object")
        entry = (event_id, copy.deepcopy(dict(session)), data)
        with self._conn.lock:
            self._replayer.track(entry)
        try:
            self.send_data(type_, event_id, data, queue_ok=True)
        except BaseException:
            with self._conn.lock:
                self._replayer.untrack(entry)
            raise
        return event_id

    def send_append(self, frame: bytes, event_id: str, audio_bytes: int) -> str:
        """Send a prebuilt ``input_audio_buffer.append`` frame (never queued)."""
        self._router.raise_strict()
        self.send_data("input_audio_buffer.append", event_id, frame, queue_ok=False)
        self._counters.count("audio_bytes_sent", audio_bytes)
        return event_id

    def send_in_session(self, event: Mapping[str, Any], session_number: int) -> str:
        """Send only into session ``session_number`` while it is connected (never queued).

        Raises:
            ConnectionLostError: that session has ended (nothing was sent).
        """
        type_, event_id, _, data = encode(event)
        transport, conn = self.transport, self._conn
        if transport is not None:
            with transport.send_lock:  # a new session starts under this lock: no race
                if conn.state == CONNECTED and conn.sessions == session_number:
                    self.mark_sent(event_id)
                    try:
                        transport.send_locked(data)
                    except NotConnectedError as exc:
                        raise ConnectionLostError(
                            f"the session ended; {type_} was not sent") from exc
                    self._counters.count("events_sent")
                    return event_id
        raise ConnectionLostError(
            f"session {session_number} has ended; {type_} was not sent into another session")

    def send_data(self, type_: str, event_id: str, data: Union[str, bytes],
                  queue_ok: bool) -> None:
        """Write one serialised event now, or park it (``queue_ok``) while reconnecting.

        Raises:
            NotConnectedError: not connected (and not parked).
        """
        self.mark_sent(event_id)
        transport, conn = self.transport, self._conn
        parkable = queue_ok and self._reconnects
        give_up = time.monotonic() + self.RETRY_CONNECTED
        while True:
            if conn.state == CONNECTED and transport is not None:
                try:
                    with transport.send_lock:
                        if conn.state == CONNECTED:
                            transport.send_locked(data)
                            self._counters.count("events_sent")
                            return
                except NotConnectedError:
                    if not (parkable and not transport.closing):
                        raise
                    time.sleep(0.01)  # the network thread is noticing the drop
            with conn.lock:
                if conn.state == CONNECTED:
                    # connected again (or the drop is not noticed yet): send, never park it
                    if time.monotonic() < give_up:
                        continue
                    raise NotConnectedError("the connection is not usable; nothing was sent")
                if parkable and conn.state == RECONNECTING and transport is not None:
                    transport.send_queue.park(type_, event_id, data)
                    return
            raise NotConnectedError(conn.not_connected_message())

    # -- this thread's marks (for wait_for) -----------------------------------------------------
    def mark_sent(self, event_id: str) -> None:
        """Note a send by this thread: ``wait_for`` then looks at events from here on, and
        an ``error`` naming ``event_id`` raises there."""
        local = self._local
        local.mark = self._router.seq
        ids = getattr(local, "ids", None)
        if ids is None or getattr(local, "ids_mark", -1) != local.mark:
            ids = local.ids = deque(maxlen=64)
        ids.append(event_id)
        local.ids_mark = local.mark

    def set_mark(self, seq: int) -> None:
        """This thread has seen every event up to number ``seq``."""
        self._local.mark = seq

    def mark(self) -> Optional[int]:
        """This thread's mark, or None before its first send or wait."""
        return getattr(self._local, "mark", None)

    def sent_ids(self) -> Set[str]:
        """The ids this thread sent since its mark moved last."""
        ids: Optional[Deque[str]] = getattr(self._local, "ids", None)
        return set(ids or ())

"""The network thread's side of a client: parse frames, act on the session events the client
itself needs, start sessions (replay), and react to closes.

Every method runs on the network thread (``realtime-sync-net``) unless its docstring says
otherwise; :class:`~realtime_sync._core.transport.Transport` calls them.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, List, Mapping, Optional, Union

from ..errors import AuthenticationError, NotConnectedError
from ..events import Event, LibraryEvents, new_event_id
from . import credentials as _secrets
from . import json_codec as _json
from .closing import CLOSED, FATAL_CODES, Closed, decide
from .connection import Connection, http_reason
from .dispatch import Router
from .endpoint import Endpoint
from .replay import SessionReplayer
from .sender import Counters
from .transport import Transport

__all__ = ["Receiver"]

logger = logging.getLogger(__name__)

_EXCHANGE_DONE = frozenset({
    "response.done",
    "conversation.item.input_audio_transcription.completed",
})
"""Server events that end an exchange: a session that got one is healthy (backoff resets)."""

_SPECIAL = frozenset({"session.created", "session.updated", "session.closed", "error"})
"""Server events the client itself acts on before handlers see them."""


class Receiver:
    """Frames in, events out, for one client (see the module docstring)."""

    def __init__(self, *, conn: Connection, replayer: SessionReplayer, router: Router,
                 counters: Counters, endpoint: Endpoint, reconnects: bool) -> None:
        self._conn = conn
        self._replayer = replayer
        self._router = router
        self._counters = counters
        self._endpoint = endpoint
        self._reconnects = reconnects
        self._transport: Optional[Transport] = None
        self._last_error_event: Optional[Event] = None  # of the current connection

    def attach(self, transport: Transport) -> None:
        """The transport whose callbacks these are (``connect()``, before it starts)."""
        self._transport = transport


    def on_open(self) -> None:
        logger.debug("upgraded: %s", self._endpoint.url)

    def on_frame(self, data: Union[str, bytes], binary: bool = False) -> None:
        """One received frame (network thread): its secrets masked, then parsed and routed."""
        self.on_redacted_frame(_secrets.redact_frame(data), binary)

    def on_redacted_frame(self, data: Union[str, bytes], binary: bool = False) -> None:
        """A frame in which the transport already masked every registered secret (a key the
        server echoes never reaches anyone): parse and route it (network thread)."""
        if binary:
            self.protocol_error("binary frame (the protocol sends JSON text frames)", data)
            return
        try:
            parsed = _json.loads(data)
        except ValueError as exc:  # both JSON backends refuse the same frames (json_codec)
            self.protocol_error(f"frame is not JSON: {exc}", data, _json.salvage(data))
            return
        if not isinstance(parsed, dict):
            self.protocol_error(f"frame is JSON {type(parsed).__name__}, not an object", data)
            return
        type_ = parsed.get("type")
        if not isinstance(type_, str) or not type_:
            self.protocol_error("event has no 'type'", data)
            return
        event = Event(parsed)
        if type_ in _SPECIAL:
            if type_ == "session.created":
                self.on_session_created(event)
                return
            self._on_session_event(type_, event)
        elif type_ in _EXCHANGE_DONE:
            transport = self._transport
            if transport is not None:
                transport.mark_exchanged()
        self._router.deliver(event)

    def _on_session_event(self, type_: str, event: Event) -> None:
        """``error``, ``session.closed``, ``session.updated``: note what they mean for the
        connection and the replay before handlers see them (network thread)."""
        if type_ == "error":
            self._last_error_event = event
            err = event.get("error")
            event_id = err.get("event_id") if isinstance(err, Mapping) else None
            if event_id:
                with self._conn.lock:
                    self._replayer.refused(event_id)
        elif type_ == "session.closed":
            self._conn.session_ended = True
        elif type_ == "session.updated":
            with self._conn.lock:
                self._replayer.applied()

    def protocol_error(self, problem: str, data: Union[str, bytes],
                        about: Optional[Mapping[str, str]] = None) -> None:
        """Log, count and report a frame the client cannot use; ``about`` (a frame that did
        not parse: its ``event_type`` and ``item_id``, when they could be read) goes into the
        ``client.protocol_error`` event, so that a feature can end the turn it was about."""
        sample = data[:200] if isinstance(data, (str, bytes, bytearray)) else repr(data)[:200]
        if isinstance(sample, (bytes, bytearray)):
            sample = sample.decode("utf-8", "replace")
        sample = _secrets.redact(sample)
        problem = _secrets.redact(problem)
        logger.warning("protocol error from server: %s; frame starts %r", problem, sample)
        self._report_protocol_error(problem, sample, len(data), about)

    def on_frame_refused(self, problem: str, length: int) -> None:
        """The transport refused a frame (network thread; it logged it already): one
        ``client.protocol_error``."""
        self._report_protocol_error(problem, "", length)

    def _report_protocol_error(self, problem: str, sample: str, length: int,
                               about: Optional[Mapping[str, str]] = None) -> None:
        """Count one protocol error and deliver its ``client.protocol_error`` event."""
        self._counters.count("protocol_errors")
        self._router.deliver(Event(
            type=LibraryEvents.PROTOCOL_ERROR, message=problem, frame=sample,
            frame_length=length, **{k: _secrets.redact(v) for k, v in (about or {}).items()},
        ))

    def on_session_created(self, event: Event) -> None:
        """A new session (network thread): replay the config, re-send session updates the old
        connection never answered, flush what was queued, then let everyone send.

        The send lock is held throughout, so no other send can overtake the replay; the
        connection lock only briefly (a stuck send must never block ``close()`` or
        ``connect()``)."""
        transport = self._transport
        assert transport is not None
        transport.mark_established()
        conn = self._conn
        with transport.send_lock:
            with conn.lock:
                if conn.state == CLOSED:
                    self._router.deliver(event)
                    return
                session = event.get("session")
                sid = session.get("id") if isinstance(session, Mapping) else None
                frames, update_id = self._replayer.plan(transport.send_queue.event_ids(),
                                                        new_event_id)
                queued = transport.send_queue.take()
                first = conn.session_started(sid if isinstance(sid, str) else None)
                if first:
                    conn.initial_update_id = update_id
            flushed = self._replay(transport, frames, queued)
        self._router.deliver(event)
        with self._router.lock:
            seq = self._router.seq
        with conn.lock:
            conn.created_seq = seq
        if flushed:
            logger.info("sent %d events queued while reconnecting", flushed)
        self._router.deliver(Event(
            type=LibraryEvents.CONNECTED if first else LibraryEvents.RECONNECTED,
            url=self._endpoint.url, session_id=conn.session_id, generation=conn.sessions,
        ))

    def _replay(self, transport: Transport, frames: Iterable[Union[str, bytes]],
                queued: List[Any]) -> int:
        """Write the replayed frames, then the events queued while reconnecting (send lock
        held); returns how many queued events went out. A drop puts the rest back."""
        try:
            for data in frames:
                transport.send_locked(data)
        except NotConnectedError:
            with self._conn.lock:
                transport.send_queue.put_back(queued)
            return 0
        for index, item in enumerate(queued):
            try:
                transport.send_locked(item[2])
            except NotConnectedError:  # lost again: the rest waits for the next session
                with self._conn.lock:
                    transport.send_queue.put_back(queued[index:])
                return index
        return len(queued)

    def on_closed(self, info: Closed) -> bool:
        """After one connection (or attempt) ended (network thread). Returns whether to
        reconnect."""
        err, self._last_error_event = self._last_error_event, None
        err_obj = err.get("error") if err is not None else None
        err_code = err_obj.get("code") if isinstance(err_obj, Mapping) else None
        err_msg = err_obj.get("message") if isinstance(err_obj, Mapping) else None
        reason = info.describe()  # already redacted
        if info.http_status is not None:
            reason = http_reason(info.http_status, info.retry_after)
        if err_msg and not info.by_client and info.code in FATAL_CODES | {1001, None}:
            reason = _secrets.redact(str(err_msg))
        decision = decide(info, state=self._conn.state, session_ended=self._conn.session_ended,
                          error_code=err_code,
                          reconnect_enabled=self._reconnects)
        _, generation = self._conn.connection_ended(decision, info, reason, self._endpoint.url)
        if decision.announce:
            exception = (AuthenticationError(
                f"authentication failed: {reason}", code=info.code, reason=reason,
                status=info.http_status) if info.auth_failed else None)
            self._router.deliver(Event(
                type=LibraryEvents.DISCONNECTED, reason=reason, code=info.code,
                will_reconnect=decision.reconnect, error_code=err_code,
                cause=info.final_cause(), http_status=info.http_status,
                generation=generation, exception=exception,
            ), block=not info.by_client)
        self._router.wake_waiters()
        if decision.warn:
            logger.warning("disconnected: %s", reason)
        return decision.reconnect

    def on_reconnecting(self, attempt: int, delay: float, info: Closed) -> None:
        cause = info.final_cause()
        logger.info("reconnecting in %.2f s (attempt %d, %s)", delay, attempt, cause.value)
        self._router.deliver(Event(
            type=LibraryEvents.RECONNECTING, attempt=attempt, delay=delay, cause=cause,
            http_status=info.http_status, retry_after=info.retry_after,
            reason=self._conn.reason,
        ))

    def on_stopped(self, info: Closed) -> None:
        self._conn.stopped(info, self._endpoint.url)
        self._router.wake_waiters()

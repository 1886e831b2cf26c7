"""The client's connection state machine: one state, one lock, its transitions.

States (``RealtimeClient.state``)::

    idle -> connecting -> connected <-> reconnecting
                 |            |             |
                 +------> disconnected <----+        any -> closed (close())

``connect()`` moves idle/disconnected to connecting and waits until a session starts
(connected) or the attempt ends; the network thread moves connected/reconnecting by what
:func:`~realtime_sync._core.closing.decide` says; ``close()`` ends in closed for good.
Every field is guarded by :attr:`Connection.lock` (re-entrant); :attr:`Connection.changed`
is notified on every transition.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Tuple

from ..errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    NotConnectedError,
    TimeoutError,
)
from .closing import (
    CLOSED,
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    IDLE,
    RECONNECTING,
    Closed,
    Decision,
    Failure,
)
from .wait import Deadline, wait_until

__all__ = ["Connection", "http_reason", "failure_error"]


def http_reason(status: int, retry_after: Optional[float]) -> str:
    """One line about an HTTP answer to the upgrade (never a header or a body)."""
    if status < 400 or status in (400, 404, 405):
        # a web page, a redirect, a wrong path: not a Realtime server
        return (f"the server answered HTTP {status}, not a WebSocket upgrade: "
                "is the URL right?")
    text = f"the server answered the upgrade with HTTP {status}"
    if retry_after is not None:
        text += f" (Retry-After {retry_after:.0f} s)"
    return text


def failure_error(failure: Failure, closed: Closed, reason: str, url: str) -> BaseException:
    """The exception ``connect()`` raises for a first connection that got no session."""
    code, status = closed.code, closed.http_status
    if failure is Failure.AUTH:
        return AuthenticationError(f"authentication failed: {reason}", code=code, reason=reason,
                                   status=status)
    if failure is Failure.REFUSED_CONFIG:
        return ConfigurationError(f"the server refused the connection: {reason}")
    if failure is Failure.BAD_OPTIONS and isinstance(closed.error, ConfigurationError):
        return closed.error
    hint = (" (a temporary condition: try connect() again later)"
            if failure is Failure.CONNECT_LATER else "")
    return ConnectError(f"could not connect to {url}: {reason}{hint}", code=code,
                        reason=reason, status=status, retry_after=closed.retry_after)


class Connection:
    """The state of one client's connection (see the module docstring). Any thread."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.state = IDLE
        self.sessions = 0
        """Sessions so far (``session_generation``)."""
        self.session_id: Optional[str] = None
        self.reason: Optional[str] = None
        """Why the last connection ended (redacted), until the next session starts."""
        self.connect_error: Optional[BaseException] = None
        self.session_ended = False
        """The server ended a translation session on request (``session.closed``)."""
        self.initial_update_id: Optional[str] = None
        self.created_seq = 0
        """The router's number of the first session's ``session.created``."""
        self.close_result: Optional[bool] = None

    def set(self, state: str) -> None:
        """Move to ``state`` and wake every waiter (lock held)."""
        self.state = state
        self.changed.notify_all()

    def start_connecting(self, check: Callable[[], None]) -> bool:
        """``connect()``'s transition (lock held): True when a connection must be opened
        (``check()`` passed first), False when one is already up (or being re-established).

        Raises:
            NotConnectedError: the client is closed.
            ConnectError: another thread is in ``connect()``.
        """
        if self.state == CLOSED:
            raise NotConnectedError("this client is closed; create a new RealtimeClient")
        if self.state in (CONNECTED, RECONNECTING):
            return False
        if self.state == CONNECTING:
            raise ConnectError("connect() is already in progress on another thread")
        check()
        self.connect_error = None
        self.set(CONNECTING)
        return True

    def wait_connected(self, deadline: Deadline, url: str,
                       timeout: Optional[float]) -> Tuple[Optional[str], int]:
        """Wait until the first attempt settles; returns the ``event_id`` of the session
        config's update (None without a config) and the number of ``session.created``.

        Raises what ``connect()`` documents when no session started.
        """
        with self.changed:
            wait_until(self.changed, lambda: self.state != CONNECTING, deadline)
            if self.state == CONNECTING:
                raise TimeoutError(f"no session.created from {url} within {timeout} s")
            # a session was created and already dropped: the client is reconnecting, as it
            # would be had connect() returned a moment earlier
            if self.state != CONNECTED and not (self.state == RECONNECTING and self.sessions):
                if self.connect_error is not None:
                    raise self.connect_error
                if self.state == CLOSED:
                    raise ConnectError("close() was called while connecting")
                raise ConnectError("connection closed before session.created: "
                                   f"{self.reason or 'no reason given'}")
            return self.initial_update_id, self.created_seq

    def session_started(self, session_id: Optional[str]) -> bool:
        """A new session (network thread, lock held); True for the client's first."""
        self.sessions += 1
        self.session_id = session_id
        self.reason = None
        self.set(CONNECTED)
        return self.sessions == 1

    def connection_ended(self, decision: Decision, closed: Closed, reason: str,
                         url: str) -> Tuple[str, int]:
        """Apply :func:`decide`'s ``decision`` (network thread); returns the state before and
        the session number that ended."""
        with self.lock:
            was, generation = self.state, self.sessions
            self.reason = reason
            if decision.failure is not None:
                self.connect_error = failure_error(decision.failure, closed, reason, url)
            self.set(decision.state)
            return was, generation

    def stopped(self, closed: Closed, url: str) -> None:
        """The network thread ends (no more reconnects)."""
        with self.lock:
            if self.state not in (CLOSED, DISCONNECTED):
                if self.state == CONNECTING and self.connect_error is None:
                    self.connect_error = ConnectError(
                        f"could not connect to {url}: {closed.describe()}")
                if closed.gave_up:
                    self.reason = "gave up reconnecting"
                self.state = DISCONNECTED
            self.changed.notify_all()

    def not_connected_message(self) -> str:
        """Why the client cannot send now, in words."""
        state = self.state
        if state == IDLE:
            return "not connected: call connect() first"
        if state == CLOSED:
            return "the client is closed"
        if state == RECONNECTING:
            return "the connection dropped and the client is reconnecting"
        return f"not connected ({self.reason or 'connection lost'})"

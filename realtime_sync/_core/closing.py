"""How a connection ended (:class:`Closed`) and what the client does next (:func:`decide`).

The transport fills a :class:`Closed` record for every connection or attempt (network thread);
:func:`decide` turns it, with the client's state, into one :class:`Decision`: reconnect or
not, the next state, what ``connect()`` raises, whether handlers hear ``client.disconnected``.
It is a pure function (no locks, no sockets, no clock), so the whole policy is a table
(``tests/test_reconnect_decision.py``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Optional

from . import credentials as _secrets
from .backoff import Backoff

__all__ = ["CloseCause", "Closed", "Decision", "Failure", "Retry", "decide", "schedule",
           "parse_retry_after",
           "RECONNECT_CODES", "FATAL_CODES", "TRANSIENT_HTTP_STATUSES", "AUTH_HTTP_STATUSES",
           "IDLE", "CONNECTING", "CONNECTED", "RECONNECTING", "DISCONNECTED", "CLOSED"]

IDLE, CONNECTING, CONNECTED, RECONNECTING, DISCONNECTED, CLOSED = (
    "idle", "connecting", "connected", "reconnecting", "disconnected", "closed",
)
"""The client's connection states (``RealtimeClient.state``)."""

RECONNECT_CODES = frozenset({None, 1001, 1005, 1006, 1011, 1012, 1013, 1014})
"""Close codes (``None``: no close frame, e.g. a TCP reset) that mean "try again"."""
FATAL_CODES = frozenset({3000, 4000})
"""Authentication (3000) and configuration (4000) failures: never reconnect."""


TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Handshake answers that mean "try again later" (retried while reconnecting)."""
AUTH_HTTP_STATUSES = frozenset({401, 403})


class CloseCause(str, enum.Enum):
    """Why a connection ended (the ``cause`` of ``client.disconnected``/``client.reconnecting``).

    A ``str`` enum: ``event.cause == "keepalive_timeout"`` and ``CloseCause.KEEPALIVE_TIMEOUT``
    both work.
    """

    CLIENT_CLOSED = "client_closed"
    """``close()`` was called."""
    SERVER_CLOSED = "server_closed"
    """The server sent a close frame (``code`` says which)."""
    CONNECTION_LOST = "connection_lost"
    """The TCP connection ended without a close frame (reset, EOF)."""
    KEEPALIVE_TIMEOUT = "keepalive_timeout"
    """No byte arrived for ``ping_interval + ping_timeout`` seconds."""
    SEND_STALLED = "send_stalled"
    """A send made no progress for the stall timeout (the server stopped reading)."""
    PROTOCOL_ERROR = "protocol_error"
    """The server broke the WebSocket protocol (e.g. a frame over ``max_frame_size``)."""
    HANDSHAKE_REFUSED = "handshake_refused"
    """The server answered the upgrade with an HTTP error status (``http_status``)."""
    HANDSHAKE_FAILED = "handshake_failed"
    """No upgrade: connection refused, DNS, TLS or handshake timeout."""
    RESTART = "restart"
    """A planned reconnect (session rollover)."""
    INTERNAL_ERROR = "internal_error"
    """A bug in the library or a callback (logged)."""


@dataclass
class Closed:
    """How one connection ended."""

    code: Optional[int] = None
    reason: str = ""
    error: Optional[BaseException] = None
    by_client: bool = False
    established: bool = False
    opened: bool = False
    cause: Optional[CloseCause] = None
    http_status: Optional[int] = None
    retry_after: Optional[float] = None
    established_at: Optional[float] = None
    exchanged: bool = False
    unresolvable: bool = False
    """The endpoint could not be resolved (a bad key callable or header source): never retried."""
    tls_failed: bool = False
    """The TLS handshake or certificate check failed: never retried."""
    redirect_refused: bool = False
    """The server redirected the upgrade to another origin (the key never follows): never
    retried."""
    gave_up: bool = False
    """The reconnect policy ran out of attempts after this connection."""

    @property
    def auth_failed(self) -> bool:
        """The server refused the credentials (close 3000, or HTTP 401/403 to the upgrade)."""
        return self.code == 3000 or self.http_status in AUTH_HTTP_STATUSES

    @property
    def fatal(self) -> bool:
        """Retrying cannot help: bad credentials, a refused configuration, TLS, or options."""
        return (self.code in FATAL_CODES or self.auth_failed or self.unresolvable
                or self.tls_failed or self.redirect_refused)

    def final_cause(self) -> CloseCause:
        """The cause, inferred from what was seen when nothing set it explicitly."""
        if self.by_client:
            return CloseCause.CLIENT_CLOSED
        if self.cause is not None:
            return self.cause
        if self.http_status is not None:
            return CloseCause.HANDSHAKE_REFUSED
        if not self.opened:
            return CloseCause.HANDSHAKE_FAILED
        if self.code is not None:
            return CloseCause.SERVER_CLOSED
        return CloseCause.CONNECTION_LOST

    def healthy(self, now: float, healthy_after: float) -> bool:
        """True when the connection had a session that stayed up long enough, or that
        completed an exchange (a reconnect backoff may then start over)."""
        if not self.established or self.established_at is None:
            return False
        return self.exchanged or now - self.established_at >= healthy_after

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


def parse_retry_after(value: Any) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        import email.utils  # on first use: keeps ``import realtime_sync`` light

        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    import datetime

    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())



_RETRY_CAUSES = frozenset({
    CloseCause.CONNECTION_LOST, CloseCause.KEEPALIVE_TIMEOUT, CloseCause.SEND_STALLED,
    CloseCause.PROTOCOL_ERROR, CloseCause.HANDSHAKE_FAILED, CloseCause.RESTART,
})
"""Causes that always reconnect (unless fatal); server closes and HTTP refusals depend on
their code."""


class Failure(str, enum.Enum):
    """Why ``connect()`` fails when its first connection never got a session."""

    AUTH = "auth"
    """The credentials were refused: :class:`AuthenticationError`."""
    REFUSED_CONFIG = "refused_config"
    """Close 4000: the server refused the configuration (:class:`ConfigurationError`)."""
    BAD_OPTIONS = "bad_options"
    """The endpoint could not be resolved; the resolver's own error is raised when it is a
    :class:`ConfigurationError`, else :class:`ConnectError`."""
    CONNECT = "connect"
    """Anything else: :class:`ConnectError`."""
    CONNECT_LATER = "connect_later"
    """A temporary HTTP refusal (429, 503...): :class:`ConnectError` saying "try again later"."""


@dataclass(frozen=True)
class Decision:
    """What follows one ended connection (see :func:`decide`)."""

    state: str
    """The client's next state."""
    reconnect: bool
    """Open a new connection (after the backoff delay)."""
    failure: Optional[Failure] = None
    """Set when the first connection never got a session: ``connect()`` fails with this."""
    announce: bool = False
    """Deliver ``client.disconnected`` to handlers."""
    warn: bool = False
    """Log "disconnected" at WARNING (an end nobody asked for)."""


def decide(closed: Closed, *, state: str, session_ended: bool = False,
           error_code: Optional[str] = None, reconnect_enabled: bool = True) -> Decision:
    """The client's reaction to one ended connection or attempt. Pure; any thread.

    Args:
        closed: how it ended.
        state: the client's state when it ended.
        session_ended: the server ended the session on request (``session.closed``).
        error_code: ``error.code`` of the last ``error`` event of that connection.
        reconnect_enabled: the client has a reconnect policy.
    """
    if state == CONNECTING and not closed.established:
        return Decision(DISCONNECTED, False, failure=_failure(closed))
    cause = closed.final_cause()
    retryable = (
        cause in _RETRY_CAUSES
        or (cause is CloseCause.SERVER_CLOSED
            and (closed.code in RECONNECT_CODES or error_code == "session_expired"))
        or (cause is CloseCause.HANDSHAKE_REFUSED
            and closed.http_status in TRANSIENT_HTTP_STATUSES)
    )
    reconnect = (retryable and reconnect_enabled and state != CLOSED and not closed.by_client
                 and not session_ended and not closed.fatal)
    after = state if state == CLOSED else (RECONNECTING if reconnect else DISCONNECTED)
    announce = (
        ((state in (CONNECTED, RECONNECTING) or closed.by_client)
         and (closed.established or state == CONNECTED or closed.by_client))
        or (state == RECONNECTING and not reconnect)
    )
    warn = not reconnect and state != CLOSED and not closed.by_client and not session_ended
    return Decision(after, reconnect, announce=announce, warn=warn)


def _failure(closed: Closed) -> Failure:
    if closed.auth_failed:
        return Failure.AUTH
    if closed.code == 4000:
        return Failure.REFUSED_CONFIG
    if closed.unresolvable:
        return Failure.BAD_OPTIONS
    if closed.http_status in TRANSIENT_HTTP_STATUSES:
        return Failure.CONNECT_LATER
    return Failure.CONNECT


@dataclass(frozen=True)
class Retry:
    """When to open the next connection (see :func:`schedule`)."""

    attempt: int
    """The attempt number reported in ``client.reconnecting`` (1 for a planned restart)."""
    delay: float
    """Seconds to wait first (0 for a planned restart)."""
    count: int
    """The failed-attempt count to carry to the next close."""
    planned: bool = False
    """A planned restart (session rollover): reconnect at once, the count unchanged."""


def schedule(closed: Closed, count: int, backoff: Backoff, now: float) -> Optional[Retry]:
    """When to reconnect after a connection :func:`decide` said to reconnect; None when the
    policy gives up. Pure but for the backoff's jitter. Network thread.

    Args:
        closed: how the connection ended.
        count: failed attempts in a row so far.
        backoff: the reconnect policy.
        now: ``time.monotonic()``.
    """
    if closed.healthy(now, backoff.healthy_after):
        count = 0  # only a connection that proved healthy resets the backoff
    if closed.cause is CloseCause.RESTART:
        return Retry(attempt=1, delay=0.0, count=count, planned=True)
    count += 1
    if backoff.gives_up(count):
        return None
    delay = backoff.delay(count)
    if closed.retry_after is not None:  # the server said when; never past the cap
        delay = max(delay, min(closed.retry_after, backoff.maximum))
    return Retry(attempt=count, delay=delay, count=count)

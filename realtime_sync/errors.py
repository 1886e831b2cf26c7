"""One exception tree for realtime_sync; every error the library raises derives from
:class:`RealtimeSyncError`."""

from __future__ import annotations

import builtins
from typing import Any, Mapping, Optional

from ._core import credentials as _secrets

__all__ = [
    "RealtimeSyncError",
    "ConnectError",
    "AuthenticationError",
    "NotConnectedError",
    "ConnectionLostError",
    "ServerError",
    "TimeoutError",
    "DeadlockError",
    "ConfigurationError",
    "AudioError",
]


class RealtimeSyncError(Exception):
    """Root of every exception raised by realtime_sync. Its message never holds a key the
    library knows (server text is redacted like :class:`AuthenticationError`'s)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(_secrets.redact(a) if isinstance(a, str) else a for a in args))


class ConnectError(RealtimeSyncError):
    """The connection could not be opened, or closed before ``session.created``.

    Attributes:
        code: the WebSocket close code when the server closed, the HTTP status when it
            refused the upgrade, else ``None``.
        reason: the close reason or a short description.
        status: the HTTP status of a refused upgrade (e.g. 429, 503), else ``None``.
        retry_after: the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, message: str, *, code: Optional[int] = None, reason: str = "",
                 status: Optional[int] = None, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = _secrets.redact(reason)
        self.status = status
        self.retry_after = retry_after


class AuthenticationError(ConnectError):
    """The server refused the credentials (an ``error`` event, then close 3000)."""


class NotConnectedError(RealtimeSyncError):
    """A send was attempted while the client is not connected."""


class ConnectionLostError(NotConnectedError):
    """The connection dropped while a call waited for an answer only that session could give
    (a response in flight, a tool call's output). The client may reconnect, but the new
    session is a new conversation on the server: the answer can never arrive.

    Attributes:
        response: what was received of the interrupted response (a
            :class:`~realtime_sync.conversation.Response` marked ``interrupted``), or
            ``None`` when nothing had arrived yet.
    """

    def __init__(self, message: str, *, response: Any = None) -> None:
        super().__init__(message)
        self.response = response

    @property
    def text(self) -> str:
        """The text (or transcript) received before the drop; ``""`` when none."""
        return str(getattr(self.response, "text", "") or "")


class ServerError(RealtimeSyncError):
    """An ``error`` event from the server.

    Attributes:
        type: ``error.type`` (e.g. ``invalid_request_error``).
        code: ``error.code`` or ``None``.
        message: ``error.message``.
        param: ``error.param`` or ``None``.
        event_id: the client ``event_id`` of the event that failed, or ``None``.
        event: the whole ``error`` event.
    """

    def __init__(self, event: Mapping[str, Any]) -> None:
        event = _secrets.redact_obj(event)  # a key the server echoes never shows
        err = event.get("error") or {}
        if not isinstance(err, Mapping):
            err = {"message": _secrets.redact(str(err))}
        self.event = event
        self.type = err.get("type")
        self.code = err.get("code")
        self.message = str(err.get("message") or "server error")
        self.param = err.get("param")
        self.event_id = err.get("event_id")
        detail = f" ({self.code})" if self.code else ""
        super().__init__(f"{self.message}{detail}")


class TimeoutError(RealtimeSyncError, builtins.TimeoutError):  # noqa: A001
    """A blocking call ran out of time; also a builtin :class:`TimeoutError`."""


class DeadlockError(RealtimeSyncError):
    """A blocking helper was called on the thread that would have to deliver its result."""


class ConfigurationError(RealtimeSyncError, ValueError):
    """Bad options, or a session configuration the server rejected."""


class AudioError(RealtimeSyncError):
    """An audio device or file could not be used; the message says what to do."""

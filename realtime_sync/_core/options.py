"""The client's connection options, grouped: keepalive, proxy, reconnect policy, socket.

``RealtimeClient(keepalive=Keepalive(...), proxy=Proxy(...), reconnect=Backoff(...))`` and the
flat keywords (``ping_interval=``, ``http_proxy_host=``...) build the same objects; both stay.
Validation happens here, in the caller's thread, before any I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from . import wire as _wire
from .backoff import Backoff

__all__ = ["Keepalive", "Proxy", "ConnectionOptions", "reconnect_policy"]


def _check_seconds(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                              or value < 0):
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")


@dataclass(frozen=True)
class Keepalive:
    """Keepalive pings and the liveness deadline.

    Args:
        ping_interval: seconds of silence before a ping (None or 0: no pings, no deadline).
        ping_timeout: seconds to wait for any byte after that (default
            ``min(10, ping_interval)``); silence for both ends the connection.
    """

    ping_interval: Optional[float] = 20.0
    ping_timeout: Optional[float] = None

    def __post_init__(self) -> None:
        _check_seconds("ping_interval", self.ping_interval)
        _check_seconds("ping_timeout", self.ping_timeout)


@dataclass(frozen=True)
class Proxy:
    """An HTTP or SOCKS proxy (websocket-client's ``http_proxy_*`` and ``proxy_type``).

    Args:
        host: the proxy's host name (None: no proxy).
        port: its port.
        auth: ``(user, password)``.
        type: ``"http"`` (default), ``"socks4"``, ``"socks4a"``, ``"socks5"``, ``"socks5h"``.
    """

    host: Optional[str] = None
    port: Optional[int] = None
    auth: Optional[Tuple[str, str]] = field(default=None, repr=False)
    type: Optional[str] = None  # noqa: A003 - websocket-client's name

    def transport_kwargs(self) -> Dict[str, Any]:
        """The keywords ``WebSocketApp.run_forever`` takes for this proxy (none without host)."""
        if not self.host:
            return {}
        return dict(http_proxy_host=self.host, http_proxy_port=self.port,
                    http_proxy_auth=self.auth, proxy_type=self.type)


def reconnect_policy(reconnect: Union[bool, Backoff, None]) -> Optional[Backoff]:
    """``True`` → the default :class:`Backoff`, a :class:`Backoff` → itself, ``False``/None →
    no reconnects; anything else raises TypeError."""
    if isinstance(reconnect, Backoff):
        return reconnect
    if reconnect is True:
        return Backoff()
    if reconnect is False or reconnect is None:
        return None
    raise TypeError("reconnect must be True, False or a realtime_sync.Backoff")


@dataclass(frozen=True)
class ConnectionOptions:
    """Everything the transport needs besides its callbacks, checked."""

    backoff: Optional[Backoff]
    keepalive: Keepalive = field(default_factory=Keepalive)
    proxy: Proxy = field(default_factory=Proxy)
    sslopt: Optional[Dict[str, Any]] = None
    open_timeout: float = 10.0
    max_frame_size: int = _wire.MAX_FRAME_BYTES

    def __post_init__(self) -> None:
        _check_seconds("open_timeout", self.open_timeout)
        size = self.max_frame_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1024:
            raise ValueError(f"max_frame_size must be an integer >= 1024, not {size!r}")

    def transport_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments of :class:`~realtime_sync._core.transport.Transport`."""
        return dict(backoff=self.backoff, ping_interval=self.keepalive.ping_interval,
                    ping_timeout=self.keepalive.ping_timeout, sslopt=self.sslopt,
                    proxy=self.proxy.transport_kwargs(), open_timeout=self.open_timeout,
                    max_frame_size=self.max_frame_size)

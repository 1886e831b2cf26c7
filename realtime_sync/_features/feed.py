"""The audio host that feeds a live session object (a ``Transcriber`` or ``Translator``).

What :func:`realtime_sync.audio.stream` sees when such an object listens: audio goes to its
``feed()``, which keeps it until it has been used (so the sink is always "connected": the
owner does the buffering across reconnects); events and counts go to the owner's client, and
the stream is owned (stopped by ``close()``) by the owner.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Protocol

__all__ = ["FeedSink"]


class Feeder(Protocol):
    """What a :class:`FeedSink` needs of its owner."""

    _client: Optional[Any]
    _streams: List[Any]

    def feed(self, pcm16: bytes) -> None: ...


class FeedSink:
    """An :class:`realtime_sync._core.host.AudioHost` in front of a :class:`Feeder` (any thread)."""

    def __init__(self, owner: Feeder) -> None:
        self._owner = owner
        self.input_audio_buffer = self

    connected = True

    def append(self, pcm16: bytes) -> str:
        self._owner.feed(pcm16)
        return ""

    @property
    def host(self) -> FeedSink:
        """The stream's contract (:class:`realtime_sync._core.host.AudioHost`)."""
        return self

    def emit(self, event: Mapping[str, Any]) -> None:
        client = self._owner._client
        if client is not None:
            client.host.emit(event)

    def adopt(self, resource: Any) -> None:
        self._owner._streams.append(resource)

    def disown(self, resource: Any) -> None:
        try:
            self._owner._streams.remove(resource)
        except ValueError:
            pass

    def count(self, name: str, n: int = 1) -> None:
        client = self._owner._client
        if client is not None:
            client.host.count(name, n)

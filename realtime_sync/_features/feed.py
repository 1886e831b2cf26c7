"""The audio host that feeds a live session object (a ``Transcriber`` or ``Translator``).

What :func:`realtime_sync.audio.stream` sees when such an object listens: audio goes to its
``feed()``, which keeps it until it has been used (so the sink is always "connected": the
owner does the buffering across reconnects); events and counts go to the owner's client, and
the stream is owned (stopped by ``close()``) by the owner's
:class:`~realtime_sync._features.live_session.SessionLink`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from .live_session import SessionLink

__all__ = ["FeedSink"]


class FeedSink:
    """An :class:`realtime_sync._core.host.AudioHost` in front of a live object (any thread).

    Args:
        feed: the object's ``feed(pcm16)``.
        link: the object's session link (its client and the streams it owns).
    """

    def __init__(self, feed: Callable[[bytes], None], link: SessionLink) -> None:
        self._feed = feed
        self._link = link
        self.input_audio_buffer = self

    connected = True

    def append(self, pcm16: bytes) -> str:
        self._feed(pcm16)
        return ""

    @property
    def host(self) -> FeedSink:
        """The stream's contract (:class:`realtime_sync._core.host.AudioHost`)."""
        return self

    def emit(self, event: Mapping[str, Any]) -> None:
        client = self._link.client
        if client is not None:
            client.host.emit(event)

    def adopt(self, resource: Any) -> None:
        self._link.streams.append(resource)

    def disown(self, resource: Any) -> None:
        try:
            self._link.streams.remove(resource)
        except ValueError:
            pass

    def count(self, name: str, n: int = 1) -> None:
        client = self._link.client
        if client is not None:
            client.host.count(name, n)

"""The audio host that feeds a live object (a ``Transcriber``, ``Translator``, ...).

What :func:`realtime_sync.audio.stream` sees when such an object listens: audio goes to its
``feed()``, which keeps it until it has been used (so the sink is always "connected": the
object does the buffering across reconnects); events and counts go to the object's
connection, and the stream is owned (stopped by ``close()``) by the object's
:class:`~realtime_sync._features.live_session.LiveParts`.
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping

__all__ = ["FeedSink"]


class FeedSink:
    """An :class:`realtime_sync._core.host.AudioHost` in front of a live object (any thread).

    Args:
        feed: the object's ``feed(pcm16)``.
        streams: the streams the object owns (the stream adds and removes itself).
        emit: sends a library event to the object's handlers (nothing while unconnected).
        count: adds to one of the connection's counters (nothing while unconnected).
    """

    def __init__(self, feed: Callable[[bytes], None], streams: List[Any],
                 emit: Callable[[Mapping[str, Any]], None],
                 count: Callable[[str, int], None]) -> None:
        self._feed = feed
        self._streams = streams
        self._emit = emit
        self._count = count
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
        self._emit(event)

    def adopt(self, resource: Any) -> None:
        self._streams.append(resource)

    def disown(self, resource: Any) -> None:
        try:
            self._streams.remove(resource)
        except ValueError:
            pass

    def count(self, name: str, n: int = 1) -> None:
        self._count(name, n)

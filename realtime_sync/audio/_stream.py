"""Streaming an audio source into a client: the ``realtime-sync-audio`` thread.

The thread reads ``chunk_ms`` of audio at a time and sends each chunk with
``client.input_audio_buffer.append``. While the client is disconnected, chunks wait in a
bounded backlog (``buffer_ms``, default 10 s) and go out in order on reconnect:

* a *live* source (a microphone, a real-time paced file) keeps being read, so the oldest
  backlog audio is dropped beyond the bound: counted (``bytes_dropped``, the client's
  ``audio_dropped`` counter) and reported once per episode as a ``client.audio_dropped``
  event ``{"bytes": n, "ms": ms}`` when the episode ends (everything sent again, or the
  stream ends);
* a source that is not live (``WavSource(realtime=False)``) is not read further while the
  backlog is full, so no audio is dropped: the stream waits for the connection.

A chunk whose send fails with ``NotConnectedError`` stays at the head of the backlog.
A source error (:class:`~realtime_sync.errors.AudioError`) is reported as ``client.audio_error``
and, if the source has ``reopen()`` (the microphone does), the stream keeps trying to reopen it.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable, Deque, Dict, Optional

from .._core.host import AudioHost
from .._core.wire import MAX_EVENT_BYTES
from ..errors import AudioError, NotConnectedError
from ._convert import WIRE_RATE, WIRE_SAMPLE_WIDTH, bytes_to_ms

__all__ = ["AudioStream", "stream", "MAX_APPEND_BYTES"]

log = logging.getLogger(__name__)

# base64 grows 3 -> 4; leave room for the JSON envelope; keep whole frames
MAX_APPEND_BYTES = ((MAX_EVENT_BYTES - 1024) * 3 // 4) // WIRE_SAMPLE_WIDTH * WIRE_SAMPLE_WIDTH
"""Largest PCM16 payload of one ``input_audio_buffer.append`` (its JSON stays under 15 MiB)."""

_REOPEN_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)


class AudioStream:
    """Handle of a running audio stream (returned by :func:`stream`).

    Counters (bytes of 24 kHz mono PCM16, updated by the stream thread, readable anywhere):
    ``bytes_read``, ``bytes_sent``, ``bytes_dropped`` (lost to the backlog bound),
    ``bytes_muted`` (read while muted, discarded on purpose). ``error`` is the last source
    error, or ``None``.
    """

    def __init__(
        self,
        client: Any,
        source: Any,
        *,
        chunk_ms: int = 50,
        buffer_ms: int = 10000,
        mute_when: Optional[Callable[[], bool]] = None,
        close_source: bool = True,
    ) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        if buffer_ms < 0:
            raise ValueError("buffer_ms must be >= 0")
        self.client = client
        self.source = source
        self.chunk_ms = int(chunk_ms)
        self.chunk_frames = max(1, WIRE_RATE * self.chunk_ms // 1000)
        self.buffer_bytes = WIRE_RATE * int(buffer_ms) // 1000 * WIRE_SAMPLE_WIDTH
        self.mute_when = mute_when
        self.close_source = close_source
        self.live = bool(getattr(source, "live", getattr(source, "realtime", True)))
        self.bytes_read = 0
        self.bytes_sent = 0
        self.bytes_dropped = 0
        self.bytes_muted = 0
        self.error: Optional[BaseException] = None
        self._muted = False
        self._stop = threading.Event()
        self._backlog: Deque[bytes] = collections.deque()
        self._backlog_bytes = 0
        self._episode_dropped = 0
        self._thread = threading.Thread(target=self._run, name="realtime-sync-audio", daemon=True)

    # -- control (any thread) ------------------------------------------------------------

    def start(self) -> AudioStream:
        """Start the ``realtime-sync-audio`` thread (once). Any thread."""
        self._thread.start()
        return self

    @property
    def muted(self) -> bool:
        """While True, audio is read and discarded (``bytes_muted``), nothing is sent."""
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        self._muted = bool(value)

    def pause(self) -> None:
        """Mute: keep reading the source (a microphone must be drained) but send nothing."""
        self._muted = True

    def resume(self) -> None:
        """Unmute after :meth:`pause`."""
        self._muted = False

    @property
    def backlog_ms(self) -> float:
        """Audio waiting to be sent (while disconnected), in milliseconds."""
        return bytes_to_ms(self._backlog_bytes)

    def is_alive(self) -> bool:
        """True while the stream thread runs. Any thread."""
        return self._thread.is_alive()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the stream to end by itself (end of the source). Returns True if it ended.

        Any thread except the stream thread; handlers may call it with a timeout only.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("join() called on the audio stream's own thread")
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop streaming and (with ``close_source``) close the source; wait up to ``timeout``.

        Audio not yet sent is discarded. Idempotent; any thread (also a handler on the
        dispatcher thread, and ``client.close()``). Returns True when the thread has ended.
        """
        self._stop.set()
        if self.close_source:
            self._close_source()
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return not self._thread.is_alive() or threading.current_thread() is self._thread
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "stopped"
        return (
            f"<AudioStream {state} sent={self.bytes_sent} dropped={self.bytes_dropped} "
            f"muted={self.bytes_muted}>"
        )

    # -- the stream thread ---------------------------------------------------------------

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception:
            log.exception("closing audio source %r failed", self.source)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug or an unexpected source error: report, end
            log.exception("audio stream failed")
            self.error = exc
            self._emit_error(exc, retrying=False)
        finally:
            if self._episode_dropped:
                self._report_drops()
            if self.close_source:
                self._close_source()
            log.debug("audio stream ended: %r", self)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self.live and self._backlog_bytes >= max(self.buffer_bytes, 1):
                # not live: wait for the connection instead of dropping file audio
                if not self._flush():
                    self._stop.wait(0.05)
                continue
            try:
                data = self.source.read(self.chunk_frames)
            except AudioError as exc:
                if self._stop.is_set():
                    break
                if not self._recover(exc):
                    break
                continue
            if not data:
                break
            self.bytes_read += len(data)
            if self._muted or (self.mute_when is not None and self._mute_when()):
                self.bytes_muted += len(data)
                continue
            self._enqueue(bytes(data))
            if not self._flush() and self.live:
                self._trim()
        if not self._stop.is_set():
            self._drain_at_end()

    def _mute_when(self) -> bool:
        try:
            return bool(self.mute_when())  # type: ignore[misc]
        except Exception:
            log.exception("mute_when callback failed; not muting")
            return False

    def _enqueue(self, data: bytes) -> None:
        for i in range(0, len(data), MAX_APPEND_BYTES):
            part = data[i : i + MAX_APPEND_BYTES]
            self._backlog.append(part)
            self._backlog_bytes += len(part)

    def _trim(self) -> None:
        """Drop the oldest audio beyond the bound (live sources while disconnected)."""
        while self._backlog_bytes > self.buffer_bytes and self._backlog:
            excess = self._backlog_bytes - self.buffer_bytes
            head = self._backlog[0]
            if len(head) <= excess:
                self._backlog.popleft()
                cut = len(head)
            else:  # drop only the oldest part of the head chunk (whole frames)
                cut = excess + excess % WIRE_SAMPLE_WIDTH
                self._backlog[0] = head[cut:]
            self._backlog_bytes -= cut
            self._dropped(cut)

    def _dropped(self, n: int) -> None:
        if not self._episode_dropped:
            log.warning("client disconnected: audio backlog full, dropping the oldest audio")
        self.bytes_dropped += n
        self._episode_dropped += n
        host = _host(self.client)
        if host is not None:
            host.count("audio_dropped", n)

    def _report_drops(self) -> None:
        n, self._episode_dropped = self._episode_dropped, 0
        event = {"type": "client.audio_dropped", "bytes": n, "ms": bytes_to_ms(n)}
        try:
            _emit(self.client, event)
        except Exception:
            log.debug("emitting the event failed", exc_info=True)

    def _flush(self) -> bool:
        """Send the backlog in order while connected. True when it is empty."""
        while self._backlog:
            if self._stop.is_set() or not self.client.connected:
                return False
            chunk = self._backlog[0]
            try:
                self.client.input_audio_buffer.append(chunk)
            except NotConnectedError:
                return False  # the chunk stays at the head: nothing is lost
            self._backlog.popleft()
            self._backlog_bytes -= len(chunk)
            self.bytes_sent += len(chunk)
        if self._episode_dropped:
            self._report_drops()
        return True

    def _drain_at_end(self) -> None:
        """End of source: send what is left, waiting for a reconnect while not stopped."""
        while not self._flush():
            if self._stop.wait(0.05):
                return

    def _emit_error(self, exc: BaseException, retrying: bool) -> None:
        event = {
            "type": "client.audio_error",
            "message": str(exc),
            "error": type(exc).__name__,
            "source": repr(self.source),
            "retrying": retrying,
        }
        try:
            _emit(self.client, event)
        except Exception:
            log.debug("emitting the event failed", exc_info=True)

    def _recover(self, exc: AudioError) -> bool:
        """A source error: report it, then try to reopen the source until stopped."""
        self.error = exc
        reopen = getattr(self.source, "reopen", None)
        log.warning("audio source error: %s", exc)
        self._emit_error(exc, retrying=reopen is not None)
        if reopen is None:
            return False
        attempt = 0
        while not self._stop.is_set():
            delay = _REOPEN_DELAYS[min(attempt, len(_REOPEN_DELAYS) - 1)]
            if self._stop.wait(delay):
                return False
            attempt += 1
            try:
                reopen()
            except AudioError as again:
                log.info("reopening the audio source failed (attempt %d): %s", attempt, again)
                continue
            log.info("audio source reopened after %d attempt(s)", attempt)
            try:
                _emit(self.client, {"type": "client.audio_recovered", "attempts": attempt,
                                    "source": repr(self.source)})
            except Exception:  # noqa: BLE001 - reporting must not stop the stream
                log.debug("could not report the recovery", exc_info=True)
            return True
        return False


def stream(
    client: Any,
    source: Any,
    chunk_ms: int = 50,
    *,
    buffer_ms: int = 10000,
    mute_when: Optional[Callable[[], bool]] = None,
    close_source: bool = True,
) -> AudioStream:
    """Stream ``source`` into ``client`` on a new ``realtime-sync-audio`` thread.

    Each ``chunk_ms`` of audio becomes one ``input_audio_buffer.append``. The client adopts
    the stream, so ``client.close()`` stops it. The thread ends by itself at the end of the
    source; ``handle.stop()`` ends it early. Call from any thread.

    Args:
        client: a connected or connecting :class:`realtime_sync.RealtimeClient`.
        source: an :class:`AudioSource` (24 kHz mono PCM16), e.g. ``Microphone()`` or
            ``WavSource(path, realtime=True)``.
        chunk_ms: audio per read and per append event.
        buffer_ms: the backlog kept while disconnected (see the module docs).
        mute_when: optional callable checked per chunk; while it returns True the audio is
            discarded (half-duplex, e.g. ``mute_when=lambda: speaker.is_playing``).
        close_source: close the source when the stream ends or is stopped.
    """
    handle = AudioStream(
        client,
        source,
        chunk_ms=chunk_ms,
        buffer_ms=buffer_ms,
        mute_when=mute_when,
        close_source=close_source,
    )
    host = _host(client)
    if host is not None:
        host.adopt(handle)
    return handle.start()


def _host(client: Any) -> Optional[AudioHost]:
    """The client's feature contract (``client.host``), or None for a bare sink."""
    return getattr(client, "host", None)


def _emit(client: Any, event: Dict[str, Any]) -> None:
    host = _host(client)
    if host is not None:
        host.emit(event)

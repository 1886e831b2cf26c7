"""The speaker: plays a client's ``response.output_audio.delta`` audio through PyAudio.

Deltas are base64-decoded on the dispatcher thread and handed to the ``realtime-sync-speaker``
thread through a bounded queue. The player starts an item once a small jitter buffer has
filled (or the item is complete), writes short blocks to a blocking PyAudio output stream and
counts the frames written per item (``played_ms``). On barge-in
(``input_audio_buffer.speech_started``) it stops at once, drops what is queued, and sends
``conversation.item.truncate`` with ``audio_end_ms = min(played, received)`` so the server's
transcript matches what the user heard. Running dry in the middle of an item is an underrun:
counted, then the jitter buffer refills.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import queue
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple, Union

from ..errors import AudioError, NotConnectedError
from ._closing import Closing
from ._convert import WIRE_RATE, WIRE_SAMPLE_WIDTH, StreamConverter, bytes_to_ms
from ._pyaudio import abort_stream, audio_error, open_device, quiet_stderr, release_device

__all__ = ["Speaker"]

log = logging.getLogger(__name__)

_DELTA = "response.output_audio.delta"
_DONE = "response.output_audio.done"
_SPEECH_STARTED = "input_audio_buffer.speech_started"
_HISTORY = 64  # items whose played/received counters are kept


class _Item:
    __slots__ = ("item_id", "content_index", "received", "played", "done", "cut", "truncated")

    def __init__(self, item_id: str, content_index: int) -> None:
        self.item_id = item_id
        self.content_index = content_index
        self.received = 0  # bytes decoded on the dispatcher thread
        self.played = 0  # bytes written to the device by the player thread
        self.done = False  # response.output_audio.done seen
        self.cut = False  # interrupted (barge-in): later audio is ignored
        self.truncated = False


class Speaker(Closing):
    """Plays assistant audio for a client, with barge-in handling.

    Args:
        device: ``None`` for the default output, a device index, or a case-insensitive name
            substring (see :func:`realtime_sync.audio.list_devices`).
        jitter_ms: audio buffered before an item starts (and after an underrun).
        block_ms: size of one device write; barge-in takes effect within one block.
        max_buffer_ms: bound of audio waiting to be played; beyond it new audio is dropped
            (counted in ``bytes_dropped``).
        truncate: send ``conversation.item.truncate`` on barge-in.

    Use ``speaker.attach(client)`` (subscribes to the client's events and starts the
    ``realtime-sync-speaker`` thread) or the explicit API: :meth:`feed`, :meth:`end_item`,
    :meth:`interrupt`. ``client.close()`` stops an attached speaker.

    Raises:
        AudioError: PyAudio missing (names the ``audio`` extra), no output device, device not
            found or busy.
    """

    def __init__(
        self,
        device: Union[int, str, None] = None,
        *,
        jitter_ms: int = 80,
        block_ms: int = 20,
        max_buffer_ms: int = 600000,
        truncate: bool = True,
    ) -> None:
        if block_ms <= 0 or jitter_ms < 0:
            raise ValueError("block_ms must be positive and jitter_ms >= 0")
        self.device = device
        self.jitter_ms = int(jitter_ms)
        self.block_ms = int(block_ms)
        self.max_buffer_bytes = WIRE_RATE * int(max_buffer_ms) // 1000 * WIRE_SAMPLE_WIDTH
        self.truncate = truncate
        self.underruns = 0
        self.bytes_dropped = 0
        self.truncations: List[Tuple[str, int]] = []
        self.muted = False
        self.device_index: Optional[int] = None
        self.device_name = ""
        self.device_rate = WIRE_RATE
        self.device_channels = 1
        self._pyaudio: Any = None
        self._pa: Any = None
        self._stream: Any = None
        self._conv: Optional[StreamConverter] = None
        self._client: Any = None
        self._items: Dict[str, _Item] = collections.OrderedDict()
        self._items_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._interrupts = 0  # bumped by interrupt(); the player acts on a change
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._thread_lock = threading.Lock()
        self._playing = False
        self._quiet_after = 0.0
        self._current: Optional[_Item] = None
        self._open()

    # -- device ------------------------------------------------------------------------

    def _open(self) -> None:
        pyaudio, pa, info, stream, rate, channels = open_device(self.device, "output",
                                                               self.block_ms)
        self._pyaudio, self._pa, self._stream = pyaudio, pa, stream
        self.device_index, self.device_name = info["index"], info["name"]
        self.device_rate, self.device_channels = rate, channels
        self._conv = StreamConverter(WIRE_RATE, 1, 2, to_rate=rate) if rate != WIRE_RATE else None
        log.info("speaker %r opened at %d Hz, %d ch", self.device_name, rate, channels)

    def _to_device(self, pcm: bytes) -> bytes:
        if self._conv is not None:
            pcm = self._conv.process(pcm)
        if self.device_channels == 2:
            import numpy as np

            mono = np.frombuffer(pcm, dtype="<i2")
            pcm = np.repeat(mono, 2).astype("<i2").tobytes()
        return pcm

    def _abort_output(self) -> None:
        """Discard what the device still has buffered (Pa_AbortStream), then restart."""
        stream = self._stream
        if stream is None:
            return
        with quiet_stderr():
            try:
                if not abort_stream(self._pyaudio, stream):
                    stream.stop_stream()
                stream.start_stream()
            except OSError as exc:
                log.warning("restarting the output stream after a barge-in failed: %s", exc)
        if self._conv is not None:
            self._conv.flush()

    # -- client wiring (any thread) ------------------------------------------------------

    def attach(self, client: Any) -> Speaker:
        """Play ``client``'s assistant audio: subscribe to its events, start the player thread
        and let ``client.close()`` stop the speaker. Any thread; returns self."""
        if self._client is not None and self._client is not client:
            raise RuntimeError("this speaker is already attached to another client")
        if self._client is None:
            self._client = client
            client.on(_DELTA, self._on_delta)
            client.on(_DONE, self._on_done)
            client.on(_SPEECH_STARTED, self._on_speech_started)
            host = getattr(client, "host", None)
            if host is not None:
                host.adopt(self)
        self.start()
        return self

    def detach(self) -> None:
        """Unsubscribe from the client and flush what is queued (the device stays open).
        Any thread."""
        client, self._client = self._client, None
        if client is not None:
            for type_, handler in (
                (_DELTA, self._on_delta),
                (_DONE, self._on_done),
                (_SPEECH_STARTED, self._on_speech_started),
            ):
                try:
                    client.off(type_, handler)
                except Exception:
                    log.debug("client.off(%s) failed", type_, exc_info=True)
            host = getattr(client, "host", None)
            if host is not None:
                host.disown(self)
        self.flush()

    # handlers: run on the client's dispatcher thread

    def _on_delta(self, event: Any) -> None:
        try:
            pcm = base64.b64decode(event.get("delta") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            log.warning("ignoring a response.output_audio.delta whose audio is not base64")
            return
        self.feed(pcm, str(event.get("item_id") or ""), int(event.get("content_index") or 0))

    def _on_done(self, event: Any) -> None:
        self.end_item(str(event.get("item_id") or ""))

    def _on_speech_started(self, event: Any) -> None:
        self.interrupt()

    # -- explicit API (any thread) -------------------------------------------------------

    def start(self) -> Speaker:
        """Start the ``realtime-sync-speaker`` thread (idempotent). Any thread."""
        with self._thread_lock:
            if self._stop.is_set():
                raise AudioError("the speaker is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="realtime-sync-speaker", daemon=True
                )
                self._thread.start()
        return self

    def _item(self, item_id: str, content_index: int = 0, renew: bool = False) -> _Item:
        with self._items_lock:
            item = self._items.get(item_id)
            if item is None or (renew and item.cut):
                item = self._items[item_id] = _Item(item_id, content_index)
                while len(self._items) > _HISTORY:
                    self._items.pop(next(iter(self._items)))  # type: ignore[call-overload]
            return item

    def feed(self, pcm16: bytes, item_id: str = "", content_index: int = 0) -> None:
        """Queue 24 kHz mono PCM16 for playback as part of ``item_id``. Any thread; starts
        the player thread if needed. Audio of an interrupted item is ignored."""
        if not pcm16:
            return
        pcm16 = bytes(pcm16[: len(pcm16) - len(pcm16) % WIRE_SAMPLE_WIDTH])
        # audio without an item id (local playback) starts afresh after an interruption
        item = self._item(item_id, content_index, renew=not item_id)
        if item.cut:
            return
        with self._queued_lock:
            if self._queued_bytes + len(pcm16) > self.max_buffer_bytes:
                if not self.bytes_dropped:
                    log.warning("speaker buffer full: dropping assistant audio")
                self.bytes_dropped += len(pcm16)
                return
            self._queued_bytes += len(pcm16)
        item.received += len(pcm16)
        self._queue.put(("audio", item, pcm16))
        if self._thread is None:
            self.start()

    def end_item(self, item_id: str) -> None:
        """All of ``item_id``'s audio has been fed (``response.output_audio.done``)."""
        item = self._item(item_id)
        item.done = True
        self._queue.put(("done", item, b""))

    def interrupt(self) -> None:
        """Barge-in: stop playing at once, drop queued audio, and truncate the item that was
        playing. Any thread (the speech_started handler calls it on the dispatcher thread)."""
        with self._items_lock:
            for item in self._items.values():
                if not (item.done and item.played >= item.received):
                    item.cut = True
            self._interrupts += 1
        self._queue.put(("interrupt", None, b""))

    def flush(self) -> None:
        """Drop queued audio without truncating anything. Any thread."""
        self._queue.put(("flush", None, b""))

    # -- state (any thread) --------------------------------------------------------------

    @property
    def is_playing(self) -> bool:
        """True while assistant audio is being played (including the device's latency tail);
        use it to mute a microphone in half-duplex mode."""
        return self._playing or time.monotonic() < self._quiet_after

    @property
    def played_ms(self) -> float:
        """Milliseconds of the current (or last) item written to the device."""
        item = self._current
        return bytes_to_ms(item.played) if item is not None else 0.0

    def played(self, item_id: str) -> float:
        """Milliseconds of ``item_id`` written to the device (0 if unknown)."""
        with self._items_lock:
            item = self._items.get(item_id)
        return bytes_to_ms(item.played) if item is not None else 0.0

    def received(self, item_id: str) -> float:
        """Milliseconds of ``item_id`` received (0 if unknown)."""
        with self._items_lock:
            item = self._items.get(item_id)
        return bytes_to_ms(item.received) if item is not None else 0.0

    @property
    def queued_ms(self) -> float:
        """Audio waiting to be played."""
        return bytes_to_ms(self._queued_bytes)

    # -- the player thread ---------------------------------------------------------------

    def _run(self) -> None:
        pending: Deque[Tuple[_Item, bytes]] = collections.deque()
        pending_bytes = 0
        seen_interrupts = 0
        buffering_since: Optional[float] = None
        starving: Optional[Tuple[_Item, float]] = None  # item whose audio ran out, and when
        block = WIRE_RATE * self.block_ms // 1000 * WIRE_SAMPLE_WIDTH
        jitter = WIRE_RATE * self.jitter_ms // 1000 * WIRE_SAMPLE_WIDTH

        def take(msg: Tuple[str, Any, bytes]) -> None:
            nonlocal pending_bytes
            kind, item, pcm = msg
            if kind == "audio":
                with self._queued_lock:
                    self._queued_bytes -= len(pcm)
                if not item.cut:
                    pending.append((item, pcm))
                    pending_bytes += len(pcm)
            elif kind == "flush":
                for _, pcm in pending:
                    pending_bytes -= len(pcm)
                pending.clear()

        try:
            while not self._stop.is_set():
                # collect what arrived; block briefly when there is nothing to do
                try:
                    wait = 0.005 if pending and self._playing else 0.05
                    take(self._queue.get(timeout=wait))
                    while True:
                        take(self._queue.get_nowait())
                except queue.Empty:
                    pass
                if self._interrupts != seen_interrupts:
                    seen_interrupts = self._interrupts
                    waiting = pending[0][0] if pending else None
                    pending.clear()
                    pending_bytes = 0
                    self._barge_in(waiting)
                    buffering_since = None
                    continue
                if not self._playing:
                    if not pending:
                        buffering_since = None
                        continue
                    head = pending[0][0]
                    now = time.monotonic()
                    if buffering_since is None:
                        buffering_since = now
                    complete = head.done and all(it is head for it, _ in pending)
                    waited = now - buffering_since >= 2 * self.jitter_ms / 1000.0
                    if pending_bytes < jitter and not complete and not waited:
                        continue
                    self._playing = True
                    buffering_since = None
                if not pending:  # flushed while playing: wait for new audio
                    self._playing = False
                    continue
                item, pcm = pending[0]
                self._current = item
                chunk, rest = pcm[:block], pcm[block:]
                if rest:
                    pending[0] = (item, rest)
                else:
                    pending.popleft()
                pending_bytes -= len(chunk)
                if starving is not None and starving[0] is item \
                        and time.monotonic() > starving[1]:
                    self.underruns += 1  # the device ran dry before more audio came
                    log.debug("speaker underrun in item %s", item.item_id)
                starving = None
                self._write(item, chunk)
                if not pending:
                    self._playing = False
                    if item.done and self._conv is not None:
                        self._stream_write(self._conv.flush())  # the resampler's tail
                    if not item.done:
                        starving = (item, self._quiet_after)
        except Exception:
            log.exception("speaker thread failed")
            self._playing = False
        finally:
            self._playing = False

    def _stream_write(self, data: bytes) -> None:
        if data and self._stream is not None:
            self._stream.write(data, exception_on_underflow=False)

    def _write(self, item: _Item, chunk: bytes) -> None:
        if item.cut:
            return
        out = b"\0" * len(chunk) if self.muted else chunk
        try:
            self._stream_write(self._to_device(out))
        except OSError as exc:
            log.warning("speaker write failed: %s", exc)
            if self._client is not None:
                try:
                    self._client.host.emit(
                        {
                            "type": "client.audio_error",
                            "message": str(audio_error("Output device failed", exc)),
                            "error": "AudioError",
                            "source": repr(self),
                            "retrying": False,
                        }
                    )
                except Exception:
                    pass
            return
        item.played += len(chunk)
        latency = 0.0
        try:
            latency = float(self._stream.get_output_latency())
        except (OSError, AttributeError):
            pass
        self._quiet_after = time.monotonic() + latency + self.block_ms / 1000.0

    def _barge_in(self, waiting: Optional[_Item]) -> None:
        """Stop now; truncate the item that was playing (or waiting in the jitter buffer)."""
        now = time.monotonic()
        unheard_s = max(0.0, self._quiet_after - now - self.block_ms / 1000.0)
        if self._playing or now < self._quiet_after:  # nothing to discard otherwise
            self._abort_output()
        self._playing = False
        self._quiet_after = 0.0
        item = self._current
        if item is None or not item.cut or item.truncated:
            item = waiting
        if item is None or not item.cut or item.truncated:
            return
        item.truncated = True
        # what was heard: written to the device, less what the device still held
        heard = max(0, item.played - int(unheard_s * WIRE_RATE) * WIRE_SAMPLE_WIDTH)
        end_ms = int(bytes_to_ms(min(heard, item.received)))
        self.truncations.append((item.item_id, end_ms))
        log.info("barge-in: item %s stopped at %d ms", item.item_id, end_ms)
        client = self._client
        if self.truncate and client is not None and item.item_id:
            try:
                client.conversation.item.truncate(
                    item_id=item.item_id, content_index=item.content_index, audio_end_ms=end_ms
                )
            except NotConnectedError:
                log.info("barge-in while disconnected: truncate not sent")
            except Exception:
                log.exception("sending conversation.item.truncate failed")

    # -- closing -------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> bool:
        """Detach, stop the player thread and release the device. Any thread; idempotent.
        Returns True when the thread has ended (``client.close()`` calls this)."""
        self.detach()
        self._stop.set()
        thread = self._thread
        ok = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            ok = not thread.is_alive()
        if ok:
            self._release()
        return ok

    def close(self) -> None:
        """Stop and release the device (see :meth:`stop`). Any thread."""
        self.stop()

    def _release(self) -> None:
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        conv, self._conv = self._conv, None
        release_device(stream, pa, conv, close_after_failed_stop=False)


    def __repr__(self) -> str:
        return f"Speaker({self.device_name!r}, index={self.device_index})"

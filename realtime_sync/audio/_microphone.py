"""The PyAudio microphone: an :class:`~realtime_sync.audio.AudioSource` that never ends.

Opens the device at 24 kHz mono PCM16; a device that refuses that rate is opened at its
native rate (and in stereo if it refuses mono) and converted with soxr. Reads are blocking,
one chunk at a time, with ``exception_on_overflow=False``; lost audio (the reader fell behind
and the device buffer overflowed) is detected from the capture clock and counted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any, Dict, Optional, Union

from ..errors import AudioError
from ._closing import Closing
from ._convert import WIRE_RATE, WIRE_SAMPLE_WIDTH, StreamConverter
from ._pyaudio import audio_error, open_device, release_device

__all__ = ["Microphone"]

log = logging.getLogger(__name__)


class Microphone(Closing):
    """Live audio from a PyAudio input device as 24 kHz mono PCM16.

    Args:
        device: ``None`` for the default input, a device index, or a case-insensitive
            substring of the device name (see :func:`realtime_sync.audio.list_devices`).
        chunk_ms: size of one blocking device read; :meth:`close` from another thread takes
            effect within one chunk.

    Attributes:
        device_index, device_name: the device opened.
        device_rate, device_channels: the format it was opened with (24000/1 unless refused).
        overflows: how many times audio was lost because reads fell behind.
        lost_ms: the audio lost in those overflows (estimated from the capture clock).

    Raises:
        AudioError: PyAudio missing (names the ``audio`` extra), no input device, device not
            found, busy or unusable. Never a raw PortAudio ``OSError``.
    """

    sample_rate = WIRE_RATE
    channels = 1

    def __init__(self, device: Union[int, str, None] = None, chunk_ms: int = 50) -> None:
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        self.device = device
        self.chunk_ms = int(chunk_ms)
        self.overflows = 0
        self.lost_ms = 0.0
        self.device_index: Optional[int] = None
        self.device_name = ""
        self.device_rate = WIRE_RATE
        self.device_channels = 1
        self._pa: Any = None
        self._stream: Any = None
        self._conv: Optional[StreamConverter] = None
        self._pending = b""
        self._io_lock = threading.Lock()  # held by the reader during a device read
        self._closed = threading.Event()
        self._clock: Optional[Dict[str, float]] = None
        self._open()

    # -- opening -----------------------------------------------------------------------

    def _open(self) -> None:
        _, pa, info, stream, rate, channels = open_device(self.device, "input", self.chunk_ms)
        self._pa, self._stream = pa, stream
        self.device_index, self.device_name = info["index"], info["name"]
        self.device_rate, self.device_channels = rate, channels
        self._conv = None
        if rate != WIRE_RATE or channels != 1:
            self._conv = StreamConverter(rate, channels, 2)
        self._pending = b""
        self._clock = None
        log.info(
            "microphone %r (index %s) opened at %d Hz, %d ch%s",
            self.device_name,
            self.device_index,
            rate,
            channels,
            ", resampling to 24000 Hz mono" if self._conv else "",
        )

    def reopen(self) -> None:
        """Close the device and open it again (re-enumerating devices, so a re-plugged device
        is found again by name). Call from the reading thread.

        Raises:
            AudioError: the device is still unavailable.
        """
        if self._closed.is_set():
            raise AudioError("the microphone is closed")
        with self._io_lock:
            self._release()
            self._open()

    # -- reading -----------------------------------------------------------------------

    def _device_read(self, frames: int) -> bytes:
        try:
            data = self._stream.read(frames, exception_on_overflow=False)
        except (OSError, AttributeError) as exc:
            if self._closed.is_set():
                return b""
            raise audio_error(f"Input device {self.device_name!r} stopped delivering audio", exc)
        self._track_overflow(len(data) // (2 * self.device_channels))
        return bytes(data)

    def _track_overflow(self, frames: int) -> None:
        """Detect lost audio: the device clock says more was captured than we have received."""
        now = time.monotonic()
        try:
            avail = int(self._stream.get_read_available())
        except (OSError, AttributeError):
            avail = 0
        clock = self._clock
        if clock is None:
            self._clock = {"t0": now, "got": -float(avail), "base": 0.0}
            return
        clock["got"] += frames
        deficit = (now - clock["t0"]) * self.device_rate - (clock["got"] + avail)
        gap = deficit - clock["base"]
        threshold = max(self.device_rate * 0.1, 2.0 * self.device_rate * self.chunk_ms / 1000)
        if gap > threshold:
            self.overflows += 1
            self.lost_ms += gap * 1000.0 / self.device_rate
            log.warning(
                "microphone %r overflowed: about %.0f ms of audio lost (reads fell behind)",
                self.device_name,
                gap * 1000.0 / self.device_rate,
            )
            clock["base"] = deficit
        else:
            # follow clock drift and scheduling jitter slowly
            clock["base"] += (deficit - clock["base"]) * 0.01

    def read(self, frames: int) -> bytes:
        """Block until ``frames`` frames of 24 kHz mono PCM16 have been captured.

        Reads the device one chunk at a time, so :meth:`close` from another thread makes it
        return (``b""``) within one chunk. Call from one thread at a time (the
        ``realtime-sync-audio`` thread).

        Raises:
            AudioError: the device failed (unplugged, sound server gone); see :meth:`reopen`.
        """
        if frames <= 0:
            raise ValueError("frames must be positive")
        want = frames * WIRE_SAMPLE_WIDTH
        chunk = max(1, self.device_rate * self.chunk_ms // 1000)
        while len(self._pending) < want:
            with self._io_lock:
                if self._closed.is_set() or self._stream is None:
                    self._release()  # close() could not wait for us: release here
                    return b""
                missing = (want - len(self._pending)) // WIRE_SAMPLE_WIDTH
                if self._conv is None:
                    self._pending += self._device_read(min(chunk, missing))
                else:
                    need = math.ceil(missing * self.device_rate / WIRE_RATE)
                    self._pending += self._conv.process(self._device_read(min(chunk, need)))
        out, self._pending = self._pending[:want], self._pending[want:]
        return out

    # -- closing -----------------------------------------------------------------------

    def _release(self) -> None:
        stream, pa = self._stream, self._pa
        self._stream = self._pa = None
        conv, self._conv = self._conv, None
        release_device(stream, pa, conv)

    def close(self) -> None:
        """Stop recording and release the device. Idempotent; any thread.

        Waits for a read in progress on another thread (at most about one chunk); if that read
        hangs, the reading thread releases the device when its read returns.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        if self._io_lock.acquire(timeout=max(2.0, 4 * self.chunk_ms / 1000)):
            try:
                self._release()
            finally:
                self._io_lock.release()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed.is_set()


    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.device_rate} Hz, {self.device_channels} ch"
        return f"Microphone({self.device_name!r}, index={self.device_index}, {state})"

"""Audio sources: the :class:`AudioSource` protocol, a WAV-file source and an in-memory source.

Every source yields the wire format (24 kHz mono PCM16 little-endian). ``read(frames)`` returns
up to ``frames`` frames (``2 * frames`` bytes) and ``b""`` once the source is exhausted or
closed. A source may be paced in real time, like a microphone: ``read`` then returns when the
audio "has been captured", on a monotonic-clock schedule that does not drift.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import wave
from typing import Any, Optional, Union

from ..errors import AudioError
from ._closing import Closing
from ._convert import WIRE_RATE, WIRE_SAMPLE_WIDTH, StreamConverter

try:  # Python 3.8+: typing.Protocol
    from typing import Protocol, runtime_checkable
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol, runtime_checkable  # type: ignore

__all__ = ["AudioSource", "WavSource", "BytesSource"]

PathLike = Union[str, "os.PathLike[str]"]


@runtime_checkable
class AudioSource(Protocol):
    """Anything that yields 24 kHz mono PCM16: a file, a microphone, a generator of your own."""

    def read(self, frames: int) -> bytes:
        """Return up to ``frames`` frames (``2 * frames`` bytes); ``b""`` at the end."""
        ...

    def close(self) -> None:
        """Release the source; a blocked or later ``read`` returns ``b""``."""
        ...


class _PacedSource(Closing):
    """Base of finite sources: optional real-time pacing, close() that wakes a paced read."""

    sample_rate = WIRE_RATE
    channels = 1

    def __init__(self, realtime: bool) -> None:
        self.realtime = bool(realtime)
        self._closed = threading.Event()
        self._lock = threading.Lock()  # serialises _produce against close()
        self._t0: Optional[float] = None
        self._frames_out = 0

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed.is_set()

    @property
    def position_ms(self) -> float:
        """Milliseconds of audio returned by :meth:`read` so far."""
        return self._frames_out * 1000.0 / WIRE_RATE

    def _produce(self, frames: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self) -> None:
        """Free resources (called once, under the lock)."""

    def read(self, frames: int) -> bytes:
        """Return up to ``frames`` frames of 24 kHz mono PCM16; ``b""`` at the end or once closed.

        Call from one thread at a time (typically the ``realtime-sync-audio`` thread). With
        ``realtime=True`` the call blocks until the audio's capture time has come; the schedule
        starts at the first read. :meth:`close` from another thread wakes it.
        """
        if frames <= 0:
            raise ValueError("frames must be positive")
        if self._closed.is_set():
            return b""
        with self._lock:
            if self._closed.is_set():
                return b""
            data = self._produce(frames)
        if not data:
            return b""
        if self.realtime:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            due = self._t0 + (self._frames_out + len(data) // WIRE_SAMPLE_WIDTH) / WIRE_RATE
            if due > now and self._closed.wait(due - now):
                return b""
        self._frames_out += len(data) // WIRE_SAMPLE_WIDTH
        return data

    def close(self) -> None:
        """Close the source; idempotent, any thread. A paced ``read`` in progress returns b""."""
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            self._release()



class BytesSource(_PacedSource):
    """An in-memory source of 24 kHz mono PCM16 bytes (e.g. audio you generated or received).

    Args:
        pcm16: the audio; a trailing odd byte is ignored.
        realtime: pace reads like a microphone.
    """

    def __init__(self, pcm16: bytes, realtime: bool = False) -> None:
        super().__init__(realtime)
        self._data = memoryview(bytes(pcm16))[: len(pcm16) - len(pcm16) % WIRE_SAMPLE_WIDTH]
        self._pos = 0

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self._data) / WIRE_SAMPLE_WIDTH / WIRE_RATE

    def _produce(self, frames: int) -> bytes:
        end = self._pos + frames * WIRE_SAMPLE_WIDTH
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk

    def _release(self) -> None:
        self._data = memoryview(b"")


_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


class _PcmWaveRead(wave.Wave_read):
    """``wave.Wave_read`` that also reads WAVE_FORMAT_EXTENSIBLE files whose sub-format is
    integer PCM: the normal header of 24- and 32-bit files from sox or ffmpeg, which the
    ``wave`` module of Python < 3.12 refuses ("unknown format: 65534")."""

    def _read_fmt_chunk(self, chunk: Any) -> None:
        data = chunk.read()
        try:
            tag, channels, rate, _avg, _align, bits = struct.unpack_from("<HHLLHH", data)
        except struct.error:
            raise EOFError from None
        if tag == _WAVE_FORMAT_EXTENSIBLE and len(data) >= 26:
            tag = struct.unpack_from("<H", data, 24)[0]  # the sub-format GUID starts with it
        if tag != _WAVE_FORMAT_PCM:
            raise wave.Error(f"unknown format: {tag!r} (not integer PCM)")
        self._nchannels = channels
        self._framerate = rate
        self._sampwidth = (bits + 7) // 8
        if not self._sampwidth:
            raise wave.Error("bad sample width")
        if not self._nchannels:
            raise wave.Error("bad # of channels")
        self._framesize = self._nchannels * self._sampwidth
        self._comptype = "NONE"
        self._compname = "not compressed"


class WavSource(_PacedSource):
    """A WAV file as an :class:`AudioSource`, converted to 24 kHz mono PCM16.

    Reads any integer-PCM WAV the stdlib :mod:`wave` module opens (8/16/24/32-bit, any channel
    count, any rate). A 24 kHz mono 16-bit file passes through byte for byte without numpy or
    soxr; other formats are mixed to mono and resampled with soxr (the ``audio`` extra).

    Args:
        path: the WAV file.
        realtime: pace reads like a microphone (the stream thread then sends in real time).

    Raises:
        AudioError: the file is missing, not a WAV, not integer PCM, or needs the audio extra.
    """

    _BLOCK = 4096  # input frames decoded per step

    def __init__(self, path: PathLike, realtime: bool = False) -> None:
        super().__init__(realtime)
        self.path = os.fspath(path)
        try:
            self._wav = _PcmWaveRead(self.path)  # closed by close()
        except FileNotFoundError:
            raise AudioError(f"WAV file not found: {self.path}") from None
        except (wave.Error, EOFError) as exc:
            raise AudioError(
                f"cannot read {self.path} as a WAV file ({exc}); integer PCM WAV is supported, "
                "convert others first, e.g. `sox in.wav -b 16 out.wav`"
            ) from None
        except OSError as exc:
            raise AudioError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        self.source_rate = self._wav.getframerate()
        self.source_channels = self._wav.getnchannels()
        self.source_sample_width = self._wav.getsampwidth()
        self._source_frames = self._wav.getnframes()
        try:
            self._conv = StreamConverter(
                self.source_rate, self.source_channels, self.source_sample_width
            )
        except AudioError:
            self._wav.close()
            raise
        self._pending = b""
        self._eof = False

    @property
    def duration(self) -> float:
        """Length of the file in seconds."""
        return self._source_frames / float(self.source_rate) if self.source_rate else 0.0

    def _produce(self, frames: int) -> bytes:
        want = frames * WIRE_SAMPLE_WIDTH
        if self._conv.passthrough and not self._pending:
            return bytes(self._wav.readframes(frames))
        while len(self._pending) < want and not self._eof:
            raw = self._wav.readframes(self._BLOCK)
            if raw:
                self._pending += self._conv.process(raw)
            else:
                self._pending += self._conv.flush()
                self._eof = True
        out, self._pending = self._pending[:want], self._pending[want:]
        return out

    def _release(self) -> None:
        self._wav.close()

    def __repr__(self) -> str:
        return (
            f"WavSource({self.path!r}, {self.source_rate} Hz, {self.source_channels} ch, "
            f"{self.source_sample_width * 8}-bit, realtime={self.realtime})"
        )

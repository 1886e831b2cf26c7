"""Audio sources: the :class:`AudioSource` protocol, file sources (:class:`FileSource` for any
audio or video file, :class:`WavSource` for WAV) and an in-memory source.

Every source yields the wire format (24 kHz mono PCM16 little-endian). ``read(frames)`` returns
up to ``frames`` frames (``2 * frames`` bytes) and ``b""`` once the source is exhausted or
closed. A source may be paced in real time, like a microphone: ``read`` then returns when the
audio "has been captured", on a monotonic-clock schedule that does not drift.
"""

from __future__ import annotations

import logging
import os
import stat
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

__all__ = ["AudioSource", "FileSource", "WavSource", "BytesSource"]

PathLike = Union[str, "os.PathLike[str]"]

logger = logging.getLogger(__name__)


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


_WARN_STRETCHES = 5  # corrupt stretches of a file warned one by one (then a total at the end)
_AV_HINT = "install the audio extra: pip install 'realtime-sync[audio]'"


class _WaveDecoder:
    """Integer-PCM WAV through the stdlib (no PyAV needed): raw frames in the file's format."""

    def __init__(self, path: str) -> None:
        self._wav = _PcmWaveRead(path)
        self.rate = self._wav.getframerate()
        self.channels = self._wav.getnchannels()
        self.sample_width = self._wav.getsampwidth()
        self.frames: Optional[int] = self._wav.getnframes()
        self.codec = f"pcm_s{self.sample_width * 8}"
        self.declared_frames: Optional[int] = None
        held = _frames_held(path, self._wav)
        if held is not None and self.frames is not None and held < self.frames:
            self.declared_frames, self.frames = self.frames, held  # a truncated file

    def read(self, frames: int) -> bytes:
        return bytes(self._wav.readframes(frames))

    def close(self) -> None:
        self._wav.close()


def _frames_held(path: str, wav: Any) -> Optional[int]:
    """The frames a WAV file really holds after its data chunk's start, when that can be
    told (a regular file, a data chunk of a stated size), else None."""
    chunk = getattr(wav, "_data_chunk", None)
    # the data chunk's offset counts from the RIFF chunk's body, whose own offset is absolute
    inner, outer = getattr(chunk, "offset", None), getattr(getattr(wav, "_file", None),
                                                          "offset", None)
    offset = None if inner is None or outer is None else inner + outer
    size = getattr(chunk, "chunksize", None)
    if offset is None or not size or size >= 0xFFFFFFF0 or not os.path.isfile(path):
        return None  # streaming writers leave the size at 0 or 0xFFFFFFFF: nothing to compare
    try:
        available = os.path.getsize(path) - int(offset)
    except OSError:
        return None
    return max(0, available) // max(1, wav.getnchannels() * wav.getsampwidth())


class _AvDecoder:
    """Any audio or video file FFmpeg reads, decoded with PyAV: the first audio track as
    interleaved PCM16 at its own rate and channel count (soxr resamples it afterwards)."""

    def __init__(self, path: str) -> None:
        try:
            import av
        except ImportError:
            raise AudioError(
                f"reading {os.path.basename(path)} needs PyAV (it reads only integer-PCM WAV "
                f"without it); {_AV_HINT}"
            ) from None
        self._av = av
        try:
            self._container = av.open(path, "r")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise AudioError(
                f"cannot read {path}: not a WAV or other audio/video file FFmpeg can decode "
                f"({_av_message(exc)})"
            ) from None
        try:
            if not self._container.streams.audio:
                kinds = ", ".join(sorted({s.type for s in self._container.streams})) or "none"
                raise AudioError(f"{path} has no audio track (streams: {kinds})")
            self._stream = self._container.streams.audio[0]
            ctx = self._stream.codec_context
            self.rate = int(ctx.sample_rate or self._stream.rate or 0)
            self.channels = int(ctx.channels or 0) or 1
            if self.rate <= 0:
                raise AudioError(f"cannot read {path}: not audio FFmpeg can decode (its "
                                 "audio track has no sample rate)")
            self.sample_width = 2
            self.codec = ctx.name
            self.frames = _av_frames(self._container, self._stream, self.rate)
            self._resampler: Any = None
            self._packets: Any = self._container.demux(self._stream)
        except BaseException:
            self._container.close()
            raise
        self._path = path
        self._pending = b""
        self._eof = False
        self.dropped_frames = 0
        """Frames (at the track's rate) of undecodable packets, skipped and sent as silence."""
        self._decoded = 0  # frames decoded so far
        self._gap = 0  # frames of the current run of undecodable packets
        self._gap_packets = 0
        self._stretches = 0  # runs of undecodable packets so far
        self._last_error = ""

    def _next_block(self) -> bytes:
        """PCM16 of the next packet's frames; a run of undecodable packets (a corrupt stretch)
        is skipped with one warning and becomes silence of its length, so that later audio
        keeps its time. Decoding is per packet (``container.decode`` ends at the first
        error)."""
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                self._eof = True
                if not self._decoded and self._gap_packets:
                    raise AudioError(f"cannot decode {self._path}: {self._last_error}") from None
                tail = self._end_gap()
                if self._stretches > _WARN_STRETCHES:
                    logger.warning("%s: skipped %d ms of undecodable audio in all, in %d corrupt "
                                   "stretches", self._path, self.dropped_frames * 1000 // self.rate,
                                   self._stretches)
                return tail + self._pcm(None)
            except self._av.error.FFmpegError as exc:
                raise AudioError(f"cannot decode {self._path}: {_av_message(exc)}") from None
            try:
                frames = packet.decode()
            except self._av.error.FFmpegError as exc:
                self._skip(packet, exc)
                continue
            if not frames:
                continue
            out = self._end_gap()
            for frame in frames:
                self._decoded += frame.samples
                out += self._pcm(frame)
            return out

    def _skip(self, packet: Any, exc: BaseException) -> None:
        """Count an undecodable packet as part of the current gap."""
        if packet.duration and packet.time_base:
            frames = int(packet.duration * packet.time_base * self.rate)
        else:  # no duration: one typical frame (MP3: 1152 samples)
            frames = self._stream.codec_context.frame_size or 1152
        self._gap += frames
        self._gap_packets += 1
        self._last_error = _av_message(exc)

    def _end_gap(self) -> bytes:
        """Silence for the gap that just ended (one warning for it), or b""."""
        if not self._gap_packets:
            return b""
        gap, packets = self._gap, self._gap_packets
        self._gap = self._gap_packets = 0
        self.dropped_frames += gap
        self._stretches += 1
        if self._stretches <= _WARN_STRETCHES:
            logger.warning(
                "%s: skipped %d ms of undecodable audio (%d corrupt packet%s) at %.1f s: %s%s",
                self._path, gap * 1000 // self.rate, packets, "" if packets == 1 else "s",
                self._decoded / self.rate, self._last_error,
                "; further corrupt stretches are only counted" if
                self._stretches == _WARN_STRETCHES else "")
        return bytes(gap * self.channels * 2)

    def _pcm(self, frame: Any) -> bytes:
        """Interleaved PCM16 of ``frame`` (None: the resampler's tail) at the track's rate."""
        if self._resampler is None:
            if frame is None:
                return b""
            # FFmpeg converts the sample format (float, mu-law, planar, ...) only: the rate
            # stays (soxr resamples, as for WAV) and so do the channels (mixed like WAV's)
            self._resampler = self._av.AudioResampler(
                format="s16", layout=frame.layout.name, rate=self.rate)
        out = b""
        for converted in self._resampler.resample(frame):
            data = converted.to_ndarray()
            out += data.tobytes()
        return out

    def read(self, frames: int) -> bytes:
        want = frames * self.channels * 2
        while len(self._pending) < want and not self._eof:
            self._pending += self._next_block()
        out, self._pending = self._pending[:want], self._pending[want:]
        return out

    def close(self) -> None:
        self._packets = iter(())
        self._container.close()


def _av_message(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0] if str(exc) else \
        type(exc).__name__


def _av_frames(container: Any, stream: Any, rate: int) -> Optional[int]:
    """The track's length in frames at ``rate`` when the file says (else None)."""
    if stream.duration and stream.time_base:
        return int(stream.duration * stream.time_base * rate)
    if container.duration:
        return int(container.duration * rate / 1_000_000)
    return None


class FileSource(_PacedSource):
    """An audio or video file as an :class:`AudioSource`, converted to 24 kHz mono PCM16.

    Integer-PCM WAV is read with the stdlib :mod:`wave` module (a 24 kHz mono 16-bit file
    passes through byte for byte without numpy or soxr). Everything else FFmpeg reads is
    decoded with PyAV (the ``audio`` extra): MP3, M4A/AAC, FLAC, OGG/Vorbis/Opus, WebM, float
    and mu-law WAV, and the first audio track of a video (mp4, mkv, webm, ...). Channels are
    averaged to mono and the rate is converted with soxr.

    Args:
        path: the file.
        realtime: pace reads like a microphone (the stream thread then sends in real time).

    Raises:
        AudioError: the file is missing, empty, not decodable, has no audio track, or needs
            the ``audio`` extra (PyAV, numpy, soxr). Thread: any.
    """

    _BLOCK = 4096  # input frames decoded per step

    def __init__(self, path: PathLike, realtime: bool = False) -> None:
        super().__init__(realtime)
        self.path = os.fspath(path)
        self._decoder = self._open(self.path)
        self.source_rate = self._decoder.rate
        self.source_channels = self._decoder.channels
        self.source_sample_width = self._decoder.sample_width
        self.codec = self._decoder.codec
        self._source_frames = self._decoder.frames
        declared = getattr(self._decoder, "declared_frames", None)
        self.declared_duration: Optional[float] = (
            declared / float(self.source_rate) if declared and self.source_rate else None)
        """For a truncated WAV file: the length its header states (seconds), else None."""
        try:
            self._conv = StreamConverter(
                self.source_rate, self.source_channels, self.source_sample_width
            )
        except AudioError:
            self._decoder.close()
            raise
        self._pending = b""
        self._eof = False

    @staticmethod
    def _open(path: str) -> Any:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise AudioError(f"audio file not found: {path}") from None
        except OSError as exc:
            raise AudioError(f"cannot open {path}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            raise AudioError(f"{path} is a directory, not an audio file")
        if not stat.S_ISREG(info.st_mode):
            # opening a FIFO blocks until a writer comes, and its size says nothing
            raise AudioError(f"{path} is not a regular file (a FIFO, socket or device): "
                             "give the path of an audio file")
        size = info.st_size
        if size == 0:
            raise AudioError(f"the file is empty: {path}")
        try:
            return _WaveDecoder(path)  # closed by close()
        except (wave.Error, EOFError, RuntimeError):  # (a chunk past the end: RuntimeError)
            pass  # not integer-PCM WAV: FFmpeg decodes it
        except OSError as exc:
            raise AudioError(f"cannot open {path}: {exc.strerror or exc}") from None
        return _AvDecoder(path)

    @property
    def dropped_ms(self) -> int:
        """Audio skipped as undecodable so far (a corrupt stretch of a compressed file), in
        ms: each stretch is logged once as a warning and read as silence of its length, so
        later audio keeps its time. 0 for WAV."""
        frames = getattr(self._decoder, "dropped_frames", 0)
        return int(frames * 1000 // self.source_rate) if self.source_rate else 0

    @property
    def duration(self) -> float:
        """Length of the file in seconds (0.0 when the file does not say)."""
        if not self._source_frames or not self.source_rate:
            return 0.0
        return self._source_frames / float(self.source_rate)

    def _produce(self, frames: int) -> bytes:
        want = frames * WIRE_SAMPLE_WIDTH
        if self._conv.passthrough and not self._pending:
            return self._decoder.read(frames)
        while len(self._pending) < want and not self._eof:
            raw = self._decoder.read(self._BLOCK)
            if raw:
                self._pending += self._conv.process(raw)
            else:
                self._pending += self._conv.flush()
                self._eof = True
        out, self._pending = self._pending[:want], self._pending[want:]
        return out

    def _release(self) -> None:
        self._decoder.close()
        self._conv.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, {self.codec}, {self.source_rate} Hz, "
            f"{self.source_channels} ch, realtime={self.realtime})"
        )


class WavSource(FileSource):
    """A WAV file as an :class:`AudioSource` (kept for existing code: it is a
    :class:`FileSource`, so float and mu-law WAV and other formats work too, with PyAV).

    Integer PCM (8/16/24/32-bit, any channel count, any rate) needs no PyAV; a 24 kHz mono
    16-bit file passes through byte for byte without numpy or soxr.

    Raises:
        AudioError: the file is missing, not decodable, or needs the audio extra.
    """

"""PCM format conversion: decode 8/16/24/32-bit integer PCM, mix to mono, resample with soxr.

The wire format is 24 kHz mono PCM16 little-endian. Audio already in that format passes
through untouched without numpy or soxr; every other format needs the ``audio`` extra
(numpy + soxr), imported lazily. No ``audioop`` (removed in Python 3.13).

Conversion works in floating point in units of one 16-bit step, so there is a single rounding
at the end: decoding, mixing and resampling do not accumulate error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Tuple

from .._core import wire as _wire
from ..errors import AudioError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "WIRE_RATE",
    "WIRE_CHANNELS",
    "WIRE_SAMPLE_WIDTH",
    "convert",
    "resample",
    "StreamConverter",
    "ms_to_bytes",
    "bytes_to_ms",
]

log = logging.getLogger(__name__)

WIRE_RATE = _wire.SAMPLE_RATE
"""Sample rate of the Realtime API's ``pcm16`` audio."""
WIRE_CHANNELS = 1
WIRE_SAMPLE_WIDTH = _wire.SAMPLE_WIDTH
_QUALITY = "HQ"
_EXTRA_HINT = "install the audio extra: pip install 'realtime-sync[audio]'"


def ms_to_bytes(ms: float, rate: int = WIRE_RATE) -> int:
    """Bytes of mono PCM16 for ``ms`` milliseconds (whole frames). Any thread."""
    return int(rate * ms / 1000.0) * WIRE_SAMPLE_WIDTH


def bytes_to_ms(n: int, rate: int = WIRE_RATE) -> float:
    """Milliseconds of mono PCM16 in ``n`` bytes. Any thread."""
    return (n // WIRE_SAMPLE_WIDTH) * 1000.0 / rate


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise AudioError(f"converting audio formats needs numpy; {_EXTRA_HINT}") from None
    return numpy


def _soxr() -> Any:
    try:
        import soxr
    except ImportError:
        raise AudioError(f"resampling audio needs soxr; {_EXTRA_HINT}") from None
    return soxr


def _check_format(rate: int, channels: int, sample_width: int) -> None:
    if sample_width not in (1, 2, 3, 4):
        raise AudioError(
            f"unsupported sample width {sample_width * 8} bits (8, 16, 24 or 32-bit PCM)"
        )
    if channels < 1:
        raise AudioError(f"invalid channel count {channels}")
    if rate <= 0:
        raise AudioError(f"invalid sample rate {rate}")


def _is_wire(rate: int, channels: int, sample_width: int) -> bool:
    return channels == 1 and sample_width == 2 and rate > 0


def decode(data: bytes, sample_width: int, channels: int) -> np.ndarray:
    """Decode interleaved little-endian integer PCM into a mono float64 array.

    Values are in 16-bit units (full scale ±32768) and channels are averaged. ``data`` must
    hold whole frames. 8-bit PCM is unsigned (as in WAV); 16/24/32-bit are signed. Any thread.
    """
    np = _numpy()
    if sample_width == 1:
        x = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    elif sample_width == 2:
        x = np.frombuffer(data, dtype="<i2").astype(np.float64)
    elif sample_width == 3:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float64) / 256.0
    elif sample_width == 4:
        x = np.frombuffer(data, dtype="<i4").astype(np.float64) / 65536.0
    else:
        raise AudioError(f"unsupported sample width {sample_width * 8} bits")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return x


def encode_pcm16(x: np.ndarray) -> bytes:
    """Round and clip a float array in 16-bit units to PCM16 little-endian bytes. Any thread."""
    np = _numpy()
    return bytes(np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes())


def resample(pcm16: bytes, from_rate: int, to_rate: int = WIRE_RATE) -> bytes:
    """Resample mono PCM16 from ``from_rate`` to ``to_rate`` with soxr (high quality).

    The result has ``frames * to_rate / from_rate`` frames, rounded half up. Equal rates
    return the input. Any thread.

    Raises:
        AudioError: numpy or soxr is not installed (the ``audio`` extra).
    """
    if from_rate == to_rate:
        return bytes(pcm16)
    return convert(pcm16, rate=from_rate, channels=1, sample_width=2, to_rate=to_rate)


def convert(
    data: bytes, *, rate: int, channels: int, sample_width: int, to_rate: int = WIRE_RATE
) -> bytes:
    """Convert a whole block of integer PCM to mono PCM16 at ``to_rate``. Any thread.

    Already mono PCM16 at ``to_rate`` passes through without numpy/soxr.

    Raises:
        AudioError: bad format, or the ``audio`` extra is missing when conversion is needed.
    """
    _check_format(rate, channels, sample_width)
    frame = sample_width * channels
    usable = len(data) - len(data) % frame
    if _is_wire(rate, channels, sample_width) and rate == to_rate:
        return bytes(data[:usable])
    x = decode(data[:usable], sample_width, channels)
    if rate != to_rate and len(x):
        x = _soxr().resample(x, rate, to_rate, _QUALITY)
    return encode_pcm16(x)


class StreamConverter:
    """Incremental conversion of a PCM stream to mono PCM16 at ``to_rate`` (default 24 kHz).

    Feed arbitrary byte chunks to :meth:`process` (partial frames are carried over) and call
    :meth:`flush` once at the end to get the resampler's tail. The concatenated output equals
    :func:`convert` of the whole input. Not thread-safe: use it from one thread at a time.
    """

    def __init__(
        self, rate: int, channels: int = 1, sample_width: int = 2, to_rate: int = WIRE_RATE
    ) -> None:
        _check_format(rate, channels, sample_width)
        self.rate = rate
        self.channels = channels
        self.sample_width = sample_width
        self.to_rate = to_rate
        self._frame = channels * sample_width
        self._carry = b""
        self._passthrough = rate == to_rate and _is_wire(rate, channels, sample_width)
        self._resampler: Any = self._new_resampler()
        if not self._passthrough:
            _numpy()

    def _new_resampler(self) -> Any:
        if self.rate == self.to_rate:
            return None
        return _soxr().ResampleStream(self.rate, self.to_rate, 1, "float64", _QUALITY)

    @property
    def passthrough(self) -> bool:
        """True when input is already mono PCM16 at the target rate (no numpy/soxr used)."""
        return self._passthrough

    def _split(self, data: bytes) -> Tuple[bytes, bytes]:
        buf = self._carry + bytes(data) if self._carry else bytes(data)
        cut = len(buf) - len(buf) % self._frame
        return buf[:cut], buf[cut:]

    def process(self, data: bytes) -> bytes:
        """Convert the next chunk; returns the PCM16 produced so far (may be empty)."""
        whole, self._carry = self._split(data)
        if self._passthrough:
            return whole
        x = decode(whole, self.sample_width, self.channels)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=False)
        return encode_pcm16(x)

    def flush(self) -> bytes:
        """End of input: return the remaining output (drops a trailing partial frame).

        The converter is reset and can be fed a new stream afterwards.
        """
        self._carry = b""
        if self._resampler is None:
            return b""
        np = _numpy()
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float64), last=True)
        self._resampler = self._new_resampler()
        return encode_pcm16(tail)

    def close(self) -> None:
        """Release the resampler now (not at garbage collection, which may come only at
        interpreter exit, where nanobind reports it as leaked). Idempotent; afterwards the
        converter must not be used."""
        self._resampler = None
        self._carry = b""

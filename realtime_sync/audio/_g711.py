"""G.711 (μ-law ``audio/pcmu``, A-law ``audio/pcma``, 8 kHz) helpers, pure Python.

Decoding tables for the silence check and the local server, and a reader for G.711 WAV files
(format tags 7 and 6, which the stdlib ``wave`` module refuses). Any thread.
"""

from __future__ import annotations

import array
import os
import struct
import sys
import time
from typing import BinaryIO, Dict, List, Optional, Tuple, Union

__all__ = ["FORMATS", "WIRE_FORMATS", "bytes_per_ms", "decode", "encode", "G711Wav",
           "sniff_wav"]

FORMATS = ("pcm", "pcmu", "pcma")
"""``audio_format`` values: PCM16 24 kHz, G.711 μ-law 8 kHz, G.711 A-law 8 kHz."""

WIRE_FORMATS = {"pcm": "audio/pcm", "pcmu": "audio/pcmu", "pcma": "audio/pcma"}
"""``audio_format`` -> ``session.audio.input.format.type``."""

_WAV_TAGS = {7: "pcmu", 6: "pcma"}
_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def bytes_per_ms(audio_format: str) -> int:
    """Bytes of one millisecond of mono audio: 48 for PCM16 24 kHz, 8 for G.711."""
    return 48 if audio_format == "pcm" else 8


def _ulaw(byte: int) -> int:
    u = ~byte & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def _alaw(byte: int) -> int:
    a = byte ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if (a & 0x80) else -t


SAMPLES: Dict[str, List[int]] = {
    "pcmu": [_ulaw(b) for b in range(256)],
    "pcma": [_alaw(b) for b in range(256)],
}
"""Linear 16-bit value of each G.711 byte."""


def decode(data: bytes, audio_format: str) -> array.array[int]:
    """G.711 bytes -> 16-bit samples (8 kHz, native byte order)."""
    table = SAMPLES[audio_format]
    return array.array("h", [table[b] for b in data])


def _ulaw_of(v: int) -> int:
    sign = 0x80 if v < 0 else 0
    v = min(-v if v < 0 else v, 32635) + 0x84
    exponent = max(v.bit_length() - 8, 0)
    return ~(sign | (exponent << 4) | ((v >> (exponent + 3)) & 0x0F)) & 0xFF


def _alaw_of(v: int) -> int:
    sign = 0x80 if v >= 0 else 0
    v = min(-v - 1 if v < 0 else v, 32767)
    seg = 0 if v < 256 else v.bit_length() - 8
    return (sign | (seg << 4) | ((v >> (seg + 3 if seg else 4)) & 0x0F)) ^ 0x55


_ENCODE: Dict[str, bytes] = {}


def encode(pcm16: bytes, audio_format: str) -> bytes:
    """16-bit little-endian samples (8 kHz) -> G.711 bytes (``"pcmu"`` or ``"pcma"``)."""
    table = _ENCODE.get(audio_format)
    if table is None:
        of = _ulaw_of if audio_format == "pcmu" else _alaw_of
        table = _ENCODE[audio_format] = bytes(of(i - 65536 if i >= 32768 else i)
                                              for i in range(65536))
    samples = array.array("H", pcm16[: len(pcm16) - len(pcm16) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return bytes(table[x] for x in samples)


def _read_fmt(fh: BinaryIO) -> Tuple[int, int, int, int, int]:
    """(format tag, channels, rate, bits, data size) of a RIFF/WAVE file; fh left at data."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    fmt: Optional[Tuple[int, int, int, int]] = None
    while True:
        chunk = fh.read(8)
        if len(chunk) < 8:
            raise ValueError("no data chunk")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = fh.read(size + (size & 1))
            if len(body) < 16:
                raise ValueError("short fmt chunk")
            tag, channels, rate, _avg, _align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("data chunk before fmt chunk")
            return fmt + (size,)
        else:
            fh.seek(size + (size & 1), os.SEEK_CUR)


def sniff_wav(path: Union[str, os.PathLike[str]]) -> Optional[str]:
    """``"pcmu"``/``"pcma"`` when ``path`` is a G.711 WAV, else None (also when unreadable:
    the PCM reader then reports the problem, a FIFO or device included: never opened here,
    as opening a FIFO blocks)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as fh:
            tag = _read_fmt(fh)[0]
    except (OSError, ValueError, struct.error):
        return None
    return _WAV_TAGS.get(tag)


class G711Wav:
    """A mono 8 kHz G.711 WAV file read as raw G.711 bytes (what goes on the wire as is).

    With ``realtime=True``, :meth:`read` paces like a microphone (sleeps until the audio it
    returns would have been spoken).

    Raises:
        ValueError: not a G.711 WAV, or not mono 8 kHz (the message says which).
    """

    def __init__(self, path: Union[str, os.PathLike[str]], realtime: bool = False) -> None:
        self.path = os.fspath(path)
        self.realtime = realtime
        self._started: Optional[float] = None
        self._read = 0
        self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        try:
            tag, channels, rate, _bits, size = _read_fmt(self._fh)
            if tag not in _WAV_TAGS:
                raise ValueError(f"{self.path} is not a G.711 WAV (format tag {tag})")
            if channels != 1 or rate != 8000:
                raise ValueError(f"{self.path}: G.711 audio must be mono 8 kHz, not "
                                 f"{channels} channel(s) at {rate} Hz")
        except BaseException:
            self._fh.close()
            raise
        self.audio_format = _WAV_TAGS[tag]
        self._left = size
        self.duration = size / 8000.0

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (= samples); ``b""`` at the end."""
        data = self._fh.read(min(n, self._left)) if self._left > 0 else b""
        self._left -= len(data)
        if self.realtime and data:
            if self._started is None:
                self._started = time.monotonic()
            self._read += len(data)
            ahead = self._read / 8000.0 - (time.monotonic() - self._started)
            if ahead > 0:
                time.sleep(ahead)
        return data

    def close(self) -> None:
        self._fh.close()


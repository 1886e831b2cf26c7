"""Input audio conversion for the local server: G.711 (8 kHz) to PCM16 24 kHz, pure Python.

Pure functions; any thread may call them.
"""

from __future__ import annotations

import array
import sys
from typing import List

__all__ = ["to_pcm24k", "BYTES_PER_MS"]

BYTES_PER_MS = 48  # PCM16 mono 24 kHz


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


def _table(decode: object) -> List[bytes]:
    out = []
    for b in range(256):
        sample = array.array("h", [decode(b)] * 3)  # type: ignore[operator]
        if sys.byteorder == "big":
            sample.byteswap()
        out.append(sample.tobytes())
    return out


_TABLES = {"audio/pcmu": _table(_ulaw), "audio/pcma": _table(_alaw)}


def to_pcm24k(data: bytes, fmt: str) -> bytes:
    """Convert appended audio in session format ``fmt`` to PCM16 mono 24 kHz little-endian.

    ``audio/pcm`` passes through; G.711 is decoded and upsampled 3x by sample repetition.
    """
    table = _TABLES.get(fmt)
    if table is None:
        return data
    return b"".join([table[b] for b in data])

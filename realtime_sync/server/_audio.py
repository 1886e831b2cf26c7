"""Input audio conversion for the local server: G.711 (8 kHz) to PCM16 24 kHz, pure Python.

Pure functions; any thread may call them.
"""

from __future__ import annotations

import array
import sys
from typing import Callable, List

from .._core.wire import BYTES_PER_MS
from ..audio._g711 import SAMPLES

__all__ = ["to_pcm24k", "BYTES_PER_MS"]


def _table(decode: Callable[[int], int]) -> List[bytes]:
    out = []
    for b in range(256):
        sample = array.array("h", [decode(b)] * 3)
        if sys.byteorder == "big":
            sample.byteswap()
        out.append(sample.tobytes())
    return out


_TABLES = {"audio/pcmu": _table(SAMPLES["pcmu"].__getitem__),
           "audio/pcma": _table(SAMPLES["pcma"].__getitem__)}


def to_pcm24k(data: bytes, fmt: str) -> bytes:
    """Convert appended audio in session format ``fmt`` to PCM16 mono 24 kHz little-endian.

    ``audio/pcm`` passes through; G.711 is decoded and upsampled 3x by sample repetition.
    """
    table = _TABLES.get(fmt)
    if table is None:
        return data
    return b"".join([table[b] for b in data])

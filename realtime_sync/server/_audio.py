"""Input audio conversion for the local server: G.711 (8 kHz) to PCM16 24 kHz, pure Python.

Pure functions; any thread may call them.
"""

from __future__ import annotations

import array
import base64
import binascii
import re
import sys
from typing import Any, Callable, List

from .._core.wire import BYTES_PER_MS
from ..audio._g711 import SAMPLES

__all__ = ["to_pcm24k", "b64decode_strict", "BYTES_PER_MS"]

_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


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


def b64decode_strict(text: Any) -> bytes:
    """``base64.b64decode(text, validate=True)`` without its ASCII copy of ``text``.

    The stdlib encodes a str argument to bytes first: for a 15 MiB append that is one more
    15 MiB buffer alive while decoding. :func:`binascii.a2b_base64` reads an ASCII str in
    place. Raises :class:`binascii.Error` or :class:`ValueError` (non-ASCII) as the stdlib does.
    """
    if not isinstance(text, str):
        return base64.b64decode(text, validate=True)
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(text, strict_mode=True)
    if not text.isascii():  # as the stdlib's ASCII encoding step refuses it
        raise ValueError("string argument should contain only ASCII characters")
    if not _B64.fullmatch(text):  # what b64decode(validate=True) checks before 3.11
        raise binascii.Error("Non-base64 digit found")
    return binascii.a2b_base64(text)

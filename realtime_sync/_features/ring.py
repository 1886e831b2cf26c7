"""The audio a live session object keeps until the server has used it: :class:`AudioRing`.

Positions are absolute byte offsets in everything fed. The ring holds the bytes from
:attr:`AudioRing.start` to :attr:`AudioRing.total`; :attr:`AudioRing.sent` is how far the
current session has had them. A new session rewinds ``sent`` to where its replay starts;
:meth:`AudioRing.trim` forgets what no replay needs and bounds the rest, and its
:class:`~realtime_sync._features.drops.DropLedger` counts what that really loses.

Not thread-safe: the owner calls it under its own lock.
"""

from __future__ import annotations

from typing import Any, cast

from .drops import DropLedger

__all__ = ["AudioRing", "audio_bytes"]


def audio_bytes(data: Any, pcm16: bool = True) -> bytes:
    """What a live object's ``feed()`` takes, checked: bytes (a memoryview is copied).

    Raises:
        TypeError: not bytes.
        ValueError: ``pcm16`` and an odd number of bytes.
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"audio must be bytes of PCM16 samples, not {type(data).__name__}")
    if pcm16 and len(data) % 2:
        raise ValueError(f"PCM16 audio has an even number of bytes; got {len(data)}")
    return cast(bytes, data)  # a bytearray is kept as it is: only read, never stored


class AudioRing:
    """A bounded replay buffer of audio with its positions and drop accounting.

    Args:
        max_bytes: the most audio kept beyond what a replay needs.
        drops: counts and reports what leaves the ring before it was used.
        whole_samples: trim by whole PCM16 samples (2 bytes); False for G.711 bytes.
    """

    def __init__(self, max_bytes: int, drops: DropLedger, whole_samples: bool = True) -> None:
        self.max_bytes = max_bytes
        self.drops = drops
        self.whole_samples = whole_samples
        self.data = bytearray()
        """The bytes kept, from :attr:`start` on."""
        self.start = 0
        """Absolute position of the oldest byte kept."""
        self.total = 0
        """Bytes fed so far (the position of the next byte)."""
        self.sent = 0
        """How far the current session has had the audio."""

    def add(self, pcm: bytes) -> None:
        """Keep ``pcm`` at the end."""
        self.data += pcm
        self.total += len(pcm)

    @property
    def unsent(self) -> int:
        """Bytes fed that the current session has not had yet."""
        return self.total - self.sent

    def read(self, pos: int, size: int) -> bytes:
        """Up to ``size`` bytes from absolute position ``pos`` (``pos >= start``)."""
        offset = pos - self.start
        return bytes(self.data[offset:offset + size])

    def between(self, start: int, end: int) -> bytes:
        """The bytes kept from ``start`` to ``end`` (clipped to what the ring holds)."""
        begin = max(start, self.start) - self.start
        return bytes(self.data[begin:end - self.start])

    def rewind(self, pos: int) -> None:
        """A new session: it has had nothing from ``pos`` on."""
        self.sent = pos

    def advance(self, pos: int, size: int) -> None:
        """``size`` bytes from ``pos`` went to the session; ``sent`` moves only if nothing
        else moved it meanwhile (a replay rewinds it)."""
        if self.sent == pos:
            self.sent = pos + size

    def trim(self, needed: int) -> None:
        """Forget the audio before ``needed`` (the oldest byte a replay needs) and bound the
        rest to :attr:`max_bytes`; beyond it the oldest audio leaves (``sent`` moves past
        it) and :attr:`drops` counts what is really lost."""
        keep_from = max(needed, self.start)  # what is gone is gone
        overflow = (self.total - keep_from) - self.max_bytes
        end = keep_from
        if overflow > 0:
            end = keep_from + overflow + (overflow % 2 if self.whole_samples else 0)
        self.drops.pushed_out(keep_from, end, self.sent, needed)
        if end > keep_from:
            self.sent = max(self.sent, end)
            keep_from = end
        if keep_from > self.start:
            del self.data[:keep_from - self.start]
            self.start = keep_from

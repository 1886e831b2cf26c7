"""One file of a batch (:func:`realtime_sync.transcribe_files`): transcribed by a
:class:`~realtime_sync.Transcriber` on the calling thread, interruptible, with the batch's
progress. The thread executor (:mod:`realtime_sync.batch`) and the Ray actors
(:mod:`realtime_sync._features.cluster`) both run it.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Optional

from ..errors import TimeoutError

if TYPE_CHECKING:
    from ..transcription import Transcript

__all__ = ["BatchProgress", "Cancelled", "transcribe_one"]


class Cancelled(Exception):
    """The batch was interrupted (Ctrl-C in the calling thread)."""


class BatchProgress:
    """One bar for the whole batch: audio transcribed in every file (the end of each completed
    turn, then the whole file when it is done). Any thread."""

    def __init__(self, bar: Any, files: int) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._ms = [0.0] * files

    def to_ms(self, index: int, ms: Optional[float]) -> None:
        if self._bar is None or ms is None:
            return
        with self._lock:
            self._ms[index] = max(self._ms[index], float(ms))
            total = sum(self._ms)
        self._bar.to_ms(total)


def transcribe_one(path: str, index: int, progress: BatchProgress, duration_ms: float,
                    stop: threading.Event, timeout: Optional[float], realtime: bool,
                    options: Dict[str, Any]) -> Transcript:
    """:func:`~realtime_sync.transcribe_file` for one file of a batch, which ``stop``
    interrupts (between two chunks, or while waiting for the last turns). Blocking; the
    calling thread."""
    from ..audio import FileSource
    from ..transcription import Transcriber

    deadline = None if timeout is None else time.monotonic() + timeout
    user_final = options.get("on_final")

    def on_final(segment: Any) -> None:
        progress.to_ms(index, segment.end_ms)
        if user_final is not None:
            user_final(segment)

    from ..transcription import DEFAULT_MODEL
    from .file_turns import FALLBACK_TURN_S, QuietCutter, feed_cut, file_turns

    cutter = None  # the core install: bounded turns cut at quiet points (as transcribe_file)
    if file_turns(options.get("model", DEFAULT_MODEL), options.get("turn_detection", "auto"),
                  options.get("audio_format", "pcm")):
        options = {**options, "turn_detection": None}
        cutter = QuietCutter(FALLBACK_TURN_S)
    with FileSource(path, realtime=realtime) as source, \
            Transcriber(**{**options, "on_final": on_final}) as tr:
        while True:
            if stop.is_set():
                raise Cancelled("the batch was interrupted")
            chunk = source.read(2400)
            feed_cut(tr, cutter, chunk)
            if not chunk:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{path} not done in {timeout} s")
        while True:  # finish() in short waits, so that stop is seen
            try:
                transcript = tr.finish(timeout=0.25)
                break
            except TimeoutError:
                if stop.is_set():
                    raise Cancelled("the batch was interrupted") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise
    progress.to_ms(index, duration_ms)
    return transcript

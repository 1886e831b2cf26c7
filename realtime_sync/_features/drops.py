"""What a replay buffer really lost: one owner for the drop accounting of the transcriber and
the translator.

Both keep the audio fed until the server has turned it into text, so that a new session can
replay it, and bound that buffer. Audio pushed out of the buffer *before it was sent* is lost
at once. Audio pushed out *after it was sent* is only out of reach of a replay: it is lost only
if a new session has to replay it. Each byte is counted once, and one warning per episode
says how much was lost (issue 11, failure 9: the old accounting counted the same audio on
every feed and warned each time).

Positions are absolute byte offsets in everything fed. Not thread-safe: the owner calls it
under its own lock.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Tuple

from .._core.wire import BYTES_PER_MS

__all__ = ["DropLedger"]


class DropLedger:
    """Counts the audio a replay buffer lost, once, and warns once per episode.

    Args:
        logger: where the episode's warning goes.
        what: the buffer's owner in the warning (``"transcriber"``, ``"translator"``).
        pending: what the lost audio was waiting for (``"untranscribed"``...).
        limit_s: the buffer's bound in seconds (said in the warning).
        report: called with the bytes of every loss (counters, ``client.audio_dropped``).
    """

    def __init__(self, logger: logging.Logger, what: str, pending: str, limit_s: float,
                 report: Callable[[int], None], bytes_per_ms: int = BYTES_PER_MS) -> None:
        self._logger = logger
        self._bytes_per_ms = bytes_per_ms  # 8 for G.711
        self._what = what
        self._pending = pending
        self._limit_s = limit_s
        self._report = report
        self.total = 0
        """Bytes lost in all."""
        self._episode = 0
        # ranges sent to the current session, then pushed out (lost only if replayed)
        self._unreplayable: List[Tuple[int, int]] = []

    def pushed_out(self, start: int, end: int, sent: int, needed: int) -> None:
        """``[start, end)`` left the buffer; the current session has had up to ``sent``, and
        a replay would start at ``needed``. With ``end == start`` (nothing pushed out), the
        episode ends."""
        sent_end = min(end, max(sent, start))
        if sent_end > start:
            self._unreplayable.append((start, sent_end))
        while self._unreplayable and self._unreplayable[0][1] <= needed:
            self._unreplayable.pop(0)  # transcribed: no replay can need it
        if len(self._unreplayable) > 64:  # contiguous in practice; merge to stay bounded
            self._unreplayable[:] = [(self._unreplayable[0][0], self._unreplayable[-1][1])]
        lost = end - sent_end
        if lost > 0:
            self._lose(lost)
        else:
            self.end_episode()

    def new_session(self, needed: int, first: bool = False) -> None:
        """A new session replays from ``needed`` on: what it needs and the buffer no longer
        holds is lost now. Ends the episode."""
        lost = sum(max(0, end - max(start, needed)) for start, end in self._unreplayable)
        self._unreplayable.clear()
        if lost and not first:
            self._lose(lost)
        self.end_episode()

    def end_episode(self) -> None:
        """Log one warning for what was lost since the episode began."""
        if self._episode:
            self._logger.warning(
                "%s buffer full: dropped %d ms of %s audio (max_buffer_s=%g)",
                self._what, self._episode // self._bytes_per_ms, self._pending, self._limit_s)
            self._episode = 0

    def _lose(self, nbytes: int) -> None:
        self.total += nbytes
        self._episode += nbytes
        self._report(nbytes)

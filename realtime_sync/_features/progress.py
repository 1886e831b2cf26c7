"""A progress bar of audio transcribed (tqdm, on stderr), counted in whole milliseconds.

The count never passes the total (no ``TqdmWarning: clamping frac to range [0, 1]``): the bar
moves to the end of each completed turn and to the total when the file is done.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Optional, TextIO

__all__ = ["AudioProgress", "progress_bar", "MIN_PROGRESS_MS"]

MIN_PROGRESS_MS = 30_000
"""Files shorter than this get no bar unless asked for."""


class AudioProgress:
    """Seconds of audio transcribed out of ``total_ms``. Methods may be called from any thread."""

    def __init__(self, total_ms: int, stream: Optional[TextIO] = None,
                 desc: str = "transcribed") -> None:
        from tqdm import tqdm

        self.total_ms = max(1, int(total_ms))
        self._lock = threading.Lock()
        self._n = 0
        out = stream if stream is not None else sys.stderr
        # a terminal that reports no size (a fresh pty) would get an empty bar: assume 80
        width: dict = {"dynamic_ncols": True} if _columns(out) else {"ncols": 80, "nrows": 24}
        self._bar: Any = tqdm(
            total=self.total_ms, unit="s", unit_scale=0.001, desc=desc, leave=False,
            file=out, **width,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
        )

    @property
    def n_ms(self) -> int:
        """Milliseconds counted so far."""
        return self._n

    def to_ms(self, ms: Optional[float]) -> None:
        """Move the bar forward to ``ms`` (never back, never past the total)."""
        if ms is None:
            return
        with self._lock:
            target = min(int(ms), self.total_ms)
            if target > self._n and self._bar is not None:
                self._bar.update(target - self._n)
                self._n = target

    def done(self) -> None:
        """All audio transcribed: fill the bar and remove it."""
        self.to_ms(self.total_ms)
        self.close()

    def close(self) -> None:
        """Remove the bar (idempotent)."""
        with self._lock:
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()

    def above(self) -> Any:
        """A context in which anything printed (stdout or stderr) appears above the bar: the
        bar is cleared first and drawn again after."""
        from tqdm import tqdm

        return tqdm.external_write_mode(file=sys.stdout)

    def write(self, text: str, stream: TextIO) -> None:
        """Print ``text`` to ``stream`` without garbling the bar."""
        from tqdm import tqdm

        with tqdm.external_write_mode(file=stream):
            stream.write(text)
            stream.flush()


def _columns(stream: Any) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def progress_bar(total_ms: float, enabled: Optional[bool] = None,
                 stream: Optional[TextIO] = None) -> Optional[AudioProgress]:
    """An :class:`AudioProgress`, or None: ``enabled=None`` shows one when ``stream`` (stderr)
    is a terminal and the audio is longer than 30 s; tqdm missing also gives None."""
    if enabled is False or total_ms <= 0:
        return None
    out = stream if stream is not None else sys.stderr
    if enabled is None:
        try:
            tty = out.isatty()
        except (AttributeError, ValueError):
            tty = False
        if not tty or total_ms < MIN_PROGRESS_MS:
            return None
    try:
        return AudioProgress(int(total_ms), out)
    except ImportError:
        return None

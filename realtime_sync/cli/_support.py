"""Helpers of the ``transcribe`` command: where the transcript goes, how loud the audio was,
the exit status, reconnect reporting and the give-up deadline, cutting ``--no-vad`` files.

Kept apart from :mod:`realtime_sync.cli` (argument parsing and command flow) so each piece
can be tested and changed on its own.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from array import array
from typing import Any, Callable, List, Optional, TextIO

from .._core.backoff import Backoff
from .._features.reconnects import report_reconnects
from ..errors import RealtimeSyncError

__all__ = [
    "resolve_format",
    "add_caption_options",
    "caption_options",
    "TranscriptSink",
    "LevelMeter",
    "file_outcome",
    "GiveUpAfter",
    "report_reconnects",
    "QuietCutter",
    "SILENCE_DBFS",
]

SILENCE_DBFS = -50.0
"""A file whose every 100 ms stays below this RMS level is silence."""


class CommandError(RealtimeSyncError):
    """The command failed; the message is the one line shown (exit code 1)."""


# -- output ---------------------------------------------------------------------------------
def resolve_format(fmt: Optional[str], output: Optional[str]) -> str:
    """The output format, one rule for every command: ``--format`` when given, else the one
    ``-o``'s extension names, else ``text`` (no ``-o``, or a name without an extension).

    Raises:
        UsageError: ``-o`` has an extension that names no format (``out.docx``) and no
            ``--format`` says which one to write.
    """
    if fmt:
        return fmt
    if not output:
        return "text"
    from ..captions import FORMAT_EXTENSIONS, format_for_path

    found = format_for_path(output)
    if found is not None:
        return found
    ext = os.path.splitext(os.path.basename(output))[1]
    if not ext:
        return "text"
    from ._common import UsageError

    raise UsageError(f"cannot tell the output format from {output!r}: use one of "
                     f"{', '.join(FORMAT_EXTENSIONS)}, or say it with --format "
                     "text|srt|vtt|jsonl")


def _line_length(value: str) -> int:
    import argparse

    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of characters: {value!r}") from None
    if n < 10:
        raise argparse.ArgumentTypeError(f"must be at least 10 characters, not {n}")
    return n


def _cue_seconds(value: str) -> float:
    import argparse

    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 <= seconds <= 10:
        raise argparse.ArgumentTypeError(f"must be 0 to 10 seconds, not {value}")
    return seconds


def add_caption_options(p: Any) -> None:
    """``--max-line-length`` and ``--min-cue-duration`` (SRT/WebVTT) on parser ``p``."""
    from ..captions import LINE_WIDTH, MIN_CUE_MS

    p.add_argument("--max-line-length", type=_line_length, default=LINE_WIDTH, metavar="N",
                   help=f"srt/vtt: longest caption line in characters (default {LINE_WIDTH})")
    p.add_argument("--min-cue-duration", type=_cue_seconds, default=MIN_CUE_MS / 1000,
                   metavar="SECONDS",
                   help="srt/vtt: a shorter cue is merged into the next one or lengthened "
                        f"(default {MIN_CUE_MS / 1000:g}; 0 keeps the turns' own times)")


def caption_options(args: Any) -> dict:
    """The caption writer options of the command line (see :func:`add_caption_options`)."""
    return {"max_line_length": args.max_line_length,
            "min_cue_ms": int(round(args.min_cue_duration * 1000))}


class TranscriptSink:
    """Where final segments go: the console (plain text on stdout) and/or a caption writer.

    A write error stops everything once: a closed pipe (``| head -2``) quietly, a full disk or
    another I/O error with one line (:attr:`error`). What was already written stays. ``final``
    runs on the dispatcher thread; :attr:`stop` is set on the first error.

    Args:
        console: has ``partial(text)`` and ``final(text)`` (the command's terminal printer).
        writer: a :class:`~realtime_sync.captions.CaptionWriter`, or None.
        to_console: print finals on the console too (plain text, or a file is written).
        output_name: the ``-o`` path, for the error message (None: stdout).
    """

    def __init__(self, console: Any, writer: Any, to_console: bool,
                 output_name: Optional[str]) -> None:
        self.console = console
        self.writer = writer
        self.to_console = to_console
        self.output_name = output_name
        self.stop = threading.Event()
        self.error: Optional[str] = None
        self.pipe_closed = False
        self.segments: List[Any] = []
        self.progress: Any = None  # an AudioProgress while a bar is shown
        self._lock = threading.Lock()

    def partial(self, segment: Any) -> None:
        if not self.stop.is_set() and self.to_console and self.progress is None:
            try:
                self.console.partial(segment.text)
            except BrokenPipeError:
                self._closed_pipe()
            except OSError:
                pass  # a partial is only a preview: the final reports the problem

    def final(self, segment: Any) -> None:
        with self._lock:
            self.segments.append(segment)
        if self.progress is not None:
            self.progress.to_ms(segment.end_ms)
        if self.stop.is_set():
            return
        try:
            if self.to_console and segment.text.strip():  # first: it stays if the file fails
                if self.progress is not None:
                    self.progress.write(segment.text.strip() + "\n", self.console.stream)
                else:
                    self.console.final(segment.text)
            if self.writer is not None:
                self._guard(self.output_name, lambda: self.writer.write(segment))
        except BrokenPipeError:
            self._closed_pipe()
        except OSError as exc:
            self._fail(None, exc)

    def _guard(self, name: Optional[str], write: Callable[[], None]) -> None:
        try:
            write()
        except BrokenPipeError:
            if name is None:
                raise
            self._fail(name, OSError("the reader closed the pipe"))
        except OSError as exc:
            self._fail(name, exc)

    def _fail(self, name: Optional[str], exc: OSError) -> None:
        if self.error is None:
            where = name or "standard output"
            self.error = f"cannot write to {where}: {exc.strerror or exc}; stopped"
        self.stop.set()

    def _closed_pipe(self) -> None:
        self.pipe_closed = True
        self.stop.set()

    def close(self) -> None:
        """Close the writer; an error already reported is not raised again."""
        writer, self.writer = self.writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError:
                writer.discard()
        if self.pipe_closed:
            silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush of a closed pipe is quiet
    (the recipe of the Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


# -- how loud the audio was ---------------------------------------------------------------------
class LevelMeter:
    """The loudest 100 ms (RMS, dBFS) of the 24 kHz PCM16 fed through :meth:`feed`."""

    WINDOW = 2400 * 2  # bytes of 100 ms

    def __init__(self) -> None:
        self.loudest_dbfs = -120.0
        self._carry = b""
        try:
            import numpy
        except ImportError:
            numpy = None  # type: ignore[assignment]
        self._np: Any = numpy

    def feed(self, pcm16: bytes) -> None:
        data = self._carry + pcm16
        usable = len(data) - len(data) % self.WINDOW
        self._carry = data[usable:]
        if usable:
            self._measure(data[:usable])

    def _measure(self, data: bytes) -> None:
        np = self._np
        if np is not None:
            x = np.frombuffer(data, dtype="<i2").astype(np.float64).reshape(-1, 2400)
            power = float((x * x).mean(axis=1).max())
        else:
            samples = array("h")
            samples.frombytes(data)
            if sys.byteorder == "big":
                samples.byteswap()
            power = 0.0
            for i in range(0, len(samples), 2400):
                part = samples[i:i + 2400]
                power = max(power, sum(v * v for v in part) / len(part))
        if power > 0:
            self.loudest_dbfs = max(self.loudest_dbfs,
                                    10 * math.log10(power / (32768.0 ** 2)))

    @property
    def silent(self) -> bool:
        """True when no 100 ms reached :data:`SILENCE_DBFS`."""
        if self._carry:
            self._measure(self._carry + b"\0" * (self.WINDOW - len(self._carry)))
            self._carry = b""
        return self.loudest_dbfs < SILENCE_DBFS


def file_outcome(segments: List[Any], meter: Optional[LevelMeter], name: Optional[str],
                 stderr: TextIO) -> int:
    """The exit status of a finished transcription; writes its one line to ``stderr``.

    1 when any turn failed (how many), 1 when a file with sound gave no text, 0 with a note
    for a file of silence, else 0.
    """
    failed = [s for s in segments if getattr(s, "error", None)]
    if failed:
        first = failed[0].error or {}
        reason = first.get("message") if isinstance(first, dict) else str(first)
        reason = str(reason or "").strip().splitlines()[0] if reason else ""
        stderr.write(f"realtime-sync: error: {len(failed)} of {len(segments)} turns failed "
                     f"(first: {reason or 'no reason given'})\n")
        return 1
    if meter is None or any(getattr(s, "text", "").strip() for s in segments):
        return 0
    if meter.silent:
        stderr.write(f"realtime-sync: note: {name} is silent (loudest 100 ms: "
                     f"{meter.loudest_dbfs:.0f} dBFS); nothing to transcribe\n")
        return 0
    stderr.write(f"realtime-sync: error: no speech found in {name} (it has sound, up to "
                 f"{meter.loudest_dbfs:.0f} dBFS; is it speech, and is --language right?)\n")
    return 1


# -- reconnecting -------------------------------------------------------------------------------
class GiveUpAfter(Backoff):
    """The default backoff, but give up once the server has been unreachable for ``seconds``
    (counted from the first failed attempt in a row); the last delay is cut to fit."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = float(seconds)
        self.gave_up = False
        self._since: Optional[float] = None

    def gives_up(self, attempt: int) -> bool:
        now = time.monotonic()
        if attempt <= 1 or self._since is None:
            self._since = now
        self.gave_up = now - self._since >= self.seconds
        return self.gave_up

    def delay(self, attempt: int) -> float:
        since = self._since if self._since is not None else time.monotonic()
        remaining = self.seconds - (time.monotonic() - since)
        return max(0.0, min(super().delay(attempt), remaining))


# -- --no-vad on a file ---------------------------------------------------------------------------
from .._features.file_turns import QuietCutter  # noqa: E402 - kept importable from here

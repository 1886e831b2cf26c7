"""Many files at once: :func:`transcribe_files`.

Up to ``jobs`` files are transcribed in parallel, each by :func:`transcribe_file` in its own
session (one client each) on a ``realtime-sync-batch-N`` thread. Results come back in input
order; a file that fails is reported in its :class:`FileResult` and the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from .errors import TimeoutError
from .transcription import Transcript

__all__ = ["FileResult", "transcribe_files", "caption_path"]

logger = logging.getLogger(__name__)

_EXTENSIONS = {"text": ".txt", "srt": ".srt", "vtt": ".vtt", "jsonl": ".jsonl"}


@dataclass
class FileResult:
    """The outcome of one file of a batch.

    Attributes:
        path: the input file, as given.
        transcript: its transcript, or None when it failed.
        error: the exception that stopped it, or None.
        output: the caption file written for it, when captions were asked for.
    """

    path: str
    transcript: Optional[Transcript] = None
    error: Optional[BaseException] = None
    output: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True when the file was transcribed (its turns may still have failed one by one:
        see ``Segment.error``)."""
        return self.error is None


class _Cancelled(Exception):
    """The batch was interrupted (Ctrl-C in the calling thread)."""


class _BatchProgress:
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


def _transcribe_one(path: str, index: int, progress: _BatchProgress, duration_ms: float,
                    stop: threading.Event, timeout: Optional[float], realtime: bool,
                    options: Dict[str, Any]) -> Transcript:
    """:func:`transcribe_file` for one file of a batch, which ``stop`` interrupts (between two
    chunks, or while waiting for the last turns)."""
    from .audio import FileSource
    from .transcription import Transcriber

    deadline = None if timeout is None else time.monotonic() + timeout
    user_final = options.get("on_final")

    def on_final(segment: Any) -> None:
        progress.to_ms(index, segment.end_ms)
        if user_final is not None:
            user_final(segment)

    from ._features.file_turns import FALLBACK_TURN_S, QuietCutter, feed_cut, file_turns
    from .transcription import DEFAULT_MODEL

    cutter = None  # the core install: bounded turns cut at quiet points (as transcribe_file)
    if file_turns(options.get("model", DEFAULT_MODEL), options.get("turn_detection", "auto"),
                  options.get("audio_format", "pcm")):
        options = {**options, "turn_detection": None}
        cutter = QuietCutter(FALLBACK_TURN_S)
    with FileSource(path, realtime=realtime) as source, \
            Transcriber(**{**options, "on_final": on_final}) as tr:
        while True:
            if stop.is_set():
                raise _Cancelled("the batch was interrupted")
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
                    raise _Cancelled("the batch was interrupted") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise
    progress.to_ms(index, duration_ms)
    return transcript


def caption_path(path: str, format: str, output_dir: Optional[str] = None) -> str:  # noqa: A002
    """Where the caption file of ``path`` goes: ``<stem>.<ext>`` beside it or in
    ``output_dir``."""
    if format not in _EXTENSIONS:
        raise ValueError(f"unknown caption format {format!r}; choose one of "
                         f"{', '.join(_EXTENSIONS)}")
    stem = os.path.splitext(os.path.basename(path))[0]
    folder = output_dir if output_dir is not None else (os.path.dirname(path) or ".")
    return os.path.join(folder, stem + _EXTENSIONS[format])


def _durations(paths: Sequence[str]) -> List[Union[float, BaseException]]:
    """Each file's duration in seconds, or the exception opening it raised."""
    from .audio import FileSource

    out: List[Union[float, BaseException]] = []
    for path in paths:
        try:
            source = FileSource(path)
        except Exception as exc:  # noqa: BLE001 - reported per file
            out.append(exc)
            continue
        try:
            out.append(float(getattr(source, "duration", 0.0) or 0.0))
        finally:
            source.close()
    return out


def transcribe_files(
    paths: Sequence[Union[str, os.PathLike[str]]],
    *,
    jobs: int = 2,
    captions: Optional[str] = None,
    output_dir: Optional[Union[str, os.PathLike[str]]] = None,
    progress: Optional[bool] = None,
    on_result: Optional[Callable[[FileResult], Any]] = None,
    timeout: Optional[float] = None,
    realtime: bool = False,
    caption_options: Optional[Dict[str, Any]] = None,
    **options: Any,
) -> List[FileResult]:
    """Transcribe many files, up to ``jobs`` at a time; returns one :class:`FileResult` per
    path, in input order. Blocking; any thread but a dispatcher's.

    Each file gets its own session (one :class:`~realtime_sync.Transcriber` each, on a
    ``realtime-sync-batch-N`` thread), fed as :func:`~realtime_sync.transcribe_file` does.
    A file that fails (unreadable, connection refused, timeout, ...) has its ``error`` set
    and the batch goes on. Ctrl-C stops starting new files, interrupts the running ones
    (between two chunks, or while they wait for their last turns) and raises
    ``KeyboardInterrupt`` once they have closed their sessions.

    Args:
        paths: audio or video files (whatever :func:`transcribe_file` reads).
        jobs: files transcribed at the same time (>= 1).
        captions: also write a caption file per input (``"srt"``, ``"vtt"``, ``"jsonl"``
            or ``"text"``), named by :func:`caption_path`.
        output_dir: the folder of the caption files (created; default: beside each input).
        progress: one tqdm bar for the whole batch (seconds of audio transcribed); None
            shows it on a terminal when there is more than 30 s of audio in all.
        on_result: ``on_result(result)`` once per file, in input order, as soon as the file
            and every file before it are done (on a batch thread, one call at a time); what it
            prints appears above the progress bar.
        timeout: per file, as :func:`transcribe_file`'s.
        realtime: pace each file in real time.
        caption_options: options of the caption writers (``max_line_length``, ``min_cue_ms``;
            see :func:`realtime_sync.captions.open_writer`).
        **options: :class:`~realtime_sync.Transcriber` options (``model``, ``url``, ...).

    Raises:
        ValueError: ``jobs`` < 1 or an unknown caption format (before anything starts).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, not {jobs!r}")
    if captions is not None and captions not in _EXTENSIONS:
        raise ValueError(f"unknown caption format {captions!r}; choose one of "
                         f"{', '.join(_EXTENSIONS)}")
    if on_result is not None and not callable(on_result):
        raise TypeError("on_result must be callable")
    names = [os.fspath(p) for p in paths]
    folder = os.fspath(output_dir) if output_dir is not None else None
    if captions is not None:
        targets = [os.path.abspath(caption_path(p, captions, folder)) for p in names]
        clash = next((t for t in targets if targets.count(t) > 1), None)
        if clash is not None:
            raise ValueError(f"two inputs would write the same caption file {clash}; "
                             "give them different names or folders")
    if folder is not None and captions is not None:
        os.makedirs(folder, exist_ok=True)
    results = [FileResult(path=p) for p in names]
    durations = _durations(names)
    todo: queue.Queue[int] = queue.Queue()
    for i, d in enumerate(durations):
        if isinstance(d, BaseException):
            results[i].error = d
        todo.put(i)
    cancel = threading.Event()
    from ._features.progress import progress_bar

    bar = progress_bar(sum(d for d in durations if isinstance(d, float)) * 1000, progress)
    shared = _BatchProgress(bar, len(names))
    done = [False] * len(names)
    deliver_lock = threading.Lock()
    next_out = [0]

    def deliver(index: int) -> None:
        with deliver_lock:  # in input order, one call at a time
            done[index] = True
            while next_out[0] < len(names) and done[next_out[0]]:
                result = results[next_out[0]]
                next_out[0] += 1
                if on_result is not None:
                    try:  # what it prints goes above the bar, not onto its line
                        with (bar.above() if bar is not None else contextlib.nullcontext()):
                            on_result(result)
                    except Exception:  # noqa: BLE001 - a callback never stops the batch
                        logger.exception("on_result failed for %s", result.path)

    def run_one(index: int) -> None:
        result = results[index]
        if result.error is None:
            try:
                duration = durations[index]
                result.transcript = _transcribe_one(
                    result.path, index, shared,
                    duration * 1000 if isinstance(duration, float) else 0.0,
                    cancel, timeout, realtime, options)
                if captions is not None:
                    result.output = _write_captions(result, captions, folder,
                                                    caption_options or {})
            except _Cancelled as exc:
                result.error = KeyboardInterrupt(str(exc))
            except Exception as exc:  # noqa: BLE001 - reported per file, the batch goes on
                result.error = exc
                logger.info("%s failed: %s", result.path, exc)
        deliver(index)

    def worker() -> None:
        while not cancel.is_set():
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            run_one(index)

    threads = [threading.Thread(target=worker, name=f"realtime-sync-batch-{n}", daemon=True)
               for n in range(min(jobs, len(names)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)  # short waits: Ctrl-C reaches this thread
    except KeyboardInterrupt:
        cancel.set()
        for t in threads:
            t.join(10)
        raise
    finally:
        if bar is not None:
            if not cancel.is_set():
                bar.done()
            bar.close()
    return results


def _write_captions(result: FileResult, format: str, folder: Optional[str],  # noqa: A002
                    caption_options: Dict[str, Any]) -> str:
    from .captions import open_writer

    assert result.transcript is not None
    target = caption_path(result.path, format, folder)
    writer = open_writer(target, format, **caption_options)
    try:
        writer.write_all(result.transcript.segments)
    finally:
        writer.close()
    return target

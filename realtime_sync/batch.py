"""Many files at once: :func:`transcribe_files`.

Up to ``jobs`` files are transcribed in parallel, each by :func:`transcribe_file` in its own
session (one client each). Who runs the per-file work is an executor: by default
``realtime-sync-batch-N`` threads in this process; with ``cluster=`` Ray actors
(:mod:`realtime_sync._features.cluster`), each holding one server (the offline engine, loaded
once) or one client. Results, their order, the caption files and the failure reports stay
here: a file that fails is reported in its :class:`FileResult` and the others go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ._features.file_job import BatchProgress, Cancelled, transcribe_one
from .transcription import Transcript

__all__ = ["FileResult", "transcribe_files", "caption_path", "OfflineEngine", "BatchInterrupted"]

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
        skipped: True when ``resume`` found its caption file complete and left it alone
            (``transcript`` is then None).
        attempts: how many times it was started (more than 1 when a cluster worker died
            under it and it was retried elsewhere; 0 when skipped or unreadable).
    """

    path: str
    transcript: Optional[Transcript] = None
    error: Optional[BaseException] = None
    output: Optional[str] = None
    skipped: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """True when the file was transcribed (its turns may still have failed one by one:
        see ``Segment.error``)."""
        return self.error is None


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`transcribe_files`: ``results`` holds one :class:`FileResult` per
    path, in input order (the finished files with their transcripts, the others with a
    ``KeyboardInterrupt`` error). A ``KeyboardInterrupt``, so code that catches that still
    works."""

    def __init__(self, results: List[FileResult]) -> None:
        done = sum(1 for r in results if r.ok)
        super().__init__(f"interrupted: {done} of {len(results)} files finished")
        self.results = results


class OfflineEngine:
    """A recipe for the local server with the offline engine, for ``transcribe_files(server=)``:
    calling it returns a new :class:`~realtime_sync.server.RealtimeServer` (a context manager)
    that loads ``model``. Cheap to build and to pickle: a cluster sends it to every actor,
    which loads the model once. Any thread.

    Args:
        model: the offline model (``"base"``, ``"tiny.en"``, a directory, ...); None = default.
        cpu_threads: threads one engine uses (0 = its default); on a cluster each actor
            reserves this many CPUs (at least 1).
        **recognizer_options: more :func:`~realtime_sync.server.local_engine` options.
    """

    def __init__(self, model: Optional[str] = None, cpu_threads: int = 0,
                 **recognizer_options: Any) -> None:
        self.model = model
        self.cpu_threads = cpu_threads
        self.recognizer_options = recognizer_options

    @property
    def cpus(self) -> int:
        """CPUs one engine keeps busy (what a cluster actor reserves)."""
        return max(1, self.cpu_threads)

    def __call__(self) -> Any:
        from .server import RealtimeServer, local_engine

        if self.cpu_threads:
            self.recognizer_options.setdefault("cpu_threads", self.cpu_threads)
        recognizer, vad_factory = local_engine(self.model, **self.recognizer_options)
        return RealtimeServer(recognizer=recognizer, vad_factory=vad_factory)

    def __repr__(self) -> str:
        return f"OfflineEngine(model={self.model!r}, cpu_threads={self.cpu_threads})"


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


def _check_batch(paths: Sequence[Union[str, os.PathLike[str]]], jobs: Any,
                 captions: Optional[str], output_dir: Optional[Union[str, os.PathLike[str]]],
                 on_result: Any, server: Any, retries: Any, resume: bool
                 ) -> Tuple[List[str], Optional[str]]:
    """:func:`transcribe_files`' checks, before anything starts: the paths as strings and
    the caption folder (made). Raises as :func:`transcribe_files` says."""
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise ValueError(f"jobs must be an integer >= 1, not {jobs!r}")
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, not {retries!r}")
    if captions is not None and captions not in _EXTENSIONS:
        raise ValueError(f"unknown caption format {captions!r}; choose one of "
                         f"{', '.join(_EXTENSIONS)}")
    if resume and captions is None:
        raise ValueError("resume needs captions: it skips the inputs whose caption file "
                         "exists")
    if on_result is not None and not callable(on_result):
        raise TypeError("on_result must be callable")
    if server is not None and not callable(server):
        raise TypeError("server must be a callable that returns a server context manager")
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
    return names, folder


def transcribe_files(
    paths: Sequence[Union[str, os.PathLike[str]]],
    *,
    jobs: Optional[int] = None,
    captions: Optional[str] = None,
    output_dir: Optional[Union[str, os.PathLike[str]]] = None,
    progress: Optional[bool] = None,
    on_result: Optional[Callable[[FileResult], Any]] = None,
    timeout: Optional[float] = None,
    realtime: bool = False,
    server: Optional[Callable[[], Any]] = None,
    cluster: Optional[str] = None,
    upload: bool = False,
    retries: int = 2,
    resume: bool = False,
    caption_options: Optional[Dict[str, Any]] = None,
    **options: Any,
) -> List[FileResult]:
    """Transcribe many files, up to ``jobs`` at a time; returns one :class:`FileResult` per
    path, in input order. Blocking; any thread but a dispatcher's.

    Each file gets its own session (one :class:`~realtime_sync.Transcriber` each), fed as
    :func:`~realtime_sync.transcribe_file` does: on a ``realtime-sync-batch-N`` thread, or
    with ``cluster`` in a Ray actor. A file that fails (unreadable, connection refused,
    timeout, ...) has its ``error`` set and the batch goes on. Ctrl-C stops starting new
    files, interrupts the running ones and raises :class:`BatchInterrupted` (a
    ``KeyboardInterrupt``) once they have stopped; its ``results`` hold what finished.

    Args:
        paths: audio or video files (whatever :func:`transcribe_file` reads).
        jobs: files transcribed at the same time (>= 1); default 2, or with ``cluster`` one
            actor per CPU the cluster offers divided by the CPUs one job reserves.
        captions: also write a caption file per input (``"srt"``, ``"vtt"``, ``"jsonl"``
            or ``"text"``), named by :func:`caption_path`; written whole or not at all (a
            temporary file renamed into place).
        output_dir: the folder of the caption files (created; default: beside each input).
        progress: one tqdm bar for the whole batch (seconds of audio transcribed); None
            shows it on a terminal when there is more than 30 s of audio in all.
        on_result: ``on_result(result)`` once per file, in input order, as soon as the file
            and every file before it are done (on a batch thread or the calling thread,
            one call at a time); what it prints appears above the progress bar.
        timeout: per file, as :func:`transcribe_file`'s.
        realtime: pace each file in real time.
        server: a zero-argument callable returning a server context manager with a
            ``url`` (e.g. :class:`OfflineEngine`): started once in this process, or once in
            every actor with ``cluster``; the sessions connect to it.
        cluster: run the files on Ray actors: a Ray address (``"ray://head:10001"``,
            ``"head:6379"``), ``"auto"`` (the cluster this machine belongs to) or
            ``"local"`` (a Ray instance on this machine, on 127.0.0.1). A process already
            connected to Ray (``ray.init`` called) uses that connection. Needs
            ``pip install "realtime-sync[ray]"``.
        upload: with ``cluster``, send each file's bytes through Ray's object store (for
            workers that do not share this machine's storage); else workers open the paths
            themselves and a worker that cannot see one reports it as that file's error.
        retries: with ``cluster``, how many more times a file is started when the worker or
            node running it dies (then it fails with a ``RealtimeSyncError``); a file that
            fails by itself is never retried.
        resume: skip inputs whose caption file already exists (needs ``captions``): their
            result has ``skipped`` set. Caption files are only ever complete, so a batch
            killed half-way can be started again with the same arguments.
        caption_options: options of the caption writers (``max_line_length``, ``min_cue_ms``;
            see :func:`realtime_sync.captions.open_writer`).
        **options: :class:`~realtime_sync.Transcriber` options (``model``, ``url``, ...).

    Raises:
        ValueError: ``jobs`` < 1, ``retries`` < 0, an unknown caption format, or ``resume``
            without ``captions`` (before anything starts).
        BatchInterrupted: Ctrl-C.
        realtime_sync.ConfigurationError: ``cluster`` without Ray installed, or a cluster
            that cannot be reached (one line naming the address).
    """
    names, folder = _check_batch(paths, jobs, captions, output_dir, on_result, server,
                                 retries, resume)
    results = [FileResult(path=p) for p in names]
    skipped = set()
    if resume:
        assert captions is not None
        for i, p in enumerate(names):
            target = caption_path(p, captions, folder)
            if os.path.isfile(target):
                results[i].output, results[i].skipped = target, True
                skipped.add(i)
    durations: List[Union[float, BaseException]] = [0.0] * len(names)
    for i, d in zip([i for i in range(len(names)) if i not in skipped],
                    _durations([p for i, p in enumerate(names) if i not in skipped])):
        durations[i] = d
        if isinstance(d, BaseException):
            results[i].error = d
    todo = [i for i in range(len(names)) if i not in skipped and results[i].error is None]
    from ._features.progress import progress_bar

    bar = progress_bar(sum(d for d in durations if isinstance(d, float)) * 1000, progress)
    shared = BatchProgress(bar, len(names))
    delivery = _InOrder(results, on_result, bar)
    for i in range(len(names)):
        if i not in todo:
            delivery.done(i)

    def finish(index: int, transcript: Optional[Transcript],
               error: Optional[BaseException]) -> None:
        """One file is over (any thread): captions, progress, delivery in order."""
        result = results[index]
        result.transcript, result.error = transcript, error
        if transcript is not None and captions is not None:
            try:
                result.output = _write_captions(result, captions, folder,
                                                caption_options or {})
            except Exception as exc:  # noqa: BLE001 - reported per file
                result.error = exc
        if result.error is not None:
            logger.info("%s failed: %s", result.path, result.error)
        duration = durations[index]
        shared.to_ms(index, duration * 1000 if isinstance(duration, float) else None)
        delivery.done(index)

    interrupted = False
    try:
        if cluster is not None:
            from ._features.cluster import run_on_cluster

            run_on_cluster(
                cluster, todo, names, results, finish, jobs=jobs, server=server,
                upload=upload, retries=retries, timeout=timeout, realtime=realtime,
                options=options)
        else:
            _run_threads(todo, names, results, finish, shared, durations, jobs or 2,
                         server, timeout, realtime, options)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            if not interrupted:
                bar.done()
            bar.close()
    if interrupted:
        for i, result in enumerate(results):
            if not delivery.is_done(i):
                result.error = KeyboardInterrupt("the batch was interrupted")
                delivery.done(i)
        raise BatchInterrupted(results)
    return results


class _InOrder:
    """Hands results to ``on_result`` in input order, one call at a time (any thread)."""

    def __init__(self, results: List[FileResult],
                 on_result: Optional[Callable[[FileResult], Any]], bar: Any = None) -> None:
        self._bar = bar  # what on_result prints goes above it
        self._results = results
        self._on_result = on_result
        self._lock = threading.Lock()
        self._done = [False] * len(results)
        self._next = 0

    def is_done(self, index: int) -> bool:
        with self._lock:
            return self._done[index]

    def done(self, index: int) -> None:
        with self._lock:
            if self._done[index]:
                return  # never twice
            self._done[index] = True
            while self._next < len(self._results) and self._done[self._next]:
                result = self._results[self._next]
                self._next += 1
                if self._on_result is not None:
                    try:
                        with (self._bar.above() if self._bar is not None
                              else contextlib.nullcontext()):
                            self._on_result(result)
                    except Exception:  # noqa: BLE001 - a callback never stops the batch
                        logger.exception("on_result failed for %s", result.path)


def _run_threads(todo: List[int], names: List[str], results: List[FileResult],
                 finish: Callable[[int, Optional[Transcript], Optional[BaseException]], None],
                 shared: BatchProgress, durations: List[Union[float, BaseException]],
                 jobs: int, server: Optional[Callable[[], Any]], timeout: Optional[float],
                 realtime: bool, options: Dict[str, Any]) -> None:
    """The default executor: ``jobs`` threads in this process (and ``server``, if any, started
    once here). Ctrl-C interrupts the running files and is raised again once they stopped."""
    if not todo:
        return
    pending: queue.Queue[int] = queue.Queue()
    for i in todo:
        pending.put(i)
    cancel = threading.Event()
    with contextlib.ExitStack() as stack:
        if server is not None:
            srv = stack.enter_context(server())
            options = {**options, "url": srv.url, "api_key": options.get("api_key") or "sk-local"}

        def run_one(index: int) -> None:
            results[index].attempts += 1
            duration = durations[index]
            try:
                transcript = transcribe_one(
                    names[index], index, shared,
                    duration * 1000 if isinstance(duration, float) else 0.0,
                    cancel, timeout, realtime, options)
            except Cancelled:
                return  # reported by transcribe_files as interrupted
            except Exception as exc:  # noqa: BLE001 - reported per file, the batch goes on
                finish(index, None, exc)
                return
            finish(index, transcript, None)

        def worker() -> None:
            while not cancel.is_set():
                try:
                    index = pending.get_nowait()
                except queue.Empty:
                    return
                run_one(index)

        threads = [threading.Thread(target=worker, name=f"realtime-sync-batch-{n}",
                                    daemon=True)
                   for n in range(min(jobs, len(todo)))]
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


def _write_captions(result: FileResult, format: str, folder: Optional[str],  # noqa: A002
                    caption_options: Optional[Dict[str, Any]] = None) -> str:
    """Write the caption file whole or not at all: into a hidden temporary file beside it,
    renamed into place once complete (so ``resume`` never takes a half-written file)."""
    import uuid

    from .captions import open_writer

    assert result.transcript is not None
    target = caption_path(result.path, format, folder)
    partial = os.path.join(os.path.dirname(target),
                           f".{os.path.basename(target)}.{uuid.uuid4().hex[:12]}.partial")
    try:
        writer = open_writer(partial, format, **(caption_options or {}))
        try:
            writer.write_all(result.transcript.segments)
        finally:
            writer.close()
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    return target

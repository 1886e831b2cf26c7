"""What the command line's commands share: usage errors, the console, the endpoint options
(``--local``, ``--url``, ``--api-key``), the in-process local server, device names and the
event logger."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from typing import Any, Callable, Iterator, Optional, TextIO

__all__ = ["UsageError", "Console", "add_common", "device", "endpoint_options",
           "engine_options", "event_logger", "local_server"]

logger = logging.getLogger("realtime_sync.cli")


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging and tracebacks")


class Console:
    """Live partials redraw the current terminal line; finals are printed as they complete."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._lock = threading.Lock()
        self._partial = False

    def partial(self, text: str) -> None:
        if not self.tty:
            return
        width = max(20, shutil.get_terminal_size((80, 20)).columns - 1)
        shown = text.strip()
        if len(shown) > width:
            shown = "…" + shown[-(width - 1):]
        with self._lock:
            self.stream.write("\r\x1b[2K\x1b[90m" + shown + "\x1b[0m")
            self.stream.flush()
            self._partial = True

    def final(self, text: str) -> None:
        with self._lock:
            if self._partial:
                self.stream.write("\r\x1b[2K")
                self._partial = False
            if text.strip():
                self.stream.write(text.strip() + "\n")
            self.stream.flush()


def event_logger(start: float) -> Callable[[Any], None]:
    def log(event: Any) -> None:
        sys.stderr.write(f"{time.monotonic() - start:9.3f}s  {event.get('type')}\n")
        sys.stderr.flush()
    return log


def engine_options(args: argparse.Namespace, jobs: Optional[int] = None) -> dict:
    """``local_engine`` keywords from --partial-model, --threads and --jobs (checked here,
    before any audio is read: a bad value is a usage error, exit 2)."""
    options: dict = {}
    partial = getattr(args, "partial_model", None)
    if partial is not None:
        from ..errors import ConfigurationError
        from ..server._engine import check_partial_model

        try:
            check_partial_model(partial)
        except ConfigurationError as exc:
            raise UsageError(f"--partial-model: {exc}") from None
        options["partial_model"] = partial
    threads = getattr(args, "threads", None)
    if threads:
        options["cpu_threads"] = threads
    if jobs and jobs > 1:
        from ..server._models import default_threads

        options["workers"] = min(jobs, default_threads())  # N decodes at once, up to the cores
    return options


@contextlib.contextmanager
def local_server(model: Optional[str], engine: bool = True,
                  api_key: Optional[str] = None,
                  host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                  translate: bool = False,
                  max_connections: Optional[int] = None,
                  engine_options: Optional[dict] = None) -> Iterator[Any]:
    """The local server in-process (with the offline engine unless ``engine`` is False; with
    ``translate`` also the offline translator, which loads the multilingual model;
    ``engine_options``: more ``local_engine`` keywords, see :func:`engine_options`)."""
    from ..server import RealtimeServer

    if quiet and not logger.isEnabledFor(logging.DEBUG):
        # the in-process server's own error logs (with tracebacks) would repeat what the
        # client reports in one line (a failed turn, a refused event); --debug shows them
        logging.getLogger("realtime_sync.server").setLevel(logging.CRITICAL)
    kwargs: dict = {}
    if engine:
        from ..server import local_engine

        recognizer, vad_factory = local_engine(model, **(engine_options or {}))
        kwargs.update(recognizer=recognizer, vad_factory=vad_factory)
        if translate:  # only `serve` offers translation sessions
            from ..server._translation import offline_translator

            kwargs["translator"] = offline_translator(None)  # Whisper's translate task
    with RealtimeServer(host=host, port=port, api_key=api_key,
                        max_connections=max_connections, **kwargs) as srv:
        yield srv


def endpoint_options(args: argparse.Namespace, stack: contextlib.ExitStack,
                     jobs: Optional[int] = None) -> dict:
    if getattr(args, "local", False):
        srv = stack.enter_context(local_server(getattr(args, "model", None),
                                               engine_options=engine_options(args, jobs)))
        return {"url": srv.url, "api_key": "sk-local"}
    if args.url:
        from urllib.parse import urlsplit

        from .._core.endpoint import is_loopback

        key = getattr(args, "api_key", None) or os.environ.get("OPENAI_API_KEY")
        parts = urlsplit(args.url)
        host = parts.hostname or ""
        if key is None and is_loopback(host):
            key = "sk-local"  # local servers (realtime-sync serve) accept any key
        insecure = bool(getattr(args, "allow_insecure", False))
        if key and parts.scheme == "ws" and not is_loopback(host) and not insecure:
            raise UsageError(f"refusing to send the API key in cleartext to {host} over ws://; "
                             "use wss://, or add --allow-insecure on a trusted private network")
        return {"url": args.url, "api_key": key, "allow_insecure": insecure}
    if not os.environ.get("OPENAI_API_KEY"):
        raise UsageError("no OPENAI_API_KEY set: export it, or add --local to transcribe "
                         "offline with the embedded engine")
    return {}


def device(value: Optional[str]) -> Any:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def offline_model(name: Optional[str]) -> str:
    """``--model`` of an offline command checked before any work (exit 2 with one line);
    returns what the engine loads (a faster-whisper name in the cache: its directory)."""
    from ..errors import ConfigurationError
    from ..server._models import resolve_model_name

    try:
        return resolve_model_name(name)
    except ConfigurationError as exc:
        raise UsageError(f"--model: {exc}") from None

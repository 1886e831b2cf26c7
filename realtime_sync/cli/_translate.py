"""``realtime-sync translate``: live translation of a file or the microphone.

    realtime-sync translate FILE|--mic --to LANG [--source-text] [--speak]
                            [--format text|srt|vtt|jsonl] [--output PATH] [--local]

Captions are written cue by cue; on a terminal the cue being spoken is redrawn in place.
``--speak`` plays the translated speech through :class:`realtime_sync.audio.Speaker`.
Exit codes and one-line errors are those of ``transcribe`` (see :mod:`realtime_sync.cli`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from typing import Any, Callable, List, Optional

__all__ = ["add_parser", "cmd_translate"]

logger = logging.getLogger(__name__)


def add_parser(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``translate`` subcommand to ``sub`` (the parser's subparsers)."""
    p = sub.add_parser("translate", help="translate speech in an audio file or the microphone")
    p.add_argument("file", nargs="?", help="an audio file (WAV; other formats with PyAV)")
    p.add_argument("--mic", action="store_true", help="translate the microphone until Ctrl-C")
    p.add_argument("--to", required=True, metavar="LANG",
                   help="target language, e.g. es, fr, de, en (offline: en only)")
    p.add_argument("--source-text", action="store_true",
                   help="also show (and with --output write) the source-language text")
    p.add_argument("--speak", action="store_true",
                   help="play the translated speech through the speaker")
    p.add_argument("--device", help="microphone index or name (see `realtime-sync devices`)")
    p.add_argument("--output-device", help="speaker index or name for --speak")
    p.add_argument("--model", default=None,
                   help="translation model (default gpt-realtime-translate; with --local: the "
                        "offline multilingual Whisper model directory or name)")
    p.add_argument("--local", action="store_true",
                   help="offline: the local server with the embedded engine (--to en only)")
    p.add_argument("--url", default=None, help="Realtime WebSocket URL of another server")
    p.add_argument("--api-key", default=None,
                   help="key for --url (default $OPENAI_API_KEY; any key for a local server)")
    p.add_argument("--format", choices=("text", "srt", "vtt", "jsonl"), default=None,
                   help="output format (default: from the -o file's extension, else text)")
    p.add_argument("--output", "-o", default=None,
                   help="write captions to this file (.srt, .vtt, .jsonl or .txt)")
    from ._support import add_caption_options

    add_caption_options(p)
    p.add_argument("--events", action="store_true",
                   help="print every server event's type and time to stderr")
    p.add_argument("--realtime", action="store_true", help="pace a file like a microphone")
    add_common(p)


def _source_path(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}.source{ext}"


@contextlib.contextmanager
def _local_translation_server(model: Optional[str], to: str) -> Any:
    from ..server import RealtimeServer
    from ..server._translation import local_translator

    engine = local_translator(model, to)  # refuses an impossible target before any work
    with RealtimeServer(translator=engine) as srv:
        yield srv


def _check_args(args: argparse.Namespace) -> None:
    """``translate``'s arguments checked before any audio is read or any session opens
    (UsageError: exit 2, one line); ``args.format`` and ``args.model`` resolved."""
    from ._common import UsageError, offline_model
    from ._support import resolve_format

    if bool(args.file) == bool(args.mic):
        raise UsageError("give an audio FILE or --mic (one of them)")
    if args.file and not os.path.exists(args.file):
        raise UsageError(f"no such file: {args.file}")
    if not args.to.strip():
        raise UsageError("--to needs a language code such as es")
    args.format = resolve_format(args.format, args.output)
    if args.local and args.model is not None:
        args.model = offline_model(args.model)  # a typo: exit 2 before any audio is read
    if args.file:
        from ..audio import FileSource

        FileSource(args.file).close()  # an unreadable file fails here, before any session


def cmd_translate(args: argparse.Namespace) -> int:
    """Run ``realtime-sync translate`` (main thread)."""
    from ..captions import open_writer
    from ..translation import Translator
    from ._common import Console, UsageError, device, endpoint_options, event_logger
    from ._support import caption_options

    _check_args(args)
    console = Console(sys.stdout)
    with contextlib.ExitStack() as stack:
        if args.local:
            srv = stack.enter_context(_local_translation_server(args.model, args.to))
            options = {"url": srv.url, "api_key": "sk-local"}
        else:
            if not args.url and not os.environ.get("OPENAI_API_KEY"):
                raise UsageError("no OPENAI_API_KEY set: export it, or add --local to "
                                     "translate into English offline with the embedded engine")
            options = endpoint_options(args, stack)
        writer = source_writer = None
        style = caption_options(args)
        if args.output:
            writer = stack.enter_context(open_writer(args.output, args.format, **style))
            if args.source_text:
                source_writer = stack.enter_context(
                    open_writer(_source_path(args.output), args.format, **style))
        elif args.format != "text":
            writer = stack.enter_context(open_writer(sys.stdout, args.format, **style))
        show = writer is None or bool(args.output)
        pipe_closed: List[bool] = []

        def on_text(cue: Any) -> None:
            if pipe_closed:
                return
            try:
                if not cue.final:
                    if show:
                        console.partial(cue.text)
                    return
                if writer is not None:
                    writer.write(cue)
                if show:
                    console.final(cue.text)
            except BrokenPipeError:  # the reader went away (``| head``): stop writing
                pipe_closed.append(True)

        def on_source_text(cue: Any) -> None:
            if not cue.final or pipe_closed:
                return
            try:
                if source_writer is not None:
                    source_writer.write(cue)
                if show:
                    console.final(f"\x1b[90m[{cue.text.strip()}]\x1b[0m" if console.tty
                                  else f"[{cue.text.strip()}]")
            except BrokenPipeError:
                pipe_closed.append(True)

        speaker = None
        if args.speak:
            from ..audio import Speaker

            speaker = Speaker(device=device(args.output_device))
            stack.callback(speaker.close)
        model = args.model if (args.model and not args.local) else None
        tr = Translator(
            to=args.to.strip(), source_transcript=bool(args.source_text),
            on_text=on_text, on_source_text=on_source_text if args.source_text else None,
            on_audio=(lambda pcm, ms: speaker.feed(pcm)) if speaker is not None else None,
            **({"model": model} if model else {}), **options,
        )
        if args.events:
            tr.on("*", event_logger(time.monotonic()))  # before start: nothing is missed
        stack.callback(tr.close)
        tr.start()
        if args.file:
            _feed_file(tr, args.file, args.realtime)
            tr.finish(timeout=120)
        else:
            tr.listen(device=device(args.device))
            sys.stderr.write("listening… press Ctrl-C to stop\n")
            try:
                while True:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                sys.stderr.write("\nstopping…\n")
            tr.finish(timeout=30)
        if speaker is not None:
            _drain(speaker)
    return 0


def _feed_file(tr: Any, path: str, realtime: bool) -> None:
    from ..audio import FileSource

    with FileSource(path, realtime=realtime) as source:
        while True:
            chunk = source.read(4800)
            if not chunk:
                return
            tr.feed(chunk)


def _drain(speaker: Any, limit: float = 120.0) -> None:
    """Let the speaker play what is queued (Ctrl-C stops it)."""
    deadline = time.monotonic() + limit
    try:
        while (speaker.queued_ms > 0 or speaker.is_playing) and time.monotonic() < deadline:
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass

"""The ``realtime-sync`` command (also ``python -m realtime_sync``).

    realtime-sync transcribe FILE|--mic [--device D] [--model M] [--language L] [--local]
                             [--languages L1,L2] [--keywords K1,K2] [--prompt P] [--delay D]
                             [--noise-reduction near_field|far_field] [--noise-strength S]
                             [--logprobs] [--input-format pcm|pcmu|pcma]
                             [--format text|srt|vtt|jsonl] [--output PATH] [--events]
                             [--no-vad [--commit-every S]] [--reconnect-timeout S]
                             [--allow-insecure] [--realtime]
    realtime-sync transcribe FILE FILE ... [--jobs N] [--format F] [--output DIR]
    realtime-sync translate FILE|--mic --to LANG [--source-text] [--speak] [--format F] [--output P]
    realtime-sync devices
    realtime-sync models
    realtime-sync serve [--host H] [--port P] [--local]
    realtime-sync chat [--voice V] [--device D] [--echo headphones|half-duplex] [--local]
                       [--reconnect-timeout S]

FILE is any audio or video file (WAV, MP3, M4A, FLAC, OGG/Opus, WebM, mp4, mkv; PyAV decodes
what is not integer-PCM WAV). Exit codes: 0 success (a silent file: a note on stderr), 1 error
(one line, no traceback unless ``--debug``; also any failed turn, no speech in a file with sound,
giving up reconnecting), 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, TextIO

from .. import __version__, models
from ..audio._g711 import FORMATS
from ..errors import RealtimeSyncError
from ..models import DEFAULT_CONVERSATION_MODEL, DEFAULT_TRANSCRIPTION_MODEL, DELAYS

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``realtime-sync``."""
    from ._support import add_caption_options

    parser = argparse.ArgumentParser(
        prog="realtime-sync",
        description="Live transcription and voice chat over the OpenAI Realtime API.",
    )
    parser.add_argument("--version", action="version", version=f"realtime-sync {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("transcribe", help="transcribe an audio/video file or the microphone")
    t.add_argument("file", nargs="*",
                   help="audio or video files: WAV, MP3, M4A, FLAC, OGG/Opus, WebM, mp4, mkv")
    t.add_argument("--jobs", "-j", type=_positive_int, default=None,
                   help="with several files: how many to transcribe at once (default 2); "
                        "--format srt|vtt|jsonl or --output DIR writes one caption file each")
    t.add_argument("--mic", action="store_true", help="transcribe the microphone until Ctrl-C")
    t.add_argument("--device", help="microphone index or name (see `realtime-sync devices`)")
    t.add_argument("--model", default=None,
                   help=f"transcription model (default {DEFAULT_TRANSCRIPTION_MODEL}; also "
                        "gpt-transcribe, gpt-realtime-whisper; with --local: the offline "
                        "model: base (default, 99 languages) or tiny.en (English, faster), "
                        "a model directory, or a faster-whisper name)")
    t.add_argument("--language", default=None,
                   help="ISO-639-1 language code, e.g. en (default: detect); sent as "
                        "--languages for models that only take a list (gpt-live-transcribe, "
                        "gpt-transcribe)")
    t.add_argument("--languages", default=None, type=_csv,
                   help="possible languages, comma-separated, e.g. en,de (gpt-live-transcribe,"
                        " gpt-transcribe)")
    t.add_argument("--keywords", default=None, type=_csv,
                   help="words or phrases to expect, comma-separated (gpt-live-transcribe, "
                        "gpt-transcribe)")
    t.add_argument("--prompt", default=None, help="text that guides the model")
    t.add_argument("--delay", default=None, choices=DELAYS,
                   help="how early partial text appears vs accuracy (streaming models)")
    t.add_argument("--noise-reduction", default=None, choices=("near_field", "far_field"),
                   help="filter noise: near_field (headset) or far_field (laptop/room mic)")
    t.add_argument("--noise-strength", default=None, type=float,
                   help="noise reduction strength from 0 to 1 (with --noise-reduction)")
    t.add_argument("--logprobs", action="store_true",
                   help="ask for token log-probabilities (shown with --format jsonl)")
    t.add_argument("--input-format", default="pcm", choices=FORMATS,
                   help="audio sent: pcm (PCM16 24 kHz, resampled from the file or mic) or "
                        "G.711 pcmu/pcma (8 kHz; a G.711 WAV file sets this by itself)")
    t.add_argument("--local", action="store_true",
                   help="offline: run the local server with the embedded engine (no key)")
    t.add_argument("--url", default=None, help="Realtime WebSocket URL of another server")
    t.add_argument("--api-key", default=None,
                   help="key for --url (default $OPENAI_API_KEY; any key for a local server)")
    t.add_argument("--allow-insecure", action="store_true",
                   help="allow sending the key over ws:// (not wss://) to a host that is not "
                        "this machine: only on a trusted private network")
    t.add_argument("--format", choices=("text", "srt", "vtt", "jsonl"), default=None,
                   help="output format (default: from the -o file's extension, else text)")
    t.add_argument("--output", "-o", default=None,
                   help="write captions to this file (.srt, .vtt, .jsonl or .txt); with several "
                        "files: a folder for one caption file each")
    add_caption_options(t)
    t.add_argument("--events", action="store_true",
                   help="print every server event's type and time to stderr")
    t.add_argument("--no-vad", action="store_true",
                   help="no turn detection at all: commit every --commit-every seconds (by "
                        "default the server detects turns, or the client when the model does "
                        "not allow server VAD)")
    t.add_argument("--commit-every", type=_seconds, default=8.0, metavar="SECONDS",
                   help="with --no-vad: end a turn every SECONDS of audio, at a quiet moment "
                        "of a file (default 8)")
    t.add_argument("--reconnect-timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="give up (exit 1) when the server stays unreachable this long "
                        "(default 60)")
    t.add_argument("--realtime", action="store_true", help="pace a file like a microphone")
    _add_common(t)

    m = sub.add_parser("models", help="list the offline models (--local) and where they come "
                                      "from, and the cloud transcription models")
    _add_common(m)

    d = sub.add_parser("devices", help="list audio devices")
    d.add_argument("--json", action="store_true", help="print JSON")
    _add_common(d)

    s = sub.add_parser("serve", help="run the local Realtime server in the foreground")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8765, help="TCP port (0: any free one)")
    s.add_argument("--local", action="store_true",
                   help="transcribe with the embedded offline engine (else a scripted one)")
    s.add_argument("--model", default=None,
                   help="offline model (--local): base (default), tiny.en, or a directory")
    s.add_argument("--api-key", default=None, help="key clients must send (default: any)")
    _add_common(s)

    from ._translate import add_parser as add_translate

    add_translate(sub, _add_common)  # realtime-sync translate (its own module)

    c = sub.add_parser("chat", help="voice chat with a model (microphone in, speaker out)")
    c.add_argument("--model", default=DEFAULT_CONVERSATION_MODEL,
                   help=f"conversation model (default {DEFAULT_CONVERSATION_MODEL})")
    c.add_argument("--voice", default=None, help="the model's voice, e.g. marin or alloy")
    c.add_argument("--device", help="microphone index or name")
    c.add_argument("--output-device", help="speaker index or name")
    c.add_argument("--echo", choices=("headphones", "half-duplex"), default="half-duplex",
                   help="headphones: full duplex with barge-in; half-duplex: mute the "
                        "microphone while the model speaks (no echo from loudspeakers)")
    c.add_argument("--instructions", default=None, help="system instructions for the model")
    c.add_argument("--reconnect-timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="give up (exit 1) when the server stays unreachable this long "
                        "(default 60)")
    c.add_argument("--local", action="store_true",
                   help="offline, no key: the local server with the embedded engine transcribes "
                        "you and answers with what it heard (no language model)")
    c.add_argument("--url", default=None, help="Realtime WebSocket URL of another server")
    c.add_argument("--api-key", default=None,
                   help="key for --url (default $OPENAI_API_KEY; any key for a local server)")
    c.add_argument("--allow-insecure", action="store_true",
                   help="allow sending the key over ws:// to a host that is not this machine")
    c.add_argument("--events", action="store_true")
    _add_common(c)
    return parser


def _csv(value: str) -> List[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, not {value!r}")
    return items


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {port}")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {value}")
    return seconds


def _language(value: Optional[str]) -> Optional[str]:
    """``--language`` checked against the known codes (``EN`` -> ``en``)."""
    if value is None:
        return None
    from .._features.languages import normalize_language

    try:
        return normalize_language(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging and tracebacks")


# -- output helpers ----------------------------------------------------------------------
class _Console:
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


def _event_logger(start: float) -> Callable[[Any], None]:
    def log(event: Any) -> None:
        sys.stderr.write(f"{time.monotonic() - start:9.3f}s  {event.get('type')}\n")
        sys.stderr.flush()
    return log


@contextlib.contextmanager
def _local_server(model: Optional[str], engine: bool = True,
                  api_key: Optional[str] = None,
                  host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                  translate: bool = False) -> Iterator[Any]:
    """The local server in-process (with the offline engine unless ``engine`` is False; with
    ``translate`` also the offline translator, which loads the multilingual model)."""
    from ..server import RealtimeServer

    if quiet and not logger.isEnabledFor(logging.DEBUG):
        # the in-process server's own error logs (with tracebacks) would repeat what the
        # client reports in one line (a failed turn, a refused event); --debug shows them
        logging.getLogger("realtime_sync.server").setLevel(logging.CRITICAL)
    kwargs: dict = {}
    if engine:
        from ..server import local_engine

        recognizer, vad_factory = local_engine(model)
        kwargs.update(recognizer=recognizer, vad_factory=vad_factory)
        if translate:  # only `serve` offers translation sessions
            from ..server._translation import offline_translator

            kwargs["translator"] = offline_translator(None)  # Whisper's translate task
    with RealtimeServer(host=host, port=port, api_key=api_key, **kwargs) as srv:
        yield srv


def _endpoint_options(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict:
    if getattr(args, "local", False):
        srv = stack.enter_context(_local_server(getattr(args, "model", None)))
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


# -- commands -----------------------------------------------------------------------------
def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def offline_model(name: Optional[str]) -> str:
    """``--model`` of an offline command checked before any work (exit 2 with one line);
    returns what the engine loads (a faster-whisper name in the cache: its directory)."""
    from ..errors import ConfigurationError
    from ..server._models import resolve_model_name

    try:
        return resolve_model_name(name)
    except ConfigurationError as exc:
        raise UsageError(f"--model: {exc}") from None


def _transcription_model(args: argparse.Namespace) -> str:
    """``--model``, else the catalogue's default; with --local, --model names the offline
    engine's model and the session asks for a model whose turns the local server's VAD may
    end (the engine ignores the name)."""
    if args.local:
        return "gpt-transcribe"
    return str(args.model or DEFAULT_TRANSCRIPTION_MODEL)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from ..captions import open_writer
    from ..errors import NotConnectedError
    from ..transcription import Transcriber
    from ._support import (
        GiveUpAfter,
        LevelMeter,
        TranscriptSink,
        caption_options,
        file_outcome,
        report_reconnects,
        resolve_format,
    )

    if args.local:
        args.model = offline_model(args.model)  # a typo fails here, before any audio is read
        _check_offline_options(args)
    files = list(args.file or [])
    if len(files) > 1 or (files and args.jobs is not None):
        return _transcribe_many(args, files)
    args.file = files[0] if files else None
    if bool(args.file) == bool(args.mic):
        raise UsageError("give an audio FILE or --mic (one of them)")
    if args.file and not os.path.exists(args.file):
        raise UsageError(f"no such file: {args.file}")
    fmt = resolve_format(args.format, args.output)  # a bad -o is refused before any work
    audio_format = args.input_format
    language = _language(args.language)
    languages = [_language(v) or v for v in args.languages] if args.languages else None
    if args.file:
        from ..transcription import _open_audio

        # an unreadable file fails here, before any session; a G.711 file sets the format
        probe = {"audio_format": audio_format}
        source = _open_audio(args.file, False, 100, probe)[0]
        source.close()
        audio_format = probe["audio_format"]
        truncated = truncation_note(args.file, source)
        if truncated:
            sys.stderr.write(f"realtime-sync: warning: {truncated}\n")
    elif audio_format != "pcm":
        raise UsageError("--input-format pcmu/pcma needs a G.711 WAV file (the microphone "
                         "gives PCM16, sent as pcm)")
    console = _Console(sys.stdout)
    backoff = GiveUpAfter(args.reconnect_timeout)
    with contextlib.ExitStack() as stack:
        options = _endpoint_options(args, stack)
        writer = None
        if args.output:
            writer = open_writer(args.output, fmt, **caption_options(args))
        elif fmt != "text":
            writer = open_writer(sys.stdout, fmt, **caption_options(args))
        sink = TranscriptSink(console, writer, to_console=writer is None or bool(args.output),
                              output_name=args.output)
        stack.callback(sink.close)

        model = _transcription_model(args)
        if args.file and not args.no_vad:
            from .._features.file_turns import file_turns

            # the core install has no client VAD: a file is then cut at quiet moments
            args.no_vad = file_turns(model, "auto", audio_format)
        tr = Transcriber(
            model=model, turn_detection=None if args.no_vad else "auto",
            **_transcription_options(args, audio_format, language, languages),
            on_partial=sink.partial, on_final=sink.final, reconnect=backoff, **options,
        )
        if args.events:
            tr.on("*", _event_logger(time.monotonic()))  # before start: nothing is missed
        report_reconnects(tr, sys.stderr)
        stack.callback(tr.close)
        tr.start()
        meter = LevelMeter() if args.file and audio_format == "pcm" else None
        try:
            if args.file:
                _feed_file(tr, args.file, args, sink, meter, audio_format)
                if not sink.stop.is_set():
                    _finish(tr, sink)
            else:
                _listen(tr, args, sink)
        except NotConnectedError as exc:
            if backoff.gave_up:
                raise RealtimeSyncError(
                    f"gave up: the server has been unreachable for {args.reconnect_timeout:g} s "
                    f"(--reconnect-timeout)") from None
            raise RealtimeSyncError(str(exc)) from None
    if sink.error:
        sys.stderr.write(f"realtime-sync: error: {sink.error}\n")
        return 1
    if sink.pipe_closed:
        return 0
    return file_outcome(sink.segments, meter, args.file, sys.stderr)


def _transcribe_many(args: argparse.Namespace, files: List[str]) -> int:
    """Several files, ``--jobs`` at a time: transcripts (or caption file names) on stdout in
    input order, one line per failed file on stderr; exit code 1 when any failed."""
    from ..batch import transcribe_files
    from ._support import caption_options

    if args.mic:
        raise UsageError("--mic transcribes the microphone alone; give files or --mic")
    language = _language(args.language)
    languages = [_language(v) or v for v in args.languages] if args.languages else None
    captions = None
    if args.output:
        _check_output_folder(args.output, args.format)
    if args.output or (args.format and args.format != "text"):
        captions = args.format or "text"
    failed = []

    def on_result(result: Any) -> None:
        if not result.ok:
            failed.append(result.path)
            message = str(result.error).splitlines()[0] if str(result.error) else \
                type(result.error).__name__
            sys.stderr.write(f"realtime-sync: {result.path}: error: "
                             f"{without_name(message, result.path)}\n")
        elif captions is not None:
            print(f"{result.path} -> {result.output}", flush=True)
        else:
            print(f"==> {result.path} <==", flush=True)
            print(result.transcript.text, flush=True)

    with contextlib.ExitStack() as stack:
        options = _endpoint_options(args, stack)
        transcribe_files(
            files, jobs=args.jobs or 2, captions=captions, output_dir=args.output,
            caption_options=caption_options(args),
            on_result=on_result, realtime=args.realtime, model=_transcription_model(args),
            turn_detection=None if args.no_vad else "auto",
            **_transcription_options(args, args.input_format, language, languages), **options)
    if failed:
        sys.stderr.write(f"realtime-sync: {len(failed)} of {len(files)} files failed\n")
    return 1 if failed else 0


def truncation_note(name: str, source: Any) -> Optional[str]:
    """One line when ``source`` (a file source) is shorter than its header says, else None."""
    declared = getattr(source, "declared_duration", None)
    if not declared:
        return None
    held = float(getattr(source, "duration", 0.0) or 0.0)
    return (f"{name} is truncated: its header says {declared:.1f} s of audio but it holds "
            f"{held:.1f} s; transcribing what is there")


def without_name(message: str, path: str) -> str:
    """An error message about ``path`` without repeating its name (the batch line starts
    with it): ``cannot read a.mp3: not audio ...`` -> ``not audio ...``."""
    for prefix in (f"cannot read {path}: ", f"{path}: ", f"cannot open {path}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message.replace(f" {path}", " it")


def _check_output_folder(output: str, fmt: Optional[str]) -> None:
    """With several files ``-o`` names a folder (one caption file per input, in the format of
    ``--format``): refuse an existing file or a name with a caption extension (``both.srt``)."""
    from ..captions import format_for_path

    if os.path.isdir(output):
        return
    named = format_for_path(output)
    if os.path.exists(output) or named is not None or os.path.splitext(output)[1]:
        hint = f"-o {os.path.splitext(output)[0] or 'captions'} --format " \
            f"{fmt or named or 'srt'}"
        raise UsageError(f"with several files, -o names a folder for one caption file each, "
                         f"not {output!r}: e.g. {hint}")


def _feed_file(tr: Any, path: str, args: argparse.Namespace, sink: Any, meter: Any,
               audio_format: str = "pcm") -> None:
    """Feed the file (paced with --realtime); --no-vad commits every --commit-every seconds at
    a quiet moment (PCM; a G.711 file is committed at its end). Stops early when the output
    failed (sink.stop)."""
    from .._features.progress import progress_bar
    from ..transcription import _open_audio
    from ._support import QuietCutter

    source, frames = _open_audio(path, args.realtime, 100, {"audio_format": audio_format})
    try:
        sink.progress = progress_bar(source.duration * 1000)
        cutter = QuietCutter(args.commit_every) if args.no_vad and audio_format == "pcm" \
            else None
        while not sink.stop.is_set():
            chunk = source.read(frames)
            pieces = [chunk] if cutter is None else (cutter.feed(chunk) if chunk
                                                     else cutter.flush())
            for piece in pieces:
                if piece is None:
                    tr.commit()
                elif piece:
                    if meter is not None:
                        meter.feed(piece)
                    tr.feed(piece)
            if not chunk:
                return
            _check_connection(tr)
    finally:
        source.close()


def _finish(tr: Any, sink: Any) -> None:
    """Wait for every turn; stops early (abandoning them) when the output failed."""
    from ..errors import TimeoutError as RsTimeout

    while True:
        try:
            tr.finish(timeout=0.5)
        except RsTimeout:
            if sink.stop.is_set():
                return
            _check_connection(tr)
            continue
        if sink.progress is not None:
            sink.progress.done()
        return


def _check_connection(tr: Any) -> None:
    from ..errors import NotConnectedError

    if tr.client.state in ("disconnected", "closed"):
        raise NotConnectedError("the connection ended")


def _listen(tr: Any, args: argparse.Namespace, sink: Any) -> None:
    mic = tr.listen(device=_device(args.device))
    sys.stderr.write("listening… press Ctrl-C to stop\n")
    try:
        while not sink.stop.is_set():
            time.sleep(0.2)
            _check_connection(tr)
            if args.no_vad and tr.uncommitted_ms >= args.commit_every * 1000:
                tr.commit()
    except KeyboardInterrupt:
        sys.stderr.write("\nstopping…\n")
    if sink.stop.is_set():
        return
    mic.stop(2)
    tr.finish(timeout=30)


def _transcription_options(args: argparse.Namespace, audio_format: str,
                           language: Optional[str], languages: Optional[List[str]]) -> dict:
    """The Transcriber's transcription options from the command line."""
    noise: Any = args.noise_reduction
    if args.noise_strength is not None:
        if noise is None:
            raise UsageError("--noise-strength needs --noise-reduction near_field|far_field")
        noise = {"type": noise, "strength": args.noise_strength}
    model = _transcription_model(args)
    if language is not None and languages is None and not models.takes_option(model, "language") \
            and models.takes_option(model, "languages"):
        languages = [language]  # --language en means languages=["en"] here
        language = None
    return dict(language=language, languages=languages, keywords=args.keywords,
                prompt=args.prompt, delay=args.delay, noise_reduction=noise,
                include_logprobs=args.logprobs, audio_format=audio_format)


def _check_offline_options(args: argparse.Namespace) -> None:
    """With --local, refuse (before any work) an option the offline session does not take,
    saying which model is used and why."""
    model = _transcription_model(args)
    for option, value in (("delay", args.delay),):
        if value is not None and not models.takes_option(model, option):
            raise UsageError(
                f"--{option} is not used offline: with --local the offline engine (model "
                f"{os.path.basename(str(args.model or 'base'))}) transcribes each turn "
                f"after it ends (its session asks for {model!r}, whose turns the local "
                f"server's VAD ends); --{option} is for the streaming cloud models "
                f"({', '.join(_takers(option))})")


def _takers(option: str) -> List[str]:
    return [m.name for m in models.models(models.TRANSCRIPTION, include_deprecated=False)
            if option in m.options]


def _device(value: Optional[str]) -> Any:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def cmd_devices(args: argparse.Namespace) -> int:
    from ..audio import list_devices

    devices = list_devices()
    if args.json:
        import json

        print(json.dumps(devices, indent=2))
        return 0
    if not devices:
        print("no audio devices found (is a sound card or PulseAudio/PipeWire available?)")
        return 0
    for d in devices:
        marks = []
        if d.get("is_default_input"):
            marks.append("default input")
        if d.get("is_default_output"):
            marks.append("default output")
        print(f"{d['index']:3d}  {d['name']}  (in {d['max_input_channels']}, "
              f"out {d['max_output_channels']}, {int(d['default_sample_rate'])} Hz)"
              + (f"  [{', '.join(marks)}]" if marks else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ._models import print_models

    return print_models(sys.stdout)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.local:
        args.model = offline_model(args.model)
    with _local_server(args.model, engine=args.local, api_key=args.api_key,
                       host=args.host, port=args.port, quiet=False, translate=True) as srv:
        print(srv.url, flush=True)
        sys.stderr.write("local Realtime server running; Ctrl-C to stop\n")
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    try:
        from ..voice_chat import run_chat
    except ImportError as exc:  # pragma: no cover - module missing in a broken install
        raise RealtimeSyncError(f"voice chat is not available: {exc}") from exc
    with contextlib.ExitStack() as stack:
        if args.local and args.url:
            raise UsageError("give --local or --url, not both")
        if args.local:  # --model names the chat model: the engine uses its default
            srv = stack.enter_context(_local_server(None))
            options = {"url": srv.url, "api_key": "sk-local", "answered_by": OFFLINE_CHAT}
        else:
            options = _endpoint_options(args, stack) if args.url else _chat_endpoint(args)
        from ._support import GiveUpAfter

        backoff = GiveUpAfter(args.reconnect_timeout)
        code = int(run_chat(args, reconnect=backoff, **options) or 0)
        if backoff.gave_up:
            sys.stderr.write(f"realtime-sync: error: gave up: the server has been unreachable "
                             f"for {args.reconnect_timeout:g} s (--reconnect-timeout)\n")
            return 1
        return code


OFFLINE_CHAT = ("the offline engine (no language model: Whisper base transcribes you and it "
                "answers with what it heard)")
"""Who answers ``chat --local`` (and ``examples/voice_chat.py --local``)."""


def _chat_endpoint(args: argparse.Namespace) -> dict:
    if not os.environ.get("OPENAI_API_KEY"):
        raise UsageError("no OPENAI_API_KEY set: voice chat needs a model (export the key, "
                         "pass --url of a compatible server, or add --local to try it offline)")
    return {}


def cmd_translate(args: argparse.Namespace) -> int:
    from ._translate import cmd_translate as run

    return run(args)


COMMANDS = {"transcribe": cmd_transcribe, "translate": cmd_translate, "devices": cmd_devices,
            "models": cmd_models,
            "serve": cmd_serve,
            "chat": cmd_chat}


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    debug = getattr(args, "debug", False)
    if debug:  # ALSA/JACK library noise on stderr is shown only with --debug
        os.environ.setdefault("REALTIME_SYNC_AUDIO_DEBUG", "1")
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        sys.stderr.write(f"realtime-sync: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        except OSError:
            pass
        return 0
    except ImportError as exc:  # an optional package is missing: name the extra
        if debug:
            raise
        from .._core.extras import MissingDependencyError, missing_message

        message = str(exc) if isinstance(exc, MissingDependencyError) else \
            missing_message(exc.name, f"realtime-sync {args.command}")
        sys.stderr.write(f"realtime-sync: error: {message}\n")
        return 1
    except (RealtimeSyncError, OSError, ValueError, TypeError) as exc:
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"realtime-sync: error: {cli_advice(message)}\n")
        return 1


_ADVICE = (
    ("(or pass turn_detection=None and call commit() yourself)", "(or add --no-vad: a turn "
     "every --commit-every seconds)"),
    ("turn_detection=None and commit() yourself", "--no-vad"),
    ("turn_detection='client_vad' (the client ends turns) or None (you call commit())",
     "the default turn detection, or --no-vad"),
    ("use languages=[...] instead", "use --languages instead"),
    ("use language='..' (one code) instead", "use --language instead"),
    ("include_logprobs", "--logprobs"),
)


def cli_advice(message: str) -> str:
    """A library message's advice in command-line terms: the flag, not the Python keyword."""
    for python, flag in _ADVICE:
        message = message.replace(python, flag)
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

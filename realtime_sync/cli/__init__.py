"""The ``realtime-sync`` command (also ``python -m realtime_sync``).

    realtime-sync transcribe FILE|--mic [--device D] [--model M] [--language L] [--local]
                             [--languages L1,L2] [--keywords K1,K2] [--prompt P] [--delay D]
                             [--noise-reduction near_field|far_field] [--noise-strength S]
                             [--logprobs] [--input-format pcm|pcmu|pcma]
                             [--format text|srt|vtt|jsonl] [--output PATH] [--events]
                             [--no-vad [--commit-every S]] [--reconnect-timeout S]
                             [--allow-insecure] [--realtime]
    realtime-sync transcribe FILE FILE ... [--jobs N] [--format F] [--output DIR] [--resume]
                             [--cluster ADDRESS|auto|local [--cluster-upload]]
    realtime-sync translate FILE|--mic --to LANG [--source-text] [--speak] [--format F] [--output P]
    realtime-sync devices
    realtime-sync models
    realtime-sync serve [--host H] [--port P] [--local] [--api-key K | --allow-any-key]
                        [--max-connections N]
    realtime-sync chat [--live] [--voice V] [--device D] [--echo headphones|half-duplex] [--local]
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
import sys
import time
from typing import Any, List, Optional

from .. import models
from ..errors import RealtimeSyncError
from ..models import DEFAULT_CONVERSATION_MODEL, DEFAULT_TRANSCRIPTION_MODEL
from ._common import (
    Console,
    UsageError,
    device,
    endpoint_options,
    engine_options,
    event_logger,
    local_server,
    offline_model,
)
from ._parser import build_parser

_local_server = local_server  # the name tests and older callers use

__all__ = ["main", "build_parser"]

logger = logging.getLogger(__name__)


def _language(value: Optional[str]) -> Optional[str]:
    """``--language`` checked against the known codes (``EN`` -> ``en``)."""
    if value is None:
        return None
    from .._features.languages import normalize_language

    try:
        return normalize_language(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# -- output helpers ----------------------------------------------------------------------


# -- commands -----------------------------------------------------------------------------


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
    if len(files) > 1 or (files and (args.jobs is not None or args.cluster or args.resume)):
        return _transcribe_many(args, files)
    if args.cluster_upload:
        raise UsageError("--cluster-upload goes with --cluster")
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
        from .._features.audio_files import open_audio

        # an unreadable file fails here, before any session; a G.711 file sets the format
        probe = {"audio_format": audio_format}
        source = open_audio(args.file, False, 100, probe)[0]
        source.close()
        audio_format = probe["audio_format"]
        truncated = truncation_note(args.file, source)
        if truncated:
            sys.stderr.write(f"realtime-sync: warning: {truncated}\n")
    elif audio_format != "pcm":
        raise UsageError("--input-format pcmu/pcma needs a G.711 WAV file (the microphone "
                         "gives PCM16, sent as pcm)")
    console = Console(sys.stdout)
    backoff = GiveUpAfter(args.reconnect_timeout)
    with contextlib.ExitStack() as stack:
        options = endpoint_options(args, stack)
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
            tr.on("*", event_logger(time.monotonic()))  # before start: nothing is missed
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
    from ..batch import BatchInterrupted, OfflineEngine, transcribe_files
    from ._support import caption_options

    if args.mic:
        raise UsageError("--mic transcribes the microphone alone; give files or --mic")
    if args.cluster_upload and not args.cluster:
        raise UsageError("--cluster-upload goes with --cluster")
    language = _language(args.language)
    languages = [_language(v) or v for v in args.languages] if args.languages else None
    captions = None
    if args.output:
        _check_output_folder(args.output, args.format)
    if args.output or (args.format and args.format != "text"):
        captions = args.format or "text"
    if args.resume and captions is None:
        raise UsageError("--resume needs caption files: add --format srt|vtt|jsonl|text or "
                         "--output DIR")
    failed = []

    def on_result(result: Any) -> None:
        if isinstance(result.error, KeyboardInterrupt):
            return  # not started or stopped by Ctrl-C: counted in the summary
        if result.skipped:
            print(f"{result.path} -> {result.output} (already done)", flush=True)
        elif not result.ok:
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
        # --local: the offline engine in this process, or in every actor with --cluster
        jobs = args.jobs or (None if args.cluster else 2)
        # (each actor transcribes one file at a time: one decoder, not --jobs of them)
        server = OfflineEngine(args.model, **engine_options(
            args, None if args.cluster else jobs)) if args.local else None
        if server is not None and not logger.isEnabledFor(logging.DEBUG):
            # as local_server: the client reports failed turns in one line
            logging.getLogger("realtime_sync.server").setLevel(logging.CRITICAL)
        options = {} if args.local else endpoint_options(args, stack)
        try:
            transcribe_files(
                files, jobs=jobs, captions=captions,
                output_dir=args.output, caption_options=caption_options(args),
                on_result=on_result, realtime=args.realtime,
                server=server, cluster=args.cluster, upload=args.cluster_upload,
                resume=args.resume, model=_transcription_model(args),
                turn_detection=None if args.no_vad else "auto",
                **_transcription_options(args, args.input_format, language, languages),
                **options)
        except BatchInterrupted as exc:
            done = sum(1 for r in exc.results if r.ok)
            sys.stderr.write(f"\nrealtime-sync: interrupted: {done} of {len(files)} files "
                             "finished\n")
            return 130
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
    from .._features.audio_files import open_audio
    from .._features.progress import progress_bar
    from ._support import QuietCutter

    source, frames = open_audio(path, args.realtime, 100, {"audio_format": audio_format})
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
    mic = tr.listen(device=device(args.device))
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
    from ..server._listener import default_max_connections
    from ..server._server import is_loopback

    if args.api_key is None and not is_loopback(args.host):
        if not args.allow_any_key:  # any key from anyone on the network: refuse by default
            raise UsageError(f"--host {args.host} reaches beyond this machine and no --api-key "
                             "is set, so anyone could use the server: pass --api-key KEY, or "
                             "--allow-any-key to accept any key")
        sys.stderr.write(f"realtime-sync: warning: listening on {args.host} and accepting any "
                         "API key (--allow-any-key)\n")
    if args.local:
        args.model = offline_model(args.model)
    with local_server(args.model, engine=args.local, api_key=args.api_key,
                      host=args.host, port=args.port, quiet=False, translate=True,
                      max_connections=args.max_connections or default_max_connections(),
                      engine_options=engine_options(args) if args.local else None) as srv:
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
            srv = stack.enter_context(local_server(None))
            options = {"url": srv.url, "api_key": "sk-local", "answered_by": OFFLINE_CHAT}
        else:
            options = endpoint_options(args, stack) if args.url else _chat_endpoint(args)
        if getattr(args, "live", False):
            from ._live import run_live_chat

            return run_live_chat(args, **options)
        args.model = args.model or DEFAULT_CONVERSATION_MODEL
        from ._support import GiveUpAfter

        backoff = GiveUpAfter(args.reconnect_timeout)
        code = int(run_chat(args, reconnect=backoff, **options) or 0)
        if backoff.gave_up:
            sys.stderr.write(f"realtime-sync: error: gave up: the server has been unreachable "
                             f"for {args.reconnect_timeout:g} s (--reconnect-timeout)\n")
            return 1
        return code


OFFLINE_CHAT = ("the offline engine (no language model: Whisper base transcribes you and the "
                "reply is 'You said: ...' with a tone)")
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

"""The argument parser of ``realtime-sync`` (see :mod:`realtime_sync.cli`)."""

from __future__ import annotations

import argparse
from typing import Any, List

from .. import __version__
from ..audio._g711 import FORMATS
from ..models import DEFAULT_CONVERSATION_MODEL, DEFAULT_TRANSCRIPTION_MODEL, DELAYS
from ._common import add_common as _add_common
from ._support import add_caption_options

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``realtime-sync``."""
    parser = argparse.ArgumentParser(
        prog="realtime-sync",
        description="Live transcription and voice chat over the OpenAI Realtime API.",
    )
    parser.add_argument("--version", action="version", version=f"realtime-sync {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_transcribe(sub)

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
    _add_engine_options(s)
    s.add_argument("--api-key", default=None,
                   help="key clients must send (default: any; then only loopback hosts)")
    s.add_argument("--allow-any-key", action="store_true",
                   help="listen beyond loopback (e.g. --host 0.0.0.0) without --api-key")
    s.add_argument("--max-connections", type=_positive_int, default=None,
                   help="open sockets at most; more get HTTP 503 (default 256, fewer when "
                        "the descriptor limit (ulimit -n) cannot hold 256)")
    _add_common(s)

    from ._translate import add_parser as add_translate

    add_translate(sub, _add_common)  # realtime-sync translate (its own module)

    _add_chat(sub)
    return parser


def _add_transcribe(sub: Any) -> None:
    """``realtime-sync transcribe``."""
    t = sub.add_parser("transcribe", help="transcribe an audio/video file or the microphone")
    t.add_argument("file", nargs="*",
                   help="audio or video files: WAV, MP3, M4A, FLAC, OGG/Opus, WebM, mp4, mkv")
    t.add_argument("--jobs", "-j", type=_positive_int, default=None,
                   help="with several files: how many to transcribe at once (default 2); "
                        "--format srt|vtt|jsonl or --output DIR writes one caption file each")
    t.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="transcribe the files on Ray actors: a Ray address (ray://head:10001),"
                        " auto (the cluster this machine belongs to) or local (a Ray instance "
                        "here); needs pip install \"realtime-sync[ray]\"")
    t.add_argument("--cluster-upload", action="store_true",
                   help="with --cluster: send the files' bytes to the workers (else they open "
                        "the paths, which must be on storage every node shares)")
    t.add_argument("--resume", action="store_true",
                   help="with several files and --format/--output: skip the files whose "
                        "caption file already exists (caption files are written whole)")
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
    _add_engine_options(t)
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


def _add_chat(sub: Any) -> None:
    """``realtime-sync chat``."""
    c = sub.add_parser("chat", help="voice chat with a model (microphone in, speaker out)")
    c.add_argument("--model", default=None,
                   help=f"conversation model (default {DEFAULT_CONVERSATION_MODEL}; with "
                        "--live gpt-live-1.1)")
    c.add_argument("--live", action="store_true",
                   help="OpenAI's Live API (/v1/live/sessions, gpt-live-1.1): full duplex, the "
                        "grouped transcript printed as it grows")
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


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--partial-model`` and ``--threads`` of the offline engine (with --local)."""
    p.add_argument("--partial-model", default=None, metavar="NAME",
                   help="with --local: the small model for live partial text (drafts; the "
                        "final text of each turn comes from --model and replaces them): auto "
                        "(default: tiny.en for English, --model otherwise), tiny.en, base, a "
                        "model directory, or none (no partial text)")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="with --local: decoder threads per decode (per job with --jobs; "
                        "default: the CPUs divided among the jobs)")


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n

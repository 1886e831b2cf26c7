"""Stream an audio file into a transcription session and print each turn as it completes.

    python examples/stream_wav.py                       # examples/audio/hello.wav
    python examples/stream_wav.py speech.wav --realtime # paced like a microphone
    python examples/stream_wav.py --url ws://127.0.0.1:8765/v1/realtime

With OPENAI_API_KEY set (and no --local/--url) it talks to OpenAI. Otherwise it starts the
local server in this process: with the offline engine (pip install 'realtime-sync[local]')
you get real transcripts, without it a placeholder ("<N> ms of audio") per turn.
Any WAV works (8/16/24/32-bit or float, mono/stereo, any rate), and with PyAV (the audio
extra) MP3, M4A, FLAC, OGG/Opus and the sound of videos: all converted to 24 kHz mono PCM16.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import realtime_sync as rs
from realtime_sync import audio
from realtime_sync.transcription import build_session

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def local_server() -> Iterator[str]:
    """A local Realtime server (offline Whisper if installed); yields its URL."""
    from realtime_sync.server import RealtimeServer

    options: Dict[str, Any] = {}
    try:
        # checks the engine's packages without importing them (the engine configures its
        # decoder threads before it imports CTranslate2 itself)
        from realtime_sync.server import local_engine

        recognizer, vad_factory = local_engine(None)
        options = {"recognizer": recognizer, "vad_factory": vad_factory}
    except rs.ConfigurationError:
        print("(offline engine not installed: transcripts are placeholders)", file=sys.stderr)
    with RealtimeServer(api_key=None, **options) as srv:
        yield srv.url


def settle(client: rs.RealtimeClient, session: dict, done: threading.Condition,
           committed: set, finished: set, timeout: float = 300) -> None:
    """The file is sent: end the last turn and wait until every turn has its transcript.

    The first transcript can take long (an offline model loads first), so this waits for the
    events themselves, not for a fixed time. ``rs.transcribe_file`` does all of this for you.
    """
    client.input_audio_buffer.commit()  # what server VAD has not committed yet, if anything
    client.session.update(session)  # a barrier: answered after the commit was handled
    # an "error" for the commit only means nothing was left to commit
    client.wait_for(("session.updated", "error"), timeout=60,
                    where=lambda ev: ev.type == "session.updated")
    with done:
        done.wait_for(lambda: committed <= finished, timeout=timeout)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", nargs="?", default=str(HERE / "audio" / "hello.wav"))
    parser.add_argument("--realtime", action="store_true", help="pace like a microphone")
    parser.add_argument("--url", help="a Realtime endpoint (default: OpenAI or local)")
    parser.add_argument("--local", action="store_true", help="use an in-process local server")
    parser.add_argument("--model", default="gpt-transcribe",
                        help="a model that allows server VAD (this example uses it)")
    args = parser.parse_args(argv)

    source = audio.FileSource(args.wav, realtime=args.realtime)  # WAV, MP3, M4A, video, ...
    print(f"{source!r}: {source.duration:.2f} s", file=sys.stderr)
    use_local = args.local or (not args.url and not os.environ.get("OPENAI_API_KEY"))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(local_server()) if use_local else args.url
        session = build_session(model=args.model, turn_detection="server_vad")
        client = rs.RealtimeClient(
            url=url,
            api_key=os.environ.get("OPENAI_API_KEY", "sk-local"),
            intent="transcription",
            session=session,
        )
        done = threading.Condition()
        order: List[str] = []  # committed turns, in commit order
        texts: Dict[str, str] = {}  # finished turns' transcripts
        committed, finished = set(), set()

        def on_committed(ev: rs.Event) -> None:
            with done:
                committed.add(ev.item_id)
                order.append(ev.item_id)
                print_ready()

        def on_finished(ev: rs.Event) -> None:
            with done:
                finished.add(ev.item_id)
                texts[ev.item_id] = ev.get("transcript") or ""
                print_ready()
                done.notify_all()

        def print_ready() -> None:
            # turns may complete out of order: print each one once all before it are done
            while order and order[0] in texts:
                text = texts.pop(order.pop(0)).strip()
                if text:
                    print(text, flush=True)

        client.on("input_audio_buffer.committed", on_committed)
        for kind in ("completed", "failed"):
            client.on(f"conversation.item.input_audio_transcription.{kind}", on_finished)
        client.on("client.audio_dropped",
                  lambda ev: print(f"[dropped {ev.ms:.0f} ms of audio]", file=sys.stderr))
        with client:
            handle = audio.stream(client, source, chunk_ms=50)
            handle.join()
            if client.connected:
                settle(client, session, done, committed, finished)
            print(f"sent {handle.bytes_sent} bytes "
                  f"({handle.bytes_sent / 48000:.2f} s of audio)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

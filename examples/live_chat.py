"""A voice chat over OpenAI's Live API (``gpt-live-1.1``), with a Python function answering the
tasks the model delegates to the application.

    python examples/live_chat.py            # needs OPENAI_API_KEY, a microphone and a speaker
    python examples/live_chat.py --local    # offline: the local server's scripted Live model
    python examples/live_chat.py --local --wav tests/data/speech/fox_24k_mono16.wav

With ``--wav`` the file is the user's voice (no microphone, no speaker): it prints the grouped
transcript and how the session ended. Say (or feed) something about the weather to see a
delegation answered by ``weather()``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import realtime_sync as rs


def weather(task: rs.LiveDelegation) -> str:
    """Answers a delegated task; its text goes back as commentary with the delegation's id."""
    return f"It is sunny and 21 degrees (asked: {task.request!r})."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="use an in-process local server")
    parser.add_argument("--wav", help="a 24 kHz mono WAV file to use as the user's voice")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        options = {}
        if args.local:
            from realtime_sync.server import RealtimeServer, ScriptedRecognizer

            recognizer = ScriptedRecognizer(["what is the weather like"]) if args.wav else None
            srv = stack.enter_context(RealtimeServer(recognizer=recognizer))
            options = {"url": srv.url, "api_key": "sk-local"}
        live = rs.LiveSession(
            instructions="You are a friendly assistant. Delegate weather questions.",
            tools=[weather], speak=not args.wav,
            on_final=lambda s: print(f"{s.speaker}: {s.text.strip()}", flush=True),
            **options)
        with live:
            if args.wav:
                source = rs.audio.FileSource(args.wav)
                while True:
                    chunk = source.read(24 * 40)
                    if not chunk:
                        break
                    live.feed(chunk)
                source.close()
                live.feed(bytes(48 * 1500))  # a pause: the turn ends
                for segment in live.segments(timeout=20):  # closed segments, in order
                    if segment.speaker == "assistant" and "sunny" in segment.text:
                        break  # the answer is complete (its silence closed it)
            else:
                live.listen()
                print("speak; Ctrl-C ends the session", file=sys.stderr)
                try:
                    while not live.lost:
                        time.sleep(0.25)
                except KeyboardInterrupt:
                    pass
            if live.lost:
                print(f"connection lost: {live.lost}", file=sys.stderr)
                return 1
            result = live.finish(timeout=15)
            print(f"closed: {result.reason}, {result.usage.get('seconds')} s billed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

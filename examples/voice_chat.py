"""Voice chat: talk to a model through the microphone, hear it through the speaker.

    OPENAI_API_KEY=sk-... python examples/voice_chat.py --voice marin
    python examples/voice_chat.py --echo headphones     # full duplex: interrupt the model
    python examples/voice_chat.py --local               # offline engine, no key: it repeats
                                                        # what it heard (no language model)

Echo handling: with loudspeakers keep the default ``--echo half-duplex`` (the microphone is
muted while the model speaks, plus a short tail); with headphones use ``--echo headphones``
and just talk over the model: playback stops at once and the server is told what you heard
(``conversation.item.truncate``). The same thing as a command: ``realtime-sync chat``.
Ctrl-C ends the chat.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from datetime import datetime
from typing import Any, Dict

from realtime_sync.models import DEFAULT_CONVERSATION_MODEL
from realtime_sync.voice_chat import run_chat


def what_time_is_it() -> str:
    """The local date and time, for questions like "what time is it?"."""
    return datetime.now().strftime("%A %d %B %Y, %H:%M")


def main() -> int:
    parser = argparse.ArgumentParser(description="Voice chat with a realtime model.")
    parser.add_argument("--model", default=DEFAULT_CONVERSATION_MODEL)
    parser.add_argument("--voice", default=None, help="e.g. marin, cedar, alloy")
    parser.add_argument("--device", default=None, help="microphone index or name")
    parser.add_argument("--output-device", default=None, help="speaker index or name")
    parser.add_argument("--echo", choices=("headphones", "half-duplex"), default="half-duplex")
    parser.add_argument("--instructions", default="You are a friendly voice assistant. "
                        "Keep answers short.")
    parser.add_argument("--events", action="store_true", help="print event types to stderr")
    parser.add_argument("--local", action="store_true",
                        help="the offline engine instead of OpenAI, as `realtime-sync chat "
                             "--local` (no key; it transcribes you and answers with what it "
                             "heard: no language model)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)

    with contextlib.ExitStack() as stack:
        options: Dict[str, Any] = {}
        if args.local:  # the same offline engine as `realtime-sync chat --local`
            from realtime_sync.cli import OFFLINE_CHAT
            from realtime_sync.server import RealtimeServer, local_engine

            recognizer, vad_factory = local_engine(None)  # pip install 'realtime-sync[local]'
            srv = stack.enter_context(RealtimeServer(api_key="sk-local", recognizer=recognizer,
                                                     vad_factory=vad_factory))
            options = {"url": srv.url, "api_key": "sk-local", "answered_by": OFFLINE_CHAT}
        elif not os.environ.get("OPENAI_API_KEY"):
            sys.exit("set OPENAI_API_KEY, or run with --local")
        return run_chat(args, tools=[what_time_is_it], **options)


if __name__ == "__main__":
    sys.exit(main())

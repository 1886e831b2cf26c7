"""Mint a short-lived key with the official ``openai`` SDK and connect with it.

Your server holds the real key and mints an ephemeral one (``ek_...``) bound to a session
config; the app that connects (a kiosk, a desktop client) never sees the real key.

    python examples/ephemeral_key.py --local   # offline, against a local server
    python examples/ephemeral_key.py           # OpenAI (needs $OPENAI_API_KEY)

Needs ``pip install openai`` (and, with ``--local``, ``pip install "realtime-sync[server]"``).
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import realtime_sync as rs

WAV = Path(__file__).parent / "audio" / "hello.wav"


def mint(sdk) -> str:
    """A 10-minute key for a transcription session (your server does this)."""
    secret = sdk.realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 600},
        session={"type": "transcription", "audio": {"input": {
            "transcription": {"model": "gpt-live-transcribe"}, "turn_detection": None}}})
    print("minted a key that expires at", secret.expires_at)
    return secret.value


def transcribe_with(key: str, url=None) -> None:
    """The app: connect with the ephemeral key only, transcribe a file."""
    options = {"url": url} if url else {}
    with rs.RealtimeClient(api_key=key, intent="transcription", **options) as client:
        with wave.open(str(WAV)) as wav:
            client.input_audio_buffer.append(wav.readframes(wav.getnframes()))
        client.input_audio_buffer.commit()
        done = client.wait_for("conversation.item.input_audio_transcription.completed",
                               timeout=30)
        print("transcript:", done.transcript)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="offline, against a local server")
    args = parser.parse_args()
    from openai import OpenAI

    if args.local:
        from realtime_sync.server import RealtimeServer

        with RealtimeServer(rest=True) as srv:
            transcribe_with(mint(OpenAI(base_url=srv.http_url, api_key="sk-local")), srv.url)
        return
    transcribe_with(mint(OpenAI()))


if __name__ == "__main__":
    main()

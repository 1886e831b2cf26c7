"""Quickstart: transcribe a WAV file through a local Realtime server (the README's example).

    python examples/quickstart.py
"""

import wave
from pathlib import Path

import realtime_sync as rs

# a local server; drop it (and url/api_key) to talk to OpenAI
from realtime_sync.server import RealtimeServer

WAV = Path(__file__).parent / "audio" / "hello.wav"

session = {"type": "transcription", "audio": {"input": {
    "transcription": {"model": "gpt-live-transcribe"}, "turn_detection": None}}}
with RealtimeServer() as srv, rs.RealtimeClient(url=srv.url, api_key="sk-local",
                                                intent="transcription", session=session) as client:
    client.on("conversation.item.input_audio_transcription.delta", lambda e: print(e.delta, end=""))
    with wave.open(str(WAV)) as wav:
        client.input_audio_buffer.append(wav.readframes(wav.getnframes()))
    client.input_audio_buffer.commit()
    done = client.wait_for("conversation.item.input_audio_transcription.completed", timeout=30)
    print("\nfinal:", done.transcript)

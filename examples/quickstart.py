"""Quickstart: transcribe a WAV file through a local Realtime server (see README)."""

import wave
import realtime_sync as rs
from realtime_sync.server import RealtimeServer  # a local server; drop it (and url/api_key) for OpenAI

session = {"type": "transcription", "audio": {"input": {
    "transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": None}}}
with RealtimeServer() as srv, rs.RealtimeClient(url=srv.url, api_key="sk-local",
                                                intent="transcription", session=session) as client:
    client.on("conversation.item.input_audio_transcription.delta", lambda e: print(e.delta, end=""))
    client.input_audio_buffer.append(wave.open(str(__import__("pathlib").Path(__file__).parent / "audio" / "hello.wav")).readframes(10**9))
    client.input_audio_buffer.commit()
    done = client.wait_for("conversation.item.input_audio_transcription.completed", timeout=30)
    print("\nfinal:", done.transcript)

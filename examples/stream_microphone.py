"""Live transcription from a microphone: print what is said as it is recognised.

    python examples/stream_microphone.py                 # default input, until Ctrl-C
    python examples/stream_microphone.py --list          # show the audio devices
    python examples/stream_microphone.py --device usb --seconds 30

With OPENAI_API_KEY set (and no --local/--url) it talks to OpenAI. Otherwise it starts the
local server in this process (offline Whisper if 'realtime-sync[local]' is installed).
Needs PyAudio: pip install 'realtime-sync[audio]'. On a machine without a sound card,
`eval "$(scripts/virtual-audio.sh start)"` provides a virtual one; play speech into it with
`paplay -d micfeed speech.wav`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from typing import Optional

import realtime_sync as rs
from realtime_sync import audio
from realtime_sync.transcription import build_session

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stream_wav import local_server, settle  # noqa: E402


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="input device index or name substring")
    parser.add_argument("--list", action="store_true", help="list audio devices and exit")
    parser.add_argument("--seconds", type=float, default=0, help="stop after N s (0: Ctrl-C)")
    parser.add_argument("--url", help="a Realtime endpoint (default: OpenAI or local)")
    parser.add_argument("--local", action="store_true", help="use an in-process local server")
    parser.add_argument("--model", default="gpt-transcribe",
                        help="a model that allows server VAD (this example uses it)")
    args = parser.parse_args(argv)

    if args.list:
        devices = audio.list_devices()
        for d in devices:
            flags = ("default input " if d["is_default_input"] else "") + (
                "default output" if d["is_default_output"] else "")
            print(f"{d['index']:3}  {d['name']:<40} in={d['max_input_channels']:<3}"
                  f" out={d['max_output_channels']:<3} {d['default_sample_rate']:.0f} Hz {flags}")
        if not devices:
            print("no audio devices found")
        return 0

    device = int(args.device) if args.device and args.device.isdigit() else args.device
    try:
        mic = audio.Microphone(device=device, chunk_ms=50)
    except rs.AudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"listening on {mic!r}; Ctrl-C to stop", file=sys.stderr)

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
        committed, finished = set(), set()

        def on_committed(ev: rs.Event) -> None:
            with done:
                committed.add(ev.item_id)

        def on_finished(ev: rs.Event) -> None:
            if ev.type.endswith("completed") and (ev.get("transcript") or "").strip():
                print(ev.transcript.strip(), flush=True)
            with done:
                finished.add(ev.item_id)
                done.notify_all()

        client.on("input_audio_buffer.committed", on_committed)
        for kind in ("completed", "failed"):
            client.on(f"conversation.item.input_audio_transcription.{kind}", on_finished)
        client.on("client.audio_error", lambda ev: print(f"[{ev.message}]", file=sys.stderr))
        client.on("client.audio_dropped",
                  lambda ev: print(f"[dropped {ev.ms:.0f} ms of audio]", file=sys.stderr))
        with client:
            handle = audio.stream(client, mic, chunk_ms=50)
            deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
            try:
                while handle.is_alive() and (deadline is None or time.monotonic() < deadline):
                    time.sleep(0.1)
            except KeyboardInterrupt:
                pass
            handle.stop()
            if client.connected:  # what was said last still gets its transcript
                settle(client, session, done, committed, finished)
            print(f"sent {handle.bytes_sent / 48000:.1f} s of audio; "
                  f"{mic.overflows} overflow(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``realtime-sync chat --live``: a voice chat over OpenAI's Live API (``gpt-live-1.1``).

Microphone in, speaker out, and the grouped transcript printed as it grows: on a terminal the
open segment is rewritten in place, every closed segment ends its line (``you: ...`` /
``assistant: ...``). Ctrl-C ends the session with ``session.close`` and prints the close
reason and the billed seconds. Thread: the main thread (Ctrl-C ends it).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Optional, TextIO

__all__ = ["run_live_chat", "TranscriptPrinter"]

LABELS = {"user": "you", "assistant": "assistant"}


class TranscriptPrinter:
    """Prints Live segments (dispatcher thread): the open one in place on a terminal, each
    closed one on its own line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._open = False
        self._lock = threading.Lock()

    def __call__(self, segment: Any) -> None:
        text = f"{LABELS.get(segment.speaker, segment.speaker)}: {segment.text.strip()}"
        with self._lock:
            if segment.final:
                self.out.write(("\r\x1b[K" if self.tty and self._open else "") + text + "\n")
                self._open = False
            elif self.tty:
                self.out.write("\r\x1b[K" + text)
                self._open = True
            self.out.flush()


def run_live_chat(args: Any, *, out: Optional[TextIO] = None,
                  stop: Optional[threading.Event] = None, answered_by: Optional[str] = None,
                  **options: Any) -> int:
    """Run a Live voice chat until Ctrl-C (or ``stop`` is set); returns the exit code.

    ``args`` has ``model``, ``voice``, ``instructions``, ``device``, ``output_device``,
    ``echo`` and ``events``; ``options`` go to :class:`~realtime_sync.LiveSession` (``url``,
    ``api_key``...).
    """
    from ..errors import ConnectionLostError
    from ..live import DEFAULT_MODEL, LiveSession
    from ..voice_chat import HalfDuplexGate

    opt = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    out = out if out is not None else sys.stdout
    stop = stop or threading.Event()
    printer = TranscriptPrinter(out)
    ended: list = []

    def on_error(exc: BaseException) -> None:
        sys.stderr.write(f"realtime-sync: {exc}\n")
        if isinstance(exc, ConnectionLostError):  # the session is gone: nothing to wait for
            stop.set()

    def on_closed(result: Any) -> None:
        ended.append(result)
        stop.set()

    speak = _device(opt("output_device"))
    live = LiveSession(model=opt("model") or DEFAULT_MODEL, voice=opt("voice"),
                       instructions=opt("instructions"), on_segment=printer,
                       on_error=on_error, on_closed=on_closed,
                       speak=True if speak is None else speak, **options)
    if opt("events"):
        live.on("*", lambda e: sys.stderr.write(f"{e.get('type')}\n"))
    code = 0
    try:
        live.start(timeout=15)
        who = answered_by or live.model
        out.write(f"Live session {live.session_id} with {who}: speak; Ctrl-C ends it.\n")
        out.flush()
        gate = HalfDuplexGate(live.speaker) if (opt("echo") or "half-duplex") == \
            "half-duplex" and live.speaker is not None else None
        live.listen(device=_device(opt("device")), mute_when=gate)
        try:
            while not stop.wait(0.25):
                pass
        except KeyboardInterrupt:
            pass
        if live.lost:
            code = 1
        elif not ended:
            try:
                ended.append(live.finish(timeout=10))
            except Exception as exc:  # noqa: BLE001 - reported, the session still closes
                sys.stderr.write(f"realtime-sync: {exc}\n")
                code = 1
        if ended:
            result = ended[0]
            seconds = result.usage.get("seconds")
            out.write(f"session closed ({result.reason}); {seconds} s billed\n")
    finally:
        live.close(timeout=5)
    return code


def _device(value: Optional[str]) -> Any:
    if value is None or value == "":
        return None
    return int(value) if str(value).isdigit() else value

"""Voice chat: microphone in, speaker out, transcripts on the console.

``realtime-sync chat`` runs :func:`run_chat`; :class:`VoiceChat` is the reusable part (any
:class:`~realtime_sync.audio.AudioSource` in, a :class:`~realtime_sync.audio.Speaker` out).

Echo handling (``echo=``):

* ``"headphones"``: full duplex. The user may talk over the model: server VAD reports
  ``speech_started``, the speaker stops at once and truncates the item at what was heard.
* ``"half-duplex"`` (the default, safe with loudspeakers): the microphone stream is muted
  while the speaker plays and for ``tail_ms`` after, so the model never hears itself. The
  microphone is still read (and discarded) so it does not overflow.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, Optional, TextIO

from .models import (
    DEFAULT_CONVERSATION_MODEL,
    DEFAULT_INPUT_TRANSCRIPTION_MODEL,
    warn_if_deprecated,
)

__all__ = ["VoiceChat", "HalfDuplexGate", "chat_session", "run_chat", "ECHO_MODES"]

logger = logging.getLogger(__name__)

ECHO_MODES = ("headphones", "half-duplex")
DEFAULT_TAIL_MS = 300


def chat_session(voice: Optional[str] = None, instructions: Optional[str] = None,
                 transcription_model: Optional[str] = DEFAULT_INPUT_TRANSCRIPTION_MODEL,
                 ) -> Dict[str, Any]:
    """The session config of a voice chat: PCM16 24 kHz both ways, server VAD that answers
    every turn and interrupts the model when the user speaks, user speech transcribed
    (``gpt-transcribe`` by default: it transcribes each turn the conversation's VAD commits).
    A transcription model with an announced shutdown logs one warning per process."""
    pcm = {"type": "audio/pcm", "rate": 24000}
    audio_in: Dict[str, Any] = {
        "format": dict(pcm),
        "turn_detection": {"type": "server_vad", "create_response": True,
                           "interrupt_response": True},
    }
    if transcription_model:
        warn_if_deprecated(transcription_model)
        audio_in["transcription"] = {"model": transcription_model}
    audio_out: Dict[str, Any] = {"format": dict(pcm)}
    if voice:
        audio_out["voice"] = voice
    session: Dict[str, Any] = {"type": "realtime", "output_modalities": ["audio"],
                               "audio": {"input": audio_in, "output": audio_out}}
    if instructions:
        session["instructions"] = instructions
    return session


class HalfDuplexGate:
    """``mute_when`` for :func:`realtime_sync.audio.stream`: True while ``speaker`` plays
    and for ``tail_ms`` after (room echo and device latency). Called on the audio thread."""

    def __init__(self, speaker: Any, tail_ms: int = DEFAULT_TAIL_MS) -> None:
        self.speaker = speaker
        self.tail = max(0, tail_ms) / 1000.0
        self._until = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.speaker.is_playing:
            self._until = now + self.tail
            return True
        return now < self._until


class _Printer:
    """Console output of a chat (runs in handlers on the dispatcher thread).

    What the user said is printed before the reply to it: the transcription of a user turn
    often completes after the model has started answering, so the reply's text is held back
    while a committed user turn still waits for its transcript (at most ``hold_s``).
    """

    def __init__(self, out: TextIO, hold_s: float = 5.0) -> None:
        self.out = out
        self.open_item: Optional[str] = None
        self.hold_s = hold_s
        self._waiting: Dict[str, float] = {}  # user item id -> when it was committed
        self._held: list = []  # assistant output held back until the user line is printed

    def _end_line(self) -> None:
        if self.open_item is not None:
            self._emit("\n")
            self.open_item = None

    def write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):  # closed console
            pass

    def _emit(self, text: str) -> None:
        """Assistant output: held while a user transcript is awaited, else written."""
        self._expire()
        if self._waiting:
            self._held.append(text)
        else:
            self.write(text)

    def _expire(self) -> None:
        now = time.monotonic()
        for item_id, since in list(self._waiting.items()):
            if now - since > self.hold_s:
                del self._waiting[item_id]
        if not self._waiting:
            self.release()

    def release(self) -> None:
        """Write what was held back (also when the chat stops)."""
        held, self._held = "".join(self._held), []
        if held:
            self.write(held)

    def committed(self, event: Any) -> None:
        item_id = event.get("item_id")
        if isinstance(item_id, str) and self.hold_s > 0:
            self._waiting[item_id] = time.monotonic()

    def user(self, event: Any) -> None:
        said = str(event.get("transcript") or "").strip()
        self._waiting.pop(str(event.get("item_id")), None)
        if said:
            if self._held:  # the reply started first: the user line goes before it
                self.write(f"you: {said}\n")
            else:
                self._end_line()
                self.write(f"you: {said}\n")
        if not self._waiting:
            self.release()

    def user_failed(self, event: Any) -> None:
        self._waiting.pop(str(event.get("item_id")), None)
        if not self._waiting:
            self.release()

    def assistant_delta(self, event: Any) -> None:
        item_id = str(event.get("item_id") or "")
        if self.open_item != item_id:
            self._end_line()
            self._emit("assistant: ")
            self.open_item = item_id
        self._emit(str(event.get("delta") or ""))

    def assistant_done(self, event: Any) -> None:
        if self.open_item is not None:
            self._emit("\n")
            self.open_item = None

    def interrupted(self, event: Any) -> None:
        if self.open_item is not None:
            self._emit(" [interrupted]\n")
            self.open_item = None

    def tool(self, event: Any) -> None:
        self._end_line()
        result = event.get("error") or event.get("output") or ""
        self._emit(f"[tool {event.get('name')}({event.get('arguments')}) -> {result}]\n")

    def error(self, event: Any) -> None:
        err = event.get("error") or {}
        message = err.get("message") if isinstance(err, dict) else err
        self._end_line()
        sys.stderr.write(f"server error: {message}\n")


class VoiceChat:
    """A running voice chat on a connected client.

    Args:
        client: a :class:`~realtime_sync.RealtimeClient` of a conversation session (use
            :func:`chat_session` for its config).
        source: the microphone (any live AudioSource).
        speaker: a :class:`~realtime_sync.audio.Speaker`; attached by :meth:`start`.
        echo: ``"headphones"`` (full duplex, barge-in) or ``"half-duplex"`` (mute the
            microphone while the speaker plays and for ``tail_ms`` after).
        tail_ms: the half-duplex tail.
        out: where transcripts are printed (``None``: nowhere).

    ``start()`` and ``stop()`` may be called from any thread but the dispatcher's; the
    printing handlers run on the dispatcher thread, the microphone on ``realtime-sync-audio``
    and the speaker on ``realtime-sync-speaker``. ``client.close()`` stops both.
    """

    def __init__(self, client: Any, source: Any, speaker: Any, *, echo: str = "half-duplex",
                 tail_ms: int = DEFAULT_TAIL_MS, out: Optional[TextIO] = None) -> None:
        if echo not in ECHO_MODES:
            raise ValueError(f"echo must be one of {ECHO_MODES}, not {echo!r}")
        self.client = client
        self.source = source
        self.speaker = speaker
        self.echo = echo
        self.gate: Optional[HalfDuplexGate] = (
            HalfDuplexGate(speaker, tail_ms) if echo == "half-duplex" else None)
        self.stream: Any = None
        self._printer = _Printer(out) if out is not None else None
        self._handlers: Dict[str, Callable[[Any], None]] = {}

    @property
    def muted(self) -> bool:
        """True while the microphone is muted by the half-duplex gate (or paused)."""
        stream = self.stream
        if stream is not None and stream.muted:
            return True
        return bool(self.gate()) if self.gate is not None else False

    def start(self) -> VoiceChat:
        """Attach the speaker, subscribe the printers and start streaming the microphone."""
        from .audio import stream

        printer = self._printer
        if printer is not None:
            config = getattr(self.client, "session_config", None) or {}
            transcribed = (config.get("audio", {}).get("input", {}).get("transcription")
                           if isinstance(config, dict) else None)
            printer.hold_s = 5.0 if transcribed else 0.0  # no transcripts: nothing to await
            self._handlers = {
                "input_audio_buffer.committed": printer.committed,
                "conversation.item.input_audio_transcription.completed": printer.user,
                "conversation.item.input_audio_transcription.failed": printer.user_failed,
                "response.output_audio_transcript.delta": printer.assistant_delta,
                "response.output_audio_transcript.done": printer.assistant_done,
                "response.output_text.delta": printer.assistant_delta,
                "response.output_text.done": printer.assistant_done,
                "input_audio_buffer.speech_started": printer.interrupted,
                "client.tool_call": printer.tool,
                "error": printer.error,
            }
            for type_, handler in self._handlers.items():
                self.client.on(type_, handler)
        self.speaker.attach(self.client)
        self.stream = stream(self.client, self.source, mute_when=self.gate)
        return self

    def pause(self) -> None:
        """Mute the microphone (push-to-talk style); any thread."""
        if self.stream is not None:
            self.stream.pause()

    def resume(self) -> None:
        """Unmute after :meth:`pause`; any thread."""
        if self.stream is not None:
            self.stream.resume()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the microphone stream and the speaker; idempotent. True when their threads
        ended."""
        ok = True
        for type_, handler in self._handlers.items():
            self.client.off(type_, handler)
        self._handlers = {}
        if self._printer is not None:
            self._printer.release()
        if self.stream is not None:
            ok = self.stream.stop(timeout) and ok
        ok = self.speaker.stop(timeout) and ok
        return ok

    def __enter__(self) -> VoiceChat:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _device(value: Any) -> Any:
    if value is None or isinstance(value, int):
        return value
    text = str(value)
    return int(text) if text.isdigit() else text


def run_chat(args: Any, *, source: Any = None, speaker: Any = None,
             tools: Iterable[Callable[..., Any]] = (), stop: Optional[threading.Event] = None,
             out: Optional[TextIO] = None, answered_by: Optional[str] = None,
             **client_options: Any) -> int:
    """Run a voice chat until Ctrl-C (or ``stop`` is set); returns the exit code.

    ``args`` has ``model``, ``voice``, ``device``, ``output_device``, ``echo``,
    ``instructions`` and ``events`` (the ``realtime-sync chat`` options; missing ones take
    defaults); ``client_options`` go to :class:`~realtime_sync.RealtimeClient` (``url``,
    ``api_key``...). ``source``/``speaker`` replace the microphone/speaker, ``tools`` are
    registered with ``client.tool``. ``answered_by`` says who answers in the start-up line
    (default: the model's name; e.g. the offline engine, which is no language model). Thread:
    the main thread (Ctrl-C ends it).
    """
    from .audio import Microphone, Speaker
    from .client import RealtimeClient

    opt = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    echo = opt("echo") or "half-duplex"
    if echo not in ECHO_MODES:
        raise ValueError(f"--echo must be one of {', '.join(ECHO_MODES)}")
    out = out if out is not None else sys.stdout
    session = chat_session(voice=opt("voice"), instructions=opt("instructions"))
    client_options.setdefault("model", opt("model") or DEFAULT_CONVERSATION_MODEL)
    client = RealtimeClient(session=session, **client_options)
    stop = stop or threading.Event()
    chat: Optional[VoiceChat] = None
    try:
        if opt("events"):
            start = time.monotonic()
            client.on("*", lambda e: sys.stderr.write(
                f"{time.monotonic() - start:9.3f}s  {e.get('type')}\n"))
        for fn in tools:
            client.tool(fn)
        client.on("client.disconnected", lambda e: stop.set()
                  if not e.get("will_reconnect") else None)
        from ._features.reconnects import report_reconnects

        report_reconnects(client, sys.stderr)  # one line per attempt, with its delay
        client.connect(timeout=15)
        spk = speaker if speaker is not None else Speaker(device=_device(opt("output_device")))
        try:
            mic = source if source is not None else Microphone(device=_device(opt("device")))
        except BaseException:
            spk.stop(1.0)
            raise
        chat = VoiceChat(client, mic, spk, echo=echo, out=out).start()
        sys.stderr.write(
            f"voice chat with {answered_by or client_options['model']} ({echo}); speak, "
            "Ctrl-C to stop\n")
        try:
            while not stop.wait(0.2):
                if client.state in ("disconnected", "closed"):
                    break  # gave up reconnecting (no further event says so)
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            return 0
        return 0 if client.state not in ("disconnected",) else 1
    finally:
        if chat is not None:
            chat.stop(2.0)
        client.close(timeout=5)

"""Live translation: :class:`Translator`, :class:`Cue`, :class:`Translation` and
:func:`translate_file`.

A :class:`Translator` owns one session of the Realtime translation protocol
(``/v1/realtime/translations?model=...``): it streams 24 kHz PCM16 in 200 ms frames
(``session.input_audio_buffer.append``), keeps the stream alive with silence while nothing is
fed (so the model's clock follows the wall clock), and turns the append-only deltas
``session.output_transcript.delta`` / ``session.input_transcript.delta`` into caption cues
timed by their ``elapsed_ms``. ``session.close`` flushes and ends the session
(``session.closed``).

Reconnects and the 60-minute limit: audio is kept from the end of the last finished cue, so a
dropped or expired session is resumed on a new one by replaying it; the unfinished cue of the
old session is dropped and translated again from the replayed audio. Times of the new session
are shifted by where its audio starts, so cue times stay monotonic.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Union

from . import models as _models
from ._core import credentials as _secrets
from ._core.dispatch import Marshal
from ._core.endpoint import translation_url
from ._core.wait import Deadline
from ._core.wire import BYTES_PER_MS
from ._features.drops import DropLedger
from ._features.live_session import SessionLink, check_options
from ._features.ring import AudioRing, audio_bytes
from ._features.ticker import Ticker
from .client import RealtimeClient
from .errors import ConfigurationError, NotConnectedError, TimeoutError
from .events import Event, LibraryEvents, append_frame, new_event_id

__all__ = [
    "Cue", "Translation", "Translator", "translate_file", "build_translation_session",
    "DEFAULT_MODEL", "DEFAULT_SOURCE_MODEL",
]

logger = logging.getLogger(__name__)
_APPEND = "session.input_audio_buffer.append"  # the translation session's append event

DEFAULT_MODEL = _models.DEFAULT_TRANSLATION_MODEL
"""The translation model (``gpt-realtime-translate``, from the model catalogue)."""
DEFAULT_SOURCE_MODEL = "gpt-realtime-whisper"
"""The transcription model for the source-language text (``source_transcript=True``)."""
FRAME_MS = 200
FRAME_BYTES = FRAME_MS * BYTES_PER_MS
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
SENTENCE_ENDS = (".", "!", "?", "…", "。", "！", "？", "؟", "।")
MAX_CUE_CHARS = 84
CUE_GAP_MS = 2000
MS_PER_CHAR = 50
MAX_READING_MS = 3000
MIN_CUE_MS = 1000
"""No cue is shown for less than this, however short its text (a one-word cue included)."""
ORPHAN_CHARS = 16
"""A cue may run this far past :data:`MAX_CUE_CHARS` before it is split, so that a split
never leaves a tail shorter than this (``...followed by the`` / ``key.``)."""
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?…。！？؟।])(?=\s)")


@dataclass
class Cue:
    """A caption: a stretch of translated (or source) text with its times.

    Attributes:
        text: the text of the cue (deltas joined as sent: no spaces are added).
        start_ms: time of its first delta, in all audio fed to the translator (ms).
        end_ms: time of its last delta plus one 200 ms frame.
        source: True for source-language text (``session.input_transcript.delta``).
        final: False while the cue still grows.
        index: 0, 1, ... per kind (translated / source), in order.
    """

    text: str
    start_ms: int
    end_ms: int
    source: bool = False
    final: bool = False
    index: int = 0


@dataclass
class Translation:
    """The result of a translation session.

    Attributes:
        cues: translated captions in order.
        source_cues: source-language captions (empty unless ``source_transcript`` was set).
        audio: translated speech (PCM16 24 kHz mono) when it was kept, else None.
        language: the target language.
    """

    cues: List[Cue] = field(default_factory=list)
    source_cues: List[Cue] = field(default_factory=list)
    audio: Optional[bytes] = None
    language: str = ""

    @property
    def text(self) -> str:
        """The translated text: the cues' texts joined by single spaces."""
        return " ".join(c.text.strip() for c in self.cues if c.text.strip())

    @property
    def source_text(self) -> str:
        """The source-language text ("" without ``source_transcript``)."""
        return " ".join(c.text.strip() for c in self.source_cues if c.text.strip())

    def __str__(self) -> str:
        return self.text


def build_translation_session(
    *,
    to: str,
    source_transcript: Union[bool, str, None] = False,
    noise_reduction: Union[str, Mapping[str, Any], None] = None,
) -> Dict[str, Any]:
    """The ``session`` object of a translation ``session.update``.

    Raises:
        ConfigurationError: an unknown ``noise_reduction``.
        TypeError: a value of the wrong type.
    """
    if not isinstance(to, str) or not to.strip():
        raise TypeError("to must be a language code such as 'es'")
    audio_input: Dict[str, Any] = {}
    if source_transcript is True:
        audio_input["transcription"] = {"model": DEFAULT_SOURCE_MODEL}
    elif isinstance(source_transcript, str) and source_transcript:
        audio_input["transcription"] = {"model": source_transcript}
    elif source_transcript not in (False, None):
        raise TypeError("source_transcript must be True, False or a transcription model name")
    if noise_reduction is None:
        pass
    elif isinstance(noise_reduction, str):
        if noise_reduction not in NOISE_REDUCTION_TYPES:
            raise ConfigurationError(
                "noise_reduction must be 'near_field', 'far_field' or None, "
                f"not {noise_reduction!r}")
        audio_input["noise_reduction"] = {"type": noise_reduction}
    elif isinstance(noise_reduction, Mapping):
        audio_input["noise_reduction"] = dict(noise_reduction)
    else:
        raise TypeError("noise_reduction must be a string, a dict or None")
    audio: Dict[str, Any] = {"output": {"language": to.strip()}}
    if audio_input:
        audio["input"] = audio_input
    return {"audio": audio}


class _TextLog:
    """Append-only text kept as its pieces, joined on read: appending is O(1) whatever the
    length so far (``text += piece`` copies it all, so that 160k deltas took quadratic time),
    and reading what came after an offset costs only that new text."""

    def __init__(self) -> None:
        self._parts: List[str] = []
        self._length = 0

    def append(self, piece: str) -> None:
        self._parts.append(piece)
        self._length += len(piece)

    def __len__(self) -> int:
        return self._length

    def __str__(self) -> str:
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def since(self, offset: int) -> str:
        """The text after the first ``offset`` characters."""
        parts, covered = [], self._length
        for part in reversed(self._parts):
            if covered <= offset:
                break
            covered -= len(part)
            parts.append(part if covered >= offset else part[offset - covered:])
        return "".join(reversed(parts))

    def drop_tail(self, count: int) -> None:
        """Forget the last ``count`` characters."""
        count = min(count, self._length)
        self._length -= count
        while count > 0:
            last = self._parts.pop()
            if len(last) > count:
                self._parts.append(last[:len(last) - count])
            count -= len(last)


class _Cues:
    """Turns timed append-only deltas into cues (dispatcher thread, under the lock).

    Linear in the text: a cue never grows past ``MAX_CUE_CHARS + ORPHAN_CHARS`` (a stretch
    with no space to break at, e.g. Chinese or Japanese, is cut at ``MAX_CUE_CHARS``), a long
    delta is taken in slices of that size, and the whole text is a :class:`_TextLog`, so each
    delta costs the same however much came before."""

    def __init__(self, source: bool) -> None:
        self.source = source
        self.done: List[Cue] = []
        self.pending: Optional[Cue] = None
        self.last_ms = 0  # monotonic clock of this stream
        self.closed_ms = 0  # time up to which every cue is final
        self.pending_ms = 0  # time of the pending cue's last delta
        self.text = _TextLog()  # everything, final or not

    def add(self, delta: str, ms: int) -> List[Cue]:
        """Add a delta at ``ms``; returns the cues that changed, in order. A delta holding
        several sentences (an engine that sends a phrase at once) makes several cues."""
        ms = max(ms, self.last_ms)
        self.last_ms = ms
        changed: List[Cue] = []
        cue = self.pending
        if cue is not None and ms - self.pending_ms >= CUE_GAP_MS:
            changed.append(self._close())
        for piece in _SENTENCE_SPLIT.split(delta):
            for i in range(0, len(piece), MAX_CUE_CHARS):  # bounded work per step
                self._add_piece(piece[i:i + MAX_CUE_CHARS], ms, changed,
                                last=i + MAX_CUE_CHARS >= len(piece))
        out: List[Cue] = []
        for cue in changed:  # each cue once, in its latest state
            if out and out[-1].index == cue.index:
                out[-1] = cue
            else:
                out.append(cue)
        return out

    def _add_piece(self, piece: str, ms: int, changed: List[Cue], last: bool = True) -> None:
        self.text.append(piece)
        cue = self.pending
        if cue is None:
            if not piece.strip():  # spacing between cues: the text keeps it, no cue starts
                return
            cue = self.pending = Cue(text="", start_ms=ms, end_ms=ms + FRAME_MS,
                                     source=self.source, index=len(self.done))
        cue.text += piece.lstrip() if not cue.text else piece
        cue.end_ms = ms + FRAME_MS
        self.pending_ms = ms
        while len(cue.text.strip()) > MAX_CUE_CHARS + ORPHAN_CHARS:
            cut = cue.text.rstrip().rfind(" ", 0, MAX_CUE_CHARS + 1)
            if cut <= 0:  # no space to break at: a cue still has its size
                cut = MAX_CUE_CHARS
            rest = cue.text[cut:]
            cue.text = cue.text[:cut]
            changed.append(self._close())
            cue = self.pending = Cue(text=rest.lstrip(), start_ms=ms, end_ms=ms + FRAME_MS,
                                     source=self.source, index=len(self.done))
            self.pending_ms = ms
        body = cue.text.rstrip().rstrip("\"'”»)]")
        if last and body.endswith(SENTENCE_ENDS):
            changed.append(self._close())
        else:
            changed.append(self._snapshot(cue))

    @staticmethod
    def _snapshot(cue: Cue) -> Cue:
        return Cue(**{**cue.__dict__})

    def _close(self) -> Cue:
        cue = self.pending
        assert cue is not None
        self.pending = None
        cue.final = True
        if not cue.text.strip():
            return self._snapshot(cue)
        self.done.append(cue)
        self.closed_ms = max(self.closed_ms, self.pending_ms)
        # a cue whose text came at once stays readable: at least its reading time (bounded)
        reading = max(MIN_CUE_MS, min(MAX_READING_MS, MS_PER_CHAR * len(cue.text.strip())))
        cue.end_ms = max(cue.end_ms, cue.start_ms + reading)
        return self._snapshot(cue)

    def flush(self) -> List[Cue]:
        """Close the pending cue (at the end of the session)."""
        if self.pending is None:
            return []
        cue = self._close()
        return [cue] if cue.text.strip() else []

    def drop_pending(self) -> None:
        """Forget the unfinished cue (its audio is replayed into a new session)."""
        cue = self.pending
        if cue is not None:
            self.text.drop_tail(len(cue.text))
            self.pending = None


class Translator:
    """A live translation session: feed speech (or listen to a microphone), get translated
    captions, text and speech.

    Threads: ``start()``/``__enter__`` connects (the client's ``realtime-sync-net`` and
    ``realtime-sync-dispatch`` threads) and starts ``realtime-sync-translate-clock``, which
    sends the audio in 200 ms frames and keeps the stream alive with silence while nothing is
    fed; ``listen()`` adds the audio thread. ``close()`` joins them all. Bookkeeping runs on the
    dispatcher thread; ``on_text``, ``on_source_text`` and ``on_audio`` run there too, or
    through ``marshal`` (a GUI's thread) when given. ``feed``, ``finish`` and the properties may
    be called from any thread; iterating blocks (not on the dispatcher).

    Args:
        to: target language (``"es"``, ``"fr"``, ``"en"``, ...).
        model: translation model (default ``gpt-realtime-translate``).
        source_transcript: also get the source-language text: True (with
            ``gpt-realtime-whisper``), a transcription model name, or False.
        noise_reduction: ``"near_field"``, ``"far_field"``, a dict, or None.
        on_text: ``on_text(cue)`` for every change of a translated cue (``cue.final`` once
            it is complete); cues come in order.
        on_source_text: ``on_source_text(cue)`` likewise for source-language cues.
        on_audio: ``on_audio(pcm16, elapsed_ms)`` for every chunk of translated speech.
        url, api_key: where to connect: a Realtime URL (``.../v1/realtime``; the translator
            uses ``.../v1/realtime/translations``) and key (see :class:`RealtimeClient`).
        marshal: run the callbacks on another thread (see :mod:`realtime_sync.gui`).
        keepalive: send silence while no audio is fed (the protocol asks for it).
        keep_audio: keep the translated speech for :attr:`Translation.audio`.
        rollover_margin: seconds before the session's ``expires_at`` at which the translator
            moves to a new session at the next cue boundary.
        max_buffer_s: the most untranslated audio kept for replay (oldest dropped beyond it,
            counted as ``client.audio_dropped``).
        **client_options: passed to :class:`RealtimeClient` (``reconnect``, ``headers``, ...).
    """

    idle_slack_ms = FRAME_MS
    """Silence is added once the audio fed lags the wall clock by more than this: one frame,
    so that keep-alive silence is at most one frame late."""

    def __init__(
        self,
        to: str = "es",
        model: str = DEFAULT_MODEL,
        source_transcript: Union[bool, str, None] = False,
        noise_reduction: Union[str, Mapping[str, Any], None] = None,
        on_text: Optional[Callable[[Cue], Any]] = None,
        on_source_text: Optional[Callable[[Cue], Any]] = None,
        on_audio: Optional[Callable[[bytes, Optional[int]], Any]] = None,
        url: Optional[str] = None,
        api_key: Any = None,
        marshal: Optional[Marshal] = None,
        *,
        keepalive: bool = True,
        keep_audio: bool = False,
        rollover_margin: float = 60.0,
        max_buffer_s: float = 120.0,
        **client_options: Any,
    ) -> None:
        self._session = build_translation_session(
            to=to, source_transcript=source_transcript, noise_reduction=noise_reduction)
        if not isinstance(model, str) or not model:
            raise TypeError("model must be a non-empty string such as 'gpt-realtime-translate'")
        kind = _models.kind_of(model)
        if kind not in (None, _models.TRANSLATION):
            raise ConfigurationError(
                f"{model} is a {kind} model; translation sessions need a translation model "
                f"such as {DEFAULT_MODEL}")
        source_model = (self._session["audio"].get("input") or {}).get("transcription")
        if source_model is not None:
            skind = _models.kind_of(source_model["model"])
            if skind not in (None, _models.TRANSCRIPTION):
                raise ConfigurationError(
                    f"source_transcript={source_model['model']!r} is a {skind} model; name a "
                    f"transcription model such as {DEFAULT_SOURCE_MODEL}")
            _models.warn_if_deprecated(source_model["model"])
        _models.warn_if_deprecated(model)
        check_options({"on_text": on_text, "on_source_text": on_source_text,
                       "on_audio": on_audio}, marshal, rollover_margin, max_buffer_s)
        for bad in ("session", "intent", "model_url"):
            if bad in client_options:
                raise TypeError("Translator builds the session itself; pass its options instead")
        self.to = to.strip()
        self.model = model
        self.source_transcript = bool(source_transcript)
        self._url = translation_url(url)
        self._on_text = on_text
        self._on_source_text = on_source_text
        self._on_audio = on_audio
        self._keepalive = bool(keepalive)
        self._keep_audio = bool(keep_audio)
        self._client_options = dict(client_options)
        self._client_options.update(api_key=api_key)
        self._link = SessionLink("translator", marshal, float(rollover_margin), logger)
        # audio bookkeeping: absolute byte positions in everything fed (silence included)
        drops = DropLedger(logger, "translator", "untranslated", max_buffer_s,
                           lambda n: self._link.report_drop(n, BYTES_PER_MS))
        self._ring = AudioRing(int(max_buffer_s * 1000) * BYTES_PER_MS, drops)
        self._silence_bytes = 0
        self._session_base = 0  # absolute position where the current session's audio starts
        self._sessions = 0
        self._clock_start: Optional[float] = None
        self._flush_tail = False
        # output
        self._text = _Cues(source=False)
        self._source = _Cues(source=True)
        self._audio = bytearray()
        self._audio_chunks = 0
        self._max_elapsed = 0  # largest elapsed_ms seen in the current session
        self._elapsed_reported = False  # an absurd elapsed_ms was reported in this session
        # lifecycle
        self._closing = False  # session.close sent (finish)
        self._close_generation = -1
        self._ended = False  # session.closed received
        # twice per frame on a fixed grid (a slow tick does not push the next ones back); a
        # tick that comes late adds every frame of silence the wall clock has passed
        # (:func:`_keepalive_silence`)
        self._clock = Ticker("realtime-sync-translate-clock", FRAME_MS / 2000.0,
                             self._clock_step, logger, "translation clock failed",
                             schedule=_Schedule(FRAME_MS / 2000.0).wait)
        self._errors: List[Dict[str, Any]] = []

    def __repr__(self) -> str:
        state = self._link.client.state if self._link.client is not None else "idle"
        return f"<Translator to={self.to!r} model={self.model!r} {state}>"

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def client(self) -> RealtimeClient:
        """The underlying :class:`RealtimeClient` (after ``start()``)."""
        return self._link.require()

    @property
    def url(self) -> str:
        """The translation URL (never contains the key)."""
        return self._link.client.url if self._link.client is not None else \
            _secrets.mask_url(self._url)

    def start(self, timeout: Optional[float] = 15) -> Translator:
        """Connect and configure the session; blocks until ``session.updated``.

        Thread: any but a dispatcher thread.

        Raises:
            ConfigurationError: the server rejected the configuration (its message included),
                e.g. a target language it cannot produce.
            AuthenticationError, ConnectError, TimeoutError: as :meth:`RealtimeClient.connect`.
        """
        if self._link.client is not None:
            return self
        if self._link.closed:
            raise NotConnectedError("the translator is closed; create a new one")
        client = RealtimeClient(url=self._url, model=self.model, session=self._session,
                                **self._client_options)
        self._link.open(client, (
            ("session.created", self._link.note_expiry),
            ("session.output_transcript.delta", self._on_output_delta),
            ("session.input_transcript.delta", self._on_input_delta),
            ("session.output_audio.delta", self._on_audio_delta),
            ("session.closed", self._on_session_closed),
            ("error", self._on_error),
            (LibraryEvents.CONNECTED, self._on_new_session),
            (LibraryEvents.RECONNECTED, self._on_new_session),
            (LibraryEvents.DISCONNECTED, self._link.wake),
        ), timeout, then=self._start_clock)
        return self

    def _start_clock(self) -> None:
        """Start the clock thread (paces the audio, keeps the session alive) once the
        session is in use."""
        with self._link.changed:
            self._clock_start = time.monotonic()
        self._clock.start()

    def on(self, type: str, handler: Callable[[Event], Any]) -> Callable[[Event], Any]:  # noqa: A002
        """Register ``handler(event)`` for raw events (``"*"``: all). Works before ``start()``.
        The handler runs on the dispatcher thread, or through ``marshal`` when given."""
        return self._link.on(type, handler)

    def close(self, timeout: float = 5) -> bool:
        """Stop listening, close the session and join every thread. Idempotent; any thread.

        Audio not yet translated is abandoned; use :meth:`finish` first to flush it.
        """
        self._link.stop_streams(timeout / 2)
        self._link.streams.clear()
        with self._link.changed:
            self._link.closed = True
            self._ring.drops.end_episode()
            self._link.changed.notify_all()
        ok = self._clock.stop(timeout / 2)
        client = self._link.client
        return (client.close(timeout) if client is not None else True) and ok

    def __enter__(self) -> Translator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- audio in ---------------------------------------------------------------------------
    def feed(self, pcm16: bytes) -> None:
        """Feed PCM16 mono 24 kHz speech. Any thread; never blocks on the network for long.

        Audio is sent in 200 ms frames; it is kept until translated, so while disconnected it
        waits and is sent (replayed) once a session is back.

        Raises:
            TypeError, ValueError: not PCM16 bytes.
            NotConnectedError: the translator is closed, finished or not started.
        """
        pcm16 = audio_bytes(pcm16)
        client = self.client
        if self._link.closed:
            raise NotConnectedError("the translator is closed")
        if self._closing:
            raise NotConnectedError("the translation session is finishing; nothing more is sent")
        with self._link.lock:
            self._ring.add(pcm16)
            self._trim_ring()
        self._pump(client)

    def listen(self, device: Union[int, str, None] = None, chunk_ms: int = 50) -> Any:
        """Stream a microphone into this translator on the ``realtime-sync-audio`` thread.

        Returns the :class:`realtime_sync.audio.AudioStream` handle (stopped by ``close()``).

        Raises:
            AudioError: no usable input device (the message says how to list devices).
        """
        self.client  # noqa: B018 - raises when not started
        return self._link.listen(self.feed, device, chunk_ms)

    def stream_source(self, source: Any, chunk_ms: int = 50) -> Any:
        """Stream any :class:`realtime_sync.audio.AudioSource` into this translator."""
        self.client  # noqa: B018
        return self._link.stream(self.feed, source, chunk_ms)

    def _pump(self, client: RealtimeClient) -> None:
        """Send whole 200 ms frames the current session has not had yet (the remainder too
        when finishing); replays after a new session. Any thread but the dispatcher."""
        self._link.pump(client, self._ring, _send_frame, FRAME_BYTES,
                        lambda: 1 if self._flush_tail else FRAME_BYTES)

    def _clock_step(self) -> bool:
        """``realtime-sync-translate-clock``, every 0.1 s: silence while idle, sending,
        rollover. False once the translator has no client (the clock ends)."""
        client = self._link.client
        if client is None:
            return False
        self._tick(client)
        return True

    def _tick(self, client: RealtimeClient) -> None:
        with self._link.changed:
            if self._link.closed or self._closing or self._flush_tail or self._clock_start is None:
                return  # finishing: the rest goes out with session.close, no more silence
            if self._keepalive:
                add = _keepalive_silence(time.monotonic() - self._clock_start, self._ring.total,
                                        self.idle_slack_ms)
                if add:
                    # silence keeps the stream alive and the model's clock on the wall's
                    self._ring.add(bytes(add))
                    self._silence_bytes += add
                    self._trim_ring()
        self._pump(client)
        self._link.maybe_rollover(client, self._quiet,
                                  "translation session expires soon: moving to a new session")

    def _quiet(self) -> bool:
        """No cue in progress: a good moment to move to a new session (lock held)."""
        return self._text.pending is None and self._source.pending is None

    def _keep_from(self) -> int:
        """Where the audio still needed for a replay starts, within the ring (lock held)."""
        return max(self._ring.start, self._replay_start())

    def _replay_start(self) -> int:
        """Where a new session would have to start replaying, even if the ring no longer
        holds it (lock held)."""
        boundary_ms = min(self._text.closed_ms, self._source.closed_ms) \
            if self.source_transcript else self._text.closed_ms
        if self._text.pending is None and (not self.source_transcript
                                           or self._source.pending is None):
            # nothing unfinished: the server has translated what it showed us so far
            boundary_ms = max(boundary_ms, self._session_base // BYTES_PER_MS
                              + self._max_elapsed)
        return min(boundary_ms * BYTES_PER_MS, self._ring.sent)

    def _trim_ring(self) -> None:
        """Forget audio already translated; bound the rest (lock held). Beyond
        ``max_buffer_s`` the oldest audio leaves the ring; :class:`DropLedger` counts what is
        really lost (audio not sent yet, or later needed by a replay), once."""
        self._ring.trim(self._replay_start())

    # -- finishing --------------------------------------------------------------------------
    def finish(self, timeout: Optional[float] = 30) -> Translation:
        """Send the rest of the audio and ``session.close``, wait for ``session.closed`` (the
        server flushes its output first) and return the :class:`Translation`.

        After it, ``feed`` raises; call :meth:`close` (or leave the ``with`` block). Thread: any
        but the dispatcher's. A drop while finishing resumes on a new session (replay) and
        closes that one.

        Raises:
            TimeoutError: no ``session.closed`` within ``timeout`` seconds.
            NotConnectedError: the session ended for good first.
        """
        client = self.client
        client.host.check_blocking_call("Translator.finish()")
        deadline = Deadline(timeout)
        self._link.stop_streams(2)
        with self._link.lock:
            self._flush_tail = True
        while True:
            with self._link.changed:
                if self._ended:
                    flushed = self._text.flush() + self._source.flush()
                    result = self._result()
                    self._ring.drops.end_episode()
                    break
            self._pump(client)
            with self._link.changed:
                ready = (client.connected and self._link.generation == client.host.session_number
                         and self._ring.sent >= self._ring.total)
                if ready and self._close_generation != self._link.generation:
                    self._closing = True
                    self._close_generation = self._link.generation
                    send_close = True
                else:
                    send_close = False
            if send_close:
                try:
                    client.send({"type": "session.close"})
                except NotConnectedError:
                    with self._link.lock:
                        self._close_generation = -1
            with self._link.changed:
                if self._ended:
                    continue
                # session.closed seen by the network thread: its handler runs next, wait for it
                if client.state in ("closed", "disconnected") and not self._closed_on_wire():
                    raise NotConnectedError(
                        "the translation session ended before session.closed "
                        f"({client.host.not_connected_message()})")
                if deadline.expired():
                    raise TimeoutError(f"no session.closed within {timeout} s")
                self._link.changed.wait(deadline.slice(0.1))
        self._deliver(flushed)
        return result

    def _closed_on_wire(self) -> bool:
        """True once the network thread has read ``session.closed`` (the dispatcher may not
        have handled it yet: the socket's close can overtake the event's handler)."""
        client = self._link.client
        return client is not None and client.host.session_ended

    def _result(self) -> Translation:
        return Translation(cues=list(self._text.done), source_cues=list(self._source.done),
                           audio=bytes(self._audio) if self._keep_audio else None,
                           language=self.to)

    # -- results ----------------------------------------------------------------------------
    @property
    def translation(self) -> Translation:
        """The final cues so far (a snapshot; any thread)."""
        with self._link.lock:
            return self._result()

    @property
    def text(self) -> str:
        """All translated text so far, the unfinished cue included (any thread)."""
        with self._link.lock:
            return str(self._text.text)

    @property
    def source_text(self) -> str:
        """All source-language text so far (any thread)."""
        with self._link.lock:
            return str(self._source.text)

    @property
    def fed_ms(self) -> int:
        """Audio fed so far (keep-alive silence included), in ms: the session's model time."""
        return self._ring.total // BYTES_PER_MS

    @property
    def silence_ms(self) -> int:
        """Keep-alive silence the translator added while nothing was fed, in ms."""
        return self._silence_bytes // BYTES_PER_MS

    @property
    def dropped_ms(self) -> int:
        """Audio that will never be translated because the replay buffer (``max_buffer_s``)
        overflowed: fed while the session could not take it, or needed by a replay and no
        longer held. Counted once; equals the ``client.audio_dropped`` events' bytes."""
        return self._ring.drops.total // BYTES_PER_MS

    @property
    def errors(self) -> List[Dict[str, Any]]:
        """The server's ``error`` objects received so far."""
        with self._link.lock:
            return list(self._errors)

    def __iter__(self) -> Iterator[str]:
        return self.deltas()

    def deltas(self, timeout: Optional[float] = None) -> Iterator[str]:
        """A blocking iterator of the translated text as it grows: each new piece, in order
        (``for piece in translator: print(piece, end="")``).

        Ends after ``session.closed`` or ``close()`` (once everything was yielded), or when
        nothing new comes for ``timeout`` seconds. After a reconnect the unfinished cue is
        translated again, so its text may come twice (cues and ``on_text`` have it once).
        Thread: any but the dispatcher thread.

        Raises:
            NotConnectedError: the session ended for good without ``session.closed``.
        """
        client = self.client
        client.host.check_blocking_call("Translator.deltas()")
        seen = 0
        while True:
            with self._link.changed:
                deadline = Deadline(timeout)
                while len(self._text.text) <= seen:
                    if len(self._text.text) < seen:  # an unfinished cue was dropped
                        seen = len(self._text.text)
                    if self._ended or self._link.closed or client.state == "closed":
                        return
                    if client.state == "disconnected" and not self._closed_on_wire():
                        raise NotConnectedError(
                            f"the session ended for good ({client.host.not_connected_message()})")
                    if deadline.expired():
                        return
                    self._link.changed.wait(deadline.slice())
                piece = self._text.text.since(seen)
                seen = len(self._text.text)
            yield piece

    # -- event handlers (dispatcher thread) ---------------------------------------------------
    def _on_new_session(self, event: Event) -> None:
        """``client.connected`` / ``client.reconnected``: every event of the previous session
        has been handled, so switch here; the clock thread replays."""
        with self._link.changed:
            gen = self._link.new_session()
            if gen is not None:
                first = self._link.generation < 0
                self._ring.drops.new_session(self._replay_start(), first)
                keep_from = self._keep_from() if not first else 0
                self._link.generation = gen
                self._sessions += 1
                self._text.drop_pending()
                self._source.drop_pending()
                keep_from = max(keep_from, self._ring.start)
                self._session_base = keep_from
                self._ring.rewind(keep_from)
                self._max_elapsed = 0
                self._elapsed_reported = False
                if not first:
                    logger.info("new translation session: replaying %d ms of audio",
                                (self._ring.total - keep_from) // BYTES_PER_MS)
            self._link.changed.notify_all()

    def _time(self, event: Event) -> int:
        """The event's time in all audio fed (lock held). ``elapsed_ms`` is bounded by the
        audio this session has been sent (the model cannot be past it): a larger value
        (``1e300``) is reported once per session and taken as that bound."""
        elapsed = event.get("elapsed_ms")
        if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool) and elapsed >= 0:
            sent_ms = max(0, self._ring.sent - self._session_base) // BYTES_PER_MS
            if elapsed > sent_ms:
                if elapsed > sent_ms + MAX_READING_MS and not self._elapsed_reported:
                    self._elapsed_reported = True
                    client = self._link.client
                    if client is not None:
                        client.host.protocol_error(
                            f"elapsed_ms {elapsed!r} is past the {sent_ms} ms of audio the "
                            "session has had: times are bounded by it", event)
                elapsed = sent_ms
            self._max_elapsed = max(self._max_elapsed, int(elapsed))
            return self._session_base // BYTES_PER_MS + int(elapsed)
        return self._session_base // BYTES_PER_MS + self._max_elapsed

    def _stale(self, cues: _Cues, ms: int) -> bool:
        """A delta replayed for audio whose cues are already final (after a new session)."""
        return self._sessions > 1 and cues.pending is None and ms < cues.closed_ms

    def _on_output_delta(self, event: Event) -> None:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        with self._link.changed:
            ms = self._time(event)
            if self._stale(self._text, ms):
                return
            changed = self._text.add(delta, ms)
            self._trim_ring()
            self._link.changed.notify_all()
        self._deliver(changed)

    def _on_input_delta(self, event: Event) -> None:
        delta = event.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        with self._link.changed:
            ms = self._time(event)
            if self._stale(self._source, ms):
                return
            changed = self._source.add(delta, ms)
            self._link.changed.notify_all()
        self._deliver(changed)

    def _on_audio_delta(self, event: Event) -> None:
        data = event.get("delta")
        if not isinstance(data, str):
            return
        try:
            pcm = base64.b64decode(data, validate=True)
        except ValueError:
            if self._link.client is not None:
                self._link.client.host.protocol_error(
                    f"delta is not base64 ({len(data)} chars); the audio is skipped", event)
            return
        with self._link.changed:
            ms = self._time(event)
            self._audio_chunks += 1
            if self._keep_audio:
                self._audio += pcm
        if self._on_audio is not None:
            self._link.call(self._on_audio, pcm, ms)

    def _on_session_closed(self, event: Event) -> None:
        with self._link.changed:
            self._ended = True
            self._link.changed.notify_all()

    def _on_error(self, event: Event) -> None:
        err = event.get("error")
        if not isinstance(err, Mapping):
            return
        with self._link.changed:
            self._errors.append(dict(err))
            self._link.changed.notify_all()
        code = err.get("code")
        if code != "session_expired":
            logger.warning("translation server error: %s", err.get("message"))

    def _deliver(self, cues: List[Cue]) -> None:
        """Call ``on_text`` / ``on_source_text`` (no lock held; in order)."""
        for cue in cues:
            fn = self._on_source_text if cue.source else self._on_text
            if fn is not None:
                self._link.call(fn, cue)


def _keepalive_silence(wall_s: float, fed: int, slack_ms: int = FRAME_MS) -> int:
    """Bytes of keep-alive silence to add when ``wall_s`` seconds have passed since the
    stream started and ``fed`` bytes were fed: whole frames, as many as the wall clock is
    ahead of the audio, once that is more than ``slack_ms``; 0 otherwise. After adding them,
    the audio is less than one frame behind the wall clock, however late the call came."""
    lag = int(wall_s * 1000) * BYTES_PER_MS - fed
    if lag <= slack_ms * BYTES_PER_MS:
        return 0
    return lag - lag % FRAME_BYTES


class _Schedule:
    """Ticks every ``period`` seconds on a fixed grid from the first call: :meth:`wait` says
    how long to sleep until the next tick; ticks missed while the thread could not run are
    not made up one by one (the next tick is the next grid point in the future)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._next: Optional[float] = None

    def wait(self, now: float) -> float:
        if self._next is None:
            self._next = now
        self._next += self.period
        if self._next <= now:  # late: skip to the grid point after now
            self._next += (int((now - self._next) / self.period) + 1) * self.period
        return self._next - now


def _send_frame(client: RealtimeClient, chunk: bytes) -> None:
    """One ``session.input_audio_buffer.append`` of ``chunk``, counted once sent."""
    event_id = new_event_id()
    client.host.send_prebuilt(_APPEND, event_id, append_frame(chunk, event_id, _APPEND))
    client.host.count("audio_bytes_sent", len(chunk))


def translate_file(
    path: Union[str, os.PathLike],
    *,
    to: str = "es",
    realtime: bool = False,
    speech: bool = False,
    timeout: Optional[float] = None,
    **options: Any,
) -> Translation:
    """Translate the speech of a WAV file and return its :class:`Translation`. Blocking; any
    thread but a dispatcher's.

    The file is streamed as fast as the server accepts it (or paced like a microphone with
    ``realtime=True``); then ``session.close`` flushes the translation.

    Args:
        path: an audio file (WAV at any rate; other formats with PyAV, see
            :class:`realtime_sync.audio.FileSource`).
        to: target language.
        realtime: pace the audio in real time.
        speech: keep the translated speech in :attr:`Translation.audio`.
        timeout: give up (``TimeoutError``) after this many seconds in all.
        **options: :class:`Translator` options (``model``, ``source_transcript``, ``url``, ...).
    """
    from .audio import FileSource

    deadline = Deadline(timeout)
    source = FileSource(str(path), realtime=realtime)
    options.setdefault("keep_audio", speech)
    try:
        with Translator(to=to, **options) as tr:
            while True:
                chunk = source.read(24 * FRAME_MS)
                if not chunk:
                    break
                tr.feed(chunk)
                if deadline.expired():
                    raise TimeoutError(f"translate_file: {path} not done in {timeout} s")
            left = deadline.remaining()
            remaining = None if left is None else max(0.1, left)
            return tr.finish(timeout=remaining)
    finally:
        source.close()


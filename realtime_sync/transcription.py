"""Live transcription: :class:`Transcriber`, :class:`Segment`, :class:`Transcript`, and
:func:`transcribe_file`.

A :class:`Transcriber` owns one transcription session (``?intent=transcription``) and turns the
server's events into ordered segments. Order comes from
``input_audio_buffer.committed.previous_item_id`` (never from arrival order: completions of
different turns may arrive out of order, and streaming models send deltas before
``committed``). Every byte fed is kept until the turn that contains it has completed, so a
dropped connection, a reconnect or a planned session rollover loses no audio: what was not
yet transcribed is replayed into the new session.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Union,
)

from . import models
from ._core.dispatch import Marshal
from ._core.wait import Deadline, wait_until
from ._features.audio_files import open_audio, wav_format
from ._features.drops import DropLedger
from ._features.live_session import SessionLink, check_options
from ._features.ring import AudioRing, audio_bytes
from ._features.turn_modes import MIN_COMMIT_BYTES as MIN_COMMIT_BYTES
from ._features.turn_modes import (
    ClientVadTurns,
    ManualTurns,
    ServerVadTurns,
    TurnState,
)
from ._features.turns import TurnDetector, choose_turn_detection, client_vad_options
from .audio._g711 import WIRE_FORMATS, bytes_per_ms
from .client import RealtimeClient
from .errors import AudioError, ConfigurationError, NotConnectedError, TimeoutError
from .events import Event, LibraryEvents, ServerEvents

__all__ = ["Segment", "Transcript", "Transcriber", "transcribe_file", "build_session"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = models.DEFAULT_TRANSCRIPTION_MODEL
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
LOGPROBS_INCLUDE = "item.input_audio_transcription.logprobs"


@dataclass
class Segment:
    """One turn of speech and its transcript.

    Attributes:
        item_id: the server's item id of the committed audio.
        text: the transcript (the text so far while ``final`` is False; ``""`` when failed).
        error: the server's error object for a failed turn, else ``None``.
        start_ms: where the turn starts in all audio fed to the transcriber, when known.
        end_ms: where it ends, when known.
        logprobs: token log-probabilities when ``include_logprobs=True``.
        final: True once the turn completed or failed.
        usage: the server's usage object of the turn, when given.
        languages: the languages the server detected (``completed.languages`` codes, e.g.
            ``["en"]``), when it reports them (``gpt-transcribe``, ``gpt-live-transcribe``).
    """

    item_id: str
    text: str = ""
    error: Optional[Dict[str, Any]] = None
    start_ms: Optional[int] = None
    end_ms: Optional[int] = None
    logprobs: Optional[List[Dict[str, Any]]] = None
    final: bool = False
    usage: Optional[Dict[str, Any]] = None
    languages: Optional[List[str]] = None
    committed: bool = field(default=False, repr=False)
    session: int = field(default=0, repr=False)
    start_pos: Optional[int] = field(default=None, repr=False)
    end_pos: Optional[int] = field(default=None, repr=False)


@dataclass
class Transcript:
    """Final segments in commit order."""

    segments: List[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The segments' texts joined by single spaces (empty turns left out)."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def __str__(self) -> str:
        return self.text


def _string_list(name: str, value: Any) -> List[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of strings, not {value!r}")
    items = list(value)
    if not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigurationError(f"{name} must be a non-empty list of non-empty strings, "
                                 f"not {value!r}")
    return items


def _noise_reduction(value: Union[str, Mapping[str, Any], None]) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    nr = {"type": value} if isinstance(value, str) else value
    if not isinstance(nr, Mapping):
        raise TypeError("noise_reduction must be a string, a dict or None")
    nr = dict(nr)
    if nr.get("type") not in NOISE_REDUCTION_TYPES:
        raise ConfigurationError(
            "noise_reduction must be 'near_field', 'far_field' (or a dict with that 'type' "
            f"and an optional 'strength' from 0 to 1) or None, not {value!r}"
        )
    unknown = set(nr) - {"type", "strength"}
    if unknown:
        raise ConfigurationError(f"noise_reduction takes 'type' and 'strength', not "
                                 f"{sorted(unknown)}")
    strength = nr.get("strength")
    if "strength" in nr and (not isinstance(strength, (int, float)) or isinstance(strength, bool)
                             or not 0.0 <= strength <= 1.0):
        raise ConfigurationError(f"noise_reduction strength must be a number from 0 to 1, "
                                 f"not {strength!r}")
    return nr


def build_session(
    *,
    model: str = DEFAULT_MODEL,
    language: Optional[str] = None,
    prompt: Optional[str] = None,
    turn_detection: Union[str, Mapping[str, Any], None] = "auto",
    noise_reduction: Union[str, Mapping[str, Any], None] = None,
    include_logprobs: bool = False,
    languages: Optional[List[str]] = None,
    keywords: Optional[List[str]] = None,
    delay: Optional[str] = None,
    audio_format: str = "pcm",
) -> Dict[str, Any]:
    """The GA ``session`` object of a transcription ``session.update``.

    Options the model does not take (per :mod:`realtime_sync.models`) are refused here, before
    anything connects; unknown model names pass every check. A model with an announced
    shutdown logs one warning per process.

    Args:
        model: transcription model (default ``gpt-live-transcribe``).
        language: one ISO-639-1 code (``whisper-1``, ``gpt-4o-*``, ``gpt-realtime-whisper``).
        prompt: text that guides the model (not ``gpt-realtime-whisper``).
        turn_detection: ``"auto"`` (server VAD when the model allows it, else the client's
            turn detection), ``"server_vad"``, ``"semantic_vad"``, a dict, or None.
        noise_reduction: ``"near_field"``, ``"far_field"``, a dict ``{"type": ..,
            "strength": 0..1}``, or None.
        include_logprobs: token log-probabilities on deltas and completions.
        languages: possible languages (``gpt-transcribe``, ``gpt-live-transcribe``).
        keywords: words or phrases to expect (``gpt-transcribe``, ``gpt-live-transcribe``);
            none may contain ``<``, ``>``, CR or LF.
        delay: ``"minimal"`` .. ``"xhigh"``: how early partial text appears (streaming models).
        audio_format: ``"pcm"`` (PCM16 24 kHz), ``"pcmu"`` or ``"pcma"`` (G.711 8 kHz).

    Raises:
        ConfigurationError: an unknown value, or an option the model does not take (the
            message names the model and the option).
        TypeError: a value of the wrong type.
    """
    if not isinstance(model, str) or not model:
        raise TypeError("model must be a non-empty string such as 'gpt-live-transcribe'")
    transcription: Dict[str, Any] = {"model": model}
    if language is not None:
        if not isinstance(language, str) or not language:
            raise TypeError("language must be an ISO-639-1 code such as 'en'")
        transcription["language"] = language
    if languages is not None:
        transcription["languages"] = _string_list("languages", languages)
    if language is not None and languages is not None:
        raise ConfigurationError("pass either language or languages, not both")
    if keywords is not None:
        kw = _string_list("keywords", keywords)
        for word in kw:
            bad = sorted({c for c in word if c in "<>\r\n"})
            if bad:
                raise ConfigurationError(
                    f"keyword {word!r} contains {', '.join(map(repr, bad))}: keywords must not "
                    "contain '<', '>', CR or LF")
        transcription["keywords"] = kw
    if prompt is not None:
        if not isinstance(prompt, str):
            raise TypeError("prompt must be a string")
        transcription["prompt"] = prompt
    if delay is not None:
        if delay not in models.DELAYS:
            raise ConfigurationError(
                f"delay must be one of {', '.join(models.DELAYS)}, not {delay!r}")
        transcription["delay"] = delay
    models.check_transcription_options(model, language=language, languages=languages,
                                       keywords=keywords, prompt=prompt, delay=delay)
    if audio_format not in WIRE_FORMATS:
        raise ConfigurationError(
            f"audio_format must be 'pcm', 'pcmu' or 'pcma', not {audio_format!r}")
    td: Optional[Dict[str, Any]]
    turn_detection = choose_turn_detection(model, turn_detection, audio_format)
    if turn_detection is None or client_vad_options(turn_detection) is not None:
        if turn_detection is not None and audio_format != "pcm":
            raise ConfigurationError(
                "client_vad reads PCM16 audio; with G.711 (audio_format="
                f"{audio_format!r}) use a model with server VAD (gpt-transcribe) or "
                "turn_detection=None and commit() yourself")
        td = None  # client_vad: the client commits; the server's VAD is switched off
    elif isinstance(turn_detection, str):
        if turn_detection not in TURN_DETECTION_TYPES:
            raise ConfigurationError(
                f"turn_detection must be 'auto', 'server_vad', 'semantic_vad', 'client_vad', "
                f"a dict or None, "
                f"not {turn_detection!r}"
            )
        td = {"type": turn_detection}
    elif isinstance(turn_detection, Mapping):
        td = dict(turn_detection)
        td.setdefault("type", "server_vad")
        if td["type"] not in TURN_DETECTION_TYPES:
            raise ConfigurationError(
                f"turn_detection type must be 'server_vad' or 'semantic_vad', not {td['type']!r}"
            )
    else:
        raise TypeError("turn_detection must be a string, a dict or None")
    models.check_turn_detection(model, td)
    nr = _noise_reduction(noise_reduction)
    fmt: Dict[str, Any] = {"type": WIRE_FORMATS[audio_format]}
    if audio_format == "pcm":
        fmt["rate"] = 24000
    audio_input: Dict[str, Any] = {
        "format": fmt,
        "transcription": transcription,
        "turn_detection": td,  # None is sent as null: it switches the default server VAD off
    }
    if nr is not None:  # off is the server's default; the strict schema has no null here
        audio_input["noise_reduction"] = nr
    session: Dict[str, Any] = {"type": "transcription", "audio": {"input": audio_input}}
    if include_logprobs:
        session["include"] = [LOGPROBS_INCLUDE]
    models.warn_if_deprecated(model)
    return session


class Transcriber:
    """A live transcription session: feed audio (or listen to a microphone), get ordered text.

    Threads: ``start()``/``__enter__`` connects (the client's two threads); ``listen()`` adds the
    audio thread. Bookkeeping runs on the dispatcher thread; ``on_partial(segment)`` and
    ``on_final(segment)`` run there too, or through ``marshal`` (a GUI's thread) when given.
    ``on_final`` is called once per turn, in commit order. ``feed``, ``commit`` and the
    properties may be called from any thread; ``segments()`` blocks (not on the dispatcher).

    Args:
        model: transcription model (default ``gpt-live-transcribe``; ``gpt-transcribe``,
            ``gpt-realtime-whisper``, ... see :mod:`realtime_sync.models`).
        language: ISO-639-1 code, or None to detect (models that take one language).
        prompt: text that guides the model (vocabulary, style).
        turn_detection: ``"auto"`` (the default: ``"server_vad"`` when the model allows it,
            else ``"client_vad"``), ``"server_vad"``, ``"semantic_vad"``, ``"client_vad"`` (a VAD in
            this process commits each utterance: ``feed()`` runs it; a dict
            ``{"type": "client_vad", "silence_duration_ms": 500, "max_turn_ms": 30000, ...}``
            tunes it, see :class:`realtime_sync._features.turns.ClientVadOptions`), a dict of server
            VAD parameters, or None (you commit turns).
            With G.711 audio, ``"auto"`` means None for models without server VAD.
        noise_reduction: ``"near_field"``, ``"far_field"``, ``{"type": .., "strength": ..}``
            or None.
        include_logprobs: ask for token log-probabilities.
        languages, keywords, delay: more transcription options (see :func:`build_session`);
            options the model does not take raise :class:`ConfigurationError` here.
        audio_format: ``"pcm"`` (PCM16 24 kHz, the default), ``"pcmu"``/``"pcma"`` (G.711
            8 kHz bytes, fed as they are).
        on_partial: ``on_partial(segment)`` on every delta with the text so far of a turn.
        on_final: ``on_final(segment)`` once per turn, in commit order.
        url, api_key: where to connect (see :class:`RealtimeClient`).
        marshal: run ``on_partial``/``on_final`` on another thread (see :mod:`realtime_sync.gui`).
        rollover_margin: seconds before the session's ``expires_at`` at which the transcriber
            moves to a new session at the next quiet moment.
        max_buffer_s: the most untranscribed audio kept for replay (oldest dropped beyond it,
            counted and reported as ``client.audio_dropped``).
        **client_options: passed to :class:`RealtimeClient` (``reconnect``, ``headers``, ...).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        language: Optional[str] = None,
        prompt: Optional[str] = None,
        turn_detection: Union[str, Mapping[str, Any], None] = "auto",
        noise_reduction: Union[str, Mapping[str, Any], None] = None,
        include_logprobs: bool = False,
        on_partial: Optional[Callable[[Segment], Any]] = None,
        on_final: Optional[Callable[[Segment], Any]] = None,
        url: Optional[str] = None,
        api_key: Any = None,
        marshal: Optional[Marshal] = None,
        rollover_margin: float = 60.0,
        max_buffer_s: float = 120.0,
        *,
        languages: Optional[List[str]] = None,
        keywords: Optional[List[str]] = None,
        delay: Optional[str] = None,
        audio_format: str = "pcm",
        **client_options: Any,
    ) -> None:
        self._session = build_session(
            model=model, language=language, prompt=prompt, turn_detection=turn_detection,
            noise_reduction=noise_reduction, include_logprobs=include_logprobs,
            languages=languages, keywords=keywords, delay=delay, audio_format=audio_format,
        )
        check_options({"on_partial": on_partial, "on_final": on_final}, marshal,
                      rollover_margin, max_buffer_s)
        if "session" in client_options or "intent" in client_options:
            raise TypeError("Transcriber builds the session itself; pass its options instead")
        self.model = model
        self.audio_format = audio_format
        self._bpm = bytes_per_ms(audio_format)  # bytes per ms of what feed() takes
        self._on_partial = on_partial
        self._on_final = on_final
        self._client_options = dict(client_options)
        self._client_options.update(url=url, api_key=api_key)
        self._link = SessionLink("transcriber", marshal, rollover_margin, logger)
        drops = DropLedger(logger, "transcriber", "untranscribed", max_buffer_s,
                           lambda n: self._link.report_drop(n, self._bpm), self._bpm)
        # audio bookkeeping (absolute byte positions in everything fed)
        self._ring = AudioRing(int(max_buffer_s * 1000) * self._bpm, drops,
                               whole_samples=audio_format == "pcm")
        self._turn = TurnState()
        self._turns = self._turn_mode(model, turn_detection)
        self.vad = self._turns.vad
        """True under server VAD."""
        self.client_vad = self._turns.client_vad
        """True when this process detects the turns (``turn_detection="client_vad"``)."""
        self.vad_grace = 1.5
        """Seconds :meth:`finish` lets server VAD end a turn before committing the tail."""
        self._session_base = 0
        self._session_index = 0
        # segments
        self._segments: Dict[str, Segment] = {}
        self._order: List[str] = []
        self._final_cursor = 0
        self._finals: List[Segment] = []
        self._untracked = 0  # turns committed without an item_id
        self._error: Optional[BaseException] = None

    def _turn_mode(self, model: str, turn_detection: Any) -> ManualTurns:
        """The turn strategy, chosen once (see :mod:`realtime_sync._features.turn_modes`)."""
        auto = turn_detection == "auto"
        resolved = choose_turn_detection(model, turn_detection, self.audio_format)
        parts = (self._link, self._ring, self._turn, self._trim_ring, self.audio_format,
                 self._bpm)
        client_vad = client_vad_options(resolved)
        if client_vad is not None:
            try:
                detector = TurnDetector(client_vad)
            except AudioError as exc:
                why = (f"{model!r} does not allow server VAD, so the client ends turns; "
                       if auto else "")
                raise AudioError(f"{why}{exc} (or pass turn_detection=None and call "
                                 "commit() yourself)") from None
            return ClientVadTurns(*parts, detector=detector)
        if resolved is None:
            return ManualTurns(*parts)
        return ServerVadTurns(*parts)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def client(self) -> RealtimeClient:
        """The underlying :class:`RealtimeClient` (after ``start()``)."""
        return self._link.require()

    def start(self, timeout: Optional[float] = 15) -> Transcriber:
        """Connect and configure the session; blocks until ``session.updated``.

        Thread: any but a dispatcher thread.

        Raises:
            ConfigurationError: the server rejected the configuration (its message included).
            AuthenticationError, ConnectError, TimeoutError: as :meth:`RealtimeClient.connect`.
        """
        if self._link.client is not None:
            return self
        client = RealtimeClient(intent="transcription", session=self._session,
                                **self._client_options)
        self._link.open(client, (
            (ServerEvents.SESSION_CREATED, self._link.note_expiry),
            (ServerEvents.INPUT_AUDIO_BUFFER_SPEECH_STARTED, self._on_speech_started),
            (ServerEvents.INPUT_AUDIO_BUFFER_SPEECH_STOPPED, self._on_speech_stopped),
            (ServerEvents.INPUT_AUDIO_BUFFER_COMMITTED, self._on_committed),
            (ServerEvents.TRANSCRIPTION_DELTA, self._on_delta),
            (ServerEvents.TRANSCRIPTION_COMPLETED, self._on_completed),
            (ServerEvents.TRANSCRIPTION_FAILED, self._on_failed),
            (ServerEvents.ERROR, self._on_error),
            (LibraryEvents.PROTOCOL_ERROR, self._on_protocol_error),
            (LibraryEvents.CONNECTED, self._on_reconnected),
            (LibraryEvents.RECONNECTED, self._on_reconnected),
            (LibraryEvents.DISCONNECTED, self._link.wake),
        ), timeout)
        return self

    def on(self, type: str, handler: Callable[[Event], Any]) -> Callable[[Event], Any]:  # noqa: A002
        """Register ``handler(event)`` for raw events of the session (``"*"``: all of them, for an
        event log). Works before ``start()`` (so nothing is missed) and after. Any thread.

        The handler runs on the dispatcher thread, or through ``marshal`` when one was given.
        """
        return self._link.on(type, handler)

    def close(self, timeout: float = 5) -> bool:
        """Stop listening, close the session and join every thread. Idempotent; any thread.

        Turns not yet completed are abandoned; use :meth:`finish` first to wait for them.
        """
        link = self._link
        link.stop_streams(timeout / 2)
        link.streams.clear()
        with link.lock:
            link.closed = True
            self._ring.drops.end_episode()
            link.changed.notify_all()
        self._turns.close()
        client = link.client
        return client.close(timeout) if client is not None else True

    def __enter__(self) -> Transcriber:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- audio in -----------------------------------------------------------------------------
    def feed(self, pcm16: bytes) -> None:
        """Feed PCM16 mono 24 kHz audio (or G.711 bytes with ``audio_format="pcmu"/"pcma"``).
        Any thread; never blocks on the network for long.

        The audio is kept until transcribed: while disconnected it waits, and is sent (replayed)
        once the session is back. Under ``client_vad`` the VAD runs here, in the calling thread
        (the audio thread with :meth:`listen`; about 25 ms of CPU per second of audio), one
        feeder at a time; it commits each utterance at its end.

        Raises:
            TypeError, ValueError: not bytes (PCM16: an odd number of bytes).
            NotConnectedError: the transcriber is closed or not started.
        """
        pcm16 = audio_bytes(pcm16, pcm16=self.audio_format == "pcm")
        client = self.client
        if self._link.closed:
            raise NotConnectedError("the transcriber is closed")
        self._turns.feed(pcm16)
        self._turns.pump(client)
        self._link.maybe_rollover(client, self._quiet,
                                  "session expires soon: rolling over to a new session")

    def _start_new_session(self, gen: int) -> None:
        """A new server session: replay everything not yet transcribed (lock held)."""
        ring = self._ring
        first = self._link.generation < 0
        ring.drops.new_session(self._replay_start(), first)
        self._link.generation = gen
        self._session_index += 1
        self._session_base = ring.start
        self._turn.reset(ring.start)
        ring.rewind(ring.start)
        if not first:
            # every turn not yet delivered is transcribed again from the replayed audio:
            # the ring starts at the first of them, so a turn that completed out of order
            # after it is superseded too (its text was never delivered; replaying it once
            # keeps the order and never duplicates text)
            superseded = list(self._order[self._final_cursor:])
            for item_id in superseded:
                self._order.remove(item_id)
                self._segments.pop(item_id, None)
            replay = ring.total - ring.start
            if replay:
                logger.info("new session: replaying %d ms of audio not yet transcribed",
                            replay // self._bpm)

    def _replay_start(self) -> int:
        """Where a new session would have to start replaying: the first audio not yet
        transcribed for sure (lock held)."""
        start = min(self._turn.last_commit, self._ring.sent)
        for item_id in self._order[self._final_cursor:]:
            seg = self._segments.get(item_id)
            if seg is not None and seg.start_pos is not None:
                start = min(start, seg.start_pos)
                break
        if self._turn.fifo:  # commits in flight: their audio is not transcribed yet
            start = min(start, self._turn.fifo[0][1])
        return start

    def _trim_ring(self) -> None:
        """Forget audio whose turns have all completed; bound the rest (lock held).

        Beyond ``max_buffer_s`` the oldest audio leaves the ring; :class:`DropLedger` counts
        what is really lost (audio not sent yet, or later needed by a replay), once."""
        self._ring.trim(self._replay_start())

    def commit(self) -> Optional[str]:
        """Commit the audio fed since the last commit as one turn. Any thread.

        Returns the commit's ``event_id``, or None when less than 100 ms is uncommitted (the
        server would refuse it) or the session is reconnecting (the audio is kept and
        replayed; commit again later). Under ``client_vad`` it ends the turn in progress now
        (None when no speech is pending: silence is never committed).
        """
        return self._turns.commit(self.client)

    def listen(self, device: Union[int, str, None] = None, chunk_ms: int = 50) -> Any:
        """Stream a microphone into this transcriber on the ``realtime-sync-audio`` thread.

        Returns the :class:`realtime_sync.audio.AudioStream` handle (stopped by ``close()``).

        Raises:
            AudioError: no usable input device (the message says how to list devices).
        """
        self.client  # noqa: B018 - raises when not started
        self._check_pcm_source("listen()")
        return self._link.listen(self.feed, device, chunk_ms)

    def stream_source(self, source: Any, chunk_ms: int = 50) -> Any:
        """Stream any :class:`realtime_sync.audio.AudioSource` into this transcriber."""
        self.client  # noqa: B018
        self._check_pcm_source("stream_source()")
        return self._link.stream(self.feed, source, chunk_ms)

    def _check_pcm_source(self, what: str) -> None:
        if self.audio_format != "pcm":
            raise ConfigurationError(
                f"{what} streams PCM16 audio sources; this transcriber takes "
                f"{self.audio_format!r} (G.711) bytes: feed() them, or use audio_format='pcm'")

    # -- results ------------------------------------------------------------------------------
    @property
    def transcript(self) -> Transcript:
        """The final segments so far, in commit order (a snapshot; any thread)."""
        with self._link.lock:
            return Transcript(list(self._finals))

    @property
    def pending(self) -> int:
        """Turns committed (or being committed) and not yet completed or failed."""
        with self._link.lock:
            return len(self._order) - self._final_cursor + len(self._turn.fifo)

    @property
    def uncommitted_ms(self) -> int:
        """Audio sent to the current session and not yet committed, in ms."""
        with self._link.lock:
            return (self._ring.sent - self._turn.last_commit) // self._bpm

    @property
    def dropped_ms(self) -> int:
        """Audio that will never be transcribed because the replay buffer (``max_buffer_s``)
        overflowed: audio fed while the session could not take it, or audio a new session
        had to replay and the buffer no longer held. Audio the session already had and that
        was then transcribed is never counted. Equals ``client.stats()["audio_dropped"]`` of
        the transcriber's client (in bytes) and the sum of its ``client.audio_dropped``
        events."""
        return self._ring.drops.total // self._bpm

    def segments(self, timeout: Optional[float] = None) -> Iterator[Segment]:
        """A blocking iterator of final segments in commit order, from the first one.

        Ends when the transcriber is closed (after the last final segment) or when no new
        segment comes for ``timeout`` seconds. Thread: any but the dispatcher thread.
        """
        client = self.client
        client.host.check_blocking_call("Transcriber.segments()")
        link = self._link
        index = 0
        while True:
            with link.changed:

                def ready(i: int = index) -> bool:
                    if i < len(self._finals):
                        return True
                    if self._error is not None:
                        raise self._error
                    if client.state == "disconnected" and not link.closed:
                        raise NotConnectedError(
                            f"the session ended for good ({client.host.not_connected_message()});"
                            f" {self.pending} turns were not transcribed")
                    return link.closed or client.state == "closed"

                wait_until(link.changed, ready, Deadline(timeout))
                if index >= len(self._finals):
                    return  # closed, or no segment within ``timeout``
                segment = self._finals[index]
            index += 1
            yield segment

    def finish(self, timeout: Optional[float] = None) -> Transcript:
        """Commit what the server has not committed yet, then wait until every committed turn
        has completed or failed. Returns the transcript. Thread: not the dispatcher's.

        Raises:
            TimeoutError: turns still pending after ``timeout`` seconds.
            NotConnectedError: the session ended for good first.
        """
        client = self.client
        client.host.check_blocking_call("Transcriber.finish()")
        link, ring, turn = self._link, self._ring, self._turn
        deadline = Deadline(timeout)
        grace: Optional[Deadline] = None
        self._turns.end_turn()
        while True:
            self._turns.pump(client)
            with link.changed:
                if self._error is not None:
                    raise self._error
                settled = client.connected and ring.sent == ring.total and not turn.fifo
                uncommitted = ring.sent - turn.last_commit
                if settled and uncommitted < 100 * self._bpm \
                        and self._final_cursor == len(self._order):
                    ring.drops.end_episode()
                    return Transcript(list(self._finals))
            if settled and uncommitted >= 100 * self._bpm:
                grace = self._turns.settle(client, grace, self.vad_grace)
                continue
            with link.changed:
                if client.state in ("closed", "disconnected"):
                    raise NotConnectedError(
                        f"the session ended with {self.pending} turns pending")
                if deadline.expired():
                    raise TimeoutError(f"{self.pending} turns still pending after {timeout} s")
                link.changed.wait(deadline.slice())

    # -- rollover -----------------------------------------------------------------------------
    def _quiet(self) -> bool:
        """No speech, turn or commit in progress: a good moment to roll over (lock held)."""
        return (self._turn.in_speech is None and not self._turns.in_turn and not self._turn.fifo
                and self._final_cursor == len(self._order))

    # -- event handlers (dispatcher thread) -----------------------------------------------------
    def _segment(self, item_id: str) -> Segment:
        seg = self._segments.get(item_id)
        if seg is None:
            seg = self._segments[item_id] = Segment(item_id=item_id, session=self._session_index)
        return seg

    def _on_reconnected(self, event: Event) -> None:
        """``client.connected`` / ``client.reconnected`` (dispatcher thread): every event of
        the previous session has been handled by now, so switch to the new one here. The
        next ``feed()`` / ``finish()`` replays (handlers never wait on the network)."""
        with self._link.changed:
            gen = self._link.new_session()
            if gen is not None:
                self._start_new_session(gen)
            self._link.changed.notify_all()

    def _ms_to_pos(self, ms: Any) -> Optional[int]:
        if not isinstance(ms, (int, float)):
            return None
        return self._session_base + int(ms) * self._bpm

    def _on_speech_started(self, event: Event) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return
        with self._link.lock:
            self._turn.in_speech = item_id
            seg = self._segment(item_id)
            pos = self._ms_to_pos(event.get("audio_start_ms"))
            if pos is not None:
                seg.start_ms = pos // self._bpm
            self._turn.vad_start[item_id] = self._turn.last_commit

    def _on_speech_stopped(self, event: Event) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return
        with self._link.lock:
            if self._turn.in_speech == item_id:
                self._turn.in_speech = None
            seg = self._segment(item_id)
            pos = self._ms_to_pos(event.get("audio_end_ms"))
            if pos is not None:
                seg.end_ms = pos // self._bpm
                seg.end_pos = min(pos, self._ring.sent)

    def _on_committed(self, event: Event) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or not item_id:
            self._untracked_turn(event)
            return
        prev = event.get("previous_item_id")
        turn = self._turn
        with self._link.changed:
            seg = self._segment(item_id)
            if seg.committed:
                return
            seg.committed = True
            if turn.in_speech == item_id:
                turn.in_speech = None
            if seg.end_pos is not None and item_id in turn.vad_start:
                # committed by server VAD at speech_stopped
                seg.start_pos = turn.vad_start.pop(item_id)
                turn.last_commit = max(turn.last_commit, seg.end_pos)
            elif turn.fifo:
                _, start, end = turn.fifo.pop(0)
                turn.vad_start.pop(item_id, None)
                seg.start_pos, seg.end_pos = start, end
                if seg.start_ms is None:
                    seg.start_ms = start // self._bpm
                seg.end_ms = end // self._bpm
            else:
                sent = self._ring.sent
                seg.start_pos = turn.last_commit
                seg.end_pos = sent
                turn.last_commit = sent
            self._insert_in_order(item_id, prev)
            ready = self._advance_finals()
        self._deliver_finals(ready)

    def _untracked_turn(self, event: Event) -> None:
        """``committed`` without a usable ``item_id``: no transcript can ever be matched to
        the turn. Report it, and end the turn as failed (in its place in the order) so that
        :meth:`finish` does not wait for it."""
        client = self._link.client
        if client is not None:
            client.host.protocol_error(
                f"item_id {event.get('item_id')!r} is not an item id: the turn cannot be"
                " tracked (reported as a failed segment)", event)
        turn = self._turn
        with self._link.changed:
            self._untracked += 1
            item_id = f"untracked_{self._untracked}"
            seg = self._segment(item_id)
            seg.committed = True
            seg.final = True
            seg.error = {"type": "protocol_error", "code": "untracked_turn",
                         "message": "the server committed the turn without an item_id"}
            if turn.fifo:
                _, seg.start_pos, seg.end_pos = turn.fifo.pop(0)
            else:
                seg.start_pos, seg.end_pos = turn.last_commit, self._ring.sent
                turn.last_commit = self._ring.sent
            seg.start_ms = seg.start_pos // self._bpm
            seg.end_ms = seg.end_pos // self._bpm
            self._insert_in_order(item_id, event.get("previous_item_id"))
            ready = self._advance_finals()
            self._link.changed.notify_all()
        self._deliver_finals(ready)

    def _insert_in_order(self, item_id: str, prev: Any) -> None:
        order = self._order
        if isinstance(prev, str) and prev in order:
            index = order.index(prev) + 1
            # keep after anything already chained behind prev in this session
            order.insert(index, item_id)
        else:
            order.append(item_id)

    def _on_delta(self, event: Event) -> None:
        item_id = event.get("item_id")
        delta = event.get("delta")
        if not isinstance(item_id, str) or not isinstance(delta, str):
            return
        with self._link.lock:
            seg = self._segment(item_id)
            if seg.final:
                return
            seg.text += delta
            if isinstance(event.get("logprobs"), list):
                seg.logprobs = (seg.logprobs or []) + list(event["logprobs"])
            snapshot = Segment(**{**seg.__dict__})
        if self._on_partial is not None:
            self._link.call(self._on_partial, snapshot)

    def _on_completed(self, event: Event) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return
        with self._link.changed:
            seg = self._segment(item_id)
            transcript = event.get("transcript")
            if isinstance(transcript, str):
                seg.text = transcript
            if isinstance(event.get("logprobs"), list):
                seg.logprobs = list(event["logprobs"])
            usage = event.get("usage")
            seg.usage = dict(usage) if isinstance(usage, Mapping) else None
            seg.languages = _languages(event.get("languages"))
            seg.final = True
            ready = self._advance_finals()
        self._deliver_finals(ready)

    def _on_failed(self, event: Event) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            return
        with self._link.changed:
            seg = self._segment(item_id)
            err = event.get("error")
            seg.error = dict(err) if isinstance(err, Mapping) else {"message": str(err)}
            seg.text = ""
            seg.final = True
            logger.warning("transcription of %s failed: %s", item_id,
                           (str(seg.error.get("message") or "").strip().splitlines() or [""])[0])
            ready = self._advance_finals()
        self._deliver_finals(ready)

    def _on_protocol_error(self, event: Event) -> None:
        """A frame that did not parse, about a turn (``client.protocol_error`` with the
        ``event_type`` and ``item_id`` read from it): an unreadable ``completed`` or
        ``failed`` ends the turn as failed and an unreadable ``committed`` commits it, so
        that the turns after it are not held back (they are delivered in order)."""
        item_id, type_ = event.get("item_id"), event.get("event_type")
        if not isinstance(item_id, str) or not item_id:
            return
        if type_ == ServerEvents.INPUT_AUDIO_BUFFER_COMMITTED:
            self._on_committed(Event(type=type_, item_id=item_id))
        elif type_ in (ServerEvents.TRANSCRIPTION_COMPLETED, ServerEvents.TRANSCRIPTION_FAILED):
            seg = self._segments.get(item_id)
            if seg is not None and seg.final:
                return
            self._on_failed(Event(type=ServerEvents.TRANSCRIPTION_FAILED, item_id=item_id, error={
                "type": "protocol_error", "code": "unparsable_event",
                "message": f"the server's {type_} event could not be read: "
                           f"{event.get('message')}"}))

    def _on_error(self, event: Event) -> None:
        err = event.get("error")
        if not isinstance(err, Mapping):
            return
        event_id = err.get("event_id")
        fifo = self._turn.fifo
        with self._link.changed:
            for i, (eid, _start, _end) in enumerate(fifo):
                if eid == event_id:
                    # the server refused our commit (e.g. its VAD had committed it already)
                    del fifo[i]
                    break
            self._link.changed.notify_all()

    def _advance_finals(self) -> List[Segment]:
        """Move final segments to the transcript in commit order (lock held); returns them
        for :meth:`_deliver_finals`, which calls ``on_final`` after the lock is released."""
        ready: List[Segment] = []
        while self._final_cursor < len(self._order):
            seg = self._segments[self._order[self._final_cursor]]
            if not seg.final:
                break
            self._final_cursor += 1
            self._finals.append(seg)
            ready.append(seg)
        if ready:
            self._trim_ring()
            self._link.changed.notify_all()
        return ready

    def _deliver_finals(self, ready: List[Segment]) -> None:
        """Call ``on_final`` (dispatcher thread, no lock held: a slow callback never blocks
        ``feed()``); handlers run one at a time, so the order is kept."""
        if self._on_final is not None:
            for seg in ready:
                self._link.call(self._on_final, seg)


def _languages(value: Any) -> Optional[List[str]]:
    """``completed.languages`` (``[{"code": "en"}, ...]``) as a list of codes, or None."""
    if not isinstance(value, list):
        return None
    codes = [v.get("code") if isinstance(v, Mapping) else v for v in value]
    return [c for c in codes if isinstance(c, str)]


def transcribe_file(
    path: Union[str, os.PathLike],
    *,
    realtime: bool = False,
    progress: Optional[bool] = None,
    timeout: Optional[float] = None,
    chunk_ms: int = 100,
    **options: Any,
) -> Transcript:
    """Transcribe an audio or video file and return its :class:`Transcript`. Blocking; any
    thread but a dispatcher's.

    The file is streamed as fast as the server accepts it (or paced like a microphone with
    ``realtime=True``). At the end, audio the server has not committed is committed (under
    server VAD too), and the call returns when every committed turn has completed or failed.

    Args:
        path: a WAV file (any rate, 8–32 bit, mono or stereo), or any audio or video file
            PyAV decodes (MP3, M4A, FLAC, OGG/Opus, WebM, mp4, mkv, ...; the ``audio`` extra).
            A mono 8 kHz G.711 WAV (μ-law/A-law) is sent as it is (``audio_format`` follows
            the file).
        realtime: pace the audio in real time.
        progress: a tqdm progress bar; None shows one on a terminal for files over 30 s.
        timeout: give up (``TimeoutError``) after this many seconds in all.
        chunk_ms: audio per append.
        **options: :class:`Transcriber` options (``model``, ``language``, ``url``, ...).
    """
    from ._features.progress import progress_bar

    deadline = Deadline(timeout)
    wav_format(path, options)
    user_final = options.pop("on_final", None)
    bar: Any = None

    def on_final(segment: Segment) -> None:
        if bar is not None:
            bar.to_ms(segment.end_ms)
        if user_final is not None:
            user_final(segment)

    from ._features.file_turns import FALLBACK_TURN_S, QuietCutter, feed_cut, file_turns

    cutter = None  # the core install: no client VAD, so bounded turns cut at quiet points
    if file_turns(options.get("model", DEFAULT_MODEL), options.get("turn_detection", "auto"),
                  options.get("audio_format", "pcm")):
        options["turn_detection"] = None
        cutter = QuietCutter(FALLBACK_TURN_S)
    # bad options fail here, before the file is read
    transcriber = Transcriber(on_final=on_final, **options)
    source, frames = open_audio(path, realtime, chunk_ms, options)
    declared = getattr(source, "declared_duration", None)
    if declared:
        logger.warning("%s is truncated: its header says %.1f s of audio but it holds %.1f s",
                       path, declared, float(getattr(source, "duration", 0.0) or 0.0))
    try:
        # the bar shows audio transcribed (the end of each completed turn), in whole ms
        bar = progress_bar(float(getattr(source, "duration", 0.0) or 0.0) * 1000, progress)
        with transcriber as tr:
            while True:
                chunk = source.read(frames)
                feed_cut(tr, cutter, chunk)
                if not chunk:
                    break
                if deadline.expired():
                    raise TimeoutError(f"transcribe_file: {path} not done in {timeout} s")
            left = deadline.remaining()
            remaining = None if left is None else max(0.1, left)
            transcript = tr.finish(timeout=remaining)
            if bar is not None:
                bar.done()
            return transcript
    finally:
        if bar is not None:
            bar.close()
        source.close()

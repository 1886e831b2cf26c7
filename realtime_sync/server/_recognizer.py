"""Speech recognisers for the local server: the :class:`Recognizer` protocol and a scripted one.

A recogniser turns the PCM16 mono 24 kHz little-endian audio of one committed item into text
deltas. The server calls :meth:`Recognizer.transcribe` on one of the session's worker threads
(``rs-server-worker-*``), never on the connection's read loop, and sends one
``conversation.item.input_audio_transcription.delta`` per yielded string, then ``.completed``
(or ``.failed`` if the call or the iteration raises).

Optional extras a recogniser may offer (looked up with ``getattr``):

* ``partial(audio, *, model, language, prompt) -> str`` and ``streaming``: the server then
  asks for a hypothesis of the item still being spoken every ``partial_interval_ms`` of new
  audio and sends its new words as deltas before the item is committed, like
  ``gpt-live-transcribe``. ``streaming = True`` does so for every model, ``None`` only for the
  models that stream before commit in :mod:`realtime_sync.models` (``gpt-live-transcribe``,
  ``gpt-realtime-whisper``), False never;
* ``concurrency: int``: how many items of one session may be transcribed at the same time
  (default 4; set 1 for an engine that cannot run in parallel);
* ``context = True``: ``transcribe`` and ``partial`` also get ``context=``, the transcript of
  the session's previous user item (or None);
* ``speech_start = True``: with server VAD, ``partial`` also gets ``speech_start=``, the bytes
  of its audio before the turn's speech (padding kept), and is only called while the VAD
  hears speech;
* ``parallel_partials = True``: ``partial`` runs on a worker of its own beside
  ``transcribe`` (the recogniser must keep finals first itself, as the offline engine's
  scheduler does); otherwise partials and finals share the session's workers in order;
* the iterator ``transcribe`` returns may carry ``languages`` (ISO-639-1 codes): the server
  reports them on ``.completed`` as ``languages: [{"code": ...}]``.
"""

from __future__ import annotations

import re
import threading
import time
from typing import (
    Callable,
    Iterator,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Union,
    runtime_checkable,
)

from .._core.wire import BYTES_PER_MS

__all__ = [
    "Recognizer",
    "StreamingRecognizer",
    "TranscriptionError",
    "ScriptedRecognizer",
    "describe_audio",
    "split_words",
]


@runtime_checkable
class Recognizer(Protocol):
    """Turns one committed item's audio into text deltas."""

    def transcribe(
        self, audio: bytes, *, model: str, language: Optional[str], prompt: Optional[str]
    ) -> Iterator[str]:
        """Yield text deltas; their concatenation is the transcript. Raising -> ``.failed``.

        Called on a server worker thread (``rs-server-worker-*``); may block.
        """
        ...


class StreamingRecognizer(Recognizer, Protocol):
    """A recogniser that can also guess the text of an item that is still being spoken."""

    streaming: bool

    def partial(
        self, audio: bytes, *, model: str, language: Optional[str], prompt: Optional[str]
    ) -> str:
        """Return the current hypothesis for the uncommitted audio so far (a worker thread)."""
        ...


class TranscriptionError(Exception):
    """Raise from a recogniser to choose the ``code`` and ``param`` of the ``.failed`` event."""

    def __init__(self, message: str, code: str = "transcription_failed",
                 param: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


_WORDS = re.compile(r"\s*\S+\s*$|\s*\S+")


def split_words(text: str) -> List[str]:
    """Split ``text`` into word deltas whose concatenation is ``text`` (leading spaces kept)."""
    if not text:
        return []
    parts = _WORDS.findall(text)
    rest = len(text) - sum(len(p) for p in parts)
    if rest > 0:  # only whitespace (or trailing whitespace not captured)
        parts.append(text[len(text) - rest:])
    return parts


def describe_audio(audio: bytes) -> str:
    """The default scripted transcript: ``"<N> ms of audio"`` for ``audio`` (PCM16 24 kHz)."""
    return f"{len(audio) // BYTES_PER_MS} ms of audio"


Script = Union[str, BaseException]


class ScriptedRecognizer:
    """A recogniser whose answers a test chooses.

    Items are numbered 0, 1, 2, ... in the order their transcription starts (the server starts
    them in commit order). For item ``i`` the transcript is ``transcripts[i]`` (a string, or an
    exception instance to make that item fail), or ``transcripts(audio)`` when a callable is
    given; past the end of the list, and when nothing is scripted, it is
    :func:`describe_audio` (``"<N> ms of audio"``), so any audio works.

    Args:
        transcripts: list of per-item transcripts/exceptions, or ``callable(audio) -> str``.
        delays: seconds to wait before item ``i`` yields anything (``delays[i]``), or a mapping
            ``{i: seconds}``; lets completions of different turns arrive out of order.
        failures: item indices that fail (``TranscriptionError``), or ``{index: message}``.
        delta_interval: seconds between two deltas of one item.
        streaming: deltas of the item being spoken are sent before it is committed (see
            :meth:`partial`): True for every model, None (default) for the models that do so
            at OpenAI (``gpt-live-transcribe``, ``gpt-realtime-whisper``), False never.
        early_words: in streaming mode, how many words come before the commit (default: all
            but the last word).

    Thread-safe; one instance may serve several sessions (numbering is shared).
    """

    concurrency = 4

    def __init__(
        self,
        transcripts: Union[Sequence[Script], Callable[[bytes], str], None] = None,
        *,
        delays: Union[Sequence[float], Mapping[int, float], None] = None,
        failures: Union[Sequence[int], Mapping[int, str], None] = None,
        delta_interval: float = 0.0,
        streaming: Optional[bool] = None,
        early_words: Optional[int] = None,
    ) -> None:
        self._script = transcripts
        if isinstance(delays, Mapping):
            self._delays = dict(delays)
        else:
            self._delays = dict(enumerate(delays or ()))
        if isinstance(failures, Mapping):
            self._failures = dict(failures)
        else:
            self._failures = {i: f"scripted failure of item {i}" for i in failures or ()}
        self.delta_interval = delta_interval
        self.streaming = streaming
        self.early_words = early_words
        self._lock = threading.Lock()
        self._next = 0
        self.calls: List[bytes] = []
        """Audio of every :meth:`transcribe` call, in call order."""

    def _text_for(self, index: int, audio: bytes) -> Script:
        if index in self._failures:
            return TranscriptionError(self._failures[index])
        script = self._script
        if callable(script):
            return script(audio)
        if script is not None and index < len(script):
            return script[index]
        return describe_audio(audio)

    def transcribe(
        self, audio: bytes, *, model: str, language: Optional[str], prompt: Optional[str]
    ) -> Iterator[str]:
        """Claim the next item number now and return an iterator over its deltas.

        Called on a server worker thread. The item number is taken when this method is called
        (not when the iterator is first advanced), so numbering follows call order.
        """
        with self._lock:
            index = self._next
            self._next += 1
            self.calls.append(bytes(audio))
        text = self._text_for(index, audio)
        delay = float(self._delays.get(index, 0.0))
        return self._deltas(text, delay)

    def _deltas(self, text: Script, delay: float) -> Iterator[str]:
        if delay > 0:
            time.sleep(delay)
        if isinstance(text, BaseException):
            raise text
        for n, word in enumerate(split_words(text)):
            if n and self.delta_interval > 0:
                time.sleep(self.delta_interval)
            yield word

    def partial(
        self, audio: bytes, *, model: str, language: Optional[str], prompt: Optional[str]
    ) -> str:
        """Hypothesis for the item being spoken: the first ``early_words`` words of its script.

        Called on a server worker thread, only when the session streams (see ``streaming``).
        The item is the one the next :meth:`transcribe` call will claim.
        """
        with self._lock:
            index = self._next
        text = self._text_for(index, audio)
        if isinstance(text, BaseException) or self.streaming is False:
            return ""
        words = split_words(text)
        keep = self.early_words if self.early_words is not None else max(len(words) - 1, 0)
        if callable(self._script) or (self._script is None or index >= len(self._script)):
            # A transcript computed from the audio so far is not a prefix of the final one.
            keep = 0
        return "".join(words[:keep])

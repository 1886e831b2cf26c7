"""Caption writers: SRT, WebVTT and JSONL, written live cue by cue as turns complete.

Each writer flushes after every cue so another program can tail the file::

    with rs.captions.open_writer("live.srt") as out:
        tr = rs.Transcriber(on_final=out.write)

Writers are thread-safe: ``write`` may be called from any thread (a handler included).

SRT and WebVTT cues have at most :data:`MAX_LINES` lines of at most :data:`LINE_WIDTH`
characters (``max_line_length``) and never break inside a word: a long turn becomes several
consecutive cues, its time shared out by length, cut preferably at sentence ends, then at
clause ends, never leaving a short tail or a line ending in "the". A cue shorter than
``min_cue_ms`` (:data:`MIN_CUE_MS`) is held back and joins the next turn when that one starts
within a second and has the same speaker (the two are cut into cues anew), else it is
lengthened (the next cue then starts after it: cues never overlap). Turns without words are
skipped (JSONL keeps failed turns).

Captions stay valid whatever the text holds: in SRT, WebVTT and text, line breaks and other
whitespace runs become one space, control characters are dropped and lone surrogates become
U+FFFD, so a cue's payload never has a blank line; ``-->`` never appears in a payload (SRT
writes ``->``, WebVTT escapes ``&``, ``<`` and ``>`` as character references). JSONL keeps the
text exactly (escaped by JSON; lone surrogates and Unicode line separators as ``\\uXXXX``).
"""

from __future__ import annotations

import io
import json
import os
import re
import textwrap
import threading
from typing import IO, Any, Dict, Iterable, List, Optional, Union

__all__ = [
    "CaptionWriter",
    "SrtWriter",
    "VttWriter",
    "JsonlWriter",
    "TextWriter",
    "open_writer",
    "render",
    "format_for_path",
    "split_cues",
    "FORMATS",
    "FORMAT_EXTENSIONS",
]

FORMATS = ("text", "srt", "vtt", "jsonl")
LINE_WIDTH = 42
MAX_LINES = 2
MIN_CUE_MS = 1000
"""Default shortest cue (ms) of SRT/WebVTT: a shorter one is merged or lengthened."""
MERGE_GAP_MS = 1000
"""A short cue merges with the next turn's only when that one starts within this gap."""
MS_PER_CHAR = 60
ESTIMATE_MS = 800
"""The least time given to a turn that comes without times."""


# str.translate tables: control characters that are not whitespace are dropped (whitespace
# ones become separators in _one_line), lone surrogates (unencodable) become U+FFFD
_UNSAFE: Dict[int, Optional[int]] = {
    c: None for c in (*range(0x20), *range(0x7F, 0xA0)) if not chr(c).isspace()}
_UNSAFE.update({c: 0xFFFD for c in range(0xD800, 0xE000)})
# characters JSON leaves raw that would break a JSON Lines file (unencodable, or line breaks
# for readers that split on Unicode line boundaries): written as \uXXXX escapes
_JSONL_ESCAPES = {c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029, *range(0xD800, 0xE000))}
_ARROW = re.compile(r"-{2,}>")


def _one_line(text: str) -> str:
    """``text`` as one safe line: control characters dropped, lone surrogates replaced,
    every whitespace run (line breaks included) one space."""
    return " ".join(text.translate(_UNSAFE).split())


def _timestamp(ms: int, sep: str) -> str:
    ms = max(0, int(ms))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


class CaptionWriter:
    """Base class: writes segments (anything with ``text``, ``start_ms``, ``end_ms``) as cues.

    Args:
        target: a path, or an open text file (not closed by :meth:`close`).
        max_line_length: longest line of an SRT/WebVTT cue, in characters (>= 10).
        min_cue_ms: shortest SRT/WebVTT cue; a shorter one is merged into the next turn's cue
            or lengthened (0: cues keep the turns' own times).
    """

    extension = ".txt"

    def __init__(self, target: Union[str, os.PathLike[str], IO[str]], *,
                 max_line_length: int = LINE_WIDTH, min_cue_ms: int = MIN_CUE_MS) -> None:
        if not isinstance(max_line_length, int) or max_line_length < 10:
            raise ValueError(f"max_line_length must be an integer >= 10, not {max_line_length!r}")
        if not isinstance(min_cue_ms, (int, float)) or min_cue_ms < 0:
            raise ValueError(f"min_cue_ms must be >= 0, not {min_cue_ms!r}")
        self.max_line_length = max_line_length
        self.min_cue_ms = int(min_cue_ms)
        if isinstance(target, (str, os.PathLike)):
            # the writer owns the file until close(): it is written cue by cue
            self._file: IO[str] = open(target, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            self._owns = True
        elif isinstance(target, io.TextIOBase) or hasattr(target, "write"):
            self._file = target
            self._owns = False
        else:
            raise TypeError("target must be a path or a text file")
        self._lock = threading.Lock()
        self.cues = 0
        self._last_end = 0
        self._header_written = False

    def _times(self, segment: Any) -> tuple[int, int]:
        start = getattr(segment, "start_ms", None)
        end = getattr(segment, "end_ms", None)
        if start is None or start < self._last_end:
            # no time, or VAD prefix padding reaching into the previous cue: cues never overlap
            start = self._last_end
        text = getattr(segment, "text", "") or ""
        if end is None or end <= start:
            end = start + max(ESTIMATE_MS, MS_PER_CHAR * len(text))
        return int(start), int(end)

    def write(self, segment: Any) -> None:
        """Write one segment as one or more cues and flush. Turns without a word (empty,
        punctuation only, failed) are skipped; JSONL keeps failed turns."""
        text = self._clean(getattr(segment, "text", "") or "")
        with self._lock:
            if not self._header_written:
                self._header_written = True
                self._header()
            if not any(c.isalnum() for c in text):
                if not (self._keeps_failed() and getattr(segment, "error", None)):
                    return
                text = ""
            start, end = self._times(segment)
            self._last_end = end
            self._turn(start, end, text, segment)
            self._file.flush()

    def _turn(self, start: int, end: int, text: str, segment: Any) -> None:
        """Write one turn's cues (under the lock): its time shared out by length."""
        pieces = self._pieces(text)
        total = sum(len(p) for p in pieces) or 1
        done = 0
        for piece in pieces:
            cue_start = start + (end - start) * done // total
            done += len(piece)
            cue_end = start + (end - start) * done // total
            self.cues += 1
            self._cue(self.cues, cue_start, cue_end, piece, segment)

    def _clean(self, text: str) -> str:
        """The text a cue may hold (one safe line; JSONL keeps it as it is)."""
        return _one_line(text)

    def _pieces(self, text: str) -> List[str]:
        """The texts of the cues of one turn (one cue unless the format limits lines)."""
        return [text]

    def write_all(self, segments: Iterable[Any]) -> None:
        """Write several segments."""
        for segment in segments:
            self.write(segment)

    def _keeps_failed(self) -> bool:
        return False

    def _header(self) -> None:
        pass

    def _cue(self, index: int, start: int, end: int, text: str, segment: Any) -> None:
        raise NotImplementedError

    def _flush_held(self) -> None:
        """Write what is held back (under the lock)."""

    def close(self) -> None:
        """Write any cue held back, flush, and close the file when the writer opened it.
        Idempotent."""
        with self._lock:
            if not self._header_written:
                self._header_written = True
                self._header()
            try:
                self._flush_held()
            except ValueError:  # the caller closed the file already
                pass
            try:
                self._file.flush()
            except (ValueError, BrokenPipeError):
                return
            if self._owns:
                self._file.close()

    def discard(self) -> None:
        """After :meth:`close` failed (a full disk, a lost pipe): close the file when the
        writer opened it, without flushing again; errors are ignored. Any thread."""
        if self._owns:
            try:
                self._file.close()
            except OSError:
                pass

    def __enter__(self) -> CaptionWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
_CLAUSE_END = (",", ";", ":", "—", "–", "、", "，")
_WEAK_END = frozenset((
    "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "from", "with", "and", "or",
    "but", "nor", "so", "as", "if", "than", "that", "this", "these", "those", "my", "your",
    "his", "her", "its", "our", "their", "is", "are", "was", "were", "be", "been", "i", "you",
    "he", "she", "we", "they", "it", "not", "no", "into", "onto", "over", "under", "about"))
"""Words a line or cue should not end with (they lean on the next word)."""


def _break_cost(word: str) -> float:
    """How bad it is to break a cue or a line after ``word``."""
    stripped = word.rstrip("\"')]}»”’")
    if stripped.endswith(_SENTENCE_END):
        return 0.0
    if stripped.endswith(_CLAUSE_END):
        return 15.0
    if word.lower().strip("\"'(«“‘") in _WEAK_END:
        return 120.0
    return 45.0


def _best_split(words: List[str], fits: Any, piece_cost: Any, each: float) -> List[List[str]]:
    """Split ``words`` into consecutive pieces that each ``fits``, with the least total of
    ``piece_cost`` + the break cost after each piece but the last + ``each`` per piece."""
    n = len(words)
    best: List[Optional[tuple]] = [None] * (n + 1)
    best[0] = (0.0, 0)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            if best[i] is None:
                continue
            piece = words[i:j]
            if j - i > 1 and not fits(piece):
                break  # longer pieces from further back do not fit either
            # (one word longer than a line is a piece of its own, as it is)
            cost = best[i][0] + piece_cost(piece, i == 0 and j == n) + each  # type: ignore[index]
            if j < n:
                cost += _break_cost(words[j - 1])
            if best[j] is None or cost < best[j][0]:  # type: ignore[index]
                best[j] = (cost, i)
    pieces: List[List[str]] = []
    j = n
    while j > 0:
        i = best[j][1]  # type: ignore[index]
        pieces.append(words[i:j])
        j = i
    return pieces[::-1]


def _lines(words: List[str], width: int) -> List[str]:
    """The lines of one cue: as few as fit in ``width``, balanced, broken at clause ends."""
    def fits(piece: List[str]) -> bool:
        return len(" ".join(piece)) <= width

    def cost(piece: List[str], whole: bool) -> float:
        return 20.0 * ((width - len(" ".join(piece))) / width) ** 2

    return [" ".join(p) for p in _best_split(words, fits, cost, 40.0)]


def split_cues(text: str, width: int = LINE_WIDTH, max_lines: int = MAX_LINES) -> List[str]:
    """Split ``text`` into cue texts of at most ``max_lines`` lines of at most ``width``
    characters (lines joined by ``\n``), never breaking inside a word.

    Cues end preferably at sentence ends, then at clause ends, never with a short tail; lines
    are balanced and do not end with a word that leans on the next ("the", "of", ...).
    """
    words = text.split()
    if not words:
        return []
    capacity = width * max_lines

    def fits(piece: List[str]) -> bool:
        joined = " ".join(piece)
        if len(joined) > capacity:
            return False
        return len(textwrap.wrap(joined, width, break_long_words=False,
                                 break_on_hyphens=False)) <= max_lines

    def cost(piece: List[str], whole: bool) -> float:
        size = len(" ".join(piece))
        short = 0.0 if whole or size >= capacity // 4 else 150.0  # no short tails
        return 10.0 * ((capacity - size) / capacity) ** 2 + short

    cues = _best_split(words, fits, cost, 25.0)
    return ["\n".join(_lines(cue, width)) for cue in cues]


def _voice(segment: Any) -> tuple:
    """Who speaks in ``segment`` (role, speaker), when it says: turns of different speakers
    are never merged into one cue."""
    return (getattr(segment, "role", None), getattr(segment, "speaker", None))


def _share(start: int, end: int, sizes: List[int], least: int) -> List[tuple]:
    """Consecutive ``(start, end)`` of pieces of ``sizes`` characters sharing ``start..end``
    by length, each at least ``least`` ms (the span holds that much)."""
    total = end - start
    fixed = [False] * len(sizes)
    spans = [0.0] * len(sizes)
    for _ in range(len(sizes)):  # water-filling: pieces below the least get the least
        free = total - least * sum(fixed)
        weight = sum(n for n, f in zip(sizes, fixed) if not f) or 1
        spans = [float(least) if f else free * n / weight for n, f in zip(sizes, fixed)]
        short = [i for i, d in enumerate(spans) if not fixed[i] and d < least]
        if not short:
            break
        for i in short:
            fixed[i] = True
    out, t = [], float(start)
    for i, span in enumerate(spans):
        cue_end = end if i == len(spans) - 1 else int(round(t + span))
        out.append((int(round(t)), cue_end))
        t += span
    return out


class _CueWriter(CaptionWriter):
    """Subtitle formats: cues of at most two lines of ``max_line_length`` characters; a short
    cue is merged into the next turn's or lengthened (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: Optional[tuple] = None  # (start, end, text, segment) of a short turn

    def _pieces(self, text: str) -> List[str]:
        return split_cues(text, self.max_line_length) or [text]

    def _turn(self, start: int, end: int, text: str, segment: Any) -> None:
        held, self._held = self._held, None
        if held is not None:
            h_start, h_end, h_text, h_segment = held
            if start - h_end <= MERGE_GAP_MS and _voice(h_segment) == _voice(segment):
                # one turn of one speaker: its cues are cut anew
                start, text, segment = h_start, f"{h_text} {text}", h_segment
            else:
                start = max(start, self._emit_short(*held))
                end = max(end, start)
        pieces = self._pieces(text)
        if self.min_cue_ms and end - start < self.min_cue_ms and len(pieces) == 1:
            self._held = (start, end, text, segment)  # wait: the next turn may join it
            return
        end = max(end, start + self.min_cue_ms * len(pieces))
        self._last_end = max(self._last_end, end)
        bounds = _share(start, end, [len(p) for p in pieces], self.min_cue_ms)
        for piece, (cue_start, cue_end) in zip(pieces, bounds):
            self.cues += 1
            self._cue(self.cues, cue_start, cue_end, piece, segment)

    def _emit_short(self, start: int, end: int, text: str, segment: Any) -> int:
        """A short cue that merges with nothing: lengthened to the minimum; returns its end."""
        end = max(end, start + self.min_cue_ms)
        self.cues += 1
        self._cue(self.cues, start, end, text, segment)
        self._last_end = max(self._last_end, end)
        return end

    def _flush_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._emit_short(*held)


class SrtWriter(_CueWriter):
    """SubRip (``.srt``): numbered cues, ``HH:MM:SS,mmm`` times."""

    extension = ".srt"

    def _cue(self, index: int, start: int, end: int, text: str, segment: Any) -> None:
        self._file.write(
            f"{index}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n"
            f"{_ARROW.sub('->', text)}\n\n"
        )


class VttWriter(_CueWriter):
    """WebVTT (``.vtt``): ``WEBVTT`` header, ``HH:MM:SS.mmm`` times."""

    extension = ".vtt"

    def _header(self) -> None:
        self._file.write("WEBVTT\n\n")
        self._file.flush()

    def _cue(self, index: int, start: int, end: int, text: str, segment: Any) -> None:
        self._file.write(
            f"{index}\n{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n"
            f"{text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}\n\n"
        )


class JsonlWriter(CaptionWriter):
    """JSON Lines: one object per turn (``item_id``, ``text``, ``start_ms``, ``end_ms``,
    ``error``; ``languages`` and ``logprobs`` when the server reported them), failed turns
    included."""

    extension = ".jsonl"

    def _keeps_failed(self) -> bool:
        return True

    def _clean(self, text: str) -> str:
        return text.strip()

    def _cue(self, index: int, start: int, end: int, text: str, segment: Any) -> None:
        record = {
            "index": index,
            "item_id": getattr(segment, "item_id", None),
            "text": text,
            "start_ms": getattr(segment, "start_ms", None),
            "end_ms": getattr(segment, "end_ms", None),
            "error": getattr(segment, "error", None),
        }
        for extra in ("languages", "logprobs", "speaker"):  # speaker: Live segments
            if getattr(segment, extra, None):
                record[extra] = getattr(segment, extra)
        self._file.write(json.dumps(record, ensure_ascii=False).translate(_JSONL_ESCAPES) + "\n")


class TextWriter(CaptionWriter):
    """Plain text: one line per turn."""

    def _cue(self, index: int, start: int, end: int, text: str, segment: Any) -> None:
        self._file.write(text + "\n")


_WRITERS = {"text": TextWriter, "srt": SrtWriter, "vtt": VttWriter, "jsonl": JsonlWriter}


def open_writer(
    target: Union[str, os.PathLike[str], IO[str]], format: Optional[str] = None,  # noqa: A002
    **options: Any,
) -> CaptionWriter:
    """A writer for ``format`` (``text``, ``srt``, ``vtt``, ``jsonl``); guessed from a path's
    extension when omitted. ``options``: ``max_line_length``, ``min_cue_ms`` (see
    :class:`CaptionWriter`).

    Raises:
        ValueError: an unknown format.
    """
    if format is None:
        if isinstance(target, (str, os.PathLike)):
            ext = os.path.splitext(os.fspath(target))[1].lower().lstrip(".")
            format = format_for_path(target) or ext or "text"
        else:
            format = "text"
    if format not in _WRITERS:
        raise ValueError(f"unknown caption format {format!r}; choose one of {', '.join(FORMATS)}")
    return _WRITERS[format](target, **options)


FORMAT_EXTENSIONS = (".txt", ".srt", ".vtt", ".jsonl")
"""The usual extension of each format (:func:`format_for_path` knows a few more)."""


def format_for_path(path: Union[str, os.PathLike[str]]) -> Optional[str]:
    """The caption format a file name's extension names (``.srt``, ``.vtt``, ``.jsonl``,
    ``.json``, ``.txt``), or None for any other extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return {"txt": "text", "text": "text", "srt": "srt", "vtt": "vtt", "webvtt": "vtt",
            "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl"}.get(ext)


def render(segments: Iterable[Any], format: str = "srt", **options: Any) -> str:  # noqa: A002
    """The captions of ``segments`` as one string (``options`` as :func:`open_writer`'s)."""
    buffer = io.StringIO()
    writer = open_writer(buffer, format, **options)
    writer.write_all(segments)
    writer.close()
    return buffer.getvalue()



"""Caption writers: SRT, WebVTT and JSONL, written live cue by cue as turns complete.

Each writer flushes after every cue so another program can tail the file::

    with rs.captions.open_writer("live.srt") as out:
        tr = rs.Transcriber(on_final=out.write)

Writers are thread-safe: ``write`` may be called from any thread (a handler included).

SRT and WebVTT cues have at most :data:`MAX_LINES` lines of at most :data:`LINE_WIDTH`
characters and never break inside a word: a long turn becomes several consecutive cues, its
time shared out by length. Turns without words are skipped (JSONL keeps failed turns).

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
MIN_CUE_MS = 800
MS_PER_CHAR = 60


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
    """

    extension = ".txt"

    def __init__(self, target: Union[str, os.PathLike[str], IO[str]]) -> None:
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
            end = start + max(MIN_CUE_MS, MS_PER_CHAR * len(text))
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
            pieces = self._pieces(text)
            total = sum(len(p) for p in pieces) or 1
            done = 0
            for piece in pieces:
                cue_start = start + (end - start) * done // total
                done += len(piece)
                cue_end = start + (end - start) * done // total
                self.cues += 1
                self._cue(self.cues, cue_start, cue_end, piece, segment)
            self._file.flush()

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

    def close(self) -> None:
        """Flush, and close the file when the writer opened it. Idempotent."""
        with self._lock:
            if not self._header_written:
                self._header_written = True
                self._header()
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


def split_cues(text: str, width: int = LINE_WIDTH, max_lines: int = MAX_LINES) -> List[str]:
    """Split ``text`` into cue texts of at most ``max_lines`` lines of at most ``width``
    characters (lines joined by ``\n``), never breaking inside a word."""
    lines = textwrap.wrap(" ".join(text.split()), width, break_long_words=False,
                          break_on_hyphens=False)
    if len(lines) <= max_lines:
        return ["\n".join(lines)] if lines else []
    cues = []
    for i in range(0, len(lines), max_lines):
        cues.append("\n".join(lines[i:i + max_lines]))
    return cues


class _CueWriter(CaptionWriter):
    """Subtitle formats: cues of at most two lines of 42 characters."""

    def _pieces(self, text: str) -> List[str]:
        return split_cues(text) or [text]


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
    target: Union[str, os.PathLike[str], IO[str]], format: Optional[str] = None  # noqa: A002
) -> CaptionWriter:
    """A writer for ``format`` (``text``, ``srt``, ``vtt``, ``jsonl``); guessed from a path's
    extension when omitted.

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
    return _WRITERS[format](target)


FORMAT_EXTENSIONS = (".txt", ".srt", ".vtt", ".jsonl")
"""The usual extension of each format (:func:`format_for_path` knows a few more)."""


def format_for_path(path: Union[str, os.PathLike[str]]) -> Optional[str]:
    """The caption format a file name's extension names (``.srt``, ``.vtt``, ``.jsonl``,
    ``.json``, ``.txt``), or None for any other extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    return {"txt": "text", "text": "text", "srt": "srt", "vtt": "vtt", "webvtt": "vtt",
            "jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl"}.get(ext)


def render(segments: Iterable[Any], format: str = "srt") -> str:  # noqa: A002
    """The captions of ``segments`` as one string."""
    buffer = io.StringIO()
    writer = open_writer(buffer, format)
    writer.write_all(segments)
    writer.close()
    return buffer.getvalue()


